package gmail

import (
	"context"
	"errors"
	"fmt"

	gmailapi "google.golang.org/api/gmail/v1"

	"github.com/mailsync/mailsync"
)

// Connector reads a Gmail mailbox through the Gmail API. It implements
// mailsync.Connector; make one with New. Like every mailsync.Connector it
// is used by one goroutine at a time.
type Connector struct {
	cfg *config
	api *api

	batchSize int               // current batch size; shrinks while throttled
	allLabels []*gmailapi.Label // labels.list, loaded on demand
	targets   map[string]string // move target name → id
	closed    bool
}

var _ mailsync.Connector = (*Connector)(nil)

// errClosed is returned by the methods of a closed Connector.
var errClosed = errors.New("gmail: connector is closed")

// New returns a Connector for conn. It validates conn and opts (problems
// come back as a *mailsync.ConfigError; a plain-http endpoint that is not
// loopback as mailsync.ErrPlaintextRefused), builds the token source
// from conn.OAuth with oauthx unless opts.TokenSource is set, and makes
// the google.golang.org/api/gmail/v1 client. It sends no request: List is
// the first. New does no I/O (like the other providers' New, it takes no
// context): the first request happens in List, Fetch, Ack or Check.
func New(conn mailsync.Connection, opts Options) (*Connector, error) {
	ctx := context.Background()
	cfg, err := newConfig(ctx, conn, opts)
	if err != nil {
		return nil, err
	}
	a, err := newAPI(ctx, cfg)
	if err != nil {
		return nil, err
	}
	return &Connector{cfg: cfg, api: a, batchSize: cfg.batchSize, targets: map[string]string{}}, nil
}

// Connection returns the configuration the connector was made from.
func (c *Connector) Connection() mailsync.Connection { return c.cfg.conn }

// Requests returns the number of HTTP requests the connector has sent
// (a batch request counts once), for monitoring and tests.
func (c *Connector) Requests() int64 { return c.api.requests.Load() }

// Close releases the connector's idle HTTP connections. The Gmail API has
// no session to log out of.
func (c *Connector) Close() error {
	if c.closed {
		return nil
	}
	c.closed = true
	if c.cfg.ownClient {
		c.cfg.hc.CloseIdleConnections()
	}
	return nil
}

func (c *Connector) check(ctx context.Context) error {
	if c.closed {
		return errClosed
	}
	return ctx.Err()
}

// String describes the connector without secrets.
func (c *Connector) String() string {
	return fmt.Sprintf("gmail connector %q (user %s, labels %q)", c.cfg.conn.Name, c.cfg.user, c.cfg.labels)
}
