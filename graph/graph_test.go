package graph_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mailsync/mailsync"
	"github.com/mailsync/mailsync/connectortest"
	"github.com/mailsync/mailsync/graph"
	"github.com/mailsync/mailsync/internal/fakegraph"
	"github.com/mailsync/mailsync/oauthx"
	"golang.org/x/oauth2"
)

const (
	user         = "support@contoso.com"
	clientID     = "11111111-2222-3333-4444-555555555555"
	clientSecret = "client~secret~value~0123"
	refresh0     = "refresh-token-initial-value"
)

// env is one fake Graph tenant plus everything a connector needs.
type env struct {
	t      *testing.T
	fake   *fakegraph.Server
	conn   mailsync.Connection
	opts   graph.Options
	logs   *syncBuffer
	mu     sync.Mutex
	stored []string // refresh tokens the host was asked to store
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}
func (b *syncBuffer) String() string { b.mu.Lock(); defer b.mu.Unlock(); return b.b.String() }

func newEnv(t *testing.T, rotate bool) *env {
	t.Helper()
	fake := fakegraph.New(user)
	t.Cleanup(fake.Close)
	fake.ConfigureOAuth(clientID, clientSecret, refresh0, rotate, 3600)
	e := &env{t: t, fake: fake, logs: &syncBuffer{}}
	e.conn = mailsync.Connection{
		Name: "graph-support", Enabled: true, User: user,
		OAuth: &mailsync.OAuth{Provider: mailsync.MicrosoftGraph, ClientID: clientID, ClientSecret: clientSecret,
			TenantID: "contoso-tenant", RefreshToken: refresh0, TokenURL: fake.TokenURL()},
		ConnectedWith: []string{"incident"},
	}
	e.opts = graph.Options{
		BaseURL:    fake.BaseURL(),
		HTTPClient: fake.Client(),
		OAuth: oauthx.Options{HTTPClient: fake.Client(), OnRefreshToken: func(_ context.Context, s mailsync.Secret) error {
			e.mu.Lock()
			defer e.mu.Unlock()
			e.stored = append(e.stored, s.Reveal())
			e.conn.OAuth.RefreshToken = s // as a host persisting it would
			return nil
		}},
		MaxRetryWait: 5 * time.Second,
		// The fake enforces no request budget unless a test sets one
		// (SetMailboxBudget); the tests that do set RequestBudget too.
		RequestBudget: -1,
		Logger:        slog.New(slog.NewTextHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	return e
}

func (e *env) connector(mod ...func(*graph.Options)) *graph.Connector {
	e.t.Helper()
	o := e.opts
	for _, m := range mod {
		m(&o)
	}
	e.mu.Lock()
	conn := e.conn
	oa := *conn.OAuth
	conn.OAuth = &oa
	e.mu.Unlock()
	c, err := graph.New(conn, o)
	if err != nil {
		e.t.Fatalf("graph.New: %v", err)
	}
	e.t.Cleanup(func() { c.Close() })
	return c
}

func (e *env) deliver(n int, prefix string) []string {
	e.t.Helper()
	var ids []string
	for i := 0; i < n; i++ {
		id, err := e.fake.Deliver("inbox", connectortest.NewMessage(fmt.Sprintf("%s-%d", prefix, i), fmt.Sprintf("Pedido %d", i)))
		if err != nil {
			e.t.Fatal(err)
		}
		ids = append(ids, id)
	}
	return ids
}

// graphRequests returns the requests to the Graph API (not the token endpoint).
func graphRequests(f *fakegraph.Server) []fakegraph.Request {
	var out []fakegraph.Request
	for _, r := range f.Requests() {
		if strings.HasPrefix(r.Path, "/v1.0/") {
			out = append(out, r)
		}
	}
	return out
}

func keys(l *mailsync.Listing) []string {
	var k []string
	for _, m := range l.Messages {
		k = append(k, m.Key)
	}
	return k
}

// harness adapts env to connectortest.
type harness struct{ e *env }

func (h harness) MakeConnector(ctx context.Context) (mailsync.Connector, error) {
	return graph.New(h.e.conn, h.e.opts)
}

func (h harness) Deliver(ctx context.Context, raw []byte) error {
	_, err := h.e.fake.Deliver("inbox", raw)
	return err
}

func (h harness) Inspect(ctx context.Context) ([]connectortest.MailboxMessage, error) {
	var out []connectortest.MailboxMessage
	for _, m := range h.e.fake.Messages() {
		switch m.Folder {
		case "Inbox":
			out = append(out, connectortest.MailboxMessage{MessageID: m.MessageID, Folder: connectortest.SourceFolder, Seen: m.IsRead})
		case connectortest.MoveFolder:
			out = append(out, connectortest.MailboxMessage{MessageID: m.MessageID, Folder: connectortest.MoveFolder, Seen: m.IsRead})
		}
	}
	return out, nil
}

func (h harness) PostActions() []mailsync.ActionKind {
	return []mailsync.ActionKind{mailsync.MarkRead, mailsync.MoveToFolder, mailsync.Delete}
}

func (h harness) Close() {}

func TestConformance(t *testing.T) {
	connectortest.Run(t, func(ctx context.Context, t *testing.T) (connectortest.Harness, error) {
		return harness{newEnv(t, true)}, nil
	})
}

// Acceptance: a 2,000-message first sync costs at most 1.1 requests per
// message; a sync with nothing new is one request.
func TestFirstSync2000MessagesRequestBudget(t *testing.T) {
	if testing.Short() {
		t.Skip("2,000 messages")
	}
	e := newEnv(t, false)
	e.deliver(2000, "bulk")
	state := mailsync.NewMemoryState()
	sink := mailsync.NewMemorySink()
	start := time.Now()
	rep, err := mailsync.Sync(context.Background(), e.connector(), mailsync.DefaultMapping("incident"), sink, mailsync.WithState(state))
	if err != nil {
		t.Fatal(err)
	}
	took := time.Since(start)
	if rep.Created != 2000 || len(sink.Tickets()) != 2000 {
		t.Fatalf("created %d tickets, want 2000", rep.Created)
	}
	reqs := graphRequests(e.fake)
	perMsg := float64(len(reqs)) / 2000
	t.Logf("first sync of 2000 messages: %d Graph requests (%.3f per message), %d token requests, %s", len(reqs), perMsg, e.fake.TokenRequests(), took)
	if perMsg > 1.1 {
		t.Fatalf("%d requests for 2000 messages: %.3f per message, budget 1.1", len(reqs), perMsg)
	}
	deltas := 0
	for _, r := range reqs {
		if strings.Contains(r.Path, "/messages/delta") {
			deltas++
		}
	}
	if deltas != 2 {
		t.Errorf("%d delta pages for 2000 messages at page size 1000, want 2", deltas)
	}

	e.fake.ResetRequests()
	rep, err = mailsync.Sync(context.Background(), e.connector(), mailsync.DefaultMapping("incident"), sink, mailsync.WithState(state))
	if err != nil {
		t.Fatal(err)
	}
	if n := len(graphRequests(e.fake)); n != 1 || rep.Created != 0 {
		t.Fatalf("nothing-new sync: %d requests, %d created; want 1 request", n, rep.Created)
	}
}

func TestDeltaPagesPreferHeadersAndRemovedEntries(t *testing.T) {
	e := newEnv(t, false)
	ids := e.deliver(7, "p")
	c := e.connector(func(o *graph.Options) { o.PageSize = 3 })
	ctx := context.Background()
	l, err := c.List(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	if got := keys(l); strings.Join(got, ",") != strings.Join(ids, ",") {
		t.Fatalf("keys %q, want %q (oldest first, immutable ids)", got, ids)
	}
	for _, m := range l.Messages {
		if m.Size != -1 {
			t.Errorf("size %d, want -1", m.Size)
		}
	}
	if l.Complete || l.Cursor == "" || len(l.Notes) != 0 {
		t.Fatalf("listing complete=%v cursor=%q notes=%q", l.Complete, l.Cursor, l.Notes)
	}
	reqs := graphRequests(e.fake)
	if len(reqs) != 3 {
		t.Fatalf("%d requests for 7 messages at page size 3, want 3 pages", len(reqs))
	}
	if !strings.HasSuffix(reqs[0].Path, "/messages/delta()") || !strings.Contains(reqs[0].Query.Get("$select"), "id") {
		t.Errorf("first delta request %s ?%v", reqs[0].Path, reqs[0].Query)
	}
	for _, r := range reqs {
		pref := strings.Join(r.Header.Values("Prefer"), ",")
		if !strings.Contains(pref, "odata.maxpagesize=3") || !strings.Contains(pref, `IdType="ImmutableId"`) {
			t.Errorf("request %s Prefer %q", r.Path, pref)
		}
		if !strings.HasPrefix(r.Header.Get("Authorization"), "Bearer fake-access-") {
			t.Errorf("request %s without the bearer token", r.Path)
		}
	}
	if !strings.Contains(reqs[1].Path, "mailFolders('inbox')/messages/delta()") || reqs[1].Query.Get("$skiptoken") == "" {
		t.Errorf("nextLink not followed as given: %s ?%v", reqs[1].Path, reqs[1].Query)
	}

	// Changes: one removed, one updated, two new.
	e.fake.Remove(ids[2])
	e.fake.Touch(ids[4])
	fresh := e.deliver(2, "q")
	e.fake.ResetRequests()
	l2, err := e.connector(func(o *graph.Options) { o.PageSize = 3 }).List(ctx, l.Cursor)
	if err != nil {
		t.Fatal(err)
	}
	want := append([]string{ids[4]}, fresh...)
	if got := keys(l2); strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("delta keys %q, want %q (removed %s skipped)", got, want, ids[2])
	}
	// The @removed entry came over the wire.
	sawRemoved := false
	for _, r := range graphRequests(e.fake) {
		if r.Query.Get("$deltatoken") != "" {
			sawRemoved = true
		}
	}
	if !sawRemoved || len(graphRequests(e.fake)) != 2 {
		t.Fatalf("delta round took %d requests", len(graphRequests(e.fake)))
	}

	// Nothing new: one request.
	e.fake.ResetRequests()
	l3, err := e.connector().List(ctx, l2.Cursor)
	if err != nil {
		t.Fatal(err)
	}
	if len(l3.Messages) != 0 || len(graphRequests(e.fake)) != 1 {
		t.Fatalf("nothing new: %d messages in %d requests", len(l3.Messages), len(graphRequests(e.fake)))
	}
}

func TestExpiredDeltaLinkRestartsWithoutDuplicates(t *testing.T) {
	e := newEnv(t, false)
	e.deliver(4, "x")
	state := mailsync.NewMemoryState()
	sink := mailsync.NewMemorySink()
	m := mailsync.DefaultMapping("incident")
	if rep, err := mailsync.Sync(context.Background(), e.connector(), m, sink, mailsync.WithState(state)); err != nil || rep.Created != 4 {
		t.Fatalf("first sync: %v %v", rep, err)
	}
	cursor, _ := state.Cursor(context.Background(), e.conn.Name)
	e.fake.ExpireDeltaTokens()
	more := e.deliver(1, "y")

	l, err := e.connector().List(context.Background(), cursor)
	if err != nil {
		t.Fatal(err)
	}
	if len(l.Messages) != 5 || len(l.Notes) != 1 || !strings.Contains(l.Notes[0], "expired") {
		t.Fatalf("after expiry: %d messages, notes %q; want the whole folder and a note", len(l.Messages), l.Notes)
	}
	if l.Messages[4].Key != more[0] {
		t.Fatalf("keys changed after the restart: %q", keys(l))
	}
	var statuses []int
	for _, r := range graphRequests(e.fake) {
		if strings.Contains(r.Path, "delta") && r.Query.Get("$deltatoken") != "" {
			statuses = append(statuses, r.Status)
		}
	}
	if len(statuses) == 0 || statuses[len(statuses)-1] != http.StatusGone {
		t.Fatalf("the stale delta link was not answered 410: %v", statuses)
	}

	e.fake.ExpireDeltaTokens()
	rep, err := mailsync.Sync(context.Background(), e.connector(), m, sink, mailsync.WithState(state))
	if err != nil {
		t.Fatal(err)
	}
	if rep.Created != 1 || len(sink.Tickets()) != 5 {
		t.Fatalf("sync after expiry created %d (tickets %d); want 1 and 5", rep.Created, len(sink.Tickets()))
	}
}

func TestThrottlingHonoursRetryAfter(t *testing.T) {
	e := newEnv(t, false)
	e.deliver(2, "t")
	c := e.connector()
	e.fake.Throttle(http.StatusTooManyRequests, 1, "1")
	e.fake.Throttle(http.StatusServiceUnavailable, 1, "1")
	start := time.Now()
	l, err := c.List(context.Background(), "")
	if err != nil {
		t.Fatalf("throttled list failed: %v", err)
	}
	if d := time.Since(start); d < 2*time.Second {
		t.Fatalf("two Retry-After: 1 answers waited only %s", d)
	}
	if len(l.Messages) != 2 {
		t.Fatalf("%d messages", len(l.Messages))
	}
	var codes []int
	for _, r := range graphRequests(e.fake) {
		codes = append(codes, r.Status)
	}
	if fmt.Sprint(codes) != "[429 503 200]" {
		t.Fatalf("statuses %v", codes)
	}

	// A Retry-After longer than MaxRetryWait is surfaced, not slept.
	e.fake.Throttle(http.StatusTooManyRequests, 1, "120")
	start = time.Now()
	err = c.Fetch(context.Background(), l.Messages[:1], func(mailsync.MessageRef, io.Reader) error { return nil })
	var te *mailsync.ThrottledError
	if !errors.As(err, &te) || te.RetryAfter != 120*time.Second || !errors.Is(err, mailsync.ErrThrottled) || !mailsync.Temporary(err) {
		t.Fatalf("long Retry-After: %v", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("long Retry-After waited %s", d)
	}
}

func TestAccessTokenExpiryAndPersistent401(t *testing.T) {
	e := newEnv(t, false)
	e.deliver(1, "a")
	c := e.connector()
	l, err := c.List(context.Background(), "")
	if err != nil {
		t.Fatal(err)
	}
	e.fake.ExpireTokens() // revoked before its expiry time
	got := 0
	if err := c.Fetch(context.Background(), l.Messages, func(_ mailsync.MessageRef, r io.Reader) error {
		b, _ := io.ReadAll(r)
		got = len(b)
		return nil
	}); err != nil {
		t.Fatalf("fetch after token revocation: %v", err)
	}
	if got == 0 || e.fake.TokenRequests() != 2 {
		t.Fatalf("read %d bytes, %d token requests; want a refresh and the message", got, e.fake.TokenRequests())
	}

	// A token source that keeps returning a rejected token.
	static := e.connector(func(o *graph.Options) {
		o.TokenSource = oauth2.StaticTokenSource(&oauth2.Token{AccessToken: "never-issued", Expiry: time.Now().Add(time.Hour)})
	})
	_, err = static.List(context.Background(), "")
	var ge *graph.Error
	if !errors.Is(err, mailsync.ErrAuth) || !errors.Is(err, mailsync.ErrTokenExpired) || !errors.As(err, &ge) || ge.StatusCode != 401 {
		t.Fatalf("persistent 401: %v", err)
	}
	if strings.Contains(err.Error(), "never-issued") {
		t.Fatalf("error leaks the token: %v", err)
	}
}

func TestRotatedRefreshTokenReachesHostAndInvalidGrantIsTyped(t *testing.T) {
	e := newEnv(t, true)
	e.deliver(1, "r")
	if _, err := e.connector().List(context.Background(), ""); err != nil {
		t.Fatal(err)
	}
	e.mu.Lock()
	stored := append([]string(nil), e.stored...)
	e.mu.Unlock()
	if len(stored) != 1 || stored[0] != "fake-refresh-1" {
		t.Fatalf("host stored %q, want [fake-refresh-1]", stored)
	}
	// The next connector starts from the stored token (the old one is revoked).
	if _, err := e.connector().List(context.Background(), ""); err != nil {
		t.Fatalf("second connector with the rotated token: %v", err)
	}

	e.fake.FailTokens("invalid_grant")
	_, err := e.connector().List(context.Background(), "")
	var oe *oauthx.Error
	if !errors.Is(err, mailsync.ErrConsentRequired) || !errors.As(err, &oe) || oe.Code != "invalid_grant" || mailsync.Temporary(err) {
		t.Fatalf("invalid_grant: %v", err)
	}
	err = graph.Check(context.Background(), e.conn, e.opts)
	if !errors.Is(err, mailsync.ErrConsentRequired) {
		t.Fatalf("Check with invalid_grant: %v", err)
	}
	e.fake.FailTokens("500")
	if _, err = e.connector().List(context.Background(), ""); !mailsync.Temporary(err) {
		t.Fatalf("token endpoint 500: %v is not temporary", err)
	}
	for _, s := range []string{clientSecret, refresh0, "fake-refresh-", "fake-access-"} {
		if strings.Contains(e.logs.String(), s) {
			t.Fatalf("logs contain %q:\n%s", s, e.logs.String())
		}
	}
}

func TestFetchStreamsAndSkipsGoneMessages(t *testing.T) {
	e := newEnv(t, false)
	ids := e.deliver(3, "f")
	c := e.connector()
	l, err := c.List(context.Background(), "")
	if err != nil {
		t.Fatal(err)
	}
	e.fake.Remove(ids[1])
	var got, gone []string
	err = c.Fetch(context.Background(), l.Messages, func(ref mailsync.MessageRef, r io.Reader) error {
		if r == nil {
			gone = append(gone, ref.Key)
			return nil
		}
		b, err := io.ReadAll(r)
		if err != nil {
			return err
		}
		if !bytes.Contains(b, []byte("Message-ID: <f-")) {
			t.Errorf("message %s: unexpected content %.80q", ref.Key, b)
		}
		got = append(got, ref.Key)
		return nil
	})
	if err != nil || strings.Join(got, ",") != ids[0]+","+ids[2] {
		t.Fatalf("fetched %q (%v); want the two remaining messages in order", got, err)
	}
	if strings.Join(gone, ",") != ids[1] {
		t.Fatalf("reported gone %q, want %q", gone, ids[1])
	}
	boom := errors.New("sink full")
	err = c.Fetch(context.Background(), l.Messages, func(mailsync.MessageRef, io.Reader) error { return boom })
	if err != boom {
		t.Fatalf("fn's error came back as %v", err)
	}
}

func TestFetchDoesNotBufferLargeMessages(t *testing.T) {
	e := newEnv(t, false)
	raw, _ := connectortest.NewLargeMessage("huge", 24<<20)
	if _, err := e.fake.Deliver("inbox", raw); err != nil {
		t.Fatal(err)
	}
	c := e.connector()
	l, err := c.List(context.Background(), "")
	if err != nil {
		t.Fatal(err)
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	var n int64
	err = c.Fetch(context.Background(), l.Messages, func(_ mailsync.MessageRef, r io.Reader) error {
		n, err = io.Copy(io.Discard, r)
		return err
	})
	runtime.ReadMemStats(&after)
	if err != nil || n != int64(len(raw)) {
		t.Fatalf("fetched %d of %d bytes: %v", n, len(raw), err)
	}
	// A buffered download would allocate at least the message size (and
	// io.ReadAll about twice that).
	alloc := after.TotalAlloc - before.TotalAlloc
	t.Logf("fetching a %d MiB message allocated %.1f MiB (client and fake server together)", len(raw)>>20, float64(alloc)/(1<<20))
	if alloc > uint64(len(raw))/2 {
		t.Fatalf("fetching a %d MiB message allocated %d MiB", len(raw)>>20, alloc>>20)
	}
}

func TestAckActionsAreIdempotent(t *testing.T) {
	e := newEnv(t, false)
	ids := e.deliver(4, "k")
	c := e.connector()
	ctx := context.Background()
	l, err := c.List(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	refs := l.Messages
	folderOf := func(id string) (string, bool) {
		for _, m := range e.fake.Messages() {
			if m.ID == id {
				return m.Folder, m.IsRead
			}
		}
		return "", false
	}

	e.fake.ResetRequests()
	if err := c.Ack(ctx, refs[:1], mailsync.PostAction{Kind: mailsync.MarkRead}); err != nil {
		t.Fatal(err)
	}
	reqs := graphRequests(e.fake)
	if len(reqs) != 1 || reqs[0].Method != http.MethodPatch || !reqs[0].Gzipped {
		t.Fatalf("mark read sent %+v", reqs)
	}
	var patch map[string]any
	if err := json.Unmarshal(reqs[0].Body, &patch); err != nil || patch["isRead"] != true {
		t.Fatalf("PATCH body %s", reqs[0].Body)
	}
	if f, read := folderOf(ids[0]); f != "Inbox" || !read {
		t.Fatalf("after mark read: %s read=%v", f, read)
	}

	move := mailsync.PostAction{Kind: mailsync.MoveToFolder, Folder: "Processed"}
	for i := 0; i < 2; i++ { // the second time the messages are already there
		if err := c.Ack(ctx, refs[1:3], move); err != nil {
			t.Fatalf("move #%d: %v", i+1, err)
		}
	}
	for _, id := range ids[1:3] {
		if f, _ := folderOf(id); f != "Processed" {
			t.Fatalf("moved message %s is in %q", id, f)
		}
	}
	// A new connector finds the folder instead of creating another.
	if err := e.connector().Ack(ctx, refs[1:2], move); err != nil {
		t.Fatal(err)
	}
	creates := 0
	for _, r := range graphRequests(e.fake) {
		if r.Method == http.MethodPost && strings.HasSuffix(r.Path, "/mailFolders") {
			creates++
		}
		if r.Method == http.MethodPost && strings.HasSuffix(r.Path, "/move") {
			// The SDK writes "DestinationId" (Graph's action parameters are
			// case-insensitive; its docs show "destinationId").
			if !r.Gzipped || !bytes.Contains(bytes.ToLower(r.Body), []byte(`"destinationid"`)) {
				t.Errorf("move body %q gzipped=%v", r.Body, r.Gzipped)
			}
		}
	}
	if creates != 1 {
		t.Fatalf("folder created %d times", creates)
	}

	del := mailsync.PostAction{Kind: mailsync.Delete}
	for i := 0; i < 2; i++ {
		if err := c.Ack(ctx, refs[3:], del); err != nil {
			t.Fatalf("delete #%d: %v", i+1, err)
		}
	}
	if f, _ := folderOf(ids[3]); f != "Deleted Items" {
		t.Fatalf("deleted message is in %q after a repeated delete; want Deleted Items", f)
	}
	// Gone messages are fine for every action.
	e.fake.Remove(ids[0])
	for _, a := range []mailsync.PostAction{{Kind: mailsync.MarkRead}, move, del} {
		if err := c.Ack(ctx, refs[:1], a); err != nil {
			t.Fatalf("%s on a gone message: %v", a.Kind, err)
		}
	}
	if err := c.Ack(ctx, refs, mailsync.PostAction{Kind: "archive"}); !errors.Is(err, mailsync.ErrInvalidConfig) {
		t.Fatalf("unknown action: %v", err)
	}
}

func TestCustomFolderAndFolderErrors(t *testing.T) {
	e := newEnv(t, false)
	e.fake.AddFolder("Helpdesk")
	id, _ := e.fake.Deliver("Helpdesk", connectortest.NewMessage("h-1", "Help"))
	e.deliver(2, "inbox")
	ctx := context.Background()
	hd := func(o *graph.Options) { o.Folder = "Helpdesk" }
	l, err := e.connector(hd).List(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	if got := keys(l); len(got) != 1 || got[0] != id {
		t.Fatalf("Helpdesk listing %q", got)
	}
	e.fake.ResetRequests()
	l2, err := e.connector(hd).List(ctx, l.Cursor)
	if err != nil || len(l2.Messages) != 0 || len(graphRequests(e.fake)) != 1 {
		t.Fatalf("nothing new in a custom folder: %v, %d requests", err, len(graphRequests(e.fake)))
	}
	// The folder option changed: the old cursor is not used for the new folder.
	l3, err := e.connector().List(ctx, l.Cursor)
	if err != nil || len(l3.Messages) != 2 || len(l3.Notes) != 1 || !strings.Contains(l3.Notes[0], "folder changed") {
		t.Fatalf("folder change: %v, %d messages, notes %q", err, len(l3.Messages), l3.Notes)
	}
	// Nonsense cursors are not followed (and get no token).
	for _, bad := range []mailsync.Cursor{"garbage", "https://evil.example/v1.0/users/x/messages/delta()#mailsync-folder=inbox"} {
		l4, err := e.connector().List(ctx, bad)
		if err != nil || len(l4.Messages) != 2 || len(l4.Notes) != 1 {
			t.Fatalf("cursor %q: %v %q", bad, err, l4.Notes)
		}
	}

	_, err = e.connector(func(o *graph.Options) { o.Folder = "Nope" }).List(ctx, "")
	if !errors.Is(err, mailsync.ErrFolderNotFound) {
		t.Fatalf("missing folder: %v", err)
	}
	if err := graph.Check(ctx, e.conn, e.opts); err != nil {
		t.Fatalf("Check: %v", err)
	}
	o := e.opts
	o.Folder = "Nope"
	if err := graph.Check(ctx, e.conn, o); !errors.Is(err, mailsync.ErrFolderNotFound) {
		t.Fatalf("Check missing folder: %v", err)
	}
	conn := e.conn
	conn.User = "nobody@contoso.com"
	if err := graph.Check(ctx, conn, e.opts); !errors.Is(err, mailsync.ErrInvalidConfig) {
		t.Fatalf("Check unknown user: %v", err)
	}
}

func TestNewValidates(t *testing.T) {
	e := newEnv(t, false)
	conn := e.conn
	conn.OAuth = &mailsync.OAuth{Provider: mailsync.GmailAPI, ClientID: "x", ClientSecret: "y", RefreshToken: "z"}
	if _, err := graph.New(conn, e.opts); !errors.Is(err, mailsync.ErrInvalidConfig) {
		t.Fatalf("gmail block: %v", err)
	}
	o := e.opts
	o.BaseURL = "http://graph.example/v1.0"
	if _, err := graph.New(e.conn, o); !errors.Is(err, mailsync.ErrInvalidConfig) {
		t.Fatalf("http base URL: %v", err)
	}
	conn = e.conn
	conn.User = ""
	if _, err := graph.New(conn, e.opts); !errors.Is(err, mailsync.ErrInvalidConfig) {
		t.Fatalf("no user: %v", err)
	}
}

// A server answering garbage must produce errors, never a panic.
func TestBadServerAnswers(t *testing.T) {
	cases := map[string]http.HandlerFunc{
		"html 500": func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "text/html")
			w.WriteHeader(500)
			io.WriteString(w, "<html>bad gateway</html>")
		},
		"error without message": func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(400)
			io.WriteString(w, `{"error":{}}`)
		},
		"empty json error": func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(404)
			io.WriteString(w, `{}`)
		},
		"broken json": func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			io.WriteString(w, `{"value":[{"id":`)
		},
		"no delta link": func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			io.WriteString(w, `{"value":[{"id":"a"}]}`)
		},
		"foreign next link": func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			io.WriteString(w, `{"value":[],"@odata.nextLink":"https://evil.example/x"}`)
		},
	}
	for name, h := range cases {
		t.Run(name, func(t *testing.T) {
			srv := httptest.NewTLSServer(h)
			defer srv.Close()
			conn := mailsync.Connection{Name: "x", Enabled: true, User: user, ConnectedWith: []string{"incident"},
				OAuth: &mailsync.OAuth{Provider: mailsync.MicrosoftGraph, ClientID: "c", ClientSecret: "s", TenantID: "t", RefreshToken: "r"}}
			c, err := graph.New(conn, graph.Options{BaseURL: srv.URL + "/v1.0", HTTPClient: srv.Client(), MaxRetryWait: time.Millisecond,
				TokenSource: oauth2.StaticTokenSource(&oauth2.Token{AccessToken: "tok"})})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			l, err := c.List(context.Background(), "")
			if err == nil {
				t.Fatalf("no error, listing %+v", l)
			}
			_ = err.Error() // must not panic
			if name == "html 500" && !errors.Is(err, mailsync.ErrConnection) {
				t.Errorf("5xx: %v is not ErrConnection", err)
			}
		})
	}
}

func TestCancelStopsPromptly(t *testing.T) {
	e := newEnv(t, false)
	e.deliver(1, "c")
	c := e.connector()
	l, err := c.List(context.Background(), "")
	if err != nil {
		t.Fatal(err)
	}
	e.fake.Throttle(http.StatusTooManyRequests, 1, "4")
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	err = c.Fetch(ctx, l.Messages, func(mailsync.MessageRef, io.Reader) error { return nil })
	if !errors.Is(err, context.DeadlineExceeded) || mailsync.Temporary(err) {
		t.Fatalf("cancelled fetch: %v", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("cancel took %s", d)
	}
}

// Remove implements connectortest.Remover: another client deletes the message.
func (h harness) Remove(ctx context.Context, messageID string) error {
	for _, m := range h.e.fake.Messages() {
		if m.MessageID == messageID {
			h.e.fake.Remove(m.ID)
			return nil
		}
	}
	return fmt.Errorf("no message %s", messageID)
}

// RoundTrips implements connectortest.RoundTripCounter: requests to the Graph API.
func (h harness) RoundTrips() int64 { return int64(len(graphRequests(h.e.fake))) }
