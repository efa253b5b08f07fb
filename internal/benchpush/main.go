// Command benchpush is the Go half of scripts/bench-push.sh: IMAP IDLE
// (imap.Watcher) on a private Dovecot (internal/dovecottest). It has no
// tests, so `go test ./...` only compiles it.
//
//	benchpush idle -n 1000 -idle 60s
//
// watches n mailboxes (one IMAPS connection each) from this process and
// reports, once every watch idles, the Go heap per watched mailbox (after
// GC, against before the first Watch), goroutines and stack, the
// process's RSS, and the CPU (user+sys, getrusage) it uses over -idle
// seconds of idling. Then it delivers one message to -probe mailboxes and
// reports how long their notifications took.
//
//	benchpush latency -deliveries 200 -window 5m -mailboxes 10 -poll 60s
//
// measures delivery-to-ticket latency, IDLE and polling side by side in
// one run: 2×mailboxes users, half watched with IDLE (an OnChange starts
// a cursor-based mailsync.Sync of that connection, in-process), half
// synced every -poll from a random phase. The deliveries go at uniformly
// random times within -window, each to a random mailbox index, the same
// message to both sides at once. Latency = the ticket's arrival in the
// sink minus the start of the delivery (a Maildir write into new/).
package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mailsync/mailsync"
	"github.com/mailsync/mailsync/imap"
	"github.com/mailsync/mailsync/internal/dovecottest"
)

const password = "bench-password"

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: benchpush idle|latency [flags]")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "idle":
		err = idleRun(os.Args[2:])
	case "latency":
		err = latencyRun(os.Args[2:])
	default:
		err = fmt.Errorf("unknown command %q", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "benchpush:", err)
		os.Exit(1)
	}
}

// tb lets dovecottest run outside a test: failures end the program.
type tb struct{ testing.TB }

func (tb) Helper()                         {}
func (tb) Cleanup(func())                  {}
func (tb) Logf(format string, args ...any) { fmt.Fprintf(os.Stderr, format+"\n", args...) }
func (tb) Fatal(args ...any)               { fmt.Fprintln(os.Stderr, args...); os.Exit(1) }
func (t tb) Fatalf(format string, args ...any) {
	t.Fatal(fmt.Sprintf(format, args...))
}
func (t tb) Skip(args ...any) { t.Fatal(args...) }
func (t tb) Failed() bool     { return false }

// startDovecot starts a private Dovecot for n simultaneous IMAPS
// connections and prints the limits it set.
func startDovecot(n int) *dovecottest.Server {
	limit := n + 100
	// Every IMAPS connection holds an imap-login process (TLS proxy, in
	// the default high-security mode) and an imap process; anvil and auth
	// are connected to by each of them.
	// Each imap process also talks to stats (whose default client_limit,
	// 1000, dropped connections with 1,000 mailboxes).
	extra := fmt.Sprintf("service anvil {\n  client_limit = %[1]d\n}\nservice auth {\n  client_limit = %[1]d\n}\nservice stats {\n  client_limit = %[1]d\n}\nmail_max_userip_connections = 10", 2*limit+100)
	srv := dovecottest.Start(tb{}, dovecottest.Options{LoginProcessLimit: limit, ExtraConfig: extra})
	fmt.Printf("dovecot: service imap-login and imap process_limit = %d (high-security login: one process per connection), service anvil, auth and stats client_limit = %d, mail_max_userip_connections = 10; our ulimit -n = %s; fs.inotify.max_user_instances = %s\n",
		limit, 2*limit+100, nofile(), readTrim("/proc/sys/fs/inotify/max_user_instances"))
	return srv
}

func nofile() string {
	var r syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &r); err != nil {
		return "?"
	}
	return strconv.FormatUint(r.Cur, 10)
}

// loadavg is the 1, 5 and 15 minute load average.
func loadavg() string {
	f := strings.Fields(readTrim("/proc/loadavg"))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

func readTrim(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "?"
	}
	return strings.TrimSpace(string(b))
}

// target is one mailbox to watch or sync.
type target struct {
	conn mailsync.Connection
	opts imap.Options
}

