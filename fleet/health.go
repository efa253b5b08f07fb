package fleet

import (
	"context"
	"sort"
	"sync"
	"time"

	"github.com/mailsync/mailsync"
)

// Health is what the Fleet knows of one connection's syncs. It holds no
// secret: LastError is scrubbed of the connection's credentials.
type Health struct {
	// Connection is the connection id.
	Connection string `json:"connection"`
	// FirstAttempt is when the Fleet first synced the connection.
	FirstAttempt time.Time `json:"first_attempt"`
	// LastAttempt is when the latest sync started.
	LastAttempt time.Time `json:"last_attempt"`
	// LastSuccess is when the latest sync that ended without error ended.
	LastSuccess time.Time `json:"last_success,omitzero"`
	// CaughtUpAt is when the latest sync that left nothing behind (no
	// error, no failed message) started: all mail that had arrived by then
	// is done.
	CaughtUpAt time.Time `json:"caught_up_at,omitzero"`
	// ConsecutiveFailures counts the failed syncs since the last success.
	ConsecutiveFailures int `json:"consecutive_failures"`
	// LastErrorKind is the kind of the latest failure ("" before any).
	LastErrorKind ErrorKind `json:"last_error_kind,omitempty"`
	// LastError is the latest failure's message, scrubbed of secrets and
	// cut to MaxErrorLen bytes.
	LastError string `json:"last_error,omitempty"`
	// LastErrorAt is when the latest failure ended.
	LastErrorAt time.Time `json:"last_error_at,omitzero"`
	// MessagesSynced counts the messages that became tickets or follow-ups.
	MessagesSynced int64 `json:"messages_synced"`
	// Quarantined counts the messages handed to the sink's quarantine.
	Quarantined int64 `json:"quarantined"`
	// OldestUnprocessed is, as of the end of the latest sync, an upper
	// bound of the age of the oldest mail that may still wait: zero when
	// that sync caught up, else the time since CaughtUpAt (or since
	// FirstAttempt when it never caught up). Lag returns it for any time.
	OldestUnprocessed time.Duration `json:"oldest_unprocessed"`
	// Degraded is set after Config.DegradeAfter consecutive failures, or at
	// once when the connection needs the admin; the next success clears it.
	// A typed password refused in SyncNow neither degrades nor marks
	// NeedsAdmin (see Fleet.SyncNow).
	Degraded bool `json:"degraded"`
	// NeedsAdmin is set when a sync failed for a reason only the admin can
	// fix (ErrAuth, ErrConsentRequired, a configuration error): the
	// connection is no longer scheduled until Schedule is called again.
	NeedsAdmin bool `json:"needs_admin"`
	// Updated is when this record last changed.
	Updated time.Time `json:"updated"`
	// Push is the state of the connection's push notifications (zero for
	// a connection that is only polled). The Fleet's push runner keeps it
	// (see PushConfig); Notify sets LastNotification.
	Push PushHealth `json:"push,omitzero"`
}

// PushKind is how a connection's new mail is pushed to the Fleet.
type PushKind string

// The push kinds.
const (
	PushNone  PushKind = ""      // polling only
	PushIdle  PushKind = "idle"  // IMAP IDLE (imap.Watcher)
	PushGraph PushKind = "graph" // Microsoft Graph change notifications (graph.Subscriber)
	PushGmail PushKind = "gmail" // Gmail push through Pub/Sub (gmail.Push)
)

