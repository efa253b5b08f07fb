package fleet

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver"
	"github.com/riverqueue/river/rivertype"
	"go.opentelemetry.io/otel/metric"

	"github.com/mailsync/mailsync"
	"github.com/mailsync/mailsync/internal/redact"
)

// Defaults of Config.
const (
	DefaultInterval     = 5 * time.Minute
	DefaultBackoff      = 30 * time.Second
	DefaultMaxBackoff   = time.Hour
	DefaultDegradeAfter = 3
	DefaultWorkers      = 10
	DefaultQueue        = "mailsync"
	DefaultSyncTimeout  = 15 * time.Minute

	DefaultBackstopInterval = 30 * time.Minute
)

// Config configures a Fleet. Resolver and State are required.
type Config struct {
	// Resolver turns a connection id into a connector, mapping and sink.
	Resolver Resolver
	// State is where cursors and processed keys persist, shared by every
	// process of the fleet (e.g. sqlstate). When it is a mailsync.Leaser,
	// every sync — a worker's or SyncNow's — holds the connection's lease,
	// so two never run at once.
	State mailsync.State
	// Health keeps each connection's health (default: a MemoryHealth, which
	// only this process sees; use an SQLHealth for a fleet of processes).
	Health HealthStore

	// Interval is the time between two syncs of a connection (default
	// DefaultInterval); Target.Interval overrides it per connection.
	Interval time.Duration
	// BackstopInterval is the time between two syncs of a connection
	// whose push works (Health.Push.Healthy): new mail is synced when its
	// notification comes, and this slow poll only catches what a lost
	// notification missed (default DefaultBackstopInterval);
	// Target.BackstopInterval overrides it per connection; a backstop
	// shorter than the connection's Interval counts as Interval, since
	// push never makes a connection poll more often. When the push is
	// down, the connection is synced every Interval again.
	BackstopInterval time.Duration

	// Jitter spreads the syncs: each next run is Interval plus a random
	// duration in [-Jitter, +Jitter] (default Interval/10; negative: none).
	Jitter time.Duration
	// Backoff is the wait after a first failed sync (default
	// DefaultBackoff); it doubles with each consecutive failure up to
	// MaxBackoff (default DefaultMaxBackoff).
	Backoff, MaxBackoff time.Duration
	// DegradeAfter is the number of consecutive failures after which a
	// connection is degraded (default DefaultDegradeAfter). A connection
	// that needs the admin is degraded at once.
	DegradeAfter int

	// Workers is how many syncs this process runs at once (default
	// DefaultWorkers). Negative: none — an insert-only Fleet, e.g. in a web
	// process that schedules and runs SyncNow but leaves the rest to
	// worker processes.
	Workers int
	// Queue is the River queue of the sync jobs (default DefaultQueue).
	Queue string
	// SyncTimeout bounds one scheduled sync (default DefaultSyncTimeout).
	// The Fleet sets River's RescueStuckJobsAfter to SyncTimeout + 5
	// minutes: the job of a worker process that died mid-sync stays
	// "running" until River's leader rescues it (its rescuer runs every 30
	// seconds), so a killed worker delays its connections by about that
	// much; the connection's lease expires after LeaseTTL already (see
	// "Crashed workers" in the package documentation).
	SyncTimeout time.Duration
	// LeaseTTL and Holder are passed to mailsync.WithLease (defaults:
	// mailsync.DefaultLeaseTTL; host name, process id and a random suffix).
	LeaseTTL time.Duration
	Holder   string

	// LeaseRescue, with a State that is a mailsync.Leaser, rescues the
	// job of a worker process that died mid-sync as soon as its lease has
	// expired, instead of waiting for River's rescuer (SyncTimeout + 5
	// minutes, on River's leader, see "Crashed workers" in the package
	// documentation): every working process, every LeaseTTL/2, looks for
	// sync jobs running for longer than LeaseTTL whose connection's lease
	// nobody holds (it takes and releases the lease to know), and makes
	// them available again, as River's rescuer would. It does not wait for
	// River's leader, which may be the process that died. A killed worker
	// then delays its connections by at most about twice LeaseTTL. A live
	// sync holds its lease from start to end, so it is never taken; at
	// worst a job whose sync ended in the instant of the check, or whose
	// Resolve took longer than LeaseTTL, runs once more (the lease keeps
	// the two runs' syncs apart).
	LeaseRescue bool

	// Push, when set, makes this process take part in holding the push
	// watches of the connections it lists (see PushConfig and "Push
	// notifications" in the package documentation).
	Push *PushConfig

	// MeterProvider receives the metrics (default: no-op).
	MeterProvider metric.MeterProvider
	// ConnectionAttribute adds the attribute "connection" to every metric,
	// not only to the lag (one series per connection).
	ConnectionAttribute bool
	// Logger logs the fleet's decisions (default: discard). Syncs log to it
	// too, with the attribute "connection".
	Logger *slog.Logger

	// OnDegraded is called when a connection becomes degraded (see
	// Health.Degraded), once per degradation, after its health was stored,
	// by the process that recorded the transition. It runs on the worker
	// (or SyncNow's caller): keep it short, or hand the alert off.
	OnDegraded func(ctx context.Context, h Health)
	// OnRecovered is called when a degraded connection syncs again.
	OnRecovered func(ctx context.Context, h Health)

	// Connections, when set, lists the connections to keep scheduled
	// (never a typed-password one). Every ReconcileInterval (default 10
	// minutes), and when River's leader starts, a River periodic job
	// schedules those without a job (ScheduleMany), leaving out those that
	// wait for the admin (Health.NeedsAdmin): it heals a job deleted by
	// hand or lost otherwise, and spares the host a Schedule call per
	// connection at start-up. It runs on the leader only, so it must list
	// the same connections in every process.
	Connections       func(ctx context.Context) ([]string, error)
	ReconcileInterval time.Duration

	// River, when set, is called with the River configuration the Fleet
	// built (Queues, Workers, Logger, RescueStuckJobsAfter) before the
	// client is made, to tune it (FetchPollInterval, PollOnly, retention
	// periods, Schema, …). It must keep Queues and Workers.
	River func(*river.Config)
}

