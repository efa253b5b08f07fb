package imap

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/mailsync/mailsync"
)

// Watcher tells the host when new mail arrives in watched mailboxes, with
// IMAP IDLE (RFC 2177), so the host can sync at once instead of at the next
// periodic sync. It never fetches mail: it holds one connection per
// watched mailbox (its folder EXAMINEd, read-only) and calls
// WatchOptions.OnChange with the connection's name when the server reports
// new messages (EXISTS), after which the host runs its usual cursor-based
// sync (e.g. the fleet's Trigger). A lost or duplicated notification costs
// latency, never mail: keep the periodic sync as the backstop.
//
//   - IDLE is re-issued every WatchOptions.RenewEvery (default 25 minutes,
//     under the 29 minutes RFC 2177 allows).
//   - A server without IDLE is polled with NOOP every PollInterval.
//   - Bursts are coalesced: at most one OnChange per Coalesce window per
//     connection (the first at once, the rest at the window's end).
//   - EXPUNGE and flag changes are ignored: the sync only looks for UIDs
//     above its cursor, which neither changes.
//   - A dropped connection is reconnected with exponential backoff; OnChange
//     is called after every successful (re)connection, the first included,
//     so a sync picks up what arrived while nothing watched.
//   - Errors that retrying cannot fix (wrong credentials, revoked consent,
//     TLS or configuration problems, missing folder) stop that watch; its
//     Status says why, and Watch starts it again.
//   - At most MaxConnections mailboxes are watched per Watcher, and at
//     most MaxConnecting connection attempts run at once.
//
// Credentials: the Watcher logs in again after every drop, so it needs
// credentials it can reuse. An OAuth connection (Options.TokenSource) can
// always be watched. A password connection can be watched only while the
// host holds the password the user typed in memory: the Watcher keeps the
// Options (and so the password) in memory for as long as the mailbox is
// watched and forgets them at Unwatch, Close or when the watch's context
// ends; it never stores or logs it. After a process restart such a
// connection cannot be watched until the password is typed again.
//
// A Watcher is safe for concurrent use.
type Watcher struct {
	opts WatchOptions
	log  *slog.Logger

	mu      sync.Mutex
	watches map[string]*watch
	closed  bool

	// connecting holds a token per connection attempt in progress
	// (WatchOptions.MaxConnecting).
	connecting chan struct{}
}

// WatchOptions configure a Watcher.
type WatchOptions struct {
	// OnChange is called with the connection's name (mailsync.Connection.Name)
	// when its mailbox may have new mail. Required. It runs on the watch's
	// own goroutine: return quickly (hand the work to a queue, e.g. the
	// fleet's Trigger); while it runs, that watch's events wait.
	OnChange func(connection string)

	// MaxConnections bounds the mailboxes watched (one connection each);
	// default DefaultMaxWatchConnections. Watch fails with ErrWatchLimit
	// beyond it.
	MaxConnections int
	// MaxConnecting bounds the connection attempts (TCP, TLS handshake,
	// login, EXAMINE) in progress at once; the others wait their turn
	// before dialing, so DialTimeout does not run while they wait. Default
	// DefaultMaxConnecting. Without it, watching a thousand mailboxes
	// started a thousand TLS handshakes at once: on two cores half of them
	// missed DialTimeout and went into backoff, and all idled after 95 s
	// instead of 50 s (scripts/bench-push.sh).
	MaxConnecting int
	// RenewEvery is how often IDLE is ended and started again; default
	// DefaultRenewEvery. At most 29 minutes (RFC 2177).
	RenewEvery time.Duration
	// PollInterval is the NOOP interval for servers without IDLE; default
	// DefaultPollInterval.
	PollInterval time.Duration
	// Coalesce is the shortest time between two OnChange calls for one
	// connection; default DefaultCoalesce.
	Coalesce time.Duration
	// Backoff is the wait before the first reconnection after a failure
	// (default DefaultWatchBackoff); it doubles with each consecutive
	// failure up to MaxBackoff (default DefaultWatchMaxBackoff). Each wait
	// is randomized by ±20%. A connection that stayed up for a minute
	// resets the count.
	Backoff, MaxBackoff time.Duration
	// Logger receives debug and warning logs; never credentials. Default:
	// discard. Options.Logger, when set, is used for the connection itself.
	Logger *slog.Logger
}

