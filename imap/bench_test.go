package imap_test

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/mailsync/mailsync"
	mimap "github.com/mailsync/mailsync/imap"
	"github.com/mailsync/mailsync/internal/benchmail"
	"github.com/mailsync/mailsync/internal/benchsink"
	"github.com/mailsync/mailsync/internal/dovecottest"
)

// TestBenchServer is the server half of scripts/bench-imap.sh, not a test:
// with MAILSYNC_BENCH_SERVER=<dir> it starts a private Dovecot, fills a
// mailbox with MAILSYNC_BENCH_MESSAGES realistic messages (default 2000)
// of about MAILSYNC_BENCH_MB megabytes (default 125), writes the
// connection details to <dir>/env, and serves until <dir>/stop exists.
func TestBenchServer(t *testing.T) {
	dir := os.Getenv("MAILSYNC_BENCH_SERVER")
	if dir == "" {
		t.Skip("benchmark server; run scripts/bench-imap.sh")
	}
	n := envInt("MAILSYNC_BENCH_MESSAGES", 2000)
	mb := envInt("MAILSYNC_BENCH_MB", 125)
	srv := dovecottest.Start(t, dovecottest.Options{})
	const password = "bench-password"
	user := srv.AddUser(t, "bench", password)
	start := time.Now()
	total, err := benchmail.Generate(n, int64(mb)*1_000_000, 1, func(i int, raw []byte) error {
		srv.Deliver(t, user, "INBOX", raw)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("generated %d messages, %.1f MB, in %s", n, float64(total)/1e6, time.Since(start).Round(time.Millisecond))
	env := fmt.Sprintf("BENCH_ADDR=%s\nBENCH_CA=%s\nBENCH_USER=%s\nBENCH_PASSWORD=%s\nBENCH_MESSAGES=%d\nBENCH_BYTES=%d\n",
		srv.IMAPSAddr, srv.CAFile, user, password, n, total)
	if err := os.WriteFile(filepath.Join(dir, "env.tmp"), []byte(env), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(dir, "env.tmp"), filepath.Join(dir, "env")); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(2 * time.Hour); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		if _, err := os.Stat(filepath.Join(dir, "stop")); err == nil {
			return
		}
	}
	t.Fatal("no stop file after 2 hours")
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

// BenchmarkSyncDovecot syncs a 200-message (~12 MB) mailbox from a real
// Dovecot over IMAPS into a no-op sink, from scratch each iteration.
// scripts/bench-imap.sh runs the full 2,000-message comparison with mbsync.
//
//	go test -run - -bench SyncDovecot ./imap
func BenchmarkSyncDovecot(b *testing.B) {
	srv := dovecottest.Start(b, dovecottest.Options{})
	user := srv.AddUser(b, "bench", "bench-password")
	total, err := benchmail.Generate(200, 12_500_000, 1, func(i int, raw []byte) error {
		srv.Deliver(b, user, "INBOX", raw)
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	conn := connection(b, srv.IMAPSAddr)
	conn.User = user
	opts := mimap.Options{Password: "bench-password", RootCAs: srv.CAPool}
	ctx := context.Background()
	b.SetBytes(total)
	b.ResetTimer()
	for b.Loop() {
		c, err := mimap.New(conn, opts)
		if err != nil {
			b.Fatal(err)
		}
		sink := &benchsink.DiscardSink{}
		rep, err := mailsync.Sync(ctx, c, mailsync.DefaultMapping(conn.ConnectedWith[0]), sink)
		c.Close()
		if err != nil || rep.Created != 200 {
			b.Fatalf("created %d, %v", rep.Created, err)
		}
	}
}

// BenchmarkFetchMemServer measures the connector alone (List and Fetch,
// draining bodies) on go-imap's in-memory server over loopback.
func BenchmarkFetchMemServer(b *testing.B) {
	m := startMem(b, memOptions{insecureAuth: true})
	total, err := benchmail.Generate(200, 12_500_000, 1, func(i int, raw []byte) error {
		m.deliver(b, "INBOX", raw)
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	b.SetBytes(total)
	b.ResetTimer()
	for b.Loop() {
		c, err := mimap.New(connection(b, m.Addr), plainOpts())
		if err != nil {
			b.Fatal(err)
		}
		l, err := c.List(ctx, "")
		if err != nil {
			b.Fatal(err)
		}
		if err := c.Fetch(ctx, l.Messages, func(_ mailsync.MessageRef, r io.Reader) error {
			if r == nil {
				return nil
			}
			_, err := io.Copy(io.Discard, r)
			return err
		}); err != nil {
			b.Fatal(err)
		}
		c.Close()
	}
}
