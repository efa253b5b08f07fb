package mailsync

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"strings"
	"unicode"
)

// Protocol is the mail protocol of a password connection.
type Protocol string

// The protocols of the admin form's "Protocolo mail" field.
const (
	IMAP Protocol = "imap"
	POP3 Protocol = "pop3"
)

// OAuthProvider names the OAuth provider of a connection.
type OAuthProvider string

// The OAuth providers of the admin form.
const (
	MicrosoftGraph OAuthProvider = "microsoft_graph"
	GmailAPI       OAuthProvider = "gmail_api"
)

// Connection is one e-mail connection as the admin configures it: exactly the
// fields of the connection form. It is JSON-serialisable because the host
// stores it; it has no password field, since the password is typed in at
// sync time and handed to the provider package as a credential.
type Connection struct {
	// Name identifies the connection; state and idempotency keys are scoped by it.
	Name string `json:"name"`
	// Enabled is the form's on/off switch. Sync refuses a disabled connection.
	Enabled bool `json:"enabled"`
	// User is the account (user name or e-mail address) used to sync.
	User string `json:"user"`
	// Server is the mail server's host name or IP address.
	Server string `json:"server,omitempty"`
	// Port is the server's port; 0 means the protocol's TLS default (993, 995).
	Port int `json:"port,omitempty"`
	// Protocol is IMAP or POP3. It may be empty for an OAuth API connection;
	// custom providers use a name starting with "x-" (e.g. "x-maildir").
	Protocol Protocol `json:"protocol,omitempty"`
	// OAuth, when set, replaces the password.
	OAuth *OAuth `json:"oauth,omitempty"`
	// ConnectedWith lists the ticket types this connection serves.
	ConnectedWith []string `json:"connected_with"`
}

// OAuth is the OAuth block of a connection.
type OAuth struct {
	// Provider is MicrosoftGraph or GmailAPI.
	Provider OAuthProvider `json:"provider"`
	// ClientID is the application's public identifier.
	ClientID string `json:"client_id"`
	// ClientSecret is the application's confidential key. It never prints.
	ClientSecret Secret `json:"client_secret"`
	// TenantID is the Microsoft directory (tenant) ID; Microsoft only.
	TenantID string `json:"tenant_id,omitempty"`
	// RefreshToken is the long-lived token that yields access tokens. It never prints.
	RefreshToken Secret `json:"refresh_token"`
	// TokenURL is the token endpoint (the admin form asks it for Microsoft).
	// Empty means https://login.microsoftonline.com/{tenant}/oauth2/v2.0/token
	// for Microsoft and https://oauth2.googleapis.com/token for Google.
	TokenURL string `json:"token_url,omitempty"`
	// Scopes are the permissions asked for.
	Scopes []string `json:"scopes,omitempty"`
}

// EffectiveTokenURL returns TokenURL, or the default derived from the
// provider (and, for Microsoft, the tenant) when it is empty.
func (o *OAuth) EffectiveTokenURL() string {
	if o.TokenURL != "" {
		return o.TokenURL
	}
	switch o.Provider {
	case MicrosoftGraph:
		return "https://login.microsoftonline.com/" + url.PathEscape(o.TenantID) + "/oauth2/v2.0/token"
	case GmailAPI:
		return "https://oauth2.googleapis.com/token"
	}
	return ""
}

// String describes the connection without any secret.
func (c Connection) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "connection %q (user %q", c.Name, c.User)
	if c.Server != "" {
		fmt.Fprintf(&b, ", %s", net.JoinHostPort(c.Server, fmt.Sprint(c.Port)))
	}
	if c.Protocol != "" {
		fmt.Fprintf(&b, ", %s", c.Protocol)
	}
	if c.OAuth != nil {
		fmt.Fprintf(&b, ", oauth %s", c.OAuth.Provider)
	}
	if !c.Enabled {
		b.WriteString(", disabled")
	}
	b.WriteString(")")
	return b.String()
}

// Format implements fmt.Formatter: %v, %+v and %#v print String, so no
// verb can reach the OAuth secrets.
func (c Connection) Format(f fmt.State, verb rune) { io.WriteString(f, c.String()) }

// LogValue implements slog.LogValuer with the non-secret fields only.
func (c Connection) LogValue() slog.Value {
	attrs := []slog.Attr{slog.String("name", c.Name), slog.String("user", c.User)}
	if c.Server != "" {
		attrs = append(attrs, slog.String("server", c.Server), slog.Int("port", c.Port))
	}
	if c.Protocol != "" {
		attrs = append(attrs, slog.String("protocol", string(c.Protocol)))
	}
	if c.OAuth != nil {
		attrs = append(attrs, slog.String("oauth", string(c.OAuth.Provider)))
	}
	return slog.GroupValue(attrs...)
}