// Defaults of WatchOptions.
const (
	DefaultMaxWatchConnections = 100
	DefaultMaxConnecting       = 16
	DefaultRenewEvery          = 25 * time.Minute
	DefaultPollInterval        = time.Minute
	DefaultCoalesce            = time.Second
	DefaultWatchBackoff        = time.Second
	DefaultWatchMaxBackoff     = 5 * time.Minute
)

// maxRenewEvery is RFC 2177's bound: clients re-issue IDLE at least every
// 29 minutes to avoid the server's 30-minute inactivity logout.
const maxRenewEvery = 29 * time.Minute

// stableAfter is how long a connection must last for its drop to count as
// a first failure again.
const stableAfter = time.Minute

// ErrWatchLimit is returned by Watch when the Watcher already watches
// WatchOptions.MaxConnections mailboxes.
var ErrWatchLimit = errors.New("imap: watch limit reached")

// ErrWatcherClosed is returned by Watch after Close.
var ErrWatcherClosed = errors.New("imap: watcher is closed")

// NewWatcher returns a Watcher; it fails with a *mailsync.ConfigError when
// an option is wrong.
func NewWatcher(opts WatchOptions) (*Watcher, error) {
	var problems []mailsync.Problem
	add := func(field string, code mailsync.ProblemCode, msg string) {
		problems = append(problems, mailsync.Problem{Field: field, Code: code, Message: msg})
	}
	if opts.OnChange == nil {
		add("on_change", mailsync.CodeRequired, "is required")
	}
	if opts.MaxConnections < 0 || opts.MaxConnecting < 0 || opts.RenewEvery < 0 || opts.PollInterval < 0 || opts.Coalesce < 0 || opts.Backoff < 0 || opts.MaxBackoff < 0 {
		add("watch_options", mailsync.CodeNegative, "durations and counts must not be negative")
	}
	if opts.RenewEvery > maxRenewEvery {
		problems = append(problems, mailsync.Problem{Field: "renew_every", Code: mailsync.CodeOutOfRange, Limit: int(maxRenewEvery / time.Second),
			Message: fmt.Sprintf("must be at most %s (RFC 2177)", maxRenewEvery)})
	}
	if len(problems) > 0 {
		return nil, mailsync.NewConfigError(problems...)
	}
	if opts.MaxConnections == 0 {
		opts.MaxConnections = DefaultMaxWatchConnections
	}
	if opts.MaxConnecting == 0 {
		opts.MaxConnecting = DefaultMaxConnecting
	}
	if opts.RenewEvery == 0 {
		opts.RenewEvery = DefaultRenewEvery
	}
	if opts.PollInterval == 0 {
		opts.PollInterval = DefaultPollInterval
	}
	if opts.Coalesce == 0 {
		opts.Coalesce = DefaultCoalesce
	}
	if opts.Backoff == 0 {
		opts.Backoff = DefaultWatchBackoff
	}
	if opts.MaxBackoff == 0 {
		opts.MaxBackoff = DefaultWatchMaxBackoff
	}
	opts.MaxBackoff = max(opts.MaxBackoff, opts.Backoff)
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Watcher{opts: opts, log: log, watches: make(map[string]*watch), connecting: make(chan struct{}, opts.MaxConnecting)}, nil
}

