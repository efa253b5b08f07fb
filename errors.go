package mailsync

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// Sentinel errors. Provider packages wrap them, so callers test with
// errors.Is(err, mailsync.ErrAuth) whatever the provider.
var (
	// ErrInvalidConfig: a Connection, Mapping or option is wrong. See *ConfigError.
	ErrInvalidConfig = errors.New("mailsync: invalid configuration")
	// ErrDisabled: Sync was asked to run a connection whose Enabled switch is off.
	ErrDisabled = errors.New("mailsync: connection is disabled")
	// ErrNotConnectedWith: the mapping's ticket type is not in the connection's ConnectedWith.
	ErrNotConnectedWith = errors.New("mailsync: ticket type not connected with this connection")
	// ErrAuth: the server refused the credentials (wrong password, bad token).
	ErrAuth = errors.New("mailsync: authentication failed")
	// ErrConsentRequired: the refresh token was revoked or expired (OAuth invalid_grant);
	// an admin has to sign in and consent again.
	ErrConsentRequired = errors.New("mailsync: OAuth consent required")
	// ErrTokenExpired: an access token expired and could not be renewed in time.
	ErrTokenExpired = errors.New("mailsync: access token expired")
	// ErrTLS: the TLS handshake failed (untrusted certificate, wrong host name, protocol).
	ErrTLS = errors.New("mailsync: TLS failure")
	// ErrPlaintextRefused: a login over an unencrypted connection was refused
	// because the caller did not opt in.
	ErrPlaintextRefused = errors.New("mailsync: refusing to send credentials over an unencrypted connection")
	// ErrConnection: the server could not be reached or the connection broke. Retryable.
	ErrConnection = errors.New("mailsync: connection failed")
	// ErrThrottled: the server asked to slow down. Retryable; see *ThrottledError.
	ErrThrottled = errors.New("mailsync: throttled by server")
	// ErrMailboxBusy: the mailbox is locked by another client (POP3 [IN-USE]). Retryable.
	ErrMailboxBusy = errors.New("mailsync: mailbox in use by another client")
	// ErrFolderNotFound: the configured folder does not exist.
	ErrFolderNotFound = errors.New("mailsync: folder not found")
	// ErrUnsupported: the provider cannot do what was asked (e.g. move on POP3).
	ErrUnsupported = errors.New("mailsync: not supported by this provider")
	// ErrCursorExpired: the provider no longer accepts the stored cursor; a
	// connector answers it by re-listing from scratch, so callers rarely see it.
	ErrCursorExpired = errors.New("mailsync: cursor expired")
	// ErrOversized: a message exceeds Limits.MaxMessageBytes.
	ErrOversized = errors.New("mailsync: message too large")
	// ErrMalformed: a message could not be parsed or breaks a parsing limit.
	ErrMalformed = errors.New("mailsync: malformed message")
	// ErrSink: the host's sink failed. The message is left for the next run
	// (and quarantined once the sink has refused it WithSinkFailureLimit times).
	ErrSink = errors.New("mailsync: sink failed")
	// ErrFollowUpRefused is returned by a FollowUpSink that will not add a
	// follow-up (e.g. to a closed ticket): the mail then becomes a new
	// ticket whose RelatedTicketID names the refused one.
	ErrFollowUpRefused = errors.New("mailsync: follow-up refused")
	// ErrRateLimited marks mail held back by a SenderLimiter.
	ErrRateLimited = errors.New("mailsync: sender over its rate limit")
	// ErrRouted marks mail quarantined because Mapping.Routes sends its
	// kind (auto-reply, bulk, …) to quarantine, or a routing rule does.
	ErrRouted = errors.New("mailsync: routed to quarantine")
	// ErrBlocked marks mail quarantined because its sender is blocked.
	ErrBlocked = errors.New("mailsync: sender blocked")
)

// Problem is one wrong field of a configuration.
type Problem struct {
	// Field names the field, as a path in the configuration's JSON names
	// ("server", "oauth.client_id", "routing.rules[2].when[0]").
	Field string `json:"field"`
	// Code says what is wrong in a stable, machine-readable form (one of
	// the Code constants), for a host that shows the problem in its own
	// words or language; empty when a provider package does not set it.
	Code ProblemCode `json:"code,omitempty"`
	// Message says it in English, for logs and English-speaking admins.
	// Its wording may change; match Code, not Message.
	Message string `json:"message"`
	// Limit is the bound that was broken: the longest length for
	// CodeTooLong, the largest value for CodeOutOfRange (in seconds for a
	// duration). Zero otherwise.
	Limit int `json:"limit,omitempty"`
	// Allowed lists the accepted values for CodeUnknown when they are a
	// closed set (a protocol, a post-action kind, a route …); nil otherwise.
	Allowed []string `json:"allowed,omitempty"`
}

// ProblemCode is the machine-readable kind of a Problem.
type ProblemCode string

