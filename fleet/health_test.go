package fleet

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"

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
	// The statements NewSQLHealth builds once are rewritten too.
	h, err := NewSQLHealth(new(sql.DB), Postgres, "p_")
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{h.qInsert, h.qSelectForUpdate, h.qUpdate, h.qGet, h.qMarkRun, h.qEndRun} {
		if strings.Contains(q, "?") || !strings.Contains(q, "$1") || !strings.Contains(q, "p_fleet_") {
			t.Errorf("statement %q", q)
		}
	}
	if !strings.Contains(h.qUpdate, "$15") || !strings.HasSuffix(h.qSelectForUpdate, "FOR UPDATE OF h") {
		t.Errorf("update %q, select %q", h.qUpdate, h.qSelectForUpdate)
	}
}

// testPushAndTriggerStore checks the push state and the trigger marks of a
// store: round trip, scrub-free cut of the error, that Update keeps the
// push state, List shows a connection pushed but never synced, Delete
// forgets both, and the run marks' three answers.
func testPushAndTriggerStore(t *testing.T, s HealthStore) {
	ctx := context.Background()
	ps, ok := s.(PushHealthStore)
	if !ok {
		t.Fatalf("%T is not a PushHealthStore", s)
	}
	t0 := time.UnixMilli(time.Now().UnixMilli())
	want := PushHealth{Kind: PushGraph, Active: true, Holder: "host/1", Since: t0, Expires: t0.Add(72 * time.Hour),
		LastNotification: t0.Add(time.Second), LastError: strings.Repeat("x", MaxErrorLen+10), LastErrorAt: t0, Updated: t0}
	if err := ps.UpdatePush(ctx, "p", func(p *PushHealth) { *p = want }); err != nil {
		t.Fatal(err)
	}
	want.LastError = want.LastError[:MaxErrorLen]
	h, ok, err := s.Get(ctx, "p")
	if err != nil || !ok || h.Push != want {
		t.Fatalf("Get = %+v, %v, %v; want push %+v", h.Push, ok, err, want)
	}
	list, err := s.List(ctx)
	if err != nil || len(list) != 1 || list[0].Push != want {
		t.Fatalf("List = %+v, %v", list, err)
	}
	// A sync's Update keeps the push state.
	if _, after, err := s.Update(ctx, "p", func(h *Health) { h.MessagesSynced++; h.Push = PushHealth{} }); err != nil || after.MessagesSynced != 1 {
		t.Fatalf("Update = %+v, %v", after, err)
	}
	if h, _, _ := s.Get(ctx, "p"); h.Push != want || h.MessagesSynced != 1 {
		t.Errorf("after Update: %+v", h)
	}
	if err := ps.UpdatePush(ctx, "p", func(p *PushHealth) { p.Active = false }); err != nil {
		t.Fatal(err)
	}
	if h, _, _ := s.Get(ctx, "p"); h.Push.Active || h.Push.Kind != PushGraph {
		t.Errorf("after UpdatePush: %+v", h.Push)
	}

	ts, ok := s.(TriggerStore)
	if !ok {
		t.Fatalf("%T is not a TriggerStore", s)
	}
	// A run ends unmarked; a mark after its end is refused.
	if marked, err := ts.EndRun(ctx, "p", "1/1"); err != nil || marked {
		t.Errorf("EndRun unmarked = %v, %v", marked, err)
	}
	if m, err := ts.MarkRun(ctx, "p", "1/1"); err != nil || m != RunEnded {
		t.Errorf("MarkRun after the end = %v, %v", m, err)
	}
	// Marks during the next run: one mark, seen once at its end.
	for range 3 {
		if m, err := ts.MarkRun(ctx, "p", "1/2"); err != nil || m != RunMarked {
			t.Errorf("MarkRun during the run = %v, %v", m, err)
		}
	}
	if marked, err := ts.EndRun(ctx, "p", "1/2"); err != nil || !marked {
		t.Errorf("EndRun marked = %v, %v", marked, err)
	}
	if m, err := ts.MarkRun(ctx, "p", "1/2"); err != nil || m != RunEnded {
		t.Errorf("MarkRun after the marked end = %v, %v", m, err)
	}
	// A mark of another run does not count for this one.
	if m, err := ts.MarkRun(ctx, "p", "1/3"); err != nil || m != RunMarked {
		t.Errorf("MarkRun = %v, %v", m, err)
	}
	if marked, err := ts.EndRun(ctx, "p", "1/4"); err != nil || marked {
		t.Errorf("EndRun of a run not marked = %v, %v", marked, err)
	}

	// Concurrent marks and the end: the end sees the mark, or the mark
	// sees the end.
	for i := range 20 {
		run := fmt.Sprintf("2/%d", i)
		var wg sync.WaitGroup
		var m RunMark
		var marked bool
		var merr, eerr error
		wg.Go(func() { m, merr = ts.MarkRun(ctx, "p", run) })
		wg.Go(func() { marked, eerr = ts.EndRun(ctx, "p", run) })
		wg.Wait()
		if merr != nil || eerr != nil {
			t.Fatal(merr, eerr)
		}
		if (m == RunMarked) != marked {
			t.Errorf("run %s: MarkRun %v, EndRun marked %v: a mark lost or counted after the end", run, m, marked)
		}
	}

	if err := s.Delete(ctx, "p"); err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := s.Get(ctx, "p"); ok {
		t.Error("p still there after Delete")
	}
}

