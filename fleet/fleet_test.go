package fleet

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/riverqueue/river/riverdriver/riversqlite"
	"github.com/riverqueue/river/rivertype"

	"github.com/mailsync/mailsync"
)

func TestPeriodicSyncs(t *testing.T) {
	db := openSQLite(t)
	mb := newMailbox("support", 2)
	r := newResolver(mb)
	f := newFleet(t, db, Config{Resolver: r, Interval: 300 * time.Millisecond, Jitter: 50 * time.Millisecond})
	if ok, err := f.Schedule(context.Background(), "support"); err != nil || !ok {
		t.Fatalf("Schedule = %v, %v", ok, err)
	}
	eventually(t, 15*time.Second, "three syncs", func() bool { return len(mb.calls()) >= 3 })
	calls := mb.calls()
	for i := 1; i < len(calls); i++ {
		if gap := calls[i].Sub(calls[i-1]); gap < 250*time.Millisecond-10*time.Millisecond {
			t.Errorf("sync %d came %s after the previous one; want at least interval-jitter = 250ms", i+1, gap)
		}
	}
	if got := len(r.sink.Tickets()); got != 2 {
		t.Errorf("%d tickets, want 2 (re-runs create none)", got)
	}
	h := healthOf(t, f, "support")
	if h.MessagesSynced != 2 || h.ConsecutiveFailures != 0 || h.LastSuccess.IsZero() || h.Degraded || h.OldestUnprocessed != 0 {
		t.Errorf("health = %+v", h)
	}
	jobs := jobsOf(t, f, "support")
	if len(jobs) != 1 {
		t.Fatalf("%d jobs, want the one periodic job", len(jobs))
	}
	if j := jobs[0]; j.Attempt > 1 || len(j.Errors) != 0 {
		t.Errorf("job attempt %d, errors %v: snoozes must not count as attempts", j.Attempt, j.Errors)
	}
}

func TestOneJobPerConnection(t *testing.T) {
	db := openSQLite(t)
	mb := newMailbox("support", 1)
	mb.block = make(chan struct{})
	mb.entered = make(chan struct{}, 1)
	r := newResolver(mb)
	f := newFleet(t, db, Config{Resolver: r, Interval: time.Hour})
	ctx := context.Background()

	var inserted atomic.Int32
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			ok, err := f.Schedule(ctx, "support")
			if err != nil {
				t.Error(err)
			}
			if ok {
				inserted.Add(1)
			}
		})
	}
	wg.Wait()
	if n := inserted.Load(); n != 1 {
		t.Errorf("%d of 8 concurrent Schedule calls inserted a job, want 1", n)
	}
	select {
	case <-mb.entered:
	case <-time.After(10 * time.Second):
		t.Fatal("the sync did not start")
	}
	// Running: scheduling again (a second process at start-up, a double
	// click) adds nothing.
	if ok, err := f.Schedule(ctx, "support"); err != nil || ok {
		t.Errorf("Schedule while running = %v, %v; want false, nil", ok, err)
	}
	jobs := jobsOf(t, f, "support")
	if len(jobs) != 1 || jobs[0].State != rivertype.JobStateRunning {
		t.Fatalf("jobs = %v, want one running", jobStates(jobs))
	}
	close(mb.block)
	eventually(t, 10*time.Second, "the job to snooze", func() bool {
		j := jobsOf(t, f, "support")
		return len(j) == 1 && j[0].State == rivertype.JobStateScheduled
	})
	if ok, err := f.Schedule(ctx, "support"); err != nil || ok {
		t.Errorf("Schedule while snoozed = %v, %v; want false, nil", ok, err)
	}
	if n := len(jobsOf(t, f, "support")); n != 1 {
		t.Errorf("%d jobs, want 1", n)
	}
}

func jobStates(jobs []*rivertype.JobRow) []string {
	var s []string
	for _, j := range jobs {
		s = append(s, fmt.Sprintf("%d:%s", j.ID, j.State))
	}
	return s
}

