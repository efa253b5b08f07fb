package pop3_test

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mailsync/mailsync/internal/benchmail"
	"github.com/mailsync/mailsync/internal/dovecottest"
)

// benchMailbox makes the benchmark maildrop: 2,000 messages of mixed kinds
// and sizes (plain, HTML alternative, attachments; a few of several MB),
// about 125 MB in all. It is deterministic.
func benchMailbox() [][]byte {
	var out [][]byte
	// The same realistic mailbox the IMAP benchmark syncs: 2,000 messages,
	// about 125 MB (text, HTML, inline images, attachments, a few of several MB).
	if _, err := benchmail.Generate(2000, 125<<20, 1, func(_ int, raw []byte) error {
		out = append(out, raw)
		return nil
	}); err != nil {
		panic(err)
	}
	return out
}

var (
	reWall = regexp.MustCompile(`Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): (\S+)`)
	reRSS  = regexp.MustCompile(`Maximum resident set size \(kbytes\): (\d+)`)
)

// timed runs cmd under /usr/bin/time -v and returns wall time, peak RSS in
// MiB and the command's output.
func timed(t *testing.T, env []string, name string, args ...string) (time.Duration, float64, string) {
	t.Helper()
	cmd := exec.Command("/usr/bin/time", append([]string{"-v", name}, args...)...)
	cmd.Env = append(os.Environ(), env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if err != nil && !(name == "fetchmail" && cmd.ProcessState.ExitCode() == 1) {
		t.Fatalf("%s: %v\n%s\n%s", name, err, stdout.String(), stderr.String())
	}
	m, r := reWall.FindStringSubmatch(stderr.String()), reRSS.FindStringSubmatch(stderr.String())
	if m == nil || r == nil {
		t.Fatalf("%s: no figures in\n%s", name, stderr.String())
	}
	var wall time.Duration
	parts := strings.Split(m[1], ":")
	for _, p := range parts[:len(parts)-1] {
		n, _ := strconv.Atoi(p)
		wall = wall*60 + time.Duration(n)*time.Minute
	}
	sec, _ := strconv.ParseFloat(parts[len(parts)-1], 64)
	wall = wall + time.Duration(sec*float64(time.Second))
	kb, _ := strconv.Atoi(r[1])
	return wall, float64(kb) / 1024, strings.TrimSpace(stdout.String() + stderr.String()[:strings.Index(stderr.String(), "\tCommand being timed")])
}

// TestBenchVersusFetchmail is the benchmark of scripts/bench-pop3.sh: the
// same 2,000-message maildrop pulled over POP3S by fetchmail (keep, to
// /dev/null) and by this package, alternately, each under /usr/bin/time -v.
// It runs only with POP3_BENCH_BIN set to a built pop3bench binary.
func TestBenchVersusFetchmail(t *testing.T) {
	bin := os.Getenv("POP3_BENCH_BIN")
	if bin == "" {
		t.Skip("set POP3_BENCH_BIN (scripts/bench-pop3.sh does)")
	}
	if _, err := exec.LookPath("fetchmail"); err != nil {
		t.Fatal("fetchmail not installed")
	}
	rounds := 3
	if r, err := strconv.Atoi(os.Getenv("POP3_BENCH_ROUNDS")); err == nil && r > 0 {
		rounds = r
	}
	srv := dovecottest.Start(t, dovecottest.Options{})
	const pw = "bench-pw"
	user := srv.AddUser(t, "bench", pw)
	var total int
	for _, raw := range benchMailbox() {
		srv.Deliver(t, user, "", raw)
		total += len(raw)
	}
	t.Logf("mailbox: 2000 messages, %.1f MB", float64(total)/1e6)
	_, port, _ := strings.Cut(srv.POP3SAddr, ":")

	dir := t.TempDir()
	rc := filepath.Join(dir, "fetchmailrc")
	rcText := fmt.Sprintf("set no syslog\nset no bouncemail\npoll localhost service %s protocol POP3 timeout 120\n  user %q there with password %q\n  ssl sslcertck sslcertfile %q\n  keep fetchall\n  mda \"cat >/dev/null\"\n", port, user, pw, srv.CAFile)
	if err := os.WriteFile(rc, []byte(rcText), 0o600); err != nil {
		t.Fatal(err)
	}
	fmEnv := []string{"HOME=" + dir, "FETCHMAILHOME=" + dir}
	ourEnv := []string{"POP3BENCH_PASSWORD=" + pw, "GOMAXPROCS=2"}
	ours := func(mode string) []string {
		return []string{"-addr", "localhost:" + port, "-user", user, "-ca", srv.CAFile, "-mode", mode}
	}
	// Warm up Dovecot's index and the page cache once.
	if _, _, out := timed(t, ourEnv, bin, ours("raw")...); !strings.Contains(out, "2000 messages") {
		t.Fatalf("warm-up: %s", out)
	}
	type result struct {
		walls []time.Duration
		rss   []float64
		out   string
	}
	results := map[string]*result{}
	names := []string{"fetchmail", "mailsync Sync", "connector raw"}
	for _, n := range names {
		results[n] = &result{}
	}
	for round := 0; round < rounds; round++ {
		for _, n := range names {
			var wall time.Duration
			var rss float64
			var out string
			switch n {
			case "fetchmail":
				wall, rss, out = timed(t, fmEnv, "fetchmail", "-f", rc, "--pidfile", filepath.Join(dir, "pid"))
				if !strings.Contains(out, "2000 messages") {
					t.Fatalf("fetchmail did not fetch 2000 messages:\n%s", out)
				}
			case "mailsync Sync":
				wall, rss, out = timed(t, ourEnv, bin, ours("sync")...)
				if !strings.Contains(out, "created 2000") {
					t.Fatalf("sync: %s", out)
				}
			case "connector raw":
				wall, rss, out = timed(t, ourEnv, bin, ours("raw")...)
			}
			r := results[n]
			r.walls, r.rss = append(r.walls, wall), append(r.rss, rss)
			for _, line := range strings.Split(out, "\n") {
				if strings.Contains(line, "messages") || strings.Contains(line, "created") {
					r.out = strings.TrimSpace(line)
				}
			}
		}
	}
	var report strings.Builder
	fmt.Fprintf(&report, "POP3S, loopback Dovecot, 2000 messages, %.1f MB, %d rounds (median; all runs)\n", float64(total)/1e6, rounds)
	for _, n := range names {
		r := results[n]
		w := slices.Clone(r.walls)
		slices.Sort(w)
		rs := slices.Clone(r.rss)
		slices.Sort(rs)
		var runs []string
		for _, d := range r.walls {
			runs = append(runs, fmt.Sprintf("%.2fs", d.Seconds()))
		}
		fmt.Fprintf(&report, "%-14s wall %6.2fs  peak RSS %6.1f MiB   runs %s\n               %s\n", n, w[len(w)/2].Seconds(), rs[len(rs)/2], strings.Join(runs, " "), r.out)
	}
	t.Log("\n" + report.String())
	if out := os.Getenv("POP3_BENCH_OUT"); out != "" {
		os.WriteFile(out, []byte(report.String()), 0o644)
	}
	fm, sy := results["fetchmail"].walls, results["mailsync Sync"].walls
	slices.Sort(fm)
	slices.Sort(sy)
	if sy[len(sy)/2] > fm[len(fm)/2] {
		t.Errorf("mailsync Sync (%s) slower than fetchmail (%s)", sy[len(sy)/2], fm[len(fm)/2])
	}
}