func TestPushAndTriggerStores(t *testing.T) {
	db := openSQLite(t)
	// A database of the version before push: the health table alone,
	// with a row. Migrate adds the push and trigger tables and keeps it.
	if _, err := db.Exec(`CREATE TABLE mailsync_fleet_health (
	connection text PRIMARY KEY, first_attempt bigint NOT NULL DEFAULT 0, last_attempt bigint NOT NULL DEFAULT 0,
	last_success bigint NOT NULL DEFAULT 0, caught_up_at bigint NOT NULL DEFAULT 0, consecutive_failures integer NOT NULL DEFAULT 0,
	last_error_kind text NOT NULL DEFAULT '', last_error text NOT NULL DEFAULT '', last_error_at bigint NOT NULL DEFAULT 0,
	messages_synced bigint NOT NULL DEFAULT 0, quarantined bigint NOT NULL DEFAULT 0, oldest_unprocessed bigint NOT NULL DEFAULT 0,
	degraded integer NOT NULL DEFAULT 0, needs_admin integer NOT NULL DEFAULT 0, updated bigint NOT NULL DEFAULT 0);
	INSERT INTO mailsync_fleet_health (connection, messages_synced) VALUES ('old', 7)`); err != nil {
		t.Fatal(err)
	}
	sqlh := sqliteHealth(t, db)
	if h, ok, err := sqlh.Get(context.Background(), "old"); err != nil || !ok || h.MessagesSynced != 7 || h.Push != (PushHealth{}) {
		t.Fatalf("the old row after Migrate: %+v, %v, %v", h, ok, err)
	}
	if err := sqlh.Delete(context.Background(), "old"); err != nil {
		t.Fatal(err)
	}
	for name, s := range map[string]HealthStore{"memory": NewMemoryHealth(), "sql": sqlh} {
		t.Run(name, func(t *testing.T) { testPushAndTriggerStore(t, s) })
	}
}

func TestPostgresPushAndTriggerStore(t *testing.T) {
	testPushAndTriggerStore(t, postgresHealth(t, postgresDB(t)))
}

// testUpdateRaced is an Update whose row another process changes between
// the store's read and its write: neither change may be lost.
func testUpdateRaced(t *testing.T, s, other *SQLHealth) {
	ctx := context.Background()
	if _, _, err := s.Update(ctx, "x", func(h *Health) { h.MessagesSynced++ }); err != nil {
		t.Fatal(err)
	}
	calls := 0
	_, _, err := s.Update(ctx, "x", func(h *Health) {
		calls++
		if calls > 1 {
			t.Error("fn called again although nobody changed the row")
		}
		h.MessagesSynced++
	})
	if err != nil {
		t.Fatal(err)
	}
	calls = 0
	before, after, err := s.Update(ctx, "x", func(h *Health) {
		calls++
		if calls == 1 {
			// Another process, after this Update read the row.
			if _, _, err := other.Update(ctx, "x", func(h *Health) { h.Quarantined += 10 }); err != nil {
				t.Error(err)
			}
		}
		h.MessagesSynced++
	})
	if err != nil {
		t.Fatal(err)
	}
	if calls != 2 || before.Quarantined != 10 || after.MessagesSynced != 3 || after.Quarantined != 10 {
		t.Errorf("fn called %d times; before %+v after %+v; want 2 calls, the other change in both", calls, before, after)
	}
	if h, _, _ := s.Get(ctx, "x"); h.MessagesSynced != 3 || h.Quarantined != 10 {
		t.Errorf("stored %+v, want 3 messages and 10 quarantined", h)
	}
}

