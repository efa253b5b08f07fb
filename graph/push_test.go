package graph_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mailsync/mailsync"
	"github.com/mailsync/mailsync/graph"
	"github.com/mailsync/mailsync/internal/fakegraph"
)

// changes records OnChange calls.
type changes struct {
	mu    sync.Mutex
	calls []change
	ch    chan change
}

type change struct {
	conn string
	full bool
}

func newChanges() *changes { return &changes{ch: make(chan change, 100)} }

func (c *changes) on(conn string, full bool) {
	c.mu.Lock()
	c.calls = append(c.calls, change{conn, full})
	c.mu.Unlock()
	c.ch <- change{conn, full}
}

func (c *changes) count() int { c.mu.Lock(); defer c.mu.Unlock(); return len(c.calls) }

func (c *changes) wait(t *testing.T, d time.Duration) change {
	t.Helper()
	select {
	case x := <-c.ch:
		return x
	case <-time.After(d):
		t.Fatalf("no OnChange within %v", d)
		return change{}
	}
}

// pushEnv is a fake tenant, a Subscriber and the webhook server serving
// its Handler.
type pushEnv struct {
	*env
	sub  *graph.Subscriber
	hook *httptest.Server
	got  *changes
	// serve makes the webhook server serve h from now on (as when a load
	// balancer sends Graph's requests to another process).
	serve func(h http.Handler)
}

func newPushEnv(t *testing.T, mod func(*graph.SubscriberOptions)) *pushEnv {
	t.Helper()
	e := newEnv(t, false)
	p := &pushEnv{env: e, got: newChanges()}
	var h http.Handler = http.NotFoundHandler()
	var hmu sync.Mutex
	p.hook = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hmu.Lock()
		hh := h
		hmu.Unlock()
		hh.ServeHTTP(w, r)
	}))
	t.Cleanup(p.hook.Close)
	o := graph.SubscriberOptions{NotificationURL: p.hook.URL + "/graph/notify", LifecycleURL: p.hook.URL + "/graph/lifecycle",
		OnChange: p.got.on, Coalesce: 300 * time.Millisecond, Logger: e.opts.Logger}
	if mod != nil {
		mod(&o)
	}
	sub, err := graph.NewSubscriber(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sub.Close() })
	p.serve = func(hh http.Handler) {
		hmu.Lock()
		h = hh
		hmu.Unlock()
	}
	p.serve(sub.Handler())
	p.sub = sub
	return p
}

func (p *pushEnv) subscribe(t *testing.T) fakegraph.Subscription {
	t.Helper()
	if err := p.sub.Subscribe(context.Background(), p.conn, p.opts); err != nil {
		t.Fatalf("Subscribe: %v", err)
	}
	subs := p.fake.Subscriptions()
	if len(subs) != 1 {
		t.Fatalf("fake has %d subscriptions, want 1", len(subs))
	}
	return subs[0]
}

func TestSubscribeCreatesADocumentedSubscription(t *testing.T) {
	p := newPushEnv(t, nil)
	s := p.subscribe(t)
	if s.ChangeType != "created" || s.Resource != "users/"+user+"/mailFolders('inbox')/messages" ||
		s.NotificationURL != p.hook.URL+"/graph/notify" || s.LifecycleNotificationURL != p.hook.URL+"/graph/lifecycle" {
		t.Fatalf("subscription %+v", s)
	}
	if len(s.ClientState) < 32 {
		t.Fatalf("clientState %q is not a random secret", s.ClientState)
	}
	if left := time.Until(s.Expiration); left < 71*time.Hour || left > 73*time.Hour {
		t.Fatalf("expiry in %v, want about 3 days", left)
	}
	mine := p.sub.Subscriptions()
	if len(mine) != 1 || mine[0].ID != s.ID || mine[0].Connection != p.conn.Name {
		t.Fatalf("Subscriptions() = %+v", mine)
	}
	if strings.Contains(p.logs.String(), s.ClientState) {
		t.Fatal("the client state was logged")
	}
	// Unsubscribe deletes it at Graph.
	if err := p.sub.Unsubscribe(context.Background(), p.conn.Name); err != nil {
		t.Fatal(err)
	}
	if n := len(p.fake.Subscriptions()); n != 0 || len(p.sub.Subscriptions()) != 0 {
		t.Fatalf("%d subscriptions left after Unsubscribe", n)
	}
}

