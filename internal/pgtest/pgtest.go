// Package pgtest runs a private, real PostgreSQL cluster on loopback for
// tests.
//
// Everything lives in one temporary directory (Cluster.Dir): the data
// directory made by initdb (trust authentication, superuser "mailsync",
// UTF8, no locale), the server's log and its Unix socket. The server
// listens on a free port of 127.0.0.1 and runs with fsync off: it is fast
// and durable against nothing but a clean stop, which is what tests need.
//
// One cluster per test binary, one database per test: start-up (initdb
// and the server, about a second) is paid once, and CREATE DATABASE is
// cheap.
//
//	func TestMain(m *testing.M) {
//		code := m.Run()
//		pgtest.StopAll()
//		os.Exit(code)
//	}
//
//	func TestSomething(t *testing.T) {
//		dsn := pgtest.NewDatabase(t) // postgres://mailsync@127.0.0.1:port/t3_something
//		db, err := sql.Open("pgx", dsn)
//		...
//	}
//
// # Root, cleanup and crashes
//
// initdb and postgres refuse to run as root. As root (CI), both run as
// nobody (uid and gid 65534) on a directory owned by nobody. The server
// runs in its own process group and is started with a parent-death signal
// (SIGQUIT, PostgreSQL's immediate shutdown), so a test binary that dies
// (a panic, a timeout, kill -9) takes its server along. Stop shuts it down
// (SIGINT, then SIGQUIT, then SIGKILL of the group) and removes the
// directory. As a last resort, Start sweeps directories left by earlier
// runs whose test binary is gone, killing a postgres still serving one.
//
// # Environment
//
//   - CI=true: missing PostgreSQL binaries fail the test instead of
//     skipping it. scripts/install-test-deps.sh installs them (Debian's
//     postgresql package; the binaries are in /usr/lib/postgresql/*/bin).
//   - PGTEST_BINDIR: the directory of initdb and postgres (default: the
//     newest /usr/lib/postgresql/*/bin, then PATH).
//   - PGTEST_KEEP=1: keep Cluster.Dir after Stop, for debugging.
//
// If a test fails, the tail of the server's log is printed.
package pgtest

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // the "pgx" driver, for readiness and CREATE DATABASE
)

// Superuser is the cluster's superuser role (trust authentication).
const Superuser = "mailsync"

// nobody is the uid and gid the cluster runs as when the tests run as root.
const nobody = 65534

// Cluster is a running private PostgreSQL.
type Cluster struct {
	// Dir is the cluster's private directory (data, log, socket).
	Dir string
	// Port is the TCP port on 127.0.0.1.
	Port int
	// LogFile is the server's log.
	LogFile string

	bindir string
	admin  *sql.DB // connected to the "postgres" database
	proc   *process

	mu      sync.Mutex
	seq     int
	stopped bool
}

type process struct {
	pid  int
	done chan struct{} // closed when postgres has exited and been reaped
	err  error
}

// Available reports why PostgreSQL cannot be started here (nil when the
// binaries are found).
func Available() error {
	_, err := findBindir()
	return err
}

// findBindir locates the directory holding initdb and postgres.
func findBindir() (string, error) {
	ok := func(dir string) bool {
		for _, name := range []string{"initdb", "postgres"} {
			fi, err := os.Stat(filepath.Join(dir, name))
			if err != nil || fi.IsDir() || fi.Mode()&0o111 == 0 {
				return false
			}
		}
		return true
	}
	if dir := os.Getenv("PGTEST_BINDIR"); dir != "" {
		if !ok(dir) {
			return "", fmt.Errorf("PGTEST_BINDIR=%s holds no initdb and postgres", dir)
		}
		return dir, nil
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool { return version(dirs[i]) > version(dirs[j]) })
	for _, dir := range dirs {
		if ok(dir) {
			return dir, nil
		}
	}
	if p, err := exec.LookPath("initdb"); err == nil && ok(filepath.Dir(p)) {
		return filepath.Dir(p), nil
	}
	return "", errors.New("PostgreSQL server binaries (initdb, postgres) not found in /usr/lib/postgresql/*/bin or PATH")
}

