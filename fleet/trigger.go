package fleet

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/riverqueue/river"
	"github.com/riverqueue/river/rivertype"
)

// A notification (a push, a host's "sync now" button) must never be lost,
// even when it arrives while the connection's sync runs — after that sync
// read its cursor, so the new mail is not in it. River cannot mark a
// running job for later (JobRetry leaves a running job alone, JobUpdate
// only sets the output, and a unique job cannot be inserted twice), so the
// mark lives in a TriggerStore, in the same database as the health for a
// fleet of processes. A run is named by its job id and the time River
// attempted it (runKey), which tells it from the job's next run.
//
//   - Trigger, finding the job running, marks that run (MarkRun), unless
//     the run has ended already;
//   - the worker, when its sync ends, ends the run and reads the mark in
//     one statement (EndRun): marked, it snoozes 0 (one more run at once)
//     instead of the interval. Any number of marks make one more run. A
//     mark that came after River fetched the job but before the sync read
//     its cursor makes one run more than needed, never one less;
//   - a run that has ended but whose snooze River has not recorded yet
//     (the job is still "running" for a few milliseconds): Trigger waits
//     for the job to leave that state, then makes it available (JobRetry).

// TriggerStore keeps, per connection, the marks of Trigger on the sync
// run under way, so that a Trigger in one process makes the run of a
// worker in another run once more. MemoryHealth (one process) and
// SQLHealth (a table beside the health's) implement it; with a HealthStore
// that does not, the Fleet keeps the marks in memory, which only works when
// Trigger is called in the process whose worker runs the job.
type TriggerStore interface {
	// MarkRun asks for one more run after run, a run under way of the
	// connection's sync job: RunMarked, or RunEnded when EndRun has ended
	// run already (then nothing is marked). A mark replaces what the
	// store held for an earlier run.
	MarkRun(ctx context.Context, connection, run string) (RunMark, error)
	// EndRun records that run has ended and reports, atomically with it,
	// whether MarkRun marked it.
	EndRun(ctx context.Context, connection, run string) (marked bool, err error)
}

// RunMark is MarkRun's answer.
type RunMark int

// MarkRun's answers.
const (
	RunMarked RunMark = iota + 1 // marked: the worker runs once more
	RunEnded                     // the run had ended: nothing marked
)

// runKey names one run of a job: River attempts a snoozed job again with
// the same attempt number, but a new attempted_at.
func runKey(job *rivertype.JobRow) string {
	var at int64
	if job.AttemptedAt != nil {
		at = job.AttemptedAt.UnixMicro()
	}
	return fmt.Sprintf("%d/%d", job.ID, at)
}

// memoryTriggers is a TriggerStore in memory.
type memoryTriggers struct {
	mu   sync.Mutex
	runs map[string]*runState
}

type runState struct {
	run           string
	ended, marked bool
}

func (m *memoryTriggers) MarkRun(_ context.Context, connection, run string) (RunMark, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.runs == nil {
		m.runs = map[string]*runState{}
	}
	r := m.runs[connection]
	if r != nil && r.run == run && r.ended {
		return RunEnded, nil
	}
	m.runs[connection] = &runState{run: run, marked: true}
	return RunMarked, nil
}

func (m *memoryTriggers) EndRun(_ context.Context, connection, run string) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.runs == nil {
		m.runs = map[string]*runState{}
	}
	r := m.runs[connection]
	marked := r != nil && r.run == run && r.marked
	m.runs[connection] = &runState{run: run, ended: true, marked: marked}
	return marked, nil
}

// triggerWait bounds how long Trigger waits for River to record the snooze
// of a run that has ended. Past it the job is still "running" with its
// worker done: the worker's process died in between, and the rescue (see
// "Crashed workers") runs the job again anyway.
const triggerWait = 10 * time.Second

