package oauthx_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mailsync/mailsync"
	"github.com/mailsync/mailsync/oauthx"
)

const (
	clientID     = "client-123"
	clientSecret = "s3cret-client-value"
	refresh0     = "rt-initial-0000"
)

// tokenServer is a local OAuth token endpoint: it checks the client
// credentials and the refresh token, rotates refresh tokens on request and
// answers the errors of the Microsoft identity platform.
type tokenServer struct {
	t   *testing.T
	srv *httptest.Server

	mu        sync.Mutex
	valid     map[string]bool // refresh tokens it accepts
	rotate    bool            // hand out a new refresh token on each refresh
	expiresIn int
	fail      string // "", "invalid_grant", "invalid_client", "tenant", "500", "garbage"
	delay     time.Duration
	n         int
	requests  []tokenRequest
}

type tokenRequest struct {
	form       map[string]string
	authHeader string
}

func newTokenServer(t *testing.T) *tokenServer {
	ts := &tokenServer{t: t, valid: map[string]bool{refresh0: true}, expiresIn: 3600}
	ts.srv = httptest.NewTLSServer(http.HandlerFunc(ts.serve))
	t.Cleanup(ts.srv.Close)
	return ts
}

func (ts *tokenServer) url() string { return ts.srv.URL + "/tenant-1/oauth2/v2.0/token" }

func (ts *tokenServer) set(f func(*tokenServer)) {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	f(ts)
}