// version extracts N from /usr/lib/postgresql/N/bin.
func version(dir string) float64 {
	v, _ := strconv.ParseFloat(filepath.Base(filepath.Dir(dir)), 64)
	return v
}

func skipOrFail(t testing.TB, err error) {
	t.Helper()
	msg := fmt.Sprintf("pgtest: %v; install Debian's postgresql (scripts/install-test-deps.sh) to run this test", err)
	if os.Getenv("CI") == "true" {
		t.Fatal(msg + " (CI=true: the PostgreSQL tests must run)")
	}
	t.Skip(msg)
}

// Start initialises and starts a cluster in a new temporary directory. The
// caller stops it with Stop. Most tests use Shared or NewDatabase instead.
func Start() (*Cluster, error) {
	bindir, err := findBindir()
	if err != nil {
		return nil, err
	}
	sweepStale()
	dir, err := os.MkdirTemp("", "pgtest-")
	if err != nil {
		return nil, err
	}
	c := &Cluster{Dir: dir, LogFile: filepath.Join(dir, "postgres.log"), bindir: bindir}
	if err := c.init(); err != nil {
		c.removeDir()
		return nil, err
	}
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		if lastErr = c.start(); lastErr == nil {
			return c, nil
		}
	}
	c.removeDir()
	return nil, lastErr
}

// asRoot reports whether the cluster must run as nobody.
func asRoot() bool { return os.Geteuid() == 0 }

// command prepares one of the cluster's programs, as nobody when root.
func (c *Cluster) command(name string, args ...string) *exec.Cmd {
	cmd := exec.Command(filepath.Join(c.bindir, name), args...)
	cmd.Dir = c.Dir
	cmd.Env = []string{"PATH=/usr/bin:/bin", "LC_ALL=C", "LANG=C", "TZ=UTC"}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if asRoot() {
		cmd.SysProcAttr.Credential = &syscall.Credential{Uid: nobody, Gid: nobody, Groups: []uint32{}}
	}
	return cmd
}

// init writes the owner file and runs initdb.
func (c *Cluster) init() error {
	// The owner file tells sweepStale of later runs whose directory this is.
	if err := os.WriteFile(filepath.Join(c.Dir, "owner.pid"), []byte(strconv.Itoa(os.Getpid())), 0o644); err != nil {
		return err
	}
	if asRoot() {
		if err := os.Chown(c.Dir, nobody, nobody); err != nil {
			return err
		}
	}
	if err := os.Chmod(c.Dir, 0o700); err != nil {
		return err
	}
	cmd := c.command("initdb", "-D", filepath.Join(c.Dir, "data"), "-U", Superuser, "--auth=trust",
		"-E", "UTF8", "--no-locale", "--no-sync", "--no-instructions")
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("initdb: %v: %s", err, tail(string(out), 20))
	}
	return nil
}

