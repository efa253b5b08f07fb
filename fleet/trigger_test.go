package fleet

import (
	"context"
	"database/sql"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river/riverdriver"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/riverdriver/riversqlite"
	"github.com/riverqueue/river/rivertype"

	"github.com/mailsync/mailsync"
)

// sqliteHealth makes the SQLHealth of a fleet process on db.
func sqliteHealth(t *testing.T, db *sql.DB) *SQLHealth {
	t.Helper()
	return migratedHealth(t, db, SQLite)
}

// testTrigger runs a worker Fleet (process B) and an insert-only Fleet
// (process A, as a web process receiving notifications) on one database,
// and triggers from A: a Trigger while B's worker runs the sync (after it
// read its cursor) makes exactly one more run right after it, however many
// Triggers came; a Trigger while the job waits runs it now; a Trigger
// between the end of the run and River's recording of its snooze is not
// lost either; an unscheduled connection reports false.
func testTrigger[TTx any](t *testing.T, drivers [2]riverdriver.Driver[TTx], healths [2]HealthStore) {
	ctx := context.Background()
	mb := newMailbox("support", 1)
	mb.block = make(chan struct{})
	mb.entered = make(chan struct{}, 1)
	r := newResolver(mb)
	b := newFleetOn(t, drivers[0], Config{Resolver: r, Health: healths[0], Interval: time.Hour, Workers: 2, Holder: "B"})
	a := newFleetOn(t, drivers[1], Config{Resolver: r, Health: healths[1], Interval: time.Hour, Workers: -1, Holder: "A"})
	// Armed for the window test below: a Trigger after the run ended,
	// before River recorded its snooze.
	var armed atomic.Bool
	done := make(chan error, 1)
	b.testHookSnooze = func(string, ErrorKind, time.Duration) {
		if !armed.CompareAndSwap(true, false) {
			return
		}
		go func() {
			_, err := a.Trigger(ctx, "support")
			done <- err
		}()
		time.Sleep(200 * time.Millisecond) // the Trigger finds the run ended, the job running
	}

	if ok, err := a.Trigger(ctx, "support"); err != nil || ok {
		t.Fatalf("Trigger of an unscheduled connection = %v, %v; want false", ok, err)
	}
	if _, err := a.Schedule(ctx, "support"); err != nil {
		t.Fatal(err)
	}
	select {
	case <-mb.entered:
	case <-time.After(15 * time.Second):
		t.Fatal("the first sync did not start")
	}
	// The sync is in List (it has read its cursor): notifications now.
	for i := range 5 {
		if ok, err := a.Trigger(ctx, "support"); err != nil || !ok {
			t.Fatalf("Trigger %d while running = %v, %v", i, ok, err)
		}
	}
	close(mb.block)
	eventually(t, 15*time.Second, "one more sync after the run", func() bool { return len(mb.calls()) >= 2 })
	waitScheduled(t, a, "support")
	time.Sleep(300 * time.Millisecond)
	if n := len(mb.calls()); n != 2 {
		t.Fatalf("%d syncs after 5 Triggers during one run, want 2 (the run and one more)", n)
	}
	if j := jobsOf(t, a, "support")[0]; time.Until(j.ScheduledAt) < 50*time.Minute {
		t.Errorf("after the extra run the job is due in %s, want the interval (1h)", time.Until(j.ScheduledAt).Round(time.Second))
	}

	// Waiting: runs now, once for several Triggers. The run it starts
	// waits in List until the three were sent: a run that ended between
	// two of them would rightly make the next one run it again.
	block := make(chan struct{})
	mb.mu.Lock()
	mb.block = block
	mb.mu.Unlock()
	for range 3 {
		if ok, err := a.Trigger(ctx, "support"); err != nil || !ok {
			t.Fatalf("Trigger while waiting = %v, %v", ok, err)
		}
	}
	close(block)
	eventually(t, 15*time.Second, "the triggered sync", func() bool { return len(mb.calls()) >= 3 })
	waitScheduled(t, a, "support")
	time.Sleep(300 * time.Millisecond)
	if n := len(mb.calls()); n > 4 {
		t.Fatalf("%d syncs, want at most 4 (3 Triggers of a waiting job: one run, at most one more if one landed during it)", n)
	}

	// A Trigger after the run ended, before River recorded its snooze.
	before := len(mb.calls())
	armed.Store(true)
	if _, err := a.Trigger(ctx, "support"); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Trigger in the window: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the Trigger in the window did not return")
	}
	eventually(t, 15*time.Second, "the sync asked for in the window", func() bool { return len(mb.calls()) >= before+2 })
	waitScheduled(t, a, "support")

	if ok, err := a.Unschedule(ctx, "support"); err != nil || !ok {
		t.Fatalf("Unschedule = %v, %v", ok, err)
	}
	if ok, err := a.Trigger(ctx, "support"); err != nil || ok {
		t.Errorf("Trigger after Unschedule = %v, %v; want false", ok, err)
	}
}

// waitScheduled waits until the connection's job is snoozed.
func waitScheduled(t *testing.T, f *Fleet, id string) {
	t.Helper()
	eventually(t, 15*time.Second, "the job to snooze", func() bool {
		j := jobsOf(t, f, id)
		return len(j) == 1 && j[0].State == rivertype.JobStateScheduled
	})
}

