package gmail

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"sync/atomic"
	"time"

	"golang.org/x/oauth2"
)

// api is a small Gmail API v1 client on net/http: JSON calls, the batch
// endpoint, bearer tokens, retries with back-off, and error mapping.
type api struct {
	cfg      *config
	requests atomic.Int64 // HTTP requests sent
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
		return nil, tokenError(err)
	}
	if tok == nil || tok.AccessToken == "" {
		return nil, tokenError(errors.New("token source returned no access token"))
	}
	return tok, nil
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

// request describes one API call.
type request struct {
	op     string // API method name, for errors and logs
	method string
	path   string // absolute path
	query  url.Values
	header http.Header
	body   []byte
}

// send performs req with retries and returns a 2xx response, whose body
// the caller must close. Throttling (429, 403 rate limits) and 5xx are
// retried with exponential back-off and jitter, honouring Retry-After; a
// 401 is retried once with a fresh token when the token source can give
// one.
func (a *api) send(ctx context.Context, req request) (*http.Response, error) {
	var rejected string   // access token the server refused
	var authErr *APIError // and its answer
	for attempt := 0; ; attempt++ {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		tok, err := a.token(ctx)
		if err != nil {
			return nil, err
		}
		if tok != nil && authErr != nil && tok.AccessToken == rejected {
			// The source has no other token to offer.
			return nil, authErr
		}
		hr, err := http.NewRequestWithContext(ctx, req.method, a.url(req.path, req.query), bytes.NewReader(req.body))
		if err != nil {
			return nil, fmt.Errorf("gmail: %s: %w", req.op, err)
		}
		for k, v := range req.header {
			hr.Header[k] = v
		}
		if req.body != nil && hr.Header.Get("Content-Type") == "" {
			hr.Header.Set("Content-Type", "application/json")
		}
		if tok != nil {
			tok.SetAuthHeader(hr)
		}
		a.requests.Add(1)
		start := time.Now()
		resp, err := a.cfg.hc.Do(hr)
		if err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			return nil, transportError(req.op, err)
		}
		if resp.StatusCode/100 == 2 {
			a.cfg.log.DebugContext(ctx, "gmail: call", "op", req.op, "status", resp.StatusCode, "duration", time.Since(start))
			return resp, nil
		}
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		resp.Body.Close()
		ae := parseAPIError(req.op, resp.StatusCode, resp.Header, body, time.Now())
		a.cfg.log.DebugContext(ctx, "gmail: call failed", "op", req.op, "status", resp.StatusCode, "reason", ae.Reason)
		if resp.StatusCode == http.StatusUnauthorized && tok != nil && authErr == nil {
			// The token may have been revoked or expired early: drop it and
			// try once more with whatever the source gives next.
			rejected, authErr = tok.AccessToken, ae
			if inv, ok := a.cfg.ts.(invalidator); ok {
				inv.Invalidate(tok)
			}
			continue
		}
		if !ae.retryable() {
			return nil, ae
		}
		if err := a.backoff(ctx, ae, attempt); err != nil {
			return nil, err
		}
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

// call performs a JSON call; out may be nil.
func (a *api) call(ctx context.Context, op, method, rest string, q url.Values, in, out any) error {
	req := request{op: op, method: method, path: a.userPath(rest), query: q}
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return fmt.Errorf("gmail: %s: %w", op, err)
		}
		req.body = b
	}
	resp, err := a.send(ctx, req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if out == nil {
		io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
		return nil
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if errors.Is(err, io.ErrUnexpectedEOF) || isNetError(err) {
			return transportError(op, err)
		}
		return fmt.Errorf("gmail: %s: malformed response: %v", op, err)
	}
	return nil
}

func jsonBytes(v any) ([]byte, error) { return json.Marshal(v) }
