package imap

import (
	"testing"
	"time"
)

// TestWatchCoalesceWindow: the first event of a burst notifies at once;
// later ones within Coalesce arm one trailing notification.
func TestWatchCoalesceWindow(t *testing.T) {
	calls := 0
	w := &Watcher{opts: WatchOptions{Coalesce: time.Second, OnChange: func(string) { calls++ }}}
	wt := &watch{w: w, name: "c", events: make(chan struct{}, 1), done: make(chan struct{})}
	t0 := time.Now()
	if d := wt.event(t0); d != 0 || calls != 1 {
		t.Fatalf("first event: wait %s, %d calls; want at once", d, calls)
	}
	if d := wt.event(t0.Add(100 * time.Millisecond)); d != 900*time.Millisecond || calls != 1 || !wt.pending {
		t.Fatalf("event in the window: wait %s, %d calls, pending %t; want 900ms, 1, true", d, calls, wt.pending)
	}
	if d := wt.event(t0.Add(500 * time.Millisecond)); d != 0 || calls != 1 {
		t.Fatalf("second event in the window: wait %s, %d calls; want no new timer", d, calls)
	}
	wt.notify(t0.Add(time.Second)) // the trailing flush
	if calls != 2 || wt.pending {
		t.Fatalf("after the flush: %d calls, pending %t", calls, wt.pending)
	}
	if d := wt.event(t0.Add(2100 * time.Millisecond)); d != 0 || calls != 3 {
		t.Fatalf("event after the window: wait %s, %d calls; want at once", d, calls)
	}
	if st := wt.snapshot(); st.Changes != 3 {
		t.Errorf("status counts %d changes, want 3", st.Changes)
	}
}

// TestWatchBackoffDoubles: the wait doubles per failure up to MaxBackoff,
// within ±20%.
func TestWatchBackoffDoubles(t *testing.T) {
	w := &Watcher{opts: WatchOptions{Backoff: time.Second, MaxBackoff: 10 * time.Second}}
	wt := &watch{w: w}
	for n, want := range map[int]time.Duration{1: time.Second, 2: 2 * time.Second, 3: 4 * time.Second, 4: 8 * time.Second, 5: 10 * time.Second, 50: 10 * time.Second} {
		for range 20 {
			if d := wt.backoff(n); d < want*8/10 || d > want*12/10 {
				t.Fatalf("backoff(%d) = %s, want %s ±20%%", n, d, want)
			}
		}
	}
}
