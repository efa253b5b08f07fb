package fleet

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/mailsync/mailsync"
	"github.com/mailsync/mailsync/imap"
	"github.com/mailsync/mailsync/internal/redact"
)

// DefaultPushLeaseTTL is the default PushConfig.LeaseTTL.
const DefaultPushLeaseTTL = 30 * time.Second

// PushLeaseName is the name of the lease that keeps a connection's push
// watch in one process: "~push:" and the connection id (the sync's lease
// is the connection id itself; connection ids starting with "~push:" are
// reserved).
func PushLeaseName(connectionID string) string { return "~push:" + connectionID }

// PushSource is one kind of push as the Fleet drives it: IMAPIdle for
// imap.Watcher, and a few lines of the host's for graph.Subscriber and
// gmail.Push (see the package examples). Its notifications go to
// Fleet.OnChange (or Notify). Its methods are safe for concurrent use.
type PushSource interface {
	// Kind is the push kind the source serves.
	Kind() PushKind
	// Start starts watching the connection (with credentials from the
	// host's store), in the background: it returns once the watch is set
	// up or has failed to be, and Status shows its progress. The watch
	// lasts until Stop or ctx ends.
	Start(ctx context.Context, connectionID string) error
	// Stop stops watching the connection (a no-op when not watched).
	Stop(ctx context.Context, connectionID string) error
	// Status reports the watch's state.
	Status(connectionID string) PushStatus
}

// PushStatus is a PushSource's view of one watch.
type PushStatus struct {
	// Active: the push works (IDLE up, subscriptions or watch in place).
	Active bool
	// Expires is when a subscription or watch ends unless renewed (zero:
	// none, as for IDLE).
	Expires time.Time
	// Err is the latest error; ErrAt is when. The source scrubs it of the
	// connection's credentials (imap.Watcher, graph.Subscriber and
	// gmail.Push do already); it is kept, cut to MaxErrorLen bytes, in
	// Health.Push.LastError.
	Err   error
	ErrAt time.Time
}

// PushConnection is one connection with push.
type PushConnection struct {
	// ID is the connection id (the Resolver's, the connector's Name).
	ID string
	// Kind is its push kind; PushNone leaves it polled only.
	Kind PushKind
}

// PushConfig makes a process take part in holding push watches
// (Config.Push).
type PushConfig struct {
	// Connections lists the connections with push and their kind (never a
	// typed-password one). It is called every Every and must list the
	// same in every process. Required.
	Connections func(ctx context.Context) ([]PushConnection, error)
	// Sources serve the push kinds; Fleet.AddPushSource adds more (a
	// source usually needs the Fleet's OnChange, so it is made after New).
	Sources []PushSource
	// LeaseTTL is the push lease's TTL (default DefaultPushLeaseTTL): a
	// dead holder's watches move to another process after about that
	// long. Use the same in every process: a push record not refreshed
	// for two LeaseTTLs counts as down.
	LeaseTTL time.Duration
	// Every is how often the process renews its leases, refreshes the
	// push health and looks for watches without a holder (default
	// LeaseTTL/3).
	Every time.Duration
}

// AddPushSource adds a push source; call it before Start. It fails
// without Config.Push.
func (f *Fleet) AddPushSource(s PushSource) error {
	if f.push == nil {
		return errors.New("mailsync/fleet: AddPushSource needs Config.Push")
	}
	f.push.mu.Lock()
	defer f.push.mu.Unlock()
	f.push.sources[s.Kind()] = s
	return nil
}

// OnChange is the push sources' callback (imap.WatchOptions.OnChange,
// gmail.PushOptions.OnChange; for graph.SubscriberOptions.OnChange, ignore
// full): it calls Notify in the background and returns at once, coalescing
// the notifications of a connection that come while its Notify runs into
// one more. Errors are logged.
func (f *Fleet) OnChange(connection string) {
	f.notifyMu.Lock()
	if f.notifying == nil {
		f.notifying = map[string]bool{}
	}
	if again, busy := f.notifying[connection]; busy {
		if !again {
			f.notifying[connection] = true
		}
		f.notifyMu.Unlock()
		return
	}
	f.notifying[connection] = false
	f.notifyMu.Unlock()
	go func() {
		for {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			if _, err := f.Notify(ctx, connection); err != nil {
				f.log.Warn("mailsync/fleet: push notification", "connection", connection, "err", err)
			}
			cancel()
			f.notifyMu.Lock()
			if !f.notifying[connection] {
				delete(f.notifying, connection)
				f.notifyMu.Unlock()
				return
			}
			f.notifying[connection] = false
			f.notifyMu.Unlock()
		}
	}()
}