// Fleet runs the periodic syncs of many connections on River: one job per
// scheduled connection, whose only argument is the connection id. The job
// runs a sync, then snoozes until the next one (Interval ± Jitter, a
// Retry-After, or a back-off), so a connection has at most one queued or
// running sync (River's unique jobs) and, with a Leaser State, at most one
// sync anywhere (the lease, which SyncNow takes too).
type Fleet struct {
	cfg     Config
	client  riverClient
	health  HealthStore
	metrics *metrics
	log     *slog.Logger
	holder  string

	// stopRescue stops the lease rescue loop and waits for it.
	stopRescue func()

	// rescueJobs makes running sync jobs attempted before horizon
	// available again (River's JobRescueMany on the Fleet's driver).
	rescueJobs func(ctx context.Context, ids []int64, horizon time.Time) error

	// triggers keeps Trigger's marks on running jobs: the HealthStore when
	// it is a TriggerStore, else in memory.
	triggers TriggerStore

	// push holds this process's push watches (Config.Push), nil without.
	push *pushRunner

	// notifying: OnChange's Notify calls under way, by connection; true
	// when another notification came meanwhile.
	notifyMu  sync.Mutex
	notifying map[string]bool

	// testHookSnooze, when set, sees every snooze a worker decides.
	testHookSnooze func(connection string, kind ErrorKind, d time.Duration)
}

// riverClient is the part of *river.Client[TTx] the Fleet uses, whatever
// the driver's transaction type.
type riverClient interface {
	Start(ctx context.Context) error
	Stop(ctx context.Context) error
	Insert(ctx context.Context, args river.JobArgs, opts *river.InsertOpts) (*rivertype.JobInsertResult, error)
	InsertMany(ctx context.Context, params []river.InsertManyParams) ([]*rivertype.JobInsertResult, error)
	JobList(ctx context.Context, params *river.JobListParams) (*river.JobListResult, error)
	JobCancel(ctx context.Context, jobID int64) (*rivertype.JobRow, error)
	JobRetry(ctx context.Context, id int64) (*rivertype.JobRow, error)
	JobGet(ctx context.Context, id int64) (*rivertype.JobRow, error)
}

// SyncArgs are a sync job's arguments: the connection id and nothing else,
// since River's jobs are rows in the database.
type SyncArgs struct {
	Connection string `json:"connection" river:"unique"`
}

// JobKind is the River job kind of the syncs.
const JobKind = "mailsync_sync"

// Kind implements river.JobArgs.
func (SyncArgs) Kind() string { return JobKind }

