package graph_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/mailsync/mailsync"
	"github.com/mailsync/mailsync/graph"
	"github.com/mailsync/mailsync/internal/redact"
)

// assertNoSecret fails when text holds any encoding (redact.Forms) of a
// secret.
func assertNoSecret(t *testing.T, where, text string, secrets ...string) {
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

func errText(err error) string {
	if err == nil {
		return ""
	}
	s := fmt.Sprintf("%v | %+v", err, err)
	var ge *graph.Error
	if errors.As(err, &ge) {
		s += " | " + ge.Code + " | " + ge.Message
	}
	return s
}

// Error answers that repeat the Authorization header (raw, URL-encoded,
// JSON-quoted, base64 at every alignment) never put the access token in
// an error or a log line, for every call; a token endpoint that echoes
// the form body never puts the client secret or refresh token there.
func TestServerEchoesNeverReachErrorsOrLogs(t *testing.T) {
	e := newEnv(t, false)
	ids := e.deliver(2, "echo")
	c := e.connector()
	if _, err := c.List(context.Background(), ""); err != nil { // gets an access token
		t.Fatal(err)
	}
	access := []string{clientSecret, refresh0}
	for i := 1; i <= 9; i++ {
		access = append(access, fmt.Sprintf("fake-access-%d", i))
	}
	refs := []mailsync.MessageRef{{Key: ids[0], Size: -1}}
	var texts []string
	for _, status := range []int{400, 403, 404, 500} {
		calls := map[string]func() error{
			"list": func() error { _, err := c.List(context.Background(), ""); return err },
			"fetch": func() error {
				return c.Fetch(context.Background(), refs, func(mailsync.MessageRef, io.Reader) error { return nil })
			},
			"mark read": func() error { return c.Ack(context.Background(), refs, mailsync.PostAction{Kind: mailsync.MarkRead}) },
			"move": func() error {
				return c.Ack(context.Background(), refs, mailsync.PostAction{Kind: mailsync.MoveToFolder, Folder: "Archive"})
			},
			"check": func() error {
				e.fake.EchoErrors(status, 1)
				return graph.Check(context.Background(), e.conn, e.opts)
			},
		}
		for name, call := range calls {
			if name != "check" {
				e.fake.EchoErrors(status, 1)
			}
			err := call()
			if status != 404 && err == nil {
				t.Errorf("%s, echoing %d: no error", name, status)
			}
			texts = append(texts, fmt.Sprintf("%s/%d: %s", name, status, errText(err)))
		}
	}
	// A token endpoint that echoes the request body.
	e.fake.FailTokens("echo")
	e.fake.ExpireTokens()
	_, err := e.connector().List(context.Background(), "")
	if !errors.Is(err, mailsync.ErrConsentRequired) {
		t.Errorf("echoing invalid_grant: %v", err)
	}
	texts = append(texts, "token: "+errText(err))
	all := strings.Join(texts, "\n")
	assertNoSecret(t, "errors", all, access...)
	assertNoSecret(t, "logs", e.logs.String(), access...)
	if !strings.Contains(all, redact.Mark) {
		t.Errorf("the echoes were not kept (scrubbed):\n%s", all)
	}
}

// A transport error whose text repeats the Authorization header (as a
// misbehaving proxy's might) is scrubbed too.
func TestTransportErrorEchoIsScrubbed(t *testing.T) {
	e := newEnv(t, false)
	e.deliver(1, "tr")
	base := e.fake.Client().Transport
	c := e.connector(func(o *graph.Options) {
		o.HTTPClient = &http.Client{Transport: echoTransport{base}}
	})
	_, err := c.List(context.Background(), "")
	if err == nil || !errors.Is(err, mailsync.ErrConnection) {
		t.Fatalf("got %v, want a connection error", err)
	}
	assertNoSecret(t, "error", errText(err), "fake-access-1")
	if !strings.Contains(err.Error(), redact.Mark) {
		t.Fatalf("the echo was not kept (scrubbed): %v", err)
	}
}

type echoTransport struct{ base http.RoundTripper }

func (t echoTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if !strings.HasPrefix(r.URL.Path, "/v1.0/") {
		return t.base.RoundTrip(r)
	}
	tok := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
	return nil, &echoNetError{"proxy: connection reset while relaying Authorization " + tok + " " + strings.ToUpper(tok[:1]) + tok[1:]}
}

type echoNetError struct{ msg string }

func (e *echoNetError) Error() string   { return e.msg }
func (e *echoNetError) Timeout() bool   { return false }
func (e *echoNetError) Temporary() bool { return false }