// Watch starts watching conn's folder (Options.Folder, default INBOX),
// replacing a watch of the same connection name (after that one has
// stopped). It returns once the configuration is validated, without
// waiting for the new connection: progress
// and errors show in Status. The watch lasts until ctx ends (pass a
// long-lived context, not a request's), Unwatch or Close. It fails with a
// *mailsync.ConfigError for a wrong configuration, ErrWatchLimit when
// MaxConnections mailboxes are watched already, ErrWatcherClosed after
// Close.
func (w *Watcher) Watch(ctx context.Context, conn mailsync.Connection, opts Options) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("imap: watch %s: %w", conn.Name, err)
	}
	if conn.Name == "" {
		return mailsync.NewConfigError(mailsync.Problem{Field: "name", Code: mailsync.CodeRequired, Message: "is required to watch a connection"})
	}
	cfg, err := newConfig(conn, opts)
	if err != nil {
		return err
	}
	if opts.Logger == nil {
		cfg.log = w.log.With(slog.String("connection", conn.Name), slog.String("provider", "imap"))
	}
	wt := &watch{
		w:      w,
		name:   conn.Name,
		cfg:    cfg,
		events: make(chan struct{}, 1),
		done:   make(chan struct{}),
		status: WatchStatus{Connection: conn.Name, State: WatchConnecting},
	}
	dialFn := cfg.opts.DialContext
	if dialFn == nil {
		d := &net.Dialer{}
		dialFn = d.DialContext
	}
	cfg.opts.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := dialFn(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return &watchConn{Conn: c, w: wt}, nil
	}

	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return ErrWatcherClosed
	}
	old := w.watches[conn.Name]
	if old == nil && w.active() >= w.opts.MaxConnections {
		w.mu.Unlock()
		return fmt.Errorf("%w: %d mailboxes are watched (WatchOptions.MaxConnections)", ErrWatchLimit, w.opts.MaxConnections)
	}
	wctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	wt.cancel = cancel
	w.watches[conn.Name] = wt
	w.mu.Unlock()

	if old != nil {
		old.stop()
	}
	// The watch ends with ctx; WithoutCancel plus this keeps ctx's values
	// while letting stop cancel it alone.
	stopOnCtx := context.AfterFunc(ctx, cancel)
	go func() {
		defer stopOnCtx()
		defer w.forget(wt)
		wt.run(wctx)
	}()
	return nil
}

// forget removes wt from the table once it has ended, unless replaced or
// failed (a failed watch stays, for Status, until Unwatch or Watch).
func (w *Watcher) forget(wt *watch) {
	w.mu.Lock()
	if w.watches[wt.name] == wt && wt.snapshot().State != WatchFailed {
		delete(w.watches, wt.name)
	}
	w.mu.Unlock()
}

// active counts the watches that hold or seek a connection (not failed).
// w.mu must be held.
func (w *Watcher) active() int {
	n := 0
	for _, wt := range w.watches {
		if wt.snapshot().State != WatchFailed {
			n++
		}
	}
	return n
}

// Unwatch stops watching the named connection and waits until its
// connection is closed. It reports whether the connection was watched.
func (w *Watcher) Unwatch(name string) bool {
	w.mu.Lock()
	wt := w.watches[name]
	w.mu.Unlock()
	if wt == nil {
		return false
	}
	wt.stop()
	w.mu.Lock()
	if w.watches[name] == wt {
		delete(w.watches, name) // a failed watch stays until now
	}
	w.mu.Unlock()
	return true
}

// Close stops every watch, waits until their connections are closed, and
// makes later Watch calls fail with ErrWatcherClosed.
func (w *Watcher) Close() error {
	w.mu.Lock()
	w.closed = true
	all := make([]*watch, 0, len(w.watches))
	for _, wt := range w.watches {
		all = append(all, wt)
	}
	w.mu.Unlock()
	for _, wt := range all {
		wt.cancel()
	}
	for _, wt := range all {
		<-wt.done
	}
	return nil
}

// Status returns the health of the named watch; ok is false when it is
// not watched (never, or no longer: Unwatch, Close or its context ended).
// A watch that failed for good stays, in State WatchFailed with its
// LastError, until Unwatch or a new Watch; it holds no connection and does
// not count towards MaxConnections.
func (w *Watcher) Status(name string) (st WatchStatus, ok bool) {
	w.mu.Lock()
	wt := w.watches[name]
	w.mu.Unlock()
	if wt == nil {
		return WatchStatus{}, false
	}
	return wt.snapshot(), true
}

