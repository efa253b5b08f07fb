package graph

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/mailsync/mailsync"
	"github.com/mailsync/mailsync/internal/redact"
	abs "github.com/microsoft/kiota-abstractions-go"
	absauth "github.com/microsoft/kiota-abstractions-go/authentication"
	absser "github.com/microsoft/kiota-abstractions-go/serialization"
	khttp "github.com/microsoft/kiota-http-go"
	jsonser "github.com/microsoft/kiota-serialization-json-go"
	core "github.com/microsoftgraph/msgraph-sdk-go-core"
	"github.com/microsoftgraph/msgraph-sdk-go/models/odataerrors"
	"golang.org/x/oauth2"
)

// tokenProvider is the SDK's AccessTokenProvider on an oauth2.TokenSource.
//
// kiota's AllowedHostsValidator compares URL host names without their
// port, so a list holding "127.0.0.1:8443" never matches and the request
// silently goes out without a token. The list therefore holds the base
// URL's host name only, and GetAuthorizationToken additionally requires
// the exact host:port and https, so a nextLink or deltaLink pointing
// anywhere else never receives the token.
type tokenProvider struct {
	ts    oauth2.TokenSource
	base  *url.URL
	hosts *absauth.AllowedHostsValidator
	scrub *scrubber // learns every access token handed out

	mu   sync.Mutex
	last *oauth2.Token
}

func newTokenProvider(ts oauth2.TokenSource, base *url.URL, scrub *scrubber) (*tokenProvider, error) {
	v, err := absauth.NewAllowedHostsValidatorErrorCheck([]string{base.Hostname()})
	if err != nil {
		return nil, err
	}
	return &tokenProvider{ts: ts, base: base, hosts: v, scrub: scrub}, nil
}

// GetAuthorizationToken implements absauth.AccessTokenProvider.
func (p *tokenProvider) GetAuthorizationToken(ctx context.Context, u *url.URL, _ map[string]any) (string, error) {
	if u == nil || u.Scheme != "https" || !p.hosts.IsUrlHostValid(u) || !strings.EqualFold(hostPort(u), hostPort(p.base)) {
		return "", nil
	}
	var tok *oauth2.Token
	var err error
	if tc, ok := p.ts.(interface {
		TokenContext(context.Context) (*oauth2.Token, error)
	}); ok {
		tok, err = tc.TokenContext(ctx)
	} else {
		tok, err = p.ts.Token()
	}
	if err != nil {
		return "", err
	}
	p.mu.Lock()
	p.last = tok
	p.mu.Unlock()
	p.scrub.Add(tok.AccessToken)
	return tok.AccessToken, nil
}

// GetAllowedHostsValidator implements absauth.AccessTokenProvider.
func (p *tokenProvider) GetAllowedHostsValidator() *absauth.AllowedHostsValidator { return p.hosts }

// invalidate drops the token the server just rejected, if the source can.
// It reports whether a retry can get a different token.
func (p *tokenProvider) invalidate() bool {
	inv, ok := p.ts.(interface{ Invalidate(*oauth2.Token) })
	if !ok {
		return false
	}
	p.mu.Lock()
	last := p.last
	p.mu.Unlock()
	inv.Invalidate(last)
	return true
}

func hostPort(u *url.URL) string {
	if u.Port() != "" {
		return u.Host
	}
	return u.Hostname() + ":443"
}

