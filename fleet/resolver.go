package fleet

import (
	"context"
	"errors"
	"time"

	"github.com/mailsync/mailsync"
)

// ErrPasswordRequired is returned by a Resolver asked, without a password,
// for a connection whose password is typed in at sync time and never
// stored. Such a connection is never scheduled: Schedule refuses it when
// the Resolver is a Checker, and a worker that meets it cancels the job.
// SyncNow with the typed password runs it in the caller's process.
var ErrPasswordRequired = errors.New("mailsync/fleet: the connection's password is typed at sync time; it cannot be scheduled")

// ErrUnknownConnection is returned by a Resolver for a connection id it does
// not know (deleted since it was scheduled). A worker that meets it cancels
// the job.
var ErrUnknownConnection = errors.New("mailsync/fleet: unknown connection")

// Resolver is the host's side of a Fleet: it turns a connection id into
// everything one sync needs, with the credentials taken from the host's
// vault or OAuth store at that moment. The Fleet keeps only the id: River's
// jobs are rows in the database, so no secret goes into them.
type Resolver interface {
	// Resolve returns the connection's Target. password is the password a
	// person typed for this sync (SyncNow), empty in a scheduled run: a
	// connection that needs a typed password then returns an error that
	// wraps ErrPasswordRequired. A connection id the host no longer knows
	// returns an error that wraps ErrUnknownConnection. Other errors are
	// classified like a sync's (see Classify); an error wrapping
	// mailsync.ErrAuth, for example, marks the connection as needing the
	// admin (unless the password was typed: see Fleet.SyncNow).
	//
	// The Connector's Connection().Name must be connectionID: the State,
	// the lease and the idempotency keys are kept by that name, so a sync
	// whose names differ fails as a configuration error.
	//
	// Resolve must not dial the server: the Connector connects in List.
	// The Fleet calls Target.Connector.Close after the sync.
	Resolve(ctx context.Context, connectionID string, password mailsync.Secret) (Target, error)
}

// ResolverFunc adapts a function to the Resolver interface.
type ResolverFunc func(ctx context.Context, connectionID string, password mailsync.Secret) (Target, error)

// Resolve calls f.
func (f ResolverFunc) Resolve(ctx context.Context, connectionID string, password mailsync.Secret) (Target, error) {
	return f(ctx, connectionID, password)
}

// Checker is an optional interface of a Resolver: Schedule asks it whether
// a connection may be scheduled before inserting its job, without building
// a connector. A host marks a password connection by returning an error
// that wraps ErrPasswordRequired (and may refuse disabled or unknown
// connections the same way). A Resolver without it is trusted: the first
// scheduled run of a password connection cancels its job instead.
type Checker interface {
	// Schedulable returns nil when connectionID may be synced by workers.
	Schedulable(ctx context.Context, connectionID string) error
}

// Target is what one sync of a connection needs.
type Target struct {
	// Connector is the connection's mail source, with its credentials.
	Connector mailsync.Connector
	// Mapping is the connection's ticket mapping.
	Mapping mailsync.Mapping
	// Sink receives the tickets.
	Sink mailsync.Sink
	// Options are added to the Fleet's own (state, lease, logger); they
	// come after them, so a Target's WithLogger wins, but a WithState or
	// WithLease here would defeat the Fleet's lease and must not be used.
	// SyncNow's own options come after these.
	Options []mailsync.Option
	// Interval, when positive, replaces Config.Interval for this
	// connection from its next run on.
	Interval time.Duration
	// BackstopInterval, when positive, replaces Config.BackstopInterval
	// for this connection: the interval while its push works.
	BackstopInterval time.Duration
	// Secrets are the credentials the Connector carries (a password, a
	// refresh token, a client secret). They are scrubbed, in all their
	// encodings, from the error message kept in Health; the typed password
	// of SyncNow is scrubbed without being listed.
	Secrets []mailsync.Secret
}
