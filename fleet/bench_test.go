package fleet

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/riverdriver/riversqlite"
	"github.com/riverqueue/river/rivertype"

	"github.com/mailsync/mailsync"
)

// benchConnections is the number of connections of the fleet benchmarks
// (MAILSYNC_FLEET_BENCH_CONNECTIONS, default 1000).
func benchConnections() int {
	if n, err := strconv.Atoi(os.Getenv("MAILSYNC_FLEET_BENCH_CONNECTIONS")); err == nil && n > 0 {
		return n
	}
	return 1000
}

// benchFleet schedules n connections of one new message each on a Fleet
// with the default 10 workers and measures how long until every one was
// synced once: the fleet's own cost per sync (River, the lease, health,
// metrics), the connectors being in-memory fakes.
func benchFleet[TTx any](b *testing.B, driver riverdriver.Driver[TTx], health HealthStore, n int) {
	var boxes []*mailbox
	var ids []string
	for i := range n {
		mb := newMailbox(fmt.Sprintf("conn-%04d", i), 1)
		boxes = append(boxes, mb)
		ids = append(ids, mb.name)
	}
	r := newResolver(boxes...)
	f, err := New(driver, Config{Resolver: r, State: mailsync.NewMemoryState(), Health: health, Interval: time.Hour, River: fastRiver})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	start := time.Now()
	if _, err := f.ScheduleMany(ctx, ids); err != nil {
		b.Fatal(err)
	}
	scheduled := time.Since(start)
	if err := f.Start(ctx); err != nil {
		b.Fatal(err)
	}
	defer f.Stop(context.Background())
	deadline := time.Now().Add(10 * time.Minute)
	for {
		done := 0
		for _, mb := range boxes {
			if len(mb.calls()) > 0 {
				done++
			}
		}
		if done == n {
			break
		}
		if time.Now().After(deadline) {
			b.Fatalf("only %d of %d connections synced", done, n)
		}
		time.Sleep(20 * time.Millisecond)
	}
	// Wait for the last health records and snoozes.
	for {
		res, err := f.client.JobList(ctx, river.NewJobListParams().Kinds(JobKind).States(rivertype.JobStateRunning, rivertype.JobStateAvailable).First(1))
		if err != nil {
			b.Fatal(err)
		}
		if len(res.Jobs) == 0 {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	total := time.Since(start)
	if got := len(r.sink.Tickets()); got != n {
		b.Fatalf("%d tickets, want %d", got, n)
	}
	b.ReportMetric(float64(scheduled.Milliseconds()), "ms-schedule")
	b.ReportMetric(float64(total.Milliseconds()), "ms-total")
	b.ReportMetric(float64(n)/total.Seconds(), "syncs/s")
}

// BenchmarkFleetSQLite: go test -run '^$' -bench FleetSQLite -benchtime 1x ./fleet/
func BenchmarkFleetSQLite(b *testing.B) {
	for range b.N {
		db := openSQLite(b)
		health, err := NewSQLHealth(db, SQLite, "")
		if err != nil {
			b.Fatal(err)
		}
		if err := health.Migrate(context.Background()); err != nil {
			b.Fatal(err)
		}
		benchFleet(b, riversqlite.New(db), health, benchConnections())
	}
}

// BenchmarkFleetPostgres runs on the private PostgreSQL of internal/pgtest:
// go test -run '^$' -bench FleetPostgres -benchtime 1x ./fleet/
func BenchmarkFleetPostgres(b *testing.B) {
	for range b.N {
		dsn := postgresDB(b)
		pool := postgresPool(b, dsn)
		if err := Migrate(context.Background(), riverpgxv5.New(pool)); err != nil {
			b.Fatal(err)
		}
		benchFleet[pgx.Tx](b, riverpgxv5.New(pool), postgresHealth(b, dsn), benchConnections())
	}
}