func targets(srv *dovecottest.Server, prefix string, n int) ([]target, error) {
	host, portStr, err := net.SplitHostPort(srv.IMAPSAddr)
	if err != nil {
		return nil, err
	}
	port, _ := strconv.Atoi(portStr)
	out := make([]target, n)
	for i := range out {
		user := srv.AddUser(tb{}, fmt.Sprintf("%s%04d", prefix, i), password)
		out[i] = target{
			conn: mailsync.Connection{Name: user, Enabled: true, User: user, Server: host, Port: port,
				Protocol: mailsync.IMAP, ConnectedWith: []string{"bench"}},
			opts: imap.Options{Password: password, Security: imap.ImplicitTLS, RootCAs: srv.CAPool,
				TLSConfig: &tls.Config{MinVersion: tls.VersionTLS12}},
		}
	}
	return out, nil
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func rssKiB() string {
	b, _ := os.ReadFile("/proc/self/status")
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "VmRSS:") {
			return strings.TrimSpace(strings.TrimPrefix(l, "VmRSS:"))
		}
	}
	return "?"
}

func heap() runtime.MemStats {
	var ms runtime.MemStats
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&ms)
	return ms
}

func idleRun(args []string) error {
	fs := flag.NewFlagSet("idle", flag.ExitOnError)
	n := fs.Int("n", 1000, "mailboxes to watch")
	idle := fs.Duration("idle", 60*time.Second, "how long to measure CPU while idling")
	probe := fs.Int("probe", 20, "mailboxes that get one message after the idle window (notification check)")
	fs.Parse(args)
	srv := startDovecot(*n)
	defer srv.Stop()
	tgs, err := targets(srv, "idle", *n)
	if err != nil {
		return err
	}
	notified := make(chan string, 4*(*n)+100)
	w, err := imap.NewWatcher(imap.WatchOptions{MaxConnections: *n, OnChange: func(name string) {
		select {
		case notified <- name:
		default:
		}
	}})
	if err != nil {
		return err
	}
	defer w.Close()
	goroutines := runtime.NumGoroutine()
	before := heap()
	start := time.Now()
	cpu0 := cpuTime()
	ctx := context.Background()
	for _, tg := range tgs {
		if err := w.Watch(ctx, tg.conn, tg.opts); err != nil {
			return err
		}
	}
	for {
		idling, failed := 0, 0
		for _, st := range w.Statuses() {
			switch {
			case st.State == imap.WatchIdling:
				idling++
			case st.Failures > 0:
				failed++
			}
		}
		if idling == *n {
			break
		}
		if time.Since(start) > 10*time.Minute {
			return fmt.Errorf("after 10 minutes only %d of %d watches idle (%d failing); see %s", idling, *n, failed, srv.LogFile)
		}
		time.Sleep(100 * time.Millisecond)
	}
	connected := time.Since(start)
	connectCPU := cpuTime() - cpu0
	fmt.Printf("idle: failed connection attempts before all %d idled: %s\n", *n, failureSummary(w))
	time.Sleep(2 * time.Second) // the connect notifications
	for len(notified) > 0 {
		<-notified
	}
	after := heap()
	per := (int64(after.HeapAlloc) - int64(before.HeapAlloc)) / int64(*n)
	fmt.Printf("idle: %d mailboxes idling (IMAPS, one connection each) after %.1f s, connecting took %.1f ms CPU per mailbox\n",
		*n, connected.Seconds(), float64(connectCPU.Microseconds())/1000/float64(*n))
	fmt.Printf("idle: heap %d -> %d B: %d B (%.1f KiB) per watched mailbox; goroutines %d per mailbox; stack in use %.1f KiB per mailbox; RSS %s\n",
		before.HeapAlloc, after.HeapAlloc, per, float64(per)/1024, (runtime.NumGoroutine()-goroutines) / *n,
		float64(after.StackInuse-before.StackInuse)/1024/float64(*n), rssKiB())

	cpu1 := cpuTime()
	t1 := time.Now()
	time.Sleep(*idle)
	cpuIdle := cpuTime() - cpu1
	el := time.Since(t1)
	fmt.Printf("idle: CPU while idling %s over %s: %.3f%% of one core, %.1f µs per mailbox per minute\n",
		cpuIdle.Round(time.Microsecond), el.Round(time.Millisecond), 100*cpuIdle.Seconds()/el.Seconds(),
		float64(cpuIdle.Microseconds())/float64(*n)/el.Minutes())
	extraNotes := 0
	for len(notified) > 0 {
		<-notified
		extraNotes++
	}
	if extraNotes > 0 {
		fmt.Printf("idle: %d OnChange calls while idling (none expected)\n", extraNotes)
	}

	// Probe: a message to some mailboxes at once, their notifications
	// timed (at most 40 s: Dovecot's imap processes that got no inotify
	// instance look every mailbox_idle_check_interval, 30 s).
	if *probe > 0 {
		sent := map[string]time.Time{}
		for _, i := range rand.Perm(*n)[:min(*probe, *n)] {
			name := tgs[i].conn.Name
			sent[name] = time.Now()
			srv.Deliver(tb{}, name, "INBOX", message(i, "probe"))
		}
		var lat []time.Duration
		total := len(sent)
		deadline := time.After(40 * time.Second)
	wait:
		for len(lat) < total {
			select {
			case got := <-notified:
				if t0, ok := sent[got]; ok {
					lat = append(lat, time.Since(t0))
					delete(sent, got)
				}
			case <-deadline:
				break wait
			}
		}
		slices.Sort(lat)
		if len(lat) == 0 {
			fmt.Printf("idle: no notification within 40 s after a delivery to %d mailboxes\n", len(sent))
		} else {
			fmt.Printf("idle: a delivery to %d of the %d watched mailboxes at once: %d notified within 40 s, p50 %s, max %s\n",
				len(lat)+len(sent), *n, len(lat), lat[len(lat)/2].Round(time.Millisecond), lat[len(lat)-1].Round(time.Millisecond))
		}
	}
	fmt.Printf("idle: failed connection attempts over the whole run: %s\n", failureSummary(w))
	fmt.Printf("idle: Dovecot log: %s\n", logSummary(srv.LogFile))
	return nil
}

