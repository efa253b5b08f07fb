package fleet

import (
	"context"
	"crypto/x509"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"

	"github.com/mailsync/mailsync"
	mimap "github.com/mailsync/mailsync/imap"
	"github.com/mailsync/mailsync/internal/dovecottest"
	"github.com/mailsync/mailsync/internal/pgtest"
	"github.com/mailsync/mailsync/sqlstate"
)

// acceptanceWorkerEnv, in a re-executed test binary, names the JSON file
// of an acceptanceConfig: the process is then a fleet worker (see
// acceptanceWorkerMain), not a test run.
const acceptanceWorkerEnv = "MAILSYNC_FLEET_ACCEPTANCE_WORKER"

// acceptanceConfig is what a worker process of TestFleetAcceptance needs.
type acceptanceConfig struct {
	DSN         string        `json:"dsn"`      // PostgreSQL: River, sqlstate, health, sink
	IMAPS       string        `json:"imaps"`    // Dovecot's implicit-TLS address
	CAFile      string        `json:"ca_file"`  // its certificate
	Password    string        `json:"password"` // every user's
	Holder      string        `json:"holder"`   // the worker's lease holder name
	Workers     int           `json:"workers"`
	Interval    time.Duration `json:"interval"`
	LeaseTTL    time.Duration `json:"lease_ttl"`
	SyncTimeout time.Duration `json:"sync_timeout"`
	RescueAfter time.Duration `json:"rescue_after"`
	LeaseRescue bool          `json:"lease_rescue"`
}

// The sink of the acceptance test: tickets in a table of the fleet's
// PostgreSQL database, unique by idempotency key, shared and durable
// across the worker processes (a ticket is durable once its INSERT
// committed). A second CreateTicket with a known key — a message
// redelivered after a kill — is answered Duplicate and logged in
// acceptance_redeliveries, so the test can show that it happened.
const acceptanceSinkSchema = `
CREATE TABLE acceptance_tickets (
	id              bigserial PRIMARY KEY,
	idempotency_key text NOT NULL UNIQUE,
	connection      text NOT NULL,
	message_id      text NOT NULL,
	holder          text NOT NULL,
	created         timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE TABLE acceptance_redeliveries (
	idempotency_key text NOT NULL,
	holder          text NOT NULL,
	at              timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE TABLE acceptance_quarantined (
	idempotency_key text NOT NULL,
	connection      text NOT NULL,
	reason          text NOT NULL
);`

// pgSink is a mailsync.Sink on the acceptance tables.
type pgSink struct {
	pool   *pgxpool.Pool
	holder string
}

// CreateTicket implements mailsync.Sink.
func (s *pgSink) CreateTicket(ctx context.Context, t *mailsync.Ticket) (mailsync.Receipt, error) {
	var id int64
	err := s.pool.QueryRow(ctx, `INSERT INTO acceptance_tickets (idempotency_key, connection, message_id, holder)
		VALUES ($1, $2, $3, $4) ON CONFLICT (idempotency_key) DO NOTHING RETURNING id`,
		t.IdempotencyKey, t.Source.Connection, strings.Trim(t.Source.MessageID, "<>"), s.holder).Scan(&id)
	if errors.Is(err, pgx.ErrNoRows) {
		if err := s.pool.QueryRow(ctx, `SELECT id FROM acceptance_tickets WHERE idempotency_key = $1`, t.IdempotencyKey).Scan(&id); err != nil {
			return mailsync.Receipt{}, err
		}
		if _, err := s.pool.Exec(ctx, `INSERT INTO acceptance_redeliveries (idempotency_key, holder) VALUES ($1, $2)`, t.IdempotencyKey, s.holder); err != nil {
			return mailsync.Receipt{}, err
		}
		return mailsync.Receipt{TicketID: strconv.FormatInt(id, 10), Duplicate: true}, nil
	}
	if err != nil {
		return mailsync.Receipt{}, err
	}
	return mailsync.Receipt{TicketID: strconv.FormatInt(id, 10)}, nil
}

// Quarantine implements mailsync.Sink.
func (s *pgSink) Quarantine(ctx context.Context, q *mailsync.Quarantined) error {
	reason := ""
	if q.Err != nil {
		reason = q.Err.Error()
	}
	_, err := s.pool.Exec(ctx, `INSERT INTO acceptance_quarantined (idempotency_key, connection, reason) VALUES ($1, $2, $3)`,
		q.IdempotencyKey, q.Source.Connection, reason)
	return err
}

