package mailsync_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/mailsync/mailsync"
)

// Two holders, one connection: while one syncs, the other gets ErrBusy.
func TestSyncLeaseOneHolderAtATime(t *testing.T) {
	st := mailsync.NewMemoryState()
	inSink, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	slow := mailsync.NewMemorySink()
	slow.BeforeCreate = func(ctx context.Context, tk *mailsync.Ticket) error {
		once.Do(func() { close(inSink); <-release })
		return nil
	}
	done := make(chan error, 1)
	go func() {
		_, err := mailsync.Sync(context.Background(), newFake(3), mapping, slow, mailsync.WithState(st), mailsync.WithLease("worker-1", time.Minute))
		done <- err
	}()
	<-inSink
	_, err := mailsync.Sync(context.Background(), newFake(3), mapping, mailsync.NewMemorySink(), mailsync.WithState(st), mailsync.WithLease("worker-2", time.Minute))
	if !errors.Is(err, mailsync.ErrBusy) {
		t.Fatalf("second holder: %v, want ErrBusy", err)
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	// Released at the end: the other holder may sync now, and finds nothing new.
	rep, err := mailsync.Sync(context.Background(), newFake(3), mapping, mailsync.NewMemorySink(), mailsync.WithState(st), mailsync.WithLease("worker-2", time.Minute))
	if err != nil || rep.AlreadyDone != 3 {
		t.Fatalf("after release: %+v %v", rep, err)
	}
}

// A holder paused past its lease (GC pause, partition) records nothing
// once another holder took the connection: its writes are fenced.
func TestSyncPausedHolderIsFenced(t *testing.T) {
	st := mailsync.NewMemoryState()
	var mu sync.Mutex
	now := time.Now()
	st.SetClock(func() time.Time { mu.Lock(); defer mu.Unlock(); return now })
	sink := mailsync.NewMemorySink()
	sink.BeforeCreate = func(ctx context.Context, tk *mailsync.Ticket) error {
		if tk.Message.Subject != "subject 1" {
			return nil
		}
		// Paused here: the lease runs out and worker-2 takes the connection.
		mu.Lock()
		now = now.Add(2 * time.Minute)
		mu.Unlock()
		if _, err := st.AcquireLease(ctx, "fake", "worker-2", time.Minute); err != nil {
			t.Errorf("worker-2 could not take the expired lease: %v", err)
		}
		return nil
	}
	f := newFake(3)
	rep, err := mailsync.Sync(context.Background(), f, mapping, sink, mailsync.WithState(st), mailsync.WithLease("worker-1", time.Minute))
	if !errors.Is(err, mailsync.ErrLeaseLost) {
		t.Fatalf("paused holder: %v, want ErrLeaseLost (%+v)", err, rep)
	}
	if keys := st.ProcessedKeys("fake"); len(keys) != 0 {
		t.Fatalf("the fenced holder recorded %v", keys)
	}
	if cur, _ := st.Cursor(context.Background(), "fake"); cur != "" {
		t.Fatalf("the fenced holder stored the cursor %q", cur)
	}
	// Nothing was lost: the tickets are in the sink, and a re-run by the
	// current holder (once it is done) records them as duplicates.
	mu.Lock()
	now = now.Add(2 * time.Minute)
	mu.Unlock()
	rep, err = mailsync.Sync(context.Background(), f, mapping, sink, mailsync.WithState(st))
	if err != nil || rep.AlreadyDone != 3 || len(sink.Tickets()) != 3 {
		t.Fatalf("re-run: %+v %v, %d tickets", rep, err, len(sink.Tickets()))
	}
}
