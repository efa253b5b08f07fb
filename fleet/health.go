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
	Degraded bool `json:"degraded"`
	// NeedsAdmin is set when a sync failed for a reason only the admin can
	// fix (ErrAuth, ErrConsentRequired, a configuration error): the
	// connection is no longer scheduled until Schedule is called again.
	NeedsAdmin bool `json:"needs_admin"`
	// Updated is when this record last changed.
	Updated time.Time `json:"updated"`
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
		if needsAdmin(a.kind) {
			h.NeedsAdmin, h.Degraded = true, true
		}
		if degradeAfter > 0 && h.ConsecutiveFailures >= degradeAfter {
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
	// store.
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
	s.m[connection] = after
	return before, after, nil
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
