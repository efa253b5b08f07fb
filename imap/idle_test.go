package imap_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/mailsync/mailsync"
	mimap "github.com/mailsync/mailsync/imap"
	"github.com/mailsync/mailsync/internal/cutproxy"
	"github.com/mailsync/mailsync/internal/dovecottest"
)

// changes records OnChange calls.
type changes struct {
	mu    sync.Mutex
	calls []time.Time
	names []string
	ch    chan string // every call, never blocking (buffered)
}

func newChanges() *changes { return &changes{ch: make(chan string, 10000)} }

func (c *changes) on(name string) {
	c.mu.Lock()
	c.calls = append(c.calls, time.Now())
	c.names = append(c.names, name)
	c.mu.Unlock()
	select {
	case c.ch <- name:
	default:
	}
}

func (c *changes) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.calls)
}

// drain empties the channel.
func (c *changes) drain() {
	for {
		select {
		case <-c.ch:
		default:
			return
		}
	}
}

// wait returns the time of the next call within d.
func (c *changes) wait(t *testing.T, d time.Duration, what string) time.Time {
	t.Helper()
	select {
	case <-c.ch:
		return time.Now()
	case <-time.After(d):
		t.Fatalf("no OnChange within %s %s", d, what)
		return time.Time{}
	}
}

func newWatcher(t *testing.T, o mimap.WatchOptions) *mimap.Watcher {
	t.Helper()
	w, err := mimap.NewWatcher(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Close() })
	return w
}