func TestThrottledSnoozesForRetryAfter(t *testing.T) {
	db := openSQLite(t)
	mb := newMailbox("support", 1)
	mb.setListErr(func(int) error {
		return &mailsync.ThrottledError{RetryAfter: time.Hour, Err: fmt.Errorf("%w: 429", mailsync.ErrConnection)}
	})
	r := newResolver(mb)
	f := newFleet(t, db, Config{Resolver: r, Interval: 100 * time.Millisecond, Jitter: -1})
	if _, err := f.Schedule(context.Background(), "support"); err != nil {
		t.Fatal(err)
	}
	var job *rivertype.JobRow
	eventually(t, 10*time.Second, "the job to snooze", func() bool {
		j := jobsOf(t, f, "support")
		if len(j) == 1 && j[0].State == rivertype.JobStateScheduled {
			job = j[0]
			return true
		}
		return false
	})
	wait := time.Until(job.ScheduledAt)
	if wait < 59*time.Minute || wait > time.Hour {
		t.Errorf("next run in %s, want the Retry-After of 1h", wait)
	}
	if job.Attempt != 0 || len(job.Errors) != 0 {
		t.Errorf("attempt %d, errors %v: a snooze is no failed attempt", job.Attempt, job.Errors)
	}
	time.Sleep(300 * time.Millisecond) // three intervals
	if n := len(mb.calls()); n != 1 {
		t.Errorf("List called %d times, want 1 (waiting the Retry-After)", n)
	}
	h := healthOf(t, f, "support")
	if h.LastErrorKind != KindThrottled || h.ConsecutiveFailures != 1 || h.NeedsAdmin {
		t.Errorf("health = %+v", h)
	}
}

func TestConsentRequiredStopsAndRecovers(t *testing.T) {
	db := openSQLite(t)
	health, err := NewSQLHealth(db, SQLite, "mailsync_")
	if err != nil {
		t.Fatal(err)
	}
	if err := health.Migrate(context.Background()); err != nil {
		t.Fatal(err)
	}
	mb := newMailbox("graph-inbox", 1)
	var revoked atomic.Bool
	revoked.Store(true)
	mb.setListErr(func(int) error {
		if revoked.Load() {
			return fmt.Errorf("graph: token: %w: invalid_grant", mailsync.ErrConsentRequired)
		}
		return nil
	})
	r := newResolver(mb)
	var mu sync.Mutex
	var degraded, recovered []Health
	f := newFleet(t, db, Config{Resolver: r, Health: health, Interval: 50 * time.Millisecond, Jitter: -1,
		Backoff: 50 * time.Millisecond,
		OnDegraded: func(_ context.Context, h Health) {
			mu.Lock()
			degraded = append(degraded, h)
			mu.Unlock()
		},
		OnRecovered: func(_ context.Context, h Health) {
			mu.Lock()
			recovered = append(recovered, h)
			mu.Unlock()
		}})
	ctx := context.Background()
	if _, err := f.Schedule(ctx, "graph-inbox"); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "the job to be cancelled", func() bool {
		j := jobsOf(t, f, "graph-inbox")
		return len(j) == 1 && j[0].State == rivertype.JobStateCancelled
	})
	time.Sleep(500 * time.Millisecond) // ten intervals
	if n := len(mb.calls()); n != 1 {
		t.Errorf("a revoked grant was tried %d times, want once", n)
	}
	h := healthOf(t, f, "graph-inbox")
	if !h.NeedsAdmin || !h.Degraded || h.LastErrorKind != KindConsentRequired || h.ConsecutiveFailures != 1 {
		t.Errorf("health = %+v", h)
	}
	if !strings.Contains(h.LastError, "invalid_grant") {
		t.Errorf("LastError = %q", h.LastError)
	}
	j := jobsOf(t, f, "graph-inbox")[0]
	if len(j.Errors) != 1 || strings.Contains(j.Errors[0].Error, "invalid_grant") {
		t.Errorf("job errors %v: want one, naming the kind only (no server text in the job row)", j.Errors)
	}
	mu.Lock()
	if len(degraded) != 1 || degraded[0].LastErrorKind != KindConsentRequired || len(recovered) != 0 {
		t.Errorf("OnDegraded %d calls (%+v), OnRecovered %d", len(degraded), degraded, len(recovered))
	}
	mu.Unlock()

	// The admin consents again; the host schedules the connection again.
	revoked.Store(false)
	if ok, err := f.Schedule(ctx, "graph-inbox"); err != nil || !ok {
		t.Fatalf("Schedule after the fix = %v, %v", ok, err)
	}
	eventually(t, 10*time.Second, "recovery", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(recovered) == 1
	})
	h = healthOf(t, f, "graph-inbox")
	if h.NeedsAdmin || h.Degraded || h.ConsecutiveFailures != 0 || h.MessagesSynced != 1 {
		t.Errorf("health after recovery = %+v", h)
	}
	mu.Lock()
	if len(degraded) != 1 {
		t.Errorf("OnDegraded called %d times, want 1", len(degraded))
	}
	mu.Unlock()
}

