package imap

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strings"
	"time"

	"golang.org/x/oauth2"

	"github.com/mailsync/mailsync"
	"github.com/mailsync/mailsync/internal/redact"
	"github.com/mailsync/mailsync/internal/sasl"
)

// Security is how the connection to the server is protected: the shared
// mailsync.Security. The zero value, SecurityAuto, picks STARTTLS for port
// 143 and implicit TLS for every other port (993 when the port is 0).
type Security = mailsync.Security

// The security modes (see mailsync.Security).
const (
	SecurityAuto = mailsync.SecurityAuto
	ImplicitTLS  = mailsync.ImplicitTLS // IMAPS, usually port 993
	StartTLS     = mailsync.StartTLS    // the STARTTLS command, usually port 143
	Plaintext    = mailsync.Plaintext   // needs Options.AllowPlaintextLogin
)

// Options configure a Connector beyond the admin form's Connection.
type Options struct {
	// Password is the account's password, typed in at sync time and never
	// stored. Exactly one of Password and TokenSource must be set.
	Password mailsync.Secret
	// TokenSource supplies OAuth 2.0 access tokens, sent with SASL XOAUTH2
	// (default) or OAUTHBEARER instead of a password.
	TokenSource oauth2.TokenSource
	// SASLMechanism is "XOAUTH2" (default) or "OAUTHBEARER"; only used with
	// TokenSource.
	SASLMechanism string

	// Security chooses implicit TLS, STARTTLS or plaintext; see Security.
	Security Security
	// AllowPlaintextLogin is the explicit opt-in to send credentials over
	// an unencrypted connection (Security == Plaintext). Without it such a
	// connector fails with an error wrapping mailsync.ErrPlaintextRefused.
	AllowPlaintextLogin bool
	// RootCAs, when set, replaces the system roots for verifying the
	// server's certificate (e.g. a company CA or a self-signed server).
	RootCAs *x509.CertPool
	// TLSConfig, when set, is the base TLS configuration (cloned). Its
	// ServerName defaults to Connection.Server and RootCAs to the field
	// above. Certificates are always verified unless the caller's config
	// says otherwise.
	//
	// TLS sessions are resumed across connections: without a
	// ClientSessionCache of its own (and without VerifyPeerCertificate,
	// which crypto/tls skips on a resumed session), the config gets a
	// cache shared by every Connector and Watcher of the process, keyed by
	// server name, so the many mailboxes of one server cost one full
	// handshake rather than one each. A resumed session is only offered
	// when its certificate chain still verifies against this connection's
	// RootCAs and server name and has not expired (crypto/tls checks it
	// again on resumption). SessionTicketsDisabled turns resumption off.
	//
	// Without CurvePreferences, a server that answered Go's default offer
	// (the hybrid X25519MLKEM768 key share and X25519) with X25519 is
	// offered the classical groups only for the next hour, which saves
	// generating an ML-KEM key it would not use on every connection.
	TLSConfig *tls.Config

	// Folder is the mailbox to read; default "INBOX". Set Folder or
	// Folders, not both.
	Folder string
	// Folders are the mailboxes to read, each with its own position in
	// the cursor; e.g. {"INBOX", "Support"}. Names use "/" as the hierarchy
	// separator, like Folder. Only the listed folders are read: Junk,
	// Spam and every other folder are never read unless named here. The
	// first is the primary folder, whose message keys keep the form a
	// single-folder connector has always used ("<uidvalidity>:<uid>");
	// keys of the others carry the folder name (see the package doc), so
	// an existing deployment adds folders after its folder. Each listed
	// message's MessageRef.Folder is its folder's name as written here,
	// which routing rules can test ("folder").
	Folders []string
	// BatchSize is the number of messages per UID FETCH; default 100.
	BatchSize int
	// BatchBytes caps the announced size of one UID FETCH batch (a single
	// larger message is fetched alone); default 16 MiB. It bounds what has
	// to be drained when a fetch is abandoned.
	BatchBytes int64

	// ReadAhead is how many bytes of the batch being fetched may be read
	// from the network ahead of the Fetch callback, so the server keeps
	// sending while the callback parses; default 4 MiB, negative disables
	// it (bodies then stream straight from the connection).
	ReadAhead int64

	// DialTimeout bounds connecting, the TLS handshake and the greeting;
	// default 30s.
	DialTimeout time.Duration
	// CommandTimeout bounds each command twice: how long it may go
	// without any byte from the server, and how long it may take in total
	// (from sending it to its tagged completion, so a server that trickles
	// bytes cannot keep it alive). Either way the connection is closed and
	// the call fails with an error wrapping mailsync.ErrConnection; default
	// 2 minutes. Time spent in the caller's Fetch callback does not count.
	// Each 64 KiB of message body handed to the Fetch callback extends a
	// command's total by a second, so a large batch on a slow but steady
	// link completes.
	CommandTimeout time.Duration

	// DialContext, when set, replaces net.Dialer.DialContext for the TCP
	// connection (a proxy, or a test that counts commands).
	DialContext func(ctx context.Context, network, addr string) (net.Conn, error)
	// Logger receives debug and warning logs; never credentials. Default:
	// discard.
	Logger *slog.Logger
}

