package gmail_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/mailsync/mailsync"
	"github.com/mailsync/mailsync/gmail"
	"github.com/mailsync/mailsync/internal/fakegmail"
	"github.com/mailsync/mailsync/oauthx"
)

// tokenEndpoint is a Google-like OAuth token endpoint on loopback that
// mints a new access token per refresh and registers it with the fake.
type tokenEndpoint struct {
	srv      *httptest.Server
	mu       sync.Mutex
	n        int
	refresh  string // the valid refresh token
	rotateTo string // if set, the next refresh returns this new refresh token
	lifetime time.Duration
	echo     bool // answer invalid_grant repeating the request body, raw and URL-encoded
}

func newTokenEndpoint(t *testing.T, fake *fakegmail.Server, refresh string) *tokenEndpoint {
	te := &tokenEndpoint{refresh: refresh, lifetime: time.Hour}
	te.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		te.mu.Lock()
		defer te.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		if te.echo {
			r.ParseForm()
			body := r.PostForm.Encode()
			w.WriteHeader(400)
			json.NewEncoder(w).Encode(map[string]string{"error": "invalid_grant",
				"error_description": "Bad Request: " + body + " / " + url.QueryEscape(body)})
			return
		}
		if r.PostFormValue("grant_type") != "refresh_token" || r.PostFormValue("client_secret") != "client-secret-value" {
			w.WriteHeader(401)
			fmt.Fprint(w, `{"error":"invalid_client","error_description":"Unauthorized"}`)
			return
		}
		if r.PostFormValue("refresh_token") != te.refresh {
			w.WriteHeader(400)
			fmt.Fprint(w, `{"error":"invalid_grant","error_description":"Token has been expired or revoked."}`)
			return
		}
		te.n++
		access := fmt.Sprintf("ya29.access-%d", te.n)
		fake.AddToken(access, time.Now().Add(te.lifetime))
		out := map[string]any{"access_token": access, "token_type": "Bearer", "expires_in": int(te.lifetime.Seconds()), "scope": gmail.ScopeModify}
		if te.rotateTo != "" {
			out["refresh_token"] = te.rotateTo
			te.refresh, te.rotateTo = te.rotateTo, ""
		}
		json.NewEncoder(w).Encode(out)
	}))
	t.Cleanup(te.srv.Close)
	return te
}