func TestHandlerAnswersTheValidationHandshake(t *testing.T) {
	p := newPushEnv(t, nil)
	tok := "Validation: Testing client application reachability for subscription Request-Id: 3b3f0e44-0e3a-4f5e-8d0a-6d8f3c1c1a1b"
	resp, err := http.Post(p.hook.URL+"/graph/notify?validationToken="+strings.ReplaceAll(strings.ReplaceAll(tok, " ", "+"), ":", "%3A"), "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain") || string(b) != tok {
		t.Fatalf("handshake: %d %q %q", resp.StatusCode, resp.Header.Get("Content-Type"), b)
	}
	// The fake's create performs the same handshake (and fails without it).
	p.subscribe(t)
	if p.got.count() != 0 {
		t.Fatal("the handshake triggered a sync")
	}
}

func TestSubscribeFailsWhenTheEndpointDoesNotValidate(t *testing.T) {
	p := newPushEnv(t, nil)
	// Point the subscription at a server that does not echo.
	bad := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(202) }))
	defer bad.Close()
	sub, err := graph.NewSubscriber(graph.SubscriberOptions{NotificationURL: bad.URL, OnChange: p.got.on})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	err = sub.Subscribe(context.Background(), p.conn, p.opts)
	var ge *graph.Error
	if !errors.As(err, &ge) || ge.Code != "ValidationError" {
		t.Fatalf("Subscribe = %v, want a ValidationError", err)
	}
	if n := len(p.fake.Subscriptions()); n != 0 || len(sub.Subscriptions()) != 0 {
		t.Fatalf("%d subscriptions after a failed handshake", n)
	}
}

func TestNewMailNotifiesOnce(t *testing.T) {
	p := newPushEnv(t, nil)
	p.subscribe(t)
	p.deliver(1, "push")
	if c := p.got.wait(t, 5*time.Second); c.conn != p.conn.Name || c.full {
		t.Fatalf("OnChange%+v", c)
	}
	p.fake.WaitDeliveries()
	time.Sleep(500 * time.Millisecond)
	if n := p.got.count(); n != 1 {
		t.Fatalf("%d OnChange calls, want 1", n)
	}
	d := p.fake.Deliveries()
	if len(d) != 1 || d[0].Status != http.StatusAccepted {
		t.Fatalf("deliveries %+v", d)
	}
	// The notification made the ordinary delta sync find the message.
	lst, err := p.connector().List(context.Background(), "")
	if err != nil || len(lst.Messages) != 1 {
		t.Fatalf("List: %v %+v", err, lst)
	}
}

func TestDuplicateNotificationsCauseOneSync(t *testing.T) {
	p := newPushEnv(t, func(o *graph.SubscriberOptions) { o.Coalesce = 2 * time.Second })
	p.subscribe(t)
	p.fake.DuplicateNotifications(10)
	p.deliver(1, "dup")
	p.got.wait(t, 5*time.Second)
	p.fake.WaitDeliveries()
	time.Sleep(2500 * time.Millisecond) // past the window: no trailing call either
	if n := p.got.count(); n != 1 {
		t.Fatalf("%d OnChange calls for 10 copies of one notification, want 1", n)
	}
	if d := p.fake.Deliveries(); len(d) != 10 {
		t.Fatalf("%d deliveries, want 10", len(d))
	}
}

func TestDistinctChangesWithinTheWindowAreNotLost(t *testing.T) {
	p := newPushEnv(t, func(o *graph.SubscriberOptions) { o.Coalesce = 500 * time.Millisecond })
	p.subscribe(t)
	p.deliver(1, "first")
	p.got.wait(t, 5*time.Second)
	p.deliver(3, "more") // within the window: merged into one call at its end
	p.got.wait(t, 5*time.Second)
	time.Sleep(time.Second)
	if n := p.got.count(); n != 2 {
		t.Fatalf("%d OnChange calls, want 2 (one at once, one at the window's end)", n)
	}
}

