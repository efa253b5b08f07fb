package fleet

import (
	"context"
	"database/sql"
	"os"
	"os/exec"
	"syscall"
	"testing"
	"time"

	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riversqlite"
	"github.com/riverqueue/river/rivertype"

	"github.com/mailsync/mailsync"
)

const killChildEnv = "MAILSYNC_FLEET_KILL_CHILD" // the database path, in the child

// TestKillHelperProcess is the worker process that TestKilledWorker kills:
// it takes the job and blocks in the sync until it dies.
func TestKillHelperProcess(t *testing.T) {
	path := os.Getenv(killChildEnv)
	if path == "" {
		return // not the child
	}
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)")
	if err != nil {
		t.Fatal(err)
	}
	db.SetMaxOpenConns(1)
	mb := newMailbox("support", 1)
	mb.block = make(chan struct{}) // never closed
	mb.entered = make(chan struct{}, 1)
	f, err := New(riversqlite.New(db), Config{Resolver: newResolver(mb), State: mailsync.NewMemoryState(),
		Interval: time.Hour, River: fastRiver})
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	<-mb.entered
	if err := os.WriteFile(path+".syncing", nil, 0o600); err != nil {
		t.Fatal(err)
	}
	select {} // until killed
}

// TestKilledWorker kills a worker process in the middle of a sync (SIGKILL:
// no clean-up) and checks that another process syncs the connection once
// River has rescued the job, with no second job and no duplicate ticket.
func TestKilledWorker(t *testing.T) {
	if testing.Short() {
		t.Skip("waits for River's rescuer")
	}
	db := openSQLite(t)
	path := dbPath(t, db)
	mb := newMailbox("support", 1)
	r := newResolver(mb)
	// An insert-only fleet schedules; the child works.
	ins, err := New(riversqlite.New(db), Config{Resolver: r, State: mailsync.NewMemoryState(), Workers: -1})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ins.Schedule(context.Background(), "support"); err != nil {
		t.Fatal(err)
	}

	child := exec.Command(os.Args[0], "-test.run=^TestKillHelperProcess$", "-test.count=1")
	child.Env = append(os.Environ(), killChildEnv+"="+path)
	child.Stdout, child.Stderr = os.Stderr, os.Stderr
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = child.Process.Kill(); _ = child.Wait() })
	eventually(t, 60*time.Second, "the child to be syncing", func() bool {
		_, err := os.Stat(path + ".syncing")
		return err == nil
	})
	if err := child.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = child.Wait()
	killed := time.Now()
	if j := jobsOf(t, ins, "support"); len(j) != 1 || j[0].State != rivertype.JobStateRunning {
		t.Fatalf("after the kill: jobs %v, want one still running", jobStates(j))
	}

	// The surviving process; a short SyncTimeout so the rescue comes soon.
	f := newFleetOn(t, riversqlite.New(db), Config{Resolver: r, Interval: time.Hour, SyncTimeout: time.Second,
		River: func(c *river.Config) {
			fastRiver(c)
			c.JobTimeout, c.RescueStuckJobsAfter = time.Second, 2*time.Second
		}})
	eventually(t, 90*time.Second, "the rescued sync", func() bool { return len(mb.calls()) == 1 })
	t.Logf("synced again %s after the kill", time.Since(killed).Round(time.Second))
	var j []*rivertype.JobRow
	eventually(t, 10*time.Second, "the job to snooze", func() bool {
		j = jobsOf(t, f, "support")
		return len(j) == 1 && j[0].State == rivertype.JobStateScheduled
	})
	if n := len(r.sink.Tickets()); n != 1 {
		t.Errorf("%d tickets, want 1", n)
	}
	if h := healthOf(t, f, "support"); h.ConsecutiveFailures != 0 || h.MessagesSynced != 1 {
		t.Errorf("health %+v", h)
	}
	if len(j[0].Errors) != 1 {
		t.Errorf("job errors %v, want River's one rescue", j[0].Errors)
	}
}
