package fleet

import (
	"context"
	"slices"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/metric/noop"

	"github.com/mailsync/mailsync"
)

// MeterName is the instrumentation scope of the Fleet's metrics.
const MeterName = "github.com/mailsync/mailsync/fleet"

// The Fleet's instruments. Every one carries the attribute "provider"
// (imap, pop3, microsoft_graph, gmail_api, …) and, with
// Config.ConnectionAttribute, "connection" (the connection id).
const (
	// MetricMessages counts messages by "outcome": a mailsync.Status
	// (created, follow_up, duplicate, already_done, quarantined, failed,
	// dropped, gone).
	MetricMessages = "mailsync.fleet.messages"
	// MetricSyncDuration is a histogram of sync durations in seconds, by
	// "result": "ok" or an ErrorKind. A sync that found the connection
	// busy is not recorded.
	MetricSyncDuration = "mailsync.fleet.sync.duration"
	// MetricQuarantined counts messages quarantined (also counted in
	// MetricMessages with outcome quarantined; this one is what to alert on).
	MetricQuarantined = "mailsync.fleet.quarantined"
	// MetricLag is a gauge, recorded at the end of every sync, of
	// Health.OldestUnprocessed in seconds: 0 when the sync caught up. It
	// always carries "connection", since a lag means nothing summed over
	// connections.
	MetricLag = "mailsync.fleet.lag"
)

type metrics struct {
	messages    metric.Int64Counter
	duration    metric.Float64Histogram
	quarantined metric.Int64Counter
	lag         metric.Float64Gauge
	perConn     bool
}

func newMetrics(mp metric.MeterProvider, perConn bool) (*metrics, error) {
	if mp == nil {
		mp = noop.NewMeterProvider()
	}
	m := mp.Meter(MeterName)
	var (
		x   metrics
		err error
	)
	x.perConn = perConn
	if x.messages, err = m.Int64Counter(MetricMessages, metric.WithUnit("{message}"),
		metric.WithDescription("Messages handled by fleet syncs, by outcome.")); err != nil {
		return nil, err
	}
	if x.duration, err = m.Float64Histogram(MetricSyncDuration, metric.WithUnit("s"),
		metric.WithDescription("Duration of fleet syncs, by result.")); err != nil {
		return nil, err
	}
	if x.quarantined, err = m.Int64Counter(MetricQuarantined, metric.WithUnit("{message}"),
		metric.WithDescription("Messages quarantined by fleet syncs.")); err != nil {
		return nil, err
	}
	if x.lag, err = m.Float64Gauge(MetricLag, metric.WithUnit("s"),
		metric.WithDescription("Upper bound of the age of a connection's oldest unprocessed mail, at the end of its latest sync.")); err != nil {
		return nil, err
	}
	return &x, nil
}

// record records one finished sync (not a busy one).
func (m *metrics) record(ctx context.Context, connection, provider string, kind ErrorKind, d time.Duration, rep *mailsync.Report, lag time.Duration) {
	base := []attribute.KeyValue{attribute.String("provider", provider)}
	if m.perConn {
		base = append(base, attribute.String("connection", connection))
	}
	base = slices.Clip(base) // every append below copies
	result := string(kind)
	if kind == KindNone {
		result = "ok"
	}
	m.duration.Record(ctx, d.Seconds(), metric.WithAttributes(append(base, attribute.String("result", result))...))
	if rep != nil {
		counts := map[mailsync.Status]int{}
		for _, o := range rep.Messages {
			counts[o.Status]++
		}
		for st, n := range counts {
			m.messages.Add(ctx, int64(n), metric.WithAttributes(append(base, attribute.String("outcome", string(st)))...))
		}
		if rep.Quarantined > 0 {
			m.quarantined.Add(ctx, int64(rep.Quarantined), metric.WithAttributes(base...))
		}
	}
	lagAttrs := base
	if !m.perConn {
		lagAttrs = append(lagAttrs, attribute.String("connection", connection))
	}
	m.lag.Record(ctx, lag.Seconds(), metric.WithAttributes(lagAttrs...))
}