// Defaults.
const (
	DefaultFolder         = "INBOX"
	DefaultBatchSize      = 100
	DefaultBatchBytes     = 16 << 20
	DefaultReadAhead      = 4 << 20
	DefaultDialTimeout    = 30 * time.Second
	DefaultCommandTimeout = 2 * time.Minute
)

// config is the validated, defaulted configuration of a Connector.
type config struct {
	conn     mailsync.Connection
	opts     Options // Folder is "", Folders the folders read (at least one)
	addr     string  // host:port
	port     int
	security Security
	mech     string // "" for LOGIN
	log      *slog.Logger

	// scrub removes every secret a request carried (the password, recent
	// access tokens and SASL responses, in all their encodings) from text
	// that came from the server; see redactText.
	scrub   *redact.Scrubber
	secrets []string // what scrub knows besides the password, newest last
}

// maxRememberedSecrets bounds the tokens and SASL responses a long-lived
// connector keeps scrubbing (tokens are renewed about hourly).
const maxRememberedSecrets = 16

// rememberSecrets makes later error texts scrub vals too.
func (c *config) rememberSecrets(vals ...string) {
	c.secrets = append(c.secrets, vals...)
	if n := len(c.secrets); n > maxRememberedSecrets {
		c.secrets = c.secrets[n-maxRememberedSecrets:]
	}
	c.scrub = redact.New(append([]string{c.opts.Password.Reveal()}, c.secrets...)...)
}

// redactText removes every known secret from server text.
func (c *config) redactText(text string) string { return c.scrub.Scrub(text) }

// redactErr returns err, or when its text carries a secret an error with
// the scrubbed text that still matches what err matches (errors.Is/As).
func (c *config) redactErr(err error) error {
	if err == nil {
		return nil
	}
	text := err.Error()
	if clean := c.scrub.Scrub(text); clean != text {
		return &redactedError{text: clean, err: err}
	}
	return err
}

// redactedError is an error whose text was scrubbed of secrets. It does
// not unwrap (that would print the original text), but Is and As see the
// original chain, so sentinels still match.
type redactedError struct {
	text string
	err  error
}

func (e *redactedError) Error() string        { return e.text }
func (e *redactedError) Is(target error) bool { return errors.Is(e.err, target) }
func (e *redactedError) As(target any) bool   { return errors.As(e.err, target) }