func TestSQLHealthUpdateRaced(t *testing.T) {
	db := openSQLite(t)
	testUpdateRaced(t, sqliteHealth(t, db), sqliteHealth(t, db))
}

func TestPostgresHealthUpdateRaced(t *testing.T) {
	dsn := postgresDB(t)
	testUpdateRaced(t, postgresHealth(t, dsn), postgresHealth(t, dsn))
}

// statementCounter is a pgx tracer that counts the statements sent.
type statementCounter struct{ n atomic.Int64 }

func (c *statementCounter) TraceQueryStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceQueryStartData) context.Context {
	c.n.Add(1)
	return ctx
}

func (c *statementCounter) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}

// countedPostgresHealth is postgresHealth on a database/sql pool whose
// statements are counted.
func countedPostgresHealth(t *testing.T, dsn string) (*SQLHealth, *statementCounter) {
	t.Helper()
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		t.Fatal(err)
	}
	c := &statementCounter{}
	cfg.Tracer = c
	db := stdlib.OpenDB(*cfg)
	t.Cleanup(func() { db.Close() })
	return migratedHealth(t, db, Postgres), c
}

// On PostgreSQL, a process that wrote a connection's row last updates it
// in one statement; when another process wrote it in between, in two, and
// neither change is lost. Push state written meanwhile shows in before and
// after.
func TestPostgresHealthUpdateOneStatement(t *testing.T) {
	ctx := context.Background()
	dsn := postgresDB(t)
	a, count := countedPostgresHealth(t, dsn)
	b := postgresHealth(t, dsn)
	inc := func(h *Health) { h.MessagesSynced++ }
	if _, _, err := a.Update(ctx, "x", inc); err != nil { // creates the row
		t.Fatal(err)
	}
	n0 := count.n.Load()
	for i := range 3 {
		before, after, err := a.Update(ctx, "x", inc)
		if err != nil || before.MessagesSynced != int64(i+1) || after.MessagesSynced != int64(i+2) {
			t.Fatalf("update %d: before %+v after %+v, %v", i, before, after, err)
		}
	}
	if n := count.n.Load() - n0; n != 3 {
		t.Errorf("3 updates of a row this store wrote last took %d statements, want 3", n)
	}
	// Another process writes the row, and its push state.
	if _, _, err := b.Update(ctx, "x", func(h *Health) { h.Quarantined += 10 }); err != nil {
		t.Fatal(err)
	}
	if err := b.UpdatePush(ctx, "x", func(p *PushHealth) { p.Kind, p.Active = "imap-idle", true }); err != nil {
		t.Fatal(err)
	}
	n0 = count.n.Load()
	calls := 0
	before, after, err := a.Update(ctx, "x", func(h *Health) { calls++; inc(h) })
	if err != nil {
		t.Fatal(err)
	}
	if n := count.n.Load() - n0; n != 2 {
		t.Errorf("an update after another process's took %d statements, want 2", n)
	}
	if calls != 2 || before.Quarantined != 10 || before.MessagesSynced != 4 || after.MessagesSynced != 5 || after.Quarantined != 10 {
		t.Errorf("fn called %d times; before %+v after %+v; want 2 calls and the other change kept", calls, before, after)
	}
	if !before.Push.Active || !after.Push.Active || after.Push.Kind != "imap-idle" {
		t.Errorf("push state: before %+v after %+v, want the other process's", before.Push, after.Push)
	}
	// Once the other process wrote the push state, a's one-statement
	// update still returns it.
	_, after, err = a.Update(ctx, "x", inc)
	if err != nil || !after.Push.Active || after.MessagesSynced != 6 {
		t.Errorf("after: %+v, %v", after, err)
	}
	// Deleted by another process: the row is made again (as an update by
	// a store that had not seen it would).
	if err := b.Delete(ctx, "x"); err != nil {
		t.Fatal(err)
	}
	if _, after, err := a.Update(ctx, "x", inc); err != nil || after.MessagesSynced != 1 || after.Push.Active {
		t.Errorf("after the delete: %+v, %v", after, err)
	}
	if h, _, _ := b.Get(ctx, "x"); h.MessagesSynced != 1 {
		t.Errorf("stored %+v, want 1 message", h)
	}
}
