package sqlstate_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mailsync/mailsync"
	"github.com/mailsync/mailsync/internal/pgtest"
	"github.com/mailsync/mailsync/sqlstate"
)

// The test binary re-executed with helperEnv set is a second OS process
// holding its own State on the same database; it obeys one command per
// line on stdin and answers one line on stdout:
//
//	acquire CONN HOLDER TTL_MS  -> "ok TOKEN" | "busy" | "err ..."
//	record CONN KEY             -> "ok" | "lost" | "err ..." (fenced with the lease it holds for CONN)
//	race N PREFIX HOLDER UNIXNANO -> acquire PREFIXi at UNIXNANO + i*25ms, i < N: "won i j ..." | "err ..."
const (
	helperEnv    = "SQLSTATE_TEST_HELPER"
	helperTarget = "SQLSTATE_TEST_TARGET"
)

func helperMain() int {
	var s *sqlstate.State
	var err error
	target := os.Getenv(helperTarget)
	switch os.Getenv(helperEnv) {
	case "sqlite":
		s, err = sqlstate.OpenSQLite(context.Background(), target)
	case "postgres":
		s, err = sqlstate.OpenPostgres(context.Background(), target, sqlstate.Options{})
	default:
		err = errors.New("unknown dialect")
	}
	if err != nil {
		fmt.Println("err", err)
		return 1
	}
	defer s.Close()
	fmt.Println("ready")
	leases := map[string]mailsync.Lease{}
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		f := strings.Fields(in.Text())
		fmt.Println(helperCommand(s, leases, f))
	}
	return 0
}

func helperCommand(s *sqlstate.State, leases map[string]mailsync.Lease, f []string) string {
	ctx := context.Background()
	switch {
	case len(f) == 4 && f[0] == "acquire":
		ms, _ := strconv.Atoi(f[3])
		l, err := s.AcquireLease(ctx, f[1], f[2], time.Duration(ms)*time.Millisecond)
		switch {
		case errors.Is(err, mailsync.ErrBusy):
			return "busy"
		case err != nil:
			return "err " + err.Error()
		}
		leases[f[1]] = l
		return fmt.Sprint("ok ", l.Token)
	case len(f) == 3 && f[0] == "record":
		l, ok := leases[f[1]]
		if !ok {
			return "err no lease held"
		}
		err := s.Record(ctx, f[1], mailsync.Record{Done: map[string]string{f[2]: "T"}, Fence: &l})
		switch {
		case errors.Is(err, mailsync.ErrLeaseLost):
			return "lost"
		case err != nil:
			return "err " + err.Error()
		}
		return "ok"
	case len(f) == 5 && f[0] == "race":
		n, _ := strconv.Atoi(f[1])
		at, _ := strconv.ParseInt(f[4], 10, 64)
		won := []string{"won"}
		for i := 0; i < n; i++ {
			// Round i starts at the same instant in both processes.
			time.Sleep(time.Until(time.Unix(0, at).Add(time.Duration(i) * 25 * time.Millisecond)))
			_, err := s.AcquireLease(ctx, fmt.Sprint(f[2], i), f[3], time.Minute)
			if err == nil {
				won = append(won, strconv.Itoa(i))
			} else if !errors.Is(err, mailsync.ErrBusy) {
				return "err " + err.Error()
			}
		}
		return strings.Join(won, " ")
	}
	return fmt.Sprintf("err bad command %q", f)
}

// helper is a running helper process.
type helper struct {
	t   *testing.T
	cmd *exec.Cmd
	in  io.WriteCloser
	out *bufio.Reader
}

func startHelper(t *testing.T, dialect, target string) *helper {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), helperEnv+"="+dialect, helperTarget+"="+target)
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	h := &helper{t: t, cmd: cmd, in: in, out: bufio.NewReader(out)}
	t.Cleanup(func() {
		in.Close()
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	})
	if line := h.read(); line != "ready" {
		t.Fatalf("helper: %s", line)
	}
	return h
}