// waitState waits until the named watch is in state.
func waitState(t *testing.T, w *mimap.Watcher, name string, state mimap.WatchState, d time.Duration) mimap.WatchStatus {
	t.Helper()
	deadline := time.Now().Add(d)
	var st mimap.WatchStatus
	for time.Now().Before(deadline) {
		var ok bool
		st, ok = w.Status(name)
		if ok && st.State == state {
			return st
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("watch %q not %s within %s: %+v", name, state, d, st)
	return st
}

// dovecotWatch is a fresh Dovecot user to watch over STARTTLS (or
// plaintext, which lets a test see the commands).
func dovecotWatch(t *testing.T, name string, plain bool) (*dovecottest.Server, string, mailsync.Connection, mimap.Options) {
	t.Helper()
	srv := dovecottest.Shared(t, dovecottest.Options{})
	user := srv.AddUser(t, name, dovecotPassword)
	conn := connection(t, srv.IMAPAddr)
	conn.Name, conn.User = name, user
	opts := mimap.Options{Password: dovecotPassword, Security: mimap.StartTLS, RootCAs: srv.CAPool}
	if plain {
		opts.Security, opts.AllowPlaintextLogin = mimap.Plaintext, true
	}
	return srv, user, conn, opts
}

func TestWatchOptionsValidation(t *testing.T) {
	for _, o := range []mimap.WatchOptions{
		{},
		{OnChange: func(string) {}, RenewEvery: 30 * time.Minute},
		{OnChange: func(string) {}, Backoff: -time.Second},
	} {
		if _, err := mimap.NewWatcher(o); !errors.Is(err, mailsync.ErrInvalidConfig) {
			t.Errorf("NewWatcher(%+v) = %v, want ErrInvalidConfig", o, err)
		}
	}
	w := newWatcher(t, mimap.WatchOptions{OnChange: func(string) {}})
	conn := connection(t, "127.0.0.1:1")
	if err := w.Watch(context.Background(), conn, mimap.Options{}); !errors.Is(err, mailsync.ErrInvalidConfig) {
		t.Errorf("Watch without credentials = %v, want ErrInvalidConfig", err)
	}
	conn.Name = ""
	if err := w.Watch(context.Background(), conn, mimap.Options{Password: "x"}); !errors.Is(err, mailsync.ErrInvalidConfig) {
		t.Errorf("Watch without a name = %v, want ErrInvalidConfig", err)
	}
}

// TestWatchIdleDovecotLatency: mail delivered into the Maildir while the
// watcher idles triggers OnChange within 2 s; it logs p50/p99 over 50
// deliveries.
func TestWatchIdleDovecotLatency(t *testing.T) {
	srv, user, conn, opts := dovecotWatch(t, "WatchLatency", false)
	ch := newChanges()
	const coalesce = 100 * time.Millisecond
	w := newWatcher(t, mimap.WatchOptions{OnChange: ch.on, Coalesce: coalesce})
	if err := w.Watch(context.Background(), conn, opts); err != nil { // Close ends it
		t.Fatal(err)
	}
	waitState(t, w, conn.Name, mimap.WatchIdling, 10*time.Second)
	ch.wait(t, 2*time.Second, "after connecting") // the connect notification
	time.Sleep(2 * coalesce)
	ch.drain()

	n := 50
	if testing.Short() {
		n = 10
	}
	lat := make([]time.Duration, 0, n)
	for i := range n {
		start := time.Now()
		srv.Deliver(t, user, "INBOX", mail(i, "idle latency"))
		got := ch.wait(t, 2*time.Second, fmt.Sprintf("after delivery %d", i))
		lat = append(lat, got.Sub(start))
		time.Sleep(coalesce + 20*time.Millisecond) // outside the coalescing window
		ch.drain()
	}
	slices.Sort(lat)
	p50, p99 := lat[len(lat)/2], lat[(len(lat)*99+99)/100-1]
	t.Logf("IDLE notification latency over %d Maildir deliveries: p50 %s, p99 %s, max %s",
		n, p50.Round(time.Microsecond), p99.Round(time.Microsecond), lat[len(lat)-1].Round(time.Microsecond))
	if p99 >= 2*time.Second {
		t.Errorf("p99 latency %s, want under 2s", p99)
	}
	st, _ := w.Status(conn.Name)
	if st.State != mimap.WatchIdling || st.Connects != 1 || st.Failures != 0 || st.LastEvent.IsZero() {
		t.Errorf("status after the deliveries: %+v", st)
	}
}

// idleCountingDialer counts the IDLE and DONE lines a plaintext client sends.
type idleCountingDialer struct {
	idles, dones atomic.Int64
}

func (d *idleCountingDialer) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	var nd net.Dialer
	c, err := nd.DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	return &idleCountingConn{Conn: c, d: d}, nil
}

type idleCountingConn struct {
	net.Conn
	d *idleCountingDialer
}

func (c *idleCountingConn) Write(p []byte) (int, error) {
	s := string(p)
	if strings.HasSuffix(s, " IDLE\r\n") {
		c.d.idles.Add(1)
	}
	if s == "DONE\r\n" {
		c.d.dones.Add(1)
	}
	return c.Conn.Write(p)
}

// TestWatchRenewsIdle: IDLE is ended and re-issued every RenewEvery on the
// same connection, and mail still triggers OnChange after renewals.
func TestWatchRenewsIdle(t *testing.T) {
	srv, user, conn, opts := dovecotWatch(t, "WatchRenew", true)
	var cd idleCountingDialer
	opts.DialContext = cd.dial
	ch := newChanges()
	w := newWatcher(t, mimap.WatchOptions{OnChange: ch.on, RenewEvery: 150 * time.Millisecond, Coalesce: 10 * time.Millisecond})
	if err := w.Watch(testCtx(t), conn, opts); err != nil {
		t.Fatal(err)
	}
	waitState(t, w, conn.Name, mimap.WatchIdling, 10*time.Second)
	ch.wait(t, 2*time.Second, "after connecting")
	time.Sleep(800 * time.Millisecond)
	ch.drain()
	srv.Deliver(t, user, "INBOX", mail(1, "after renewals"))
	ch.wait(t, 2*time.Second, "after renewals")
	idles, dones := cd.idles.Load(), cd.dones.Load()
	if idles < 4 || dones < 3 {
		t.Errorf("%d IDLE and %d DONE sent in about 1s with RenewEvery 150ms; want IDLE re-issued", idles, dones)
	}
	if st, _ := w.Status(conn.Name); st.Connects != 1 || st.State != mimap.WatchIdling {
		t.Errorf("renewing IDLE reconnected or left IDLE: %+v", st)
	}
}

// TestWatchCoalescesBursts: a burst of deliveries over 1.5s yields at most
// one OnChange per window (a leading one, then one per window), the last
// one after the last delivery. Dovecot itself batches its IDLE updates
// (500ms), so the watcher sees a few EXISTS.
func TestWatchCoalescesBursts(t *testing.T) {
	srv, user, conn, opts := dovecotWatch(t, "WatchBurst", false)
	ch := newChanges()
	const window = time.Second
	w := newWatcher(t, mimap.WatchOptions{OnChange: ch.on, Coalesce: window})
	if err := w.Watch(testCtx(t), conn, opts); err != nil {
		t.Fatal(err)
	}
	waitState(t, w, conn.Name, mimap.WatchIdling, 10*time.Second)
	ch.wait(t, 2*time.Second, "after connecting")
	time.Sleep(window + 100*time.Millisecond)
	before := ch.count()
	first := time.Now()
	var last time.Time
	for i := range 30 {
		srv.Deliver(t, user, "INBOX", mail(i, "burst"))
		last = time.Now()
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(window + 800*time.Millisecond)
	ch.mu.Lock()
	calls := slices.Clone(ch.calls[before:])
	ch.mu.Unlock()
	st, _ := w.Status(conn.Name)
	span := last.Sub(first)
	if maxCalls := 1 + int(span/window) + 1; len(calls) < 1 || len(calls) > maxCalls {
		t.Fatalf("%d OnChange calls for a burst over %s, want 1..%d", len(calls), span, maxCalls)
	}
	if end := calls[len(calls)-1]; end.Before(last) {
		t.Errorf("the last OnChange (%s) came before the last delivery (%s)", end.Format(time.StampMicro), last.Format(time.StampMicro))
	}
	for i := 1; i < len(calls); i++ {
		if gap := calls[i].Sub(calls[i-1]); gap < window-20*time.Millisecond {
			t.Errorf("OnChange calls %s apart, want at least the %s window", gap, window)
		}
	}
	t.Logf("30 deliveries over %s: %d EXISTS reports in all, %d OnChange calls, the last %s after the last delivery",
		span.Round(time.Millisecond), st.Events, len(calls), calls[len(calls)-1].Sub(last).Round(time.Millisecond))
}

// TestWatchReconnectsWithBackoff: a cut connection is re-established after
// backoff (doubling over failed attempts), and OnChange is called after the
// reconnection so the sync picks up what arrived meanwhile.
func TestWatchReconnectsWithBackoff(t *testing.T) {
	srv, user, conn, opts := dovecotWatch(t, "WatchReconnect", false)
	proxy := cutproxy.Start(t, srv.IMAPAddr)
	host, port, _ := net.SplitHostPort(proxy.Addr)
	conn.Server = host
	conn.Port, _ = strconv.Atoi(port)
	ch := newChanges()
	const backoff = 100 * time.Millisecond
	w := newWatcher(t, mimap.WatchOptions{OnChange: ch.on, Coalesce: 10 * time.Millisecond, Backoff: backoff, MaxBackoff: time.Second})
	if err := w.Watch(testCtx(t), conn, opts); err != nil {
		t.Fatal(err)
	}
	waitState(t, w, conn.Name, mimap.WatchIdling, 10*time.Second)
	ch.wait(t, 2*time.Second, "after connecting")
	ch.drain()

	// The next three connections are reset at once: with the cut, four
	// failures in a row, so backoffs of about 100+200+400+800ms (±20%).
	for range 3 {
		proxy.CutAfter(0)
	}
	cut := time.Now()
	proxy.CutAll()
	srv.Deliver(t, user, "INBOX", mail(1, "while disconnected"))
	got := ch.wait(t, 10*time.Second, "after the reconnection")
	elapsed := got.Sub(cut)
	st := waitState(t, w, conn.Name, mimap.WatchIdling, 5*time.Second)
	if st.Connects != 2 || st.Failures != 4 {
		t.Errorf("after a cut and 3 failed attempts: %d connects, %d failures; want 2 and 4", st.Connects, st.Failures)
	}
	if !errors.Is(st.LastError, mailsync.ErrConnection) {
		t.Errorf("LastError = %v, want ErrConnection", st.LastError)
	}
	if minWait := time.Duration(0.8 * float64(backoff*(1+2+4+8))); elapsed < minWait {
		t.Errorf("reconnected %s after the cut, want at least %s of backoff", elapsed, minWait)
	}
	t.Logf("reconnected and notified %s after the cut (4 failures)", elapsed.Round(time.Millisecond))

	// Still watching on the new connection.
	ch.drain()
	srv.Deliver(t, user, "INBOX", mail(2, "after the reconnection"))
	ch.wait(t, 2*time.Second, "for mail after the reconnection")
}

// TestWatchSurvivesDovecotRestart: a real server restart.
func TestWatchSurvivesDovecotRestart(t *testing.T) {
	srv := dovecottest.Start(t, dovecottest.Options{})
	user := srv.AddUser(t, "restart", dovecotPassword)
	conn := connection(t, srv.IMAPAddr)
	conn.Name, conn.User = "restart", user
	opts := mimap.Options{Password: dovecotPassword, Security: mimap.StartTLS, RootCAs: srv.CAPool}
	ch := newChanges()
	w := newWatcher(t, mimap.WatchOptions{OnChange: ch.on, Coalesce: 10 * time.Millisecond, Backoff: 50 * time.Millisecond})
	if err := w.Watch(testCtx(t), conn, opts); err != nil {
		t.Fatal(err)
	}
	waitState(t, w, conn.Name, mimap.WatchIdling, 10*time.Second)
	ch.wait(t, 2*time.Second, "after connecting")
	ch.drain()
	srv.Restart(t)
	ch.wait(t, 15*time.Second, "after the restart")
	st := waitState(t, w, conn.Name, mimap.WatchIdling, 5*time.Second)
	if st.Connects < 2 || st.Failures < 1 {
		t.Errorf("status after a restart: %+v", st)
	}
	ch.drain()
	srv.Deliver(t, user, "INBOX", mail(1, "after restart"))
	ch.wait(t, 2*time.Second, "for mail after the restart")
}

// waitGoroutines waits until at most n goroutines run.
func waitGoroutines(t *testing.T, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for runtime.NumGoroutine() > n {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("%d goroutines, want at most %d:\n%s", runtime.NumGoroutine(), n, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestWatchStopsCleanly: context cancellation, Unwatch and Close end the
// watches and leave no goroutine behind.
func TestWatchStopsCleanly(t *testing.T) {
	var conns []mailsync.Connection
	var opts mimap.Options
	for i := range 4 {
		var conn mailsync.Connection
		_, _, conn, opts = dovecotWatch(t, fmt.Sprintf("WatchStop%d", i), false)
		conns = append(conns, conn)
	}
	base := runtime.NumGoroutine()
	ch := newChanges()
	w, err := mimap.NewWatcher(mimap.WatchOptions{OnChange: ch.on})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for i, c := range conns {
		wctx := context.Background()
		if i < 2 {
			wctx = ctx // two end with ctx
		}
		if err := w.Watch(wctx, c, opts); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range conns {
		waitState(t, w, c.Name, mimap.WatchIdling, 10*time.Second)
	}
	cancel()
	for _, c := range conns[:2] {
		deadline := time.Now().Add(5 * time.Second)
		for {
			if _, ok := w.Status(c.Name); !ok {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s still watched after its context ended", c.Name)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	if !w.Unwatch(conns[2].Name) || w.Unwatch(conns[2].Name) {
		t.Error("Unwatch should report true once, then false")
	}
	if st, _ := w.Status(conns[3].Name); st.State != mimap.WatchIdling {
		t.Errorf("the remaining watch: %+v", st)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := w.Watch(context.Background(), conns[0], opts); !errors.Is(err, mimap.ErrWatcherClosed) {
		t.Errorf("Watch after Close = %v, want ErrWatcherClosed", err)
	}
	waitGoroutines(t, base)
}

// TestWatchConnectionLimit: at most MaxConnections mailboxes; replacing a
// watch does not count twice; a failed watch frees its slot.
func TestWatchConnectionLimit(t *testing.T) {
	m := startMem(t, memOptions{insecureAuth: true})
	opts := mimap.Options{Password: testPassword, Security: mimap.Plaintext, AllowPlaintextLogin: true}
	ch := newChanges()
	w := newWatcher(t, mimap.WatchOptions{OnChange: ch.on, MaxConnections: 2, PollInterval: time.Hour})
	named := func(name string) mailsync.Connection {
		c := connection(t, m.Addr)
		c.Name = name
		return c
	}
	ctx := testCtx(t)
	for _, n := range []string{"a", "b"} {
		if err := w.Watch(ctx, named(n), opts); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Watch(ctx, named("c"), opts); !errors.Is(err, mimap.ErrWatchLimit) {
		t.Fatalf("third Watch = %v, want ErrWatchLimit", err)
	}
	if err := w.Watch(ctx, named("a"), opts); err != nil {
		t.Fatalf("replacing a watch: %v", err)
	}
	waitState(t, w, "a", mimap.WatchIdling, 5*time.Second)
	waitState(t, w, "b", mimap.WatchIdling, 5*time.Second)
	if n := len(w.Statuses()); n != 2 {
		t.Errorf("%d watches, want 2", n)
	}
	// b fails for good (wrong password): its slot is free, its status stays.
	bad := opts
	bad.Password = "wrong-pw-4711"
	if err := w.Watch(ctx, named("b"), bad); err != nil {
		t.Fatal(err)
	}
	st := waitState(t, w, "b", mimap.WatchFailed, 5*time.Second)
	if !errors.Is(st.LastError, mailsync.ErrAuth) || strings.Contains(st.LastError.Error(), bad.Password.Reveal()) {
		t.Errorf("failed watch LastError = %v, want ErrAuth without the password", st.LastError)
	}
	if err := w.Watch(ctx, named("c"), opts); err != nil {
		t.Fatalf("Watch beside a failed watch: %v", err)
	}
	if err := w.Watch(ctx, named("d"), opts); !errors.Is(err, mimap.ErrWatchLimit) {
		t.Fatalf("Watch over the limit = %v, want ErrWatchLimit", err)
	}
	if !w.Unwatch("b") {
		t.Error("Unwatch of the failed watch")
	}
	if _, ok := w.Status("b"); ok {
		t.Error("Unwatch kept the failed watch")
	}
}

// noIdleServer is a minimal IMAP4rev1 server without IDLE (unless
// offerIdle): LOGIN, EXAMINE, NOOP (which reports EXISTS when messages
// were added) and LOGOUT.
type noIdleServer struct {
	addr      string
	offerIdle bool        // advertise and run IDLE
	stallDone atomic.Bool // never answer DONE (a half-open connection)
	msgs      atomic.Int64
	noops     atomic.Int64
	idles     atomic.Int64 // IDLE commands received
}

func startNoIdle(t *testing.T, offerIdle bool) *noIdleServer {
	t.Helper()
	f := &noIdleServer{offerIdle: offerIdle}
	f.addr = serveLoopback(t, f.serve, nil)
	return f
}

func (f *noIdleServer) serve(c net.Conn) {
	r := bufio.NewReader(c)
	caps := "IMAP4rev1"
	if f.offerIdle {
		caps += " IDLE"
	}
	fmt.Fprintf(c, "* OK [CAPABILITY %s AUTH=PLAIN] fake ready\r\n", caps)
	known := f.msgs.Load()
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		tag, cmd, _ := strings.Cut(strings.TrimRight(line, "\r\n"), " ")
		verb, _, _ := strings.Cut(strings.ToUpper(cmd), " ")
		var reply string
		switch verb {
		case "CAPABILITY":
			reply = "* CAPABILITY " + caps + " AUTH=PLAIN\r\n%[1]s OK done\r\n"
		case "LOGIN":
			reply = "%[1]s OK [CAPABILITY " + caps + "] logged in\r\n"
		case "SELECT", "EXAMINE":
			known = f.msgs.Load()
			reply = fmt.Sprintf("* %d EXISTS\r\n* OK [UIDVALIDITY 7] ok\r\n* OK [UIDNEXT %d] ok\r\n%%[1]s OK [READ-ONLY] done\r\n", known, known+1)
		case "NOOP":
			f.noops.Add(1)
			if n := f.msgs.Load(); n != known {
				known = n
				reply = fmt.Sprintf("* %d EXISTS\r\n", n)
			}
			reply += "%[1]s OK done\r\n"
		case "IDLE":
			f.idles.Add(1)
			if !f.offerIdle {
				reply = "%[1]s BAD unknown command\r\n"
				break
			}
			fmt.Fprintf(c, "+ idling\r\n")
			if _, err := r.ReadString('\n'); err != nil { // DONE
				return
			}
			if f.stallDone.Load() {
				io.Copy(io.Discard, r) // silent until the client hangs up
				return
			}
			reply = "%[1]s OK idle done\r\n"
		case "LOGOUT":
			fmt.Fprintf(c, "* BYE bye\r\n%s OK done\r\n", tag)
			return
		default:
			reply = "%[1]s OK ignored\r\n"
		}
		if _, err := fmt.Fprintf(c, reply, tag); err != nil {
			return
		}
	}
}

// TestWatchPollsWithoutIdle: a server without IDLE is polled with NOOP,
// and new mail it reports there triggers OnChange.
func TestWatchPollsWithoutIdle(t *testing.T) {
	f := startNoIdle(t, false)
	conn := connection(t, f.addr)
	opts := mimap.Options{Password: testPassword, Security: mimap.Plaintext, AllowPlaintextLogin: true}
	ch := newChanges()
	w := newWatcher(t, mimap.WatchOptions{OnChange: ch.on, PollInterval: 100 * time.Millisecond, Coalesce: 10 * time.Millisecond})
	if err := w.Watch(testCtx(t), conn, opts); err != nil {
		t.Fatal(err)
	}
	waitState(t, w, conn.Name, mimap.WatchPolling, 5*time.Second)
	ch.wait(t, 2*time.Second, "after connecting")
	time.Sleep(350 * time.Millisecond) // a few NOOPs with nothing new
	if n := ch.count(); n != 1 {
		t.Fatalf("%d OnChange calls with nothing new, want 1 (the connect)", n)
	}
	if n := f.noops.Load(); n < 2 {
		t.Fatalf("%d NOOPs in 350ms with PollInterval 100ms", n)
	}
	ch.drain()
	start := time.Now()
	f.msgs.Add(1)
	got := ch.wait(t, 2*time.Second, "after new mail, polling")
	if d := got.Sub(start); d > time.Second {
		t.Errorf("noticed after %s with PollInterval 100ms", d)
	}
	if st, _ := w.Status(conn.Name); st.State != mimap.WatchPolling || st.Connects != 1 || st.LastEvent.IsZero() {
		t.Errorf("status: %+v", st)
	}
	if n := f.idles.Load(); n != 0 {
		t.Errorf("%d IDLE commands sent to a server without IDLE", n)
	}
}

// TestWatchIdleMemServer: go-imap's memory server (which offers IDLE)
// reports an APPEND to an idling watcher.
func TestWatchIdleMemServer(t *testing.T) {
	m := startMem(t, memOptions{insecureAuth: true})
	conn := connection(t, m.Addr)
	opts := mimap.Options{Password: testPassword, Security: mimap.Plaintext, AllowPlaintextLogin: true}
	ch := newChanges()
	w := newWatcher(t, mimap.WatchOptions{OnChange: ch.on, Coalesce: 10 * time.Millisecond})
	if err := w.Watch(testCtx(t), conn, opts); err != nil {
		t.Fatal(err)
	}
	waitState(t, w, conn.Name, mimap.WatchIdling, 5*time.Second)
	ch.wait(t, 2*time.Second, "after connecting")
	ch.drain()
	m.deliver(t, "INBOX", mail(1, "idle"))
	ch.wait(t, 2*time.Second, "after an APPEND")
}

// TestWatchMemoryPerMailbox measures the Go heap held per watched, idling
// mailbox (STARTTLS to Dovecot). MAILSYNC_WATCH_MEM_N sets the number of
// mailboxes (default 20; the report uses 100).
func TestWatchMemoryPerMailbox(t *testing.T) {
	n := 20
	if v, err := strconv.Atoi(os.Getenv("MAILSYNC_WATCH_MEM_N")); err == nil && v > 0 {
		n = v
	}
	plain := os.Getenv("MAILSYNC_WATCH_MEM_PLAIN") != ""
	type target struct {
		conn mailsync.Connection
		opts mimap.Options
	}
	var targets []target
	for i := range n {
		_, _, conn, opts := dovecotWatch(t, fmt.Sprintf("WatchMem%d", i), plain)
		targets = append(targets, target{conn, opts})
	}
	ch := newChanges()
	w := newWatcher(t, mimap.WatchOptions{OnChange: ch.on, MaxConnections: n})
	heap := func() uint64 {
		var ms runtime.MemStats
		runtime.GC()
		runtime.GC()
		runtime.ReadMemStats(&ms)
		return ms.HeapAlloc
	}
	goroutines := runtime.NumGoroutine()
	before := heap()
	ctx := context.Background() // Close ends the watches
	for _, tg := range targets {
		if err := w.Watch(ctx, tg.conn, tg.opts); err != nil {
			t.Fatal(err)
		}
	}
	for _, tg := range targets {
		waitState(t, w, tg.conn.Name, mimap.WatchIdling, 30*time.Second)
	}
	time.Sleep(200 * time.Millisecond)
	after := heap()
	per := (int64(after) - int64(before)) / int64(n)
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	t.Logf("%d idling watches (%s): heap %d -> %d bytes, %d B (%.1f KiB) per mailbox; %d goroutines per mailbox; stack in use %d KiB total",
		n, map[bool]string{true: "plaintext", false: "STARTTLS"}[plain], before, after, per, float64(per)/1024,
		(runtime.NumGoroutine()-goroutines)/n, ms.StackInuse>>10)
	if per >= 64<<10 {
		t.Errorf("%d bytes of heap per watched mailbox, want under 64 KiB", per)
	}
}

// rotatingTokens hands out a new registered access token on every call.
type rotatingTokens struct {
	srv    *dovecottest.Server
	user   string
	calls  atomic.Int64
	revoke atomic.Bool // hand out tokens Dovecot does not know
	mu     sync.Mutex
	issued []string
}

func (r *rotatingTokens) Token() (*oauth2.Token, error) {
	n := r.calls.Add(1)
	tok := fmt.Sprintf("watch-token-%d-%s", n, r.user)
	if !r.revoke.Load() {
		r.srv.AddToken(r.user, tok)
	}
	r.mu.Lock()
	r.issued = append(r.issued, tok)
	r.mu.Unlock()
	return &oauth2.Token{AccessToken: tok}, nil
}

// TestWatchOAuthReconnects: an OAuth connection logs in again after a drop
// with a fresh token from its TokenSource; a rejected token stops the
// watch with ErrAuth, and no token shows in its status.
func TestWatchOAuthReconnects(t *testing.T) {
	srv := dovecottest.Shared(t, dovecottest.Options{OAuth: true})
	user := srv.AddUser(t, "WatchOAuth", dovecotPassword)
	proxy := cutproxy.Start(t, srv.IMAPAddr)
	conn := connection(t, proxy.Addr)
	conn.Name, conn.User = "oauth", user
	ts := &rotatingTokens{srv: srv, user: user}
	opts := mimap.Options{TokenSource: ts, Security: mimap.StartTLS, RootCAs: srv.CAPool}
	ch := newChanges()
	w := newWatcher(t, mimap.WatchOptions{OnChange: ch.on, Coalesce: 10 * time.Millisecond, Backoff: 20 * time.Millisecond})
	if err := w.Watch(testCtx(t), conn, opts); err != nil {
		t.Fatal(err)
	}
	waitState(t, w, conn.Name, mimap.WatchIdling, 10*time.Second)
	ch.wait(t, 2*time.Second, "after connecting")
	ch.drain()
	srv.Deliver(t, user, "INBOX", mail(1, "oauth idle"))
	ch.wait(t, 2*time.Second, "after a delivery")

	proxy.CutAll()
	ch.wait(t, 5*time.Second, "after the reconnection")
	st := waitState(t, w, conn.Name, mimap.WatchIdling, 5*time.Second)
	if st.Connects != 2 || ts.calls.Load() != 2 {
		t.Fatalf("after a cut: %d connects, %d tokens; want 2 and 2", st.Connects, ts.calls.Load())
	}

	ts.revoke.Store(true)
	proxy.CutAll()
	st = waitState(t, w, conn.Name, mimap.WatchFailed, 10*time.Second)
	if !errors.Is(st.LastError, mailsync.ErrAuth) {
		t.Fatalf("rejected token: LastError %v, want ErrAuth", st.LastError)
	}
	ts.mu.Lock()
	defer ts.mu.Unlock()
	for _, tok := range ts.issued {
		if strings.Contains(st.LastError.Error(), tok) {
			t.Errorf("LastError shows a token: %v", st.LastError)
		}
	}
}

// TestWatchDetectsSilentServer: a server that stops answering (a half-open
// connection) is noticed when IDLE is renewed: DONE gets no answer within
// CommandTimeout, and the watch reconnects.
func TestWatchDetectsSilentServer(t *testing.T) {
	f := startNoIdle(t, true)
	conn := connection(t, f.addr)
	opts := mimap.Options{Password: testPassword, Security: mimap.Plaintext, AllowPlaintextLogin: true,
		CommandTimeout: 300 * time.Millisecond}
	ch := newChanges()
	w := newWatcher(t, mimap.WatchOptions{OnChange: ch.on, RenewEvery: 200 * time.Millisecond, Backoff: 20 * time.Millisecond})
	if err := w.Watch(testCtx(t), conn, opts); err != nil {
		t.Fatal(err)
	}
	waitState(t, w, conn.Name, mimap.WatchIdling, 5*time.Second)
	time.Sleep(500 * time.Millisecond) // renewals that work
	if st, _ := w.Status(conn.Name); st.Connects != 1 || st.Failures != 0 || f.idles.Load() < 2 {
		t.Fatalf("renewing on a healthy server: %+v, %d IDLE", st, f.idles.Load())
	}
	f.stallDone.Store(true)
	stalled := time.Now()
	deadline := stalled.Add(3 * time.Second)
	var st mimap.WatchStatus
	for {
		st, _ = w.Status(conn.Name)
		if st.Failures > 0 && st.Connects >= 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the silent server was not noticed within 3s: %+v", st)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if !errors.Is(st.LastError, mailsync.ErrConnection) {
		t.Errorf("LastError = %v, want ErrConnection", st.LastError)
	}
	t.Logf("silent server noticed and reconnected after %s: %v", time.Since(stalled).Round(time.Millisecond), st.LastError)
}

// TestWatchBoundsConnectionAttempts: with many mailboxes watched at once,
// at most MaxConnecting connection attempts run at a time (a thousand
// simultaneous TLS handshakes made half of them miss DialTimeout), and
// every watch still reaches IDLE.
func TestWatchBoundsConnectionAttempts(t *testing.T) {
	m := startMem(t, memOptions{insecureAuth: true})
	var mu sync.Mutex
	inFlight, most := 0, 0
	slowDial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		mu.Lock()
		inFlight++
		most = max(most, inFlight)
		mu.Unlock()
		defer func() { mu.Lock(); inFlight--; mu.Unlock() }()
		time.Sleep(100 * time.Millisecond)
		var d net.Dialer
		return d.DialContext(ctx, network, addr)
	}
	opts := mimap.Options{Password: testPassword, Security: mimap.Plaintext, AllowPlaintextLogin: true, DialContext: slowDial}
	const n, limit = 8, 2
	w := newWatcher(t, mimap.WatchOptions{OnChange: func(string) {}, MaxConnections: n, MaxConnecting: limit})
	ctx := testCtx(t)
	for i := range n {
		c := connection(t, m.Addr)
		c.Name = fmt.Sprintf("box%d", i)
		if err := w.Watch(ctx, c, opts); err != nil {
			t.Fatal(err)
		}
	}
	for i := range n {
		waitState(t, w, fmt.Sprintf("box%d", i), mimap.WatchIdling, 10*time.Second)
	}
	mu.Lock()
	defer mu.Unlock()
	if most > limit {
		t.Errorf("%d connection attempts at once, want at most MaxConnecting = %d", most, limit)
	}
	if _, err := mimap.NewWatcher(mimap.WatchOptions{OnChange: func(string) {}, MaxConnecting: -1}); !errors.Is(err, mailsync.ErrInvalidConfig) {
		t.Errorf("negative MaxConnecting: %v, want ErrInvalidConfig", err)
	}
}
