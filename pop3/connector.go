package pop3

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"

	"github.com/mailsync/mailsync"
)

// Connector is a mailsync.Connector for one POP3 maildrop. Make one with
// New. Like every Connector it is used by one goroutine at a time; to
// interrupt a call, cancel its context.
type Connector struct {
	cfg *config

	mu     sync.Mutex
	sess   *session
	closed bool

	// After a login refused with [LOGIN-DELAY], no login is tried before
	// notBefore: calls fail at once with a ThrottledError built on
	// delayErr, so retries do not spend themselves on the server.
	notBefore time.Time
	delayErr  error
}

var _ mailsync.Connector = (*Connector)(nil)

// errClosed is returned by calls on a closed Connector.
var errClosed = errors.New("pop3: connector is closed")

// New checks conn and opts and returns a Connector. It does not connect:
// the first List (or Fetch, Ack) does. Configuration problems come back as
// *mailsync.ConfigError, a plaintext login without
// Options.AllowPlaintextLogin as mailsync.ErrPlaintextRefused.
func New(conn mailsync.Connection, opts Options) (*Connector, error) {
	cfg, err := newConfig(conn, opts)
	if err != nil {
		return nil, err
	}
	return &Connector{cfg: cfg}, nil
}

// Connection returns the configuration the connector was made from.
func (c *Connector) Connection() mailsync.Connection { return c.cfg.conn }

// session returns the open session, opening a new one (and mapping keys
// with UIDL when mapKeys is set) if there is none or it broke.
func (c *Connector) session(ctx context.Context, mapKeys bool) (*session, []string, error) {
	if c.closed {
		return nil, nil, errClosed
	}
	if c.sess != nil && c.sess.dead {
		c.sess = nil
	}
	if c.sess == nil {
		if wait := time.Until(c.notBefore); wait > 0 {
			wait = (wait + time.Millisecond - 1).Truncate(time.Millisecond)
			return nil, nil, &mailsync.ThrottledError{RetryAfter: wait, Err: c.delayErr}
		}
		s, err := open(ctx, c.cfg)
		var te *mailsync.ThrottledError
		if errors.As(err, &te) && te.RetryAfter > 0 {
			c.notBefore, c.delayErr = time.Now().Add(te.RetryAfter), te.Err
		}
		if err != nil {
			return nil, nil, err
		}
		c.sess = s
	}
	var notes []string
	if mapKeys && c.sess.keys == nil {
		var err error
		if _, notes, err = c.sess.mapKeys(ctx); err != nil {
			return nil, nil, err
		}
	}
	return c.sess, notes, nil
}

// List returns the whole maildrop, oldest first, keyed by UIDL with sizes
// from LIST, and Complete set: POP3 has no "new since", so cursor is
// ignored and the returned cursor is empty. It costs one UIDL and one LIST
// whatever the maildrop size, and starts a new session so that mail that
// arrived since the last List is seen.
func (c *Connector) List(ctx context.Context, cursor mailsync.Cursor) (*mailsync.Listing, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil, errClosed
	}
	if c.sess != nil {
		// A POP3 session sees the maildrop as it was at login.
		if err := c.sess.quit(ctx); err != nil {
			c.cfg.log.Debug("pop3: QUIT before re-listing failed", slog.Any("error", err))
		}
		c.sess = nil
	}
	s, _, err := c.session(ctx, false)
	if err != nil {
		return nil, err
	}
	ids, notes, err := s.mapKeys(ctx)
	if err != nil {
		return nil, err
	}
	sizes, err := s.sizes(ctx)
	if err != nil {
		return nil, err
	}
	l := &mailsync.Listing{Messages: make([]mailsync.MessageRef, 0, len(ids)), Complete: true, Notes: notes}
	for _, m := range ids {
		size, ok := sizes[m.ID]
		if !ok {
			size = -1
		}
		l.Messages = append(l.Messages, mailsync.MessageRef{Key: m.UID, Size: size})
	}
	c.cfg.log.Debug("pop3 list", slog.Int("messages", len(l.Messages)))
	return l, nil
}

