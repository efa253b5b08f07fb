package main

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/riverdriver/riversqlite"

	"github.com/mailsync/mailsync"
	"github.com/mailsync/mailsync/fleet"
	"github.com/mailsync/mailsync/imap"
	"github.com/mailsync/mailsync/sqlstate"
)

// fleetRun runs one cycle through a fleet.Fleet the way
// examples/mail2ticket -serve sets one up on the embedded default: River
// (riversqlite, one connection), the fleet's SQLHealth and the sqlstate
// State all in the same SQLite file, one process with `workers` River
// workers (the concurrency), a lease per sync.
type fleetRun struct {
	st      *sqlstate.State
	host    string
	port    int
	opts    imap.Options
	sink    mailsync.Sink
	logger  *slog.Logger
	workers int

	fetchCooldown, fetchPoll time.Duration

	// riverPlain opens River's SQLite connection with sql.Open (no cache
	// of prepared statements), as before sqlstate.OpenSQLiteDB.
	riverPlain bool

	// pgDSN, when set, puts River (riverpgxv5) and the health on
	// PostgreSQL (st is then on it too); pgPIDFile is its postmaster.pid.
	pgDSN, pgPIDFile string

	// secondCycle, when positive, is the fleet's Interval, and the run
	// goes on until every connection was synced twice: the second cycle
	// is what a running fleet does every Interval (its connections to the
	// database open, its statements prepared, its caches warm).
	// onFirstCycle is called when the first cycle ended.
	secondCycle  time.Duration
	onFirstCycle func()
}

type fleetResult struct {
	wall, cpu  time.Duration
	pgCPU      time.Duration // of the PostgreSQL server, over the whole run
	goroutines uint64        // started in the cycle
	failed     int
	firstErr   string

	// With fleetRun.secondCycle: from the end of the first cycle to the
	// end of the second (every connection synced twice).
	second struct {
		cpu, pgCPU time.Duration
		goroutines uint64
		syncs      int // finished in the window
	}
}

// countingHealth sees the one health update of every finished sync.
type countingHealth struct {
	fleet.HealthStore
	mu       sync.Mutex
	syncs    map[string]int
	failed   int
	firstErr string
	all      chan struct{} // every connection synced once
	twice    chan struct{} // every connection synced twice
	want     int
	nOnce    int // connections synced at least once
	nTwice   int // and twice
	total    int // syncs
}

// syncsSoFar is the number of syncs finished so far.
func (h *countingHealth) syncsSoFar() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.total
}

func newCountingHealth(h fleet.HealthStore, want int) *countingHealth {
	return &countingHealth{HealthStore: h, syncs: map[string]int{}, all: make(chan struct{}), twice: make(chan struct{}), want: want}
}

func (h *countingHealth) Update(ctx context.Context, id string, fn func(*fleet.Health)) (before, after fleet.Health, err error) {
	before, after, err = h.HealthStore.Update(ctx, id, fn)
	h.mu.Lock()
	defer h.mu.Unlock()
	h.syncs[id]++
	h.total++
	if err != nil || after.ConsecutiveFailures > 0 {
		h.failed++
		if h.firstErr == "" {
			h.firstErr = fmt.Sprintf("%s: %s %s %v", id, after.LastErrorKind, after.LastError, err)
		}
	}
	switch h.syncs[id] {
	case 1:
		if h.nOnce++; h.nOnce == h.want {
			close(h.all)
		}
	case 2:
		if h.nTwice++; h.nTwice == h.want {
			close(h.twice)
		}
	}
	return
}

func (r *fleetRun) Resolve(ctx context.Context, id string, _ mailsync.Secret) (fleet.Target, error) {
	if !isUserName(id) {
		return fleet.Target{}, fmt.Errorf("unknown connection %q: %w", id, fleet.ErrUnknownConnection)
	}
	conn := mailsync.Connection{Name: id, Enabled: true, User: id, Server: r.host, Port: r.port,
		Protocol: mailsync.IMAP, ConnectedWith: []string{"bench"}}
	c, err := imap.New(conn, r.opts)
	if err != nil {
		return fleet.Target{}, err
	}
	return fleet.Target{Connector: c, Mapping: mailsync.DefaultMapping("bench"), Sink: r.sink, Secrets: []mailsync.Secret{r.opts.Password}}, nil
}

