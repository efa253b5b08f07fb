package fleet

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river/riverdriver"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/riverdriver/riversqlite"
	"github.com/riverqueue/river/rivertype"

	"github.com/mailsync/mailsync"
	"github.com/mailsync/mailsync/sqlstate"
)

// stateOpener opens a new handle on the test's one sqlstate database, as
// each process of a fleet opens its own; it is closed at the test's end.
type stateOpener func(t *testing.T) *sqlstate.State

// sqliteStates opens the SQLite file path as a State.
func sqliteStates(path string) stateOpener {
	return func(t *testing.T) *sqlstate.State {
		t.Helper()
		s, err := sqlstate.OpenSQLite(context.Background(), path)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}
}

// postgresStates opens the PostgreSQL database dsn as a State.
func postgresStates(dsn string) stateOpener {
	return func(t *testing.T) *sqlstate.State {
		t.Helper()
		s, err := sqlstate.OpenPostgres(context.Background(), dsn, sqlstate.Options{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}
}

// testTwoProcesses runs two Fleets (as two worker processes would) on one
// database, each with its own handle on one sqlstate State, and checks that
// every connection is synced periodically, never by both at once, with one
// job each and no duplicate ticket.
func testTwoProcesses[TTx any](t *testing.T, drivers [2]riverdriver.Driver[TTx], health HealthStore, states stateOpener, conns int) {
	var boxes []*mailbox
	for i := range conns {
		mb := newMailbox(fmt.Sprintf("conn-%03d", i), 2)
		mb.listDelay = 5 * time.Millisecond
		boxes = append(boxes, mb)
	}
	r := newResolver(boxes...)
	var fleets [2]*Fleet
	for i, d := range drivers {
		fleets[i] = newFleetOn(t, d, Config{Resolver: r, State: states(t), Health: health, Workers: 3,
			Interval: 150 * time.Millisecond, Jitter: 30 * time.Millisecond, Holder: fmt.Sprintf("process-%d", i)})
	}
	ctx := context.Background()
	for _, f := range fleets { // both processes schedule everything at start-up
		for _, mb := range boxes {
			if _, err := f.Schedule(ctx, mb.name); err != nil {
				t.Fatal(err)
			}
		}
	}
	eventually(t, 60*time.Second, "three syncs of every connection", func() bool {
		for _, mb := range boxes {
			if len(mb.calls()) < 3 {
				return false
			}
		}
		return true
	})
	for _, mb := range boxes {
		mb.mu.Lock()
		if mb.overlaps != 0 {
			t.Errorf("%s: %d syncs overlapped", mb.name, mb.overlaps)
		}
		mb.mu.Unlock()
		var live int
		for _, j := range jobsOf(t, fleets[0], mb.name) {
			if j.State != rivertype.JobStateCancelled && j.State != rivertype.JobStateCompleted && j.State != rivertype.JobStateDiscarded {
				live++
			}
		}
		if live != 1 {
			t.Errorf("%s: %d live jobs, want 1", mb.name, live)
		}
		if h := healthOf(t, fleets[1], mb.name); h.MessagesSynced != 2 || h.ConsecutiveFailures != 0 {
			t.Errorf("%s: health %+v", mb.name, h)
		}
	}
	if n := len(r.sink.Tickets()); n != 2*conns {
		t.Errorf("%d tickets, want %d", n, 2*conns)
	}
}

// sqliteFleetDBs opens River's SQLite database twice, as two processes.
func sqliteFleetDBs(t *testing.T) (*sql.DB, *sql.DB) {
	db := openSQLite(t)
	db2, err := sqlstate.OpenSQLiteDB(dbPath(t, db))
	if err != nil {
		t.Fatal(err)
	}
	db2.SetMaxOpenConns(1)
	t.Cleanup(func() { db2.Close() })
	return db, db2
}

func TestTwoProcessesSQLite(t *testing.T) {
	db, db2 := sqliteFleetDBs(t)
	health, err := NewSQLHealth(db, SQLite, "")
	if err != nil {
		t.Fatal(err)
	}
	if err := health.Migrate(context.Background()); err != nil {
		t.Fatal(err)
	}
	states := sqliteStates(filepath.Join(t.TempDir(), "state.db"))
	testTwoProcesses(t, [2]riverdriver.Driver[*sql.Tx]{riversqlite.New(db), riversqlite.New(db2)}, health, states, 10)
}

func TestTwoProcessesPostgres(t *testing.T) {
	dsn := postgresDB(t)
	p1, p2 := postgresPool(t, dsn), postgresPool(t, dsn)
	if err := Migrate(context.Background(), riverpgxv5.New(p1)); err != nil {
		t.Fatal(err)
	}
	testTwoProcesses(t, [2]riverdriver.Driver[pgx.Tx]{riverpgxv5.New(p1), riverpgxv5.New(p2)}, postgresHealth(t, dsn), postgresStates(dsn), 20)
}

// pausedState is a sqlstate State whose lease renewals hang until resume
// is closed, as in a process that stalls (a long GC pause, a frozen VM, a
// network partition) while it syncs: its lease expires under it. Every
// fenced Record's error is sent on records.
type pausedState struct {
	*sqlstate.State
	resume  chan struct{}
	records chan error
}

func (s *pausedState) RenewLease(ctx context.Context, l mailsync.Lease, ttl time.Duration) (mailsync.Lease, error) {
	<-s.resume
	return s.State.RenewLease(ctx, l, ttl)
}

func (s *pausedState) Record(ctx context.Context, connection string, r mailsync.Record) error {
	err := s.State.Record(ctx, connection, r)
	if r.Fence != nil {
		s.records <- err
	}
	return err
}

// testBusyAndFenced runs two processes on one connection with sqlstate's
// real leases. Process A (insert-only, as a web process) runs SyncNow,
// which holds the lease while its listing hangs; process B's worker meets
// ErrBusy and snoozes its job until the next interval, without failing it.
// Then A stalls, its lease expires, and B syncs the connection under a new
// lease; when A comes back with a new message, it delivers it but its
// Record is fenced: nothing A wrote reaches the State, and B's next sync
// records the message, with no duplicate ticket.
func testBusyAndFenced[TTx any](t *testing.T, drivers [2]riverdriver.Driver[TTx], states stateOpener) {
	ctx := context.Background()
	mb := newMailbox("support", 2)
	r := newResolver(mb)
	a := &pausedState{State: states(t), resume: make(chan struct{}), records: make(chan error, 10)}
	var resumeOnce sync.Once
	resume := func() { resumeOnce.Do(func() { close(a.resume) }) }
	t.Cleanup(resume)
	const ttl = 500 * time.Millisecond
	procA := newFleetOn(t, drivers[0], Config{Resolver: r, State: a, Workers: -1, Holder: "process-a", LeaseTTL: ttl})
	bState := states(t)
	type snooze struct {
		kind ErrorKind
		d    time.Duration
	}
	snoozes := make(chan snooze, 10)
	procB := newFleetOn(t, drivers[1], Config{Resolver: r, State: bState, Holder: "process-b", LeaseTTL: ttl,
		Interval: time.Hour, Jitter: -1})
	procB.testHookSnooze = func(_ string, kind ErrorKind, d time.Duration) { snoozes <- snooze{kind, d} }

	// A holds the lease; its listing hangs.
	block := make(chan struct{})
	mb.mu.Lock()
	mb.block, mb.entered = block, make(chan struct{}, 1)
	mb.mu.Unlock()
	type outcome struct {
		rep *mailsync.Report
		err error
	}
	aDone := make(chan outcome, 1)
	go func() {
		rep, err := procA.SyncNow(ctx, "support", "")
		aDone <- outcome{rep, err}
	}()
	<-mb.entered
	mb.mu.Lock()
	mb.block = nil // only A's listing hangs
	mb.mu.Unlock()

	// B's worker: busy, snoozed until the next interval, not failed.
	if _, err := procB.Schedule(ctx, "support"); err != nil {
		t.Fatal(err)
	}
	select {
	case s := <-snoozes:
		if s.kind != KindBusy || s.d != time.Hour {
			t.Fatalf("B's worker snoozed %s for %s, want %s for the interval", s.kind, s.d, KindBusy)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("B's worker never ran")
	}
	var job *rivertype.JobRow
	eventually(t, 10*time.Second, "B's job to snooze", func() bool {
		j := jobsOf(t, procB, "support")
		if len(j) == 1 && j[0].State == rivertype.JobStateScheduled {
			job = j[0]
			return true
		}
		return false
	})
	if len(job.Errors) != 0 || job.ScheduledAt.Before(time.Now().Add(50*time.Minute)) {
		t.Errorf("B's job after ErrBusy: errors %v, next run %s; want no error and the next interval", job.Errors, job.ScheduledAt)
	}
	if len(mb.calls()) != 1 {
		t.Errorf("%d listings, want A's only", len(mb.calls()))
	}
	if _, ok, _ := procB.Health().Get(ctx, "support"); ok {
		t.Error("a busy sync was recorded in the health")
	}

	// A stalls past its lease; B syncs under a new lease.
	time.Sleep(ttl + 200*time.Millisecond)
	if ok, err := procB.Trigger(ctx, "support"); !ok || err != nil {
		t.Fatalf("trigger: %v %v", ok, err)
	}
	select {
	case s := <-snoozes:
		if s.kind != KindNone {
			t.Fatalf("B's sync after A's lease expired: %s", s.kind)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("B's worker never ran again")
	}
	if n := len(r.sink.Tickets()); n != 2 {
		t.Fatalf("%d tickets after B's sync, want 2", n)
	}
	cursor := func() mailsync.Cursor {
		c, err := bState.Cursor(ctx, "support")
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	processed := func(key string) bool {
		p, err := bState.Processed(ctx, "support", []string{mailsync.StateKey(key)})
		if err != nil {
			t.Fatal(err)
		}
		return p[0]
	}
	if c := cursor(); c != "2" {
		t.Fatalf("cursor after B's sync %q, want 2", c)
	}

	// A comes back and lists a new message: it delivers it, but its Record
	// carries the old lease and is refused.
	mb.mu.Lock()
	mb.msgs = append(mb.msgs, rawMessage("support-2", "Problem 2"))
	mb.mu.Unlock()
	close(block)
	select {
	case err := <-a.records:
		if !errors.Is(err, mailsync.ErrLeaseLost) {
			t.Fatalf("A's fenced Record: %v, want ErrLeaseLost", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("A never recorded")
	}
	resume()
	o := <-aDone
	if !errors.Is(o.err, mailsync.ErrLeaseLost) {
		t.Errorf("A's SyncNow: %v, want ErrLeaseLost", o.err)
	}
	if processed("2") {
		t.Error("the fenced holder's message is recorded as done")
	}
	if c := cursor(); c != "2" {
		t.Errorf("cursor %q after the fenced sync, want B's 2", c)
	}
	if n := len(r.sink.Tickets()); n != 3 {
		t.Errorf("%d tickets, want 3 (the sink is not fenced: A delivered the new message)", n)
	}

	// B's next sync records it, without a second ticket.
	eventually(t, 10*time.Second, "B's job to snooze", func() bool {
		j := jobsOf(t, procB, "support")
		return len(j) == 1 && j[0].State == rivertype.JobStateScheduled
	})
	if ok, err := procB.Trigger(ctx, "support"); !ok || err != nil {
		t.Fatalf("trigger: %v %v", ok, err)
	}
	select {
	case s := <-snoozes:
		if s.kind != KindNone {
			t.Fatalf("B's last sync: %s", s.kind)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("B's worker never ran a third time")
	}
	if !processed("2") || cursor() != "3" {
		t.Errorf("after B's last sync: processed %v, cursor %q; want true, 3", processed("2"), cursor())
	}
	seen := map[string]bool{}
	for _, tk := range r.sink.Tickets() {
		if seen[tk.IdempotencyKey] {
			t.Errorf("duplicate ticket %s", tk.IdempotencyKey)
		}
		seen[tk.IdempotencyKey] = true
	}
	if len(seen) != 3 {
		t.Errorf("%d tickets, want 3", len(seen))
	}
	if h := healthOf(t, procB, "support"); h.MessagesSynced != 2 || h.ConsecutiveFailures != 0 {
		t.Errorf("health %+v", h)
	}
}

func TestBusyAndFencedSQLite(t *testing.T) {
	db, db2 := sqliteFleetDBs(t)
	testBusyAndFenced(t, [2]riverdriver.Driver[*sql.Tx]{riversqlite.New(db), riversqlite.New(db2)},
		sqliteStates(filepath.Join(t.TempDir(), "state.db")))
}

func TestBusyAndFencedPostgres(t *testing.T) {
	dsn := postgresDB(t)
	p1, p2 := postgresPool(t, dsn), postgresPool(t, dsn)
	if err := Migrate(context.Background(), riverpgxv5.New(p1)); err != nil {
		t.Fatal(err)
	}
	testBusyAndFenced(t, [2]riverdriver.Driver[pgx.Tx]{riverpgxv5.New(p1), riverpgxv5.New(p2)}, postgresStates(dsn))
}

// dbPath returns the file of a SQLite database.
func dbPath(t testing.TB, db *sql.DB) string {
	t.Helper()
	var seq int
	var name, file string
	if err := db.QueryRow(`PRAGMA database_list`).Scan(&seq, &name, &file); err != nil {
		t.Fatal(err)
	}
	return file
}
