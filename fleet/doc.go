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
// except those waiting for the admin. Unschedule cancels a job.
//
// Trigger asks for a sync as soon as possible and never loses the request:
// a waiting job (snoozed, backing off) runs now; a running one runs once
// more right after it ends — the request may have come after that run read
// its cursor — however many Triggers came during the run. The mark on a
// running job lives in the TriggerStore (SQLHealth's table
// prefix+"fleet_trigger", beside the health), so a Trigger in one process
// (a web process receiving a push) reaches the worker of another: the
// worker records its run when it starts, Trigger marks that run, and the
// worker, when the run ends, reads the mark in the same statement that
// ends the run and snoozes 0 instead of the interval. River itself cannot
// hold such a mark (JobRetry leaves a running job alone, JobUpdate only
// sets a job's output, a unique job cannot be inserted twice).
//
// # Errors
//
// The typed errors of the root package decide what comes next (Classify):
//
//   - mailsync.ErrThrottled with a Retry-After: the job snoozes that long.
//   - mailsync.ErrAuth, ErrConsentRequired, ErrInvalidConfig (and the other
//     configuration errors): the job is cancelled (river.JobCancel) and
//     the connection marked NeedsAdmin; it is tried once, not every cycle,
//     until the admin fixes it and the host calls Schedule again. An
//     ErrAuth of SyncNow with a typed password is a mistyped password: a
//     failure in Health, but neither NeedsAdmin nor a degradation.
//   - connection errors and the rest: exponential back-off from Backoff,
//     doubling per consecutive failure, at most MaxBackoff.
//   - mailsync.ErrBusy (someone else holds the lease): the next interval.
//
// # Crashed workers
//
// A worker process that dies mid-sync (SIGKILL, OOM, a lost machine)
// leaves two things behind: the connection's lease in the State, and its
// River job in the state "running". The lease expires after LeaseTTL (it
// is renewed every third of it while the sync runs), so no one else syncs
// the connection before that, and a holder that only stalled is fenced: its
// writes carry an old token and the State refuses them. The job is
// rescued by River's leader, which looks for stuck jobs every 30 seconds
// and takes those that have been running for longer than both
// RescueStuckJobsAfter (SyncTimeout + 5 minutes) and SyncTimeout; the job
// is then retried at once — within the 5 seconds of River's scheduler —
// without backing off by the errors a connection's long-lived job piled
// up. A killed worker therefore delays its connections by about
// SyncTimeout + 5 minutes, plus up to 35 seconds: with the defaults about
// 20 minutes; the other connections go on.
//
// Config.LeaseRescue rescues sooner, by the lease: every working process
// looks, every LeaseTTL/2, for sync jobs running for longer than LeaseTTL
// whose connection's lease nobody holds (a live sync holds it from start
// to end; the check takes and releases the lease), and makes them
// available again, as River's rescuer would — without waiting for River's
// leader, which may be the process that died (a new one is elected after
// about 15 seconds). A killed worker then delays its connections by at
// most about twice LeaseTTL. The cost: each working process lists the
// running sync jobs every LeaseTTL/2, and a sync that ended in the instant
// of the check may run once more, early (the lease still keeps two syncs
// apart). Without it, the trade-off is the host's, through SyncTimeout: a
// shorter SyncTimeout rescues sooner but cuts long first syncs of big
// mailboxes (they resume at the next run: nothing is lost, only delayed).
// Either way RescueStuckJobsAfter must stay above LeaseTTL, otherwise a
// rescued run finds the dead lease still held, gets ErrBusy and waits for
// the next interval.
//
// Measured by TestFleetAcceptance (4 worker processes on PostgreSQL and a
// real Dovecot, LeaseTTL 2 s, SyncTimeout 5 s, RescueStuckJobsAfter 6 s):
// with LeaseRescue a killed worker's connections are taken over about 2 s
// after the kill; with River's rescuer alone, 13 to 30 s.
//
// # Password connections
//
// A connection whose password is typed at sync time is never scheduled:
// its Resolver returns ErrPasswordRequired when called without a password
// (and, as a Checker, refuses it in Schedule). SyncNow runs it in the
// caller's process with the typed password, which stays in memory.
//
// # Push notifications
//
// A connection is either polled only (every Interval), or pushed with a
// backstop poll: its push source tells the Fleet when new mail may have
// arrived, the Fleet triggers the connection's usual cursor-based sync
// through its job (Notify, then Trigger: never a fetch of its own), and
// while the push works (Health.Push.Healthy) the job polls only every
// BackstopInterval. When the push is down — the IDLE connection lost, a
// subscription gone — the connection is synced once at once and then every
// Interval again, until the push is back.
//
// A push watch is held by exactly one process of the fleet: the one that
// holds the connection's push lease (PushLeaseName, in the State, which must
// be a mailsync.Leaser for a fleet of several processes). Every process
// with Config.Push looks every PushConfig.Every for push connections whose
// watch nobody refreshes, takes their lease and starts the watch; the
// holder renews the lease and refreshes Health.Push. A holder that dies
// stops renewing: after PushConfig.LeaseTTL another process takes the
// watch over. An IMAP IDLE watch holds a TCP connection, so this keeps one
// per connection in the whole fleet; Graph subscriptions and Gmail watches
// are created and renewed by their holder only (graph.Subscriber.Run and
// gmail.Push.Run renew only what their own process subscribed), so renewals
// also run in one process at a time.
//
// Credentials: a watch logs in again after every drop, and a new holder
// logs in after a takeover, so a push source needs credentials it can use
// again without a person: OAuth connections (a token source from the
// host's OAuth store) always. A password connection never: its password is
// typed at sync time and kept nowhere (see "Password connections"), so its
// push source's resolver returns ErrPasswordRequired and the connection is
// only synced by SyncNow. Do not list such connections in
// PushConfig.Connections.
//
// Only a process that added a source for a connection's kind
// (AddPushSource) takes its watch. Graph change notifications and Gmail
// pushes are HTTP requests to the host's public URLs, answered by
// graph.Subscriber's and gmail.Push's handlers with OnChange =
// Fleet.OnChange (see the examples); the sync they trigger runs on any
// worker. Both handlers work in every process, so the host may route
// their URLs to any process (one load balancer in front of all):
// gmail.Push's with PushOptions.Connections triggers the connections of a
// mailbox whose watch another process holds; graph.Subscriber's, given a
// SubscriberOptions.ClientStateKey that every process shares (a host
// secret, never stored or logged), verifies the notifications of every
// process's subscriptions — the clientState is derived from the key and
// the connection, which the notification URL names — and a process that
// subscribes nothing serves graph.NewHandler with the same key. A
// subscriptionRemoved or reauthorizationRequired notification that
// reaches a process other than the holder triggers a sync there (so
// nothing waits for the backstop poll), and the holder's
// graph.Subscriber.Run, which with a key renews every subscription every
// VerifyEvery (15 minutes by default), recreates a removed subscription by
// itself. Without a key a Subscriber's handler knows only its own
// process's subscriptions and drops (and logs) the others'. To rotate the
// key without losing notifications, give every process the new key as a
// previous one first (PreviousClientStateKeys, or SetClientStateKeys on a
// running Subscriber or Handler), then swap them: the holders' renewals
// move each subscription to the current key (see graph's package doc).
// IMAP IDLE holds a connection, not a URL: every worker process may hold
// watches.
//
// Cost: each holder renews its push leases and writes each held
// connection's push record every PushConfig.Every (LeaseTTL/3, 10 s by
// default); a process with push connections it does not hold reads the
// health list every Every to find those whose holder stopped refreshing.
// Every sync reads the connection's health once more to choose between
// Interval and BackstopInterval.
//
// # Health and metrics
//
// Every sync updates the connection's Health (last attempt and success,
// consecutive failures, last error kind and scrubbed message, messages
// synced, oldest unprocessed age) in a HealthStore — MemoryHealth, or
// SQLHealth in a table of the same PostgreSQL or SQLite database — and
// calls Config.OnDegraded and OnRecovered on the transitions, so the host
// can alert its admins. Health.Push shows the push state: kind, active,
// holder, subscription or watch expiry, last notification and last error. Metrics go through the OpenTelemetry metric API to
// Config.MeterProvider: MetricMessages, MetricSyncDuration,
// MetricQuarantined, MetricLag.
//
// # Setup
//
//	db, _ := sqlstate.OpenSQLiteDB("fleet.db") // WAL, busy timeout, statements prepared once per connection
//	db.SetMaxOpenConns(1)                      // what riversqlite advises
//	driver := riversqlite.New(db)
//	_ = fleet.Migrate(ctx, driver)
//	health, _ := fleet.NewSQLHealth(db, fleet.SQLite, "mailsync_")
//	_ = health.Migrate(ctx)
//	f, _ := fleet.New(driver, fleet.Config{Resolver: resolver, State: state, Health: health})
//	_ = f.Start(ctx) // ctx lives as long as the process: the workers stop when it ends
//	defer f.Stop(context.Background())
//	_, _ = f.Schedule(ctx, "support-inbox")
//
// sqlstate.OpenSQLiteDB's connections prepare each statement once;
// through a plain sql.Open("sqlite", …) modernc.org/sqlite parses River's
// statements again on every fetch and completion, which roughly doubled
// the CPU of a sync with nothing new (see the README's benchmarks).
package fleet