func (r *fleetRun) run(ctx context.Context, from, to int) (fleetResult, error) {
	if r.pgDSN != "" {
		return r.runPostgres(ctx, from, to)
	}
	db := r.st.DB()
	health, err := fleet.NewSQLHealth(db, fleet.SQLite, sqlstate.DefaultPrefix)
	if err != nil {
		return fleetResult{}, err
	}
	if err := health.Migrate(ctx); err != nil {
		return fleetResult{}, err
	}
	// River's own connection (riversqlite wants one) on the same file.
	var path string
	if err := db.QueryRowContext(ctx, "SELECT file FROM pragma_database_list WHERE name = 'main'").Scan(&path); err != nil {
		return fleetResult{}, err
	}
	var rdb *sql.DB
	if r.riverPlain {
		q := url.Values{}
		q.Add("_pragma", "busy_timeout(10000)")
		q.Add("_pragma", "journal_mode(WAL)")
		rdb, err = sql.Open("sqlite", "file:"+(&url.URL{Path: path}).EscapedPath()+"?"+q.Encode())
	} else {
		// The state's settings and its cache of prepared statements, so
		// that River's statements are parsed once, not on every call.
		rdb, err = sqlstate.OpenSQLiteDB(path)
	}
	if err != nil {
		return fleetResult{}, err
	}
	defer rdb.Close()
	rdb.SetMaxOpenConns(1)
	driver := riversqlite.New(rdb)
	if err := fleet.Migrate(ctx, driver); err != nil {
		return fleetResult{}, err
	}
	// Each run is one cycle: the previous run's jobs (snoozed for an
	// hour) go, so that every connection is due now.
	if _, err := rdb.ExecContext(ctx, "DELETE FROM river_job WHERE kind = ?", fleet.JobKind); err != nil {
		return fleetResult{}, err
	}
	return cycle(ctx, r, driver, health, from, to)
}

// runPostgres is run on PostgreSQL: River through riverpgxv5 on a pgx
// pool, the health in the same database as the state.
func (r *fleetRun) runPostgres(ctx context.Context, from, to int) (fleetResult, error) {
	pg0 := pgCPU(r.pgPIDFile)
	health, err := fleet.NewSQLHealth(r.st.DB(), fleet.Postgres, sqlstate.DefaultPrefix)
	if err != nil {
		return fleetResult{}, err
	}
	if err := health.Migrate(ctx); err != nil {
		return fleetResult{}, err
	}
	pool, err := pgxpool.New(ctx, r.pgDSN)
	if err != nil {
		return fleetResult{}, err
	}
	driver := riverpgxv5.New(pool)
	if err := fleet.Migrate(ctx, driver); err != nil {
		pool.Close()
		return fleetResult{}, err
	}
	if _, err := pool.Exec(ctx, "DELETE FROM river_job WHERE kind = $1", fleet.JobKind); err != nil {
		pool.Close()
		return fleetResult{}, err
	}
	res, err := cycle(ctx, r, driver, health, from, to)
	pool.Close()
	r.st.Close() // its backends end, so their CPU is counted
	time.Sleep(300 * time.Millisecond)
	res.pgCPU = pgCPU(r.pgPIDFile) - pg0
	return res, err
}

