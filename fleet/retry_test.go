package fleet

import (
	"testing"
	"time"

	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riversqlite"
	"github.com/riverqueue/river/rivertype"

	"github.com/mailsync/mailsync"
)

// A connection's job never completes, so River's errors pile up on it
// over its life: one per rescue of a killed worker. River's default retry
// policy waits (errors+1)^4 seconds, nearly three hours after the tenth
// rescue. The fleet runs a rescued job again at once, whatever its
// history, and backs off a panicked one by Backoff only.
func TestNextRetryAfterRescue(t *testing.T) {
	f, err := New(riversqlite.New(openSQLite(t)), Config{Resolver: newResolver(), State: mailsync.NewMemoryState(), SyncTimeout: time.Minute, Backoff: 7 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	var w river.Worker[SyncArgs] = &syncWorker{f: f}
	errs := make([]rivertype.AttemptError, 10)
	job := func(attempted time.Time) *river.Job[SyncArgs] {
		return &river.Job[SyncArgs]{JobRow: &rivertype.JobRow{AttemptedAt: &attempted, Errors: errs, Attempt: 11, MaxAttempts: 1000},
			Args: SyncArgs{Connection: "support"}}
	}
	// Rescued: it was attempted longer than SyncTimeout ago.
	now := time.Now()
	got := w.NextRetry(job(now.Add(-10 * time.Minute)))
	if got.IsZero() || got.Before(now) || got.After(time.Now().Add(time.Second)) {
		t.Errorf("retry of a rescued job with 10 errors at %v, want now (%v)", got, now)
	}
	// A panic: attempted just now.
	now = time.Now()
	got = w.NextRetry(job(now))
	if got.Before(now.Add(7*time.Second)) || got.After(time.Now().Add(8*time.Second)) {
		t.Errorf("retry of a panicked job at %v, want Backoff (7s) from %v", got, now)
	}
}
