package fleet

import (
	"context"
	"database/sql"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/riverdriver/riversqlite"
	"github.com/riverqueue/river/rivertype"

	"github.com/mailsync/mailsync/sqlstate"
)

// The child of TestKilledWorker* learns its databases from these.
const (
	killChildEnv  = "MAILSYNC_FLEET_KILL_CHILD" // "sqlite" or "postgres", in the child
	killRiverEnv  = "MAILSYNC_FLEET_KILL_RIVER" // River's SQLite file or PostgreSQL DSN
	killStateEnv  = "MAILSYNC_FLEET_KILL_STATE" // sqlstate's SQLite file or PostgreSQL DSN
	killMarkerEnv = "MAILSYNC_FLEET_KILL_MARK"  // the file the child creates once it syncs
)

// killChildLeaseTTL is the child's lease: it expires that long after the
// kill at the latest.
const killChildLeaseTTL = time.Second

// TestKillHelperProcess is the worker process that TestKilledWorker* kills:
// it takes the job, holds the connection's lease in sqlstate and blocks in
// the sync until it dies.
func TestKillHelperProcess(t *testing.T) {
	dialect := os.Getenv(killChildEnv)
	if dialect == "" {
		return // not the child
	}
	ctx := context.Background()
	mb := newMailbox("support", 1)
	mb.block = make(chan struct{}) // never closed
	mb.entered = make(chan struct{}, 1)
	cfg := Config{Resolver: newResolver(mb), Interval: time.Hour, River: fastRiver,
		LeaseTTL: killChildLeaseTTL, Holder: "killed-child"}
	var f *Fleet
	var err error
	switch dialect {
	case "sqlite":
		var db *sql.DB
		db, err = sqlstate.OpenSQLiteDB(os.Getenv(killRiverEnv))
		if err != nil {
			t.Fatal(err)
		}
		db.SetMaxOpenConns(1)
		if cfg.State, err = sqlstate.OpenSQLite(ctx, os.Getenv(killStateEnv)); err != nil {
			t.Fatal(err)
		}
		f, err = New(riversqlite.New(db), cfg)
	case "postgres":
		var pool *pgxpool.Pool
		pool, err = pgxpool.New(ctx, os.Getenv(killRiverEnv))
		if err != nil {
			t.Fatal(err)
		}
		if cfg.State, err = sqlstate.OpenPostgres(ctx, os.Getenv(killStateEnv), sqlstate.Options{}); err != nil {
			t.Fatal(err)
		}
		f, err = New(riverpgxv5.New(pool), cfg)
	default:
		t.Fatalf("unknown dialect %q", dialect)
	}
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Start(ctx); err != nil {
		t.Fatal(err)
	}
	<-mb.entered
	if err := os.WriteFile(os.Getenv(killMarkerEnv), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	select {} // until killed
}

// leaseRow is a connection's row in sqlstate's lease table.
type leaseRow struct {
	holder  string
	token   int64
	expires time.Time
}

// leaseOf reads connection's lease from st's table (default prefix).
func leaseOf(t testing.TB, st *sqlstate.State, pg bool, connection string) (leaseRow, bool) {
	t.Helper()
	var l leaseRow
	var err error
	if pg {
		err = st.DB().QueryRow(`SELECT holder, token, expires FROM mailsync_leases WHERE conn = $1`, connection).Scan(&l.holder, &l.token, &l.expires)
	} else {
		var ms int64
		err = st.DB().QueryRow(`SELECT holder, token, expires_ms FROM mailsync_leases WHERE conn = ?`, connection).Scan(&l.holder, &l.token, &ms)
		l.expires = time.UnixMilli(ms)
	}
	if errors.Is(err, sql.ErrNoRows) {
		return l, false
	}
	if err != nil {
		t.Fatal(err)
	}
	return l, true
}

// testKilledWorker kills a worker process in the middle of a sync
// (SIGKILL: no clean-up, its lease stays in sqlstate until it expires) and
// checks that another process syncs the connection once River has
// rescued the job — under a new lease, taken after the dead one expired —
// with no second job and no duplicate ticket. ins is an insert-only Fleet
// and survivor makes the surviving worker process, both on the same
// databases as the child, whose environment is env.
//
// With leaseRescue, River's rescuer is out of the way (RescueStuckJobsAfter
// one hour) and the survivor's Config.LeaseRescue must rescue the job
// within seconds of the dead lease's expiry.
func testKilledWorker(t *testing.T, env []string, st *sqlstate.State, pg bool, ins *Fleet, r *resolver, mb *mailbox, leaseRescue bool, survivor func(Config) *Fleet) {
	if _, err := ins.Schedule(context.Background(), "support"); err != nil {
		t.Fatal(err)
	}
	marker := filepath.Join(t.TempDir(), "syncing")
	child := exec.Command(os.Args[0], "-test.run=^TestKillHelperProcess$", "-test.count=1")
	child.Env = append(append(os.Environ(), env...), killMarkerEnv+"="+marker)
	child.Stdout, child.Stderr = os.Stderr, os.Stderr
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = child.Process.Kill(); _ = child.Wait() })
	eventually(t, 60*time.Second, "the child to be syncing", func() bool {
		_, err := os.Stat(marker)
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
	dead, ok := leaseOf(t, st, pg, "support")
	if !ok || dead.holder != "killed-child" || !dead.expires.After(killed.Add(-killChildLeaseTTL)) {
		t.Fatalf("after the kill: lease %+v (found %v), want the child's", dead, ok)
	}

	// The surviving process; a short SyncTimeout so the rescue comes soon.
	cfg := Config{Resolver: r, State: st, Interval: time.Hour, SyncTimeout: time.Second, Holder: "survivor",
		River: func(c *river.Config) {
			fastRiver(c)
			c.JobTimeout, c.RescueStuckJobsAfter = time.Second, 2*time.Second
		}}
	wait := 90 * time.Second
	if leaseRescue {
		cfg.LeaseRescue, cfg.LeaseTTL = true, killChildLeaseTTL
		cfg.River = func(c *river.Config) {
			fastRiver(c)
			c.JobTimeout, c.RescueStuckJobsAfter = time.Second, time.Hour
		}
		wait = 15 * time.Second
	}
	f := survivor(cfg)
	eventually(t, wait, "the rescued sync", func() bool { return len(mb.calls()) == 1 })
	resynced := mb.calls()[0]
	t.Logf("synced again %s after the kill (the dead lease expired %s after it)",
		resynced.Sub(killed).Round(100*time.Millisecond), dead.expires.Sub(killed).Round(100*time.Millisecond))
	var j []*rivertype.JobRow
	eventually(t, 10*time.Second, "the job to snooze", func() bool {
		j = jobsOf(t, f, "support")
		return len(j) == 1 && j[0].State == rivertype.JobStateScheduled
	})
	if resynced.Before(dead.expires) {
		t.Errorf("synced again at %s, before the dead lease expired at %s", resynced, dead.expires)
	}
	if l, ok := leaseOf(t, st, pg, "support"); !ok || l.holder != "survivor" || l.token <= dead.token {
		t.Errorf("lease after the rescue %+v, want the survivor's with a token above %d", l, dead.token)
	}
	if n := len(r.sink.Tickets()); n != 1 {
		t.Errorf("%d tickets, want 1", n)
	}
	if h := healthOf(t, f, "support"); h.ConsecutiveFailures != 0 || h.MessagesSynced != 1 {
		t.Errorf("health %+v", h)
	}
	if len(j[0].Errors) != 1 {
		t.Errorf("job errors %v, want one rescue", j[0].Errors)
	} else if rescued := strings.Contains(j[0].Errors[0].Error, "lease expired"); rescued != leaseRescue {
		t.Errorf("job error %q: rescued by the lease rescue %v, want %v", j[0].Errors[0].Error, rescued, leaseRescue)
	}
}

func TestKilledWorkerSQLite(t *testing.T) {
	if testing.Short() {
		t.Skip("waits for River's rescuer")
	}
	t.Parallel() // mostly waits for River's rescuer
	killedWorkerSQLite(t, false)
}

func TestKilledWorkerLeaseRescueSQLite(t *testing.T) {
	t.Parallel()
	killedWorkerSQLite(t, true)
}

func killedWorkerSQLite(t *testing.T, leaseRescue bool) {
	db := openSQLite(t)
	statePath := filepath.Join(t.TempDir(), "state.db")
	st := sqliteStates(statePath)(t)
	mb := newMailbox("support", 1)
	r := newResolver(mb)
	// An insert-only fleet schedules; the child works.
	ins, err := New(riversqlite.New(db), Config{Resolver: r, State: st, Workers: -1})
	if err != nil {
		t.Fatal(err)
	}
	env := []string{killChildEnv + "=sqlite", killRiverEnv + "=" + dbPath(t, db), killStateEnv + "=" + statePath}
	testKilledWorker(t, env, st, false, ins, r, mb, leaseRescue, func(cfg Config) *Fleet { return newFleetOn(t, riversqlite.New(db), cfg) })
}

func TestKilledWorkerPostgres(t *testing.T) {
	if testing.Short() {
		t.Skip("waits for River's rescuer")
	}
	t.Parallel() // mostly waits for River's rescuer
	killedWorkerPostgres(t, false)
}

func TestKilledWorkerLeaseRescuePostgres(t *testing.T) {
	t.Parallel()
	killedWorkerPostgres(t, true)
}

func killedWorkerPostgres(t *testing.T, leaseRescue bool) {
	dsn := postgresDB(t)
	pool := postgresPool(t, dsn)
	if err := Migrate(context.Background(), riverpgxv5.New(pool)); err != nil {
		t.Fatal(err)
	}
	st := postgresStates(dsn)(t)
	mb := newMailbox("support", 1)
	r := newResolver(mb)
	ins, err := New(riverpgxv5.New(pool), Config{Resolver: r, State: st, Workers: -1})
	if err != nil {
		t.Fatal(err)
	}
	env := []string{killChildEnv + "=postgres", killRiverEnv + "=" + dsn, killStateEnv + "=" + dsn}
	testKilledWorker(t, env, st, true, ins, r, mb, leaseRescue, func(cfg Config) *Fleet { return newFleetOn(t, riverpgxv5.New(pool), cfg) })
}