func TestAuthErrorStopsRetrying(t *testing.T) {
	db := openSQLite(t)
	mb := newMailbox("imap-inbox", 1)
	mb.setListErr(func(int) error { return fmt.Errorf("imap: LOGIN: %w", mailsync.ErrAuth) })
	r := newResolver(mb)
	f := newFleet(t, db, Config{Resolver: r, Interval: 50 * time.Millisecond, Jitter: -1, Backoff: 50 * time.Millisecond})
	if _, err := f.Schedule(context.Background(), "imap-inbox"); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "the job to be cancelled", func() bool {
		j := jobsOf(t, f, "imap-inbox")
		return len(j) == 1 && j[0].State == rivertype.JobStateCancelled
	})
	time.Sleep(400 * time.Millisecond)
	if n := len(mb.calls()); n != 1 {
		t.Errorf("a refused password was tried %d times, want once", n)
	}
	if h := healthOf(t, f, "imap-inbox"); !h.NeedsAdmin || h.LastErrorKind != KindAuth {
		t.Errorf("health = %+v", h)
	}
}

func TestConnectionErrorsBackOffToCap(t *testing.T) {
	db := openSQLite(t)
	mb := newMailbox("support", 1)
	const failures = 5
	mb.setListErr(func(n int) error {
		if n <= failures {
			return fmt.Errorf("dial: %w", mailsync.ErrConnection)
		}
		return nil
	})
	r := newResolver(mb)
	var mu sync.Mutex
	var events []string
	var snoozes []time.Duration
	cfg := Config{Resolver: r, Interval: time.Hour, Backoff: 400 * time.Millisecond, MaxBackoff: time.Second, River: fastRiver,
		State: mailsync.NewMemoryState(),
		OnDegraded: func(_ context.Context, h Health) {
			mu.Lock()
			events = append(events, fmt.Sprintf("degraded@%d", h.ConsecutiveFailures))
			mu.Unlock()
		},
		OnRecovered: func(_ context.Context, h Health) {
			mu.Lock()
			events = append(events, "recovered")
			mu.Unlock()
		}}
	f, err := New(riversqlite.New(db), cfg)
	if err != nil {
		t.Fatal(err)
	}
	f.testHookSnooze = func(_ string, _ ErrorKind, d time.Duration) {
		mu.Lock()
		snoozes = append(snoozes, d)
		mu.Unlock()
	}
	if err := f.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = f.Stop(context.Background()) })
	if _, err := f.Schedule(context.Background(), "support"); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "the sync after the failures", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(snoozes) == failures+1
	})
	mu.Lock()
	got := append([]time.Duration(nil), snoozes...)
	mu.Unlock()
	want := []time.Duration{400, 800, 1000, 1000, 1000} // ms: doubling, capped (uncapped: 1600)
	for i, w := range want {
		w *= time.Millisecond
		if got[i] < w*9/10 || got[i] > w { // Backoff takes up to a tenth off
			t.Errorf("snooze after failure %d = %s, want %s less up to a tenth", i+1, got[i], w)
		}
	}
	if got[failures] < 54*time.Minute || got[failures] > 66*time.Minute {
		t.Errorf("snooze after the success = %s, want the interval (1h ± 6m)", got[failures])
	}
	// River honoured them: no retry came early.
	calls := mb.calls()
	for i := range failures {
		if gap := calls[i+1].Sub(calls[i]); gap < got[i]-20*time.Millisecond {
			t.Errorf("retry %d came after %s, before its snooze of %s", i+1, gap, got[i])
		}
	}
	eventually(t, 5*time.Second, "recovery", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(events) == 2
	})
	mu.Lock()
	if got := strings.Join(events, ","); got != "degraded@3,recovered" {
		t.Errorf("callbacks %q, want degraded@3,recovered", got)
	}
	mu.Unlock()
	h := healthOf(t, f, "support")
	if h.ConsecutiveFailures != 0 || h.LastErrorKind != KindConnection || h.Degraded {
		t.Errorf("health = %+v", h)
	}
	var j []*rivertype.JobRow
	eventually(t, 5*time.Second, "the job to snooze", func() bool {
		j = jobsOf(t, f, "support")
		return len(j) == 1 && j[0].State == rivertype.JobStateScheduled
	})
	if j[0].Attempt != 0 || len(j[0].Errors) != 0 {
		t.Errorf("job attempt %d, errors %v; want no attempts or errors counted", j[0].Attempt, j[0].Errors)
	}
}

