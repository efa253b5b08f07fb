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
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mailsync/mailsync"
	"github.com/mailsync/mailsync/graph"
)

// testClientStateKey is the host secret every process of the tests'
// "fleet" shares.
const testClientStateKey = mailsync.Secret("graph-client-state-key-0123456789-abcdefgh")

// lifecycles records OnLifecycle calls.
type lifecycles struct {
	mu  sync.Mutex
	got []string
	ch  chan string
}

func newLifecycles() *lifecycles { return &lifecycles{ch: make(chan string, 100)} }

func (l *lifecycles) on(_ context.Context, conn, event string) {
	l.mu.Lock()
	l.got = append(l.got, conn+" "+event)
	l.mu.Unlock()
	l.ch <- conn + " " + event
}

func (l *lifecycles) wait(t *testing.T, want string) {
	t.Helper()
	select {
	case got := <-l.ch:
		if got != want {
			t.Fatalf("OnLifecycle(%s), want (%s)", got, want)
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("no OnLifecycle(%s)", want)
	}
}

func (l *lifecycles) count() int { l.mu.Lock(); defer l.mu.Unlock(); return len(l.got) }

// receiver is a receive-only Handler, as in a process that subscribes
// nothing, with the key of the fleet.
func receiver(t *testing.T, logs io.Writer) (*graph.Handler, *changes, *lifecycles) {
	t.Helper()
	got, lc := newChanges(), newLifecycles()
	o := graph.HandlerOptions{ClientStateKey: testClientStateKey, OnChange: got.on, OnLifecycle: lc.on, Coalesce: 300 * time.Millisecond}
	if logs != nil {
		o.Logger = slogTo(logs)
	}
	h, err := graph.NewHandler(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	return h, got, lc
}

// A notification of a subscription that process A's Subscriber created
// reaches process B, which subscribed nothing: B's receive-only Handler
// recomputes the clientState from the connection named in the URL and
// calls OnChange for that connection; lifecycle notifications call
// OnChange(conn, true) and OnLifecycle. A's OnChange is never called.
func TestReceiveOnlyHandlerAcceptsAnotherProcessesNotifications(t *testing.T) {
	p := newPushEnv(t, func(o *graph.SubscriberOptions) { o.ClientStateKey = testClientStateKey })
	s := p.subscribe(t) // A: the handshake reaches A's handler
	q := "?" + graph.ConnectionParam + "=" + url.QueryEscape(p.conn.Name)
	if s.NotificationURL != p.hook.URL+"/graph/notify"+q || s.LifecycleNotificationURL != p.hook.URL+"/graph/lifecycle"+q {
		t.Fatalf("URLs %q %q do not name the connection", s.NotificationURL, s.LifecycleNotificationURL)
	}
	if s.ClientState != graph.DeriveClientState(testClientStateKey, p.conn.Name) || len(s.ClientState) != 43 {
		t.Fatalf("clientState %q is not the derived one", s.ClientState)
	}
	b, bgot, blc := receiver(t, p.logs)
	p.serve(b) // from now on Graph's requests reach B

	p.deliver(1, "elsewhere")
	if c := bgot.wait(t, 5*time.Second); c.conn != p.conn.Name || c.full {
		t.Fatalf("B: OnChange%+v", c)
	}
	p.fake.SendLifecycle(s.ID, "missed")
	if c := bgot.wait(t, 5*time.Second); c.conn != p.conn.Name || !c.full {
		t.Fatalf("B after missed: OnChange%+v", c)
	}
	for _, ev := range []string{"reauthorizationRequired", "subscriptionRemoved"} {
		time.Sleep(400 * time.Millisecond) // past the coalescing window
		p.fake.SendLifecycle(s.ID, ev)
		if c := bgot.wait(t, 5*time.Second); c.conn != p.conn.Name || !c.full {
			t.Fatalf("B after %s: OnChange%+v", ev, c)
		}
		blc.wait(t, p.conn.Name+" "+ev)
	}
	for _, d := range p.fake.Deliveries() {
		if d.Status != http.StatusAccepted {
			t.Fatalf("delivery answered %d", d.Status)
		}
	}
	if n := p.got.count(); n != 0 {
		t.Fatalf("A's OnChange called %d times", n)
	}
	assertNoSecret(t, "logs", p.logs.String(), testClientStateKey.Reveal(), s.ClientState)
}

// Notifications that do not verify are discarded by a receive-only
// Handler — forged clientState, a URL naming another connection, no or
// two connections, a name too long or with odd characters (each with the
// clientState genuinely derived for that name, so only the name's check
// can refuse it) — still answered 202, with no OnChange and neither the
// key nor a clientState in the logs.
func TestReceiveOnlyHandlerDiscardsForgeries(t *testing.T) {
	logs := &syncBuffer{}
	b, got, lc := receiver(t, logs)
	srv := httptest.NewServer(b)
	t.Cleanup(srv.Close)
	const conn = "graph-support"
	genuine := graph.DeriveClientState(testClientStateKey, conn)
	post := func(rawQuery, state, lifecycle string) {
		t.Helper()
		n := map[string]any{"subscriptionId": "7f105c7d-2dc5-4530-97cd-000155aa", "clientState": state, "tenantId": "t",
			"subscriptionExpirationDateTime": time.Now().Add(time.Hour)}
		if lifecycle != "" {
			n["lifecycleEvent"] = lifecycle
		} else {
			n["changeType"], n["resource"], n["resourceData"] = "created", "Users/u/Messages/m", map[string]any{"id": "m"}
		}
		body, _ := json.Marshal(map[string]any{"value": []any{n}})
		u := srv.URL + "/graph"
		if rawQuery != "" {
			u += "?" + rawQuery
		}
		resp, err := http.Post(u, "application/json", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusAccepted {
			t.Fatalf("%s answered %d, want 202", u, resp.StatusCode)
		}
	}
	named := func(c string) string { return graph.ConnectionParam + "=" + url.QueryEscape(c) }
	var states []string
	// Forged clientState for the right connection.
	otherKey := mailsync.Secret(strings.Repeat("k", 40))
	for _, st := range []string{"", "not-the-secret", genuine[:len(genuine)-1], genuine + "A", graph.DeriveClientState(otherKey, conn)} {
		post(named(conn), st, "")
		post(named(conn), st, "subscriptionRemoved")
	}
	// The clientState of one connection, the URL naming another.
	post(named("other-connection"), genuine, "")
	post(named("Graph-Support"), genuine, "missed")
	// No connection, an empty one, two of them.
	post("", genuine, "")
	post(graph.ConnectionParam+"=", genuine, "")
	post(named(conn)+"&"+named(conn), genuine, "")
	post("connection="+url.QueryEscape(conn), genuine, "")
	// Names too long or with odd characters, with their own genuine state.
	for _, c := range []string{strings.Repeat("a", graph.MaxConnectionIDLen+1), "a\x00b", "a\nb", "sup\u202eport", "bad\xffutf8", "tab\there"} {
		st := graph.DeriveClientState(testClientStateKey, c)
		states = append(states, st)
		post(named(c), st, "")
		post(named(c), st, "reauthorizationRequired")
	}
	time.Sleep(500 * time.Millisecond)
	if n := got.count(); n != 0 {
		t.Fatalf("%d OnChange calls for notifications that do not verify", n)
	}
	if n := lc.count(); n != 0 {
		t.Fatalf("%d OnLifecycle calls for notifications that do not verify", n)
	}
	text := logs.String()
	if !strings.Contains(text, "wrong clientState") || !strings.Contains(text, "no valid connection") {
		t.Fatalf("the discards are not logged:\n%s", text)
	}
	assertNoSecret(t, "logs", text, append(states, testClientStateKey.Reveal(), genuine)...)

	// The genuine ones count, a name of the longest length included.
	post(named(conn), genuine, "")
	if c := got.wait(t, 5*time.Second); c.conn != conn || c.full {
		t.Fatalf("OnChange%+v", c)
	}
	long := strings.Repeat("é", graph.MaxConnectionIDLen/2)
	post(named(long), graph.DeriveClientState(testClientStateKey, long), "")
	if c := got.wait(t, 5*time.Second); c.conn != long {
		t.Fatalf("OnChange%+v", c)
	}
	// It answers the validation handshake too.
	resp, err := http.Post(srv.URL+"/graph?"+named(conn)+"&validationToken=tok%20en", "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	echo, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(echo) != "tok en" {
		t.Fatalf("handshake: %d %q", resp.StatusCode, echo)
	}
}

// Without a key nothing changes: the URLs name no connection, the
// clientState is random, and another process's Subscriber discards the
// notifications of subscriptions it did not create.
func TestWithoutKeyOnlyTheSubscribingProcessAccepts(t *testing.T) {
	p := newPushEnv(t, nil)
	s := p.subscribe(t)
	if strings.Contains(s.NotificationURL, graph.ConnectionParam) || s.ClientState == graph.DeriveClientState(testClientStateKey, p.conn.Name) {
		t.Fatalf("subscription %+v", s)
	}
	otherGot := newChanges()
	other, err := graph.NewSubscriber(graph.SubscriberOptions{NotificationURL: p.hook.URL + "/graph/notify", OnChange: otherGot.on})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { other.Close() })
	p.serve(other.Handler())
	p.deliver(1, "dropped")
	p.fake.WaitDeliveries()
	time.Sleep(300 * time.Millisecond)
	if otherGot.count() != 0 || p.got.count() != 0 {
		t.Fatal("a notification was accepted by a process that did not subscribe, without a key")
	}
	p.serve(p.sub.Handler())
	p.deliver(1, "kept")
	p.got.wait(t, 5*time.Second)
}

func TestClientStateKeyOptionsAreChecked(t *testing.T) {
	on := func(string, bool) {}
	for _, o := range []graph.SubscriberOptions{
		{NotificationURL: "https://h.example/n", OnChange: on, ClientStateKey: "too-short"},
		{NotificationURL: "https://h.example/n", OnChange: on, ClientStateKey: testClientStateKey, ClientState: "fixed"},
		{NotificationURL: "https://h.example/n?" + graph.ConnectionParam + "=x", OnChange: on, ClientStateKey: testClientStateKey},
	} {
		if _, err := graph.NewSubscriber(o); !errors.Is(err, mailsync.ErrInvalidConfig) {
			t.Errorf("NewSubscriber(%+v) = %v, want ErrInvalidConfig", o, err)
		} else {
			assertNoSecret(t, "error", errText(err), testClientStateKey.Reveal())
		}
	}
	for _, o := range []graph.HandlerOptions{{OnChange: on}, {ClientStateKey: testClientStateKey}, {ClientStateKey: "short", OnChange: on}} {
		if _, err := graph.NewHandler(o); !errors.Is(err, mailsync.ErrInvalidConfig) {
			t.Errorf("NewHandler(%+v) = %v, want ErrInvalidConfig", o, err)
		}
	}
	// A connection name the handlers would refuse is not subscribed.
	p := newPushEnv(t, func(o *graph.SubscriberOptions) { o.ClientStateKey = testClientStateKey })
	p.conn.Name = "bad\nname"
	if err := p.sub.Subscribe(context.Background(), p.conn, p.opts); !errors.Is(err, mailsync.ErrInvalidConfig) {
		t.Fatalf("Subscribe(%q) = %v, want ErrInvalidConfig", p.conn.Name, err)
	}
	if n := len(p.fake.Subscriptions()); n != 0 {
		t.Fatalf("%d subscriptions", n)
	}
	// A failing subscription's error does not carry the key or the state.
	p.conn.Name = "graph-support"
	p.serve(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(202) })) // no echo
	err := p.sub.Subscribe(context.Background(), p.conn, p.opts)
	if err == nil {
		t.Fatal("Subscribe succeeded without a handshake")
	}
	assertNoSecret(t, "error", errText(err)+p.logs.String(), testClientStateKey.Reveal(), graph.DeriveClientState(testClientStateKey, p.conn.Name))
}

