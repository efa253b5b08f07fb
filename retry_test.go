package mailsync_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/mailsync/mailsync"
)

// A server that asks to be left alone for longer than the engine's longest
// wait (a POP3 LOGIN-DELAY, a long Retry-After) ends the sync at once with
// the ThrottledError, so the host schedules the next run; the work done is
// kept and nothing is retried inside the window.
func TestLongRetryAfterIsNotWaitedOut(t *testing.T) {
	f := newFake(4)
	f.fetchErrs = []error{&mailsync.ThrottledError{RetryAfter: time.Minute}}
	state := mailsync.NewMemoryState()
	start := time.Now()
	rep, err := mailsync.Sync(context.Background(), f, mapping, mailsync.NewMemorySink(), mailsync.WithState(state), mailsync.WithBatchSize(10))
	var te *mailsync.ThrottledError
	if !errors.As(err, &te) || te.RetryAfter != time.Minute {
		t.Fatalf("err %v, want the ThrottledError with its RetryAfter", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("the sync waited %s inside the server's window", d)
	}
	if rep.Created != 1 || len(state.ProcessedKeys("fake")) != 1 || len(f.fetchErrs) != 0 {
		t.Fatalf("created %d, processed %v", rep.Created, state.ProcessedKeys("fake"))
	}
}

// A server that broke a limit (ErrServerLimit, which also matches
// ErrConnection) is not retried within the sync.
func TestServerLimitIsNotRetried(t *testing.T) {
	f := newFake(4)
	limit := fmt.Errorf("%w: %w: line longer than 8192 bytes", mailsync.ErrConnection, mailsync.ErrServerLimit)
	f.fetchErrs = []error{limit, limit}
	_, err := mailsync.Sync(context.Background(), f, mapping, mailsync.NewMemorySink(), mailsync.WithRetry(5, time.Millisecond), mailsync.WithBatchSize(10))
	if !errors.Is(err, mailsync.ErrServerLimit) || mailsync.Temporary(err) {
		t.Fatalf("err %v (temporary %v), want ErrServerLimit, not temporary", err, mailsync.Temporary(err))
	}
	if len(f.fetchErrs) != 1 {
		t.Fatalf("Fetch was retried after the limit error (%d errors left)", len(f.fetchErrs))
	}
}