// failureSummary counts the watches' failed attempts, by error.
func failureSummary(w *imap.Watcher) string {
	var total int64
	byErr := map[string]int{}
	for _, st := range w.Statuses() {
		total += st.Failures
		if st.Failures > 0 && st.LastError != nil {
			e := st.LastError.Error()
			if len(e) > 120 {
				e = e[:120]
			}
			byErr[e]++
		}
	}
	if total == 0 {
		return "none"
	}
	out := fmt.Sprintf("%d; last errors:", total)
	for e, c := range byErr {
		out += fmt.Sprintf(" [%d× %s]", c, e)
	}
	return out
}

// logSummary counts Dovecot's warnings and errors by message (without
// the per-connection details).
func logSummary(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	counts := map[string]int{}
	for _, l := range strings.Split(string(b), "\n") {
		i := strings.Index(l, "Warning: ")
		if i < 0 {
			i = strings.Index(l, "Error: ")
		}
		if i < 0 {
			i = strings.Index(l, "Fatal: ")
		}
		if i < 0 {
			continue
		}
		m := l[i:]
		if len(m) > 110 {
			m = m[:110]
		}
		counts[m]++
	}
	if len(counts) == 0 {
		return "no warnings or errors"
	}
	out := ""
	for m, c := range counts {
		out += fmt.Sprintf("\n  %5d× %s", c, m)
	}
	return out
}

// message is a small realistic mail whose subject carries tag.
func message(i int, tag string) []byte {
	return fmt.Appendf(nil, "From: Customer %d <customer%d@example.org>\r\nTo: support@example.com\r\nSubject: %s\r\nDate: %s\r\nMessage-ID: <%s-%d@example.org>\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nHello, my printer is on fire (%s).\r\n",
		i, i, tag, time.Now().Format(time.RFC1123Z), tag, i, tag)
}

// timingSink records when each ticket arrived, by subject.
type timingSink struct {
	mu   sync.Mutex
	at   map[string]time.Time
	more chan struct{}
}

func (s *timingSink) CreateTicket(ctx context.Context, t *mailsync.Ticket) (mailsync.Receipt, error) {
	now := time.Now()
	subject := ""
	if t.Message != nil {
		subject = t.Message.Subject
	}
	s.mu.Lock()
	if _, ok := s.at[subject]; !ok {
		s.at[subject] = now
	}
	s.mu.Unlock()
	select {
	case s.more <- struct{}{}:
	default:
	}
	return mailsync.Receipt{TicketID: t.IdempotencyKey}, nil
}

