package mailsync

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"time"
)

// State persists, per connection, the cursor and the keys of messages
// already turned into tickets (or quarantined). Sync reads and writes it;
// hosts choose the implementation: NewMemoryState for tests, the boltstate
// package for a durable single file, or their own database.
//
// A State never holds a password, token or message content.
//
// The rules every State keeps:
//   - Record is atomic: after a crash all of it or none of it is there.
//   - Threads belong to all connections together; a Message-ID that is
//     already mapped keeps its ticket (the first ticket to own an id keeps
//     it), so a later mail that reuses the id cannot re-point the replies.
//   - Record with the empty connection name "" only stores Threads (that is
//     how RegisterOutgoing records the host's own Message-IDs).
//   - Sync hands it keys already bounded by StateKey (at most 200 bytes of
//     printable UTF-8, or a fixed-size hash), so a State need not cope with
//     hostile key lengths.
type State interface {
	// Cursor returns the connection's stored cursor, "" when there is none.
	Cursor(ctx context.Context, connection string) (Cursor, error)
	// Processed reports for each key whether it was recorded as done.
	Processed(ctx context.Context, connection string, keys []string) ([]bool, error)
	// Record stores r atomically: after a crash either all of it or none of it is there.
	Record(ctx context.Context, connection string, r Record) error
	// Prune forgets the processed keys of connection that are not in present.
	Prune(ctx context.Context, connection string, present []string) error
	// Threads maps the Message-IDs it knows (of every connection) to the
	// ticket they became or were sent about; unknown ids are absent.
	Threads(ctx context.Context, messageIDs []string) (map[string]string, error)
}

// Record is one atomic update of a connection's state.
type Record struct {
	// Done maps message keys to the ticket id they became ("" for quarantined).
	Done map[string]string
	// Cursor, when non-nil, replaces the stored cursor.
	Cursor *Cursor
	// Threads maps Message-IDs to ticket ids, for threading replies. They
	// are kept for all connections together; an id already mapped keeps
	// its first ticket.
	Threads map[string]string
	// Fence, when set, is the lease the writer holds (see Leaser): a State
	// that implements Leaser refuses the whole Record with ErrLeaseLost,
	// atomically with the write, unless Fence is the connection's current
	// lease and has not expired. Others ignore it.
	Fence *Lease
}

// FailureCounter is an optional interface of a State: it counts, per
// message, the syncs in which the sink refused to store it. Sync uses it to
// quarantine a message whose storage keeps failing (WithSinkFailureLimit)
// instead of trying it forever; a State without it keeps such a message
// failing, and the cursor where it was, until the sink takes it.
type FailureCounter interface {
	// CountFailure adds one to key's count and returns the new count.
	CountFailure(ctx context.Context, connection, key string) (int, error)
}

// MemoryState is a State in memory, for tests and examples. It is safe for
// concurrent use. Its zero value is not usable: call NewMemoryState.
type MemoryState struct {
	mu      sync.Mutex
	conns   map[string]*memoryConn
	threads map[string]string
	leases  map[string]Lease
	tokens  map[string]int64
	now     func() time.Time
}

type memoryConn struct {
	cursor   Cursor
	done     map[string]string
	failures map[string]int
}

// NewMemoryState returns an empty in-memory State.
func NewMemoryState() *MemoryState {
	return &MemoryState{conns: map[string]*memoryConn{}, threads: map[string]string{},
		leases: map[string]Lease{}, tokens: map[string]int64{}, now: time.Now}
}

func (s *MemoryState) conn(name string) *memoryConn {
	c := s.conns[name]
	if c == nil {
		c = &memoryConn{done: map[string]string{}, failures: map[string]int{}}
		s.conns[name] = c
	}
	return c
}

// Cursor implements State.
func (s *MemoryState) Cursor(_ context.Context, connection string) (Cursor, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.conn(connection).cursor, nil
}

// Processed implements State.
func (s *MemoryState) Processed(_ context.Context, connection string, keys []string) ([]bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.conn(connection)
	out := make([]bool, len(keys))
	for i, k := range keys {
		_, out[i] = c.done[k]
	}
	return out, nil
}

// Record implements State.
func (s *MemoryState) Record(_ context.Context, connection string, r Record) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if r.Fence != nil {
		if cur, ok := s.leases[connection]; !ok || cur.Token != r.Fence.Token || !s.now().Before(cur.Expires) {
			return fmt.Errorf("%w: %s (token %d)", ErrLeaseLost, connection, r.Fence.Token)
		}
	}
	for id, t := range r.Threads {
		if _, taken := s.threads[id]; !taken {
			s.threads[id] = t
		}
	}
	if connection == "" {
		return nil
	}
	c := s.conn(connection)
	for k, v := range r.Done {
		c.done[k] = v
		delete(c.failures, k)
	}
	if r.Cursor != nil {
		c.cursor = *r.Cursor
	}
	return nil
}

// CountFailure implements FailureCounter.
func (s *MemoryState) CountFailure(_ context.Context, connection, key string) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.conn(connection)
	c.failures[key]++
	return c.failures[key], nil
}

// AcquireLease implements Leaser.
func (s *MemoryState) AcquireLease(_ context.Context, connection, holder string, ttl time.Duration) (Lease, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	if cur, ok := s.leases[connection]; ok && now.Before(cur.Expires) {
		return Lease{}, fmt.Errorf("%w: %s is held by %s until %s", ErrBusy, connection, cur.Holder, cur.Expires.Format(time.RFC3339))
	}
	s.tokens[connection]++
	l := Lease{Connection: connection, Holder: holder, Expires: now.Add(ttl), Token: s.tokens[connection]}
	s.leases[connection] = l
	return l, nil
}

// RenewLease implements Leaser.
func (s *MemoryState) RenewLease(_ context.Context, l Lease, ttl time.Duration) (Lease, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	cur, ok := s.leases[l.Connection]
	if !ok || cur.Token != l.Token || !now.Before(cur.Expires) {
		return Lease{}, fmt.Errorf("%w: %s (token %d)", ErrLeaseLost, l.Connection, l.Token)
	}
	cur.Expires = now.Add(ttl)
	s.leases[l.Connection] = cur
	return cur, nil
}

// ReleaseLease implements Leaser.
func (s *MemoryState) ReleaseLease(_ context.Context, l Lease) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if cur, ok := s.leases[l.Connection]; ok && cur.Token == l.Token {
		delete(s.leases, l.Connection)
	}
	return nil
}

// SetClock replaces the clock leases are measured with; for tests.
func (s *MemoryState) SetClock(now func() time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.now = now
}

// Threads implements State.
func (s *MemoryState) Threads(_ context.Context, messageIDs []string) (map[string]string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string]string{}
	for _, id := range messageIDs {
		if t, ok := s.threads[id]; ok {
			out[id] = t
		}
	}
	return out, nil
}

// Prune implements State.
func (s *MemoryState) Prune(_ context.Context, connection string, present []string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.conn(connection)
	keep := make(map[string]bool, len(present))
	for _, k := range present {
		keep[k] = true
	}
	for k := range c.done {
		if !keep[k] {
			delete(c.done, k)
		}
	}
	for k := range c.failures {
		if !keep[k] {
			delete(c.failures, k)
		}
	}
	return nil
}

// ProcessedKeys returns the connection's processed keys, sorted; for tests.
func (s *MemoryState) ProcessedKeys(connection string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var keys []string
	for k := range s.conn(connection).done {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