// imapResolver resolves a connection id, the Dovecot login, to an IMAP
// connector on the test's Dovecot.
type imapResolver struct {
	host     string
	port     int
	password mailsync.Secret
	roots    *x509.CertPool
	sink     mailsync.Sink
}

// Resolve implements Resolver.
func (r *imapResolver) Resolve(_ context.Context, id string, _ mailsync.Secret) (Target, error) {
	conn := mailsync.Connection{Name: id, Enabled: true, User: id, Server: r.host, Port: r.port,
		Protocol: mailsync.IMAP, ConnectedWith: []string{"incident"}}
	c, err := mimap.New(conn, mimap.Options{Password: r.password, Security: mimap.ImplicitTLS, RootCAs: r.roots})
	if err != nil {
		return Target{}, err
	}
	return Target{Connector: c, Mapping: mailsync.DefaultMapping("incident"), Sink: r.sink,
		Secrets: []mailsync.Secret{r.password}}, nil
}

// acceptanceWorkerMain is a worker process of TestFleetAcceptance: a
// Fleet on the shared PostgreSQL (River, sqlstate, SQLHealth, the sink)
// that syncs the Dovecot users until SIGTERM (a clean stop) or SIGKILL.
func acceptanceWorkerMain() int {
	fail := func(err error) int {
		fmt.Fprintln(os.Stderr, "acceptance worker:", err)
		return 1
	}
	raw, err := os.ReadFile(os.Getenv(acceptanceWorkerEnv))
	if err != nil {
		return fail(err)
	}
	var cfg acceptanceConfig
	if err := json.Unmarshal(raw, &cfg); err != nil {
		return fail(err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	pool, err := pgxpool.New(ctx, cfg.DSN)
	if err != nil {
		return fail(err)
	}
	defer pool.Close()
	state, err := sqlstate.OpenPostgres(ctx, cfg.DSN, sqlstate.Options{})
	if err != nil {
		return fail(err)
	}
	defer state.Close()
	hdb, err := sql.Open("pgx", cfg.DSN)
	if err != nil {
		return fail(err)
	}
	defer hdb.Close()
	health, err := NewSQLHealth(hdb, Postgres, "mailsync_")
	if err != nil {
		return fail(err)
	}
	host, port, err := net.SplitHostPort(cfg.IMAPS)
	if err != nil {
		return fail(err)
	}
	pem, err := os.ReadFile(cfg.CAFile)
	if err != nil {
		return fail(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(pem)
	p, _ := strconv.Atoi(port)
	res := &imapResolver{host: host, port: p, password: mailsync.Secret(cfg.Password), roots: roots,
		sink: &pgSink{pool: pool, holder: cfg.Holder}}
	f, err := New(riverpgxv5.New(pool), Config{Resolver: res, State: state, Health: health,
		Interval: cfg.Interval, Workers: cfg.Workers, SyncTimeout: cfg.SyncTimeout, LeaseTTL: cfg.LeaseTTL,
		Holder: cfg.Holder, LeaseRescue: cfg.LeaseRescue, Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
		River: func(c *river.Config) {
			fastRiver(c)
			c.JobTimeout, c.RescueStuckJobsAfter = cfg.SyncTimeout, cfg.RescueAfter
		}})
	if err != nil {
		return fail(err)
	}
	if err := f.Start(ctx); err != nil {
		return fail(err)
	}
	<-ctx.Done()
	sctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := f.Stop(sctx); err != nil {
		return fail(err)
	}
	return 0
}

// envInt reads a positive integer from the environment.
func envInt(name string, def int) int {
	if n, err := strconv.Atoi(os.Getenv(name)); err == nil && n > 0 {
		return n
	}
	return def
}

// acceptanceWorker is one running worker process.
type acceptanceWorker struct {
	holder string
	cmd    *exec.Cmd
	log    string
	done   chan struct{}
}

// rescue is a connection a killed worker was syncing.
type rescue struct {
	conn    string
	holder  string    // the dead holder
	token   int64     // its lease
	expires time.Time // when its lease expired (database clock)
	killed  time.Time
	by      string        // the holder that took the connection over
	after   time.Duration // from the kill to the take-over being seen
}

// TestFleetAcceptance is issue 13's acceptance test of the fleet, on a
// real Dovecot, PostgreSQL and sqlstate: N users × M messages synced by 4
// worker processes (re-executions of this test binary, each a Fleet on
// riverpgxv5, sqlstate and SQLHealth on the same database) give exactly
// N×M tickets; then, while mail keeps arriving, a worker holding a
// connection's lease (mid-sync) is killed with SIGKILL K times, each time
// replaced by a new process: no message is lost or duplicated, and every
// connection a killed worker held is taken over by another holder (a new
// lease, with a larger fencing token) once its lease expired and River
// rescued its job.
//
// The sink is a table of the same database with a unique idempotency key:
// durable and shared by the processes. The test checks one ticket per
// delivered Message-ID, none for anything else, and logs the redeliveries
// the key absorbed (messages delivered to the sink by a killed worker
// whose Record never committed).
//
// The CI default is small; the full size is
//
//	MAILSYNC_FLEET_USERS=200 MAILSYNC_FLEET_MESSAGES=50 MAILSYNC_FLEET_KILLS=10 \
//	  go test -race -run '^TestFleetAcceptance$' -v -timeout 30m ./fleet/
//
// (defaults 20 users, 10 messages, 3 kills; MAILSYNC_FLEET_PROCESSES,
// default 4, sets the worker processes). The workers run with
// Config.LeaseRescue and a lease TTL of 2 s, so a killed worker's
// connections are taken over within about 4 s of the kill;
// MAILSYNC_FLEET_LEASE_RESCUE=0 leaves the rescue to River, whose rescuer
// runs on the leader every 30 s (SyncTimeout 5 s and RescueStuckJobsAfter
// 6 s keep that to tens of seconds).
func TestFleetAcceptance(t *testing.T) {
	if testing.Short() {
		t.Skip("runs worker processes and waits for River's rescuer")
	}
	t.Parallel() // mostly waits for River's rescuer
	users := envInt("MAILSYNC_FLEET_USERS", 20)
	msgs := envInt("MAILSYNC_FLEET_MESSAGES", 10)
	kills := envInt("MAILSYNC_FLEET_KILLS", 3)
	procs := envInt("MAILSYNC_FLEET_PROCESSES", 4)
	leaseRescue := os.Getenv("MAILSYNC_FLEET_LEASE_RESCUE") != "0"
	const password = "fleet-acceptance-pw"
	ctx := context.Background()
	start := time.Now()

	srv := dovecottest.Shared(t, dovecottest.Options{})
	dsn := pgtest.NewDatabase(t)
	pool := postgresPool(t, dsn)
	if err := Migrate(ctx, riverpgxv5.New(pool)); err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Exec(ctx, acceptanceSinkSchema); err != nil {
		t.Fatal(err)
	}
	state := postgresStates(dsn)(t)
	postgresHealth(t, dsn) // its table, before the workers start

	// The mailboxes, and every Message-ID delivered.
	var mu sync.Mutex
	delivered := map[string]string{} // Message-ID → login
	var logins []string
	seq := 0
	deliver := func(login string) {
		mu.Lock()
		seq++
		id := fmt.Sprintf("m%06d.%s@acceptance.invalid", seq, login)
		delivered[id] = login
		mu.Unlock()
		raw := fmt.Sprintf("From: Customer <customer@example.org>\r\nTo: %s@example.com\r\nSubject: Request %s\r\n"+
			"Date: Sun, 29 Nov 2026 10:00:00 +0000\r\nMessage-ID: <%s>\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nPlease help (%s).\r\n",
			login, id, id, id)
		srv.Deliver(t, login, "INBOX", []byte(raw))
	}
	for i := range users {
		logins = append(logins, srv.AddUser(t, fmt.Sprintf("fleet-acc-%03d", i), password))
	}
	for _, login := range logins {
		for range msgs {
			deliver(login)
		}
	}
	t.Logf("%d users × %d messages delivered in %s", users, msgs, time.Since(start).Round(time.Millisecond))

	// Schedule every connection from an insert-only Fleet, as a web process.
	ins, err := New(riverpgxv5.New(pool), Config{Resolver: &imapResolver{}, State: state, Workers: -1})
	if err != nil {
		t.Fatal(err)
	}
	if n, err := ins.ScheduleMany(ctx, logins); err != nil || n != users {
		t.Fatalf("scheduled %d of %d: %v", n, users, err)
	}

	dir := t.TempDir()
	const leaseTTL, syncTimeout, rescueAfter = 2 * time.Second, 5 * time.Second, 6 * time.Second
	var workers []*acceptanceWorker
	spawn := func() *acceptanceWorker {
		w := &acceptanceWorker{holder: fmt.Sprintf("worker-%02d", len(workers)), done: make(chan struct{})}
		cfg := acceptanceConfig{DSN: dsn, IMAPS: srv.IMAPSAddr, CAFile: srv.CAFile, Password: password, Holder: w.holder,
			Workers: 4, Interval: time.Second, LeaseTTL: leaseTTL, SyncTimeout: syncTimeout, RescueAfter: rescueAfter,
			LeaseRescue: leaseRescue}
		raw, _ := json.Marshal(cfg)
		path := filepath.Join(dir, w.holder+".json")
		if err := os.WriteFile(path, raw, 0o600); err != nil {
			t.Fatal(err)
		}
		w.log = filepath.Join(dir, w.holder+".log")
		logf, err := os.Create(w.log)
		if err != nil {
			t.Fatal(err)
		}
		w.cmd = exec.Command(os.Args[0], "-test.run=^$")
		w.cmd.Env = append(os.Environ(), acceptanceWorkerEnv+"="+path)
		w.cmd.Stdout, w.cmd.Stderr = logf, logf
		if err := w.cmd.Start(); err != nil {
			t.Fatal(err)
		}
		go func() { _ = w.cmd.Wait(); logf.Close(); close(w.done) }()
		workers = append(workers, w)
		return w
	}
	t.Cleanup(func() {
		for _, w := range workers {
			_ = w.cmd.Process.Signal(syscall.SIGTERM)
		}
		for _, w := range workers {
			select {
			case <-w.done:
			case <-time.After(30 * time.Second):
				_ = w.cmd.Process.Kill()
				<-w.done
			}
			if t.Failed() {
				b, _ := os.ReadFile(w.log)
				t.Logf("%s's log:\n%s", w.holder, lastLines(string(b), 30))
			}
		}
	})
	live := map[*acceptanceWorker]bool{}
	for range procs {
		live[spawn()] = true
	}

	count := func(q string, args ...any) int {
		var n int
		if err := pool.QueryRow(ctx, q, args...).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	waitTickets := func(want int, d time.Duration) {
		t.Helper()
		deadline := time.Now().Add(d)
		for {
			n := count(`SELECT count(*) FROM acceptance_tickets`)
			if n >= want {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%d tickets after %s, want %d", n, d, want)
			}
			for w := range live {
				select {
				case <-w.done:
					t.Fatalf("%s exited: %v", w.holder, w.cmd.ProcessState)
				default:
				}
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	phase1 := time.Now()
	waitTickets(users*msgs, time.Duration(users*msgs)*50*time.Millisecond+2*time.Minute)
	t.Logf("phase 1: %d tickets by %d processes in %s", users*msgs, procs, time.Since(phase1).Round(time.Millisecond))
	checkSink(t, pool, delivered, &mu)

	// Phase 2: mail keeps arriving while workers die mid-sync.
	phase2 := time.Now()
	stopMail := make(chan struct{})
	mailDone := make(chan struct{})
	go func() {
		defer close(mailDone)
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stopMail:
				return
			case <-tick.C:
				deliver(logins[rand.IntN(len(logins))])
			}
		}
	}()
	byHolder := map[string]*acceptanceWorker{}
	for w := range live {
		byHolder[w.holder] = w
	}
	var rescues []*rescue
	pending := func() (n int) {
		for _, r := range rescues {
			if r.by != "" {
				continue
			}
			var holder string
			var token int64
			if err := pool.QueryRow(ctx, `SELECT holder, token FROM mailsync_leases WHERE conn = $1`, r.conn).Scan(&holder, &token); err != nil {
				t.Fatal(err)
			}
			if token > r.token {
				r.by, r.after = holder, time.Since(r.killed)
				if holder == r.holder {
					t.Errorf("%s: the dead holder %s took its lease again", r.conn, holder)
				}
				continue
			}
			n++
		}
		return n
	}
	for k := 0; k < kills; {
		time.Sleep(time.Duration(300+rand.IntN(700)) * time.Millisecond)
		// A victim: a live worker that holds a lease now, i.e. is mid-sync.
		var victim *acceptanceWorker
		deadline := time.Now().Add(30 * time.Second)
		for victim == nil {
			rows, err := pool.Query(ctx, `SELECT holder FROM mailsync_leases WHERE expires > now()`)
			if err != nil {
				t.Fatal(err)
			}
			holders, err := pgx.CollectRows(rows, pgx.RowTo[string])
			if err != nil {
				t.Fatal(err)
			}
			for _, h := range holders {
				if w := byHolder[h]; w != nil && live[w] {
					victim = w
					break
				}
			}
			if victim == nil {
				if time.Now().After(deadline) {
					t.Fatal("no worker syncing for 30 s")
				}
				time.Sleep(2 * time.Millisecond)
			}
		}
		if err := victim.cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		<-victim.done
		killed := time.Now()
		delete(live, victim)
		// What it held when it died: its leases that have not expired.
		rows, err := pool.Query(ctx, `SELECT conn, token, expires FROM mailsync_leases WHERE holder = $1 AND expires > now()`, victim.holder)
		if err != nil {
			t.Fatal(err)
		}
		var held []*rescue
		for rows.Next() {
			r := &rescue{holder: victim.holder, killed: killed}
			if err := rows.Scan(&r.conn, &r.token, &r.expires); err != nil {
				t.Fatal(err)
			}
			held = append(held, r)
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		w := spawn()
		live[w], byHolder[w.holder] = true, w
		if len(held) == 0 {
			t.Logf("%s was killed between two syncs; not counted", victim.holder)
			continue
		}
		k++
		rescues = append(rescues, held...)
		t.Logf("kill %d: %s, mid-sync on %d connections", k, victim.holder, len(held))
		pending()
	}
	close(stopMail)
	<-mailDone
	mu.Lock()
	total := len(delivered)
	mu.Unlock()
	deadline := time.Now().Add(3 * time.Minute)
	for pending() > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d connections of killed workers not taken over after 3 min", pending())
		}
		time.Sleep(50 * time.Millisecond)
	}
	waitTickets(total, 3*time.Minute)
	t.Logf("phase 2: %d kills, %d messages in all, every one a ticket %s after the kills began",
		kills, total, time.Since(phase2).Round(time.Millisecond))
	// A straggling redelivery would show as a duplicate: wait one interval.
	time.Sleep(2 * time.Second)
	checkSink(t, pool, delivered, &mu)

	var afters []time.Duration
	for _, r := range rescues {
		if r.killed.Add(r.after).Before(r.expires) {
			t.Errorf("%s taken over %s after the kill, before the dead lease expired", r.conn, r.after)
		}
		afters = append(afters, r.after)
	}
	sort.Slice(afters, func(i, j int) bool { return afters[i] < afters[j] })
	t.Logf("lease rescue %v: %d connections of killed workers taken over by another holder after %s (min) … %s (median) … %s (max)",
		leaseRescue, len(afters), afters[0].Round(100*time.Millisecond), afters[len(afters)/2].Round(100*time.Millisecond), afters[len(afters)-1].Round(100*time.Millisecond))
	t.Logf("%d redeliveries absorbed by the idempotency key; %d quarantined; total %s",
		count(`SELECT count(*) FROM acceptance_redeliveries`), count(`SELECT count(*) FROM acceptance_quarantined`),
		time.Since(start).Round(time.Millisecond))
}

// checkSink checks one ticket per delivered Message-ID and nothing else.
func checkSink(t *testing.T, pool *pgxpool.Pool, delivered map[string]string, mu *sync.Mutex) {
	t.Helper()
	ctx := context.Background()
	rows, err := pool.Query(ctx, `SELECT message_id, connection, count(*) FROM acceptance_tickets GROUP BY message_id, connection`)
	if err != nil {
		t.Fatal(err)
	}
	type row struct {
		id, conn string
		n        int
	}
	got, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (row, error) {
		var x row
		return x, r.Scan(&x.id, &x.conn, &x.n)
	})
	if err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	seen := map[string]bool{}
	for _, r := range got {
		switch {
		case r.n != 1:
			t.Errorf("%s: %d tickets", r.id, r.n)
		case seen[r.id]:
			t.Errorf("%s: tickets on two connections", r.id)
		case delivered[r.id] == "":
			t.Errorf("%s: a ticket for a message never delivered", r.id)
		case delivered[r.id] != r.conn:
			t.Errorf("%s: ticket on %s, delivered to %s", r.id, r.conn, delivered[r.id])
		}
		seen[r.id] = true
	}
	var sinkTotal int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM acceptance_tickets`).Scan(&sinkTotal); err != nil {
		t.Fatal(err)
	}
	lost := 0
	for id := range delivered {
		if !seen[id] {
			lost++
		}
	}
	if lost > 0 || sinkTotal != len(delivered) {
		t.Errorf("%d tickets for %d delivered messages; %d lost", sinkTotal, len(delivered), lost)
	}
	var q int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM acceptance_quarantined`).Scan(&q); err != nil {
		t.Fatal(err)
	}
	if q != 0 {
		t.Errorf("%d messages quarantined", q)
	}
}

// lastLines returns the last n lines of s.
func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(len(lines)-n, 0):], "\n")
}