// Fetch streams each message of refs, in order, to fn with RETR, without
// holding it in memory. Refs no longer in the maildrop are skipped. An
// error from fn stops the fetch and is returned; a broken connection comes
// back wrapping mailsync.ErrConnection and the next call reconnects.
func (c *Connector) Fetch(ctx context.Context, refs []mailsync.MessageRef, fn func(mailsync.MessageRef, io.Reader) error) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(refs) == 0 {
		return nil
	}
	s, _, err := c.session(ctx, true)
	if err != nil {
		return err
	}
	for _, ref := range refs {
		if s.dead {
			// retr closed the session rather than skip the rest of a long
			// message the caller stopped reading: open a new one.
			if s, _, err = c.session(ctx, true); err != nil {
				return err
			}
		}
		num, ok := s.keys[ref.Key]
		if !ok {
			c.cfg.log.Debug("pop3 fetch: message gone", slog.String("key", ref.Key))
			continue
		}
		found, err := s.retr(ctx, num, func(r io.Reader) error { return fn(ref, r) })
		var se *serverError
		if !found && errors.As(err, &se) {
			// -ERR to RETR: the message went away (e.g. expunged by another
			// client). Skip it; the engine leaves it for the next run.
			c.cfg.log.Warn("pop3 fetch: server refused RETR; skipped", slog.String("key", ref.Key), slog.Any("error", err))
			continue
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// Ack applies action to refs. LeaveUntouched does nothing. Delete sends
// DELE for each message still in the maildrop, then QUIT, and succeeds only
// when the server acknowledged the QUIT (deletions happen then); the next
// call opens a new session. Repeating it is harmless: messages already
// gone are skipped. MarkRead and MoveToFolder return an error wrapping
// mailsync.ErrUnsupported.
func (c *Connector) Ack(ctx context.Context, refs []mailsync.MessageRef, action mailsync.PostAction) error {
	switch action.Kind {
	case mailsync.LeaveUntouched:
		return nil
	case mailsync.Delete:
	case mailsync.MarkRead, mailsync.MoveToFolder:
		return fmt.Errorf("pop3: post-action %q: %w: POP3 can only leave or delete messages", action.Kind, mailsync.ErrUnsupported)
	default:
		if err := action.Validate(); err != nil {
			return err
		}
		return fmt.Errorf("pop3: post-action %q: %w", action.Kind, mailsync.ErrUnsupported)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(refs) == 0 {
		return nil
	}
	s, _, err := c.session(ctx, true)
	if err != nil {
		return err
	}
	var (
		deleted int
		refused []error
	)
	for _, ref := range refs {
		num, ok := s.keys[ref.Key]
		if !ok {
			continue // already gone: deleting again is a no-op
		}
		_, err := s.cmd(ctx, "DELE", num)
		var se *serverError
		if errors.As(err, &se) {
			refused = append(refused, fmt.Errorf("pop3: DELE %s: %w", ref.Key, classifyCommand(se)))
			continue
		}
		if err != nil {
			c.sess = nil
			return fmt.Errorf("%w (no message was deleted)", err)
		}
		deleted++
	}
	if deleted == 0 {
		return errors.Join(refused...)
	}
	c.sess = nil
	if err := s.quit(ctx); err != nil {
		var se *serverError
		if errors.As(err, &se) {
			err = classifyCommand(se)
		}
		return fmt.Errorf("pop3: QUIT after %d DELE not acknowledged, deletions not confirmed: %w", deleted, err)
	}
	c.cfg.log.Debug("pop3 ack delete", slog.Int("deleted", deleted), slog.Int("refused", len(refused)))
	return errors.Join(refused...)
}

// Close logs out (QUIT, which applies no deletion since Ack always ends
// its session itself) and releases the connection. Later calls fail.
func (c *Connector) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil
	}
	c.closed = true
	s := c.sess
	c.sess = nil
	if s == nil || s.dead {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), c.cfg.cmdTO)
	defer cancel()
	if err := s.quit(ctx); err != nil {
		c.cfg.log.Debug("pop3: QUIT on close failed", slog.Any("error", err))
	}
	return nil
}