// Without Options.TokenSource, New builds an oauthx token source from the
// connection's OAuth block; a rotated refresh token reaches the host.
func TestOAuthFromConnection(t *testing.T) {
	e := newEnv(t, fakegmail.Options{})
	ids := e.deliver("m", 2)
	te := newTokenEndpoint(t, e.fake, "refresh-token-value")
	te.rotateTo = "refresh-token-2"
	var stored []string
	opts := e.opts
	opts.TokenSource = nil
	opts.OAuth = oauthx.Options{
		TokenURL: te.srv.URL + "/token",
		OnRefreshToken: func(ctx context.Context, s mailsync.Secret) error {
			stored = append(stored, s.Reveal())
			return nil
		},
	}
	c, err := gmail.New(e.conn, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	l, err := c.List(context.Background(), "")
	if err != nil || len(l.Messages) != 2 {
		t.Fatalf("List: %v", err)
	}
	if len(stored) != 1 || stored[0] != "refresh-token-2" {
		t.Fatalf("rotated refresh token not stored: %q", stored)
	}
	// The access token expires on the server before its announced expiry
	// (revoked): a 401, the source refreshes, the call succeeds.
	e.fake.RevokeToken("ya29.access-1")
	order, _ := fetchAll(t, c, refsOf(ids))
	if len(order) != 2 || te.n != 2 {
		t.Fatalf("after revocation: %d messages, %d refreshes", len(order), te.n)
	}

	// A revoked refresh token: ErrConsentRequired, without secrets.
	conn := e.conn
	conn.OAuth = &mailsync.OAuth{Provider: mailsync.GmailAPI, ClientID: "id", ClientSecret: "client-secret-value", RefreshToken: "revoked-refresh"}
	c2, err := gmail.New(conn, opts)
	if err != nil {
		t.Fatal(err)
	}
	_, err = c2.List(context.Background(), "")
	if !errors.Is(err, mailsync.ErrConsentRequired) || strings.Contains(err.Error(), "revoked-refresh") || strings.Contains(err.Error(), "client-secret-value") {
		t.Fatalf("got %v", err)
	}
}

// A plain token source: a 401 is retried once with whatever token the
// source gives next; when it gives the same one, ErrAuth.
func TestUnauthorized(t *testing.T) {
	e := newEnv(t, fakegmail.Options{})
	c := e.connector(func(o *gmail.Options) {
		o.TokenSource = oauth2.StaticTokenSource(&oauth2.Token{AccessToken: "ya29.wrong"})
	})
	e.fake.ResetStats()
	_, err := c.List(context.Background(), "")
	var ae *gmail.APIError
	if !errors.Is(err, mailsync.ErrAuth) || !errors.As(err, &ae) || ae.Code != 401 || strings.Contains(err.Error(), "ya29.wrong") {
		t.Fatalf("got %v", err)
	}
	if st := e.fake.Stats(); st.Requests != 1 {
		t.Errorf("%d requests for a token the source cannot replace", st.Requests)
	}
	// A source that rotates: second token works.
	seq := &seqSource{toks: []string{"ya29.expired", e.fake.Token()}}
	c2 := e.connector(func(o *gmail.Options) { o.TokenSource = seq })
	if _, err := c2.List(context.Background(), ""); err != nil {
		t.Fatalf("with a second token: %v", err)
	}
	// Token source failures.
	for name, tc := range map[string]struct {
		err  error
		want error
	}{
		"invalid_grant": {&oauth2.RetrieveError{ErrorCode: "invalid_grant", Response: &http.Response{StatusCode: 400}, Body: []byte("secret-body")}, mailsync.ErrConsentRequired},
		"5xx":           {&oauth2.RetrieveError{Response: &http.Response{StatusCode: 503, Status: "503"}, Body: []byte("secret-body")}, mailsync.ErrConnection},
		"client":        {&oauth2.RetrieveError{ErrorCode: "invalid_client", Response: &http.Response{StatusCode: 401}, Body: []byte("secret-body")}, mailsync.ErrAuth},
		"other":         {errors.New("no token"), mailsync.ErrAuth},
	} {
		c := e.connector(func(o *gmail.Options) { o.TokenSource = errSource{tc.err} })
		_, err := c.List(context.Background(), "")
		if !errors.Is(err, tc.want) || strings.Contains(err.Error(), "secret-body") {
			t.Errorf("%s: %v", name, err)
		}
	}
}

type seqSource struct {
	mu   sync.Mutex
	toks []string
}

func (s *seqSource) Token() (*oauth2.Token, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.toks[0]
	if len(s.toks) > 1 {
		s.toks = s.toks[1:]
	}
	return &oauth2.Token{AccessToken: t}, nil
}

type errSource struct{ err error }

func (s errSource) Token() (*oauth2.Token, error) { return nil, s.err }

// Tokens, refresh tokens and client secrets appear in no log record and
// no error, through a sync with failures at debug level.
func TestNoSecretsInLogsOrErrors(t *testing.T) {
	e := newEnv(t, fakegmail.Options{})
	e.deliver("m", 3)
	te := newTokenEndpoint(t, e.fake, "refresh-token-value")
	var logs bytes.Buffer
	opts := e.opts
	opts.TokenSource = nil
	opts.OAuth = oauthx.Options{TokenURL: te.srv.URL + "/token"}
	opts.Logger = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	opts.MaxRetries = 1
	c, err := gmail.New(e.conn, opts)
	if err != nil {
		t.Fatal(err)
	}
	e.fake.InjectFault(fakegmail.Fault{Op: "messages.get", Status: 429, Times: 1})
	sink := mailsync.NewMemorySink()
	rep, err := mailsync.Sync(context.Background(), c, mailsync.DefaultMapping("incident"), sink,
		mailsync.WithLogger(opts.Logger), mailsync.WithPostAction(mailsync.PostAction{Kind: mailsync.MarkRead}))
	if err != nil || rep.Created != 3 {
		t.Fatalf("sync: %v %+v", err, rep)
	}
	e.fake.RevokeToken("ya29.access-1")
	te.mu.Lock()
	te.refresh = "something-else" // the refresh now fails: invalid_grant
	te.mu.Unlock()
	_, listErr := c.List(context.Background(), "")
	if !errors.Is(listErr, mailsync.ErrConsentRequired) {
		t.Fatalf("got %v", listErr)
	}
	text := logs.String() + listErr.Error() + fmt.Sprintf("%v %+v %s", c, c, c)
	for _, secret := range []string{"ya29.access", "refresh-token-value", "client-secret-value"} {
		if strings.Contains(text, secret) {
			t.Errorf("%q leaked:\n%s", secret, text)
		}
	}
	if !strings.Contains(logs.String(), "gmail: call") {
		t.Errorf("no debug logs from the provider")
	}
}

func TestConfigErrors(t *testing.T) {
	e := newEnv(t, fakegmail.Options{})
	for name, tc := range map[string]struct {
		conn  func(*mailsync.Connection)
		opts  func(*gmail.Options)
		field string
		want  error
	}{
		"imap protocol": {conn: func(c *mailsync.Connection) { c.Protocol = mailsync.IMAP }, field: "protocol"},
		"graph oauth":   {conn: func(c *mailsync.Connection) { c.OAuth.Provider = mailsync.MicrosoftGraph }, field: "oauth.provider"},
		"no name":       {conn: func(c *mailsync.Connection) { c.Name = " " }, field: "name"},
		"batch size":    {opts: func(o *gmail.Options) { o.BatchSize = 101 }, field: "batch_size"},
		"page size":     {opts: func(o *gmail.Options) { o.PageSize = 501 }, field: "page_size"},
		"empty label":   {opts: func(o *gmail.Options) { o.Labels = []string{"INBOX", ""} }, field: "labels[1]"},
		"bad endpoint":  {opts: func(o *gmail.Options) { o.Endpoint = "gmail.googleapis.com" }, field: "endpoint"},
		"no creds": {conn: func(c *mailsync.Connection) { c.OAuth = nil },
			opts: func(o *gmail.Options) { o.TokenSource = nil; o.HTTPClient = nil }, field: "oauth"},
		"plain http": {opts: func(o *gmail.Options) { o.Endpoint = "http://gmail.example.com/" }, want: mailsync.ErrPlaintextRefused},
	} {
		conn := e.conn
		oa := *conn.OAuth
		conn.OAuth = &oa
		if tc.conn != nil {
			tc.conn(&conn)
		}
		o := e.opts
		if tc.opts != nil {
			tc.opts(&o)
		}
		_, err := gmail.New(conn, o)
		var ce *mailsync.ConfigError
		switch {
		case tc.want != nil:
			if !errors.Is(err, tc.want) {
				t.Errorf("%s: %v", name, err)
			}
		case !errors.As(err, &ce) || !ce.Field(tc.field):
			t.Errorf("%s: %v, want a problem with %s", name, err, tc.field)
		default:
			for _, p := range ce.Problems {
				if !slices.Contains(mailsync.ProblemCodes, p.Code) {
					t.Errorf("%s: problem %+v has no known Code", name, p)
				}
			}
		}
	}
}

func TestCheck(t *testing.T) {
	e := newEnv(t, fakegmail.Options{})
	support := e.fake.CreateLabel("Support")
	e.deliver("m", 3)
	e.fake.Deliver(msg("s"), support)
	res, err := gmail.Check(context.Background(), e.conn, func() gmail.Options {
		o := e.opts
		o.Labels = []string{"inbox", "Support"}
		return o
	}())
	if err != nil {
		t.Fatal(err)
	}
	if res.EmailAddress != e.fake.Email() || res.MessagesTotal != 4 || len(res.Labels) != 2 ||
		res.Labels[0].ID != "INBOX" || res.Labels[0].MessagesTotal != 3 || res.Labels[0].MessagesUnread != 3 ||
		res.Labels[1].ID != support || res.Labels[1].MessagesTotal != 1 || len(res.Warnings) != 0 {
		t.Fatalf("%+v", res)
	}
	if s := res.String(); !strings.Contains(s, "INBOX 3 messages (3 unread)") {
		t.Errorf("String: %s", s)
	}
	// Another user's mailbox: a warning.
	conn := e.conn
	conn.User = "someone.else@example.com"
	res, err = gmail.Check(context.Background(), conn, e.opts)
	if err != nil || len(res.Warnings) != 1 {
		t.Fatalf("%v %+v", err, res)
	}
	// Missing label, bad token.
	o := e.opts
	o.Labels = []string{"Nope"}
	if _, err := gmail.Check(context.Background(), e.conn, o); !errors.Is(err, mailsync.ErrFolderNotFound) {
		t.Errorf("missing label: %v", err)
	}
	o = e.opts
	o.TokenSource = oauth2.StaticTokenSource(&oauth2.Token{AccessToken: "nope"})
	if _, err := gmail.Check(context.Background(), e.conn, o); !errors.Is(err, mailsync.ErrAuth) {
		t.Errorf("bad token: %v", err)
	}
}
