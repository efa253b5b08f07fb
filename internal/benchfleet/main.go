// Command benchfleet is the Go half of scripts/bench-fleet.sh. It has no
// tests, so `go test ./...` only compiles it.
//
//	benchfleet serve -dir D -users 1000 -full-users 200 -messages 50 -few 5 -mb 100 [-login-high-performance]
//
// starts a private Dovecot (internal/dovecottest) with imap-login and imap
// process_limit raised to users+100 (and, with -login-high-performance,
// imap-login's service_count = 0 and process_min_avail = 1), creates the users u0000…, delivers
// -messages realistic messages to each of the first -full-users and -few to
// the others, writes D/env and serves until D/stop exists.
//
//	benchfleet sync -env D/env -from 0 -to 1000 -workers 4 -state S.db -want-created N
//
// syncs the users [from, to) with the same engine a fleet worker runs (imap
// connector + mailsync.Sync with a durable sqlstate State in SQLite),
// -workers connections at a time, one shared tls.Config whose
// ClientSessionCache lets TLS sessions resume across the mailboxes of the
// server. It checks the number of tickets created and prints one line,
// with how many TLS handshakes resumed a session.
//
//	benchfleet sync -fleet [-postgres] …
//
// runs the same cycle through a running fleet.Fleet (fleet.go): one
// process, River with -workers workers (the concurrency, like xargs -P4),
// every connection scheduled, until each has been synced once. On SQLite
// (the embedded default) River, the fleet's SQLHealth and the sqlstate
// State share the -state file, as examples/mail2ticket -serve sets them
// up; with -postgres they all live in the PostgreSQL that serve -postgres
// started, and the server's CPU is reported too. -cpuprofile writes a
// profile of the run for go tool pprof.
package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"runtime/metrics"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/mailsync/mailsync"
	"github.com/mailsync/mailsync/imap"
	"github.com/mailsync/mailsync/internal/benchmail"
	"github.com/mailsync/mailsync/internal/benchsink"
	"github.com/mailsync/mailsync/internal/dovecottest"
	"github.com/mailsync/mailsync/internal/pgtest"
	"github.com/mailsync/mailsync/sqlstate"
)

const password = "bench-password"

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: benchfleet serve|sync|calibrate [flags]")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "serve":
		err = serve(os.Args[2:])
	case "sync":
		err = syncUsers(os.Args[2:])
	case "calibrate":
		err = calibrate()
	default:
		err = fmt.Errorf("unknown command %q", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "benchfleet:", err)
		os.Exit(1)
	}
}

func userName(i int) string { return fmt.Sprintf("u%04d", i) }