// newAdapter builds the kiota request adapter: JSON (de)serialisation
// registries of its own (no global registration) and a middleware pipeline
// in a fixed order.
func newAdapter(auth absauth.AuthenticationProvider, base http.RoundTripper, opts *Options, scrub *scrubber) (*khttp.NetHttpRequestAdapter, error) {
	parse := absser.NewParseNodeFactoryRegistry()
	parse.ContentTypeAssociatedFactories["application/json"] = jsonser.NewJsonParseNodeFactory()
	write := absser.NewSerializationWriterFactoryRegistry()
	write.ContentTypeAssociatedFactories["application/json"] = jsonser.NewJsonSerializationWriterFactory()

	telemetry := core.GraphClientOptions{GraphServiceLibraryVersion: "1.89.0"}
	maxWait := opts.MaxRetryWait
	retry := khttp.NewRetryHandlerWithOptions(khttp.RetryHandlerOptions{
		MaxRetries: opts.MaxRetries,
		// kiota's RetryHandler only checks that the delays so far stay
		// under 180 s before it sleeps, so a single "Retry-After: 3600"
		// would be slept in full. Retry only while the total wait stays
		// within MaxRetryWait; past it the 429/503 is returned and
		// surfaces as *mailsync.ThrottledError.
		ShouldRetry: func(sofar time.Duration, count int, _ *http.Request, resp *http.Response) bool {
			next, ok := retryAfter(resp.Header, time.Now())
			if !ok {
				next = time.Duration(3*(1<<count)) * time.Second
			}
			return sofar+next <= maxWait
		},
	})
	// Order matters (kiota's default list comes from a map, so its order
	// varies). Compression comes first, outside the retries: it gzips the
	// body once and hands the next handler a request whose body is the
	// (seekable) compressed bytes, which the retry handler rewinds and
	// resends. Behind the retry handler it would break every retried
	// PATCH/POST: the handlers below the retry handler pass on shallow
	// copies of the request (req.WithContext, whenever observability
	// options are set, which the request adapter always does), so
	// compression would set Content-Encoding: gzip in the header map the
	// attempts share but swap the body only on its own copy; the retry
	// then skips compression (the header is already there) and sends
	// plain JSON labelled gzip, which Graph refuses with 400.
	mw := []khttp.Middleware{
		khttp.NewCompressionHandler(),
		retry,
		khttp.NewRedirectHandler(),
		core.NewGraphTelemetryHandler(&telemetry),
		khttp.NewParametersNameDecodingHandler(),
		khttp.NewUserAgentHandler(),
		errorNormalizer{scrub: scrub},
	}
	client := &http.Client{
		Transport: khttp.NewCustomTransportWithParentTransport(base, mw...),
		// No overall timeout: $value downloads of large messages stream for
		// as long as they need; ctx and the transport's timeouts bound them.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	a, err := khttp.NewNetHttpRequestAdapterWithParseNodeFactoryAndSerializationWriterFactoryAndHttpClient(auth, parse, write, client)
	if err != nil {
		return nil, err
	}
	a.SetBaseUrl(strings.TrimSuffix(opts.BaseURL, "/"))
	return a, nil
}

func defaultTransport() *http.Transport {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.ResponseHeaderTimeout = 2 * time.Minute
	t.TLSHandshakeTimeout = 15 * time.Second
	t.MaxIdleConnsPerHost = 4
	t.ForceAttemptHTTP2 = true
	return t
}

// retryAfter parses a Retry-After header: delta seconds (fractions
// allowed) or an HTTP date.
func retryAfter(h http.Header, now time.Time) (time.Duration, bool) {
	v := strings.TrimSpace(h.Get("Retry-After"))
	if v == "" {
		return 0, false
	}
	if f, err := strconv.ParseFloat(v, 64); err == nil && f >= 0 && !math.IsInf(f, 0) && f < 1e7 {
		return time.Duration(f * float64(time.Second)), true
	}
	if t, err := http.ParseTime(v); err == nil {
		d := t.Sub(now)
		if d < 0 {
			d = 0
		}
		return d, true
	}
	return 0, false
}

// errorNormalizer rewrites every error response body into a well-formed
// Graph error ({"error":{"code":…,"message":…}}). The SDK's ODataError
// dereferences error.message without a nil check, so a 5xx from a proxy
// with an HTML body or an error without a message would otherwise panic
// when the error is printed. The code and message are scrubbed of every
// secret the connector knows (a server or proxy may echo the
// Authorization header), so no SDK error ever holds one.
type errorNormalizer struct{ scrub *scrubber }

// Intercept implements khttp.Middleware.
func (n errorNormalizer) Intercept(p khttp.Pipeline, i int, req *http.Request) (*http.Response, error) {
	resp, err := p.Next(req, i)
	if err != nil || resp == nil || resp.StatusCode < 400 {
		return resp, n.scrub.Error(err)
	}
	code, msg := readGraphError(resp, n.scrub)
	body, _ := json.Marshal(map[string]any{"error": map[string]string{"code": code, "message": msg}})
	resp.Body = io.NopCloser(bytes.NewReader(body))
	resp.ContentLength = int64(len(body))
	resp.Header.Set("Content-Type", "application/json")
	resp.Header.Set("Content-Length", strconv.Itoa(len(body)))
	resp.Header.Del("Content-Encoding")
	return resp, nil
}

// readGraphError reads (at most 64 KiB of) an error body and closes it.
// Code and message are scrubbed of secrets before they are clipped, so
// no fragment of a secret survives the cut.
func readGraphError(resp *http.Response, scrub *scrubber) (code, msg string) {
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	var e struct {
		Error struct {
			Code    any `json:"code"`
			Message any `json:"message"`
		} `json:"error"`
	}
	if json.Unmarshal(b, &e) == nil {
		code, _ = e.Error.Code.(string)
		msg, _ = e.Error.Message.(string)
	}
	code, msg = scrub.Scrub(code), scrub.Scrub(msg)
	if code == "" {
		code = "HTTP" + strconv.Itoa(resp.StatusCode)
	}
	if msg == "" {
		msg = http.StatusText(resp.StatusCode)
	}
	return clip(code, 100), clip(msg, 300)
}

func clip(s string, n int) string {
	s = strings.ToValidUTF8(strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, s), "?")
	if len(s) > n {
		s = s[:n] + "…"
	}
	return s
}