// The subscribing process learns of a subscription removed while Graph's
// lifecycle notification went to another process: its Run renews every
// subscription at least every VerifyEvery, finds it gone, creates it anew
// and asks for a full sync; the new subscription's notifications reach
// the other process's handler too.
func TestVerifyEveryRecreatesASubscriptionRemovedElsewhere(t *testing.T) {
	p := newPushEnv(t, func(o *graph.SubscriberOptions) {
		o.ClientStateKey, o.VerifyEvery, o.CheckEvery = testClientStateKey, 500*time.Millisecond, 100*time.Millisecond
	})
	s := p.subscribe(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.sub.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	// A timely subscription is renewed, not recreated, and syncs nothing.
	time.Sleep(800 * time.Millisecond)
	if subs := p.fake.Subscriptions(); len(subs) != 1 || subs[0].ID != s.ID || p.got.count() != 0 {
		t.Fatalf("subscriptions %+v, %d OnChange calls", subs, p.got.count())
	}
	b, bgot, blc := receiver(t, p.logs)
	p.serve(b)
	p.fake.SendLifecycle(s.ID, "subscriptionRemoved") // reaches B, which does not hold it
	bgot.wait(t, 5*time.Second)
	blc.wait(t, p.conn.Name+" subscriptionRemoved")
	if c := p.got.wait(t, 5*time.Second); c.conn != p.conn.Name || !c.full {
		t.Fatalf("A: OnChange%+v, want a full sync after recreating", c)
	}
	var subs []graph.SubscriptionInfo
	waitUntil(t, 5*time.Second, func() bool {
		f := p.fake.Subscriptions()
		subs = p.sub.Subscriptions()
		return len(f) == 1 && f[0].ID != s.ID && len(subs) == 1 && subs[0].ID == f[0].ID
	})
	time.Sleep(400 * time.Millisecond)
	p.deliver(1, "after-recreate")
	if c := bgot.wait(t, 5*time.Second); c.conn != p.conn.Name {
		t.Fatalf("B: OnChange%+v", c)
	}
}

func waitUntil(t *testing.T, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("condition not met within %v", d)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func slogTo(w io.Writer) *slog.Logger {
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// TestForgedNotificationsLogOncePerRequest: anyone may POST to the
// notification URL; a request of 5,000 notifications with a forged
// clientState costs two log lines (the first discard and a count), not
// one per notification, and triggers nothing.
func TestForgedNotificationsLogOncePerRequest(t *testing.T) {
	logs := &syncBuffer{}
	b, got, _ := receiver(t, logs)
	srv := httptest.NewServer(b)
	t.Cleanup(srv.Close)
	items := make([]any, 5000)
	for i := range items {
		items[i] = map[string]any{"subscriptionId": fmt.Sprintf("sub-%d", i), "clientState": "forged", "changeType": "created",
			"resource": "Users/u/Messages/m", "resourceData": map[string]any{"id": "m"}}
	}
	body, _ := json.Marshal(map[string]any{"value": items})
	resp, err := http.Post(srv.URL+"/graph?"+graph.ConnectionParam+"=graph-support", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("answered %d, want 202", resp.StatusCode)
	}
	if n := strings.Count(logs.String(), "\n"); n > 2 {
		t.Errorf("%d log lines for one forged request, want at most 2:\n%.600s", n, logs.String())
	}
	if !strings.Contains(logs.String(), "count=4999") {
		t.Errorf("the discards are not counted: %.600s", logs.String())
	}
	time.Sleep(300 * time.Millisecond)
	if n := got.count(); n != 0 {
		t.Errorf("OnChange called %d times", n)
	}
}
