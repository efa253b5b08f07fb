package fleet

import (
	"context"
	"fmt"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/mailsync/mailsync"
)

func TestMetrics(t *testing.T) {
	db := openSQLite(t)
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	t.Cleanup(func() { _ = mp.Shutdown(context.Background()) })

	good := newMailbox("good", 3)
	good.bigSize[2] = 1 << 40 // over every limit: quarantined unread
	bad := newMailbox("bad", 1)
	bad.setListErr(func(int) error { return fmt.Errorf("dial: %w", mailsync.ErrConnection) })
	r := newResolver(good, bad)
	f := newFleet(t, db, Config{Resolver: r, Interval: time.Hour, Backoff: time.Hour, MeterProvider: mp})
	ctx := context.Background()
	for _, id := range []string{"good", "bad"} {
		if _, err := f.Schedule(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, 10*time.Second, "both syncs", func() bool {
		_, ok1, _ := f.Health().Get(ctx, "good")
		_, ok2, _ := f.Health().Get(ctx, "bad")
		return ok1 && ok2
	})

	var rm metricdata.ResourceMetrics
	if err := reader.Collect(ctx, &rm); err != nil {
		t.Fatal(err)
	}
	got := map[string]metricdata.Metrics{}
	for _, sm := range rm.ScopeMetrics {
		if sm.Scope.Name != MeterName {
			continue
		}
		for _, m := range sm.Metrics {
			got[m.Name] = m
		}
	}

	messages := sumByAttr(t, got[MetricMessages], "outcome")
	if messages["created"] != 2 || messages["quarantined"] != 1 {
		t.Errorf("messages by outcome = %v, want created 2, quarantined 1", messages)
	}
	if q := sumByAttr(t, got[MetricQuarantined], "provider"); q["x-fake"] != 1 {
		t.Errorf("quarantined = %v, want x-fake: 1", q)
	}
	h, ok := got[MetricSyncDuration].Data.(metricdata.Histogram[float64])
	if !ok {
		t.Fatalf("%s: %T, want a float64 histogram", MetricSyncDuration, got[MetricSyncDuration].Data)
	}
	results := map[string]uint64{}
	for _, dp := range h.DataPoints {
		v, _ := dp.Attributes.Value(attribute.Key("result"))
		results[v.AsString()] += dp.Count
	}
	if results["ok"] != 1 || results[string(KindConnection)] != 1 {
		t.Errorf("sync durations by result = %v, want ok 1, connection 1", results)
	}
	g, ok := got[MetricLag].Data.(metricdata.Gauge[float64])
	if !ok {
		t.Fatalf("%s: %T, want a float64 gauge", MetricLag, got[MetricLag].Data)
	}
	lags := map[string]float64{}
	for _, dp := range g.DataPoints {
		v, _ := dp.Attributes.Value(attribute.Key("connection"))
		lags[v.AsString()] = dp.Value
	}
	if l, ok := lags["good"]; !ok || l != 0 {
		t.Errorf("lag of good = %v (%v), want 0: it caught up", l, ok)
	}
	if l, ok := lags["bad"]; !ok || l <= 0 {
		t.Errorf("lag of bad = %v (%v), want > 0: it never caught up", l, ok)
	}
}

// sumByAttr sums an int64 counter's points by the value of attribute key.
func sumByAttr(t *testing.T, m metricdata.Metrics, key string) map[string]int64 {
	t.Helper()
	s, ok := m.Data.(metricdata.Sum[int64])
	if !ok {
		t.Fatalf("%s: %T, want an int64 sum", m.Name, m.Data)
	}
	out := map[string]int64{}
	for _, dp := range s.DataPoints {
		v, _ := dp.Attributes.Value(attribute.Key(key))
		out[v.AsString()] += dp.Value
	}
	return out
}