// Error is a failed Graph call. It matches the mailsync sentinel its
// status implies (see mapError); RetryAfter is set for 429/503.
type Error struct {
	Op         string // what the connector was doing
	StatusCode int    // HTTP status, 0 if the request got no answer
	Code       string // Graph error code, e.g. ErrorItemNotFound
	Message    string // Graph error message (never a credential)
	Kind       error  // the mailsync sentinel it matches, or nil
	Err        error  // the cause, if any
}

// Error describes the failed call: operation, HTTP status, Graph code and message.
func (e *Error) Error() string {
	s := "graph: " + e.Op
	if e.StatusCode != 0 {
		s += fmt.Sprintf(": HTTP %d %s: %s", e.StatusCode, e.Code, e.Message)
	}
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

// Is matches Kind (and ErrAuth for ErrTokenExpired).
func (e *Error) Is(target error) bool {
	if e.Kind == nil {
		return false
	}
	if target == e.Kind {
		return true
	}
	return e.Kind == mailsync.ErrTokenExpired && target == mailsync.ErrAuth
}

// Unwrap returns the cause.
func (e *Error) Unwrap() error { return e.Err }

// apiError extracts status, code, message and headers from an SDK error.
func apiError(err error) (status int, code, msg string, h http.Header, ok bool) {
	var oe *odataerrors.ODataError
	if errors.As(err, &oe) {
		status = oe.GetStatusCode()
		if me := oe.GetErrorEscaped(); me != nil {
			if c := me.GetCode(); c != nil {
				code = *c
			}
			if m := me.GetMessage(); m != nil {
				msg = *m
			}
		}
		return status, clip(code, 100), clip(msg, 300), headersOf(oe.GetResponseHeaders()), true
	}
	var ae *abs.ApiError
	if errors.As(err, &ae) {
		return ae.ResponseStatusCode, "HTTP" + strconv.Itoa(ae.ResponseStatusCode), clip(ae.Message, 300), headersOf(ae.ResponseHeaders), true
	}
	var se *statusError
	if errors.As(err, &se) {
		return se.status, se.code, se.msg, se.header, true
	}
	return 0, "", "", nil, false
}

func headersOf(rh *abs.ResponseHeaders) http.Header {
	h := http.Header{}
	if rh == nil {
		return h
	}
	for _, k := range rh.ListKeys() {
		for _, v := range rh.Get(k) {
			h.Add(k, v)
		}
	}
	return h
}

// statusError is an error response seen by one of our response handlers.
type statusError struct {
	status    int
	code, msg string
	header    http.Header
}

func (e *statusError) Error() string { return fmt.Sprintf("HTTP %d %s: %s", e.status, e.code, e.msg) }

func newStatusError(resp *http.Response, scrub *scrubber) *statusError {
	code, msg := readGraphError(resp, scrub)
	return &statusError{status: resp.StatusCode, code: code, msg: msg, header: resp.Header.Clone()}
}

func statusOf(err error) int {
	s, _, _, _, _ := apiError(err)
	return s
}

// isSyncStateGone reports a delta link the service no longer accepts.
func isSyncStateGone(err error) bool {
	status, code, _, _, ok := apiError(err)
	if !ok {
		return false
	}
	switch strings.ToLower(code) {
	case "syncstatenotfound", "syncstateinvalid", "resyncrequired", "invaliddeltatoken":
		return true
	}
	return status == http.StatusGone
}

// mapError turns an SDK, transport or token error into one that matches a
// mailsync sentinel. notFound is the sentinel for a 404 (nil: none).
func mapError(ctx context.Context, op string, err error, notFound error) error {
	if err == nil {
		return nil
	}
	if ctx.Err() != nil && (errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)) {
		return fmt.Errorf("graph: %s: %w", op, ctx.Err())
	}
	// Token errors (oauthx.Error) already match ErrConsentRequired,
	// ErrAuth or ErrConnection.
	if errors.Is(err, mailsync.ErrAuth) || errors.Is(err, mailsync.ErrConnection) || errors.Is(err, mailsync.ErrConsentRequired) {
		return fmt.Errorf("graph: %s: %w", op, err)
	}
	status, code, msg, h, ok := apiError(err)
	if !ok {
		var ne net.Error
		var ue *url.Error
		if errors.As(err, &ne) || errors.As(err, &ue) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
			return &Error{Op: op, Kind: mailsync.ErrConnection, Err: err}
		}
		return &Error{Op: op, Err: err}
	}
	e := &Error{Op: op, StatusCode: status, Code: code, Message: msg}
	lc := strings.ToLower(code)
	switch {
	case status == http.StatusTooManyRequests || (status == http.StatusServiceUnavailable && h.Get("Retry-After") != ""):
		d, ok := retryAfter(h, time.Now())
		if !ok {
			d = 30 * time.Second
		}
		return &mailsync.ThrottledError{RetryAfter: d, Err: e}
	case isSyncStateGone(err):
		e.Kind = mailsync.ErrCursorExpired
	case status == http.StatusUnauthorized:
		e.Kind = mailsync.ErrAuth
		if strings.Contains(strings.ToLower(msg), "expired") {
			e.Kind = mailsync.ErrTokenExpired
		}
	case status == http.StatusForbidden:
		e.Kind = mailsync.ErrAuth
	case status == http.StatusNotFound && (lc == "errorinvaliduser" || lc == "mailboxnotenabledforrestapi" || lc == "resourcenotfound" && strings.Contains(strings.ToLower(msg), "user")):
		e.Kind = mailsync.ErrInvalidConfig
	case status == http.StatusNotFound:
		e.Kind = notFound
	case status >= 500 || status == http.StatusRequestTimeout:
		e.Kind = mailsync.ErrConnection
	}
	return e
}

// scrubber removes the connection's secrets (client secret, refresh
// tokens, every access token sent) in every encoding from text that came
// from a server: a redact.Scrubber (nil-safe, safe for concurrent use).
type scrubber = redact.Scrubber

func newScrubber(secrets ...string) *scrubber { return redact.New(secrets...) }
