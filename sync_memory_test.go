package mailsync_test

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mailsync/mailsync"
	"github.com/mailsync/mailsync/examples/customprovider/maildir"
)

// writeBigMessage writes a message with one base64 attachment of n random
// bytes to path, streaming, and returns the attachment's SHA-256.
func writeBigMessage(t testing.TB, path string, n int64) string {
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	w := bufio.NewWriterSize(f, 1<<20)
	fmt.Fprintf(w, "From: big@example.com\r\nTo: support@example.com\r\nSubject: big\r\nMessage-ID: <big@example.com>\r\nMIME-Version: 1.0\r\n"+
		"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nsee attachment\r\n"+
		"--b\r\nContent-Type: application/octet-stream\r\nContent-Disposition: attachment; filename=big.bin\r\nContent-Transfer-Encoding: base64\r\n\r\n")
	h := sha256.New()
	enc := base64.NewEncoder(base64.StdEncoding, &lineWriter{w: w})
	if _, err := io.Copy(io.MultiWriter(enc, h), io.LimitReader(rand.Reader, n)); err != nil {
		t.Fatal(err)
	}
	enc.Close()
	fmt.Fprintf(w, "\r\n--b--\r\n")
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// lineWriter breaks base64 into 76-character lines.
type lineWriter struct {
	w   io.Writer
	col int
}

func (l *lineWriter) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		k := min(76-l.col, len(p))
		if _, err := l.w.Write(p[:k]); err != nil {
			return 0, err
		}
		p, l.col = p[k:], l.col+k
		if l.col == 76 {
			l.w.Write([]byte("\r\n"))
			l.col = 0
		}
	}
	return n, nil
}

// peakHeap samples the Go heap while f runs and returns the peak.
func peakHeap(f func()) uint64 {
	runtime.GC()
	var peak atomic.Uint64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		var ms runtime.MemStats
		for {
			runtime.ReadMemStats(&ms)
			if ms.HeapInuse > peak.Load() {
				peak.Store(ms.HeapInuse)
			}
			select {
			case <-stop:
				return
			case <-time.After(2 * time.Millisecond):
			}
		}
	}()
	f()
	close(stop)
	wg.Wait()
	return peak.Load()
}

// TestSync100MBMessageMemory syncs one 100 MB message end to end (read,
// hash, spool, parse, decode the attachment, hand it to the sink) and checks
// the heap never holds more than 64 MiB.
func TestSync100MBMessageMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("writes 140 MB")
	}
	dir := t.TempDir()
	for _, sub := range []string{"cur", "new", "tmp"} {
		os.MkdirAll(filepath.Join(dir, sub), 0o700)
	}
	sum := writeBigMessage(t, filepath.Join(dir, "new", "1.big"), 100<<20)
	c, err := maildir.New(mailsync.Connection{Name: "big", Enabled: true, User: dir, Protocol: maildir.Protocol, ConnectedWith: []string{"incident"}})
	if err != nil {
		t.Fatal(err)
	}
	sink := mailsync.NewMemorySink()
	sink.KeepBytes = 4 << 10
	lim := mailsync.DefaultLimits()
	lim.MaxMessageBytes = 200 << 20
	var rep *mailsync.Report
	peak := peakHeap(func() {
		rep, err = mailsync.Sync(context.Background(), c, mailsync.DefaultMapping("incident"), sink, mailsync.WithLimits(lim), mailsync.WithTempDir(t.TempDir()))
	})
	if err != nil || rep.Created != 1 {
		t.Fatalf("created %d, err %v", rep.Created, err)
	}
	a := sink.Tickets()[0].Attachments[0]
	if a.Size != 100<<20 || a.SHA256 != sum {
		t.Fatalf("attachment %d bytes sha %s, want %d bytes sha %s", a.Size, a.SHA256, 100<<20, sum)
	}
	fi, _ := os.Stat(filepath.Join(dir, "new", "1.big"))
	if fi == nil {
		fi, _ = os.Stat(filepath.Join(dir, "cur", "1.big"))
	}
	t.Logf("peak heap while syncing one message of %d bytes (a 100 MiB attachment): %.1f MiB", fi.Size(), float64(peak)/(1<<20))
	if peak > 64<<20 {
		t.Fatalf("peak heap %.1f MiB, want under 64 MiB", float64(peak)/(1<<20))
	}
}