// New makes a Fleet on a River driver: riversqlite.New(db) for the
// embedded default (a *sql.DB on modernc.org/sqlite, with
// db.SetMaxOpenConns(1), best from sqlstate.OpenSQLiteDB),
// riverpgxv5.New(pool) for PostgreSQL. River's
// tables must exist: see Migrate.
func New[TTx any](driver riverdriver.Driver[TTx], cfg Config) (*Fleet, error) {
	if driver == nil {
		return nil, errors.New("mailsync/fleet: nil River driver")
	}
	if cfg.Resolver == nil {
		return nil, errors.New("mailsync/fleet: Config.Resolver is required")
	}
	if cfg.State == nil {
		return nil, errors.New("mailsync/fleet: Config.State is required")
	}
	if cfg.Interval <= 0 {
		cfg.Interval = DefaultInterval
	}
	if cfg.Jitter == 0 {
		cfg.Jitter = cfg.Interval / 10
	}
	if cfg.BackstopInterval <= 0 {
		cfg.BackstopInterval = DefaultBackstopInterval
	}
	if cfg.Backoff <= 0 {
		cfg.Backoff = DefaultBackoff
	}
	if cfg.MaxBackoff <= 0 {
		cfg.MaxBackoff = DefaultMaxBackoff
	}
	if cfg.DegradeAfter <= 0 {
		cfg.DegradeAfter = DefaultDegradeAfter
	}
	if cfg.Workers == 0 {
		cfg.Workers = DefaultWorkers
	}
	if cfg.Queue == "" {
		cfg.Queue = DefaultQueue
	}
	if cfg.SyncTimeout <= 0 {
		cfg.SyncTimeout = DefaultSyncTimeout
	}
	if cfg.LeaseTTL <= 0 {
		cfg.LeaseTTL = mailsync.DefaultLeaseTTL
	}
	f := &Fleet{cfg: cfg, health: cfg.Health, log: cfg.Logger, holder: cfg.Holder}
	if f.health == nil {
		f.health = NewMemoryHealth()
	}
	if f.log == nil {
		f.log = slog.New(slog.DiscardHandler)
	}
	if f.holder == "" {
		host, _ := os.Hostname()
		f.holder = fmt.Sprintf("fleet/%s/%d", host, os.Getpid())
	}
	m, err := newMetrics(cfg.MeterProvider, cfg.ConnectionAttribute)
	if err != nil {
		return nil, fmt.Errorf("mailsync/fleet: metrics: %w", err)
	}
	f.metrics = m
	if ts, ok := f.health.(TriggerStore); ok {
		f.triggers = ts
	} else {
		f.triggers = &memoryTriggers{}
	}
	if cfg.Push != nil {
		if f.push, err = newPushRunner(f, *cfg.Push); err != nil {
			return nil, err
		}
	}

	workers := river.NewWorkers()
	if err := river.AddWorkerSafely(workers, &syncWorker{f: f}); err != nil {
		return nil, fmt.Errorf("mailsync/fleet: %w", err)
	}
	rc := &river.Config{
		Workers:              workers,
		Logger:               f.log,
		RescueStuckJobsAfter: cfg.SyncTimeout + 5*time.Minute,
	}
	if cfg.Connections != nil {
		if cfg.ReconcileInterval <= 0 {
			cfg.ReconcileInterval = 10 * time.Minute
			f.cfg.ReconcileInterval = cfg.ReconcileInterval
		}
		if err := river.AddWorkerSafely(workers, &reconcileWorker{f: f}); err != nil {
			return nil, fmt.Errorf("mailsync/fleet: %w", err)
		}
		rc.PeriodicJobs = []*river.PeriodicJob{river.NewPeriodicJob(river.PeriodicInterval(cfg.ReconcileInterval),
			func() (river.JobArgs, *river.InsertOpts) {
				return ReconcileArgs{}, &river.InsertOpts{Queue: cfg.Queue, MaxAttempts: 1,
					UniqueOpts: river.UniqueOpts{ByState: uniqueStates}}
			}, &river.PeriodicJobOpts{ID: ReconcileKind, RunOnStart: true})}
	}
	if cfg.Workers > 0 {
		rc.Queues = map[string]river.QueueConfig{cfg.Queue: {MaxWorkers: cfg.Workers}}
	}
	if cfg.River != nil {
		cfg.River(rc)
	}
	exec, schema := driver.GetExecutor(), rc.Schema
	f.rescueJobs = func(ctx context.Context, ids []int64, horizon time.Time) error {
		now := time.Now().UTC()
		p := &riverdriver.JobRescueManyParams{Schema: schema, StuckHorizon: horizon}
		for _, id := range ids {
			e, err := json.Marshal(rivertype.AttemptError{At: now,
				Error: "mailsync/fleet: rescued: the connection's lease expired while the job was running (its worker is gone)"})
			if err != nil {
				return err
			}
			p.ID, p.Error = append(p.ID, id), append(p.Error, e)
			p.FinalizedAt, p.ScheduledAt = append(p.FinalizedAt, nil), append(p.ScheduledAt, now)
			p.State = append(p.State, string(rivertype.JobStateAvailable))
		}
		_, err := exec.JobRescueMany(ctx, p)
		return err
	}
	// On SQLite, River's fetch binds LIMIT 1 only (fetchone.go).
	client, err := river.NewClient(withFetchOne(driver), rc)
	if err != nil {
		return nil, fmt.Errorf("mailsync/fleet: %w", err)
	}
	f.client = client
	return f, nil
}