func TestSyncNowWithPasswordHoldsTheLease(t *testing.T) {
	db := openSQLite(t)
	mb := newMailbox("pop-inbox", 2)
	r := newResolver(mb)
	f := newFleet(t, db, Config{Resolver: r, Interval: time.Hour, Jitter: -1})
	ctx := context.Background()
	const typed = mailsync.Secret("Typed-Passw0rd!")

	mb.mu.Lock()
	mb.block = make(chan struct{})
	mb.entered = make(chan struct{}, 1)
	mb.mu.Unlock()
	type out struct {
		rep *mailsync.Report
		err error
	}
	done := make(chan out, 1)
	go func() {
		rep, err := f.SyncNow(ctx, "pop-inbox", typed)
		done <- out{rep, err}
	}()
	select {
	case <-mb.entered:
	case <-time.After(10 * time.Second):
		t.Fatal("SyncNow did not start")
	}
	// A worker comes for the same connection while SyncNow runs.
	if _, err := f.Schedule(ctx, "pop-inbox"); err != nil {
		t.Fatal(err)
	}
	var job *rivertype.JobRow
	eventually(t, 10*time.Second, "the worker's job to snooze", func() bool {
		j := jobsOf(t, f, "pop-inbox")
		if len(j) == 1 && j[0].State == rivertype.JobStateScheduled {
			job = j[0]
			return true
		}
		return false
	})
	if job.Attempt != 0 || len(job.Errors) != 0 {
		t.Errorf("the busy job has attempt %d, errors %v: it must snooze, not fail", job.Attempt, job.Errors)
	}
	if wait := time.Until(job.ScheduledAt); wait < 59*time.Minute {
		t.Errorf("the busy job runs again in %s, want its next interval (1h)", wait)
	}
	if n := r.resolveCount("pop-inbox"); n != 2 {
		t.Errorf("%d resolves, want 2 (SyncNow and the worker)", n)
	}
	if n := len(mb.calls()); n != 1 {
		t.Errorf("List called %d times: the worker must not sync beside SyncNow", n)
	}
	// And SyncNow meets a running sync with ErrBusy.
	if _, err := f.SyncNow(ctx, "pop-inbox", typed); !errors.Is(err, mailsync.ErrBusy) {
		t.Errorf("a second SyncNow: %v, want ErrBusy", err)
	}
	close(mb.block)
	o := <-done
	if o.err != nil || o.rep.Created != 2 {
		t.Fatalf("SyncNow = %+v, %v", o.rep, o.err)
	}
	mb.mu.Lock()
	pw := append([]mailsync.Secret(nil), mb.passwords...)
	mb.mu.Unlock()
	if len(pw) != 3 || pw[0] != typed || pw[1] != "" || pw[2] != typed {
		t.Errorf("passwords given to Resolve: %d (%v); want the typed one, none for the worker, the typed one", len(pw), pw)
	}
	h := healthOf(t, f, "pop-inbox")
	if h.ConsecutiveFailures != 0 || h.LastErrorKind != "" || h.MessagesSynced != 2 {
		t.Errorf("health = %+v: ErrBusy is no failure", h)
	}
}

