// Package oauthx builds OAuth 2.0 token sources for mailsync connections
// from the connection's OAuth block (Microsoft identity platform or Google),
// on top of golang.org/x/oauth2.
//
// What it adds to x/oauth2:
//
//   - Rotated refresh tokens reach the host: when the token endpoint returns
//     a new refresh token, Options.OnRefreshToken is called so the host can
//     store it (a mailbox otherwise dies months later because the rotated
//     token was never saved). When none comes back the old one is kept.
//   - Typed errors: every refresh failure is an *Error whose Is matches a
//     mailsync sentinel, so the host can tell "an admin must consent again"
//     (mailsync.ErrConsentRequired) from "retry later"
//     (mailsync.ErrConnection) and "the OAuth client is misconfigured"
//     (ErrMisconfigured, which also matches mailsync.ErrAuth).
//   - Credentials go in the request body (oauth2.AuthStyleInParams), so a
//     failing refresh costs one request, not the two of auto-detection.
//   - Refreshes run on a context that outlives the request that triggered
//     them, with an HTTP client that has timeouts.
//   - No secret (client secret, refresh or access token) appears in an
//     error, a log record or the String of the token source: text from the
//     token endpoint (error, error_description, unparsable answers) and
//     transport errors are scrubbed of every secret in every encoding a
//     request may have carried it in (internal/redact: raw, URL-encoded,
//     JSON-quoted, base64), and error_uri and raw bodies are never kept.
//
// The *TokenSource is a plain oauth2.TokenSource, so it plugs into IMAP/POP3
// SASL XOAUTH2/OAUTHBEARER clients and into the graph and gmail providers.
package oauthx

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/mailsync/mailsync"
	"github.com/mailsync/mailsync/internal/redact"
	"golang.org/x/oauth2"
)

// Default scope sets, returned fresh on every call so no caller can change
// another's.

// MicrosoftGraphScopes is the default for Microsoft: Graph mail read/write
// plus offline_access, which is what yields refresh tokens.
func MicrosoftGraphScopes() []string {
	return []string{"https://graph.microsoft.com/Mail.ReadWrite", "offline_access"}
}

// GmailScopes is the default for Google: read and modify (labels, trash).
func GmailScopes() []string { return []string{"https://www.googleapis.com/auth/gmail.modify"} }

// MicrosoftIMAPScopes are the scopes for Microsoft 365 IMAP (XOAUTH2/OAUTHBEARER).
func MicrosoftIMAPScopes() []string {
	return []string{"https://outlook.office365.com/IMAP.AccessAsUser.All", "offline_access"}
}

// MicrosoftPOPScopes are the scopes for Microsoft 365 POP3.
func MicrosoftPOPScopes() []string {
	return []string{"https://outlook.office365.com/POP.AccessAsUser.All", "offline_access"}
}

// GmailIMAPScopes is the scope for Gmail over IMAP or POP3.
func GmailIMAPScopes() []string { return []string{"https://mail.google.com/"} }

// Options tune New. The zero value is usable.
type Options struct {
	// Scopes are asked for when the OAuth block names none. Default:
	// MicrosoftGraphScopes or GmailScopes by provider; an IMAP or POP3
	// connection passes MicrosoftIMAPScopes, MicrosoftPOPScopes or
	// GmailIMAPScopes.
	Scopes []string
	// TokenURL overrides the token endpoint of the OAuth block (tests,
	// sovereign clouds). It must be https, except for a loopback host
	// (127.0.0.0/8, ::1, localhost) where http is allowed for tests, and
	// must not carry a user name or password (user:pass@); the same rules
	// apply to the OAuth block's token_url.
	TokenURL string
	// HTTPClient sends the token requests. Default: a client with a 30 s
	// timeout on top of http.DefaultTransport's settings.
	HTTPClient *http.Client
	// OnRefreshToken is called, with the refresh token's new value, each
	// time the endpoint rotates it. The host must store it as the
	// connection's refresh_token. If it returns an error the new token is
	// kept in memory, the refresh that got it fails with an *Error of code
	// CodeRefreshTokenNotStored, and the callback is tried again before
	// the next token is handed out.
	OnRefreshToken func(ctx context.Context, newToken mailsync.Secret) error
	// ExpiryDelta is how long before its expiry an access token is
	// refreshed. Default 1 minute.
	ExpiryDelta time.Duration
	// Logger receives refresh events (never a secret). Default: discard.
	Logger *slog.Logger
	// Now is the clock, for tests. Default time.Now.
	Now func() time.Time
}