// String describes the OAuth block with its secrets redacted.
func (o OAuth) String() string {
	return fmt.Sprintf("oauth{provider=%s client_id=%s client_secret=%s tenant_id=%s refresh_token=%s token_url=%s scopes=%v}",
		o.Provider, o.ClientID, o.ClientSecret, o.TenantID, o.RefreshToken, o.TokenURL, o.Scopes)
}

// Format implements fmt.Formatter so every verb prints String.
func (o OAuth) Format(f fmt.State, verb rune) { io.WriteString(f, o.String()) }

// LogValue implements slog.LogValuer with the secrets redacted.
func (o OAuth) LogValue() slog.Value {
	return slog.GroupValue(slog.String("provider", string(o.Provider)), slog.String("client_id", o.ClientID),
		slog.String("tenant_id", o.TenantID), slog.Any("scopes", o.Scopes))
}

// Validate reports every problem of the configuration at once as a
// *ConfigError (which matches ErrInvalidConfig), or nil.
func (c Connection) Validate() error {
	var e ConfigError
	if strings.TrimSpace(c.Name) == "" {
		e.add("name", CodeRequired, "is required")
	}
	api := c.OAuth != nil && (c.OAuth.Provider == MicrosoftGraph || c.OAuth.Provider == GmailAPI) && c.Protocol == ""
	if strings.TrimSpace(c.User) == "" {
		e.add("user", CodeRequired, "is required")
	} else if strings.ContainsAny(c.User, "\r\n\x00") {
		e.add("user", CodeForbiddenCharacters, "must not contain CR, LF or NUL")
	}
	switch c.Protocol {
	case IMAP, POP3:
		if strings.TrimSpace(c.Server) == "" {
			e.add("server", CodeRequired, "is required for "+string(c.Protocol))
		} else if code, problem := checkServerName(c.Server); problem != "" {
			e.addp(Problem{Field: "server", Code: code, Message: problem, Limit: limitOf(code, 253)})
		}
	case "":
		if !api {
			e.add("protocol", CodeRequired, `is required ("imap" or "pop3") unless an OAuth API provider is set`)
		}
	default:
		if !strings.HasPrefix(string(c.Protocol), "x-") {
			e.addp(Problem{Field: "protocol", Code: CodeUnknown, Allowed: []string{string(IMAP), string(POP3), "x-<name>"},
				Message: fmt.Sprintf("%q is not one of \"imap\", \"pop3\" (custom providers use \"x-<name>\")", c.Protocol)})
		}
	}
	if c.Port < 0 || c.Port > 65535 {
		e.addp(Problem{Field: "port", Code: CodeOutOfRange, Limit: 65535, Message: fmt.Sprintf("%d is out of range 1-65535", c.Port)})
	}
	if len(c.ConnectedWith) == 0 {
		e.add("connected_with", CodeRequired, "names no ticket type")
	}
	for i, t := range c.ConnectedWith {
		if strings.TrimSpace(t) == "" {
			e.add(fmt.Sprintf("connected_with[%d]", i), CodeRequired, "is empty")
		}
	}
	if o := c.OAuth; o != nil {
		switch o.Provider {
		case MicrosoftGraph, GmailAPI:
		default:
			e.addp(Problem{Field: "oauth.provider", Code: CodeUnknown, Allowed: []string{string(MicrosoftGraph), string(GmailAPI)},
				Message: fmt.Sprintf("%q is not one of %q, %q", o.Provider, MicrosoftGraph, GmailAPI)})
		}
		if o.ClientID == "" {
			e.add("oauth.client_id", CodeRequired, "is required")
		}
		if o.ClientSecret == "" {
			e.add("oauth.client_secret", CodeRequired, "is required")
		}
		if o.RefreshToken == "" {
			e.add("oauth.refresh_token", CodeRequired, "is required")
		}
		if o.Provider == MicrosoftGraph && o.TenantID == "" {
			e.add("oauth.tenant_id", CodeRequired, "is required for Microsoft Graph")
		}
		if o.Provider == GmailAPI && o.TenantID != "" {
			e.add("oauth.tenant_id", CodeConflict, "is only used with Microsoft Graph")
		}
		if o.TokenURL != "" {
			if code, problem := checkEndpointURL(o.TokenURL); problem != "" {
				e.add("oauth.token_url", code, problem)
			}
		}
		for i, s := range o.Scopes {
			if strings.TrimSpace(s) == "" || strings.ContainsAny(s, " \t\r\n") {
				e.add(fmt.Sprintf("oauth.scopes[%d]", i), CodeForbiddenCharacters, "must be one scope without spaces")
			}
		}
	}
	if len(e.Problems) == 0 {
		return nil
	}
	return &e
}

