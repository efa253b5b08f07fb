package imap_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mailsync/mailsync"
)

// hostileServer answers the greeting, CAPABILITY and LOGIN like a server,
// then runs attack on the first command that starts with trigger ("" for
// the greeting itself).
type hostileServer struct {
	Addr    string
	trigger string
	attack  func(w *bufio.Writer, tag string, quit <-chan struct{})
}

func startHostile(t testing.TB, h *hostileServer) *hostileServer {
	t.Helper()
	quit := make(chan struct{})
	h.Addr = serveLoopback(t, func(c net.Conn) { h.serve(c, quit) }, func() { close(quit) })
	return h
}

func (h *hostileServer) serve(c net.Conn, quit <-chan struct{}) {
	r := bufio.NewReader(c)
	w := bufio.NewWriterSize(c, 64<<10)
	if h.trigger == "" {
		h.attack(w, "", quit)
		return
	}
	fmt.Fprintf(w, "* OK [CAPABILITY IMAP4rev1 UIDPLUS] hostile ready\r\n")
	w.Flush()
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		tag, cmd, _ := strings.Cut(strings.TrimRight(line, "\r\n"), " ")
		upper := strings.ToUpper(cmd)
		switch {
		case strings.HasPrefix(upper, h.trigger):
			h.attack(w, tag, quit)
			return
		case strings.HasPrefix(upper, "CAPABILITY"):
			fmt.Fprintf(w, "* CAPABILITY IMAP4rev1 UIDPLUS\r\n%s OK done\r\n", tag)
		case strings.HasPrefix(upper, "LOGIN"):
			fmt.Fprintf(w, "%s OK [CAPABILITY IMAP4rev1 UIDPLUS] logged in\r\n", tag)
		case strings.HasPrefix(upper, "SELECT"), strings.HasPrefix(upper, "EXAMINE"):
			fmt.Fprintf(w, "* 1 EXISTS\r\n* OK [UIDVALIDITY 42] ok\r\n* OK [UIDNEXT 2] ok\r\n%s OK [READ-WRITE] selected\r\n", tag)
		case strings.HasPrefix(upper, "UID FETCH") && !strings.Contains(upper, "BODY"):
			fmt.Fprintf(w, "* 1 FETCH (UID 1 RFC822.SIZE 100000)\r\n%s OK done\r\n", tag)
		default:
			fmt.Fprintf(w, "%s OK done\r\n", tag)
		}
		if w.Flush() != nil {
			return
		}
	}
}

const gib = 1 << 30

// flood writes n bytes of filler (no line end) as fast as the client reads.
func flood(w *bufio.Writer, n int64) {
	chunk := bytes.Repeat([]byte("a"), 64<<10)
	for n > 0 {
		m := min(n, int64(len(chunk)))
		if _, err := w.Write(chunk[:m]); err != nil {
			return
		}
		n -= m
	}
	w.Flush()
}

// trickle writes one byte every 20ms until the client goes away, so the
// connection never looks stalled.
func trickle(w *bufio.Writer, quit <-chan struct{}) {
	for {
		select {
		case <-quit:
			return
		case <-time.After(20 * time.Millisecond):
		}
		w.WriteByte('a')
		if w.Flush() != nil {
			return
		}
	}
}

// memPeak samples the Go heap while f runs and reports the largest value,
// with the process's peak RSS (VmHWM, reset before f where the kernel
// allows it).
func memPeak(f func()) (heap uint64, rss uint64) {
	runtime.GC()
	os.WriteFile("/proc/self/clear_refs", []byte("5"), 0) // reset VmHWM; best effort
	var peak atomic.Uint64
	done := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		var ms runtime.MemStats
		t := time.NewTicker(2 * time.Millisecond)
		defer t.Stop()
		for {
			runtime.ReadMemStats(&ms)
			if ms.HeapAlloc > peak.Load() {
				peak.Store(ms.HeapAlloc)
			}
			select {
			case <-done:
				return
			case <-t.C:
			}
		}
	}()
	f()
	close(done)
	<-sampled
	return peak.Load(), vmHWM()
}

// vmHWM is the peak resident set size of this process in bytes (0 if unknown).
func vmHWM() uint64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, _ := strconv.ParseUint(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10
		}
	}
	return 0
}

