package mailsync

import (
	"context"
	"sort"
	"sync"
)

// State persists, per connection, the cursor and the keys of messages
// already turned into tickets (or quarantined). Sync reads and writes it;
// hosts choose the implementation: NewMemoryState for tests, the boltstate
// package for a durable single file, or their own database.
//
// A State never holds a password, token or message content.
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
	// are kept for all connections together.
	Threads map[string]string
}

// MemoryState is a State in memory, for tests and examples. It is safe for
// concurrent use. Its zero value is not usable: call NewMemoryState.
type MemoryState struct {
	mu      sync.Mutex
	conns   map[string]*memoryConn
	threads map[string]string
}

type memoryConn struct {
	cursor Cursor
	done   map[string]string
}

// NewMemoryState returns an empty in-memory State.
func NewMemoryState() *MemoryState {
	return &MemoryState{conns: map[string]*memoryConn{}, threads: map[string]string{}}
}

func (s *MemoryState) conn(name string) *memoryConn {
	c := s.conns[name]
	if c == nil {
		c = &memoryConn{done: map[string]string{}}
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
	c := s.conn(connection)
	for k, v := range r.Done {
		c.done[k] = v
	}
	if r.Cursor != nil {
		c.cursor = *r.Cursor
	}
	for id, t := range r.Threads {
		s.threads[id] = t
	}
	return nil
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