func TestPasswordConnectionIsNeverScheduled(t *testing.T) {
	db := openSQLite(t)
	mb := newMailbox("pop-inbox", 1)
	r := newResolver(mb)
	r.password["pop-inbox"] = true
	ctx := context.Background()

	t.Run("Checker refuses", func(t *testing.T) {
		f := newFleet(t, db, Config{Resolver: checkingResolver{r}, Interval: 50 * time.Millisecond})
		ok, err := f.Schedule(ctx, "pop-inbox")
		if ok || !errors.Is(err, ErrPasswordRequired) {
			t.Fatalf("Schedule = %v, %v; want ErrPasswordRequired", ok, err)
		}
		if j := jobsOf(t, f, "pop-inbox"); len(j) != 0 {
			t.Errorf("jobs %v, want none", jobStates(j))
		}
		// SyncNow with the typed password works.
		rep, err := f.SyncNow(ctx, "pop-inbox", "typed-secret")
		if err != nil || rep.Created != 1 {
			t.Errorf("SyncNow = %+v, %v", rep, err)
		}
	})
	t.Run("worker cancels", func(t *testing.T) {
		f := newFleet(t, db, Config{Resolver: r, Interval: 50 * time.Millisecond, Jitter: -1})
		before := r.resolveCount("pop-inbox")
		if _, err := f.Schedule(ctx, "pop-inbox"); err != nil {
			t.Fatal(err)
		}
		eventually(t, 10*time.Second, "the job to be cancelled", func() bool {
			j := jobsOf(t, f, "pop-inbox")
			return len(j) == 1 && j[0].State == rivertype.JobStateCancelled
		})
		time.Sleep(300 * time.Millisecond)
		if n := r.resolveCount("pop-inbox") - before; n != 1 {
			t.Errorf("resolved %d times, want once", n)
		}
		if h := healthOf(t, f, "pop-inbox"); h.LastErrorKind != KindPasswordRequired {
			t.Errorf("health = %+v", h)
		}
	})
}

func TestUnscheduleAndTrigger(t *testing.T) {
	db := openSQLite(t)
	mb := newMailbox("support", 1)
	r := newResolver(mb)
	f := newFleet(t, db, Config{Resolver: r, Interval: time.Hour})
	ctx := context.Background()
	if ok, err := f.Trigger(ctx, "support"); err != nil || ok {
		t.Errorf("Trigger of an unscheduled connection = %v, %v", ok, err)
	}
	if _, err := f.Schedule(ctx, "support"); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "the first sync", func() bool { return len(mb.calls()) == 1 })
	eventually(t, 10*time.Second, "the job to snooze", func() bool {
		j := jobsOf(t, f, "support")
		return len(j) == 1 && j[0].State == rivertype.JobStateScheduled
	})
	// Trigger: the next sync runs now, not in an hour.
	if ok, err := f.Trigger(ctx, "support"); err != nil || !ok {
		t.Fatalf("Trigger = %v, %v", ok, err)
	}
	eventually(t, 10*time.Second, "the triggered sync", func() bool { return len(mb.calls()) == 2 })
	eventually(t, 10*time.Second, "the job to snooze", func() bool {
		j := jobsOf(t, f, "support")
		return len(j) == 1 && j[0].State == rivertype.JobStateScheduled
	})
	if ok, err := f.Unschedule(ctx, "support"); err != nil || !ok {
		t.Fatalf("Unschedule = %v, %v", ok, err)
	}
	j := jobsOf(t, f, "support")
	if len(j) != 1 || j[0].State != rivertype.JobStateCancelled {
		t.Errorf("jobs %v, want one cancelled", jobStates(j))
	}
	if ok, err := f.Unschedule(ctx, "support"); err != nil || ok {
		t.Errorf("second Unschedule = %v, %v", ok, err)
	}
	// Scheduling again works once it was unscheduled.
	if ok, err := f.Schedule(ctx, "support"); err != nil || !ok {
		t.Errorf("Schedule after Unschedule = %v, %v", ok, err)
	}
}