// Statuses returns the health of every watch, ordered by connection name.
func (w *Watcher) Statuses() []WatchStatus {
	w.mu.Lock()
	all := make([]*watch, 0, len(w.watches))
	for _, wt := range w.watches {
		all = append(all, wt)
	}
	w.mu.Unlock()
	out := make([]WatchStatus, len(all))
	for i, wt := range all {
		out[i] = wt.snapshot()
	}
	slices.SortFunc(out, func(a, b WatchStatus) int { return strings.Compare(a.Connection, b.Connection) })
	return out
}

// WatchState is what a watch is doing.
type WatchState string

// The watch states.
const (
	WatchConnecting WatchState = "connecting" // dialling, logging in, examining the folder
	WatchIdling     WatchState = "idling"     // IDLE is running
	WatchPolling    WatchState = "polling"    // connected to a server without IDLE; NOOP every PollInterval
	WatchBackoff    WatchState = "backoff"    // waiting to reconnect after a failure
	WatchFailed     WatchState = "failed"     // stopped by an error retrying cannot fix (LastError)
	WatchStopped    WatchState = "stopped"    // ended by Unwatch, Close or its context
)

// WatchStatus is the health of one watch.
type WatchStatus struct {
	Connection string     // the connection's name
	State      WatchState // what it is doing now
	// Since is when the current connection was established (zero while
	// not connected).
	Since time.Time
	// LastEvent is when the server last reported new mail (EXISTS);
	// Events counts those reports.
	LastEvent time.Time
	Events    int64
	// LastChange is when OnChange was last called; Changes counts the calls.
	LastChange time.Time
	Changes    int64
	// Connects counts successful connections (the first included);
	// Failures counts failed connection attempts and dropped connections.
	Connects, Failures int64
	// LastError is the latest failure, without credentials; LastErrorAt is
	// when it happened. A later successful connection does not clear it.
	LastError   error
	LastErrorAt time.Time
	// RetryAt is when the next reconnection is due (State WatchBackoff).
	RetryAt time.Time
}

// Connected reports whether the watch holds a logged-in connection.
func (s WatchStatus) Connected() bool { return s.State == WatchIdling || s.State == WatchPolling }

// watch is one watched mailbox.
type watch struct {
	w      *Watcher
	name   string
	cfg    *config
	cancel context.CancelFunc
	events chan struct{} // EXISTS seen; capacity 1, filled by go-imap's reader
	done   chan struct{} // closed when run has returned

	mu     sync.Mutex
	status WatchStatus

	lastNotify time.Time // run goroutine only
	pending    bool      // an event waits for the coalescing window to end
}

// stop ends the watch and waits for it.
func (wt *watch) stop() {
	wt.cancel()
	<-wt.done
}

func (wt *watch) snapshot() WatchStatus {
	wt.mu.Lock()
	defer wt.mu.Unlock()
	return wt.status
}

func (wt *watch) update(f func(st *WatchStatus)) {
	wt.mu.Lock()
	f(&wt.status)
	wt.mu.Unlock()
}

// watchConn marks a Watcher's TCP connection so that session.open routes
// the server's unilateral EXISTS to the watch (see unilateralHook).
type watchConn struct {
	net.Conn
	w *watch
}

// unilateralHook is implemented by connections that want go-imap's
// unilateral data; session.open calls it before creating the client.
type unilateralHook interface {
	hookUnilateral(h *imapclient.UnilateralDataHandler)
}

func (c *watchConn) hookUnilateral(h *imapclient.UnilateralDataHandler) {
	h.Mailbox = c.w.onMailbox
}

// onMailbox runs on go-imap's reader goroutine: it must not block.
func (wt *watch) onMailbox(data *imapclient.UnilateralDataMailbox) {
	if data == nil || data.NumMessages == nil {
		return // FLAGS / PERMANENTFLAGS changes bring no mail
	}
	now := time.Now()
	wt.update(func(st *WatchStatus) { st.LastEvent = now; st.Events++ })
	select {
	case wt.events <- struct{}{}:
	default: // one is pending already
	}
}