func (ts *tokenServer) reqs() []tokenRequest {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	return append([]tokenRequest(nil), ts.requests...)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

func (ts *tokenServer) serve(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil || r.Method != http.MethodPost {
		http.Error(w, "bad request", http.StatusBadRequest)
		return
	}
	form := map[string]string{}
	for k := range r.PostForm {
		form[k] = r.PostForm.Get(k)
	}
	ts.mu.Lock()
	ts.requests = append(ts.requests, tokenRequest{form: form, authHeader: r.Header.Get("Authorization")})
	fail, delay := ts.fail, ts.delay
	ts.mu.Unlock()
	if delay > 0 {
		time.Sleep(delay)
	}
	msErr := func(status int, code, desc string, codes ...int) {
		writeJSON(w, status, map[string]any{"error": code, "error_description": desc, "error_codes": codes,
			"timestamp": "2026-11-26 12:00:00Z", "trace_id": "0000", "correlation_id": "1111"})
	}
	switch fail {
	case "500":
		w.WriteHeader(http.StatusInternalServerError)
		w.Write([]byte("<html>oops " + form["client_secret"] + "</html>")) // a careless server echoing the body
		return
	case "garbage":
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"token_type":"Bearer"}`))
		return
	case "tenant":
		msErr(400, "invalid_request", "AADSTS90002: Tenant 'nope' not found. Check to make sure you have the correct tenant ID.", 90002)
		return
	}
	if fail == "invalid_client" || form["client_id"] != clientID || form["client_secret"] != clientSecret {
		msErr(401, "invalid_client", "AADSTS7000215: Invalid client secret provided.", 7000215)
		return
	}
	ts.mu.Lock()
	ok := ts.valid[form["refresh_token"]] && form["grant_type"] == "refresh_token" && fail != "invalid_grant"
	ts.mu.Unlock()
	if !ok {
		msErr(400, "invalid_grant", "AADSTS70008: The provided authorization code or refresh token has expired due to inactivity.", 70008)
		return
	}
	ts.mu.Lock()
	ts.n++
	resp := map[string]any{"token_type": "Bearer", "access_token": fmt.Sprintf("at-%d", ts.n), "expires_in": ts.expiresIn, "scope": form["scope"]}
	if ts.rotate {
		nrt := fmt.Sprintf("rt-rotated-%d", ts.n)
		delete(ts.valid, form["refresh_token"]) // the old one is revoked
		ts.valid[nrt] = true
		resp["refresh_token"] = nrt
	}
	ts.mu.Unlock()
	writeJSON(w, 200, resp)
}

func msOAuth(tokenURL string) *mailsync.OAuth {
	return &mailsync.OAuth{
		Provider:     mailsync.MicrosoftGraph,
		ClientID:     clientID,
		ClientSecret: clientSecret,
		TenantID:     "tenant-1",
		RefreshToken: refresh0,
		TokenURL:     tokenURL,
		Scopes:       []string{"https://graph.microsoft.com/Mail.ReadWrite", "offline_access"},
	}
}

// clock is a settable clock for Options.Now.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func TestRotatedRefreshTokenReachesCallbackAndIsUsed(t *testing.T) {
	srv := newTokenServer(t)
	srv.set(func(s *tokenServer) { s.rotate = true; s.expiresIn = 120 })
	var stored []string
	var logs bytes.Buffer
	clk := &clock{t: time.Now()}
	ts, err := oauthx.New(context.Background(), msOAuth(srv.url()), oauthx.Options{
		HTTPClient: srv.srv.Client(),
		OnRefreshToken: func(ctx context.Context, tok mailsync.Secret) error {
			if ctx.Err() != nil {
				t.Errorf("callback context already done: %v", ctx.Err())
			}
			stored = append(stored, tok.Reveal())
			return nil
		},
		Logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Now:    clk.now,
	})
	if err != nil {
		t.Fatal(err)
	}
	tok, err := ts.Token()
	if err != nil {
		t.Fatal(err)
	}
	if tok.AccessToken != "at-1" {
		t.Fatalf("access token %q, want at-1", tok.AccessToken)
	}
	if len(stored) != 1 || stored[0] != "rt-rotated-1" {
		t.Fatalf("callback got %q, want [rt-rotated-1]", stored)
	}
	// Still valid: no new request.
	if tok, err = ts.Token(); err != nil || tok.AccessToken != "at-1" {
		t.Fatalf("second Token: %v %v", tok, err)
	}
	if n := len(srv.reqs()); n != 1 {
		t.Fatalf("%d token requests for a cached token, want 1", n)
	}
	// Within ExpiryDelta (1 min default) of the 120 s expiry: refresh with the rotated token.
	clk.add(61 * time.Second)
	if tok, err = ts.Token(); err != nil || tok.AccessToken != "at-2" {
		t.Fatalf("refresh after expiry: %v %v", tok, err)
	}
	reqs := srv.reqs()
	if len(reqs) != 2 || reqs[1].form["refresh_token"] != "rt-rotated-1" {
		t.Fatalf("second refresh used %q, want rt-rotated-1", reqs[len(reqs)-1].form["refresh_token"])
	}
	if len(stored) != 2 || stored[1] != "rt-rotated-2" {
		t.Fatalf("callback got %q", stored)
	}
	// The endpoint stops rotating: the last refresh token stays in use, no callback.
	srv.set(func(s *tokenServer) { s.rotate = false })
	clk.add(2 * time.Minute)
	if _, err = ts.Token(); err != nil {
		t.Fatal(err)
	}
	clk.add(2 * time.Minute)
	if _, err = ts.Token(); err != nil {
		t.Fatal(err)
	}
	reqs = srv.reqs()
	if len(reqs) != 4 || reqs[2].form["refresh_token"] != "rt-rotated-2" || reqs[3].form["refresh_token"] != "rt-rotated-2" {
		t.Fatalf("refreshes after rotation stopped used %v", reqs)
	}
	if len(stored) != 2 {
		t.Fatalf("callback called without rotation: %q", stored)
	}
	for _, r := range reqs {
		if r.authHeader != "" {
			t.Errorf("Authorization header %q sent; credentials must be in the body", r.authHeader)
		}
		if r.form["client_id"] != clientID || r.form["client_secret"] != clientSecret || r.form["grant_type"] != "refresh_token" {
			t.Errorf("form %v lacks the credentials", r.form)
		}
		if r.form["scope"] != "https://graph.microsoft.com/Mail.ReadWrite offline_access" {
			t.Errorf("scope %q not sent on refresh", r.form["scope"])
		}
	}
	for _, secret := range []string{clientSecret, refresh0, "rt-rotated", "at-1", "at-2"} {
		if strings.Contains(logs.String(), secret) {
			t.Errorf("log contains secret %q:\n%s", secret, logs.String())
		}
	}
	if !strings.Contains(logs.String(), "rotated refresh token stored") {
		t.Errorf("no log record of the rotation:\n%s", logs.String())
	}
}

func TestShortLivedAccessTokenIsRefreshed(t *testing.T) {
	srv := newTokenServer(t)
	srv.set(func(s *tokenServer) { s.expiresIn = 1 })
	ts, err := oauthx.New(context.Background(), msOAuth(srv.url()), oauthx.Options{HTTPClient: srv.srv.Client(), ExpiryDelta: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	a, err := ts.Token()
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(1100 * time.Millisecond)
	b, err := ts.Token()
	if err != nil {
		t.Fatal(err)
	}
	if a.AccessToken == b.AccessToken || len(srv.reqs()) != 2 {
		t.Fatalf("expired token not refreshed: %q then %q after %d requests", a.AccessToken, b.AccessToken, len(srv.reqs()))
	}
	if b.AccessToken == "" || !b.Expiry.After(time.Now()) {
		t.Fatalf("refreshed token already expired: %v", b.Expiry)
	}
}

func TestErrorsAreTypedAndCostOneRequest(t *testing.T) {
	cases := []struct {
		fail       string
		code       string
		is, isNot  []error
		wantStatus int
	}{
		{"invalid_grant", "invalid_grant", []error{mailsync.ErrConsentRequired, mailsync.ErrAuth}, []error{mailsync.ErrConnection, oauthx.ErrMisconfigured}, 400},
		{"invalid_client", "invalid_client", []error{oauthx.ErrMisconfigured, mailsync.ErrAuth}, []error{mailsync.ErrConsentRequired, mailsync.ErrConnection}, 401},
		{"tenant", "invalid_request", []error{oauthx.ErrMisconfigured, mailsync.ErrAuth}, []error{mailsync.ErrConsentRequired, mailsync.ErrConnection}, 400},
		{"500", oauthx.CodeServer, []error{mailsync.ErrConnection}, []error{mailsync.ErrAuth, mailsync.ErrConsentRequired}, 500},
		{"garbage", oauthx.CodeServer, []error{mailsync.ErrConnection}, []error{mailsync.ErrConsentRequired}, 0},
	}
	for _, c := range cases {
		t.Run(c.fail, func(t *testing.T) {
			srv := newTokenServer(t)
			srv.set(func(s *tokenServer) { s.fail = c.fail })
			ts, err := oauthx.New(context.Background(), msOAuth(srv.url()), oauthx.Options{HTTPClient: srv.srv.Client()})
			if err != nil {
				t.Fatal(err)
			}
			_, err = ts.Token()
			var oe *oauthx.Error
			if !errors.As(err, &oe) {
				t.Fatalf("error %T %v is not an *oauthx.Error", err, err)
			}
			if oe.Code != c.code || oe.StatusCode != c.wantStatus {
				t.Errorf("code %q status %d, want %q %d", oe.Code, oe.StatusCode, c.code, c.wantStatus)
			}
			for _, target := range c.is {
				if !errors.Is(err, target) {
					t.Errorf("errors.Is(%v, %v) = false", err, target)
				}
			}
			for _, target := range c.isNot {
				if errors.Is(err, target) {
					t.Errorf("errors.Is(%v, %v) = true", err, target)
				}
			}
			if n := len(srv.reqs()); n != 1 {
				t.Errorf("%d requests for one failing refresh, want 1", n)
			}
			for _, s := range []string{clientSecret, refresh0} {
				if strings.Contains(err.Error(), s) || strings.Contains(fmt.Sprintf("%+v %#v", err, err), s) {
					t.Errorf("error text leaks %q: %v", s, err)
				}
			}
		})
	}
}

func TestInvalidGrantDescriptionKept(t *testing.T) {
	srv := newTokenServer(t)
	srv.set(func(s *tokenServer) { s.fail = "invalid_grant" })
	ts, _ := oauthx.New(context.Background(), msOAuth(srv.url()), oauthx.Options{HTTPClient: srv.srv.Client()})
	_, err := ts.Token()
	var oe *oauthx.Error
	if !errors.As(err, &oe) || !strings.HasPrefix(oe.Description, "AADSTS70008") {
		t.Fatalf("description not kept: %v", err)
	}
}

func TestNetworkErrorIsRetryable(t *testing.T) {
	srv := newTokenServer(t)
	client := srv.srv.Client()
	u := srv.url()
	srv.srv.Close()
	ts, err := oauthx.New(context.Background(), msOAuth(u), oauthx.Options{HTTPClient: client})
	if err != nil {
		t.Fatal(err)
	}
	_, err = ts.Token()
	if !errors.Is(err, mailsync.ErrConnection) || errors.Is(err, mailsync.ErrAuth) || !mailsync.Temporary(err) {
		t.Fatalf("closed endpoint: %v is not a retryable connection error", err)
	}
}

func TestRefreshOutlivesCreatingContext(t *testing.T) {
	srv := newTokenServer(t)
	ctx, cancel := context.WithCancel(context.Background())
	ts, err := oauthx.New(ctx, msOAuth(srv.url()), oauthx.Options{HTTPClient: srv.srv.Client()})
	if err != nil {
		t.Fatal(err)
	}
	cancel() // e.g. the HTTP request during which the connector was built ended
	if _, err := ts.Token(); err != nil {
		t.Fatalf("Token after the creating context ended: %v", err)
	}
}

func TestTokenContextHonoursCancellation(t *testing.T) {
	srv := newTokenServer(t)
	srv.set(func(s *tokenServer) { s.delay = 2 * time.Second })
	ts, _ := oauthx.New(context.Background(), msOAuth(srv.url()), oauthx.Options{HTTPClient: srv.srv.Client()})
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := ts.TokenContext(ctx)
	if err == nil || !errors.Is(err, mailsync.ErrConnection) {
		t.Fatalf("cancelled refresh: %v", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("cancelled refresh took %v", d)
	}
}

func TestConcurrentCallersShareOneRefresh(t *testing.T) {
	srv := newTokenServer(t)
	srv.set(func(s *tokenServer) { s.delay = 50 * time.Millisecond; s.rotate = true })
	var mu sync.Mutex
	var stored []string
	ts, _ := oauthx.New(context.Background(), msOAuth(srv.url()), oauthx.Options{HTTPClient: srv.srv.Client(),
		OnRefreshToken: func(_ context.Context, s mailsync.Secret) error {
			mu.Lock()
			stored = append(stored, s.Reveal())
			mu.Unlock()
			return nil
		}})
	var wg sync.WaitGroup
	got := make([]string, 8)
	for i := range got {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tok, err := ts.Token()
			if err != nil {
				t.Error(err)
				return
			}
			got[i] = tok.AccessToken
		}()
	}
	wg.Wait()
	if n := len(srv.reqs()); n != 1 {
		t.Fatalf("%d refreshes for concurrent callers, want 1", n)
	}
	for _, g := range got {
		if g != "at-1" {
			t.Fatalf("tokens %q", got)
		}
	}
	if len(stored) != 1 {
		t.Fatalf("callback called %d times", len(stored))
	}
}

func TestCallbackFailureIsReportedAndRetried(t *testing.T) {
	srv := newTokenServer(t)
	srv.set(func(s *tokenServer) { s.rotate = true })
	fail := true
	var stored []string
	ts, _ := oauthx.New(context.Background(), msOAuth(srv.url()), oauthx.Options{HTTPClient: srv.srv.Client(),
		OnRefreshToken: func(_ context.Context, s mailsync.Secret) error {
			if fail {
				return errors.New("database is down")
			}
			stored = append(stored, s.Reveal())
			return nil
		}})
	_, err := ts.Token()
	var oe *oauthx.Error
	if !errors.As(err, &oe) || oe.Code != oauthx.CodeRefreshTokenNotStored || !strings.Contains(err.Error(), "database is down") {
		t.Fatalf("callback failure: %v", err)
	}
	if strings.Contains(err.Error(), "rt-rotated") {
		t.Fatalf("error leaks the new refresh token: %v", err)
	}
	fail = false
	tok, err := ts.Token()
	if err != nil {
		t.Fatal(err)
	}
	// The pending token was stored without a second refresh (which the
	// endpoint would have refused: the original token is revoked).
	if tok.AccessToken != "at-1" || len(srv.reqs()) != 1 || len(stored) != 1 || stored[0] != "rt-rotated-1" {
		t.Fatalf("after retry: token %q, %d requests, stored %q", tok.AccessToken, len(srv.reqs()), stored)
	}
}

func TestInvalidateForcesRefresh(t *testing.T) {
	srv := newTokenServer(t)
	ts, _ := oauthx.New(context.Background(), msOAuth(srv.url()), oauthx.Options{HTTPClient: srv.srv.Client()})
	a, _ := ts.Token()
	ts.Invalidate(a)
	b, err := ts.Token()
	if err != nil || b.AccessToken == a.AccessToken {
		t.Fatalf("invalidated token reused: %v %v", b, err)
	}
	ts.Invalidate(a) // stale: must not drop b
	c, _ := ts.Token()
	if c.AccessToken != b.AccessToken || len(srv.reqs()) != 2 {
		t.Fatalf("stale Invalidate dropped the current token (%d requests)", len(srv.reqs()))
	}
}

func TestGoogleUsesDefaultEndpointShapeAndNoScope(t *testing.T) {
	srv := newTokenServer(t)
	o := &mailsync.OAuth{Provider: mailsync.GmailAPI, ClientID: clientID, ClientSecret: clientSecret, RefreshToken: refresh0}
	if got := o.EffectiveTokenURL(); got != "https://oauth2.googleapis.com/token" {
		t.Fatalf("google default %q", got)
	}
	ts, err := oauthx.New(context.Background(), o, oauthx.Options{TokenURL: srv.url(), HTTPClient: srv.srv.Client()})
	if err != nil {
		t.Fatal(err)
	}
	if ts.TokenURL() != srv.url() {
		t.Fatalf("override ignored: %s", ts.TokenURL())
	}
	if _, err := ts.Token(); err != nil {
		t.Fatal(err)
	}
	r := srv.reqs()[0]
	if _, ok := r.form["scope"]; ok || r.authHeader != "" {
		t.Fatalf("google refresh form %v auth %q", r.form, r.authHeader)
	}
}

func TestScopesFromOptionsWhenTheBlockHasNone(t *testing.T) {
	srv := newTokenServer(t)
	o := msOAuth(srv.url())
	o.Scopes = nil
	ts, err := oauthx.New(context.Background(), o, oauthx.Options{HTTPClient: srv.srv.Client(), Scopes: oauthx.MicrosoftIMAPScopes()})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ts.Token(); err != nil {
		t.Fatal(err)
	}
	if got := srv.reqs()[0].form["scope"]; got != "https://outlook.office365.com/IMAP.AccessAsUser.All offline_access" {
		t.Fatalf("scope %q", got)
	}
	srv2 := newTokenServer(t)
	ts, _ = oauthx.New(context.Background(), o, oauthx.Options{HTTPClient: srv2.srv.Client(), TokenURL: srv2.url()})
	if _, err := ts.Token(); err != nil {
		t.Fatal(err)
	}
	if got := srv2.reqs()[0].form["scope"]; got != "https://graph.microsoft.com/Mail.ReadWrite offline_access" {
		t.Fatalf("default Microsoft scope %q", got)
	}
}

func TestMicrosoftDefaultTokenURL(t *testing.T) {
	o := msOAuth("")
	ts, err := oauthx.New(context.Background(), o, oauthx.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if got := ts.TokenURL(); got != "https://login.microsoftonline.com/tenant-1/oauth2/v2.0/token" {
		t.Fatalf("default token URL %q", got)
	}
}

func TestConfigValidation(t *testing.T) {
	cases := map[string]struct {
		o     *mailsync.OAuth
		opts  oauthx.Options
		field string
	}{
		"nil":           {nil, oauthx.Options{}, "oauth"},
		"no client id":  {&mailsync.OAuth{Provider: mailsync.GmailAPI, RefreshToken: "x"}, oauthx.Options{}, "oauth.client_id"},
		"no refresh":    {&mailsync.OAuth{Provider: mailsync.GmailAPI, ClientID: "x"}, oauthx.Options{}, "oauth.refresh_token"},
		"bad provider":  {&mailsync.OAuth{Provider: "yahoo", ClientID: "x", RefreshToken: "x"}, oauthx.Options{}, "oauth.provider"},
		"no tenant":     {&mailsync.OAuth{Provider: mailsync.MicrosoftGraph, ClientID: "x", RefreshToken: "x"}, oauthx.Options{}, "oauth.tenant_id"},
		"remote http":   {&mailsync.OAuth{Provider: mailsync.GmailAPI, ClientID: "x", RefreshToken: "x"}, oauthx.Options{TokenURL: "http://example.com/token"}, "token_url option"},
		"relative url":  {&mailsync.OAuth{Provider: mailsync.GmailAPI, ClientID: "x", RefreshToken: "x", TokenURL: "/token"}, oauthx.Options{}, "oauth.token_url"},
		"http in block": {&mailsync.OAuth{Provider: mailsync.GmailAPI, ClientID: "x", RefreshToken: "x", TokenURL: "http://login.example/token"}, oauthx.Options{}, "oauth.token_url"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := oauthx.New(context.Background(), c.o, c.opts)
			var ce *mailsync.ConfigError
			if !errors.As(err, &ce) || !ce.Field(c.field) || !errors.Is(err, mailsync.ErrInvalidConfig) {
				t.Fatalf("got %v, want a ConfigError on %s", err, c.field)
			}
		})
	}
	// Loopback http is allowed for tests.
	if _, err := oauthx.New(context.Background(), msOAuth(""), oauthx.Options{TokenURL: "http://127.0.0.1:9/token"}); err != nil {
		t.Fatalf("loopback http refused: %v", err)
	}
}

func TestTokenSourceNeverPrintsSecrets(t *testing.T) {
	srv := newTokenServer(t)
	ts, _ := oauthx.New(context.Background(), msOAuth(srv.url()), oauthx.Options{HTTPClient: srv.srv.Client()})
	tok, err := ts.Token()
	if err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	slog.New(slog.NewJSONHandler(&logs, nil)).Info("x", "ts", ts)
	out := fmt.Sprintf("%v %+v %#v %s %q", ts, ts, ts, ts, ts) + logs.String() + oauthx.Redacted(tok)
	for _, s := range []string{clientSecret, refresh0, tok.AccessToken} {
		if strings.Contains(out, s) {
			t.Fatalf("output leaks %q: %s", s, out)
		}
	}
	if !strings.Contains(out, clientID) || !strings.Contains(oauthx.Redacted(tok), "[REDACTED]") {
		t.Fatalf("output lacks the non-secret fields: %s", out)
	}
}