// PushHealth is the state of one connection's push notifications. It holds
// no secret: LastError is scrubbed like Health.LastError.
type PushHealth struct {
	// Kind is the connection's push kind (PushNone: polled only).
	Kind PushKind `json:"kind,omitempty"`
	// Active is set while the push works: the IDLE connection is up (or
	// polling with NOOP), the Graph subscriptions or the Gmail watch are in
	// place. The Fleet then polls the connection at its backstop interval.
	Active bool `json:"active"`
	// Holder is the process that holds the push (its lease holder name).
	Holder string `json:"holder,omitempty"`
	// Since is when the push last became active.
	Since time.Time `json:"since,omitzero"`
	// Expires is when the Graph subscription or the Gmail watch ends unless
	// renewed (the earliest of them); zero for IMAP IDLE.
	Expires time.Time `json:"expires,omitzero"`
	// LastNotification is when the latest notification came (Notify).
	LastNotification time.Time `json:"last_notification,omitzero"`
	// LastError is the push's latest error, scrubbed of secrets and cut to
	// MaxErrorLen bytes; LastErrorAt is when it happened.
	LastError   string    `json:"last_error,omitempty"`
	LastErrorAt time.Time `json:"last_error_at,omitzero"`
	// Updated is when the holder last refreshed this record; a record not
	// refreshed for two push lease TTLs has lost its holder (Healthy).
	Updated time.Time `json:"updated,omitzero"`
}

// Healthy reports whether the push works at now: active and refreshed by
// its holder within stale.
func (p PushHealth) Healthy(now time.Time, stale time.Duration) bool {
	return p.Kind != PushNone && p.Active && now.Sub(p.Updated) <= stale
}

// PushHealthStore is an optional interface of a HealthStore that keeps the
// push state (Health.Push). MemoryHealth and SQLHealth implement it.
type PushHealthStore interface {
	// UpdatePush applies fn to the connection's PushHealth atomically and
	// stores it; Get and List return it in Health.Push.
	UpdatePush(ctx context.Context, connection string, fn func(*PushHealth)) error
}

// Lag returns, at now, an upper bound of the age of the oldest mail that
// may wait: the time since the connection was last caught up (or first
// tried), and zero for a connection never tried.
func (h Health) Lag(now time.Time) time.Duration {
	since := h.CaughtUpAt
	if since.IsZero() {
		since = h.FirstAttempt
	}
	if since.IsZero() || now.Before(since) {
		return 0
	}
	return now.Sub(since)
}

// MaxErrorLen bounds Health.LastError.
const MaxErrorLen = 512

// attempt is one finished sync, as the Fleet applies it to Health.
type attempt struct {
	start, end time.Time
	kind       ErrorKind
	msg        string           // scrubbed
	rep        *mailsync.Report // may be nil
	// typo: an auth failure of SyncNow with a typed password — a failure,
	// but neither NeedsAdmin nor a degradation (see Fleet.SyncNow).
	typo bool
}

// apply folds a into h.
func (a attempt) apply(h *Health, degradeAfter int) {
	if h.FirstAttempt.IsZero() {
		h.FirstAttempt = a.start
	}
	h.LastAttempt = a.start
	h.Updated = a.end
	if a.rep != nil {
		h.MessagesSynced += int64(a.rep.Created + a.rep.FollowUps)
		h.Quarantined += int64(a.rep.Quarantined)
	}
	if a.kind == KindNone {
		h.LastSuccess = a.end
		h.ConsecutiveFailures = 0
		h.Degraded, h.NeedsAdmin = false, false
		if a.rep == nil || a.rep.Failed == 0 {
			h.CaughtUpAt = a.start
		}
	} else {
		h.ConsecutiveFailures++
		h.LastErrorKind, h.LastError, h.LastErrorAt = a.kind, truncateUTF8(a.msg, MaxErrorLen), a.end
		if needsAdmin(a.kind) && !a.typo {
			h.NeedsAdmin, h.Degraded = true, true
		}
		if degradeAfter > 0 && h.ConsecutiveFailures >= degradeAfter && !a.typo {
			h.Degraded = true
		}
	}
	if a.kind == KindNone && !h.CaughtUpAt.Before(a.start) {
		h.OldestUnprocessed = 0
	} else {
		h.OldestUnprocessed = h.Lag(a.end)
	}
}