func TestWrongClientStateIsDiscarded(t *testing.T) {
	p := newPushEnv(t, nil)
	s := p.subscribe(t)
	forged := func(state string) []byte {
		b, _ := json.Marshal(map[string]any{"value": []any{map[string]any{"subscriptionId": s.ID, "clientState": state,
			"changeType": "created", "resource": "Users/x/Messages/y", "tenantId": fakegraph.TenantID,
			"subscriptionExpirationDateTime": s.Expiration, "resourceData": map[string]any{"id": "y"}}}})
		return b
	}
	p.fake.SendRaw(s.NotificationURL, forged("not-the-secret"))
	p.fake.SendRaw(s.NotificationURL, forged(""))
	p.fake.SendRaw(s.NotificationURL, forged(s.ClientState[:len(s.ClientState)-1]))
	b, _ := json.Marshal(map[string]any{"value": []any{map[string]any{"subscriptionId": s.ID, "clientState": "nope", "lifecycleEvent": "missed"}}})
	p.fake.SendRaw(s.NotificationURL, b)
	for _, d := range p.fake.Deliveries() {
		if d.Status != http.StatusAccepted {
			t.Fatalf("forged notification answered %d, want 202", d.Status)
		}
	}
	time.Sleep(500 * time.Millisecond)
	if n := p.got.count(); n != 0 {
		t.Fatalf("%d OnChange calls for forged notifications", n)
	}
	if !strings.Contains(p.logs.String(), "wrong clientState") || strings.Contains(p.logs.String(), s.ClientState) {
		t.Fatal("the discard is not logged, or the client state is")
	}
	// The genuine one still counts.
	p.fake.SendRaw(s.NotificationURL, forged(s.ClientState))
	p.got.wait(t, 5*time.Second)
}