// Codes of *Error that are not OAuth error codes from the token endpoint.
const (
	// CodeNetwork: the token endpoint could not be reached or did not answer in time.
	CodeNetwork = "network_error"
	// CodeServer: the token endpoint answered 5xx, 429 or with something
	// that is not a token response.
	CodeServer = "server_error"
	// CodeRefreshTokenNotStored: OnRefreshToken failed.
	CodeRefreshTokenNotStored = "refresh_token_not_stored"
)

// ErrMisconfigured is matched by an *Error caused by the OAuth client's
// configuration rather than the user's grant: invalid_client (wrong or
// expired client secret, unknown client id), unauthorized_client,
// invalid_scope, unsupported_grant_type and invalid_request (for example
// an unknown tenant, AADSTS90002). Such an error also matches
// mailsync.ErrAuth: the admin has to fix the connection's OAuth fields.
var ErrMisconfigured = errors.New("oauthx: OAuth client misconfigured")

// Error is a failed token refresh. It never contains a secret.
//
// errors.Is(err, X) is true for:
//   - invalid_grant, interaction_required, consent_required:
//     mailsync.ErrConsentRequired and mailsync.ErrAuth;
//   - invalid_client, unauthorized_client, invalid_scope,
//     unsupported_grant_type, invalid_request: ErrMisconfigured and mailsync.ErrAuth;
//   - network failures, timeouts, HTTP 5xx and 429 (CodeNetwork, CodeServer,
//     temporarily_unavailable): mailsync.ErrConnection (retry later);
//   - CodeRefreshTokenNotStored: neither; it unwraps to the callback's error;
//   - any other OAuth error code: mailsync.ErrAuth.
type Error struct {
	// Code is the OAuth "error" parameter (invalid_grant, invalid_client,
	// …) or one of CodeNetwork, CodeServer, CodeRefreshTokenNotStored.
	Code string
	// Description is the endpoint's error_description (for Microsoft it
	// starts with the AADSTS code), with any secret removed, at most 300 bytes.
	Description string
	// StatusCode is the HTTP status of the token response, 0 if none.
	StatusCode int
	// Err is the underlying cause, if any (a network error, the callback's
	// error). It never carries the request body.
	Err error
}