// isUserName reports whether id is a name userName makes.
func isUserName(id string) bool {
	digits, ok := strings.CutPrefix(id, "u")
	if !ok || len(digits) < 4 {
		return false
	}
	_, err := strconv.ParseUint(digits, 10, 31)
	return err == nil
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

func serve(args []string) error {
	fs := flag.NewFlagSet("serve", flag.ExitOnError)
	dir := fs.String("dir", "", "directory for the env file and the stop file")
	users := fs.Int("users", 1000, "number of users")
	fullUsers := fs.Int("full-users", 200, "users with -messages messages (the others get -few)")
	messages := fs.Int("messages", 50, "messages of each full user")
	few := fs.Int("few", 5, "messages of each other user")
	mb := fs.Int("mb", 100, "total size of all messages, MB")
	highPerf := fs.Bool("login-high-performance", false, "imap-login in high-performance mode (service_count = 0, process_min_avail = 1)")
	withPG := fs.Bool("postgres", false, "also start a private PostgreSQL (internal/pgtest) for sync -fleet -postgres")
	fs.Parse(args)
	if *dir == "" {
		return errors.New("serve: -dir is required")
	}
	*fullUsers = min(*fullUsers, *users)
	limit := *users + 100
	srv := dovecottest.Start(tb{}, dovecottest.Options{LoginProcessLimit: limit, LoginHighPerformance: *highPerf})
	defer srv.Stop()
	start := time.Now()
	counts := make([]int, *users)
	total := 0
	for i := range counts {
		counts[i] = *few
		if i < *fullUsers {
			counts[i] = *messages
		}
		total += counts[i]
	}
	for i := range counts {
		if got := srv.AddUser(tb{}, userName(i), password); got != userName(i) {
			return fmt.Errorf("user %s became %s", userName(i), got)
		}
	}
	user, left := 0, counts[0]
	size, err := benchmail.Generate(total, int64(*mb)*1_000_000, 1, func(_ int, raw []byte) error {
		for left == 0 {
			user++
			left = counts[user]
		}
		srv.Deliver(tb{}, userName(user), "INBOX", raw)
		left--
		return nil
	})
	if err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "generated %d users, %d messages, %.1f MB in %s; imap-login/imap process_limit = %d\n",
		*users, total, float64(size)/1e6, time.Since(start).Round(time.Millisecond), limit)
	env := fmt.Sprintf("BENCH_ADDR=%s\nBENCH_CA=%s\nBENCH_PASSWORD=%s\nBENCH_USERS=%d\nBENCH_FULL_USERS=%d\nBENCH_MESSAGES=%d\nBENCH_FEW=%d\nBENCH_PROCESS_LIMIT=%d\nBENCH_DOVECOT_CONF=%s\n",
		srv.IMAPSAddr, srv.CAFile, password, *users, *fullUsers, *messages, *few, limit, srv.ConfigFile)
	if *withPG {
		pg, err := pgtest.Start()
		if err != nil {
			return err
		}
		defer pg.Stop()
		env += fmt.Sprintf("BENCH_PG_DSN=%s\nBENCH_PG_PIDFILE=%s\n", pg.DSN("postgres"), filepath.Join(pg.Dir, "data", "postmaster.pid"))
	}
	if err := os.WriteFile(filepath.Join(*dir, "env.tmp"), []byte(env), 0o600); err != nil {
		return err
	}
	if err := os.Rename(filepath.Join(*dir, "env.tmp"), filepath.Join(*dir, "env")); err != nil {
		return err
	}
	for deadline := time.Now().Add(3 * time.Hour); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		if _, err := os.Stat(filepath.Join(*dir, "stop")); err == nil {
			return nil
		}
	}
	return errors.New("no stop file after 3 hours")
}

// countingCache counts the sessions offered for resumption.
type countingCache struct {
	tls.ClientSessionCache
	hits, misses atomic.Int64
}

func (c *countingCache) Get(key string) (*tls.ClientSessionState, bool) {
	s, ok := c.ClientSessionCache.Get(key)
	if ok {
		c.hits.Add(1)
	} else {
		c.misses.Add(1)
	}
	return s, ok
}

