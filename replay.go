package mailsync

import (
	"context"
	"errors"
	"fmt"
	"io"
)

// Replay feeds one raw message — a quarantined one, after the admin fixed a
// rule or after a parser fix — back through the same engine Sync uses, as
// if it had just been fetched from conn under the provider key key. The
// ticket's idempotency key depends only on the connection, the Message-ID
// and the raw bytes, exactly as in Sync, so a replay can never duplicate a
// ticket: replaying twice, or replaying mail that a sync also delivers,
// gives a duplicate, not a second ticket.
//
// Replay reads and writes the State's threads (so a replayed reply finds
// its ticket, and later replies find the replayed one) but never its cursor
// or processed keys, takes no lease, and runs no post-action (the mail is no
// longer on the server, or Sync handles it there). The options are Sync's:
// WithState, WithRouting, WithThreading, WithDryRun and the others apply.
func Replay(ctx context.Context, conn Connection, key string, raw io.Reader, m Mapping, sink Sink, opts ...Option) (Outcome, error) {
	if key == "" {
		return Outcome{}, fmt.Errorf("%w: replay needs the message's provider key", ErrInvalidConfig)
	}
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	state := o.state
	if state == nil {
		state = NewMemoryState()
	}
	c := &replayConnector{conn: conn, ref: MessageRef{Key: key, Size: -1}, raw: raw}
	opts = append(append([]Option(nil), opts...),
		WithState(&replayState{MemoryState: NewMemoryState(), threads: state}),
		WithPostAction(PostAction{Kind: LeaveUntouched}),
		WithRetry(1, 0))
	rep, err := Sync(ctx, c, m, sink, opts...)
	for _, out := range rep.Messages {
		if out.Key == key {
			return out, err
		}
	}
	if err == nil {
		err = errors.New("mailsync: replay produced no outcome")
	}
	return Outcome{Key: key, Status: StatusFailed, Err: err}, err
}

// replayConnector lists and delivers one message.
type replayConnector struct {
	conn Connection
	ref  MessageRef
	raw  io.Reader
	used bool
}

func (c *replayConnector) Connection() Connection { return c.conn }
func (c *replayConnector) Close() error           { return nil }

func (c *replayConnector) List(ctx context.Context, _ Cursor) (*Listing, error) {
	return &Listing{Messages: []MessageRef{c.ref}}, nil
}

func (c *replayConnector) Fetch(ctx context.Context, refs []MessageRef, fn func(MessageRef, io.Reader) error) error {
	for _, r := range refs {
		if r.Key != c.ref.Key || c.used {
			continue
		}
		c.used = true
		if err := fn(r, c.raw); err != nil {
			return err
		}
	}
	return nil
}

func (c *replayConnector) Ack(ctx context.Context, refs []MessageRef, a PostAction) error {
	return nil // never called: replay runs no post-action
}

// replayState keeps the replay's cursor and processed keys to itself and
// shares threads with the host's State.
type replayState struct {
	*MemoryState
	threads State
}

func (s *replayState) Record(ctx context.Context, connection string, r Record) error {
	if len(r.Threads) > 0 {
		if err := s.threads.Record(ctx, "", Record{Threads: r.Threads}); err != nil {
			return err
		}
	}
	return s.MemoryState.Record(ctx, connection, Record{Done: r.Done, Cursor: r.Cursor})
}

func (s *replayState) Threads(ctx context.Context, ids []string) (map[string]string, error) {
	return s.threads.Threads(ctx, ids)
}