// run connects, watches and reconnects until ctx ends or an error that
// retrying cannot fix.
func (wt *watch) run(ctx context.Context) {
	defer close(wt.done)
	log := wt.cfg.log
	failures := 0
	for ctx.Err() == nil {
		wt.update(func(st *WatchStatus) { st.State = WatchConnecting; st.RetryAt = time.Time{} })
		s, idle, err := wt.connect(ctx)
		if err == nil {
			started := time.Now()
			wt.update(func(st *WatchStatus) {
				st.Connects++
				st.Since = started
				st.State = WatchPolling
				if idle {
					st.State = WatchIdling
				}
			})
			log.Debug("imap watch connected", slog.Bool("idle", idle))
			// Mail may have come while nothing watched.
			wt.notify(time.Now())
			err = wt.serve(ctx, s, idle)
			wt.update(func(st *WatchStatus) { st.Since = time.Time{} })
			s.close() // LOGOUT (bounded) unless broken
			if ctx.Err() != nil {
				break
			}
			if time.Since(started) >= stableAfter {
				failures = 0
			}
		}
		if ctx.Err() != nil {
			break
		}
		if err == nil {
			err = fmt.Errorf("imap: watch of %s ended: %w", wt.cfg.addr, mailsync.ErrConnection)
		}
		err = wt.cfg.redactErr(err)
		failures++
		now := time.Now()
		if permanent(err) {
			wt.update(func(st *WatchStatus) {
				st.State, st.Failures, st.LastError, st.LastErrorAt = WatchFailed, st.Failures+1, err, now
			})
			log.Warn("imap watch stopped: retrying cannot fix this", slog.Any("error", err))
			return
		}
		delay := wt.backoff(failures)
		var te *mailsync.ThrottledError
		if errors.As(err, &te) {
			delay = max(delay, te.RetryAfter)
		}
		wt.update(func(st *WatchStatus) {
			st.State, st.Failures, st.LastError, st.LastErrorAt, st.RetryAt = WatchBackoff, st.Failures+1, err, now, now.Add(delay)
		})
		log.Warn("imap watch lost its connection; reconnecting", slog.Any("error", err), slog.Duration("backoff", delay))
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
		case <-t.C:
		}
	}
	wt.update(func(st *WatchStatus) { st.State, st.RetryAt = WatchStopped, time.Time{} })
}

