// Package fleet syncs many connections periodically, from one process or a
// fleet of them, on the River job queue (github.com/riverqueue/river):
// SQLite through riversqlite for the embedded default, PostgreSQL through
// riverpgxv5 for a fleet of worker processes.
//
// # Jobs
//
// A scheduled connection has one River job, whose only argument is the
// connection id (SyncArgs): River's jobs are rows in the database, so no
// password or token goes into them. The host's Resolver builds the
// connector — with its credentials from the host's vault or OAuth store —
// the mapping and the sink at the start of every sync.
//
// The job never completes: after each sync it snoozes (river.JobSnooze,
// which does not count as an attempt) until the next one, Interval ±
// Jitter later. Schedule inserts it as a unique job (by its args, in every
// state but the final ones), so a connection has at most one job queued or
// running; with a State that is a mailsync.Leaser, Sync also holds the
// connection's lease, so a SyncNow in a web request or the CLI never runs
// beside a worker.
//
// With Config.Connections, a River periodic job on the leader re-schedules
// every listed connection that lost its job (ScheduleMany is idempotent),
// except those waiting for the admin. Unschedule cancels a job; Trigger
// makes a snoozed job run now.
//
// # Errors
//
// The typed errors of the root package decide what comes next (Classify):
//
//   - mailsync.ErrThrottled with a Retry-After: the job snoozes that long.
//   - mailsync.ErrAuth, ErrConsentRequired, ErrInvalidConfig (and the other
//     configuration errors): the job is cancelled (river.JobCancel) and
//     the connection marked NeedsAdmin; it is tried once, not every cycle,
//     until the admin fixes it and the host calls Schedule again.
//   - connection errors and the rest: exponential back-off from Backoff,
//     doubling per consecutive failure, at most MaxBackoff.
//   - mailsync.ErrBusy (someone else holds the lease): the next interval.
//
// # Password connections
//
// A connection whose password is typed at sync time is never scheduled:
// its Resolver returns ErrPasswordRequired when called without a password
// (and, as a Checker, refuses it in Schedule). SyncNow runs it in the
// caller's process with the typed password, which stays in memory.
//
// # Health and metrics
//
// Every sync updates the connection's Health (last attempt and success,
// consecutive failures, last error kind and scrubbed message, messages
// synced, oldest unprocessed age) in a HealthStore — MemoryHealth, or
// SQLHealth in a table of the same PostgreSQL or SQLite database — and
// calls Config.OnDegraded and OnRecovered on the transitions, so the host
// can alert its admins. Metrics go through the OpenTelemetry metric API to
// Config.MeterProvider: MetricMessages, MetricSyncDuration,
// MetricQuarantined, MetricLag.
//
// # Setup
//
//	db, _ := sql.Open("sqlite", "file:fleet.db?_pragma=busy_timeout(5000)&_pragma=journal_mode(WAL)")
//	db.SetMaxOpenConns(1) // what riversqlite advises
//	driver := riversqlite.New(db)
//	_ = fleet.Migrate(ctx, driver)
//	health, _ := fleet.NewSQLHealth(db, fleet.SQLite, "mailsync_")
//	_ = health.Migrate(ctx)
//	f, _ := fleet.New(driver, fleet.Config{Resolver: resolver, State: state, Health: health})
//	_ = f.Start(ctx)
//	defer f.Stop(context.Background())
//	_, _ = f.Schedule(ctx, "support-inbox")
package fleet