func (h *helper) read() string {
	h.t.Helper()
	type res struct {
		s   string
		err error
	}
	ch := make(chan res, 1)
	go func() { s, err := h.out.ReadString('\n'); ch <- res{s, err} }()
	select {
	case r := <-ch:
		if r.err != nil {
			h.t.Fatalf("helper %d: %v", h.cmd.Process.Pid, r.err)
		}
		return strings.TrimSpace(r.s)
	case <-time.After(60 * time.Second):
		_ = h.cmd.Process.Kill()
		h.t.Fatalf("helper %d: no answer in 60s", h.cmd.Process.Pid)
	}
	return ""
}

func (h *helper) send(cmd string) { fmt.Fprintln(h.in, cmd) }

func (h *helper) do(cmd string) string {
	h.t.Helper()
	h.send(cmd)
	return h.read()
}

// testTwoProcesses: two OS processes on one database. Leases are
// exclusive across them (also when both race for each of 30 connections at
// the same instant), and a holder that paused past its lease can record
// nothing once it expired, neither before nor after the other took over.
func testTwoProcesses(t *testing.T, dialect, target string, check *sqlstate.State) {
	a, b := startHelper(t, dialect, target), startHelper(t, dialect, target)

	const n = 30
	at := time.Now().Add(300 * time.Millisecond).UnixNano()
	a.send(fmt.Sprintf("race %d race- A %d", n, at))
	b.send(fmt.Sprintf("race %d race- B %d", n, at))
	ra, rb := a.read(), b.read()
	if !strings.HasPrefix(ra, "won") || !strings.HasPrefix(rb, "won") {
		t.Fatalf("race: %q / %q", ra, rb)
	}
	wonA, wonB := strings.Fields(ra)[1:], strings.Fields(rb)[1:]
	all := append(append([]string{}, wonA...), wonB...)
	sort.Slice(all, func(i, j int) bool { x, _ := strconv.Atoi(all[i]); y, _ := strconv.Atoi(all[j]); return x < y })
	if len(all) != n {
		t.Fatalf("race for %d connections: A won %v, B won %v; want each exactly once", n, wonA, wonB)
	}
	for i, s := range all {
		if s != strconv.Itoa(i) {
			t.Fatalf("race: connection %d won twice or never (A %v, B %v)", i, wonA, wonB)
		}
	}
	t.Logf("race: A won %d, B won %d", len(wonA), len(wonB))

	const ttl = 1500 * time.Millisecond
	okA := a.do(fmt.Sprintf("acquire conn A %d", ttl.Milliseconds()))
	if !strings.HasPrefix(okA, "ok ") {
		t.Fatalf("A acquire: %s", okA)
	}
	if got := b.do("acquire conn B 60000"); got != "busy" {
		t.Fatalf("B acquire while A holds: %s, want busy", got)
	}
	if got := a.do("record conn k1"); got != "ok" {
		t.Fatalf("A record: %s", got)
	}
	time.Sleep(ttl + 300*time.Millisecond) // A pauses past its lease
	if got := a.do("record conn k2"); got != "lost" {
		t.Fatalf("A record after its lease expired: %s, want lost", got)
	}
	okB := b.do("acquire conn B 60000")
	if !strings.HasPrefix(okB, "ok ") {
		t.Fatalf("B acquire after A's lease expired: %s", okB)
	}
	tokA, _ := strconv.ParseInt(strings.Fields(okA)[1], 10, 64)
	tokB, _ := strconv.ParseInt(strings.Fields(okB)[1], 10, 64)
	if tokB <= tokA {
		t.Fatalf("token %d after %d", tokB, tokA)
	}
	if got := a.do("record conn k3"); got != "lost" {
		t.Fatalf("A record after B took over: %s, want lost", got)
	}
	if got := b.do("record conn k4"); got != "ok" {
		t.Fatalf("B record: %s", got)
	}
	p, err := check.Processed(ctx, "conn", []string{"k1", "k2", "k3", "k4"})
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(p) != "[true false false true]" {
		t.Fatalf("processed k1..k4 = %v: a fenced write got through", p)
	}
}

func TestSQLiteTwoProcesses(t *testing.T) {
	path := filepath.Join(t.TempDir(), "shared.db")
	s, err := sqlstate.OpenSQLite(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	testTwoProcesses(t, "sqlite", path, s)
}

func TestPostgresTwoProcesses(t *testing.T) {
	dsn := pgtest.NewDatabase(t)
	s, err := sqlstate.OpenPostgres(ctx, dsn, sqlstate.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	testTwoProcesses(t, "postgres", dsn, s)
}
