package fleet

import (
	"context"
	"errors"
	"math/rand/v2"
	"time"

	"github.com/mailsync/mailsync"
)

// ErrorKind is the class of a sync's error, as kept in Health.LastErrorKind
// and used as a metric attribute. The empty kind means success.
type ErrorKind string

// The error kinds, from the typed errors of the root package.
const (
	KindNone              ErrorKind = ""
	KindAuth              ErrorKind = "auth"               // mailsync.ErrAuth: wrong password, bad token
	KindConsentRequired   ErrorKind = "consent_required"   // mailsync.ErrConsentRequired: revoked or expired grant
	KindInvalidConfig     ErrorKind = "invalid_config"     // ErrInvalidConfig and the other configuration errors
	KindPasswordRequired  ErrorKind = "password_required"  // ErrPasswordRequired: a typed-password connection
	KindUnknownConnection ErrorKind = "unknown_connection" // ErrUnknownConnection: deleted by the host
	KindThrottled         ErrorKind = "throttled"          // mailsync.ErrThrottled
	KindServerLimit       ErrorKind = "server_limit"       // mailsync.ErrServerLimit
	KindConnection        ErrorKind = "connection"         // ErrConnection, ErrMailboxBusy, ErrTokenExpired
	KindTLS               ErrorKind = "tls"                // mailsync.ErrTLS
	KindBusy              ErrorKind = "busy"               // mailsync.ErrBusy: another holder syncs it now
	KindLeaseLost         ErrorKind = "lease_lost"         // mailsync.ErrLeaseLost
	KindTimeout           ErrorKind = "timeout"            // the sync ran out of its time (Config.SyncTimeout)
	KindCanceled          ErrorKind = "canceled"           // the caller or the shutdown cancelled it
	KindOther             ErrorKind = "other"              // anything else (state, sink, …)
)

// Action is what the Fleet does after a sync.
type Action int

// The actions.
const (
	// ActionNext runs the connection again after its interval (± jitter).
	ActionNext Action = iota
	// ActionRetryAfter waits the server's Retry-After.
	ActionRetryAfter
	// ActionBackoff waits an exponential back-off: Config.Backoff doubled
	// per consecutive failure, at most Config.MaxBackoff.
	ActionBackoff
	// ActionStop stops scheduling the connection: its job is cancelled and
	// it waits for the admin (Health.NeedsAdmin) or the host.
	ActionStop
)

// Classify returns the kind of err and what the Fleet does after it.
// ErrAuth, ErrConsentRequired and the configuration errors stop (no retry
// storm after a password change or a revoked grant); a throttled sync waits
// the Retry-After; connection and other errors back off.
func Classify(err error) (ErrorKind, Action) {
	switch {
	case err == nil:
		return KindNone, ActionNext
	case errors.Is(err, mailsync.ErrBusy):
		return KindBusy, ActionNext
	case errors.Is(err, mailsync.ErrLeaseLost):
		return KindLeaseLost, ActionNext
	case errors.Is(err, ErrPasswordRequired):
		return KindPasswordRequired, ActionStop
	case errors.Is(err, ErrUnknownConnection):
		return KindUnknownConnection, ActionStop
	case errors.Is(err, mailsync.ErrConsentRequired):
		return KindConsentRequired, ActionStop
	case errors.Is(err, mailsync.ErrAuth):
		return KindAuth, ActionStop
	case errors.Is(err, mailsync.ErrInvalidConfig), errors.Is(err, mailsync.ErrDisabled),
		errors.Is(err, mailsync.ErrNotConnectedWith), errors.Is(err, mailsync.ErrPlaintextRefused),
		errors.Is(err, mailsync.ErrFolderNotFound), errors.Is(err, mailsync.ErrUnsupported):
		return KindInvalidConfig, ActionStop
	case errors.Is(err, mailsync.ErrThrottled):
		var te *mailsync.ThrottledError
		if errors.As(err, &te) && te.RetryAfter > 0 {
			return KindThrottled, ActionRetryAfter
		}
		return KindThrottled, ActionBackoff
	case errors.Is(err, mailsync.ErrServerLimit):
		return KindServerLimit, ActionBackoff
	case errors.Is(err, mailsync.ErrTLS):
		return KindTLS, ActionBackoff
	case errors.Is(err, mailsync.ErrConnection), errors.Is(err, mailsync.ErrMailboxBusy), errors.Is(err, mailsync.ErrTokenExpired):
		return KindConnection, ActionBackoff
	case errors.Is(err, context.DeadlineExceeded):
		return KindTimeout, ActionBackoff
	case errors.Is(err, context.Canceled):
		return KindCanceled, ActionNext
	}
	return KindOther, ActionBackoff
}

// needsAdmin reports whether kind waits for the admin: the credentials or
// the configuration must change before a sync can succeed.
func needsAdmin(k ErrorKind) bool {
	switch k {
	case KindAuth, KindConsentRequired, KindInvalidConfig, KindPasswordRequired:
		return true
	}
	return false
}

// Backoff returns the wait after the failures-th consecutive failure:
// base doubled per failure, at most limit, less up to a tenth (random) so
// connections that failed together do not retry together.
func Backoff(base, limit time.Duration, failures int) time.Duration {
	if base <= 0 {
		base = time.Second
	}
	if limit < base {
		limit = base
	}
	d := base
	for i := 1; i < failures && d < limit; i++ {
		d *= 2
	}
	d = min(d, limit)
	return d - jitter(d/10)
}

// jitter returns a random duration in [0, d).
func jitter(d time.Duration) time.Duration {
	if d <= 0 {
		return 0
	}
	return rand.N(d)
}
