package gmail

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/url"
	"sync/atomic"
	"time"

	"golang.org/x/oauth2"
	gmailapi "google.golang.org/api/gmail/v1"
	"google.golang.org/api/googleapi"
	"google.golang.org/api/option"
)

// api is the connector's access to the Gmail API. The JSON calls go
// through the generated client google.golang.org/api/gmail/v1 (svc);
// send makes the raw HTTP requests the generated client cannot make (the
// batch endpoint, and format=raw answers read as a stream). Both use hc,
// whose transport adds the access token and counts the requests, and both
// run inside do, which retries with back-off and maps the errors.
type api struct {
	cfg      *config
	hc       *http.Client
	svc      *gmailapi.Service
	requests atomic.Int64 // HTTP requests sent
}

// newAPI builds the generated client on the authenticating HTTP client.
//
// The token is not given with option.WithTokenSource: the generated
// client ignores it when option.WithHTTPClient is set, and its own
// transport could neither drop a token the API rejects (so that the next
// attempt refreshes it) nor use the caller's HTTP client. do puts the
// token in each call's context instead, and authTransport writes it.
func newAPI(ctx context.Context, cfg *config) (*api, error) {
	a := &api{cfg: cfg}
	base := cfg.hc.Transport
	if base == nil {
		base = http.DefaultTransport
	}
	a.hc = &http.Client{
		Transport:     &authTransport{base: base, requests: &a.requests},
		CheckRedirect: cfg.hc.CheckRedirect,
		Jar:           cfg.hc.Jar,
		Timeout:       cfg.hc.Timeout,
	}
	svc, err := gmailapi.NewService(ctx,
		option.WithHTTPClient(a.hc),
		option.WithEndpoint(cfg.root.String()),
		// The library logs request and response bodies at debug level
		// when GOOGLE_SDK_GO_LOGGING_LEVEL asks it to; the provider's
		// own logs never carry message content, so silence it.
		option.WithLogger(slog.New(slog.DiscardHandler)),
	)
	if err != nil {
		return nil, fmt.Errorf("gmail: %s: creating the Gmail API client: %w", cfg.conn.Name, err)
	}
	a.svc = svc
	return a, nil
}

// tokenKey is the context key of the access token of one attempt.
type tokenKey struct{}

// maxErrorBody bounds how much of an error answer is read (the generated
// client reads error bodies whole).
const maxErrorBody = 64 << 10

// authTransport adds the access token do put in the request's context,
// counts requests and bounds error answers.
type authTransport struct {
	base     http.RoundTripper
	requests *atomic.Int64
}

// RoundTrip implements http.RoundTripper.
func (t *authTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	t.requests.Add(1)
	if tok, _ := r.Context().Value(tokenKey{}).(*oauth2.Token); tok != nil {
		r = r.Clone(r.Context()) // a RoundTripper must not change the caller's request
		tok.SetAuthHeader(r)
	}
	resp, err := t.base.RoundTrip(r)
	if err == nil && resp.StatusCode/100 != 2 && resp.Body != nil {
		resp.Body = struct {
			io.Reader
			io.Closer
		}{io.LimitReader(resp.Body, maxErrorBody), resp.Body}
	}
	return resp, err
}

// CloseIdleConnections closes the base transport's idle connections.
func (t *authTransport) CloseIdleConnections() {
	if c, ok := t.base.(interface{ CloseIdleConnections() }); ok {
		c.CloseIdleConnections()
	}
}

// invalidator is implemented by token sources (oauthx) that can drop a
// token the server rejected.
type invalidator interface {
	Invalidate(*oauth2.Token)
}

// contextTokenSource is implemented by token sources (oauthx) whose
// refresh honours a context.
type contextTokenSource interface {
	TokenContext(context.Context) (*oauth2.Token, error)
}

func (a *api) token(ctx context.Context) (*oauth2.Token, error) {
	if a.cfg.ts == nil {
		return nil, nil
	}
	var tok *oauth2.Token
	var err error
	if cts, ok := a.cfg.ts.(contextTokenSource); ok {
		tok, err = cts.TokenContext(ctx)
	} else {
		tok, err = a.cfg.ts.Token()
	}
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, a.cfg.scrub.err(tokenError(err))
	}
	if tok == nil || tok.AccessToken == "" {
		return nil, tokenError(errors.New("token source returned no access token"))
	}
	a.cfg.scrub.add(tok.AccessToken)
	return tok, nil
}

