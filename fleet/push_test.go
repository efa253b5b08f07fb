package fleet

import (
	"bufio"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river/riverdriver"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/riverdriver/riversqlite"
	"golang.org/x/oauth2"

	"github.com/mailsync/mailsync"
	mimap "github.com/mailsync/mailsync/imap"
	"github.com/mailsync/mailsync/internal/dovecottest"
	"github.com/mailsync/mailsync/internal/secretscan"
)

// startFleet makes a Fleet on db, lets add register its push sources, and
// starts it; it stops at the test's end.
func startFleet(t *testing.T, db *sql.DB, cfg Config, add func(f *Fleet)) *Fleet {
	t.Helper()
	return startFleetOn(t, riversqlite.New(db), cfg, add)
}

// startFleetOn is startFleet on any River driver.
func startFleetOn[TTx any](t *testing.T, driver riverdriver.Driver[TTx], cfg Config, add func(f *Fleet)) *Fleet {
	t.Helper()
	if cfg.River == nil {
		cfg.River = fastRiver
	}
	f, err := New(driver, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if add != nil {
		add(f)
	}
	if err := f.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := f.Stop(ctx); err != nil {
			t.Errorf("stop: %v", err)
		}
	})
	return f
}

// die stops f's push runner as a killed process would: without stopping
// its watches cleanly or giving its leases up (the caller cuts the
// watches' connections).
func die(f *Fleet) {
	f.push.cancel()
	<-f.push.done
	f.push.done = nil
	f.push.held = map[string]*heldPush{}
}