func TestUnscheduleCancelsARunningSync(t *testing.T) {
	db := openSQLite(t)
	mb := newMailbox("support", 1)
	mb.block = make(chan struct{})
	mb.entered = make(chan struct{}, 1)
	r := newResolver(mb)
	f := newFleet(t, db, Config{Resolver: r, Interval: 50 * time.Millisecond})
	ctx := context.Background()
	if _, err := f.Schedule(ctx, "support"); err != nil {
		t.Fatal(err)
	}
	select {
	case <-mb.entered:
	case <-time.After(10 * time.Second):
		t.Fatal("the sync did not start")
	}
	if ok, err := f.Unschedule(ctx, "support"); err != nil || !ok {
		t.Fatalf("Unschedule = %v, %v", ok, err)
	}
	eventually(t, 10*time.Second, "the running job to be cancelled", func() bool {
		j := jobsOf(t, f, "support")
		return len(j) == 1 && j[0].State == rivertype.JobStateCancelled
	})
	time.Sleep(200 * time.Millisecond)
	if n := len(mb.calls()); n != 1 {
		t.Errorf("List called %d times after Unschedule, want 1", n)
	}
}

func TestScheduleMany(t *testing.T) {
	db := openSQLite(t)
	var boxes []*mailbox
	var ids []string
	for i := range 30 {
		mb := newMailbox(fmt.Sprintf("conn-%02d", i), 1)
		boxes = append(boxes, mb)
		ids = append(ids, mb.name)
	}
	r := newResolver(boxes...)
	r.password["conn-07"] = true
	f := newFleet(t, db, Config{Resolver: checkingResolver{r}, Interval: time.Hour, Workers: -1}) // insert-only
	ctx := context.Background()
	n, err := f.ScheduleMany(ctx, ids)
	if n != 29 || !errors.Is(err, ErrPasswordRequired) || !strings.Contains(err.Error(), "conn-07") {
		t.Fatalf("ScheduleMany = %d, %v; want 29 and conn-07's ErrPasswordRequired", n, err)
	}
	// A second process at start-up: nothing new.
	if n, err := f.ScheduleMany(ctx, ids[:5]); n != 0 || err != nil {
		t.Errorf("ScheduleMany again = %d, %v", n, err)
	}
	for _, id := range ids {
		want := 1
		if id == "conn-07" {
			want = 0
		}
		if j := jobsOf(t, f, id); len(j) != want {
			t.Errorf("%s: %d jobs, want %d", id, len(j), want)
		}
	}
	// Insert-only: nothing was worked.
	time.Sleep(200 * time.Millisecond)
	for _, mb := range boxes {
		if n := len(mb.calls()); n != 0 {
			t.Errorf("%s synced %d times by an insert-only Fleet", mb.name, n)
		}
	}
}