// permanent reports whether retrying cannot fix err.
func permanent(err error) bool {
	for _, e := range []error{mailsync.ErrAuth, mailsync.ErrConsentRequired, mailsync.ErrInvalidConfig,
		mailsync.ErrPlaintextRefused, mailsync.ErrTLS, mailsync.ErrFolderNotFound} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// backoff returns the randomized wait before reconnection attempt n (1-based).
func (wt *watch) backoff(n int) time.Duration {
	o := wt.w.opts
	d := o.Backoff
	for i := 1; i < n && d < o.MaxBackoff; i++ {
		d *= 2
	}
	d = min(d, o.MaxBackoff)
	return time.Duration(float64(d) * (0.8 + 0.4*rand.Float64()))
}

// connect dials, logs in and examines the folder; idle reports whether the
// server offers IDLE.
func (wt *watch) connect(ctx context.Context) (s *session, idle bool, err error) {
	select {
	case wt.w.connecting <- struct{}{}:
		defer func() { <-wt.w.connecting }()
	case <-ctx.Done():
		return nil, false, fmt.Errorf("imap: watch of %s: %w", wt.cfg.addr, ctx.Err())
	}
	s, err = dial(ctx, wt.cfg)
	if err != nil {
		return nil, false, err
	}
	stop := s.watch(ctx, wt.cfg.opts.CommandTimeout)
	// IDLE watches one mailbox per connection: the primary folder (the
	// first of Options.Folders). Mail arriving only in another folder is
	// found by the backstop sync.
	_, err = s.selectFolder(ctx, wt.cfg.opts.Folders[0], true)
	stop()
	if err != nil {
		s.shutdown()
		return nil, false, err
	}
	idle = s.caps.Has(imap.CapIdle) || s.caps.Has(imap.CapIMAP4rev2)
	return s, idle, nil
}

// serve idles (or polls) on s until the connection breaks or ctx ends. It
// returns the error that broke the connection, nil when ctx ended.
func (wt *watch) serve(ctx context.Context, s *session, useIdle bool) error {
	o := wt.w.opts
	var idle *imapclient.IdleCommand
	startIdle := func() error {
		stop := s.watch(ctx, wt.cfg.opts.CommandTimeout)
		cmd, err := s.client.Idle()
		stop()
		if err != nil {
			return s.check(ctx, "idle", err)
		}
		idle = cmd
		return nil
	}
	// stopIdle ends IDLE and waits for the server's OK, bounded by
	// CommandTimeout (on a context of its own when ctx has ended).
	stopIdle := func(ctx context.Context) error {
		if idle == nil {
			return nil
		}
		cmd := idle
		idle = nil
		stop := s.watch(ctx, wt.cfg.opts.CommandTimeout)
		defer stop()
		if err := cmd.Close(); err != nil {
			return s.check(ctx, "idle done", err)
		}
		return s.check(ctx, "idle done", cmd.Wait())
	}
	interval := o.PollInterval
	if useIdle {
		interval = o.RenewEvery
		if err := startIdle(); err != nil {
			var ie *imap.Error
			if !errors.As(err, &ie) || !s.usable() {
				return err
			}
			// IDLE refused although advertised: poll instead.
			wt.cfg.log.Warn("imap watch: the server refused IDLE; polling with NOOP", slog.Any("error", err))
			useIdle, interval = false, o.PollInterval
			wt.update(func(st *WatchStatus) { st.State = WatchPolling })
		}
	}
	tick := time.NewTimer(interval)
	defer tick.Stop()
	flush := time.NewTimer(time.Hour)
	flush.Stop()
	defer flush.Stop()
	for {
		select {
		case <-ctx.Done():
			sctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
			_ = stopIdle(sctx)
			cancel()
			return nil
		case <-s.client.Closed():
			if reason := s.killReason(); reason != nil {
				return fmt.Errorf("imap: watch of %s: %w: %w", wt.cfg.addr, reason, mailsync.ErrConnection)
			}
			return fmt.Errorf("imap: watch of %s: the server closed the connection: %w", wt.cfg.addr, mailsync.ErrConnection)
		case <-wt.events:
			if d := wt.event(time.Now()); d > 0 {
				flush.Reset(d)
			}
		case now := <-flush.C:
			if wt.pending {
				wt.notify(now)
			}
		case <-tick.C:
			if useIdle {
				if err := stopIdle(ctx); err != nil {
					return err
				}
				if err := startIdle(); err != nil {
					return err
				}
			} else {
				stop := s.watch(ctx, wt.cfg.opts.CommandTimeout)
				err := s.client.Noop().Wait()
				stop()
				if err := s.check(ctx, "noop", err); err != nil {
					if ctx.Err() != nil {
						return nil
					}
					return err
				}
			}
			tick.Reset(interval)
		}
	}
}

// event handles new mail at now: it notifies at once unless the last
// notification is less than Coalesce ago; then it returns how long until
// the window ends (the caller notifies then).
func (wt *watch) event(now time.Time) time.Duration {
	if wait := wt.w.opts.Coalesce - now.Sub(wt.lastNotify); wait > 0 {
		if wt.pending {
			return 0 // the flush is armed already
		}
		wt.pending = true
		return wait
	}
	wt.notify(now)
	return 0
}

// notify calls OnChange.
func (wt *watch) notify(now time.Time) {
	wt.pending = false
	wt.lastNotify = now
	wt.update(func(st *WatchStatus) { st.Changes++; st.LastChange = now })
	wt.w.opts.OnChange(wt.name)
}