// pushOf returns connection's push health, zero when none.
func pushOf(t *testing.T, f *Fleet, id string) PushHealth {
	t.Helper()
	h, _, err := f.Health().Get(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return h.Push
}

// oauthIMAPResolver resolves a Dovecot login to an IMAP connector with an
// OAuth token source: the kind of connection a fleet may sync and watch
// without a person.
type oauthIMAPResolver struct {
	srv   *dovecottest.Server
	token string
	sink  mailsync.Sink
}

func (r *oauthIMAPResolver) conn(id string) (mailsync.Connection, mimap.Options) {
	return mailsync.Connection{Name: id, Enabled: true, User: id, Server: "127.0.0.1",
			Port: portOf(r.srv.IMAPSAddr), Protocol: mailsync.IMAP, ConnectedWith: []string{"incident"}},
		mimap.Options{TokenSource: oauth2.StaticTokenSource(&oauth2.Token{AccessToken: r.token}),
			Security: mimap.ImplicitTLS, RootCAs: r.srv.CAPool}
}

func (r *oauthIMAPResolver) Resolve(_ context.Context, id string, _ mailsync.Secret) (Target, error) {
	conn, opts := r.conn(id)
	c, err := mimap.New(conn, opts)
	if err != nil {
		return Target{}, err
	}
	return Target{Connector: c, Mapping: mailsync.DefaultMapping("incident"), Sink: r.sink,
		Secrets: []mailsync.Secret{mailsync.Secret(r.token)}}, nil
}

func portOf(addr string) int {
	var port int
	fmt.Sscanf(addr[len("127.0.0.1:"):], "%d", &port)
	return port
}

// TestPushIdleDovecot: two fleet processes (two Fleets on one SQLite
// database, one sqlstate State) and a real Dovecot. The connection is
// polled every 10 minutes and every hour while its push works, so a ticket
// seconds after a delivery can only come through IMAP IDLE → OnChange →
// Notify → Trigger → job → sync → sink. Exactly one process holds the IDLE
// watch; when it dies, the other takes the watch over and a new delivery
// again becomes a ticket within seconds. The health shows the push state.
func TestPushIdleDovecot(t *testing.T) {
	srv := dovecottest.Shared(t, dovecottest.Options{OAuth: true})
	user := srv.AddUser(t, "fleet-push-idle", "password-not-used")
	const token = "fleet-push-idle-token-0123456789"
	srv.AddToken(user, token)
	sink := mailsync.NewMemorySink()
	res := &oauthIMAPResolver{srv: srv, token: token, sink: sink}

	db, db2 := sqliteFleetDBs(t)
	states := sqliteStates(filepath.Join(t.TempDir(), "state.db"))
	push := PushConfig{
		Connections: func(context.Context) ([]PushConnection, error) {
			return []PushConnection{{ID: user, Kind: PushIdle}}, nil
		},
		LeaseTTL: 3 * time.Second,
		Every:    300 * time.Millisecond,
	}
	var watchers [2]*mimap.Watcher
	var fleets [2]*Fleet
	for i, d := range []*sql.DB{db, db2} {
		fleets[i] = startFleet(t, d, Config{Resolver: res, State: states(t), Health: sqliteHealth(t, d),
			Interval: 10 * time.Minute, BackstopInterval: time.Hour, Jitter: -1, Workers: 2,
			Holder: fmt.Sprintf("process-%d", i), Push: &push, Logger: pushLogger(t)}, func(f *Fleet) {
			w, err := mimap.NewWatcher(mimap.WatchOptions{OnChange: f.OnChange, Coalesce: 50 * time.Millisecond,
				Backoff: 50 * time.Millisecond})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { w.Close() })
			watchers[i] = w
			if err := f.AddPushSource(&IMAPIdle{Watcher: w, Resolve: func(_ context.Context, id string) (mailsync.Connection, mimap.Options, error) {
				c, o := res.conn(id)
				return c, o, nil
			}}); err != nil {
				t.Fatal(err)
			}
		})
	}
	ctx := context.Background()
	if _, err := fleets[0].Schedule(ctx, user); err != nil {
		t.Fatal(err)
	}
	holder := func() int {
		n, who := 0, -1
		for i, w := range watchers {
			if st, ok := w.Status(user); ok && st.Connected() {
				n, who = n+1, i
			}
		}
		if n > 1 {
			t.Fatalf("%d processes hold the IDLE watch of %s, want 1", n, user)
		}
		return who
	}
	eventually(t, 20*time.Second, "one process to hold the IDLE watch", func() bool { return holder() >= 0 })
	h := holder()
	eventually(t, 20*time.Second, "the push health to show it", func() bool {
		p := pushOf(t, fleets[0], user)
		return p.Kind == PushIdle && p.Active && p.Holder == fmt.Sprintf("process-%d", h)
	})
	// The first sync, and the one the watch's connect notification asks
	// for, are over: the job waits for minutes.
	settled := func() {
		t.Helper()
		eventually(t, 20*time.Second, "the job to wait", func() bool {
			for range 5 {
				j := jobsOf(t, fleets[0], user)
				if len(j) != 1 || j[0].State != "scheduled" || time.Until(j[0].ScheduledAt) < 5*time.Minute {
					return false
				}
				time.Sleep(100 * time.Millisecond)
			}
			return true
		})
	}
	settled()
	deliver := func(n int) time.Duration {
		t.Helper()
		id := fmt.Sprintf("push-%d@fleet.invalid", n)
		raw := "From: Customer <customer@example.org>\r\nTo: " + user + "@example.com\r\nSubject: Push " + fmt.Sprint(n) +
			"\r\nDate: Sun, 29 Nov 2026 10:00:00 +0000\r\nMessage-ID: <" + id + ">\r\nContent-Type: text/plain\r\n\r\nHello.\r\n"
		start := time.Now()
		srv.Deliver(t, user, "INBOX", []byte(raw))
		// Seconds with inotify; when the machine's inotify instances run
		// out (fs.inotify.max_user_instances, shared by every Dovecot of
		// the same mail user), Dovecot checks an idling mailbox every 30 s
		// (mailbox_idle_check_interval). Either is far below the 10-minute
		// interval and the 1-hour backstop.
		eventually(t, 45*time.Second, "the ticket of delivery "+fmt.Sprint(n), func() bool { return len(sink.Tickets()) >= n })
		d := time.Since(start)
		if d > 5*time.Second {
			t.Logf("delivery %d took %s: Dovecot's inotify is probably exhausted on this machine (see its log)", n, d.Round(time.Millisecond))
		}
		return d
	}
	lat := deliver(1)
	t.Logf("delivery to ticket through IDLE (holder process-%d): %s", h, lat.Round(time.Millisecond))
	p := pushOf(t, fleets[0], user)
	if p.LastNotification.IsZero() || time.Since(p.LastNotification) > 15*time.Second || p.LastError != "" {
		t.Errorf("push health after a delivery: %+v", p)
	}
	// While the push works, a sync snoozes for the backstop interval.
	eventually(t, 20*time.Second, "the job to wait for the backstop interval", func() bool {
		j := jobsOf(t, fleets[0], user)
		return len(j) == 1 && j[0].State == "scheduled" && time.Until(j[0].ScheduledAt) > 50*time.Minute
	})

	// The holder dies: its runner stops without a word, its IDLE
	// connection is cut. The other process takes the watch over.
	if h = holder(); h < 0 {
		t.Fatal("no process holds the IDLE watch")
	}
	died := time.Now()
	die(fleets[h])
	watchers[h].Close()
	other := 1 - h
	eventually(t, 20*time.Second, "the other process to take the IDLE watch over", func() bool { return holder() == other })
	t.Logf("IDLE watch taken over %s after the holder died (push lease TTL %s)", time.Since(died).Round(time.Millisecond), push.LeaseTTL)
	eventually(t, 10*time.Second, "the push health to name the new holder", func() bool {
		p := pushOf(t, fleets[other], user)
		return p.Active && p.Holder == fmt.Sprintf("process-%d", other)
	})
	settled()
	lat = deliver(2)
	t.Logf("delivery to ticket after the takeover: %s", lat.Round(time.Millisecond))
	if n := len(sink.Tickets()); n != 2 {
		t.Errorf("%d tickets, want 2", n)
	}
}

