package gmail_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"net/mail"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/mailsync/mailsync"
	"github.com/mailsync/mailsync/connectortest"
	"github.com/mailsync/mailsync/gmail"
	"github.com/mailsync/mailsync/internal/fakegmail"
)

// env is one fake mailbox and the options that reach it.
type env struct {
	t    *testing.T
	fake *fakegmail.Server
	conn mailsync.Connection
	opts gmail.Options
}

func newEnv(t *testing.T, fo fakegmail.Options) *env {
	t.Helper()
	f := fakegmail.New(fo)
	t.Cleanup(f.Close)
	return &env{
		t:    t,
		fake: f,
		conn: testConn(f.Email()),
		opts: gmail.Options{
			TokenSource: oauth2.StaticTokenSource(&oauth2.Token{AccessToken: f.Token(), TokenType: "Bearer"}),
			Endpoint:    f.URL,
			HTTPClient:  f.Client(),
			RetryBase:   time.Millisecond,
			MaxWait:     2 * time.Second,
		},
	}
}

func testConn(user string) mailsync.Connection {
	return mailsync.Connection{
		Name:    "support-gmail",
		Enabled: true,
		User:    user,
		OAuth: &mailsync.OAuth{
			Provider: mailsync.GmailAPI, ClientID: "client-id.apps.googleusercontent.com",
			ClientSecret: "client-secret-value", RefreshToken: "refresh-token-value",
		},
		ConnectedWith: []string{"incident"},
	}
}

func (e *env) connector(mods ...func(*gmail.Options)) *gmail.Connector {
	e.t.Helper()
	o := e.opts
	for _, m := range mods {
		m(&o)
	}
	c, err := gmail.New(e.conn, o)
	if err != nil {
		e.t.Fatalf("New: %v", err)
	}
	e.t.Cleanup(func() { c.Close() })
	return c
}

// deliver adds n small messages and returns their Gmail ids, oldest first.
func (e *env) deliver(prefix string, n int, labels ...string) []string {
	var ids []string
	for i := 0; i < n; i++ {
		ids = append(ids, e.fake.Deliver(msg(fmt.Sprintf("%s-%d", prefix, i)), labels...))
	}
	return ids
}

func msg(id string) []byte {
	return connectortest.NewMessage(id, "Pedido "+id)
}

func keys(l *mailsync.Listing) []string {
	var out []string
	for _, r := range l.Messages {
		out = append(out, r.Key)
	}
	return out
}

// fetchGone fetches refs and returns the keys reported gone (fn(ref, nil)).
func fetchGone(t *testing.T, c mailsync.Connector, refs []mailsync.MessageRef) []string {
	t.Helper()
	var gone []string
	err := c.Fetch(context.Background(), refs, func(r mailsync.MessageRef, rd io.Reader) error {
		if rd == nil {
			gone = append(gone, r.Key)
			return nil
		}
		_, err := io.Copy(io.Discard, rd)
		return err
	})
	if err != nil {
		t.Fatalf("Fetch: %v", err)
	}
	return gone
}

// fetchAll fetches refs and returns the bodies by key, in delivery order.
func fetchAll(t *testing.T, c mailsync.Connector, refs []mailsync.MessageRef) ([]string, map[string][]byte) {
	t.Helper()
	var order []string
	got := map[string][]byte{}
	err := c.Fetch(context.Background(), refs, func(r mailsync.MessageRef, rd io.Reader) error {
		if rd == nil { // reported gone; see fetchGone
			return nil
		}
		b, err := io.ReadAll(rd)
		if err != nil {
			return err
		}
		order = append(order, r.Key)
		got[r.Key] = b
		return nil
	})
	if err != nil {
		t.Fatalf("Fetch: %v", err)
	}
	return order, got
}

func refsOf(ids []string) []mailsync.MessageRef {
	var out []mailsync.MessageRef
	for _, id := range ids {
		out = append(out, mailsync.MessageRef{Key: id, Size: -1})
	}
	return out
}