// HealthStore keeps the Health of every connection. Implementations are
// safe for concurrent use, across processes for a database-backed one.
type HealthStore interface {
	// Update applies fn to the connection's Health (the zero Health with
	// Connection set when there is none yet) atomically and stores the
	// result; it returns the Health before and after. fn must not call the
	// store, and must only change its argument: a store may call it more
	// than once (SQLHealth does when another process changed the row
	// between its read and its write).
	Update(ctx context.Context, connection string, fn func(*Health)) (before, after Health, err error)
	// Get returns the connection's Health; ok is false when there is none.
	Get(ctx context.Context, connection string) (h Health, ok bool, err error)
	// List returns every connection's Health, ordered by connection id.
	List(ctx context.Context) ([]Health, error)
	// Delete forgets the connection's Health.
	Delete(ctx context.Context, connection string) error
}

// MemoryHealth is a HealthStore in memory, for tests and single-process
// hosts. Its zero value is ready to use.
type MemoryHealth struct {
	mu sync.Mutex
	m  map[string]Health

	triggers memoryTriggers
}

// NewMemoryHealth returns an empty MemoryHealth.
func NewMemoryHealth() *MemoryHealth { return &MemoryHealth{} }

// Update implements HealthStore.
func (s *MemoryHealth) Update(_ context.Context, connection string, fn func(*Health)) (Health, Health, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m == nil {
		s.m = map[string]Health{}
	}
	before, ok := s.m[connection]
	if !ok {
		before = Health{Connection: connection}
	}
	after := before
	fn(&after)
	after.Connection = connection
	after.Push = before.Push // UpdatePush's
	s.m[connection] = after
	return before, after, nil
}

// UpdatePush implements PushHealthStore.
func (s *MemoryHealth) UpdatePush(_ context.Context, connection string, fn func(*PushHealth)) error {
	s.updatePush(connection, fn, true)
	return nil
}

// updateExistingPush implements existingPushUpdater.
func (s *MemoryHealth) updateExistingPush(_ context.Context, connection string, fn func(*PushHealth)) error {
	s.updatePush(connection, fn, false)
	return nil
}

// updatePush is UpdatePush; without create it leaves a connection it has
// no Health for alone.
func (s *MemoryHealth) updatePush(connection string, fn func(*PushHealth), create bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	h, ok := s.m[connection]
	if !ok {
		if !create {
			return
		}
		if s.m == nil {
			s.m = map[string]Health{}
		}
		h = Health{Connection: connection}
	}
	fn(&h.Push)
	h.Push.LastError = truncateUTF8(h.Push.LastError, MaxErrorLen)
	s.m[connection] = h
}

// existingPushUpdater is implemented by the stores of this package: an
// UpdatePush that leaves a connection without a health row alone, for the
// records that must not bring back a connection the host deleted (a late
// notification, a watch released after its connection left the push
// list).
type existingPushUpdater interface {
	updateExistingPush(ctx context.Context, connection string, fn func(*PushHealth)) error
}

// MarkRun implements TriggerStore (in this process only).
func (s *MemoryHealth) MarkRun(ctx context.Context, connection, run string) (RunMark, error) {
	return s.triggers.MarkRun(ctx, connection, run)
}

// EndRun implements TriggerStore.
func (s *MemoryHealth) EndRun(ctx context.Context, connection, run string) (bool, error) {
	return s.triggers.EndRun(ctx, connection, run)
}

// Get implements HealthStore.
func (s *MemoryHealth) Get(_ context.Context, connection string) (Health, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	h, ok := s.m[connection]
	return h, ok, nil
}

// List implements HealthStore.
func (s *MemoryHealth) List(context.Context) ([]Health, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Health, 0, len(s.m))
	for _, h := range s.m {
		out = append(out, h)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Connection < out[j].Connection })
	return out, nil
}

// Delete implements HealthStore.
func (s *MemoryHealth) Delete(_ context.Context, connection string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.m, connection)
	return nil
}