// Error describes the failure: code, HTTP status and description, no secret.
func (e *Error) Error() string {
	s := "oauthx: token refresh failed: " + e.Code
	if e.StatusCode != 0 {
		s += fmt.Sprintf(" (HTTP %d)", e.StatusCode)
	}
	if e.Description != "" {
		s += ": " + e.Description
	}
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

// Unwrap returns the cause.
func (e *Error) Unwrap() error { return e.Err }

// Is matches the mailsync sentinels listed on Error.
func (e *Error) Is(target error) bool {
	switch e.Code {
	case CodeRefreshTokenNotStored:
		return false
	case CodeNetwork, CodeServer, "temporarily_unavailable":
		return target == mailsync.ErrConnection
	case "invalid_grant", "interaction_required", "consent_required", "login_required":
		return target == mailsync.ErrConsentRequired || target == mailsync.ErrAuth
	case "invalid_client", "unauthorized_client", "invalid_scope", "unsupported_grant_type", "invalid_request":
		return target == ErrMisconfigured || target == mailsync.ErrAuth
	}
	return target == mailsync.ErrAuth
}

// TokenSource is an oauth2.TokenSource that refreshes access tokens with
// the connection's refresh token, reports rotated refresh tokens and
// returns *Error on failure. It is safe for concurrent use; concurrent
// callers share one refresh.
type TokenSource struct {
	cfg      oauth2.Config
	provider mailsync.OAuthProvider
	client   *http.Client
	base     context.Context // long-lived: refreshes outlive the caller's request
	onRotate func(ctx context.Context, newToken mailsync.Secret) error
	delta    time.Duration
	log      *slog.Logger
	now      func() time.Time

	lock chan struct{} // held during a refresh; a channel so waiting honours ctx

	mu           sync.Mutex
	refreshToken string
	token        *oauth2.Token
	pending      string // rotated refresh token the host has not stored yet
	// scrubber removes, in every encoding, each secret a request carried
	// or a response handed out (client secret, every refresh and access
	// token seen) from text that came from a server.
	scrubber *redact.Scrubber
}

// New returns a token source for the OAuth block o. ctx is only used for
// its values (the refreshes outlive it: they run on
// context.WithoutCancel(ctx) bounded by the HTTP client's timeout). New
// makes no request; the first Token call refreshes.
func New(ctx context.Context, o *mailsync.OAuth, opts Options) (*TokenSource, error) {
	if o == nil {
		return nil, mailsync.NewConfigError(mailsync.Problem{Field: "oauth", Code: mailsync.CodeRequired, Message: "is required"})
	}
	var probs []mailsync.Problem
	switch o.Provider {
	case mailsync.MicrosoftGraph, mailsync.GmailAPI:
	default:
		probs = append(probs, mailsync.Problem{Field: "oauth.provider", Code: mailsync.CodeUnknown, Allowed: []string{string(mailsync.MicrosoftGraph), string(mailsync.GmailAPI)}, Message: fmt.Sprintf("%q is not one of %q, %q", o.Provider, mailsync.MicrosoftGraph, mailsync.GmailAPI)})
	}
	if o.ClientID == "" {
		probs = append(probs, mailsync.Problem{Field: "oauth.client_id", Code: mailsync.CodeRequired, Message: "is required"})
	}
	if o.RefreshToken == "" {
		probs = append(probs, mailsync.Problem{Field: "oauth.refresh_token", Code: mailsync.CodeRequired, Message: "is required"})
	}
	if o.Provider == mailsync.MicrosoftGraph && o.TenantID == "" && o.TokenURL == "" && opts.TokenURL == "" {
		probs = append(probs, mailsync.Problem{Field: "oauth.tenant_id", Code: mailsync.CodeRequired, Message: "is required for Microsoft Graph"})
	}
	tokenURL := opts.TokenURL
	field := "token_url option"
	if tokenURL == "" {
		tokenURL, field = o.EffectiveTokenURL(), "oauth.token_url"
	}
	if tokenURL != "" {
		// mailsync.CheckEndpointURL's rule: absolute, https (http only for
		// a loopback host), and without user:pass@ — credentials in the URL
		// would go out in every request and into every error that names it.
		if p, bad := mailsync.EndpointURLProblem(field, tokenURL); bad {
			probs = append(probs, p)
		}
	}
	if len(probs) > 0 {
		return nil, mailsync.NewConfigError(probs...)
	}
	scopes := append([]string(nil), o.Scopes...)
	if len(scopes) == 0 {
		scopes = append(scopes, opts.Scopes...)
	}
	if len(scopes) == 0 {
		if o.Provider == mailsync.MicrosoftGraph {
			scopes = append(scopes, MicrosoftGraphScopes()...)
		} else {
			scopes = append(scopes, GmailScopes()...)
		}
	}
	client := opts.HTTPClient
	if client == nil {
		client = &http.Client{Timeout: 30 * time.Second}
	}
	if o.Provider == mailsync.MicrosoftGraph {
		// x/oauth2 sends no scope with a refresh_token grant
		// (golang/oauth2#540); the Microsoft identity platform needs it to
		// pick the resource (Graph, or Outlook IMAP/POP) the token is for.
		c := *client
		c.Transport = &scopeTransport{base: client.Transport, scope: strings.Join(scopes, " ")}
		client = &c
	}
	if ctx == nil {
		ctx = context.Background()
	}
	ts := &TokenSource{
		cfg: oauth2.Config{
			ClientID:     o.ClientID,
			ClientSecret: o.ClientSecret.Reveal(),
			Endpoint:     oauth2.Endpoint{TokenURL: tokenURL, AuthStyle: oauth2.AuthStyleInParams},
			Scopes:       scopes,
		},
		provider:     o.Provider,
		client:       client,
		base:         context.WithoutCancel(ctx),
		onRotate:     opts.OnRefreshToken,
		delta:        opts.ExpiryDelta,
		log:          opts.Logger,
		now:          opts.Now,
		lock:         make(chan struct{}, 1),
		refreshToken: o.RefreshToken.Reveal(),
	}
	if ts.delta <= 0 {
		ts.delta = time.Minute
	}
	if ts.log == nil {
		ts.log = slog.New(slog.DiscardHandler)
	}
	if ts.now == nil {
		ts.now = time.Now
	}
	ts.scrubber = redact.New()
	ts.addSecrets(o.ClientSecret.Reveal(), o.RefreshToken.Reveal())
	return ts, nil
}

// Token returns a valid access token, refreshing it when it expires within
// ExpiryDelta. It implements oauth2.TokenSource.
func (s *TokenSource) Token() (*oauth2.Token, error) {
	return s.TokenContext(s.base)
}

// TokenContext is Token with a context that bounds waiting for, and
// making, a refresh.
func (s *TokenSource) TokenContext(ctx context.Context) (*oauth2.Token, error) {
	if tok, ok := s.cached(); ok {
		return tok, nil
	}
	select {
	case s.lock <- struct{}{}:
	case <-ctx.Done():
		return nil, &Error{Code: CodeNetwork, Err: ctx.Err()}
	}
	defer func() { <-s.lock }()
	// Another caller may have refreshed while we waited.
	if tok, ok := s.cached(); ok {
		return tok, nil
	}
	if err := s.storePending(ctx); err != nil {
		return nil, err
	}
	if tok, ok := s.cached(); ok {
		return tok, nil
	}
	return s.refresh(ctx)
}

// cached returns the current access token if it is valid for longer than
// the expiry delta and no rotated token awaits storing.
func (s *TokenSource) cached() (*oauth2.Token, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.pending != "" || s.token == nil || s.token.AccessToken == "" {
		return nil, false
	}
	if !s.token.Expiry.IsZero() && !s.now().Add(s.delta).Before(s.token.Expiry) {
		return nil, false
	}
	t := *s.token
	return &t, true
}

// Invalidate drops the cached access token if it is still tok's, so the
// next Token call refreshes. Call it when a server rejected tok (HTTP 401)
// before its expiry, e.g. after a password reset or a revoked session.
func (s *TokenSource) Invalidate(tok *oauth2.Token) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.token != nil && (tok == nil || tok.AccessToken == s.token.AccessToken) {
		s.token = nil
	}
}