// newConfig validates conn and opts and fills in defaults.
func newConfig(conn mailsync.Connection, opts Options) (*config, error) {
	var problems []mailsync.Problem
	add := func(field string, code mailsync.ProblemCode, msg string) {
		problems = append(problems, mailsync.Problem{Field: field, Code: code, Message: msg})
	}

	if err := conn.Validate(); err != nil {
		if ce, ok := err.(*mailsync.ConfigError); ok {
			problems = append(problems, ce.Problems...)
		} else {
			return nil, err
		}
	}
	if conn.Protocol != mailsync.IMAP {
		add("protocol", mailsync.CodeConflict, fmt.Sprintf("is %q; the imap connector needs %q", conn.Protocol, mailsync.IMAP))
	}
	switch {
	case opts.Password != "" && opts.TokenSource != nil:
		add("credentials", mailsync.CodeConflict, "give either a password or an OAuth token source, not both")
	case opts.Password == "" && opts.TokenSource == nil:
		add("credentials", mailsync.CodeRequired, "a password (typed in at sync time) or an OAuth token source is required")
	}
	mech := ""
	if opts.TokenSource != nil {
		switch m := strings.ToUpper(opts.SASLMechanism); m {
		case "", sasl.XOAuth2:
			mech = sasl.XOAuth2
		case sasl.OAuthBearer:
			mech = sasl.OAuthBearer
		default:
			problems = append(problems, mailsync.Problem{Field: "sasl_mechanism", Code: mailsync.CodeUnknown, Allowed: []string{sasl.XOAuth2, sasl.OAuthBearer},
				Message: fmt.Sprintf("%q is not XOAUTH2 or OAUTHBEARER", opts.SASLMechanism)})
		}
	} else if opts.SASLMechanism != "" {
		add("sasl_mechanism", mailsync.CodeConflict, "is only used with an OAuth token source")
	}
	if opts.Security < SecurityAuto || opts.Security > Plaintext {
		problems = append(problems, mailsync.Problem{Field: "security", Code: mailsync.CodeUnknown, Allowed: []string{"auto", "implicit-tls", "starttls", "plaintext"},
			Message: fmt.Sprintf("%d is not a Security mode", int(opts.Security))})
	}
	if strings.ContainsAny(opts.Folder, "\r\n\x00") {
		add("folder", mailsync.CodeForbiddenCharacters, "must not contain CR, LF or NUL")
	}
	if opts.Folder != "" && len(opts.Folders) > 0 {
		add("folders", mailsync.CodeConflict, "give either folder or folders, not both")
	}
	for i, f := range opts.Folders {
		switch {
		case strings.TrimSpace(f) == "":
			add(fmt.Sprintf("folders[%d]", i), mailsync.CodeRequired, "is empty")
		case strings.ContainsAny(f, "\r\n\x00"):
			add(fmt.Sprintf("folders[%d]", i), mailsync.CodeForbiddenCharacters, "must not contain CR, LF or NUL")
		default:
			for j := range i {
				if sameFolder(opts.Folders[j], f) {
					add(fmt.Sprintf("folders[%d]", i), mailsync.CodeDuplicate, fmt.Sprintf("%q is listed twice", f))
					break
				}
			}
		}
	}
	if opts.BatchSize < 0 {
		add("batch_size", mailsync.CodeNegative, "must not be negative")
	}
	if opts.BatchBytes < 0 {
		add("batch_bytes", mailsync.CodeNegative, "must not be negative")
	}
	if opts.DialTimeout < 0 || opts.CommandTimeout < 0 {
		add("timeouts", mailsync.CodeNegative, "must not be negative")
	}
	if len(problems) > 0 {
		return nil, mailsync.NewConfigError(problems...)
	}

	security := opts.Security
	if security == SecurityAuto {
		if conn.Port == 143 {
			security = StartTLS
		} else {
			security = ImplicitTLS
		}
	}
	if security == Plaintext && !opts.AllowPlaintextLogin {
		return nil, fmt.Errorf("imap: %s: %w (security is plaintext; use implicit TLS or STARTTLS, or set AllowPlaintextLogin to opt in)",
			conn.Server, mailsync.ErrPlaintextRefused)
	}
	port := conn.Port
	if port == 0 {
		port = 993
		if security == StartTLS || security == Plaintext {
			port = 143
		}
	}
	folders := slices.Clone(opts.Folders)
	if len(folders) == 0 {
		if opts.Folder == "" {
			opts.Folder = DefaultFolder
		}
		folders = []string{opts.Folder}
	}
	opts.Folder, opts.Folders = "", folders
	if opts.BatchSize == 0 {
		opts.BatchSize = DefaultBatchSize
	}
	if opts.BatchBytes == 0 {
		opts.BatchBytes = DefaultBatchBytes
	}
	if opts.ReadAhead == 0 {
		opts.ReadAhead = DefaultReadAhead
	}
	if opts.DialTimeout == 0 {
		opts.DialTimeout = DefaultDialTimeout
	}
	if opts.CommandTimeout == 0 {
		opts.CommandTimeout = DefaultCommandTimeout
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With(slog.String("connection", conn.Name), slog.String("provider", "imap"))
	return &config{
		conn:     conn,
		opts:     opts,
		addr:     net.JoinHostPort(conn.Server, fmt.Sprint(port)),
		port:     port,
		security: security,
		mech:     mech,
		log:      log,
		scrub:    redact.New(opts.Password.Reveal()),
	}, nil
}

// tlsConfig returns the TLS configuration for the server.
func (c *config) tlsConfig() *tls.Config {
	var cfg *tls.Config
	if c.opts.TLSConfig != nil {
		cfg = c.opts.TLSConfig.Clone()
	} else {
		cfg = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	if cfg.ServerName == "" {
		cfg.ServerName = c.conn.Server
	}
	if cfg.RootCAs == nil && c.opts.RootCAs != nil {
		cfg.RootCAs = c.opts.RootCAs
	}
	if cfg.ClientSessionCache == nil && cfg.VerifyPeerCertificate == nil {
		cfg.ClientSessionCache = sessionCache
	}
	if cfg.CurvePreferences == nil && classicalOffer(c.addr) {
		cfg.CurvePreferences = classicalGroups // see tlsgroups.go
	}
	return cfg
}

// sessionCache keeps the TLS sessions of the process's connections for
// resumption, one per server name (crypto/tls's cache key), so the
// mailboxes of one server share them; see Options.TLSConfig. On
// resumption crypto/tls verifies the cached chain again against the new
// connection's RootCAs, server name and time (Go 1.26, the go.mod
// minimum), so sharing it across connectors with different roots keeps
// their verification.
var sessionCache = tls.NewLRUClientSessionCache(sessionCacheSize)

// sessionCacheSize is how many servers' sessions are kept.
const sessionCacheSize = 256

// String describes the options without credentials.
func (o Options) String() string {
	auth := "password"
	switch {
	case o.TokenSource != nil:
		auth = "oauth " + o.SASLMechanism
	case o.Password == "":
		auth = "none"
	}
	folders := ""
	if len(o.Folders) > 0 {
		folders = fmt.Sprintf(" folders=%q", o.Folders)
	}
	return fmt.Sprintf("imap.Options{auth=%s security=%s allow_plaintext_login=%t folder=%q%s batch=%d}",
		strings.TrimSpace(auth), o.Security, o.AllowPlaintextLogin, o.Folder, folders, o.BatchSize)
}

// Format prints String for every verb, so no verb reaches the credentials.
func (o Options) Format(f fmt.State, _ rune) { fmt.Fprint(f, o.String()) }