// Health returns the store of the connections' health.
func (f *Fleet) Health() HealthStore { return f.health }

// Start starts working the scheduled syncs in this process (nothing for an
// insert-only Fleet) and, with Config.Push, holding push watches (in an
// insert-only Fleet too). Stop it with Stop.
//
// ctx is the lifetime of the workers, not a start-up deadline: River's
// client works jobs until ctx ends, and when it ends the workers stop at
// once — running syncs are cancelled (they stop cleanly, keeping what they
// did) and no job is fetched any more — without an error anywhere. Pass a
// context that lives as long as the process (context.Background, or the
// one signal.NotifyContext gives main), never one with a timeout for
// start-up: the Fleet would silently stop working when it expires. The
// push watches and Config.LeaseRescue do not end with ctx; they run until
// Stop. Stop is the graceful shutdown: it lets running syncs finish.
func (f *Fleet) Start(ctx context.Context) error {
	if f.push != nil {
		f.push.start(ctx)
	}
	if f.cfg.Workers < 0 {
		return nil
	}
	if err := f.client.Start(ctx); err != nil {
		return fmt.Errorf("mailsync/fleet: starting: %w", err)
	}
	if _, ok := f.cfg.State.(mailsync.Leaser); ok && f.cfg.LeaseRescue && f.stopRescue == nil {
		rctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
		done := make(chan struct{})
		f.stopRescue = func() { cancel(); <-done }
		go func() {
			defer close(done)
			t := time.NewTicker(max(f.cfg.LeaseTTL/2, 100*time.Millisecond))
			defer t.Stop()
			for {
				select {
				case <-rctx.Done():
					return
				case <-t.C:
				}
				if err := f.leaseRescue(rctx); err != nil && rctx.Err() == nil {
					f.log.Warn("mailsync/fleet: lease rescue", "err", err)
				}
			}
		}()
	}
	return nil
}

// Stop stops fetching jobs and waits for the running syncs to finish, or
// for ctx to end. A sync cut short is worked again by the next process.
func (f *Fleet) Stop(ctx context.Context) error {
	if f.push != nil {
		f.push.stop(ctx)
	}
	if f.cfg.Workers < 0 {
		return nil
	}
	if f.stopRescue != nil {
		f.stopRescue()
		f.stopRescue = nil
	}
	if err := f.client.Stop(ctx); err != nil {
		return fmt.Errorf("mailsync/fleet: stopping: %w", err)
	}
	return nil
}

// uniqueStates are the states in which a connection's job blocks another:
// every state but the final ones (completed, cancelled, discarded).
var uniqueStates = []rivertype.JobState{
	rivertype.JobStateAvailable, rivertype.JobStatePending, rivertype.JobStateRetryable,
	rivertype.JobStateRunning, rivertype.JobStateScheduled,
}

func (f *Fleet) insertOpts() *river.InsertOpts {
	return &river.InsertOpts{
		Queue: f.cfg.Queue,
		// Snoozes do not count as attempts; only a crashed process (the
		// rescuer) does. A high bound keeps a connection scheduled for good.
		MaxAttempts: 1000,
		UniqueOpts:  river.UniqueOpts{ByArgs: true, ByState: uniqueStates},
	}
}