// hookTransport calls before for each request before sending it.
type hookTransport struct {
	base   http.RoundTripper
	mu     sync.Mutex
	before func(*http.Request)
}

func (h *hookTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	h.mu.Lock()
	fn := h.before
	h.mu.Unlock()
	if fn != nil {
		fn(r)
	}
	return h.base.RoundTrip(r)
}

// harness is the connectortest.Harness on the fake Gmail API.
type harness struct {
	e *env
}

func (h *harness) MakeConnector(ctx context.Context) (mailsync.Connector, error) {
	return gmail.New(h.e.conn, h.e.opts)
}

func (h *harness) Deliver(ctx context.Context, raw []byte) error {
	h.e.fake.Deliver(raw)
	return nil
}

func (h *harness) Inspect(ctx context.Context) ([]connectortest.MailboxMessage, error) {
	processed, _ := h.e.fake.LabelID(connectortest.MoveFolder)
	var out []connectortest.MailboxMessage
	for _, m := range h.e.fake.Messages() {
		if slices.Contains(m.LabelIDs, "TRASH") {
			continue
		}
		var folder string
		switch {
		case slices.Contains(m.LabelIDs, "INBOX"):
			folder = connectortest.SourceFolder
		case processed != "" && slices.Contains(m.LabelIDs, processed):
			folder = connectortest.MoveFolder
		default:
			continue
		}
		pm, err := mail.ReadMessage(strings.NewReader(string(m.Raw)))
		if err != nil {
			return nil, err
		}
		out = append(out, connectortest.MailboxMessage{
			MessageID: strings.Trim(pm.Header.Get("Message-Id"), "<> "),
			Folder:    folder,
			Seen:      !slices.Contains(m.LabelIDs, "UNREAD"),
		})
	}
	return out, nil
}

func (h *harness) PostActions() []mailsync.ActionKind {
	return []mailsync.ActionKind{mailsync.MarkRead, mailsync.MoveToFolder, mailsync.Delete}
}

func (h *harness) Close() {}

// trimTransport removes the first *drop parts of every batch answer.
type trimTransport struct {
	base http.RoundTripper
	drop *int
}

func (tt *trimTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := tt.base.RoundTrip(r)
	if err != nil || !strings.HasPrefix(r.URL.Path, "/batch/") || *tt.drop == 0 {
		return resp, err
	}
	_, params, err := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	if err != nil {
		return nil, err
	}
	mr := multipart.NewReader(resp.Body, params["boundary"])
	var out bytes.Buffer
	mw := multipart.NewWriter(&out)
	mw.SetBoundary(params["boundary"])
	for i := 0; ; i++ {
		p, err := mr.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, err
		}
		if i < *tt.drop {
			continue
		}
		w, _ := mw.CreatePart(p.Header)
		io.Copy(w, p)
	}
	mw.Close()
	resp.Body.Close()
	resp.Body = io.NopCloser(&out)
	resp.ContentLength = int64(out.Len())
	resp.Header.Del("Content-Length")
	return resp, nil
}

func staticToken(tok string) oauth2.TokenSource {
	return oauth2.StaticTokenSource(&oauth2.Token{AccessToken: tok, TokenType: "Bearer"})
}

// Remove implements connectortest.Remover: another client deletes the message.
func (h *harness) Remove(ctx context.Context, messageID string) error {
	for _, m := range h.e.fake.Messages() {
		pm, err := mail.ReadMessage(strings.NewReader(string(m.Raw)))
		if err == nil && strings.Trim(pm.Header.Get("Message-Id"), "<> ") == messageID {
			h.e.fake.DeleteMessage(m.ID)
			return nil
		}
	}
	return fmt.Errorf("no message %s", messageID)
}

// RoundTrips implements connectortest.RoundTripCounter: HTTP requests to the API.
func (h *harness) RoundTrips() int64 { return int64(h.e.fake.Stats().Requests) }