func (f *Fleet) pushLeaseTTL() time.Duration {
	if f.cfg.Push != nil && f.cfg.Push.LeaseTTL > 0 {
		return f.cfg.Push.LeaseTTL
	}
	return DefaultPushLeaseTTL
}

// pushRunner holds this process's push watches.
type pushRunner struct {
	f     *Fleet
	cfg   PushConfig
	store PushHealthStore // nil: push state not recorded

	mu      sync.Mutex
	sources map[PushKind]PushSource

	// run goroutine only
	held  map[string]*heldPush
	retry map[string]retryAt

	cancel context.CancelFunc
	done   chan struct{}
}

type heldPush struct {
	kind   PushKind
	lease  mailsync.Lease // zero without a Leaser
	active bool
}

type retryAt struct {
	at       time.Time
	failures int
}

func newPushRunner(f *Fleet, cfg PushConfig) (*pushRunner, error) {
	if cfg.Connections == nil {
		return nil, errors.New("mailsync/fleet: PushConfig.Connections is required")
	}
	if cfg.LeaseTTL <= 0 {
		cfg.LeaseTTL = DefaultPushLeaseTTL
	}
	if cfg.Every <= 0 {
		cfg.Every = cfg.LeaseTTL / 3
	}
	r := &pushRunner{f: f, cfg: cfg, sources: map[PushKind]PushSource{},
		held: map[string]*heldPush{}, retry: map[string]retryAt{}}
	r.store, _ = f.health.(PushHealthStore)
	for _, s := range cfg.Sources {
		r.sources[s.Kind()] = s
	}
	return r, nil
}