// fakeSource is a PushSource whose state the test sets.
type fakeSource struct {
	mu      sync.Mutex
	active  map[string]bool
	started map[string]int // Start calls
	err     error          // Start's error for the connections named broken*
	status  PushStatus     // base status (Expires, Err)
}

func newFakeSource() *fakeSource {
	return &fakeSource{active: map[string]bool{}, started: map[string]int{}}
}

func (s *fakeSource) Kind() PushKind { return PushGraph }

func (s *fakeSource) Start(_ context.Context, id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil && strings.HasPrefix(id, "broken") {
		return s.err
	}
	s.started[id]++
	s.active[id] = true
	return nil
}

func (s *fakeSource) Stop(_ context.Context, id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.active, id)
	return nil
}

func (s *fakeSource) Status(id string) PushStatus {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.status
	st.Active = s.active[id]
	return st
}

func (s *fakeSource) set(id string, active bool) {
	s.mu.Lock()
	s.active[id] = active
	s.mu.Unlock()
}

// TestPushBackstopAndFallback: while the push works the job waits for the
// backstop interval; when the push goes down the connection is synced at
// once and then waits for the polling interval; a notification triggers a
// sync; a watch that cannot start is in the health with its error; a
// connection dropped from the list loses its push.
func TestPushBackstopAndFallback(t *testing.T) {
	db := openSQLite(t)
	mb := newMailbox("support", 1)
	src := newFakeSource()
	src.err = errors.New("subscription refused")
	var mu sync.Mutex
	list := []PushConnection{{ID: "support", Kind: PushGraph}, {ID: "broken", Kind: PushGraph}}
	f := startFleet(t, db, Config{Resolver: newResolver(mb), Health: sqliteHealth(t, db), State: mailsync.NewMemoryState(),
		Interval: 10 * time.Minute, BackstopInterval: 2 * time.Hour, Jitter: -1, Holder: "p",
		Push: &PushConfig{Connections: func(context.Context) ([]PushConnection, error) {
			mu.Lock()
			defer mu.Unlock()
			return append([]PushConnection(nil), list...), nil
		}, LeaseTTL: 5 * time.Second, Every: 100 * time.Millisecond}}, func(f *Fleet) {
		if err := f.AddPushSource(src); err != nil {
			t.Fatal(err)
		}
	})
	ctx := context.Background()
	eventually(t, 10*time.Second, "the push to be active", func() bool { return pushOf(t, f, "support").Active })
	if _, err := f.Schedule(ctx, "support"); err != nil {
		t.Fatal(err)
	}
	due := func() time.Duration { return dueIn(t, f, "support") }
	eventually(t, 10*time.Second, "the first sync to wait for the backstop", func() bool { return due() > 100*time.Minute })

	// A notification: one sync now, then the backstop again.
	f.OnChange("support")
	eventually(t, 10*time.Second, "the notified sync", func() bool { return len(mb.calls()) == 2 })
	eventually(t, 10*time.Second, "the backstop again", func() bool { return due() > 100*time.Minute })
	if p := pushOf(t, f, "support"); p.LastNotification.IsZero() || p.Kind != PushGraph || p.Holder != "p/push" && p.Holder != "p" {
		t.Errorf("push health after a notification: %+v", p)
	}

	// The push goes down: a sync at once, then the polling interval.
	src.set("support", false)
	eventually(t, 10*time.Second, "a sync when the push went down", func() bool { return len(mb.calls()) == 3 })
	eventually(t, 10*time.Second, "the polling interval", func() bool { d := due(); return d > 5*time.Minute && d < 11*time.Minute })
	if p := pushOf(t, f, "support"); p.Active {
		t.Errorf("push health while down: %+v", p)
	}

	// "broken" cannot start: its health says why.
	eventually(t, 10*time.Second, "the error of a watch that cannot start", func() bool {
		p := pushOf(t, f, "broken")
		return p.Kind == PushGraph && !p.Active && p.LastError == "subscription refused"
	})

	// Dropped from the list: stopped, no push kind any more.
	mu.Lock()
	list = list[1:]
	mu.Unlock()
	eventually(t, 10*time.Second, "the push to be dropped", func() bool {
		p := pushOf(t, f, "support")
		return p.Kind == PushNone && !p.Active
	})
	src.mu.Lock()
	if src.started["support"] != 1 {
		t.Errorf("started %d times, want 1", src.started["support"])
	}
	src.mu.Unlock()
}

