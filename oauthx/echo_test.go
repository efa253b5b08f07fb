package oauthx_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mailsync/mailsync"
	"github.com/mailsync/mailsync/internal/redact"
	"github.com/mailsync/mailsync/oauthx"
)

// Secrets with characters that change under URL, JSON and base64 encoding.
const (
	echoSecret  = "S3cr3t/Client+Value=Q&x~\"q\""
	echoRefresh = "0.AVYA/rt+Refresh=Token&more"
)

// echoes are the ways a careless server repeats what it was sent: the
// raw text, its URL encodings, JSON-quoted, and base64 of a longer blob
// holding it at each byte alignment (as SASL and Basic auth carry it).
func echoes(s string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "raw[%s] query[%s] path[%s] lower[%s] ", s, url.QueryEscape(s), url.PathEscape(s), strings.ToLower(url.QueryEscape(s)))
	j, _ := json.Marshal(s)
	fmt.Fprintf(&b, "json[%s] ", j)
	for pre := 0; pre < 3; pre++ {
		blob := strings.Repeat("p", pre) + "user=x\x01auth=Bearer " + s + "\x01\x01"
		fmt.Fprintf(&b, "b64[%s] b64url[%s] ", base64.StdEncoding.EncodeToString([]byte(blob)), base64.RawURLEncoding.EncodeToString([]byte(blob)))
	}
	basic := url.QueryEscape(clientID) + ":" + url.QueryEscape(s)
	fmt.Fprintf(&b, "basic[%s] ", base64.StdEncoding.EncodeToString([]byte(basic)))
	return b.String()
}

// echoServer is a token endpoint that answers the first refresh with an
// access token and every later one with an error repeating the request
// (form body, every secret it carried, the access token it issued) in
// the way mode says.
type echoServer struct {
	srv  *httptest.Server
	mu   sync.Mutex
	mode string
	n    int
}

const echoAccess = "eyJ0eXAiOiJKV1Qi.access/token+value=="

func (e *echoServer) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	form, _ := url.ParseQuery(string(body))
	e.mu.Lock()
	e.n++
	n, mode := e.n, e.mode
	e.mu.Unlock()
	if n == 1 {
		writeJSON(w, 200, map[string]any{"token_type": "Bearer", "access_token": echoAccess, "expires_in": 1})
		return
	}
	echo := "body[" + string(body) + "] " + echoes(form.Get("client_secret")) + echoes(form.Get("refresh_token")) + echoes(echoAccess)
	switch mode {
	case "description":
		writeJSON(w, 400, map[string]any{"error": "invalid_grant", "error_description": "AADSTS70000: bad request " + echo})
	case "uri":
		writeJSON(w, 400, map[string]any{"error": "invalid_client", "error_uri": "https://login.example/?q=" + echo, "error_description": "see uri"})
	case "code":
		writeJSON(w, 400, map[string]any{"error": "weird " + echo})
	case "form":
		// Not JSON: x/oauth2 parses a form-encoded body (and decodes it).
		w.Header().Set("Content-Type", "text/plain")
		w.WriteHeader(400)
		io.WriteString(w, "error=invalid_request&error_description="+url.QueryEscape(echo))
	case "html":
		w.Header().Set("Content-Type", "text/html")
		w.WriteHeader(502)
		io.WriteString(w, "<html><body>proxy error "+echo+"</body></html>")
	case "ok-garbage":
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"token_type":"Bearer","note":"`+strings.NewReplacer(`"`, `'`, `\`, `/`).Replace(echo)+`"`)
	}
}

// echoTransport fails every request after the first with a network error
// whose text repeats the request (as a misbehaving proxy or a transport
// that quotes what it could not send might).
type echoTransport struct {
	base http.RoundTripper
	n    int
	mu   sync.Mutex
}

func (t *echoTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	t.mu.Lock()
	t.n++
	n := t.n
	t.mu.Unlock()
	if n == 1 {
		return t.base.RoundTrip(r)
	}
	body, _ := io.ReadAll(r.Body)
	form, _ := url.ParseQuery(string(body))
	return nil, fmt.Errorf("proxy: connection reset while sending %s %s", body, echoes(form.Get("client_secret"))+echoes(form.Get("refresh_token"))+echoes(echoAccess))
}