// checkServerName returns what is wrong with a server name, or "": it must
// be a bare host name or IP address — no port (the port has its own
// field), no brackets, no scheme or path, no white space or control
// characters. code is the Problem's Code.
func checkServerName(server string) (code ProblemCode, problem string) {
	switch {
	case hasControl(server) || strings.ContainsAny(server, " "):
		return CodeForbiddenCharacters, "must not contain spaces or control characters"
	case strings.Contains(server, "://") || strings.Contains(server, "/"):
		return CodeNotHostName, "must be a host name or IP address, not a URL"
	case strings.HasPrefix(server, "["):
		return CodePortInServer, "write an IPv6 address without brackets (the port goes in the port field)"
	case net.ParseIP(server) != nil:
		return "", ""
	case strings.Contains(server, ":"):
		return CodePortInServer, "must not include a port: put it in the port field"
	case len(server) > 253:
		return CodeTooLong, "is longer than 253 characters"
	}
	for _, label := range strings.Split(strings.TrimSuffix(server, "."), ".") {
		if label == "" || len(label) > 63 {
			return CodeInvalid, "is not a valid host name (empty or over-long label)"
		}
		for _, r := range label {
			ok := r == '-' || r == '_' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r > 0x7f && unicode.IsLetter(r)
			if !ok {
				return CodeInvalid, fmt.Sprintf("is not a valid host name (%q)", r)
			}
		}
	}
	return "", ""
}

// limitOf returns limit for CodeTooLong and CodeOutOfRange, else 0.
func limitOf(code ProblemCode, limit int) int {
	if code == CodeTooLong || code == CodeOutOfRange {
		return limit
	}
	return 0
}

// CheckEndpointURL returns what is wrong with an OAuth or API endpoint URL,
// or "" when it is acceptable: absolute, https (plain http only for a
// loopback host, for tests and local proxies), and without user
// information (credentials in a URL end up in logs). oauthx applies the
// same rule.
func CheckEndpointURL(raw string) string {
	_, problem := checkEndpointURL(raw)
	return problem
}

// EndpointURLProblem is CheckEndpointURL as a Problem of field, with its
// Code; bad is false when the URL is acceptable.
func EndpointURLProblem(field, raw string) (p Problem, bad bool) {
	code, msg := checkEndpointURL(raw)
	return Problem{Field: field, Code: code, Message: msg}, msg != ""
}

// checkEndpointURL is CheckEndpointURL with the Problem's Code.
func checkEndpointURL(raw string) (code ProblemCode, problem string) {
	u, err := url.Parse(raw)
	switch {
	case err != nil || u.Host == "" || u.Opaque != "":
		return CodeInvalid, "is not an absolute URL"
	case u.User != nil:
		return CodeInsecure, "must not carry a user name or password (user:pass@)"
	case hasControl(raw):
		return CodeForbiddenCharacters, "must not contain control characters"
	case u.Scheme == "https":
		return "", ""
	case u.Scheme == "http" && IsLoopbackHost(u.Hostname()):
		return "", ""
	case u.Scheme == "http":
		return CodeInsecure, "must use https (plain http is allowed only for a loopback host)"
	}
	return CodeInsecure, "must use https"
}

// IsLoopbackHost reports whether host (without port) is "localhost" or a
// loopback IP address (127.0.0.0/8, ::1).
func IsLoopbackHost(host string) bool {
	if strings.EqualFold(strings.TrimSuffix(host, "."), "localhost") {
		return true
	}
	ip := net.ParseIP(strings.Trim(host, "[]"))
	return ip != nil && ip.IsLoopback()
}

func hasControl(s string) bool {
	for _, r := range s {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) {
			return true
		}
	}
	return false
}

// ServesTicketType reports whether ticketType is in ConnectedWith.
func (c Connection) ServesTicketType(ticketType string) bool {
	for _, t := range c.ConnectedWith {
		if t == ticketType {
			return true
		}
	}
	return false
}