// testOneHolderAndTakeover: two processes with a fake source and one
// sqlstate State: one holds the watch, and the other takes it over when
// the holder dies.
func testOneHolderAndTakeover[TTx any](t *testing.T, drivers [2]riverdriver.Driver[TTx], healths [2]HealthStore, states stateOpener) {
	push := PushConfig{Connections: func(context.Context) ([]PushConnection, error) {
		return []PushConnection{{ID: "support", Kind: PushGraph}}, nil
	}, LeaseTTL: time.Second, Every: 100 * time.Millisecond}
	var srcs [2]*fakeSource
	var fleets [2]*Fleet
	for i, d := range drivers {
		srcs[i] = newFakeSource()
		srcs[i].status.Expires = time.Now().Add(72 * time.Hour).Truncate(time.Millisecond)
		fleets[i] = startFleetOn(t, d, Config{Resolver: newResolver(newMailbox("support", 0)), State: states(t), Health: healths[i],
			Holder: fmt.Sprintf("p%d", i), Push: &push}, func(f *Fleet) { _ = f.AddPushSource(srcs[i]) })
	}
	holders := func() (n, who int) {
		who = -1
		for i, s := range srcs {
			if s.Status("support").Active {
				n, who = n+1, i
			}
		}
		return n, who
	}
	eventually(t, 10*time.Second, "a holder", func() bool { n, _ := holders(); return n == 1 })
	time.Sleep(500 * time.Millisecond)
	n, h := holders()
	if n != 1 {
		t.Fatalf("%d holders, want 1", n)
	}
	p := pushOf(t, fleets[0], "support")
	if !p.Active || p.Holder != fmt.Sprintf("p%d", h) || !p.Expires.Equal(srcs[h].status.Expires) || p.Since.IsZero() {
		t.Errorf("push health: %+v", p)
	}
	die(fleets[h])
	srcs[h].set("support", false)
	other := 1 - h
	eventually(t, 10*time.Second, "the takeover", func() bool { _, who := holders(); return who == other })
	eventually(t, 10*time.Second, "the health to name the new holder", func() bool {
		return pushOf(t, fleets[0], "support").Holder == fmt.Sprintf("p%d", other)
	})
	if n, _ := holders(); n != 1 {
		t.Fatalf("%d holders after the takeover, want 1", n)
	}
}