func (s *timingSink) Quarantine(ctx context.Context, q *mailsync.Quarantined) error { return nil }

func (s *timingSink) get(subject string) (time.Time, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.at[subject]
	return t, ok
}

// syncer runs the cursor-based sync of one connection, never two at once.
type syncer struct {
	tg     target
	sink   mailsync.Sink
	state  mailsync.State
	log    *slog.Logger
	mu     sync.Mutex
	syncs  int
	failed int
}

func (s *syncer) sync(ctx context.Context) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, err := imap.New(s.tg.conn, s.tg.opts)
	if err == nil {
		_, err = mailsync.Sync(ctx, c, mailsync.DefaultMapping("bench"), s.sink, mailsync.WithState(s.state), mailsync.WithLogger(s.log))
		c.Close()
	}
	s.syncs++
	if err != nil {
		s.failed++
		s.log.Warn("sync failed", "connection", s.tg.conn.Name, "err", err)
	}
}

func latencyRun(args []string) error {
	fs := flag.NewFlagSet("latency", flag.ExitOnError)
	deliveries := fs.Int("deliveries", 200, "messages delivered (to each side)")
	window := fs.Duration("window", 5*time.Minute, "deliveries go at random times within this window")
	mailboxes := fs.Int("mailboxes", 10, "mailboxes per side")
	poll := fs.Duration("poll", 60*time.Second, "polling interval of the polled side")
	coalesce := fs.Duration("coalesce", imap.DefaultCoalesce, "WatchOptions.Coalesce of the IDLE side")
	fs.Parse(args)
	srv := startDovecot(2 * *mailboxes)
	defer srv.Stop()
	idleT, err := targets(srv, "push", *mailboxes)
	if err != nil {
		return err
	}
	pollT, err := targets(srv, "poll", *mailboxes)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	sink := &timingSink{at: map[string]time.Time{}, more: make(chan struct{}, 1)}
	state := mailsync.NewMemoryState()

	// IDLE side: OnChange marks the connection; its loop syncs (again, if
	// marked meanwhile).
	kick := map[string]chan struct{}{}
	var notesMu sync.Mutex
	notes := map[string][]time.Time{} // OnChange calls per connection
	var wg sync.WaitGroup
	var idleSyncers []*syncer
	for _, tg := range idleT {
		ch := make(chan struct{}, 1)
		kick[tg.conn.Name] = ch
		s := &syncer{tg: tg, sink: sink, state: state, log: log}
		idleSyncers = append(idleSyncers, s)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-ctx.Done():
					return
				case <-ch:
				}
				s.sync(ctx)
			}
		}()
	}
	w, err := imap.NewWatcher(imap.WatchOptions{MaxConnections: *mailboxes, Logger: log, Coalesce: *coalesce, OnChange: func(name string) {
		notesMu.Lock()
		notes[name] = append(notes[name], time.Now())
		notesMu.Unlock()
		select {
		case kick[name] <- struct{}{}:
		default:
		}
	}})
	if err != nil {
		return err
	}
	defer w.Close()
	for _, tg := range idleT {
		if err := w.Watch(ctx, tg.conn, tg.opts); err != nil {
			return err
		}
	}
	// Polling side: every -poll from a random phase.
	var pollSyncers []*syncer
	for _, tg := range pollT {
		s := &syncer{tg: tg, sink: sink, state: state, log: log}
		pollSyncers = append(pollSyncers, s)
		s.sync(ctx) // the first sync, as a long-running poller has done
		phase := rand.N(*poll)
		wg.Add(1)
		go func() {
			defer wg.Done()
			select {
			case <-ctx.Done():
				return
			case <-time.After(phase):
			}
			t := time.NewTicker(*poll)
			defer t.Stop()
			for {
				s.sync(ctx)
				select {
				case <-ctx.Done():
					return
				case <-t.C:
				}
			}
		}()
	}
	for start := time.Now(); ; time.Sleep(50 * time.Millisecond) {
		idling := 0
		for _, st := range w.Statuses() {
			if st.State == imap.WatchIdling {
				idling++
			}
		}
		if idling == *mailboxes {
			break
		}
		if time.Since(start) > time.Minute {
			return errors.New("the watches did not all reach IDLE within a minute")
		}
	}
	time.Sleep(3 * time.Second) // the connect notifications' syncs

	// The schedule: sorted random offsets within the window.
	offsets := make([]time.Duration, *deliveries)
	for i := range offsets {
		offsets[i] = rand.N(*window)
	}
	slices.Sort(offsets)
	type delivery struct {
		tag  string
		side string
		at   time.Time
		name string
	}
	var sent []delivery
	cpu0 := cpuTime()
	t0 := time.Now()
	fmt.Printf("latency: %d deliveries per side at random times within %s, %d mailboxes per side, poll every %s; load %s\n",
		*deliveries, *window, *mailboxes, *poll, loadavg())
	for i, off := range offsets {
		time.Sleep(time.Until(t0.Add(off)))
		k := rand.N(*mailboxes)
		for _, side := range []struct {
			name string
			tg   target
		}{{"idle", idleT[k]}, {"poll", pollT[k]}} {
			tag := fmt.Sprintf("bench-%s-%d", side.name, i)
			at := time.Now()
			srv.Deliver(tb{}, side.tg.conn.Name, "INBOX", message(i, tag))
			sent = append(sent, delivery{tag, side.name, at, side.tg.conn.Name})
		}
	}
	// Wait for every ticket: at most a poll interval after the last
	// delivery, plus slack.
	deadline := time.Now().Add(*poll + 30*time.Second)
	for {
		missing := 0
		for _, d := range sent {
			if _, ok := sink.get(d.tag); !ok {
				missing++
			}
		}
		if missing == 0 {
			break
		}
		if time.Now().After(deadline) {
			fmt.Printf("latency: %d tickets missing at the deadline\n", missing)
			break
		}
		select {
		case <-sink.more:
		case <-time.After(time.Second):
		}
	}
	elapsed := time.Since(t0)
	cpu := cpuTime() - cpu0
	lat := map[string][]time.Duration{}
	for _, d := range sent {
		if at, ok := sink.get(d.tag); ok {
			lat[d.side] = append(lat[d.side], at.Sub(d.at))
		}
		if d.side == "idle" {
			// The first OnChange of that mailbox after the delivery.
			notesMu.Lock()
			for _, n := range notes[d.name] {
				if n.After(d.at) {
					lat["notify"] = append(lat["notify"], n.Sub(d.at))
					break
				}
			}
			notesMu.Unlock()
		}
	}
	for _, side := range []string{"notify", "idle", "poll"} {
		l := lat[side]
		slices.Sort(l)
		if len(l) == 0 {
			fmt.Printf("latency: %s: no ticket\n", side)
			continue
		}
		syncs, failed := 0, 0
		for _, s := range map[string][]*syncer{"idle": idleSyncers, "poll": pollSyncers}[side] {
			s.mu.Lock()
			syncs += s.syncs
			failed += s.failed
			s.mu.Unlock()
		}
		if side == "notify" {
			fmt.Printf("latency: IDLE          delivery→OnChange over %d: p50 %8s  p90 %8s  p99 %8s  max %8s  (Coalesce %s)\n",
				len(l), pct(l, 50), pct(l, 90), pct(l, 99), l[len(l)-1].Round(time.Millisecond), *coalesce)
			continue
		}
		label := map[string]string{"idle": "IDLE         ", "poll": "poll " + poll.String() + "    "}[side]
		fmt.Printf("latency: %s delivery→ticket   over %d: p50 %8s  p90 %8s  p99 %8s  max %8s  (%d syncs, %d failed)\n",
			label, len(l), pct(l, 50), pct(l, 90), pct(l, 99), l[len(l)-1].Round(time.Millisecond), syncs, failed)
	}
	fmt.Printf("latency: run %.0f s, client CPU %.2f s in all; load at the end %s\n", elapsed.Seconds(), cpu.Seconds(), loadavg())
	cancel()
	w.Close()
	wg.Wait()
	return nil
}

// pct is the p-th percentile of sorted l (nearest rank).
func pct(l []time.Duration, p int) string {
	i := (len(l)*p+99)/100 - 1
	return l[max(i, 0)].Round(time.Millisecond).String()
}