// Schedule makes the Fleet sync connectionID periodically, the first time
// as soon as a worker is free. It is idempotent: a connection already
// scheduled (queued, waiting or running) keeps its one job, and scheduled
// reports false. When the Resolver is a Checker, a connection it refuses
// (ErrPasswordRequired for a typed-password connection) is not scheduled.
// After the admin fixed a connection that needed them, Schedule it again.
func (f *Fleet) Schedule(ctx context.Context, connectionID string) (scheduled bool, err error) {
	if connectionID == "" {
		return false, errors.New("mailsync/fleet: empty connection id")
	}
	if c, ok := f.cfg.Resolver.(Checker); ok {
		if err := c.Schedulable(ctx, connectionID); err != nil {
			return false, fmt.Errorf("mailsync/fleet: %s cannot be scheduled: %w", connectionID, err)
		}
	}
	res, err := f.client.Insert(ctx, SyncArgs{Connection: connectionID}, f.insertOpts())
	if err != nil {
		return false, fmt.Errorf("mailsync/fleet: scheduling %s: %w", connectionID, err)
	}
	return !res.UniqueSkippedAsDuplicate, nil
}

// ScheduleMany schedules many connections in one batch insert, e.g. every
// connection of the host at start-up (every process may do so: the
// connections already scheduled are left as they are). It returns how many
// were newly scheduled. When the Resolver is a Checker, the connections it
// refuses are left out and their errors joined in err; the others are
// still scheduled.
func (f *Fleet) ScheduleMany(ctx context.Context, connectionIDs []string) (scheduled int, err error) {
	var errs []error
	params := make([]river.InsertManyParams, 0, len(connectionIDs))
	checker, _ := f.cfg.Resolver.(Checker)
	for _, id := range connectionIDs {
		if id == "" {
			errs = append(errs, errors.New("mailsync/fleet: empty connection id"))
			continue
		}
		if checker != nil {
			if err := checker.Schedulable(ctx, id); err != nil {
				errs = append(errs, fmt.Errorf("mailsync/fleet: %s cannot be scheduled: %w", id, err))
				continue
			}
		}
		params = append(params, river.InsertManyParams{Args: SyncArgs{Connection: id}, InsertOpts: f.insertOpts()})
	}
	if len(params) > 0 {
		res, err := f.client.InsertMany(ctx, params)
		if err != nil {
			return 0, errors.Join(append(errs, fmt.Errorf("mailsync/fleet: scheduling: %w", err))...)
		}
		for _, r := range res {
			if !r.UniqueSkippedAsDuplicate {
				scheduled++
			}
		}
	}
	return scheduled, errors.Join(errs...)
}

// jobs returns connectionID's unfinished sync jobs (at most one, unless the
// unique constraint was bypassed).
func (f *Fleet) jobs(ctx context.Context, connectionID string) ([]*rivertype.JobRow, error) {
	// args ->> 'connection' reads the key in PostgreSQL's jsonb and, as the
	// path $.connection, in SQLite.
	params := river.NewJobListParams().Kinds(JobKind).States(uniqueStates...).First(10).
		Where("args ->> 'connection' = @connection_id", river.NamedArgs{"connection_id": connectionID})
	res, err := f.client.JobList(ctx, params)
	if err != nil {
		return nil, fmt.Errorf("mailsync/fleet: listing %s's jobs: %w", connectionID, err)
	}
	return res.Jobs, nil
}

// Unschedule stops the periodic syncs of connectionID: its job is
// cancelled (a running sync is cancelled too; it stops cleanly and keeps
// what it did). It reports whether there was a job.
func (f *Fleet) Unschedule(ctx context.Context, connectionID string) (bool, error) {
	jobs, err := f.jobs(ctx, connectionID)
	if err != nil {
		return false, err
	}
	for _, j := range jobs {
		if _, err := f.client.JobCancel(ctx, j.ID); err != nil && !errors.Is(err, river.ErrNotFound) {
			return false, fmt.Errorf("mailsync/fleet: unscheduling %s: %w", connectionID, err)
		}
	}
	return len(jobs) > 0, nil
}