func TestHandlerRejectsNonNotifications(t *testing.T) {
	p := newPushEnv(t, nil)
	resp, err := http.Post(p.hook.URL+"/graph/notify", "application/json", strings.NewReader("<html>"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 400 {
		t.Fatalf("garbage answered %d", resp.StatusCode)
	}
	resp, err = http.Get(p.hook.URL + "/graph/notify")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 405 {
		t.Fatalf("GET answered %d", resp.StatusCode)
	}
}

func TestRenewalHappensBeforeExpiry(t *testing.T) {
	p := newPushEnv(t, func(o *graph.SubscriberOptions) {
		o.Lifetime, o.RenewBefore, o.CheckEvery = 2*time.Second, 1500*time.Millisecond, 100*time.Millisecond
	})
	first := p.subscribe(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.sub.Run(ctx) }()
	time.Sleep(3 * time.Second) // longer than the lifetime
	cancel()
	<-done
	subs := p.fake.Subscriptions()
	if len(subs) != 1 || subs[0].ID != first.ID {
		t.Fatalf("subscriptions %+v, want %s still alive (renewed, not recreated)", subs, first.ID)
	}
	if !subs[0].Expiration.After(first.Expiration) {
		t.Fatal("not renewed")
	}
	patches := 0
	for _, r := range graphRequests(p.fake) {
		if r.Method == http.MethodPatch && strings.HasPrefix(r.Path, "/v1.0/subscriptions/") {
			patches++
		}
	}
	if patches == 0 {
		t.Fatal("no PATCH /subscriptions/{id}")
	}
	if p.got.count() != 0 {
		t.Fatal("a timely renewal triggered a sync")
	}
	// It still delivers.
	p.deliver(1, "after-renewal")
	p.got.wait(t, 5*time.Second)
}

func TestRenewRecreatesAnExpiredSubscription(t *testing.T) {
	p2 := newPushEnv(t, func(o *graph.SubscriberOptions) { o.Lifetime, o.RenewBefore = time.Hour, 59*time.Minute+59*time.Second })
	s := p2.subscribe(t)
	p2.fake.ExpireSubscription(s.ID)    // gone at Graph: 404 on PATCH
	time.Sleep(1100 * time.Millisecond) // now due
	if err := p2.sub.Renew(context.Background()); err != nil {
		t.Fatal(err)
	}
	subs := p2.fake.Subscriptions()
	if len(subs) != 1 || subs[0].ID == s.ID {
		t.Fatalf("subscriptions %+v, want a new one", subs)
	}
	if c := p2.got.wait(t, 5*time.Second); !c.full {
		t.Fatal("a recreated subscription must trigger a full sync")
	}
}

func TestLifecycleMissedTriggersFullSync(t *testing.T) {
	p := newPushEnv(t, nil)
	s := p.subscribe(t)
	p.fake.SendLifecycle(s.ID, "missed")
	if c := p.got.wait(t, 5*time.Second); c.conn != p.conn.Name || !c.full {
		t.Fatalf("OnChange%+v, want full", c)
	}
	d := p.fake.Deliveries()
	if len(d) != 1 || d[0].URL != p.hook.URL+"/graph/lifecycle" || d[0].Status != http.StatusAccepted {
		t.Fatalf("deliveries %+v", d)
	}
}

func TestLifecycleSubscriptionRemovedRecreates(t *testing.T) {
	p := newPushEnv(t, nil)
	s := p.subscribe(t)
	p.fake.SendLifecycle(s.ID, "subscriptionRemoved")
	if c := p.got.wait(t, 5*time.Second); !c.full {
		t.Fatal("want a full sync after subscriptionRemoved")
	}
	var subs []fakegraph.Subscription
	for i := 0; i < 50; i++ {
		if subs = p.fake.Subscriptions(); len(subs) == 1 {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if len(subs) != 1 || subs[0].ID == s.ID {
		t.Fatalf("subscriptions %+v, want one new", subs)
	}
	mine := p.sub.Subscriptions()
	if len(mine) != 1 || mine[0].ID != subs[0].ID {
		t.Fatalf("Subscriber keeps %+v", mine)
	}
	// New mail reaches us through the new subscription.
	time.Sleep(400 * time.Millisecond) // past the coalescing window
	p.deliver(1, "after-recreate")
	p.got.wait(t, 5*time.Second)
}

func TestLifecycleReauthorizationRequiredRenews(t *testing.T) {
	p := newPushEnv(t, nil)
	s := p.subscribe(t)
	p.fake.ResetRequests()
	p.fake.SendLifecycle(s.ID, "reauthorizationRequired")
	p.fake.WaitDeliveries()
	var patched bool
	for i := 0; i < 50 && !patched; i++ {
		for _, r := range graphRequests(p.fake) {
			if r.Method == http.MethodPatch && r.Path == "/v1.0/subscriptions/"+s.ID {
				patched = true
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	if !patched {
		t.Fatal("reauthorizationRequired did not renew the subscription")
	}
	if subs := p.fake.Subscriptions(); len(subs) != 1 || subs[0].ID != s.ID {
		t.Fatalf("subscriptions %+v", subs)
	}
}

func TestNewSubscriberChecksOptions(t *testing.T) {
	for _, o := range []graph.SubscriberOptions{
		{OnChange: func(string, bool) {}},
		{NotificationURL: "https://h.example/n"},
		{NotificationURL: "https://h.example/n", OnChange: func(string, bool) {}, Lifetime: 8 * 24 * time.Hour},
		{NotificationURL: "https://h.example/n", OnChange: func(string, bool) {}, ClientState: mailsync.Secret(strings.Repeat("x", 129))},
	} {
		if _, err := graph.NewSubscriber(o); !errors.Is(err, mailsync.ErrInvalidConfig) {
			t.Errorf("NewSubscriber(%+v) = %v, want ErrInvalidConfig", o, err)
		}
	}
}

func TestSubscribeCoversEveryFolderRead(t *testing.T) {
	p := newPushEnv(t, nil)
	p.fake.AddFolder("Support")
	p.opts.Folders = []string{"inbox", "Support"}
	if err := p.sub.Subscribe(context.Background(), p.conn, p.opts); err != nil {
		t.Fatal(err)
	}
	subs := p.fake.Subscriptions()
	if len(subs) != 2 || len(p.sub.Subscriptions()) != 2 {
		t.Fatalf("subscriptions %+v, want one per folder", subs)
	}
	if _, err := p.fake.Deliver("Support", []byte("Message-ID: <s@x>\r\nSubject: s\r\n\r\nbody\r\n")); err != nil {
		t.Fatal(err)
	}
	if c := p.got.wait(t, 5*time.Second); c.conn != p.conn.Name {
		t.Fatalf("OnChange%+v", c)
	}
	// Mail in a folder not read notifies nobody.
	time.Sleep(400 * time.Millisecond)
	p.fake.Deliver("archive", []byte("Message-ID: <a@x>\r\nSubject: a\r\n\r\nbody\r\n"))
	p.fake.WaitDeliveries()
	time.Sleep(200 * time.Millisecond)
	if n := p.got.count(); n != 1 {
		t.Fatalf("%d OnChange calls, want 1", n)
	}
}

func TestSubscribeAgainReplacesTheSubscriptions(t *testing.T) {
	p := newPushEnv(t, nil)
	first := p.subscribe(t)
	second := p.subscribe(t) // checks that the fake has exactly one
	if second.ID == first.ID || second.ClientState == first.ClientState {
		t.Fatal("the second Subscribe did not make a new subscription with a new client state")
	}
	if mine := p.sub.Subscriptions(); len(mine) != 1 || mine[0].ID != second.ID {
		t.Fatalf("Subscriber keeps %+v", mine)
	}
	if err := p.sub.Unsubscribe(context.Background(), "no-such-connection"); err != nil {
		t.Fatal(err)
	}
}