func TestConnectorNameMustBeTheConnectionID(t *testing.T) {
	db := openSQLite(t)
	mb := newMailbox("support", 1)
	r := newResolver(mb)
	renamed := ResolverFunc(func(ctx context.Context, id string, pw mailsync.Secret) (Target, error) {
		return r.Resolve(ctx, "support", pw) // the connector says "support" whatever the id
	})
	f := newFleet(t, db, Config{Resolver: renamed, Workers: -1})
	_, err := f.SyncNow(context.Background(), "support-old-id", "")
	var ce *mailsync.ConfigError
	if !errors.As(err, &ce) || !ce.Field("name") {
		t.Fatalf("SyncNow = %v, want a ConfigError on name", err)
	}
	if n := len(mb.calls()); n != 0 {
		t.Errorf("synced %d times under the wrong name", n)
	}
	if h := healthOf(t, f, "support-old-id"); !h.NeedsAdmin || h.LastErrorKind != KindInvalidConfig {
		t.Errorf("health %+v", h)
	}
}

func TestReconcileSchedulesListedConnections(t *testing.T) {
	db := openSQLite(t)
	a, b, c := newMailbox("a", 1), newMailbox("b", 1), newMailbox("c", 1)
	c.setListErr(func(int) error { return fmt.Errorf("LOGIN: %w", mailsync.ErrAuth) })
	r := newResolver(a, b, c)
	f := newFleet(t, db, Config{Resolver: r, Interval: time.Hour, ReconcileInterval: 300 * time.Millisecond,
		Connections: func(context.Context) ([]string, error) { return []string{"a", "b", "c"}, nil }})
	ctx := context.Background()
	eventually(t, 20*time.Second, "every listed connection synced", func() bool {
		return len(a.calls()) == 1 && len(b.calls()) == 1 && len(c.calls()) == 1
	})
	// A job deleted by hand comes back at the next reconciliation.
	j := jobsOf(t, f, "a")
	if len(j) != 1 {
		t.Fatalf("a: jobs %v", jobStates(j))
	}
	if _, err := db.ExecContext(ctx, `DELETE FROM river_job WHERE id = ?`, j[0].ID); err != nil {
		t.Fatal(err)
	}
	eventually(t, 20*time.Second, "a re-scheduled and synced", func() bool { return len(a.calls()) == 2 })
	// c needs the admin: reconciliations do not bring it back.
	time.Sleep(time.Second)
	if n := len(c.calls()); n != 1 {
		t.Errorf("c (refused password) tried %d times, want once", n)
	}
	if n := len(b.calls()); n != 1 {
		t.Errorf("b synced %d times, want once (its job was there)", n)
	}
}

// A typed password the server refuses is a typo, not the admin's problem:
// the failure is recorded (kind auth, scrubbed message), but the
// connection neither needs the admin nor is degraded, however often it is
// mistyped; the same failure without a typed password needs the admin.
func TestSyncNowMistypedPasswordDoesNotNeedTheAdmin(t *testing.T) {
	db := openSQLite(t)
	mb := newMailbox("pop-inbox", 1)
	const typed = mailsync.Secret("Wr0ng-Typed-Pass")
	mb.setListErr(func(int) error {
		return fmt.Errorf("%w: LOGIN refused for password %s", mailsync.ErrAuth, typed)
	})
	r := newResolver(mb)
	r.password["pop-inbox"] = true
	var degraded atomic.Int32
	f := newFleet(t, db, Config{Resolver: checkingResolver{r}, Interval: time.Hour, DegradeAfter: 2,
		OnDegraded: func(context.Context, Health) { degraded.Add(1) }})
	ctx := context.Background()
	for i := range 3 {
		if _, err := f.SyncNow(ctx, "pop-inbox", typed); !errors.Is(err, mailsync.ErrAuth) {
			t.Fatalf("SyncNow %d: %v, want ErrAuth", i, err)
		}
	}
	h := healthOf(t, f, "pop-inbox")
	if h.NeedsAdmin || h.Degraded || degraded.Load() != 0 {
		t.Errorf("health = %+v, OnDegraded %d times: a mistyped password needs no admin", h, degraded.Load())
	}
	if h.ConsecutiveFailures != 3 || h.LastErrorKind != KindAuth || h.LastError == "" {
		t.Errorf("health = %+v: want 3 failures of kind auth with a message", h)
	}
	if strings.Contains(h.LastError, string(typed)) {
		t.Errorf("LastError %q carries the typed password", h.LastError)
	}

	// Without a typed password, an auth failure is the stored credentials':
	// it needs the admin.
	mb2 := newMailbox("imap-oauth", 1)
	mb2.setListErr(func(int) error { return fmt.Errorf("%w: token refused", mailsync.ErrAuth) })
	r.mu.Lock()
	r.boxes["imap-oauth"] = mb2
	r.mu.Unlock()
	if _, err := f.SyncNow(ctx, "imap-oauth", ""); !errors.Is(err, mailsync.ErrAuth) {
		t.Fatalf("SyncNow: %v, want ErrAuth", err)
	}
	if h := healthOf(t, f, "imap-oauth"); !h.NeedsAdmin || !h.Degraded {
		t.Errorf("health = %+v: a stored credential refused needs the admin", h)
	}
}