// SyncNow syncs connectionID in the caller's process (a web request, the
// CLI), e.g. a password connection with the password a person just typed
// (pass "" otherwise). The password stays in memory: it goes to the
// Resolver and is scrubbed from the health record. The sync holds the same
// lease as a worker's, so it never runs beside one: it fails with
// mailsync.ErrBusy while a worker syncs the connection, and a worker that
// comes while it runs snoozes until its next turn. Health and metrics are
// recorded as for a scheduled sync; the connection's schedule is not
// changed: a connection unscheduled because it needed the admin is not
// scheduled again by a successful SyncNow — call Schedule.
//
// opts are this call's own options, e.g. mailsync.WithProgress for a
// progress page: they come after the Fleet's (state, lease, logger) and
// the Target's Options, so they win where options overlap. As for
// Target.Options, WithState and WithLease must not be passed: they would
// defeat the Fleet's lease.
//
// An authentication failure (mailsync.ErrAuth) of a SyncNow with a typed
// password counts as a failure — Health's consecutive failures, last error
// kind KindAuth and the scrubbed message — but does not mark the
// connection NeedsAdmin nor degrade it: the person who mistyped the
// password sees the error and types it again; nothing waits for the admin.
// Without a typed password (""), an auth failure is the stored
// credentials' and needs the admin, as in a scheduled sync.
func (f *Fleet) SyncNow(ctx context.Context, connectionID string, password mailsync.Secret, opts ...mailsync.Option) (*mailsync.Report, error) {
	r := f.run(ctx, connectionID, password, opts...)
	return r.rep, r.err
}

// backstopInterval is the poll of a connection whose push works: the
// Target's backstop interval, else the Config's, but never shorter than its
// polling interval — push never makes a connection poll more often.
func backstopInterval(interval, config, target time.Duration) time.Duration {
	b := config
	if target > 0 {
		b = target
	}
	return max(interval, b)
}

// result is one finished run.
type result struct {
	rep        *mailsync.Report
	err        error
	kind       ErrorKind
	action     Action
	retryAfter time.Duration
	interval   time.Duration
	failures   int
}

// run resolves and syncs one connection and records the outcome.
// extra are SyncNow's options, after the Target's.
func (f *Fleet) run(ctx context.Context, id string, password mailsync.Secret, extra ...mailsync.Option) result {
	start := time.Now()
	r := result{interval: f.cfg.Interval}
	t, err := f.cfg.Resolver.Resolve(ctx, id, password)
	provider := ""
	if err == nil && t.Connector == nil {
		err = mailsync.NewConfigError(mailsync.Problem{Field: "connector", Code: mailsync.CodeRequired, Message: "the Resolver returned no connector"})
	}
	if err == nil {
		if t.Interval > 0 {
			r.interval = t.Interval
		}
		conn := t.Connector.Connection()
		if conn.Name != id {
			err = mailsync.NewConfigError(mailsync.Problem{Field: "name", Code: mailsync.CodeConflict,
				Message: fmt.Sprintf("the connector's Connection.Name %q is not the connection id %q (the lease and the state are kept by name)", conn.Name, id)})
		} else {
			opts := append([]mailsync.Option{
				mailsync.WithState(f.cfg.State),
				mailsync.WithLease(f.holder, f.cfg.LeaseTTL),
				mailsync.WithLogger(f.log),
			}, t.Options...)
			opts = append(opts, extra...)
			r.rep, err = mailsync.Sync(ctx, t.Connector, t.Mapping, t.Sink, opts...)
			if r.rep != nil {
				provider = r.rep.Provider
			}
		}
		if cerr := t.Connector.Close(); cerr != nil {
			f.log.Debug("mailsync/fleet: closing the connector", "connection", id, "err", cerr)
		}
	}
	end := time.Now()
	r.err = err
	r.kind, r.action = Classify(err)
	if r.kind == KindNone && ctx.Err() != nil {
		r.kind, r.action = Classify(ctx.Err())
	}
	var te *mailsync.ThrottledError
	if errors.As(err, &te) {
		r.retryAfter = te.RetryAfter
	}
	if r.kind == KindBusy || r.kind == KindCanceled || r.kind == KindLeaseLost || r.kind == KindUnknownConnection {
		f.log.Info("mailsync/fleet: sync skipped", "connection", id, "kind", r.kind)
		return r
	}
	msg := ""
	if err != nil {
		secrets := []string{password.Reveal()}
		for _, s := range t.Secrets {
			secrets = append(secrets, s.Reveal())
		}
		msg = truncateUTF8(redact.String(err.Error(), secrets...), MaxErrorLen)
	}
	// A typed password that the server refused was mistyped: the person
	// who typed it sees the error, the admin has nothing to fix.
	typo := password != "" && r.kind == KindAuth
	a := attempt{start: start, end: end, kind: r.kind, msg: msg, rep: r.rep, typo: typo}
	before, after, herr := f.health.Update(context.WithoutCancel(ctx), id, func(h *Health) { a.apply(h, f.cfg.DegradeAfter) })
	if herr != nil {
		f.log.Error("mailsync/fleet: recording health", "connection", id, "err", herr)
		after = Health{Connection: id} // for the back-off: as if this were the first failure
		a.apply(&after, f.cfg.DegradeAfter)
	}
	r.failures = after.ConsecutiveFailures
	if after.Push.Healthy(time.Now(), 2*f.pushLeaseTTL()) {
		// Push works: the poll is only the backstop.
		r.interval = backstopInterval(r.interval, f.cfg.BackstopInterval, t.BackstopInterval)
	}
	if provider == "" {
		provider = "unknown" // the Resolver failed: no connector to ask
	}
	f.metrics.record(context.WithoutCancel(ctx), id, provider, r.kind, end.Sub(start), r.rep, after.OldestUnprocessed)
	if err != nil {
		f.log.Warn("mailsync/fleet: sync failed", "connection", id, "kind", r.kind, "failures", after.ConsecutiveFailures, "err", msg)
	}
	if herr == nil {
		if !before.Degraded && after.Degraded && f.cfg.OnDegraded != nil {
			f.cfg.OnDegraded(context.WithoutCancel(ctx), after)
		}
		if before.Degraded && !after.Degraded && f.cfg.OnRecovered != nil {
			f.cfg.OnRecovered(context.WithoutCancel(ctx), after)
		}
	}
	return r
}