func syncUsers(args []string) error {
	fs := flag.NewFlagSet("sync", flag.ExitOnError)
	envFile := fs.String("env", "", "env file written by serve")
	from := fs.Int("from", 0, "first user index")
	to := fs.Int("to", -1, "last user index + 1 (default: all users)")
	workers := fs.Int("workers", 4, "connections synced at a time")
	statePath := fs.String("state", "", "SQLite state file (durable, kept between runs)")
	wantCreated := fs.Int("want-created", -1, "expected number of tickets created (-1: no check)")
	noResume := fs.Bool("no-resume", false, "no TLS session cache (a full handshake per connection)")
	classical := fs.Bool("x25519", false, "offer only X25519 (CurvePreferences), not Go's default hybrid X25519MLKEM768 key share, which a server without ML-KEM (Dovecot on OpenSSL 3.0) never picks")
	usePG := fs.Bool("postgres", false, "with -fleet: River (riverpgxv5), the state (sqlstate) and the health on the PostgreSQL of serve -postgres instead of SQLite")
	viaFleet := fs.Bool("fleet", false, "run the cycle through a fleet.Fleet on River (riversqlite on the state's SQLite file) with -workers River workers, instead of a direct loop")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of the sync part to this file")
	memProfile := fs.String("memprofile", "", "write an allocation profile (go tool pprof -sample_index=alloc_space) to this file at the end")
	fetchCooldown := fs.Duration("fetch-cooldown", 10*time.Millisecond, "with -fleet: River's FetchCooldown")
	fetchPoll := fs.Duration("fetch-poll", time.Second, "with -fleet: River's FetchPollInterval")
	secondCycle := fs.Duration("second-cycle", 0, "with -fleet: the fleet's Interval; the run goes on until every connection was synced twice and also reports the second cycle (from the end of the first to the end of the second: what a running fleet spends every Interval), with -cpuprofile profiling only that")
	riverPlain := fs.Bool("river-plain", false, "with -fleet on SQLite: River's connection from sql.Open, without sqlstate.OpenSQLiteDB's cache of prepared statements")
	fs.Parse(args)
	env, err := readEnv(*envFile)
	if err != nil {
		return err
	}
	if *to < 0 {
		*to, _ = strconv.Atoi(env["BENCH_USERS"])
	}
	pem, err := os.ReadFile(env["BENCH_CA"])
	if err != nil {
		return err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return errors.New("no certificate in " + env["BENCH_CA"])
	}
	host, portStr, err := net.SplitHostPort(env["BENCH_ADDR"])
	if err != nil {
		return err
	}
	port, _ := strconv.Atoi(portStr)
	ctx := context.Background()
	var st *sqlstate.State
	if *usePG {
		if env["BENCH_PG_DSN"] == "" {
			return errors.New("-postgres: no PostgreSQL in the env file (serve -postgres)")
		}
		st, err = sqlstate.OpenPostgres(ctx, env["BENCH_PG_DSN"], sqlstate.Options{})
	} else {
		st, err = sqlstate.OpenSQLite(ctx, *statePath)
	}
	if err != nil {
		return err
	}
	defer st.Close()
	var startProfile func() // with -second-cycle, at the first cycle's end
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			return err
		}
		defer f.Close()
		startProfile = func() {
			if err := pprof.StartCPUProfile(f); err != nil {
				fmt.Fprintln(os.Stderr, "benchfleet: CPU profile:", err)
			}
		}
		defer pprof.StopCPUProfile()
		if *secondCycle == 0 || !*viaFleet {
			startProfile()
			startProfile = nil
		}
	}
	if *memProfile != "" {
		defer func() {
			f, err := os.Create(*memProfile)
			if err == nil {
				_ = pprof.Lookup("allocs").WriteTo(f, 0)
				f.Close()
			}
		}()
	}
	cache := &countingCache{ClientSessionCache: tls.NewLRUClientSessionCache(64)}
	tlsConfig := &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: pool, ServerName: "localhost"}
	if !*noResume {
		tlsConfig.ClientSessionCache = cache
	}
	if *classical {
		tlsConfig.CurvePreferences = []tls.CurveID{tls.X25519}
	}
	var handshakes, resumed atomic.Int64
	tlsConfig.VerifyConnection = func(cs tls.ConnectionState) error {
		handshakes.Add(1)
		if cs.DidResume {
			resumed.Add(1)
		}
		return nil
	}
	logger := slog.New(slog.DiscardHandler)
	opts := imap.Options{Password: mailsync.Secret(password), Security: imap.ImplicitTLS, TLSConfig: tlsConfig, Logger: logger}
	sink := &benchsink.DiscardSink{}
	if *viaFleet {
		r := fleetRun{st: st, host: host, port: port, opts: opts, sink: sink, logger: logger, workers: *workers, fetchCooldown: *fetchCooldown, fetchPoll: *fetchPoll, riverPlain: *riverPlain,
			secondCycle: *secondCycle, onFirstCycle: startProfile}
		if *usePG {
			r.pgDSN, r.pgPIDFile = env["BENCH_PG_DSN"], env["BENCH_PG_PIDFILE"]
		}
		res, err := r.run(ctx, *from, *to)
		if err != nil {
			return err
		}
		n := *to - *from
		user, sys := cpuTimes()
		db := "SQLite"
		if *usePG {
			db = fmt.Sprintf("PostgreSQL, whose server used %.1f ms CPU/connection", float64(res.pgCPU.Microseconds())/1000/float64(n))
		}
		fmt.Printf("mailsync: %d connections, %d workers, fleet on River (%s), %d created, %d failed, TLS sessions offered %d/%d, resumed %d/%d, cycle %.2f s, CPU %.2f ms/connection in the cycle (%.2f ms with start-up), %.1f goroutines started/connection in the cycle, goroutines %d\n",
			n, *workers, db, sink.Tickets.Load(), res.failed, cache.hits.Load(), cache.hits.Load()+cache.misses.Load(), resumed.Load(), handshakes.Load(),
			res.wall.Seconds(), float64(res.cpu.Microseconds())/1000/float64(n), float64((user+sys).Microseconds())/1000/float64(n), float64(res.goroutines)/float64(n), runtime.NumGoroutine())
		if *secondCycle > 0 {
			m := float64(max(res.second.syncs, 1))
			server := ""
			if *usePG {
				server = fmt.Sprintf(" + %.2f ms in the PostgreSQL server", float64(res.second.pgCPU.Microseconds())/1000/m)
			}
			fmt.Printf("mailsync: second cycle (Interval %s): %d syncs, CPU %.2f ms/sync in the second cycle%s, %.1f goroutines started/sync\n",
				*secondCycle, res.second.syncs, float64(res.second.cpu.Microseconds())/1000/m, server, float64(res.second.goroutines)/m)
		}
		if res.failed > 0 {
			return fmt.Errorf("%d connections failed, first: %s", res.failed, res.firstErr)
		}
		if *wantCreated >= 0 && sink.Tickets.Load() != int64(*wantCreated) {
			return fmt.Errorf("created %d tickets, want %d", sink.Tickets.Load(), *wantCreated)
		}
		return nil
	}
	var created, already, failed, seen atomic.Int64
	var firstErr error
	var errMu sync.Mutex
	jobs := make(chan int)
	var wg sync.WaitGroup
	g0 := goroutinesStarted()
	start := time.Now()
	for range *workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range jobs {
				rep, err := syncOne(ctx, i, host, port, opts, st, sink, logger)
				if err == nil && rep.Failed > 0 {
					err = fmt.Errorf("%s: %d messages failed", userName(i), rep.Failed)
				}
				if err != nil {
					failed.Add(1)
					errMu.Lock()
					if firstErr == nil {
						firstErr = err
					}
					errMu.Unlock()
					continue
				}
				created.Add(int64(rep.Created + rep.Quarantined))
				already.Add(int64(rep.AlreadyDone))
				seen.Add(int64(rep.Seen))
			}
		}()
	}
	for i := *from; i < *to; i++ {
		jobs <- i
	}
	close(jobs)
	wg.Wait()
	d := time.Since(start)
	var ru struct{ user, sys time.Duration }
	ru.user, ru.sys = cpuTimes()
	n := *to - *from
	fmt.Printf("mailsync: %d connections, %d workers, %d seen, %d created, %d already done, %d failed, TLS sessions offered %d/%d, resumed %d/%d, %.2f s, CPU %.2f ms/connection, %.1f goroutines started/connection, goroutines %d\n",
		n, *workers, seen.Load(), created.Load(), already.Load(), failed.Load(), cache.hits.Load(), cache.hits.Load()+cache.misses.Load(), resumed.Load(), handshakes.Load(),
		d.Seconds(), float64((ru.user+ru.sys).Microseconds())/1000/float64(n), float64(goroutinesStarted()-g0)/float64(n), runtime.NumGoroutine())
	if firstErr != nil {
		return firstErr
	}
	if *wantCreated >= 0 && created.Load() != int64(*wantCreated) {
		return fmt.Errorf("created %d tickets, want %d", created.Load(), *wantCreated)
	}
	return nil
}