// The codes of a Problem. The set may grow; a host should fall back to
// Problem.Message for a code it does not know.
const (
	// CodeRequired: the field is missing or empty ("is required", a
	// connection with no ticket type, a mapping field with no source).
	CodeRequired ProblemCode = "required"
	// CodeInvalid: the value is malformed — not a host name, an address,
	// a domain, a number, a URL or a regular expression — or lacks
	// something it needs (a pattern without a capturing group, a key
	// shorter than its minimum).
	CodeInvalid ProblemCode = "invalid"
	// CodeForbiddenCharacters: the value holds characters it must not:
	// CR, LF, NUL or other control characters, or spaces where none are
	// allowed.
	CodeForbiddenCharacters ProblemCode = "forbidden_characters"
	// CodeTooLong: the value is longer than Limit bytes or characters.
	CodeTooLong ProblemCode = "too_long"
	// CodeOutOfRange: the number is outside its range; Limit is the
	// largest value (a port: 1-65535, Limit 65535).
	CodeOutOfRange ProblemCode = "out_of_range"
	// CodeNegative: the number must not be negative.
	CodeNegative ProblemCode = "negative"
	// CodeUnknown: the value is not one the library knows (a protocol, an
	// OAuth provider, a post-action, a mail field, a route, a rule action
	// …); Allowed lists the accepted ones when they are a closed set.
	CodeUnknown ProblemCode = "unknown"
	// CodeConflict: the field is set together with one it excludes, or
	// where it is not used (a folder without "move", a tenant id for
	// Gmail, both a source and a const).
	CodeConflict ProblemCode = "conflict"
	// CodeDuplicate: the value is given twice where it must be unique (a
	// ticket field filled twice, a rule id, a ticket type's mapping).
	CodeDuplicate ProblemCode = "duplicate"
	// CodeNotFound: the value names something that is not there (a ticket
	// type the connection is not connected with, or without a mapping).
	CodeNotFound ProblemCode = "not_found"
	// CodePortInServer: the server name carries a port (or brackets); the
	// port has its own field.
	CodePortInServer ProblemCode = "port_in_server"
	// CodeNotHostName: the server is a URL, not a bare host name or IP
	// address.
	CodeNotHostName ProblemCode = "not_host_name"
	// CodeInsecure: an endpoint URL is not https (plain http is allowed
	// only for a loopback host) or carries a user name or password.
	CodeInsecure ProblemCode = "insecure"
)

// ProblemCodes lists every Code the library sets, e.g. for a host to
// check that it translates them all.
var ProblemCodes = []ProblemCode{CodeRequired, CodeInvalid, CodeForbiddenCharacters, CodeTooLong,
	CodeOutOfRange, CodeNegative, CodeUnknown, CodeConflict, CodeDuplicate, CodeNotFound,
	CodePortInServer, CodeNotHostName, CodeInsecure}

// String formats the problem as "field message".
func (p Problem) String() string { return p.Field + " " + p.Message }

// ConfigError lists every problem of a configuration. It matches ErrInvalidConfig.
type ConfigError struct {
	Problems []Problem
}

func (e *ConfigError) add(field string, code ProblemCode, msg string) {
	e.Problems = append(e.Problems, Problem{Field: field, Code: code, Message: msg})
}

// addp adds a problem with its parameters.
func (e *ConfigError) addp(p Problem) {
	e.Problems = append(e.Problems, p)
}

// Error lists every problem.
func (e *ConfigError) Error() string {
	parts := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		parts[i] = p.String()
	}
	return "mailsync: invalid configuration: " + strings.Join(parts, "; ")
}

// Is makes errors.Is(err, ErrInvalidConfig) true.
func (e *ConfigError) Is(target error) bool { return target == ErrInvalidConfig }

// Field reports whether a problem names field.
func (e *ConfigError) Field(field string) bool {
	for _, p := range e.Problems {
		if p.Field == field {
			return true
		}
	}
	return false
}

// NewConfigError builds a ConfigError for provider packages that validate their own options.
func NewConfigError(problems ...Problem) *ConfigError {
	return &ConfigError{Problems: problems}
}

// ThrottledError carries the delay a server asked for. It matches ErrThrottled.
type ThrottledError struct {
	RetryAfter time.Duration
	Err        error
}

// Error says how long the server asked to wait.
func (e *ThrottledError) Error() string {
	s := fmt.Sprintf("mailsync: throttled, retry after %s", e.RetryAfter)
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

// Is makes errors.Is(err, ErrThrottled) true.
func (e *ThrottledError) Is(target error) bool { return target == ErrThrottled }

// Unwrap returns the underlying error.
func (e *ThrottledError) Unwrap() error { return e.Err }

// MessageError is a problem with one message: why it was quarantined or
// failed. It matches ErrMalformed, ErrOversized or ErrSink through Kind.
type MessageError struct {
	Key    string // the message key
	Kind   error  // ErrMalformed, ErrOversized, ErrSink, …
	Reason string // human readable, never a secret
	Err    error  // the cause, if any
}

// Error names the message key and the reason.
func (e *MessageError) Error() string {
	s := fmt.Sprintf("mailsync: message %s: %s", e.Key, e.Reason)
	if e.Err != nil && !strings.Contains(e.Reason, e.Err.Error()) {
		s += ": " + e.Err.Error()
	}
	return s
}

// Is matches Kind.
func (e *MessageError) Is(target error) bool { return e.Kind != nil && target == e.Kind }

// Unwrap returns the cause.
func (e *MessageError) Unwrap() error { return e.Err }

// ErrServerLimit: a server's answer broke a bound the connector keeps (a
// line, a literal or a list too long, a command that took longer than its
// time budget). The connection is dropped. It also matches ErrConnection,
// but Sync does not retry it within the sync: a hostile or broken server
// would only repeat it. The next sync tries again.
var ErrServerLimit = errors.New("mailsync: the server's answer breaks a limit")

// Temporary reports whether err is worth retrying later in the same sync or
// the next: a broken connection, throttling or a busy mailbox — but not a
// server that broke a limit (ErrServerLimit).
func Temporary(err error) bool {
	if errors.Is(err, ErrServerLimit) {
		return false
	}
	return errors.Is(err, ErrConnection) || errors.Is(err, ErrThrottled) || errors.Is(err, ErrMailboxBusy)
}