// SyncNow's options reach the sync, after the Target's: a progress
// callback passed to this call sees the sync.
func TestSyncNowOptions(t *testing.T) {
	db := openSQLite(t)
	mb := newMailbox("pop-inbox", 3)
	r := newResolver(mb)
	f := newFleet(t, db, Config{Resolver: r, Interval: time.Hour})
	var seen atomic.Int32
	var last atomic.Int64
	rep, err := f.SyncNow(context.Background(), "pop-inbox", "typed", mailsync.WithProgress(func(p mailsync.Progress) {
		seen.Add(1)
		last.Store(int64(p.Done))
	}))
	if err != nil || rep.Created != 3 {
		t.Fatalf("SyncNow = %+v, %v", rep, err)
	}
	if seen.Load() == 0 || last.Load() != 3 {
		t.Errorf("progress called %d times, last Done %d; want calls up to 3", seen.Load(), last.Load())
	}
}

// A scheduled sync that outlasts Config.SyncTimeout is cut there, recorded
// as a timeout and backed off.
func TestScheduledSyncStopsAtSyncTimeout(t *testing.T) {
	db := openSQLite(t)
	mb := newMailbox("support", 1)
	mb.block = make(chan struct{}) // List waits for its context
	r := newResolver(mb)
	type snooze struct {
		kind ErrorKind
		d    time.Duration
	}
	snoozes := make(chan snooze, 10)
	f, err := New(riversqlite.New(db), Config{Resolver: r, State: mailsync.NewMemoryState(), Interval: time.Hour,
		Backoff: time.Minute, SyncTimeout: 300 * time.Millisecond, River: fastRiver})
	if err != nil {
		t.Fatal(err)
	}
	f.testHookSnooze = func(_ string, kind ErrorKind, d time.Duration) { snoozes <- snooze{kind, d} }
	if err := f.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = f.Stop(context.Background()) })
	t.Cleanup(func() { close(mb.block) }) // first: a sync never cut ends
	start := time.Now()
	if _, err := f.Schedule(context.Background(), "support"); err != nil {
		t.Fatal(err)
	}
	select {
	case s := <-snoozes:
		if s.kind != KindTimeout || s.d < 50*time.Second || s.d > time.Minute {
			t.Errorf("snoozed %s after %s, want %s and the back-off (1 min less up to a tenth)", s.d, s.kind, KindTimeout)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("the sync ended after %s, with a SyncTimeout of 300ms", d)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the sync did not end within 10 s, with a SyncTimeout of 300ms")
	}
	h, _, err := f.Health().Get(context.Background(), "support")
	if err != nil || h.LastErrorKind != KindTimeout || h.ConsecutiveFailures != 1 {
		t.Errorf("health %+v, %v; want one timeout", h, err)
	}
}