// pgCPU is the CPU time (user+sys) used so far by the PostgreSQL server
// whose postmaster.pid is pidFile: the postmaster's own and its reaped
// children's, plus its live children's.
func pgCPU(pidFile string) time.Duration {
	b, err := os.ReadFile(pidFile)
	if err != nil {
		return 0
	}
	master, _ := strconv.Atoi(strings.TrimSpace(strings.SplitN(string(b), "\n", 2)[0]))
	tick := 10 * time.Millisecond // USER_HZ = 100 on Linux
	var total time.Duration
	dirs, _ := os.ReadDir("/proc")
	for _, d := range dirs {
		pid, err := strconv.Atoi(d.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(filepath.Join("/proc", d.Name(), "stat"))
		if err != nil {
			continue
		}
		s := string(stat)
		f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:]) // from field 3 (state) on
		if len(f) < 15 {
			continue
		}
		ppid, _ := strconv.Atoi(f[1])
		if pid != master && ppid != master {
			continue
		}
		n := 2 // utime, stime
		if pid == master {
			n = 4 // and cutime, cstime
		}
		for _, v := range f[11 : 11+n] {
			t, _ := strconv.ParseInt(v, 10, 64)
			total += time.Duration(t) * tick
		}
	}
	return total
}

// cycle schedules the connections [from, to) on a fresh Fleet and waits
// until each was synced once (with r.secondCycle, twice).
func cycle[TTx any](ctx context.Context, r *fleetRun, driver riverdriver.Driver[TTx], health fleet.HealthStore, from, to int) (fleetResult, error) {
	ch := newCountingHealth(health, to-from)
	interval := time.Hour
	if r.secondCycle > 0 {
		interval = r.secondCycle
	}
	f, err := fleet.New(driver, fleet.Config{
		Resolver: r, State: r.st, Health: ch, Workers: r.workers,
		Interval: interval, Jitter: -1, Logger: r.logger,
		River: func(rc *river.Config) {
			// What mail2ticket -serve sets for short intervals: riversqlite
			// polls for jobs (no LISTEN/NOTIFY), and River's default
			// cooldown (100 ms between fetches) would cap 4 workers at
			// 40 syncs a second.
			rc.FetchPollInterval = r.fetchPoll
			rc.FetchCooldown = r.fetchCooldown
		},
	})
	if err != nil {
		return fleetResult{}, err
	}
	ids := make([]string, 0, to-from)
	for i := from; i < to; i++ {
		ids = append(ids, userName(i))
	}
	u0, s0 := cpuTimes()
	g0 := goroutinesStarted()
	start := time.Now()
	if err := f.Start(ctx); err != nil {
		return fleetResult{}, err
	}
	if _, err := f.ScheduleMany(ctx, ids); err != nil {
		f.Stop(context.Background())
		return fleetResult{}, err
	}
	select {
	case <-ch.all:
	case <-time.After(30 * time.Minute):
		f.Stop(context.Background())
		return fleetResult{}, errors.New("the cycle did not end within 30 minutes")
	}
	wall := time.Since(start)
	u1, s1 := cpuTimes()
	g1 := goroutinesStarted()
	res := fleetResult{wall: wall, cpu: (u1 - u0) + (s1 - s0), goroutines: g1 - g0}
	if r.secondCycle > 0 {
		if r.onFirstCycle != nil {
			r.onFirstCycle()
		}
		pg1 := pgCPU(r.pgPIDFile)
		n1 := ch.syncsSoFar()
		select {
		case <-ch.twice:
		case <-time.After(30*time.Minute + r.secondCycle):
			f.Stop(context.Background())
			return fleetResult{}, errors.New("the second cycle did not end within 30 minutes")
		}
		u2, s2 := cpuTimes()
		res.second.syncs = ch.syncsSoFar() - n1
		res.second.cpu = (u2 - u1) + (s2 - s1)
		res.second.goroutines = goroutinesStarted() - g1
		if r.pgPIDFile != "" {
			res.second.pgCPU = pgCPU(r.pgPIDFile) - pg1
		}
	}
	if err := f.Stop(ctx); err != nil {
		return fleetResult{}, err
	}
	ch.mu.Lock()
	defer ch.mu.Unlock()
	res.failed, res.firstErr = ch.failed, ch.firstErr
	return res, nil
}
