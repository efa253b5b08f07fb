package fleet

import (
	"context"
	"database/sql"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/riverqueue/river/riverdriver"
	"github.com/riverqueue/river/riverdriver/riversqlite"
	"github.com/riverqueue/river/rivertype"

	"github.com/mailsync/mailsync"
)

// testTwoProcesses runs two Fleets (as two worker processes would) on one
// database with one State, and checks that every connection is synced
// periodically, never by both at once, with one job each and no duplicate
// ticket.
func testTwoProcesses[TTx any](t *testing.T, drivers [2]riverdriver.Driver[TTx], health HealthStore, conns int) {
	var boxes []*mailbox
	for i := range conns {
		mb := newMailbox(fmt.Sprintf("conn-%03d", i), 2)
		mb.listDelay = 5 * time.Millisecond
		boxes = append(boxes, mb)
	}
	r := newResolver(boxes...)
	state := mailsync.NewMemoryState()
	var fleets [2]*Fleet
	for i, d := range drivers {
		fleets[i] = newFleetOn(t, d, Config{Resolver: r, State: state, Health: health, Workers: 3,
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

func TestTwoProcessesSQLite(t *testing.T) {
	db := openSQLite(t)
	path := filepath.Join(filepath.Dir(dbPath(t, db)), "fleet.db")
	db2, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)")
	if err != nil {
		t.Fatal(err)
	}
	db2.SetMaxOpenConns(1)
	t.Cleanup(func() { db2.Close() })
	health, err := NewSQLHealth(db, SQLite, "")
	if err != nil {
		t.Fatal(err)
	}
	if err := health.Migrate(context.Background()); err != nil {
		t.Fatal(err)
	}
	testTwoProcesses(t, [2]riverdriver.Driver[*sql.Tx]{riversqlite.New(db), riversqlite.New(db2)}, health, 10)
}

// dbPath returns the file of a SQLite database.
func dbPath(t *testing.T, db *sql.DB) string {
	t.Helper()
	var seq int
	var name, file string
	if err := db.QueryRow(`PRAGMA database_list`).Scan(&seq, &name, &file); err != nil {
		t.Fatal(err)
	}
	return file
}