// Connector is one mail source. Provider packages (imap, pop3, graph, gmail)
// return one; a custom provider implements it. Sync drives it; a host rarely
// calls it directly.
//
// A Connector is used by one goroutine at a time. The methods are called in
// the order List, then any number of Fetch and Ack calls, then Close.
//
// Who retries: Sync. A connector reports a temporary failure as a typed
// error — ErrConnection, ErrMailboxBusy, ErrThrottled (*ThrottledError
// with the server's RetryAfter) — and does not loop on it; Sync retries the
// operation with back-off for the refs not yet handled (WithRetry), and
// ends the sync when the server asks to wait longer than its longest wait,
// so the host schedules the next run. A connector retries only what Sync
// cannot retry at a finer grain, a few times and never longer than Sync
// would wait: one throttled request among many of one call (Gmail's
// per-message calls and batch parts), a request its vendor SDK resends
// after a 429 or 503 (Graph), and a login with a refreshed token after
// the server refused an expired one. A server that breaks a bound
// (ErrServerLimit) is not retried at all.
//
// Optional interfaces: Checker (the admin's "test connection").
type Connector interface {
	// Connection returns the configuration the connector was made from.
	Connection() Connection
	// List returns the messages that arrived after cursor (all messages
	// when cursor is empty), with the cursor to keep once all of them are
	// done. A sync with nothing new must cost a constant number of round
	// trips, whatever the mailbox size.
	List(ctx context.Context, cursor Cursor) (*Listing, error)
	// Fetch streams the raw RFC 5322 bytes of refs, in order, to fn. The
	// reader is valid only during the call to fn. An error from fn stops
	// the fetch and is returned. For a ref that is gone from the mailbox,
	// call fn(ref, nil): Sync records it as gone and may move the cursor
	// past it. A ref that is neither delivered nor reported gone keeps the
	// cursor where it was, so it is listed again next time.
	Fetch(ctx context.Context, refs []MessageRef, fn func(MessageRef, io.Reader) error) error
	// Ack applies action to refs, whose tickets the sink has stored.
	// A connector that cannot perform an action returns ErrUnsupported.
	Ack(ctx context.Context, refs []MessageRef, action PostAction) error
	// Close logs out and releases the connection.
	Close() error
}

// Cursor is a provider's opaque position in a mailbox (IMAP UIDVALIDITY and
// UID, Graph delta link, Gmail history id). Sync persists it in the State.
type Cursor string

// MessageRef identifies one message of a listing.
type MessageRef struct {
	// Key is stable and unique within the connection: IMAP UIDVALIDITY and
	// UID, POP3 UIDL, Graph immutable id, Gmail id.
	Key string
	// Size is the raw size in bytes when the source knows it, otherwise -1.
	Size int64
	// Folder is the folder (or label) the message was listed in, for
	// providers that read several; rules can test it ("folder").
	Folder string
}

// Listing is the answer to Connector.List.
type Listing struct {
	// Messages are the candidates, oldest first.
	Messages []MessageRef
	// Cursor is the position to persist once every message is done.
	Cursor Cursor
	// Complete says Messages is the whole mailbox, not a delta: Sync may
	// then forget processed keys that are no longer listed (POP3).
	Complete bool
	// Notes explain unusual events, e.g. a changed UIDVALIDITY or an
	// expired delta token that forced a full re-list. They reach the Report.
	Notes []string
}

// ActionKind is what happens to a message once its ticket is stored.
type ActionKind string

// The post-actions.
const (
	// LeaveUntouched leaves the message as it is (the default).
	LeaveUntouched ActionKind = ""
	// MarkRead marks the message as read (IMAP \Seen, Graph isRead, Gmail -UNREAD).
	MarkRead ActionKind = "mark_read"
	// MoveToFolder moves the message to PostAction.Folder (Gmail: relabels).
	MoveToFolder ActionKind = "move"
	// Delete deletes the message (Gmail: trash).
	Delete ActionKind = "delete"
)

// PostAction is applied to a message after the sink stored its ticket.
type PostAction struct {
	Kind ActionKind `json:"kind,omitempty"`
	// Folder is the destination of MoveToFolder.
	Folder string `json:"folder,omitempty"`
}

// Validate checks the action's fields.
func (a PostAction) Validate() error {
	var e ConfigError
	switch a.Kind {
	case LeaveUntouched, MarkRead, Delete:
		if a.Folder != "" {
			e.add("post_action.folder", CodeConflict, "is only used with \"move\"")
		}
	case MoveToFolder:
		if strings.TrimSpace(a.Folder) == "" {
			e.add("post_action.folder", CodeRequired, "is required with \"move\"")
		} else if hasControl(a.Folder) {
			e.add("post_action.folder", CodeForbiddenCharacters, "must not contain control characters (CR, LF, TAB, NUL …)")
		} else if len(a.Folder) > 255 {
			e.addp(Problem{Field: "post_action.folder", Code: CodeTooLong, Limit: 255, Message: "is longer than 255 bytes"})
		}
	default:
		e.addp(Problem{Field: "post_action.kind", Code: CodeUnknown, Allowed: []string{"", string(MarkRead), string(MoveToFolder), string(Delete)},
			Message: fmt.Sprintf("%q is not one of \"\", mark_read, move, delete", a.Kind)})
	}
	if len(e.Problems) == 0 {
		return nil
	}
	return &e
}
