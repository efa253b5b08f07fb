package pgtest

import (
	"bufio"
	"context"
	"database/sql"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestMain(m *testing.M) {
	if os.Getenv("PGTEST_HELPER") == "crash" {
		crashHelper()
		return
	}
	code := m.Run()
	StopAll()
	os.Exit(code)
}

func TestDatabasePerTest(t *testing.T) {
	ctx := context.Background()
	dsn1, dsn2 := NewDatabase(t), NewDatabase(t)
	if dsn1 == dsn2 {
		t.Fatalf("two tests' databases share a DSN: %s", dsn1)
	}
	db1, err := sql.Open("pgx", dsn1)
	if err != nil {
		t.Fatal(err)
	}
	defer db1.Close()
	if _, err := db1.ExecContext(ctx, `CREATE TABLE x (v text); INSERT INTO x VALUES ('one')`); err != nil {
		t.Fatal(err)
	}
	db2, err := sql.Open("pgx", dsn2)
	if err != nil {
		t.Fatal(err)
	}
	defer db2.Close()
	var n int
	if err := db2.QueryRowContext(ctx, `SELECT count(*) FROM pg_tables WHERE tablename = 'x'`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Fatal("a table of one test's database is visible in another's")
	}
	var user string
	if err := db1.QueryRowContext(ctx, `SELECT current_user`).Scan(&user); err != nil || user != Superuser {
		t.Fatalf("current_user %q, %v", user, err)
	}
	c := Shared(t)
	if !strings.HasPrefix(c.Dir, os.TempDir()) {
		t.Fatalf("cluster outside the temp dir: %s", c.Dir)
	}
	if os.Geteuid() == 0 {
		fi, err := os.Stat(filepath.Join(c.Dir, "data"))
		if err != nil {
			t.Fatal(err)
		}
		if st := fi.Sys().(*syscall.Stat_t); st.Uid != nobody {
			t.Fatalf("as root, the data directory belongs to uid %d, want nobody", st.Uid)
		}
	}
}

func TestDatabaseDroppedAtCleanup(t *testing.T) {
	var name string
	t.Run("inner", func(t *testing.T) {
		dsn := NewDatabase(t)
		name = dsn[strings.LastIndex(dsn, "/")+1 : strings.Index(dsn, "?")]
	})
	var n int
	if err := Shared(t).admin.QueryRow(`SELECT count(*) FROM pg_database WHERE datname = $1`, name).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Fatalf("database %s still exists after its test", name)
	}
}

func TestStopRemovesEverything(t *testing.T) {
	if err := Available(); err != nil {
		skipOrFail(t, err)
	}
	c, err := Start()
	if err != nil {
		t.Fatal(err)
	}
	pid := c.proc.pid
	if err := c.Stop(); err != nil {
		t.Fatal(err)
	}
	if alive(pid) {
		t.Fatalf("postgres %d still runs after Stop", pid)
	}
	if _, err := os.Stat(c.Dir); !os.IsNotExist(err) {
		t.Fatalf("%s left behind: %v", c.Dir, err)
	}
	if err := c.Stop(); err != nil {
		t.Fatalf("second Stop: %v", err)
	}
}

// crashHelper starts a cluster, reports it and waits to be killed.
func crashHelper() {
	c, err := Start()
	if err != nil {
		fmt.Println("error", err)
		os.Exit(1)
	}
	fmt.Println("started", c.proc.pid, c.Dir)
	time.Sleep(time.Minute)
	os.Exit(2)
}

// A test binary killed with SIGKILL (no cleanup runs) takes its postgres
// along, and the next Start sweeps the directory it left.
func TestCrashedTestBinaryLeavesNoServer(t *testing.T) {
	if err := Available(); err != nil {
		skipOrFail(t, err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "PGTEST_HELPER=crash")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		_ = cmd.Process.Kill()
		t.Fatalf("helper: %v", err)
	}
	f := strings.Fields(line)
	if len(f) != 3 || f[0] != "started" {
		_ = cmd.Process.Kill()
		t.Fatalf("helper said %q", line)
	}
	pid, _ := strconv.Atoi(f[1])
	dir := f[2]
	if !alive(pid) {
		t.Fatalf("postgres %d not running", pid)
	}
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
	deadline := time.Now().Add(15 * time.Second)
	for alive(pid) && !zombie(pid) {
		if time.Now().After(deadline) {
			_ = syscall.Kill(-pid, syscall.SIGKILL)
			t.Fatalf("postgres %d outlived its killed test binary", pid)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if _, err := os.Stat(dir); err != nil {
		t.Fatalf("the crashed helper's directory is already gone? %v", err)
	}
	sweepStale()
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		os.RemoveAll(dir)
		t.Fatalf("sweepStale left %s: %v", dir, err)
	}
}

// zombie reports whether pid has exited but not been reaped (its parent,
// the killed helper, is gone; init reaps it soon).
func zombie(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i >= 0 && i+2 < len(s) && s[i+2] == 'Z'
}

// The sweep also kills a postgres whose test binary is gone (when the
// parent-death signal could not act) and removes its directory.
func TestSweepKillsOrphanedServer(t *testing.T) {
	if err := Available(); err != nil {
		skipOrFail(t, err)
	}
	c, err := Start()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Stop()
	// Pretend the owner died: a pid that surely does not run.
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(c.Dir, "owner.pid"), []byte(strconv.Itoa(dead.Process.Pid)), 0o644); err != nil {
		t.Fatal(err)
	}
	pid := c.proc.pid
	sweepStale()
	select {
	case <-c.proc.done:
	case <-time.After(10 * time.Second):
		t.Fatalf("postgres %d of an orphaned directory not killed by the sweep", pid)
	}
	if _, err := os.Stat(c.Dir); !os.IsNotExist(err) {
		t.Fatalf("sweep left %s: %v", c.Dir, err)
	}
}

// Without PostgreSQL a test skips, except under CI=true, where it fails.
func TestMissingPostgresSkipsOrFailsUnderCI(t *testing.T) {
	if os.Getenv("PGTEST_BINDIR") == "/nonexistent" {
		t.Skip("inside the child")
	}
	for _, ci := range []string{"", "true"} {
		cmd := exec.Command(os.Args[0], "-test.run=^TestDatabasePerTest$", "-test.v")
		cmd.Env = append(os.Environ(), "PGTEST_BINDIR=/nonexistent", "CI="+ci)
		out, err := cmd.CombinedOutput()
		switch {
		case ci == "" && (err != nil || !strings.Contains(string(out), "--- SKIP")):
			t.Errorf("CI unset: %v, want a skip:\n%s", err, out)
		case ci == "true" && (err == nil || !strings.Contains(string(out), "CI=true: the PostgreSQL tests must run")):
			t.Errorf("CI=true: %v, want a failure:\n%s", err, out)
		}
	}
}