// storePending retries a failed OnRefreshToken call.
func (s *TokenSource) storePending(ctx context.Context) error {
	s.mu.Lock()
	p := s.pending
	s.mu.Unlock()
	if p == "" {
		return nil
	}
	if err := s.callRotate(ctx, p); err != nil {
		return err
	}
	s.mu.Lock()
	if s.pending == p {
		s.pending = ""
	}
	s.mu.Unlock()
	return nil
}

func (s *TokenSource) callRotate(ctx context.Context, newToken string) error {
	if s.onRotate == nil {
		s.log.WarnContext(ctx, "oauthx: refresh token rotated but no OnRefreshToken callback stores it", "provider", string(s.provider))
		return nil
	}
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	if err := s.onRotate(cctx, mailsync.Secret(newToken)); err != nil {
		err = &Error{Code: CodeRefreshTokenNotStored, Err: s.scrubErr(err)}
		s.log.ErrorContext(ctx, "oauthx: storing the rotated refresh token failed; will retry", "provider", string(s.provider), "error", err)
		return err
	}
	s.log.InfoContext(ctx, "oauthx: rotated refresh token stored", "provider", string(s.provider))
	return nil
}

// refresh runs one refresh_token grant. The caller holds s.lock.
func (s *TokenSource) refresh(ctx context.Context) (*oauth2.Token, error) {
	s.mu.Lock()
	rt := s.refreshToken
	s.mu.Unlock()
	// The request runs on a context that keeps ctx's deadline and
	// cancellation but carries our HTTP client.
	rctx := context.WithValue(ctx, oauth2.HTTPClient, s.client)
	start := s.now()
	tok, err := s.cfg.TokenSource(rctx, &oauth2.Token{RefreshToken: rt}).Token()
	if err != nil {
		e := s.classify(ctx, err)
		s.log.WarnContext(ctx, "oauthx: token refresh failed", "provider", string(s.provider), "code", e.Code, "status", e.StatusCode, "error", e)
		return nil, e
	}
	if tok.AccessToken == "" {
		e := &Error{Code: CodeServer, Description: "token response without access_token"}
		return nil, e
	}
	if tok.Expiry.IsZero() {
		// No expires_in: assume the common one-hour lifetime rather than forever.
		tok.Expiry = start.Add(time.Hour)
	}
	rotated := tok.RefreshToken != "" && tok.RefreshToken != rt
	s.mu.Lock()
	if rotated {
		s.refreshToken = tok.RefreshToken
		s.pending = tok.RefreshToken
	}
	s.token = tok
	s.mu.Unlock()
	s.addSecrets(tok.AccessToken, tok.RefreshToken)
	s.log.DebugContext(ctx, "oauthx: access token refreshed", "provider", string(s.provider), "expiry", tok.Expiry, "rotated", rotated)
	if rotated {
		if err := s.storePending(ctx); err != nil {
			return nil, err
		}
	}
	t := *tok
	return &t, nil
}