// TestHostileServersBounded runs the connector against servers that try to
// exhaust its memory or keep a command alive forever, and checks that each
// attempt ends with an error wrapping ErrConnection within the configured
// CommandTimeout, with a peak heap under 64 MiB (and, without the race
// detector, a peak RSS under 64 MiB). Run it with -v to see the figures:
//
//	go test ./imap/ -run 'TestHostileServersBounded' -count=1 -v
func TestHostileServersBounded(t *testing.T) {
	const limit = 64 << 20
	cases := []struct {
		name    string
		trigger string
		attack  func(w *bufio.Writer, tag string, quit <-chan struct{})
		fetch   bool // the attack answers the body fetch, not the listing
		okToo   bool // a clean end is fine as long as it is bounded
		timeout time.Duration
	}{
		{"1GiB greeting line", "", func(w *bufio.Writer, _ string, _ <-chan struct{}) {
			w.WriteString("* OK ")
			flood(w, gib)
		}, false, false, 0},
		{"1GiB response line without line end", "SELECT", func(w *bufio.Writer, _ string, _ <-chan struct{}) {
			w.WriteString("* OK ")
			flood(w, gib)
		}, false, false, 0},
		{"1GiB literal in an untagged LIST reply", "SELECT", func(w *bufio.Writer, _ string, _ <-chan struct{}) {
			w.WriteString("* LIST () \"/\" {1073741824}\r\n")
			flood(w, gib)
		}, false, false, 0},
		{"1GiB literal in an untagged STATUS reply", "SELECT", func(w *bufio.Writer, _ string, _ <-chan struct{}) {
			w.WriteString("* STATUS {1073741824}\r\n")
			flood(w, gib)
		}, false, false, 0},
		{"1GiB unasked body in the listing", "UID FETCH", func(w *bufio.Writer, tag string, _ <-chan struct{}) {
			w.WriteString("* 1 FETCH (UID 1 RFC822.SIZE 5 BODY[] {1073741824}\r\n")
			flood(w, gib)
			fmt.Fprintf(w, ")\r\n%s OK done\r\n", tag)
			w.Flush()
		}, false, true, 0},
		{"endless FETCH responses to the listing", "UID FETCH", func(w *bufio.Writer, _ string, _ <-chan struct{}) {
			for i := 1; i < 1<<30; i++ {
				if _, err := fmt.Fprintf(w, "* %d FETCH (UID %d RFC822.SIZE 100)\r\n", i, i); err != nil {
					return
				}
			}
		}, false, false, 30 * time.Second}, // the time bound alone would allow ~1 GB here
		{"trickled response line", "SELECT", func(w *bufio.Writer, _ string, quit <-chan struct{}) {
			w.WriteString("* OK ")
			trickle(w, quit)
		}, false, false, 0},
		{"trickled message body", "UID FETCH 1 (UID BODY", func(w *bufio.Writer, _ string, quit <-chan struct{}) {
			w.WriteString("* 1 FETCH (UID 1 BODY[] {100000}\r\n")
			trickle(w, quit)
		}, true, false, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			timeout := 2 * time.Second
			if tc.timeout != 0 {
				timeout = tc.timeout
			}
			for _, ra := range []int64{0, -1} { // read-ahead on (default), off
				h := startHostile(t, &hostileServer{trigger: tc.trigger, attack: tc.attack})
				opts := plainOpts()
				opts.ReadAhead = ra
				opts.CommandTimeout = timeout
				opts.DialTimeout = timeout
				c := newConnector(t, connection(t, h.Addr), opts)
				ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
				var err error
				var elapsed time.Duration
				heap, rss := memPeak(func() {
					start := time.Now()
					var l *mailsync.Listing
					l, err = c.List(ctx, "")
					if err == nil && tc.fetch {
						err = c.Fetch(ctx, l.Messages, func(_ mailsync.MessageRef, body io.Reader) error {
							_, err := io.Copy(io.Discard, body)
							return err
						})
					}
					elapsed = time.Since(start)
				})
				cancel()
				t.Logf("ReadAhead=%d: peak heap %.1f MiB, peak RSS %.1f MiB, %s: %v",
					ra, float64(heap)/(1<<20), float64(rss)/(1<<20), elapsed.Round(time.Millisecond), err)
				if err == nil && tc.fetch {
					t.Errorf("ReadAhead=%d: the fetch succeeded", ra)
				}
				if !(err == nil && tc.okToo) && (!errors.Is(err, mailsync.ErrConnection) || !errors.Is(err, mailsync.ErrServerLimit)) {
					t.Errorf("ReadAhead=%d: got %v; want an error wrapping ErrConnection and ErrServerLimit", ra, err)
				}
				if elapsed > timeout+time.Second {
					t.Errorf("ReadAhead=%d: took %s; the command timeout is %s", ra, elapsed, timeout)
				}
				if heap > limit {
					t.Errorf("ReadAhead=%d: peak heap %d MiB; want under %d MiB", ra, heap>>20, limit>>20)
				}
				if !raceEnabled && rss > limit {
					t.Errorf("ReadAhead=%d: peak RSS %d MiB; want under %d MiB", ra, rss>>20, limit>>20)
				}
			}
		})
	}
}

// A body fetch on a slow but steady link outlasts CommandTimeout without
// failing: message bytes delivered extend the command's time.
func TestSlowSteadyBodyCompletes(t *testing.T) {
	const size = 1 << 20
	h := startHostile(t, &hostileServer{trigger: "UID FETCH 1 (UID BODY", attack: func(w *bufio.Writer, tag string, quit <-chan struct{}) {
		fmt.Fprintf(w, "* 1 FETCH (UID 1 BODY[] {%d}\r\n", size)
		chunk := bytes.Repeat([]byte("b"), 16<<10)
		for sent := 0; sent < size; sent += len(chunk) { // about 270 KiB/s: ~4s
			select {
			case <-quit:
				return
			case <-time.After(60 * time.Millisecond):
			}
			w.Write(chunk)
			if w.Flush() != nil {
				return
			}
		}
		fmt.Fprintf(w, ")\r\n%s OK done\r\n", tag)
		w.Flush()
	}})
	opts := plainOpts()
	opts.CommandTimeout = time.Second
	c := newConnector(t, connection(t, h.Addr), opts)
	ctx := testCtx(t)
	l, err := c.List(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	var n int64
	err = c.Fetch(ctx, l.Messages, func(_ mailsync.MessageRef, body io.Reader) error {
		var err error
		n, err = io.Copy(io.Discard, body)
		return err
	})
	if err != nil || n != size {
		t.Fatalf("Fetch = %v after %d of %d bytes in %s", err, n, size, time.Since(start))
	}
	if d := time.Since(start); d < 2*opts.CommandTimeout {
		t.Logf("the fetch took only %s; the test means little on this machine", d)
	}
}
