package pop3

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"golang.org/x/oauth2"

	"github.com/mailsync/mailsync"
)

// Security selects how the connection to the server is protected: the
// shared mailsync.Security. SecurityAuto picks StartTLS on port 110 and
// implicit TLS on any other port (including 0, which means 995).
type Security = mailsync.Security

// The security modes (see mailsync.Security). StartTLS is POP3's STLS
// command (RFC 2595).
const (
	SecurityAuto = mailsync.SecurityAuto
	ImplicitTLS  = mailsync.ImplicitTLS // POP3S, port 995
	StartTLS     = mailsync.StartTLS    // StartTLS, port 110
	Plaintext    = mailsync.Plaintext   // needs Options.AllowPlaintextLogin
)

// Default timeouts.
const (
	DefaultDialTimeout    = 30 * time.Second
	DefaultCommandTimeout = 60 * time.Second
)

// DefaultMaxMessages is the default Options.MaxMessages.
const DefaultMaxMessages = 100_000

// Options are the credentials and transport settings of a POP3 connector.
// Exactly one of Password and TokenSource must be set.
type Options struct {
	// Password is the account password, sent with USER/PASS.
	Password mailsync.Secret
	// TokenSource yields OAuth access tokens, sent with AUTH XOAUTH2.
	TokenSource oauth2.TokenSource
	// Security selects implicit TLS, StartTLS or plaintext; see SecurityAuto.
	Security Security
	// AllowPlaintextLogin must be true for Security Plaintext: it is the
	// caller's explicit opt-in to sending credentials unencrypted.
	AllowPlaintextLogin bool
	// RootCAs, when set, replaces the system roots for verifying the server.
	RootCAs *x509.CertPool
	// TLSConfig, when set, is cloned as the base TLS configuration.
	// ServerName defaults to the connection's server, MinVersion to TLS 1.2.
	TLSConfig *tls.Config
	// DialTimeout bounds the TCP connect and TLS handshake; default 30 s.
	DialTimeout time.Duration
	// CommandTimeout is the longest the server may stay silent while a
	// command is running; default 60 s. It also bounds the total time of
	// each command: CommandTimeout plus the time its answer's bytes take
	// at 32 KiB/s (so large messages are fine, a server that trickles a
	// line a second is not). A command over the limit fails with an error
	// wrapping mailsync.ErrConnection and ErrServerLimit.
	CommandTimeout time.Duration
	// MaxMessages is the largest maildrop List accepts, default
	// DefaultMaxMessages (at most about 25 MiB of memory for the listing). A
	// server that lists more fails with mailsync.ErrConnection and
	// ErrServerLimit. Raise it for larger maildrops.
	MaxMessages int
	// Logger receives debug logs; default discards. It never sees secrets.
	Logger *slog.Logger
}

// config is the validated, defaulted form of a Connection and Options.
type config struct {
	conn     mailsync.Connection
	opts     Options // as given, for Connector.Check
	addr     string
	security Security
	tls      *tls.Config
	password mailsync.Secret // revealed only on the PASS line
	tokens   oauth2.TokenSource
	dialTO   time.Duration
	cmdTO    time.Duration
	maxMsgs  int
	log      *slog.Logger
}