// classify turns an x/oauth2 error into an *Error without secrets. The
// response body of x/oauth2's RetrieveError is never copied.
func (s *TokenSource) classify(ctx context.Context, err error) *Error {
	var re *oauth2.RetrieveError
	if errors.As(err, &re) {
		// The code and description come from the server, which may echo
		// the request (form body, Basic credentials); error_uri and the
		// raw body are never copied.
		e := &Error{Code: clipText(s.scrub(re.ErrorCode), 100), Description: s.scrub(re.ErrorDescription)}
		if re.Response != nil {
			e.StatusCode = re.Response.StatusCode
		}
		if e.Code == "" {
			switch {
			case e.StatusCode >= 500 || e.StatusCode == http.StatusTooManyRequests || e.StatusCode == http.StatusRequestTimeout:
				e.Code = CodeServer
			case e.StatusCode == http.StatusUnauthorized:
				e.Code = "invalid_client"
			case e.StatusCode == 0 || e.StatusCode/100 == 2:
				e.Code = CodeServer
				e.Description = "unparsable token response"
			default:
				e.Code = "invalid_request"
			}
		} else if e.StatusCode >= 500 && e.Code != "invalid_grant" && e.Code != "invalid_client" {
			// Some endpoints say "server_error"/"temporarily_unavailable"
			// with a 5xx; any 5xx is worth retrying.
			e.Code = CodeServer
		}
		return e
	}
	var ue *url.Error
	if errors.As(err, &ue) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) || errors.Is(err, io.ErrUnexpectedEOF) {
		return &Error{Code: CodeNetwork, Err: s.scrubErr(err)}
	}
	var ne net.Error
	if errors.As(err, &ne) {
		return &Error{Code: CodeNetwork, Err: s.scrubErr(err)}
	}
	// x/oauth2's own errors (e.g. "server response missing access_token",
	// a body that does not parse) mean a misbehaving endpoint.
	return &Error{Code: CodeServer, Description: s.scrub(err.Error())}
}