func TestPushOneHolderAndTakeoverSQLite(t *testing.T) {
	db, db2 := sqliteFleetDBs(t)
	testOneHolderAndTakeover(t, [2]riverdriver.Driver[*sql.Tx]{riversqlite.New(db), riversqlite.New(db2)},
		[2]HealthStore{sqliteHealth(t, db), sqliteHealth(t, db2)}, sqliteStates(filepath.Join(t.TempDir(), "state.db")))
}

func TestPushOneHolderAndTakeoverPostgres(t *testing.T) {
	dsn := postgresDB(t)
	p1, p2 := postgresPool(t, dsn), postgresPool(t, dsn)
	if err := Migrate(context.Background(), riverpgxv5.New(p1)); err != nil {
		t.Fatal(err)
	}
	testOneHolderAndTakeover(t, [2]riverdriver.Driver[pgx.Tx]{riverpgxv5.New(p1), riverpgxv5.New(p2)},
		[2]HealthStore{postgresHealth(t, dsn), postgresHealth(t, dsn)}, postgresStates(dsn))
}

// echoingIMAP is an IMAP server that refuses every login and quotes the
// LOGIN line in its answer, as some servers do.
func echoingIMAP(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				fmt.Fprintf(c, "* OK [CAPABILITY IMAP4rev1 IDLE AUTH=PLAIN] echo ready\r\n")
				br := bufio.NewReader(c)
				for {
					line, err := br.ReadString('\n')
					if err != nil {
						return
					}
					line = strings.TrimRight(line, "\r\n")
					tag, rest, _ := strings.Cut(line, " ")
					switch verb, _, _ := strings.Cut(strings.ToUpper(rest), " "); verb {
					case "CAPABILITY":
						fmt.Fprintf(c, "* CAPABILITY IMAP4rev1 IDLE AUTH=PLAIN\r\n%s OK done\r\n", tag)
					case "LOGIN", "AUTHENTICATE":
						fmt.Fprintf(c, "%s NO [AUTHENTICATIONFAILED] refused: %s\r\n", tag, line)
					case "LOGOUT":
						fmt.Fprintf(c, "* BYE\r\n%s OK bye\r\n", tag)
						return
					default:
						fmt.Fprintf(c, "%s BAD what\r\n", tag)
					}
				}
			}()
		}
	}()
	return ln.Addr().String()
}

// TestPushRowsHoldNoSecret: an IDLE watch whose server refuses the login
// and echoes the password: the push health records the failure, and no
// row of any table of the fleet's database holds the password in any
// encoding.
func TestPushRowsHoldNoSecret(t *testing.T) {
	db := openSQLite(t)
	const secret = "Pa55-word-echoed-by-the-server"
	addr := echoingIMAP(t)
	w, err := mimap.NewWatcher(mimap.WatchOptions{OnChange: func(string) {}})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	src := &IMAPIdle{Watcher: w, Resolve: func(_ context.Context, id string) (mailsync.Connection, mimap.Options, error) {
		return mailsync.Connection{Name: id, Enabled: true, User: "support", Server: "127.0.0.1", Port: portOf(addr),
				Protocol: mailsync.IMAP, ConnectedWith: []string{"incident"}},
			mimap.Options{Password: secret, Security: mimap.Plaintext, AllowPlaintextLogin: true}, nil
	}}
	f := startFleet(t, db, Config{Resolver: newResolver(), State: mailsync.NewMemoryState(), Health: sqliteHealth(t, db), Push: &PushConfig{
		Connections: func(context.Context) ([]PushConnection, error) {
			return []PushConnection{{ID: "support", Kind: PushIdle}}, nil
		}, Every: 100 * time.Millisecond}}, func(f *Fleet) { _ = f.AddPushSource(src) })
	eventually(t, 10*time.Second, "the login failure in the push health", func() bool {
		return strings.Contains(pushOf(t, f, "support").LastError, "AUTHENTICATIONFAILED")
	})
	p := pushOf(t, f, "support")
	t.Logf("recorded: %q", p.LastError)
	if p.Active || p.Kind != PushIdle {
		t.Errorf("push health: %+v", p)
	}
	var tables []string
	rows, err := db.Query(`SELECT name FROM sqlite_master WHERE type = 'table'`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			t.Fatal(err)
		}
		tables = append(tables, n)
	}
	rows.Close()
	counts, leaks, err := secretscan.Rows(context.Background(), db, tables, secret)
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range leaks {
		t.Error(l)
	}
	if counts["mailsync_fleet_push"] != 1 {
		t.Errorf("scanned %v, want the push row", counts)
	}
}