// next returns the wait before the next run after r, per its action.
func (f *Fleet) next(r result) time.Duration {
	switch r.action {
	case ActionRetryAfter:
		return r.retryAfter
	case ActionBackoff:
		return Backoff(f.cfg.Backoff, f.cfg.MaxBackoff, max(r.failures, 1))
	}
	d := r.interval
	if j := f.cfg.Jitter; j > 0 {
		d += jitter(2*j+1) - j
	}
	return max(d, 0)
}

// syncWorker works the sync jobs.
type syncWorker struct {
	river.WorkerDefaults[SyncArgs]
	f *Fleet
}

// Timeout bounds one sync. River's rescuer reads it too: it never rescues
// the job of a worker without a timeout (-1).
func (w *syncWorker) Timeout(*river.Job[SyncArgs]) time.Duration { return w.f.cfg.SyncTimeout }

// NextRetry is when River runs the job again after it ended in an error:
// a panic, or a rescue (the process that ran it died and River's rescuer
// found the job stuck). River's default policy waits (errors+1)^4 seconds,
// but a connection's job never completes, so its errors pile up over its
// life — the tenth rescue would wait almost three hours. A rescued job (it
// was attempted more than SyncTimeout ago) runs again at once: the dead
// holder's lease has expired by then as long as RescueStuckJobsAfter
// exceeds LeaseTTL. A panic waits Backoff.
func (w *syncWorker) NextRetry(job *river.Job[SyncArgs]) time.Time {
	now := time.Now()
	if job.AttemptedAt != nil && now.Sub(*job.AttemptedAt) >= w.f.cfg.SyncTimeout {
		return now
	}
	return now.Add(w.f.cfg.Backoff)
}

// Work runs one scheduled sync and snoozes the job until the next, or
// cancels it when the connection needs the admin. It never fails the job:
// a failed job would count attempts and end up discarded.
func (w *syncWorker) Work(ctx context.Context, job *river.Job[SyncArgs]) error {
	growStack()
	id := job.Args.Connection
	r := w.f.run(ctx, id, "")
	// Ended, and a Trigger came during the run? Then once more at once.
	again, err := w.f.triggers.EndRun(context.WithoutCancel(ctx), id, runKey(job.JobRow))
	if err != nil {
		// The mark cannot be read: run once more, as if a Trigger had
		// come. An extra sync is cheap; a lost notification leaves new
		// mail waiting for the next poll.
		w.f.log.Warn("mailsync/fleet: reading the trigger mark; syncing once more", "connection", id, "err", err)
		again = true
	}
	if errors.Is(context.Cause(ctx), river.ErrJobCancelledRemotely) {
		return river.JobCancel(fmt.Errorf("mailsync/fleet: %s: unscheduled", id))
	}
	if r.kind == KindCanceled {
		return river.JobSnooze(0) // shutting down: the next process picks it up at once
	}
	if r.action == ActionStop {
		// The kind only: the message may quote the server, and River keeps
		// this error in the job row.
		w.f.log.Warn("mailsync/fleet: connection needs the admin; unscheduled", "connection", id, "kind", r.kind)
		return river.JobCancel(fmt.Errorf("mailsync/fleet: %s: stopped: %s", id, r.kind))
	}
	d := w.f.next(r)
	if again && r.action != ActionRetryAfter {
		// A notification came after this run read its cursor. A
		// Retry-After is still honoured; a back-off is cut short, as a
		// Trigger of a waiting job does.
		d = 0
	}
	if h := w.f.testHookSnooze; h != nil {
		h(id, r.kind, d)
	}
	return river.JobSnooze(d)
}

