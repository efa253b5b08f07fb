package graph_test

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/mailsync/mailsync"
	"github.com/mailsync/mailsync/graph"
)

// nextClientStateKey is the key the tests' fleet rotates to.
const nextClientStateKey = mailsync.Secret("graph-client-state-key-NEXT-9876543210-zyxwv")

// postTo posts body to u as Graph would and requires 202.
func postTo(t *testing.T, u string, body []byte) {
	t.Helper()
	resp, err := http.Post(u, "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("answered %d, want 202", resp.StatusCode)
	}
}

// During a rotation a receive-only Handler accepts the notifications of
// subscriptions made under the previous key (PreviousClientStateKeys) as
// well as the current key's; once the previous key is removed
// (SetClientStateKeys, or a Handler made without it) they are discarded
// and logged.
func TestPreviousClientStateKeyAcceptedDuringRotation(t *testing.T) {
	const conn = "graph-support"
	old, cur := graph.DeriveClientState(testClientStateKey, conn), graph.DeriveClientState(nextClientStateKey, conn)
	logs := &syncBuffer{}
	got := newChanges()
	h, err := graph.NewHandler(graph.HandlerOptions{ClientStateKey: nextClientStateKey, PreviousClientStateKeys: []mailsync.Secret{testClientStateKey},
		OnChange: got.on, Coalesce: 50 * time.Millisecond, Logger: slogTo(logs)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	u := srv.URL + "/graph?" + graph.ConnectionParam + "=" + url.QueryEscape(conn)

	for _, st := range []string{old, cur} {
		time.Sleep(100 * time.Millisecond) // past the coalescing window
		postTo(t, u, notificationBody("7f105c7d-2dc5-4530-97cd-000155aa", st, "", 1))
		if c := got.wait(t, 5*time.Second); c.conn != conn {
			t.Fatalf("OnChange%+v", c)
		}
	}
	if strings.Contains(logs.String(), "wrong clientState") {
		t.Fatalf("a notification was discarded during the rotation:\n%s", logs.String())
	}

	// The rotation ends: the old key's notifications are forgeries now.
	if err := h.SetClientStateKeys(nextClientStateKey); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
	postTo(t, u, notificationBody("7f105c7d-2dc5-4530-97cd-000155aa", old, "", 2))
	time.Sleep(300 * time.Millisecond)
	if n := got.count(); n != 2 {
		t.Fatalf("%d OnChange calls, want 2 (the old key's notification after the rotation counted)", n)
	}
	if !strings.Contains(logs.String(), "wrong clientState") || !strings.Contains(logs.String(), "count=1") {
		t.Fatalf("the discard is not logged once and counted:\n%s", logs.String())
	}
	postTo(t, u, notificationBody("7f105c7d-2dc5-4530-97cd-000155aa", cur, "", 1))
	got.wait(t, 5*time.Second)
	assertNoSecret(t, "logs", logs.String(), testClientStateKey.Reveal(), nextClientStateKey.Reveal(), old, cur)

	// A Handler given only the new key refuses the old key's notifications.
	ogot := newChanges()
	other, err := graph.NewHandler(graph.HandlerOptions{ClientStateKey: nextClientStateKey, OnChange: ogot.on})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { other.Close() })
	osrv := httptest.NewServer(other)
	t.Cleanup(osrv.Close)
	postTo(t, osrv.URL+"/graph?"+graph.ConnectionParam+"="+url.QueryEscape(conn), notificationBody("s", old, "", 1))
	time.Sleep(300 * time.Millisecond)
	if ogot.count() != 0 {
		t.Fatal("a Handler without the previous key accepted its notification")
	}
}

// A Subscriber rotated while it runs keeps receiving the notifications of
// its subscriptions made under the old key, and its next Renew moves each
// of them to the new key: Graph's PATCH cannot change a clientState, so it
// creates a new subscription under the new key (same URLs) and deletes
// the old one after; no sync is asked for, since none was missed. Once
// the old key is dropped, the old clientState is refused.
func TestRenewMovesSubscriptionsToTheCurrentKey(t *testing.T) {
	p := newPushEnv(t, func(o *graph.SubscriberOptions) { o.ClientStateKey = testClientStateKey })
	first := p.subscribe(t)
	if err := p.sub.SetClientStateKeys(nextClientStateKey, testClientStateKey); err != nil {
		t.Fatal(err)
	}
	// Still delivered under the old key, and accepted.
	p.deliver(1, "during-rotation")
	if c := p.got.wait(t, 5*time.Second); c.conn != p.conn.Name || c.full {
		t.Fatalf("OnChange%+v", c)
	}
	p.fake.ResetRequests()
	if err := p.sub.Renew(context.Background()); err != nil {
		t.Fatal(err)
	}
	subs := p.fake.Subscriptions()
	if len(subs) != 1 || subs[0].ID == first.ID {
		t.Fatalf("subscriptions %+v, want one new one instead of %s", subs, first.ID)
	}
	s := subs[0]
	if s.ClientState != graph.DeriveClientState(nextClientStateKey, p.conn.Name) || s.NotificationURL != first.NotificationURL ||
		s.LifecycleNotificationURL != first.LifecycleNotificationURL || s.Resource != first.Resource {
		t.Fatalf("new subscription %+v, want the old one's URLs and resource under the new key", s)
	}
	if mine := p.sub.Subscriptions(); len(mine) != 1 || mine[0].ID != s.ID {
		t.Fatalf("Subscriber keeps %+v", mine)
	}
	// Made before the old one was deleted: never a moment without one.
	var order []string
	for _, r := range graphRequests(p.fake) {
		if strings.HasPrefix(r.Path, "/v1.0/subscriptions") && r.Method != http.MethodGet {
			order = append(order, r.Method)
		}
	}
	if strings.Join(order, " ") != "POST DELETE" {
		t.Fatalf("requests %v, want POST then DELETE", order)
	}
	time.Sleep(400 * time.Millisecond) // past the coalescing window
	if n := p.got.count(); n != 1 {
		t.Fatalf("%d OnChange calls, want 1 (moving to the new key syncs nothing)", n)
	}
	// A second Renew has nothing to move.
	p.fake.ResetRequests()
	if err := p.sub.Renew(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n := len(graphRequests(p.fake)); n != 0 {
		t.Fatalf("%d requests by a Renew with nothing due", n)
	}
	p.deliver(1, "after-rotation")
	p.got.wait(t, 5*time.Second)

	// The rotation ends: the old key's clientState is refused.
	if err := p.sub.SetClientStateKeys(nextClientStateKey); err != nil {
		t.Fatal(err)
	}
	time.Sleep(400 * time.Millisecond)
	p.fake.SendRaw(s.NotificationURL, notificationBody(s.ID, first.ClientState, "", 1))
	p.fake.WaitDeliveries()
	time.Sleep(300 * time.Millisecond)
	if n := p.got.count(); n != 2 {
		t.Fatalf("%d OnChange calls, want 2 (the old clientState counted after the rotation)", n)
	}
	if !strings.Contains(p.logs.String(), "wrong clientState") {
		t.Fatal("the discard is not logged")
	}
	assertNoSecret(t, "logs", p.logs.String(), testClientStateKey.Reveal(), nextClientStateKey.Reveal(), first.ClientState, s.ClientState)
}

// Run moves the subscriptions by itself, within CheckEvery.
func TestRunMovesSubscriptionsToTheCurrentKey(t *testing.T) {
	p := newPushEnv(t, func(o *graph.SubscriberOptions) {
		o.ClientStateKey, o.CheckEvery = testClientStateKey, 100*time.Millisecond
	})
	first := p.subscribe(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.sub.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	time.Sleep(300 * time.Millisecond)
	if subs := p.fake.Subscriptions(); len(subs) != 1 || subs[0].ID != first.ID {
		t.Fatalf("subscriptions %+v before the rotation", subs)
	}
	if err := p.sub.SetClientStateKeys(nextClientStateKey, testClientStateKey); err != nil {
		t.Fatal(err)
	}
	want := graph.DeriveClientState(nextClientStateKey, p.conn.Name)
	waitUntil(t, 5*time.Second, func() bool {
		subs := p.fake.Subscriptions()
		return len(subs) == 1 && subs[0].ID != first.ID && subs[0].ClientState == want
	})
}

// The previous keys are checked: at least MinClientStateKeyLen bytes,
// none equal to the current key or to another, only beside a current key;
// the problems carry Field and Code and never a key.
func TestPreviousClientStateKeysAreChecked(t *testing.T) {
	on := func(string, bool) {}
	short := mailsync.Secret("short-previous-key")
	cases := []struct {
		cur   mailsync.Secret
		prev  []mailsync.Secret
		field string
		code  mailsync.ProblemCode
	}{
		{testClientStateKey, []mailsync.Secret{short}, "previous client state keys[0]", mailsync.CodeInvalid},
		{testClientStateKey, []mailsync.Secret{testClientStateKey}, "previous client state keys[0]", mailsync.CodeDuplicate},
		{testClientStateKey, []mailsync.Secret{nextClientStateKey, nextClientStateKey}, "previous client state keys[1]", mailsync.CodeDuplicate},
		{"", []mailsync.Secret{nextClientStateKey}, "previous client state keys", mailsync.CodeConflict},
	}
	check := func(what string, err error, field string, code mailsync.ProblemCode) {
		t.Helper()
		var ce *mailsync.ConfigError
		if !errors.As(err, &ce) || !errors.Is(err, mailsync.ErrInvalidConfig) {
			t.Errorf("%s = %v, want a ConfigError", what, err)
			return
		}
		found := false
		for _, pr := range ce.Problems {
			found = found || (pr.Field == field && pr.Code == code && pr.Message != "")
		}
		if !found {
			t.Errorf("%s: problems %+v, want %s %s", what, ce.Problems, field, code)
		}
		assertNoSecret(t, what, errText(err), testClientStateKey.Reveal(), nextClientStateKey.Reveal(), short.Reveal())
	}
	for i, c := range cases {
		_, err := graph.NewSubscriber(graph.SubscriberOptions{NotificationURL: "https://h.example/n", OnChange: on,
			ClientStateKey: c.cur, PreviousClientStateKeys: c.prev})
		check("NewSubscriber case "+string(rune('0'+i)), err, c.field, c.code)
		if c.cur != "" {
			_, err = graph.NewHandler(graph.HandlerOptions{ClientStateKey: c.cur, PreviousClientStateKeys: c.prev, OnChange: on})
			check("NewHandler case "+string(rune('0'+i)), err, c.field, c.code)
			h, err := graph.NewHandler(graph.HandlerOptions{ClientStateKey: c.cur, OnChange: on})
			if err != nil {
				t.Fatal(err)
			}
			check("SetClientStateKeys case "+string(rune('0'+i)), h.SetClientStateKeys(c.cur, c.prev...), c.field, c.code)
			h.Close()
		}
	}
	// A Subscriber made without a key cannot be given one.
	s, err := graph.NewSubscriber(graph.SubscriberOptions{NotificationURL: "https://h.example/n", OnChange: on})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	check("SetClientStateKeys without a key", s.SetClientStateKeys(nextClientStateKey), "client state key", mailsync.CodeConflict)
	// Valid: accepted.
	ok, err := graph.NewSubscriber(graph.SubscriberOptions{NotificationURL: "https://h.example/n", OnChange: on,
		ClientStateKey: nextClientStateKey, PreviousClientStateKeys: []mailsync.Secret{testClientStateKey}})
	if err != nil {
		t.Fatal(err)
	}
	ok.Close()
}