// pushLogger logs the fleet's push records to the test log.
func pushLogger(t *testing.T) *slog.Logger {
	return slog.New(&pushLogHandler{t: t})
}

type pushLogHandler struct {
	t     *testing.T
	attrs []slog.Attr
}

func (h *pushLogHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h *pushLogHandler) Handle(_ context.Context, r slog.Record) error {
	if !strings.HasPrefix(r.Message, "mailsync/fleet: push") && !strings.Contains(r.Message, "sync") {
		return nil
	}
	var b strings.Builder
	r.Attrs(func(a slog.Attr) bool { fmt.Fprintf(&b, " %s=%v", a.Key, a.Value); return true })
	h.t.Logf("%s %s%s", r.Time.Format("15:04:05.000"), r.Message, b.String())
	return nil
}
func (h *pushLogHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return &pushLogHandler{t: h.t, attrs: append(append([]slog.Attr(nil), h.attrs...), as...)}
}
func (h *pushLogHandler) WithGroup(string) slog.Handler { return h }

// TestPushDroppedWhileActivePollsAgain: a connection dropped from the push
// list while its push works is synced at once, and then polled every
// Interval, not left asleep for the backstop interval with nothing
// watching it.
func TestPushDroppedWhileActivePollsAgain(t *testing.T) {
	db := openSQLite(t)
	mb := newMailbox("support", 1)
	src := newFakeSource()
	var mu sync.Mutex
	list := []PushConnection{{ID: "support", Kind: PushGraph}}
	f := startFleet(t, db, Config{Resolver: newResolver(mb), Health: sqliteHealth(t, db), State: mailsync.NewMemoryState(),
		Interval: 10 * time.Minute, BackstopInterval: 2 * time.Hour, Jitter: -1, Holder: "p",
		Push: &PushConfig{Connections: func(context.Context) ([]PushConnection, error) {
			mu.Lock()
			defer mu.Unlock()
			return append([]PushConnection(nil), list...), nil
		}, LeaseTTL: 5 * time.Second, Every: 100 * time.Millisecond}}, func(f *Fleet) {
		if err := f.AddPushSource(src); err != nil {
			t.Fatal(err)
		}
	})
	eventually(t, 10*time.Second, "the push to be active", func() bool { return pushOf(t, f, "support").Active })
	if _, err := f.Schedule(context.Background(), "support"); err != nil {
		t.Fatal(err)
	}
	due := func() time.Duration { return dueIn(t, f, "support") }
	eventually(t, 10*time.Second, "the backstop", func() bool { return due() > 100*time.Minute })
	syncs := len(mb.calls())

	mu.Lock()
	list = nil
	mu.Unlock()
	eventually(t, 10*time.Second, "a sync when the push was dropped", func() bool { return len(mb.calls()) == syncs+1 })
	eventually(t, 10*time.Second, "the polling interval", func() bool { d := due(); return d > 5*time.Minute && d < 11*time.Minute })
}

