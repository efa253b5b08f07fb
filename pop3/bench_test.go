package pop3_test

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mailsync/mailsync/internal/dovecottest"
)

// benchMailbox makes the benchmark maildrop: 2,000 messages of mixed kinds
// and sizes (plain, HTML alternative, attachments; a few of several MB),
// about 125 MB in all. It is deterministic.
func benchMailbox() [][]byte {
	rng := rand.New(rand.NewChaCha8([32]byte{'p', 'o', 'p', '3'}))
	words := strings.Fields("printer network password account invoice laptop screen broken urgent please help thanks server login error access request email phone office")
	text := func(n int) string {
		var b strings.Builder
		for b.Len() < n {
			for i := 0; i < 12; i++ {
				b.WriteString(words[rng.IntN(len(words))])
				b.WriteByte(' ')
			}
			b.WriteString("\r\n")
			if rng.IntN(40) == 0 {
				b.WriteString(".a line that starts with a dot\r\n")
			}
		}
		return b.String()
	}
	attachment := func(n int) string {
		raw := make([]byte, n)
		for i := range raw {
			raw[i] = byte(rng.Uint32())
		}
		enc := base64.StdEncoding.EncodeToString(raw)
		var b strings.Builder
		for len(enc) > 76 {
			b.WriteString(enc[:76])
			b.WriteString("\r\n")
			enc = enc[76:]
		}
		b.WriteString(enc + "\r\n")
		return b.String()
	}
	var out [][]byte
	for i := 0; i < 2000; i++ {
		var b bytes.Buffer
		fmt.Fprintf(&b, "From: User %d <user%d@example.com>\r\nTo: helpdesk@example.com\r\nSubject: Request %d: %s\r\nMessage-ID: <bench-%d@example.com>\r\nDate: Thu, 26 Nov 2026 09:%02d:%02d +0000\r\nMIME-Version: 1.0\r\n",
			i, i%97, i, words[i%len(words)], i, i/60%60, i%60)
		switch {
		case i%400 == 7: // five messages of 4-6 MB
			att := 3_000_000 + rng.IntN(1_500_000)
			fmt.Fprintf(&b, "Content-Type: multipart/mixed; boundary=b%d\r\n\r\n--b%d\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n%s--b%d\r\nContent-Type: application/pdf; name=scan%d.pdf\r\nContent-Disposition: attachment; filename=scan%d.pdf\r\nContent-Transfer-Encoding: base64\r\n\r\n%s--b%d--\r\n",
				i, i, text(2000), i, i, i, attachment(att), i)
		case i%10 == 3: // attachments of 30 KB - 500 KB
			att := 30_000 + rng.IntN(470_000)
			fmt.Fprintf(&b, "Content-Type: multipart/mixed; boundary=b%d\r\n\r\n--b%d\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n%s--b%d\r\nContent-Type: image/png; name=shot%d.png\r\nContent-Disposition: attachment; filename=shot%d.png\r\nContent-Transfer-Encoding: base64\r\n\r\n%s--b%d--\r\n",
				i, i, text(1500), i, i, i, attachment(att), i)
		case i%3 == 0: // HTML alternative
			t := text(3000 + rng.IntN(20000))
			fmt.Fprintf(&b, "Content-Type: multipart/alternative; boundary=a%d\r\n\r\n--a%d\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n%s--a%d\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<html><body><p>%s</p></body></html>\r\n--a%d--\r\n",
				i, i, t, i, strings.ReplaceAll(t, "\r\n", "<br>\r\n"), i)
		default:
			fmt.Fprintf(&b, "Content-Type: text/plain; charset=utf-8\r\n\r\n%s", text(1000+rng.IntN(8000)))
		}
		out = append(out, b.Bytes())
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