// addSecrets adds values to the scrubber, which also learns each one's
// form-urlencoded spelling: HTTP Basic credentials of a token request are
// base64(urlencode(id) ":" urlencode(secret)) (RFC 6749 section 2.3.1).
func (s *TokenSource) addSecrets(values ...string) { s.scrubber.Add(values...) }

// scrub removes every known secret, in every encoding, from text that
// came from a server and bounds its length.
func (s *TokenSource) scrub(text string) string {
	return clipText(s.scrubber.Scrub(text), 300)
}

// clipText bounds text to n bytes (plus an ellipsis) without splitting a
// UTF-8 sequence.
func clipText(text string, n int) string {
	if len(text) > n {
		text = strings.ToValidUTF8(text[:n], "") + "…"
	}
	return text
}

func (s *TokenSource) scrubErr(err error) error { return s.scrubber.Error(err) }

// String describes the source without any secret.
func (s *TokenSource) String() string {
	return fmt.Sprintf("oauthx.TokenSource{provider=%s client_id=%s token_url=%s}", s.provider, s.cfg.ClientID, s.cfg.Endpoint.TokenURL)
}

// Format implements fmt.Formatter so that no verb (%v, %+v, %#v) reaches
// the secrets.
func (s *TokenSource) Format(f fmt.State, verb rune) { io.WriteString(f, s.String()) }

// LogValue implements slog.LogValuer without secrets.
func (s *TokenSource) LogValue() slog.Value {
	return slog.GroupValue(slog.String("provider", string(s.provider)), slog.String("client_id", s.cfg.ClientID),
		slog.String("token_url", s.cfg.Endpoint.TokenURL))
}

// TokenURL returns the token endpoint in use.
func (s *TokenSource) TokenURL() string { return s.cfg.Endpoint.TokenURL }

// Redacted describes tok for logs: its type, expiry and whether it carries
// a refresh token, never the token values. (x/oauth2's Token prints its
// values with %v; never log one directly.)
func Redacted(tok *oauth2.Token) string {
	if tok == nil {
		return "token<nil>"
	}
	return fmt.Sprintf("token{type=%s expiry=%s access=%s refresh=%s}", tok.Type(), tok.Expiry.Format(time.RFC3339),
		mailsync.Secret(tok.AccessToken), mailsync.Secret(tok.RefreshToken))
}

var _ oauth2.TokenSource = (*TokenSource)(nil)

// scopeTransport adds the scope parameter to refresh_token grants that
// lack it.
type scopeTransport struct {
	base  http.RoundTripper
	scope string
}

// RoundTrip adds the scope to refresh_token grants and sends the request.
func (t *scopeTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	base := t.base
	if base == nil {
		base = http.DefaultTransport
	}
	if req.Method != http.MethodPost || req.Body == nil || t.scope == "" ||
		!strings.HasPrefix(req.Header.Get("Content-Type"), "application/x-www-form-urlencoded") {
		return base.RoundTrip(req)
	}
	body, err := io.ReadAll(io.LimitReader(req.Body, 1<<20))
	req.Body.Close()
	if err != nil {
		return nil, err
	}
	form, err := url.ParseQuery(string(body))
	if err == nil && form.Get("grant_type") == "refresh_token" && form.Get("scope") == "" {
		form.Set("scope", t.scope)
		body = []byte(form.Encode())
	}
	r := req.Clone(req.Context())
	r.Body = io.NopCloser(strings.NewReader(string(body)))
	r.ContentLength = int64(len(body))
	r.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(strings.NewReader(string(body))), nil }
	return base.RoundTrip(r)
}