func TestTriggerSQLite(t *testing.T) {
	db, db2 := sqliteFleetDBs(t)
	testTrigger(t, [2]riverdriver.Driver[*sql.Tx]{riversqlite.New(db), riversqlite.New(db2)},
		[2]HealthStore{sqliteHealth(t, db), sqliteHealth(t, db2)})
}

func TestTriggerPostgres(t *testing.T) {
	dsn := postgresDB(t)
	p1, p2 := postgresPool(t, dsn), postgresPool(t, dsn)
	if err := Migrate(context.Background(), riverpgxv5.New(p1)); err != nil {
		t.Fatal(err)
	}
	testTrigger(t, [2]riverdriver.Driver[pgx.Tx]{riverpgxv5.New(p1), riverpgxv5.New(p2)},
		[2]HealthStore{postgresHealth(t, dsn), postgresHealth(t, dsn)})
}

// TestTriggerMemoryHealth: with the default MemoryHealth (one process), a
// Trigger during a run makes one more run too.
func TestTriggerMemoryHealth(t *testing.T) {
	db := openSQLite(t)
	mb := newMailbox("support", 1)
	mb.block = make(chan struct{})
	mb.entered = make(chan struct{}, 1)
	f := newFleet(t, db, Config{Resolver: newResolver(mb), Interval: time.Hour})
	ctx := context.Background()
	if _, err := f.Schedule(ctx, "support"); err != nil {
		t.Fatal(err)
	}
	select {
	case <-mb.entered:
	case <-time.After(15 * time.Second):
		t.Fatal("the first sync did not start")
	}
	for range 3 {
		if ok, err := f.Trigger(ctx, "support"); err != nil || !ok {
			t.Fatalf("Trigger = %v, %v", ok, err)
		}
	}
	close(mb.block)
	eventually(t, 15*time.Second, "one more sync", func() bool { return len(mb.calls()) >= 2 })
	waitScheduled(t, f, "support")
	time.Sleep(300 * time.Millisecond)
	if n := len(mb.calls()); n != 2 {
		t.Fatalf("%d syncs, want 2", n)
	}
}

// failingEndRun is an SQLHealth whose EndRun fails, as when the database
// cannot be reached at the end of a run.
type failingEndRun struct{ *SQLHealth }

func (failingEndRun) EndRun(context.Context, string, string) (bool, error) {
	return false, errors.New("database unreachable")
}

// TestEndRunFailureSyncsAgain: when the trigger mark cannot be read at the
// end of a run, the worker runs once more at once rather than risk a lost
// notification waiting for the next poll (an hour here).
func TestEndRunFailureSyncsAgain(t *testing.T) {
	db := openSQLite(t)
	snoozes := make(chan time.Duration, 16)
	f := startFleet(t, db, Config{Resolver: newResolver(newMailbox("support", 1)), Health: failingEndRun{sqliteHealth(t, db)},
		State: mailsync.NewMemoryState(), Interval: time.Hour, Jitter: -1}, func(f *Fleet) {
		f.testHookSnooze = func(_ string, _ ErrorKind, d time.Duration) {
			select {
			case snoozes <- d:
			default:
			}
		}
	})
	if _, err := f.Schedule(context.Background(), "support"); err != nil {
		t.Fatal(err)
	}
	select {
	case d := <-snoozes:
		if d != 0 {
			t.Errorf("snooze after a run whose trigger mark could not be read: %s, want 0", d)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no run ended")
	}
}

// TestBackstopNeverShortensThePoll: the backstop interval of a pushed
// connection is the Target's, else the Config's, and never shorter than
// its polling interval.
func TestBackstopNeverShortensThePoll(t *testing.T) {
	for _, c := range []struct{ interval, config, target, want time.Duration }{
		{10 * time.Minute, 30 * time.Minute, 0, 30 * time.Minute},
		{10 * time.Minute, 30 * time.Minute, 2 * time.Hour, 2 * time.Hour},
		{3 * time.Hour, 30 * time.Minute, 0, 3 * time.Hour},
		{3 * time.Hour, 30 * time.Minute, time.Hour, 3 * time.Hour},
	} {
		if got := backstopInterval(c.interval, c.config, c.target); got != c.want {
			t.Errorf("backstopInterval(%s, %s, %s) = %s, want %s", c.interval, c.config, c.target, got, c.want)
		}
	}
}

// TestTriggerPollBacksOff: waiting the whole triggerWait for River to
// record a snooze reads the job a few dozen times, not every 10 ms.
func TestTriggerPollBacksOff(t *testing.T) {
	polls, total := 0, time.Duration(0)
	for wait := time.Duration(0); total < triggerWait; polls++ {
		wait = nextTriggerPoll(wait)
		total += wait
	}
	if first := nextTriggerPoll(0); first != 10*time.Millisecond {
		t.Errorf("first poll after %v, want 10ms", first)
	}
	if polls > 60 {
		t.Errorf("%d polls in %v", polls, triggerWait)
	}
}