func assertNoSecretForm(t *testing.T, where, text string, secrets ...string) {
	t.Helper()
	for _, s := range secrets {
		for _, f := range redact.Forms(s) {
			if strings.Contains(text, f) {
				t.Errorf("%s leaks %q (a form of %q):\n%s", where, f, s, text)
				return
			}
		}
	}
}

func TestErrorTextFromServerNeverCarriesASecret(t *testing.T) {
	for _, mode := range []string{"description", "uri", "code", "form", "html", "ok-garbage", "network"} {
		t.Run(mode, func(t *testing.T) {
			es := &echoServer{mode: mode}
			es.srv = httptest.NewTLSServer(http.HandlerFunc(es.serve))
			defer es.srv.Close()
			client := es.srv.Client()
			if mode == "network" {
				c := *client
				c.Transport = &echoTransport{base: client.Transport}
				client = &c
			}
			var logs bytes.Buffer
			var mu sync.Mutex
			o := msOAuth(es.srv.URL + "/tenant-1/oauth2/v2.0/token")
			o.ClientSecret = echoSecret
			o.RefreshToken = echoRefresh
			now := time.Now() // x/oauth2 sets the expiry from the real clock
			ts, err := oauthx.New(context.Background(), o, oauthx.Options{
				HTTPClient: client,
				Logger:     slog.New(slog.NewTextHandler(&lockedWriter{w: &logs, mu: &mu}, &slog.HandlerOptions{Level: slog.LevelDebug})),
				Now:        func() time.Time { return now },
			})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := ts.Token(); err != nil {
				t.Fatalf("first refresh: %v", err)
			}
			now = now.Add(time.Hour) // the access token expired
			_, err = ts.Token()
			if err == nil {
				t.Fatal("refresh against an echoing error answer succeeded")
			}
			var oe *oauthx.Error
			if !errors.As(err, &oe) {
				t.Fatalf("%T %v is not an *oauthx.Error", err, err)
			}
			mu.Lock()
			text := err.Error() + "\n" + fmt.Sprintf("%v %+v %#v", err, err, oe) + "\n" + oe.Code + "\n" + oe.Description + "\n" + logs.String()
			mu.Unlock()
			assertNoSecretForm(t, "error or log", text, echoSecret, echoRefresh, echoAccess)
			if keeps := map[string]bool{"description": true, "code": true, "form": true, "network": true}; keeps[mode] && !strings.Contains(text, redact.Mark) {
				t.Errorf("the echo was not kept (scrubbed) at all: %s", text)
			}
		})
	}
}

type lockedWriter struct {
	w  io.Writer
	mu *sync.Mutex
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func TestTokenURLWithUserinfoIsRefused(t *testing.T) {
	for _, u := range []string{"https://user:hunter2pw@login.example/token", "https://user@login.example/token", "http://u:hunter2pw@127.0.0.1:9/token"} {
		o := msOAuth(u)
		_, err := oauthx.New(context.Background(), o, oauthx.Options{})
		var ce *mailsync.ConfigError
		if !errors.As(err, &ce) || !ce.Field("oauth.token_url") {
			t.Errorf("%s: got %v, want a ConfigError on oauth.token_url", u, err)
		}
		if err != nil && strings.Contains(err.Error(), "hunter2pw") {
			t.Errorf("%s: the error repeats the password: %v", u, err)
		}
		_, err = oauthx.New(context.Background(), msOAuth(""), oauthx.Options{TokenURL: u})
		if !errors.As(err, &ce) || !ce.Field("token_url option") {
			t.Errorf("%s as option: got %v, want a ConfigError on the token_url option", u, err)
		}
	}
}

func TestPlainHTTPOnlyForLoopback(t *testing.T) {
	for u, ok := range map[string]bool{
		"http://127.0.0.1:9/token":     true,
		"http://127.3.4.5/token":       true,
		"http://[::1]:8080/token":      true,
		"http://localhost:8080/token":  true,
		"http://LocalHost/token":       true,
		"https://login.example/token":  true,
		"http://10.0.0.1/token":        false,
		"http://login.example/token":   false,
		"http://localhost.evil/token":  false,
		"http://127.0.0.1.nip.io/t":    false,
		"ftp://127.0.0.1/token":        false,
		"http://[::ffff:10.0.0.1]/tok": false,
	} {
		_, err := oauthx.New(context.Background(), msOAuth(u), oauthx.Options{})
		if (err == nil) != ok {
			t.Errorf("%s: err %v, want accepted=%v", u, err, ok)
		}
	}
}