// newConfig validates conn and opts. Configuration problems come back as a
// *mailsync.ConfigError; a plaintext login without opt-in as an error
// wrapping mailsync.ErrPlaintextRefused.
func newConfig(conn mailsync.Connection, opts Options) (*config, error) {
	var problems []mailsync.Problem
	if err := conn.Validate(); err != nil {
		if ce, ok := err.(*mailsync.ConfigError); ok {
			problems = append(problems, ce.Problems...)
		} else {
			return nil, err
		}
	}
	if conn.Protocol != mailsync.POP3 {
		problems = append(problems, mailsync.Problem{Field: "protocol", Code: mailsync.CodeConflict, Message: fmt.Sprintf("is %q, the pop3 provider needs %q", conn.Protocol, mailsync.POP3)})
	}
	// go-pop3 formats arguments with %v onto the command line, so CR or LF
	// in a credential would inject commands. Connection.Validate checks
	// the user too; check here in case a caller skipped it.
	if strings.ContainsAny(conn.User, "\r\n\x00") && !hasProblem(problems, "user") {
		problems = append(problems, mailsync.Problem{Field: "user", Code: mailsync.CodeForbiddenCharacters, Message: "must not contain CR, LF or NUL"})
	}
	switch {
	case opts.Password != "" && opts.TokenSource != nil:
		problems = append(problems, mailsync.Problem{Field: "credentials", Code: mailsync.CodeConflict, Message: "set either Options.Password or Options.TokenSource, not both"})
	case opts.Password == "" && opts.TokenSource == nil:
		if conn.OAuth != nil {
			problems = append(problems, mailsync.Problem{Field: "oauth", Code: mailsync.CodeRequired, Message: "needs Options.TokenSource for XOAUTH2"})
		} else {
			problems = append(problems, mailsync.Problem{Field: "password", Code: mailsync.CodeRequired, Message: "is required (or Options.TokenSource for XOAUTH2)"})
		}
	}
	if strings.ContainsAny(opts.Password.Reveal(), "\r\n\x00") {
		problems = append(problems, mailsync.Problem{Field: "password", Code: mailsync.CodeForbiddenCharacters, Message: "must not contain CR, LF or NUL"})
	}
	if opts.Security < SecurityAuto || opts.Security > Plaintext {
		problems = append(problems, mailsync.Problem{Field: "security", Code: mailsync.CodeUnknown, Message: fmt.Sprintf("%d is not a known mode", int(opts.Security))})
	}
	if opts.MaxMessages < 0 {
		problems = append(problems, mailsync.Problem{Field: "max_messages", Code: mailsync.CodeNegative, Message: "must not be negative"})
	}
	if opts.DialTimeout < 0 || opts.CommandTimeout < 0 {
		problems = append(problems, mailsync.Problem{Field: "timeouts", Code: mailsync.CodeNegative, Message: "must not be negative"})
	}
	if len(problems) > 0 {
		return nil, mailsync.NewConfigError(problems...)
	}

	sec := opts.Security
	if sec == SecurityAuto {
		sec = ImplicitTLS
		if conn.Port == 110 {
			sec = StartTLS
		}
	}
	if sec == Plaintext && !opts.AllowPlaintextLogin {
		return nil, fmt.Errorf("pop3: %s: %w (set Options.AllowPlaintextLogin to opt in)", conn.Name, mailsync.ErrPlaintextRefused)
	}
	port := conn.Port
	if port == 0 {
		port = 995
		if sec != ImplicitTLS {
			port = 110
		}
	}
	c := &config{
		opts:     opts,
		conn:     conn,
		addr:     joinHostPort(conn.Server, port),
		security: sec,
		password: opts.Password,
		tokens:   opts.TokenSource,
		dialTO:   opts.DialTimeout,
		cmdTO:    opts.CommandTimeout,
		maxMsgs:  opts.MaxMessages,
		log:      opts.Logger,
	}
	if c.dialTO == 0 {
		c.dialTO = DefaultDialTimeout
	}
	if c.cmdTO == 0 {
		c.cmdTO = DefaultCommandTimeout
	}
	if c.maxMsgs == 0 {
		c.maxMsgs = DefaultMaxMessages
	}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	c.log = c.log.With(slog.String("connection", conn.Name), slog.String("provider", "pop3"))
	if sec != Plaintext {
		var t *tls.Config
		if opts.TLSConfig != nil {
			t = opts.TLSConfig.Clone()
		} else {
			t = &tls.Config{}
		}
		if opts.RootCAs != nil {
			t.RootCAs = opts.RootCAs
		}
		if t.ServerName == "" {
			t.ServerName = conn.Server
		}
		if t.MinVersion == 0 {
			t.MinVersion = tls.VersionTLS12
		}
		c.tls = t
	}
	return c, nil
}

func hasProblem(ps []mailsync.Problem, field string) bool {
	for _, p := range ps {
		if p.Field == field {
			return true
		}
	}
	return false
}

// DefaultLoginDelay is the RetryAfter of a login refused with the RFC 2449
// [LOGIN-DELAY] response code when the server says neither in the code nor
// in its CAPA LOGIN-DELAY how long to wait.
const DefaultLoginDelay = 5 * time.Minute
