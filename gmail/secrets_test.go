package gmail_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"

	"github.com/mailsync/mailsync"
	"github.com/mailsync/mailsync/gmail"
	"github.com/mailsync/mailsync/internal/fakegmail"
	"github.com/mailsync/mailsync/internal/redact"
	"github.com/mailsync/mailsync/oauthx"
	"google.golang.org/api/googleapi"
)

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// errorText is everything an error shows: its text and the server text
// of the *APIError and *googleapi.Error inside.
func errorText(err error) string {
	if err == nil {
		return ""
	}
	s := fmt.Sprintf("%v | %+v", err, err)
	var ae *gmail.APIError
	if errors.As(err, &ae) {
		s += " | " + ae.Message + " | " + ae.Reason + " | " + ae.Status
	}
	var ge *googleapi.Error
	if errors.As(err, &ge) {
		s += " | " + ge.Error() + " | " + ge.Body + fmt.Sprint(ge.Details)
	}
	return s
}

// Error answers that repeat the Authorization header (raw, URL-encoded,
// JSON-quoted, base64 at every alignment) never put the access token in
// an error or a log line, for every call the provider makes; a token
// endpoint that echoes the form never puts the client secret or refresh
// token there.
func TestServerEchoesNeverReachErrorsOrLogs(t *testing.T) {
	e := newEnv(t, fakegmail.Options{})
	ids := e.deliver("m", 3)
	te := newTokenEndpoint(t, e.fake, "refresh-token-value")
	logs := &lockedBuffer{}
	opts := e.opts
	opts.TokenSource = nil
	opts.OAuth = oauthx.Options{TokenURL: te.srv.URL + "/token"}
	opts.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	opts.MaxRetries = 1
	c, err := gmail.New(e.conn, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()
	l, err := c.List(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	cur := l.Cursor
	discard := func(mailsync.MessageRef, io.Reader) error { return nil }
	calls := []struct {
		op   string
		call func() error
	}{
		{"users.getProfile", func() error { _, err := c.List(ctx, ""); return err }},
		{"messages.list", func() error { _, err := c.List(ctx, ""); return err }},
		{"history.list", func() error { _, err := c.List(ctx, cur); return err }},
		{"messages.get", func() error { return c.Fetch(ctx, refsOf(ids[:1]), discard) }},
		{"messages.get", func() error { return c.Fetch(ctx, refsOf(ids), discard) }}, // a batch part
		{"batch", func() error { return c.Fetch(ctx, refsOf(ids), discard) }},
		{"messages.batchModify", func() error { return c.Ack(ctx, refsOf(ids), mailsync.PostAction{Kind: mailsync.MarkRead}) }},
		{"messages.trash", func() error { return c.Ack(ctx, refsOf(ids[:1]), mailsync.PostAction{Kind: mailsync.Delete}) }},
		{"labels.list", func() error {
			return c.Ack(ctx, refsOf(ids[:1]), mailsync.PostAction{Kind: mailsync.MoveToFolder, Folder: "Escalated"})
		}},
	}
	var texts []string
	for _, status := range []int{400, 403, 500} {
		for i, cl := range calls {
			f := fakegmail.Fault{Op: cl.op, Status: status, Times: 1, EchoAuth: true}
			if status == 500 {
				f.Times = 2 // MaxRetries 1: tried twice
			}
			if status == 403 {
				f.Reason = "insufficientPermissions"
			}
			e.fake.InjectFault(f)
			err := cl.call()
			if err == nil && !(i == 4 && status == 500) { // a batch part is retried on its own
				t.Errorf("%s answering %d: no error", cl.op, status)
			}
			texts = append(texts, fmt.Sprintf("%s/%d: %s", cl.op, status, errorText(err)))
		}
	}
	// Gmail's Check too.
	e.fake.InjectFault(fakegmail.Fault{Op: "users.getProfile", Status: 400, EchoAuth: true})
	_, err = gmail.Check(ctx, e.conn, opts)
	texts = append(texts, "check: "+errorText(err))
	// A token endpoint that echoes the form it was sent.
	te.mu.Lock()
	te.echo = true
	te.mu.Unlock()
	e.fake.RevokeToken("ya29.access-1")
	e.fake.RevokeToken("ya29.access-2")
	_, err = c.List(ctx, "")
	if !errors.Is(err, mailsync.ErrConsentRequired) {
		t.Errorf("echoing token endpoint: %v", err)
	}
	texts = append(texts, "token: "+errorText(err))

	all := strings.Join(texts, "\n")
	secrets := []string{"client-secret-value", "refresh-token-value", "ya29.access-1", "ya29.access-2"}
	for _, where := range []struct{ name, text string }{{"errors", all}, {"logs", logs.String()}} {
		for _, s := range secrets {
			for _, f := range redact.Forms(s) {
				if strings.Contains(where.text, f) {
					t.Errorf("%s leak %q (a form of %q):\n%s", where.name, f, s, where.text)
				}
			}
		}
	}
	if strings.Count(all, redact.Mark) < len(calls) {
		t.Errorf("the echoes were not kept (scrubbed):\n%s", all)
	}
}