func (r *pushRunner) start(ctx context.Context) {
	if r.done != nil {
		return
	}
	ctx, r.cancel = context.WithCancel(context.WithoutCancel(ctx))
	r.done = make(chan struct{})
	go func() {
		defer close(r.done)
		t := time.NewTicker(r.cfg.Every)
		defer t.Stop()
		for {
			r.tick(ctx)
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
}

// stop stops every watch this process holds and gives their leases up, so
// that another process takes them over at its next look.
func (r *pushRunner) stop(ctx context.Context) {
	if r.done == nil {
		return
	}
	r.cancel()
	<-r.done
	r.done = nil
	for id := range r.held {
		r.release(ctx, id, false)
	}
}

func (r *pushRunner) source(kind PushKind) PushSource {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.sources[kind]
}

// tick renews the held watches and takes up those without a holder.
func (r *pushRunner) tick(ctx context.Context) {
	f := r.f
	conns, err := r.cfg.Connections(ctx)
	if err != nil {
		if ctx.Err() == nil {
			f.log.Warn("mailsync/fleet: push: listing the connections", "err", err)
		}
		conns = nil
		for id, h := range r.held { // keep what is held
			conns = append(conns, PushConnection{ID: id, Kind: h.kind})
		}
	}
	want := make(map[string]PushKind, len(conns))
	for _, c := range conns {
		if c.ID != "" && c.Kind != PushNone {
			want[c.ID] = c.Kind
		}
	}
	// Held watches: gone from the list, lost lease, or refresh.
	for id, h := range r.held {
		if ctx.Err() != nil {
			return
		}
		if want[id] != h.kind {
			r.release(ctx, id, want[id] == PushNone)
			continue
		}
		if leaser, ok := f.cfg.State.(mailsync.Leaser); ok {
			l, err := leaser.RenewLease(ctx, h.lease, r.cfg.LeaseTTL)
			if err != nil {
				if ctx.Err() != nil {
					return
				}
				if errors.Is(err, mailsync.ErrLeaseLost) || time.Now().After(h.lease.Expires) {
					f.log.Warn("mailsync/fleet: push: lease lost; stopping the watch", "connection", id, "err", err)
					if s := r.source(h.kind); s != nil {
						_ = s.Stop(ctx, id)
					}
					delete(r.held, id)
					continue
				}
				f.log.Warn("mailsync/fleet: push: renewing the lease", "connection", id, "err", err)
			} else {
				h.lease = l
			}
		}
		r.refresh(ctx, id, h)
	}
	// Watches nobody holds.
	var orphans []string
	now := time.Now()
	var health map[string]PushHealth
	if len(want) > len(r.held) {
		health = r.pushHealth(ctx)
	}
	for id := range want {
		if _, ok := r.held[id]; ok {
			continue
		}
		if ra, ok := r.retry[id]; ok && now.Before(ra.at) {
			continue
		}
		if p, ok := health[id]; ok && p.Holder != "" && p.Holder != f.holder && now.Sub(p.Updated) <= r.cfg.LeaseTTL {
			continue // another process holds and refreshes it
		}
		orphans = append(orphans, id)
	}
	for _, id := range orphans {
		if ctx.Err() != nil {
			return
		}
		r.take(ctx, id, want[id])
	}
}

// pushHealth returns the push records of the store, by connection (nil
// without a store or on error: then every watch not held here is tried).
func (r *pushRunner) pushHealth(ctx context.Context) map[string]PushHealth {
	if r.store == nil {
		return nil
	}
	all, err := r.f.health.List(ctx)
	if err != nil {
		if ctx.Err() == nil {
			r.f.log.Warn("mailsync/fleet: push: reading the health", "err", err)
		}
		return nil
	}
	m := make(map[string]PushHealth, len(all))
	for _, h := range all {
		m[h.Connection] = h.Push
	}
	return m
}

// take acquires the push lease of id and starts its watch.
func (r *pushRunner) take(ctx context.Context, id string, kind PushKind) {
	f := r.f
	src := r.source(kind)
	if src == nil {
		r.failed(ctx, id, kind, fmt.Errorf("mailsync/fleet: no push source for %q in this process", kind), false)
		return
	}
	h := &heldPush{kind: kind}
	leaser, hasLeaser := f.cfg.State.(mailsync.Leaser)
	if hasLeaser {
		l, err := leaser.AcquireLease(ctx, PushLeaseName(id), f.holder+"/push", r.cfg.LeaseTTL)
		if err != nil {
			if !errors.Is(err, mailsync.ErrBusy) && ctx.Err() == nil {
				f.log.Warn("mailsync/fleet: push: taking the lease", "connection", id, "err", err)
			}
			return
		}
		h.lease = l
	}
	if err := src.Start(ctx, id); err != nil {
		if hasLeaser {
			_ = leaser.ReleaseLease(context.WithoutCancel(ctx), h.lease)
		}
		r.failed(ctx, id, kind, err, true)
		return
	}
	delete(r.retry, id)
	r.held[id] = h
	f.log.Info("mailsync/fleet: push: watching", "connection", id, "kind", kind)
	r.refresh(ctx, id, h)
	// Mail may have come while nobody watched (before the first holder, or
	// between a dead holder's last refresh and now), and the job may sleep
	// for the backstop interval: one sync picks it up. (An IDLE watch
	// notifies on connecting too; the two coalesce.)
	if _, err := f.Trigger(ctx, id); err != nil && ctx.Err() == nil {
		f.log.Warn("mailsync/fleet: push: triggering", "connection", id, "err", err)
	}
}

// failed records a watch that could not start and when to try again. On
// the first failure of a series it also triggers a sync: the watch may have
// been active under a holder that died, whose last sync snoozed the job for
// the backstop interval; the sync now sees the push down and polls every
// Interval until a watch starts.
func (r *pushRunner) failed(ctx context.Context, id string, kind PushKind, err error, record bool) {
	ra := r.retry[id]
	ra.failures++
	wait := Backoff(r.cfg.Every, 5*time.Minute, ra.failures)
	ra.at = time.Now().Add(wait)
	r.retry[id] = ra
	msg := truncateUTF8(err.Error(), MaxErrorLen) // sources scrub their errors (PushStatus.Err)
	r.f.log.Warn("mailsync/fleet: push: the watch did not start", "connection", id, "kind", kind, "err", msg, "retry_in", wait)
	if !record || r.store == nil {
		return
	}
	now := time.Now()
	if uerr := r.store.UpdatePush(context.WithoutCancel(ctx), id, func(p *PushHealth) {
		p.Kind, p.Active, p.Holder = kind, false, ""
		p.LastError, p.LastErrorAt = msg, now
	}); uerr != nil {
		r.f.log.Warn("mailsync/fleet: push: recording the health", "connection", id, "err", uerr)
	}
	if ra.failures == 1 {
		if _, terr := r.f.Trigger(ctx, id); terr != nil && ctx.Err() == nil {
			r.f.log.Warn("mailsync/fleet: push: triggering", "connection", id, "err", terr)
		}
	}
}

// refresh records the watch's state in the push health; when the push has
// just gone down, it triggers a sync (the job may be snoozed for the long
// backstop interval; this sync and the next snooze see the push down).
func (r *pushRunner) refresh(ctx context.Context, id string, h *heldPush) {
	f := r.f
	src := r.source(h.kind)
	if src == nil {
		return
	}
	st := src.Status(id)
	wasActive := h.active
	h.active = st.Active
	if r.store != nil {
		now := time.Now()
		err := r.store.UpdatePush(ctx, id, func(p *PushHealth) {
			if st.Active && (!p.Active || p.Holder != f.holder) {
				p.Since = now
			}
			p.Kind, p.Active, p.Holder, p.Expires, p.Updated = h.kind, st.Active, f.holder, st.Expires, now
			if st.Err != nil {
				p.LastError = truncateUTF8(st.Err.Error(), MaxErrorLen)
				p.LastErrorAt = st.ErrAt
				if p.LastErrorAt.IsZero() {
					p.LastErrorAt = now
				}
			}
		})
		if err != nil && ctx.Err() == nil {
			f.log.Warn("mailsync/fleet: push: recording the health", "connection", id, "err", err)
		}
	}
	if wasActive && !st.Active {
		f.log.Info("mailsync/fleet: push: down; syncing now and polling until it is back", "connection", id)
		if _, err := f.Trigger(ctx, id); err != nil && ctx.Err() == nil {
			f.log.Warn("mailsync/fleet: push: triggering", "connection", id, "err", err)
		}
	}
}

// release stops a held watch, gives its lease up and marks the push
// inactive (forget: the connection has no push any more).
func (r *pushRunner) release(ctx context.Context, id string, forget bool) {
	ctx = context.WithoutCancel(ctx)
	f := r.f
	h := r.held[id]
	if h == nil {
		return
	}
	delete(r.held, id)
	if s := r.source(h.kind); s != nil {
		if err := s.Stop(ctx, id); err != nil {
			f.log.Warn("mailsync/fleet: push: stopping the watch", "connection", id, "err", err)
		}
	}
	if leaser, ok := f.cfg.State.(mailsync.Leaser); ok {
		_ = leaser.ReleaseLease(ctx, h.lease)
	}
	if r.store != nil {
		// A connection the host deleted keeps no row.
		err := f.updateExistingPush(ctx, id, func(p *PushHealth) {
			if p.Holder != f.holder {
				return // taken over already
			}
			p.Active, p.Holder, p.Updated = false, "", time.Now()
			if forget {
				p.Kind, p.Expires = PushNone, time.Time{}
			}
		})
		if err != nil {
			f.log.Warn("mailsync/fleet: push: recording the health", "connection", id, "err", err)
		}
	}
	if forget && h.active {
		// No push any more: the job may be snoozed for the long backstop
		// interval; a sync now snoozes it for Interval, as when a push
		// goes down.
		if _, err := f.Trigger(ctx, id); err != nil {
			f.log.Warn("mailsync/fleet: push: triggering", "connection", id, "err", err)
		}
	}
}

// IMAPIdle is the PushSource of IMAP IDLE on an imap.Watcher, whose
// WatchOptions.OnChange must be the Fleet's OnChange. Resolve returns the
// connection and the options (its credentials: an OAuth TokenSource; never
// a typed password, which is kept nowhere — return an error wrapping
// ErrPasswordRequired for such a connection) each time a watch starts.
type IMAPIdle struct {
	// Watcher holds the IDLE connections.
	Watcher *imap.Watcher
	// Resolve returns what Watch needs for a connection id.
	Resolve func(ctx context.Context, connectionID string) (mailsync.Connection, imap.Options, error)

	mu     sync.Mutex
	scrubs map[string]*redact.Scrubber // by connection: its password, if any
}

// Kind implements PushSource.
func (s *IMAPIdle) Kind() PushKind { return PushIdle }

// Start implements PushSource.
func (s *IMAPIdle) Start(ctx context.Context, connectionID string) error {
	conn, opts, err := s.Resolve(ctx, connectionID)
	if err != nil {
		return err
	}
	if conn.Name != connectionID {
		return mailsync.NewConfigError(mailsync.Problem{Field: "name", Code: mailsync.CodeConflict,
			Message: fmt.Sprintf("the connection's Name %q is not the connection id %q", conn.Name, connectionID)})
	}
	sc := redact.New(opts.Password.Reveal())
	if err := s.Watcher.Watch(ctx, conn, opts); err != nil {
		return sc.Error(err)
	}
	s.mu.Lock()
	if s.scrubs == nil {
		s.scrubs = map[string]*redact.Scrubber{}
	}
	s.scrubs[connectionID] = sc
	s.mu.Unlock()
	return nil
}

// Stop implements PushSource.
func (s *IMAPIdle) Stop(_ context.Context, connectionID string) error {
	s.Watcher.Unwatch(connectionID)
	s.mu.Lock()
	delete(s.scrubs, connectionID)
	s.mu.Unlock()
	return nil
}

// Status implements PushSource.
func (s *IMAPIdle) Status(connectionID string) PushStatus {
	st, ok := s.Watcher.Status(connectionID)
	if !ok {
		return PushStatus{}
	}
	s.mu.Lock()
	sc := s.scrubs[connectionID]
	s.mu.Unlock()
	err := st.LastError
	if err != nil && sc != nil {
		err = sc.Error(err)
	}
	return PushStatus{Active: st.Connected(), Err: err, ErrAt: st.LastErrorAt}
}