// ReconcileArgs are the arguments of the periodic job that keeps the
// connections of Config.Connections scheduled (none).
type ReconcileArgs struct{}

// ReconcileKind is the River job kind of the reconciliation.
const ReconcileKind = "mailsync_reconcile"

// Kind implements river.JobArgs.
func (ReconcileArgs) Kind() string { return ReconcileKind }

// reconcileWorker schedules the listed connections that have no job.
type reconcileWorker struct {
	river.WorkerDefaults[ReconcileArgs]
	f *Fleet
}

// Work lists the connections and schedules those without a job, except
// the ones that wait for the admin.
func (w *reconcileWorker) Work(ctx context.Context, _ *river.Job[ReconcileArgs]) error {
	ids, err := w.f.cfg.Connections(ctx)
	if err != nil {
		return fmt.Errorf("mailsync/fleet: listing the connections: %w", err)
	}
	keep := ids[:0:0]
	for _, id := range ids {
		h, ok, err := w.f.health.Get(ctx, id)
		if err != nil {
			return err
		}
		if ok && h.NeedsAdmin {
			continue
		}
		keep = append(keep, id)
	}
	n, err := w.f.ScheduleMany(ctx, keep)
	if n > 0 {
		w.f.log.Info("mailsync/fleet: reconciled", "scheduled", n)
	}
	if err != nil {
		// Refused connections (a Checker's ErrPasswordRequired) are logged,
		// not retried: the next reconciliation sees them again.
		w.f.log.Warn("mailsync/fleet: reconciling", "err", err)
	}
	return nil
}

// leaseRescue finds the sync jobs running for longer than LeaseTTL whose
// connection's lease is free — a live sync holds it from its start to its
// end — and rescues them (Config.LeaseRescue).
func (f *Fleet) leaseRescue(ctx context.Context) error {
	leaser := f.cfg.State.(mailsync.Leaser)
	horizon := time.Now().Add(-f.cfg.LeaseTTL)
	res, err := f.client.JobList(ctx, river.NewJobListParams().Kinds(JobKind).States(rivertype.JobStateRunning).First(10000))
	if err != nil {
		return fmt.Errorf("mailsync/fleet: listing the running syncs: %w", err)
	}
	var ids []int64
	for _, j := range res.Jobs {
		if j.AttemptedAt == nil || j.AttemptedAt.After(horizon) {
			continue
		}
		var args SyncArgs
		if err := json.Unmarshal(j.EncodedArgs, &args); err != nil || args.Connection == "" {
			continue
		}
		l, err := leaser.AcquireLease(ctx, args.Connection, f.holder+"/lease-rescue", f.cfg.LeaseTTL)
		if err != nil {
			if !errors.Is(err, mailsync.ErrBusy) {
				f.log.Warn("mailsync/fleet: lease rescue: probing the lease", "connection", args.Connection, "err", err)
			}
			continue // held: its sync is alive
		}
		if err := leaser.ReleaseLease(ctx, l); err != nil {
			f.log.Warn("mailsync/fleet: lease rescue: releasing the probe", "connection", args.Connection, "err", err)
		}
		ids = append(ids, j.ID)
		f.log.Info("mailsync/fleet: rescuing a sync whose worker is gone", "connection", args.Connection, "job", j.ID)
	}
	if len(ids) == 0 {
		return nil
	}
	if err := f.rescueJobs(ctx, ids, horizon); err != nil {
		return fmt.Errorf("mailsync/fleet: rescuing %d syncs: %w", len(ids), err)
	}
	return nil
}