// TestPushTakeoverThatFailsPollsAgain: a holder died while its watch was
// active, so the connection's job sleeps for the backstop interval; the
// process that takes the watch over cannot start it. Nobody watches, so
// the connection is synced at once and polled every Interval again.
func TestPushTakeoverThatFailsPollsAgain(t *testing.T) {
	db := openSQLite(t)
	mb := newMailbox("broken-takeover", 1)
	src := newFakeSource()
	src.err = errors.New("subscription refused")
	health := sqliteHealth(t, db)
	// The dead holder's last refresh: active, pushed.
	if err := health.UpdatePush(context.Background(), "broken-takeover", func(p *PushHealth) {
		p.Kind, p.Active, p.Holder, p.Since, p.Updated = PushGraph, true, "dead/push", time.Now(), time.Now()
	}); err != nil {
		t.Fatal(err)
	}
	f := startFleet(t, db, Config{Resolver: newResolver(mb), Health: health, State: mailsync.NewMemoryState(),
		Interval: 10 * time.Minute, BackstopInterval: 2 * time.Hour, Jitter: -1, Holder: "p",
		Push: &PushConfig{Connections: func(context.Context) ([]PushConnection, error) {
			return []PushConnection{{ID: "broken-takeover", Kind: PushGraph}}, nil
		}, LeaseTTL: 3 * time.Second, Every: 100 * time.Millisecond}}, func(f *Fleet) {
		if err := f.AddPushSource(src); err != nil {
			t.Fatal(err)
		}
	})
	if _, err := f.Schedule(context.Background(), "broken-takeover"); err != nil {
		t.Fatal(err)
	}
	due := func() time.Duration { return dueIn(t, f, "broken-takeover") }
	// While the dead holder's record is fresh, the push counts as working.
	eventually(t, 10*time.Second, "the backstop", func() bool { return due() > 100*time.Minute })
	syncs := len(mb.calls())
	// The record goes stale; this process takes the watch over and fails.
	eventually(t, 15*time.Second, "a sync after the failed take-over", func() bool { return len(mb.calls()) >= syncs+1 })
	eventually(t, 10*time.Second, "the polling interval", func() bool { d := due(); return d > 5*time.Minute && d < 11*time.Minute })
	if p := pushOf(t, f, "broken-takeover"); p.Active || p.LastError == "" {
		t.Errorf("push health %+v, want inactive with the error", p)
	}
}

// TestDeletedConnectionStaysDeleted: the host deleted a connection's
// health; a late notification (a Graph subscription lives for days) and
// the release of its watch when it leaves the push list bring no row back.
func TestDeletedConnectionStaysDeleted(t *testing.T) {
	db := openSQLite(t)
	for name, health := range map[string]HealthStore{"memory": NewMemoryHealth(), "sql": sqliteHealth(t, db)} {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			mb := newMailbox("gone", 1)
			src := newFakeSource()
			var mu sync.Mutex
			list := []PushConnection{{ID: "gone", Kind: PushGraph}}
			f := startFleet(t, db, Config{Resolver: newResolver(mb), Health: health, State: mailsync.NewMemoryState(),
				Interval: 10 * time.Minute, Jitter: -1, Holder: "p", Queue: "q_" + name,
				Push: &PushConfig{Connections: func(context.Context) ([]PushConnection, error) {
					mu.Lock()
					defer mu.Unlock()
					return append([]PushConnection(nil), list...), nil
				}, LeaseTTL: 5 * time.Second, Every: 50 * time.Millisecond}}, func(f *Fleet) {
				if err := f.AddPushSource(src); err != nil {
					t.Fatal(err)
				}
			})
			eventually(t, 10*time.Second, "the push to be active", func() bool { return pushOf(t, f, "gone").Active })

			// The host deletes the connection: off the push list, health deleted.
			mu.Lock()
			list = nil
			mu.Unlock()
			if err := health.Delete(ctx, "gone"); err != nil {
				t.Fatal(err)
			}
			eventually(t, 10*time.Second, "the watch to stop", func() bool { return !src.Status("gone").Active })
			time.Sleep(200 * time.Millisecond) // a few more ticks
			if _, err := f.Notify(ctx, "gone"); err != nil {
				t.Fatal(err)
			}
			if h, ok, err := health.Get(ctx, "gone"); ok || err != nil {
				t.Errorf("the deleted connection is back: %+v, %v", h, err)
			}
			// A connection the store knows still records its notification.
			if err := health.(PushHealthStore).UpdatePush(ctx, "known", func(p *PushHealth) { p.Kind = PushGraph }); err != nil {
				t.Fatal(err)
			}
			if _, err := f.Notify(ctx, "known"); err != nil {
				t.Fatal(err)
			}
			if h, _, _ := health.Get(ctx, "known"); h.Push.LastNotification.IsZero() {
				t.Error("the notification of a known connection was not recorded")
			}
		})
	}
}

// dueIn is how long until the connection's one scheduled job runs, 0 when
// it has no such job.
func dueIn(t *testing.T, f *Fleet, id string) time.Duration {
	j := jobsOf(t, f, id)
	if len(j) != 1 || j[0].State != "scheduled" {
		return 0
	}
	return time.Until(j[0].ScheduledAt)
}