func syncOne(ctx context.Context, i int, host string, port int, opts imap.Options, st mailsync.State, sink mailsync.Sink, logger *slog.Logger) (*mailsync.Report, error) {
	conn := mailsync.Connection{Name: userName(i), Enabled: true, User: userName(i), Server: host, Port: port,
		Protocol: mailsync.IMAP, ConnectedWith: []string{"bench"}}
	c, err := imap.New(conn, opts)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	return mailsync.Sync(ctx, c, mailsync.DefaultMapping("bench"), sink, mailsync.WithState(st), mailsync.WithLogger(logger))
}

func readEnv(path string) (map[string]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	env := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), "="); ok {
			env[k] = v
		}
	}
	return env, sc.Err()
}

// goroutinesStarted is the number of goroutines this process started so
// far (runtime/metrics): every one costs a trip through the scheduler, and
// on an otherwise idle core a thread's wake-up.
func goroutinesStarted() uint64 {
	s := []metrics.Sample{{Name: "/sched/goroutines-created:goroutines"}}
	metrics.Read(s)
	if s[0].Value.Kind() != metrics.KindUint64 {
		return 0
	}
	return s[0].Value.Uint64()
}

// cpuTimes is this process's user and system CPU time so far.
func cpuTimes() (user, sys time.Duration) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0, 0
	}
	return time.Duration(ru.Utime.Nano()), time.Duration(ru.Stime.Nano())
}