// do performs one API call with retries: fn sends it with the context it
// is given (which carries the access token for authTransport) through
// a.svc or a.send's request. Throttling (429, 403 rate limits) and 5xx
// are retried with exponential back-off and jitter, honouring
// Retry-After; a 401 is retried once with a fresh token when the token
// source can give one. The error is an *APIError (possibly inside a
// *mailsync.ThrottledError), a transport error wrapping
// mailsync.ErrConnection or ErrTLS, a token error, or ctx's error.
func (a *api) do(ctx context.Context, op string, fn func(context.Context) error) error {
	var rejected string   // access token the server refused
	var authErr *APIError // and its answer
	for attempt := 0; ; attempt++ {
		if err := ctx.Err(); err != nil {
			return err
		}
		tok, err := a.token(ctx)
		if err != nil {
			return err
		}
		if tok != nil && authErr != nil && tok.AccessToken == rejected {
			// The source has no other token to offer.
			return authErr
		}
		start := time.Now()
		err = fn(context.WithValue(ctx, tokenKey{}, tok))
		if err == nil {
			a.cfg.log.DebugContext(ctx, "gmail: call", "op", op, "duration", time.Since(start))
			return nil
		}
		ae, err := classify(ctx, op, err)
		if ae == nil {
			return a.cfg.scrub.err(err)
		}
		a.cfg.scrub.apiError(ae)
		a.cfg.log.DebugContext(ctx, "gmail: call failed", "op", op, "status", ae.Code, "reason", ae.Reason)
		if ae.Code == http.StatusUnauthorized && tok != nil && authErr == nil {
			// The token may have been revoked or expired early: drop it and
			// try once more with whatever the source gives next.
			rejected, authErr = tok.AccessToken, ae
			if inv, ok := a.cfg.ts.(invalidator); ok {
				inv.Invalidate(tok)
			}
			continue
		}
		if !ae.retryable() {
			return ae
		}
		if err := a.backoff(ctx, ae, attempt); err != nil {
			return err
		}
	}
}

// classify turns the error of one attempt into an *APIError when the API
// answered, or into the error to return (transport failures, answers
// that are not what the API documents, ctx's error).
func classify(ctx context.Context, op string, err error) (*APIError, error) {
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	var ae *APIError
	if errors.As(err, &ae) {
		return ae, nil
	}
	var ge *googleapi.Error
	if errors.As(err, &ge) {
		return fromGoogleAPI(op, ge, time.Now()), nil
	}
	var ue *url.Error
	if errors.As(err, &ue) || isNetError(err) || errors.Is(err, io.ErrUnexpectedEOF) {
		return nil, transportError(op, err)
	}
	return nil, fmt.Errorf("gmail: %s: malformed response: %v", op, err)
}

// pages runs a paged list call page by page, each page with its own
// retries (the generated client's Pages method would restart, or give
// up, at a throttled page). page performs the request for one page
// token ("" for the first) and returns the next one.
func (a *api) pages(ctx context.Context, op string, page func(ctx context.Context, token string) (next string, err error)) error {
	token := ""
	for {
		var next string
		err := a.do(ctx, op, func(ctx context.Context) error {
			var err error
			next, err = page(ctx, token)
			return err
		})
		if err != nil {
			return err
		}
		if next == "" || next == token {
			return nil
		}
		token = next
	}
}

// backoff waits before retry attempt+1 of a throttled or failed call, or
// returns the error to give up with.
func (a *api) backoff(ctx context.Context, ae *APIError, attempt int) error {
	wait := a.delay(attempt, ae.retryAfter)
	if attempt >= a.cfg.retries || wait > a.cfg.maxWait {
		return ae.final(max(wait, ae.retryAfter))
	}
	a.cfg.log.WarnContext(ctx, "gmail: backing off", "op", ae.Op, "status", ae.Code, "reason", ae.Reason, "wait", wait, "attempt", attempt+1)
	return sleep(ctx, wait)
}

// delay is the back-off before retry attempt+1: Retry-After when the
// server gave one, otherwise RetryBase·2^attempt with ±25 % jitter.
func (a *api) delay(attempt int, retryAfter time.Duration) time.Duration {
	if retryAfter > 0 {
		return retryAfter
	}
	d := a.cfg.retryBase << min(attempt, 20)
	if d <= 0 || d > a.cfg.maxWait {
		d = a.cfg.maxWait
	}
	jitter := time.Duration(rand.Int64N(int64(d)/2+1)) - d/4
	return d + jitter
}

func sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// userPath is the path of a users.* resource: gmail/v1/users/{user}/rest.
func (a *api) userPath(rest string) string {
	return a.cfg.root.Path + "gmail/v1/users/" + url.PathEscape(a.cfg.user) + "/" + rest
}

func (a *api) url(path string, q url.Values) string {
	u := *a.cfg.root
	u.Path = path
	u.RawPath = ""
	u.RawQuery = q.Encode()
	return u.String()
}

// request describes one raw HTTP call (see send).
type request struct {
	op     string // API method name, for errors and logs
	method string
	path   string // absolute path
	query  url.Values
	header http.Header
	body   []byte
}

// send performs a raw request, with do's retries, and returns the 2xx
// response, whose body the caller must close. It serves what the
// generated client cannot do: the batch endpoint, and messages.get
// format=raw read as a stream.
func (a *api) send(ctx context.Context, req request) (*http.Response, error) {
	var resp *http.Response
	err := a.do(ctx, req.op, func(ctx context.Context) error {
		hr, err := http.NewRequestWithContext(ctx, req.method, a.url(req.path, req.query), bytes.NewReader(req.body))
		if err != nil {
			return err
		}
		for k, v := range req.header {
			hr.Header[k] = v
		}
		if req.body != nil && hr.Header.Get("Content-Type") == "" {
			hr.Header.Set("Content-Type", "application/json")
		}
		r, err := a.hc.Do(hr)
		if err != nil {
			return err
		}
		if r.StatusCode/100 == 2 {
			resp = r
			return nil
		}
		body, _ := io.ReadAll(io.LimitReader(r.Body, maxErrorBody))
		r.Body.Close()
		return parseAPIError(req.op, r.StatusCode, r.Header, body, time.Now())
	})
	return resp, err
}
