package mailsync_test

import (
	"context"
	"errors"
	"fmt"
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

// cursorLeaserState is a MemoryState that hands out the cursor with the
// lease (mailsync.CursorLeaser) and counts the reads.
type cursorLeaserState struct {
	*mailsync.MemoryState
	cursorCalls, leaseCursorCalls int
}

func (s *cursorLeaserState) Cursor(ctx context.Context, connection string) (mailsync.Cursor, error) {
	s.cursorCalls++
	return s.MemoryState.Cursor(ctx, connection)
}

func (s *cursorLeaserState) AcquireLeaseCursor(ctx context.Context, connection, holder string, ttl time.Duration) (mailsync.Lease, mailsync.Cursor, error) {
	s.leaseCursorCalls++
	l, err := s.MemoryState.AcquireLease(ctx, connection, holder, ttl)
	if err != nil {
		return mailsync.Lease{}, "", err
	}
	c, err := s.MemoryState.Cursor(ctx, connection)
	return l, c, err
}

// cursorSpy records the cursors List is given.
type cursorSpy struct {
	*fakeConnector
	got []mailsync.Cursor
}

func (c *cursorSpy) List(ctx context.Context, cur mailsync.Cursor) (*mailsync.Listing, error) {
	c.got = append(c.got, cur)
	return c.fakeConnector.List(ctx, cur)
}

// With a CursorLeaser, Sync lists from the cursor that came with the lease
// and does not read it again.
func TestSyncTakesTheCursorWithTheLease(t *testing.T) {
	st := &cursorLeaserState{MemoryState: mailsync.NewMemoryState()}
	c := &cursorSpy{fakeConnector: newFake(3)}
	for range 2 {
		if _, err := mailsync.Sync(context.Background(), c, mapping, mailsync.NewMemorySink(), mailsync.WithState(st)); err != nil {
			t.Fatal(err)
		}
	}
	if st.leaseCursorCalls != 2 || st.cursorCalls != 0 {
		t.Errorf("AcquireLeaseCursor %d times, Cursor %d times; want 2 and 0", st.leaseCursorCalls, st.cursorCalls)
	}
	if len(c.got) != 2 || c.got[0] != "" || c.got[1] != "3" {
		t.Errorf("List got the cursors %q, want \"\" then the stored \"3\"", c.got)
	}
}

// A sync that outlasts its lease's TTL keeps the lease: it is renewed
// while the sync runs, so no other holder gets the connection.
func TestSyncRenewsItsLease(t *testing.T) {
	st := mailsync.NewMemoryState()
	const ttl = 90 * time.Millisecond
	sink := mailsync.NewMemorySink()
	var stolen error
	sink.BeforeCreate = func(ctx context.Context, tk *mailsync.Ticket) error {
		if tk.Message.Subject != "subject 0" {
			return nil
		}
		// Five TTLs long, another holder trying all along.
		for end := time.Now().Add(5 * ttl); time.Now().Before(end); time.Sleep(10 * time.Millisecond) {
			if l, err := st.AcquireLease(ctx, "fake", "worker-2", ttl); err == nil {
				stolen = fmt.Errorf("worker-2 took the lease (token %d) from a running sync", l.Token)
				return nil
			}
		}
		return nil
	}
	rep, err := mailsync.Sync(context.Background(), newFake(2), mapping, sink, mailsync.WithState(st), mailsync.WithLease("worker-1", ttl))
	if err != nil || rep.Created != 2 {
		t.Fatalf("sync: %+v %v", rep, err)
	}
	if stolen != nil {
		t.Fatal(stolen)
	}
	// Released at the end: the next holder gets it at once.
	if _, err := st.AcquireLease(context.Background(), "fake", "worker-2", ttl); err != nil {
		t.Fatalf("after the sync: %v", err)
	}
}

// A holder whose renewal finds the lease taken stops at once: its context
// is canceled, and Sync reports ErrLeaseLost.
func TestSyncLostLeaseCancelsTheSync(t *testing.T) {
	st := mailsync.NewMemoryState()
	var mu sync.Mutex
	now := time.Now()
	st.SetClock(func() time.Time { mu.Lock(); defer mu.Unlock(); return now })
	const ttl = 60 * time.Millisecond // renewed every 20 ms (real time)
	sink := mailsync.NewMemorySink()
	var canceled bool
	sink.BeforeCreate = func(ctx context.Context, tk *mailsync.Ticket) error {
		if tk.Message.Subject != "subject 0" {
			return nil
		}
		mu.Lock()
		now = now.Add(time.Minute) // the lease ran out meanwhile
		mu.Unlock()
		if _, err := st.AcquireLease(ctx, "fake", "worker-2", time.Hour); err != nil {
			t.Errorf("worker-2 could not take the expired lease: %v", err)
		}
		select {
		case <-ctx.Done():
			canceled = true
			return ctx.Err()
		case <-time.After(10 * time.Second):
			return nil
		}
	}
	start := time.Now()
	rep, err := mailsync.Sync(context.Background(), newFake(2), mapping, sink, mailsync.WithState(st), mailsync.WithLease("worker-1", ttl))
	if !errors.Is(err, mailsync.ErrLeaseLost) {
		t.Fatalf("sync: %+v %v, want ErrLeaseLost", rep, err)
	}
	if !canceled {
		t.Fatalf("the sink's context was not canceled within 10 s (sync took %s)", time.Since(start))
	}
	if keys := st.ProcessedKeys("fake"); len(keys) != 0 {
		t.Fatalf("the holder that lost its lease recorded %v", keys)
	}
}
