package fleet

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mailsync/mailsync"
)

func TestHealthStores(t *testing.T) {
	db := openSQLite(t)
	sqlh, err := NewSQLHealth(db, SQLite, "app_")
	if err != nil {
		t.Fatal(err)
	}
	if err := sqlh.Migrate(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := sqlh.Migrate(context.Background()); err != nil {
		t.Fatalf("second Migrate: %v", err)
	}
	if sqlh.Table() != "app_fleet_health" {
		t.Errorf("table %q", sqlh.Table())
	}
	for name, s := range map[string]HealthStore{"memory": NewMemoryHealth(), "sql": sqlh} {
		t.Run(name, func(t *testing.T) { testHealthStore(t, s) })
	}
}

func testHealthStore(t *testing.T, s HealthStore) {
	ctx := context.Background()
	if _, ok, err := s.Get(ctx, "a"); ok || err != nil {
		t.Fatalf("Get of nothing = %v, %v", ok, err)
	}
	t0 := time.UnixMilli(time.Now().UnixMilli())
	fail := attempt{start: t0, end: t0.Add(time.Second), kind: KindConnection, msg: "dial: refused"}
	before, after, err := s.Update(ctx, "a", func(h *Health) { fail.apply(h, 2) })
	if err != nil {
		t.Fatal(err)
	}
	if before.Connection != "a" || !before.LastAttempt.IsZero() {
		t.Errorf("before = %+v, want the zero health", before)
	}
	want := Health{Connection: "a", FirstAttempt: t0, LastAttempt: t0, ConsecutiveFailures: 1, LastErrorKind: KindConnection,
		LastError: "dial: refused", LastErrorAt: t0.Add(time.Second), OldestUnprocessed: time.Second, Updated: t0.Add(time.Second)}
	if !equalHealth(after, want) {
		t.Errorf("after first failure:\n got %+v\nwant %+v", after, want)
	}
	got, ok, err := s.Get(ctx, "a")
	if err != nil || !ok || !equalHealth(got, want) {
		t.Errorf("Get = %+v, %v, %v", got, ok, err)
	}
	fail.start, fail.end = t0.Add(time.Minute), t0.Add(time.Minute+time.Second)
	_, after, _ = s.Update(ctx, "a", func(h *Health) { fail.apply(h, 2) })
	if !after.Degraded || after.ConsecutiveFailures != 2 || after.OldestUnprocessed != time.Minute+time.Second {
		t.Errorf("after second failure: %+v", after)
	}
	ok2 := attempt{start: t0.Add(2 * time.Minute), end: t0.Add(2*time.Minute + time.Second),
		rep: &mailsync.Report{Created: 3, FollowUps: 1, Quarantined: 2}}
	before, after, _ = s.Update(ctx, "a", func(h *Health) { ok2.apply(h, 2) })
	if !before.Degraded || after.Degraded || after.ConsecutiveFailures != 0 || after.MessagesSynced != 4 || after.Quarantined != 2 ||
		!after.CaughtUpAt.Equal(ok2.start) || after.OldestUnprocessed != 0 || after.LastErrorKind != KindConnection {
		t.Errorf("after success: before %+v after %+v", before, after)
	}
	// A long message is cut.
	long := attempt{start: t0.Add(3 * time.Minute), end: t0.Add(3 * time.Minute), kind: KindOther, msg: strings.Repeat("é", MaxErrorLen)}
	_, after, _ = s.Update(ctx, "b", func(h *Health) { long.apply(h, 2) })
	if h, _, _ := s.Get(ctx, "b"); len(h.LastError) > MaxErrorLen || h.LastError == "" {
		t.Errorf("LastError of %d bytes", len(h.LastError))
	}
	_ = after

	// Concurrent updates are atomic.
	var wg sync.WaitGroup
	for range 20 {
		wg.Go(func() {
			if _, _, err := s.Update(ctx, "c", func(h *Health) { h.MessagesSynced++ }); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if h, _, _ := s.Get(ctx, "c"); h.MessagesSynced != 20 {
		t.Errorf("20 concurrent increments gave %d", h.MessagesSynced)
	}
	list, err := s.List(ctx)
	if err != nil || len(list) != 3 || list[0].Connection != "a" || list[2].Connection != "c" {
		t.Errorf("List = %v, %v", list, err)
	}
	if err := s.Delete(ctx, "b"); err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := s.Get(ctx, "b"); ok {
		t.Error("b still there after Delete")
	}
}

func equalHealth(a, b Health) bool {
	return a.Connection == b.Connection && a.FirstAttempt.Equal(b.FirstAttempt) && a.LastAttempt.Equal(b.LastAttempt) &&
		a.LastSuccess.Equal(b.LastSuccess) && a.CaughtUpAt.Equal(b.CaughtUpAt) && a.ConsecutiveFailures == b.ConsecutiveFailures &&
		a.LastErrorKind == b.LastErrorKind && a.LastError == b.LastError && a.LastErrorAt.Equal(b.LastErrorAt) &&
		a.MessagesSynced == b.MessagesSynced && a.Quarantined == b.Quarantined && a.OldestUnprocessed == b.OldestUnprocessed &&
		a.Degraded == b.Degraded && a.NeedsAdmin == b.NeedsAdmin && a.Updated.Equal(b.Updated)
}

func TestNewSQLHealthRefusesBadPrefix(t *testing.T) {
	db := openSQLite(t)
	for _, p := range []string{"x; DROP TABLE river_job; --", "1abc", "a-b", `a"`} {
		if _, err := NewSQLHealth(db, SQLite, p); err == nil {
			t.Errorf("prefix %q accepted", p)
		}
	}
	if _, err := NewSQLHealth(db, "mysql", ""); err == nil {
		t.Error("unknown dialect accepted")
	}
}

func TestPostgresPlaceholders(t *testing.T) {
	s := &SQLHealth{dialect: Postgres, table: "t"}
	if got := s.q("UPDATE t SET a = ?, b = ? WHERE c = ?"); got != "UPDATE t SET a = $1, b = $2 WHERE c = $3" {
		t.Errorf("q = %q", got)
	}
}