// Trigger makes connectionID's sync run as soon as possible, on a worker:
// a waiting job (snoozed until its next interval, or backing off) runs
// now; a running one runs once more right after it ends, since the
// notification may have come after it read its cursor. Triggers during
// one run are coalesced into one more run. It works across processes: the
// mark on a running job is kept in the TriggerStore (the HealthStore, when
// it is one, such as SQLHealth). It reports false when the connection is
// not scheduled (never, unscheduled, or waiting for the admin).
//
// Trigger is what push notifications call (see Notify, which also records
// the notification in the connection's health), and what a host's "sync
// now" button may call for a connection the workers sync.
func (f *Fleet) Trigger(ctx context.Context, connectionID string) (bool, error) {
	jobs, err := f.jobs(ctx, connectionID)
	if err != nil {
		return false, err
	}
	for _, j := range jobs {
		if err := f.trigger(ctx, connectionID, j); err != nil {
			return false, fmt.Errorf("mailsync/fleet: triggering %s: %w", connectionID, err)
		}
	}
	return len(jobs) > 0, nil
}

// trigger triggers one job.
func (f *Fleet) trigger(ctx context.Context, connectionID string, j *rivertype.JobRow) error {
	if j.State != rivertype.JobStateRunning {
		_, err := f.client.JobRetry(ctx, j.ID)
		if errors.Is(err, river.ErrNotFound) {
			return nil
		}
		return err
	}
	m, err := f.triggers.MarkRun(ctx, connectionID, runKey(j))
	if err != nil || m != RunEnded {
		return err // marked: the worker runs once more
	}
	// The run has ended, River is recording its snooze: wait for it, then
	// make the job available.
	deadline := time.Now().Add(triggerWait)
	for wait := time.Duration(0); ; {
		wait = nextTriggerPoll(wait)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
		cur, err := f.client.JobGet(ctx, j.ID)
		if errors.Is(err, river.ErrNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		switch cur.State {
		case rivertype.JobStateRunning:
			if runKey(cur) != runKey(j) {
				return f.trigger(ctx, connectionID, cur) // a new run began meanwhile
			}
			if time.Now().After(deadline) {
				f.log.Warn("mailsync/fleet: trigger: the job's run ended but River did not record it; the rescue will run it",
					"connection", connectionID, "job", j.ID)
				return nil
			}
		case rivertype.JobStateCancelled, rivertype.JobStateCompleted, rivertype.JobStateDiscarded:
			return nil // unscheduled, or stopped for the admin
		default:
			_, err := f.client.JobRetry(ctx, j.ID)
			if errors.Is(err, river.ErrNotFound) {
				return nil
			}
			return err
		}
	}
}

// Notify is a push notification for connectionID (IMAP IDLE, a Graph
// change notification, a Gmail push): it records when it came in the
// connection's push health, if the health store knows the connection (a
// notification for a connection the host deleted brings back no row), and
// triggers its sync (see Trigger). Wire push sources' OnChange to it. It
// never fetches mail: the connection's usual cursor-based sync does, so a
// lost or doubled notification costs latency, never mail.
func (f *Fleet) Notify(ctx context.Context, connectionID string) (bool, error) {
	now := time.Now()
	if err := f.updateExistingPush(ctx, connectionID, func(p *PushHealth) { p.LastNotification = now }); err != nil {
		f.log.Warn("mailsync/fleet: recording a notification", "connection", connectionID, "err", err)
	}
	return f.Trigger(ctx, connectionID)
}

// updateExistingPush records fn in the push health of a connection the
// store knows: a connection never seen or deleted by the host (its
// subscription may still post notifications for days) gets no row. A
// host's own PushHealthStore is simply updated.
func (f *Fleet) updateExistingPush(ctx context.Context, connectionID string, fn func(*PushHealth)) error {
	switch s := f.health.(type) {
	case existingPushUpdater:
		return s.updateExistingPush(ctx, connectionID, fn)
	case PushHealthStore:
		return s.UpdatePush(ctx, connectionID, fn)
	}
	return nil
}

// nextTriggerPoll is the wait before the next look at a job whose run
// ended but whose snooze River has not recorded yet, after waiting last:
// 10 ms first (River's completer usually records it within a few tens of
// milliseconds), then half as long again each time, up to 250 ms, so that
// a River that records nothing for triggerWait costs a few dozen reads,
// not a thousand.
func nextTriggerPoll(last time.Duration) time.Duration {
	if last <= 0 {
		return 10 * time.Millisecond
	}
	return min(last+last/2, 250*time.Millisecond)
}