// freePort asks the kernel for a free port on 127.0.0.1.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// start runs postgres in the foreground (as our child) and waits until it
// accepts connections.
func (c *Cluster) start() error {
	port, err := freePort()
	if err != nil {
		return err
	}
	logf, err := os.OpenFile(c.LogFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	cmd := c.command("postgres", "-D", filepath.Join(c.Dir, "data"),
		"-p", strconv.Itoa(port),
		"-c", "listen_addresses=127.0.0.1",
		"-c", "unix_socket_directories="+c.Dir,
		"-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
		"-c", "max_connections=200", "-c", "shared_buffers=32MB",
		"-c", "logging_collector=off", "-c", "log_min_messages=warning")
	cmd.Stdout, cmd.Stderr = logf, logf
	// Pdeathsig fires when the thread that started the child exits, not
	// the process: start it from a goroutine that keeps its thread locked
	// until postgres has exited.
	cmd.SysProcAttr.Pdeathsig = syscall.SIGQUIT
	p := &process{done: make(chan struct{})}
	started := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		defer logf.Close()
		if err := cmd.Start(); err != nil {
			started <- err
			runtime.UnlockOSThread()
			close(p.done)
			return
		}
		p.pid = cmd.Process.Pid
		started <- nil
		p.err = cmd.Wait()
		runtime.UnlockOSThread()
		close(p.done)
	}()
	if err := <-started; err != nil {
		return fmt.Errorf("start postgres: %w", err)
	}
	c.proc, c.Port = p, port
	admin, err := sql.Open("pgx", c.DSN("postgres"))
	if err != nil {
		c.kill()
		return err
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		select {
		case <-p.done:
			admin.Close()
			return fmt.Errorf("postgres exited during start-up (%v): %s", p.err, tail(c.readLog(), 20))
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		err := admin.PingContext(ctx)
		cancel()
		if err == nil {
			c.admin = admin
			return nil
		}
		if time.Now().After(deadline) {
			admin.Close()
			c.kill()
			return fmt.Errorf("postgres not ready after 30s: %v: %s", err, tail(c.readLog(), 20))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// DSN returns the URL of database db on the cluster.
func (c *Cluster) DSN(db string) string {
	return fmt.Sprintf("postgres://%s@127.0.0.1:%d/%s?sslmode=disable", Superuser, c.Port, db)
}

// CreateDatabase creates an empty database for t, dropped (with its
// connections) at t's cleanup, and returns its DSN. On a failed test the
// tail of the server's log is printed.
func (c *Cluster) CreateDatabase(t testing.TB) string {
	t.Helper()
	c.mu.Lock()
	c.seq++
	name := fmt.Sprintf("t%d_%s", c.seq, sanitize(t.Name()))
	c.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := c.admin.ExecContext(ctx, `CREATE DATABASE "`+name+`"`); err != nil {
		t.Fatalf("pgtest: create database %s: %v", name, err)
	}
	logSize := c.logSize()
	t.Cleanup(func() {
		if t.Failed() {
			log := c.readLog()
			t.Logf("pgtest: postgres log during the test:\n%s", tail(log[min(int(logSize), len(log)):], 40))
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if _, err := c.admin.ExecContext(ctx, `DROP DATABASE IF EXISTS "`+name+`" WITH (FORCE)`); err != nil {
			t.Logf("pgtest: drop database %s: %v", name, err)
		}
	})
	return c.DSN(name)
}

// sanitize turns a test name into a database name part.
func sanitize(name string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(name) {
		if (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9') {
			b.WriteRune(r)
		} else {
			b.WriteByte('_')
		}
		if b.Len() >= 40 {
			break
		}
	}
	return b.String()
}

// Stop shuts the server down (fast shutdown, then immediate, then
// SIGKILL of its process group) and removes Dir unless PGTEST_KEEP=1.
// It is safe to call more than once.
func (c *Cluster) Stop() error {
	c.mu.Lock()
	if c.stopped {
		c.mu.Unlock()
		return nil
	}
	c.stopped = true
	c.mu.Unlock()
	if c.admin != nil {
		c.admin.Close()
	}
	c.kill()
	if os.Getenv("PGTEST_KEEP") == "1" {
		return nil
	}
	return c.removeDir()
}

// kill stops the server and waits for it.
func (c *Cluster) kill() {
	p := c.proc
	if p == nil || p.pid == 0 {
		return
	}
	for _, step := range []struct {
		sig  syscall.Signal
		wait time.Duration
	}{{syscall.SIGINT, 10 * time.Second}, {syscall.SIGQUIT, 5 * time.Second}} {
		_ = syscall.Kill(p.pid, step.sig)
		select {
		case <-p.done:
			// Backends exit with the postmaster; make sure of it.
			_ = syscall.Kill(-p.pid, syscall.SIGKILL)
			return
		case <-time.After(step.wait):
		}
	}
	_ = syscall.Kill(-p.pid, syscall.SIGKILL)
	<-p.done
}

func (c *Cluster) removeDir() error {
	return os.RemoveAll(c.Dir)
}

func (c *Cluster) readLog() string {
	b, _ := os.ReadFile(c.LogFile)
	return string(b)
}

func (c *Cluster) logSize() int64 {
	fi, err := os.Stat(c.LogFile)
	if err != nil {
		return 0
	}
	return fi.Size()
}

// tail returns the last n lines of s, each cut to 500 bytes (the server
// logs a failed statement's parameters, which may be megabytes of keys).
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	for i, l := range lines {
		if len(l) > 500 {
			lines[i] = l[:500] + "…"
		}
	}
	return strings.Join(lines, "\n")
}

// sweepStale removes pgtest directories of test binaries that are gone,
// killing a postgres that still serves one (a crash of the test binary
// before Pdeathsig could act, e.g. when it was not the starting thread).
func sweepStale() {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), "pgtest-*"))
	for _, dir := range dirs {
		b, err := os.ReadFile(filepath.Join(dir, "owner.pid"))
		if err != nil {
			// Being created right now, or not ours: leave young ones alone.
			if fi, err := os.Stat(dir); err == nil && time.Since(fi.ModTime()) > time.Hour {
				if _, err := os.Stat(filepath.Join(dir, "data", "PG_VERSION")); err == nil {
					killPostmaster(dir)
					os.RemoveAll(dir)
				}
			}
			continue
		}
		owner, err := strconv.Atoi(strings.TrimSpace(string(b)))
		if err != nil || owner <= 0 || alive(owner) {
			continue
		}
		killPostmaster(dir)
		os.RemoveAll(dir)
	}
}

// alive reports whether process pid exists.
func alive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

// killPostmaster kills the postgres serving dir/data, if it runs.
func killPostmaster(dir string) {
	data := filepath.Join(dir, "data")
	b, err := os.ReadFile(filepath.Join(data, "postmaster.pid"))
	if err != nil {
		return
	}
	first, _, _ := strings.Cut(string(b), "\n")
	pid, err := strconv.Atoi(strings.TrimSpace(first))
	if err != nil || pid <= 0 || !alive(pid) {
		return
	}
	// Only a postgres of this very data directory (pids are reused).
	cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if !strings.Contains(string(cmdline), "postgres") || !strings.Contains(string(cmdline), data) {
		return
	}
	_ = syscall.Kill(pid, syscall.SIGQUIT)
	for i := 0; i < 50 && alive(pid); i++ {
		time.Sleep(100 * time.Millisecond)
	}
	_ = syscall.Kill(-pid, syscall.SIGKILL)
}

// shared is the process's cluster of Shared.
var shared struct {
	mu      sync.Mutex
	cluster *Cluster
	err     error
}

// Shared returns this test binary's cluster, starting it on first use. It
// is not stopped at the test's cleanup: call StopAll from TestMain after
// m.Run (a crash is covered by the parent-death signal). Without the
// PostgreSQL binaries it skips the test, or fails it under CI=true.
func Shared(t testing.TB) *Cluster {
	t.Helper()
	if err := Available(); err != nil {
		skipOrFail(t, err)
	}
	shared.mu.Lock()
	defer shared.mu.Unlock()
	if shared.cluster == nil && shared.err == nil {
		shared.cluster, shared.err = Start()
	}
	if shared.err != nil {
		t.Fatalf("pgtest: %v", shared.err)
	}
	return shared.cluster
}

// NewDatabase is Shared(t).CreateDatabase(t): a fresh database on the
// shared cluster, dropped at t's cleanup.
func NewDatabase(t testing.TB) string {
	t.Helper()
	return Shared(t).CreateDatabase(t)
}

// StopAll stops the shared cluster, if one was started.
func StopAll() {
	shared.mu.Lock()
	c := shared.cluster
	shared.cluster, shared.err = nil, nil
	shared.mu.Unlock()
	if c != nil {
		_ = c.Stop()
	}
}
