package fleet_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"database/sql"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riversqlite"
	"golang.org/x/oauth2"

	"github.com/mailsync/mailsync"
	"github.com/mailsync/mailsync/connectortest"
	"github.com/mailsync/mailsync/fleet"
	"github.com/mailsync/mailsync/gmail"
	"github.com/mailsync/mailsync/graph"
	"github.com/mailsync/mailsync/internal/fakegmail"
	"github.com/mailsync/mailsync/internal/fakegraph"
	"github.com/mailsync/mailsync/oauthx"
)

// countingResolver counts the syncs (Resolve calls) of each connection.
type countingResolver struct {
	resolve func(ctx context.Context, id string) (fleet.Target, error)
	n       atomic.Int64
}

func (r *countingResolver) Resolve(ctx context.Context, id string, _ mailsync.Secret) (fleet.Target, error) {
	r.n.Add(1)
	return r.resolve(ctx, id)
}

// pushFleet is a Fleet on a fresh SQLite database, polled every hour,
// whose push connection is conn.
func pushFleet(t *testing.T, res fleet.Resolver, conn string, kind fleet.PushKind) *fleet.Fleet {
	t.Helper()
	return pushFleetAt(t, filepath.Join(t.TempDir(), "fleet.db"), res, conn, kind)
}

// pushFleetAt is pushFleet on the SQLite database at path: a second call
// with the same path is a second process of the same fleet.
func pushFleetAt(t *testing.T, path string, res fleet.Resolver, conn string, kind fleet.PushKind) *fleet.Fleet {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)")
	if err != nil {
		t.Fatal(err)
	}
	db.SetMaxOpenConns(1)
	t.Cleanup(func() { db.Close() })
	ctx := context.Background()
	if err := fleet.Migrate(ctx, riversqlite.New(db)); err != nil {
		t.Fatal(err)
	}
	health, err := fleet.NewSQLHealth(db, fleet.SQLite, "mailsync_")
	if err != nil {
		t.Fatal(err)
	}
	if err := health.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	f, err := fleet.New(riversqlite.New(db), fleet.Config{Resolver: res, State: mailsync.NewMemoryState(), Health: health,
		Interval: time.Hour, BackstopInterval: time.Hour,
		Push: &fleet.PushConfig{Connections: func(context.Context) ([]fleet.PushConnection, error) {
			return []fleet.PushConnection{{ID: conn, Kind: kind}}, nil
		}, Every: 100 * time.Millisecond},
		River: func(c *river.Config) { c.FetchPollInterval, c.FetchCooldown = 20*time.Millisecond, 10*time.Millisecond }})
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func start(t *testing.T, f *fleet.Fleet) {
	t.Helper()
	if err := f.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		f.Stop(ctx)
	})
}

func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// settled waits until the connection's job has waited for a while: it
// synced, and no sync has started for a second. A run still due (the one a
// trigger during an earlier run asked for, which River fetches within
// FetchPollInterval, 20 ms here) would otherwise start after the test's own
// push and be counted as a second sync of it.
func settled(t *testing.T, res *countingResolver, health fleet.HealthStore, id string) {
	t.Helper()
	last, since := res.n.Load(), time.Now()
	waitFor(t, 20*time.Second, "the job to wait", func() bool {
		if n := res.n.Load(); n != last {
			last, since = n, time.Now()
		}
		h, ok, err := health.Get(context.Background(), id)
		return err == nil && ok && !h.LastSuccess.IsZero() && time.Since(h.Updated) > 300*time.Millisecond &&
			time.Since(since) > time.Second
	})
}

func pushHealth(t *testing.T, f *fleet.Fleet, id string) fleet.PushHealth {
	t.Helper()
	h, _, err := f.Health().Get(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return h.Push
}

// TestPushGraphNotificationSyncs: a Graph connection with push. New mail
// in the fake tenant is notified to the Subscriber's handler, whose
// OnChange is the Fleet's: one sync runs at once (the connection is polled
// hourly) and the mail becomes a ticket; the health shows the
// subscription. Then the notification reaches another process of the
// fleet, which holds no subscription: one sync, one ticket too.
func TestPushGraphNotificationSyncs(t *testing.T) {
	const user, clientID, clientSecret, refresh = "support@contoso.com", "11111111-2222-3333-4444-555555555555", "client~secret~value~0123", "refresh-token-value"
	fake := fakegraph.New(user)
	t.Cleanup(fake.Close)
	fake.ConfigureOAuth(clientID, clientSecret, refresh, false, 3600)
	conn := mailsync.Connection{Name: "graph-support", Enabled: true, User: user, ConnectedWith: []string{"incident"},
		OAuth: &mailsync.OAuth{Provider: mailsync.MicrosoftGraph, ClientID: clientID, ClientSecret: clientSecret,
			TenantID: "contoso-tenant", RefreshToken: refresh, TokenURL: fake.TokenURL()}}
	opts := graph.Options{BaseURL: fake.BaseURL(), HTTPClient: fake.Client(), RequestBudget: -1,
		OAuth: oauthx.Options{HTTPClient: fake.Client(), OnRefreshToken: func(context.Context, mailsync.Secret) error { return nil }}}
	sink := mailsync.NewMemorySink()
	res := &countingResolver{resolve: func(_ context.Context, id string) (fleet.Target, error) {
		c, err := graph.New(conn, opts)
		if err != nil {
			return fleet.Target{}, err
		}
		return fleet.Target{Connector: c, Mapping: mailsync.DefaultMapping("incident"), Sink: sink,
			Secrets: []mailsync.Secret{clientSecret, refresh}}, nil
	}}
	dbPath := filepath.Join(t.TempDir(), "fleet.db")
	f := pushFleetAt(t, dbPath, res, conn.Name, fleet.PushGraph)
	clientStateKey := mailsync.Secret("fleet-wide-graph-client-state-key-0123456789")

	var handler atomic.Value
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		handler.Load().(http.Handler).ServeHTTP(w, r)
	}))
	t.Cleanup(hook.Close)
	sub, err := graph.NewSubscriber(graph.SubscriberOptions{NotificationURL: hook.URL + "/graph",
		ClientStateKey: clientStateKey,
		OnChange:       func(c string, _ bool) { f.OnChange(c) }, Coalesce: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sub.Close() })
	handler.Store(sub.Handler())
	if err := f.AddPushSource(&graphSource{sub: sub, resolve: func(context.Context, string) (mailsync.Connection, graph.Options, error) {
		return conn, opts, nil
	}}); err != nil {
		t.Fatal(err)
	}
	start(t, f)
	ctx := context.Background()
	waitFor(t, 10*time.Second, "the subscription", func() bool { return pushHealth(t, f, conn.Name).Active })
	if _, err := f.Schedule(ctx, conn.Name); err != nil {
		t.Fatal(err)
	}
	settled(t, res, f.Health(), conn.Name)
	before := res.n.Load()

	begin := time.Now()
	if _, err := fake.Deliver("inbox", connectortest.NewMessage("graph-push-1", "Pedido")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the ticket", func() bool { return len(sink.Tickets()) == 1 })
	t.Logf("Graph: delivery to ticket through the notification: %s", time.Since(begin).Round(time.Millisecond))
	time.Sleep(500 * time.Millisecond)
	if n := res.n.Load() - before; n != 1 {
		t.Errorf("%d syncs after one notification, want 1", n)
	}
	p := pushHealth(t, f, conn.Name)
	// The store keeps milliseconds: a notification in begin's millisecond
	// is stored as its start.
	if p.Kind != fleet.PushGraph || !p.Active || p.LastNotification.Before(begin.Truncate(time.Millisecond)) ||
		p.Expires.Before(time.Now().Add(48*time.Hour)) || p.LastError != "" {
		t.Errorf("push health: %+v", p)
	}

	// A second process of the fleet (same database), which holds no
	// subscription, receives the next notification (the load balancer
	// chose it): its receive-only handler checks the clientState with the
	// shared key and triggers one sync, which a worker runs.
	f2 := pushFleetAt(t, dbPath, res, conn.Name, fleet.PushGraph)
	other, err := graph.NewHandler(graph.HandlerOptions{ClientStateKey: clientStateKey,
		OnChange: func(c string, _ bool) { f2.OnChange(c) }, Coalesce: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { other.Close() })
	handler.Store(http.HandlerFunc(other.ServeHTTP)) // the type sub.Handler() stored
	settled(t, res, f.Health(), conn.Name)
	before = res.n.Load()
	begin2 := time.Now()
	if _, err := fake.Deliver("inbox", connectortest.NewMessage("graph-push-2", "Pedido")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the ticket through the other process's handler", func() bool { return len(sink.Tickets()) == 2 })
	t.Logf("Graph: delivery to ticket through another process's handler: %s", time.Since(begin2).Round(time.Millisecond))
	time.Sleep(500 * time.Millisecond)
	if n := res.n.Load() - before; n != 1 {
		t.Errorf("%d syncs after one notification to the other process, want 1", n)
	}
	if p := pushHealth(t, f, conn.Name); p.LastNotification.Before(begin2.Truncate(time.Millisecond)) {
		t.Errorf("the other process's notification is not in the push health: %+v", p)
	}
}

var testKey = sync.OnceValue(func() *rsa.PrivateKey {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	return k
})

// pubsubToken is an OIDC token as Pub/Sub's push subscription signs it.
func pubsubToken(t *testing.T, audience, account string) string {
	enc := func(v any) string {
		b, _ := json.Marshal(v)
		return base64.RawURLEncoding.EncodeToString(b)
	}
	now := time.Now()
	signed := enc(map[string]string{"alg": "RS256", "kid": "k1", "typ": "JWT"}) + "." + enc(map[string]any{
		"iss": "https://accounts.google.com", "aud": audience, "azp": "1", "sub": "1",
		"email": account, "email_verified": true, "iat": now.Unix(), "exp": now.Add(time.Hour).Unix()})
	sum := sha256.Sum256([]byte(signed))
	sig, err := rsa.SignPKCS1v15(rand.Reader, testKey(), crypto.SHA256, sum[:])
	if err != nil {
		t.Fatal(err)
	}
	return signed + "." + base64.RawURLEncoding.EncodeToString(sig)
}

// TestPushGmailNotificationSyncs: a Gmail connection with push. A Pub/Sub
// delivery for new mail reaches gmail.Push's handler, whose OnChange is
// the Fleet's: one sync, one ticket; the same through the handler of a
// process that does not hold the watch (PushOptions.Connections); the
// health shows the watch.
func TestPushGmailNotificationSyncs(t *testing.T) {
	const topic, audience, account = "projects/helpdesk-1/topics/gmail-push", "https://helpdesk.example.com/gmail", "pubsub-push@helpdesk-1.iam.gserviceaccount.com"
	fake := fakegmail.New(fakegmail.Options{})
	t.Cleanup(fake.Close)
	conn := mailsync.Connection{Name: "gmail-support", Enabled: true, User: fake.Email(), ConnectedWith: []string{"incident"},
		OAuth: &mailsync.OAuth{Provider: mailsync.GmailAPI, ClientID: "client-id.apps.googleusercontent.com",
			ClientSecret: "client-secret-value", RefreshToken: "refresh-token-value"}}
	opts := gmail.Options{TokenSource: oauth2.StaticTokenSource(&oauth2.Token{AccessToken: fake.Token(), TokenType: "Bearer"}),
		Endpoint: fake.URL, HTTPClient: fake.Client(), RetryBase: time.Millisecond, MaxWait: 2 * time.Second}
	sink := mailsync.NewMemorySink()
	res := &countingResolver{resolve: func(_ context.Context, id string) (fleet.Target, error) {
		c, err := gmail.New(conn, opts)
		if err != nil {
			return fleet.Target{}, err
		}
		return fleet.Target{Connector: c, Mapping: mailsync.DefaultMapping("incident"), Sink: sink}, nil
	}}
	f := pushFleet(t, res, conn.Name, fleet.PushGmail)
	push, err := gmail.NewPush(gmail.PushOptions{Topic: topic, Audience: audience, ServiceAccount: account,
		Verifier: &gmail.KeySetVerifier{Keys: map[string]*rsa.PublicKey{"k1": &testKey().PublicKey}},
		OnChange: f.OnChange})
	if err != nil {
		t.Fatal(err)
	}
	hook := httptest.NewServer(push.Handler())
	t.Cleanup(hook.Close)
	if err := f.AddPushSource(&gmailSource{push: push, resolve: func(context.Context, string) (mailsync.Connection, gmail.Options, error) {
		return conn, opts, nil
	}}); err != nil {
		t.Fatal(err)
	}
	start(t, f)
	ctx := context.Background()
	waitFor(t, 10*time.Second, "the watch", func() bool { return pushHealth(t, f, conn.Name).Active })
	if w, ok := fake.Watch(); !ok || w.TopicName != topic {
		t.Fatalf("users.watch: %+v %v", w, ok)
	}
	if _, err := f.Schedule(ctx, conn.Name); err != nil {
		t.Fatal(err)
	}
	settled(t, res, f.Health(), conn.Name)
	before := res.n.Load()

	begin := time.Now()
	fake.Deliver(connectortest.NewMessage("gmail-push-1", "Pedido"), "INBOX")
	hookURL := hook.URL
	deliver := func(messageID string, historyID uint64) {
		t.Helper()
		data, _ := json.Marshal(map[string]any{"emailAddress": fake.Email(), "historyId": historyID})
		body, _ := json.Marshal(map[string]any{"message": map[string]any{"data": base64.StdEncoding.EncodeToString(data),
			"messageId": messageID, "publishTime": time.Now().UTC().Format(time.RFC3339Nano)},
			"subscription": "projects/helpdesk-1/subscriptions/gmail-push"})
		req, _ := http.NewRequest("POST", hookURL, bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+pubsubToken(t, audience, account))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNoContent {
			t.Fatalf("push delivery: %d", resp.StatusCode)
		}
	}
	deliver("m1", fake.HistoryID())
	waitFor(t, 10*time.Second, "the ticket", func() bool { return len(sink.Tickets()) == 1 })
	t.Logf("Gmail: delivery to ticket through the push: %s", time.Since(begin).Round(time.Millisecond))
	time.Sleep(500 * time.Millisecond)
	if n := res.n.Load() - before; n != 1 {
		t.Errorf("%d syncs after one push, want 1", n)
	}
	// Another process's handler: it watches nothing (the watch is held
	// here) but knows the mailbox's connections, so its delivery also
	// triggers one sync through the shared queue.
	other, err := gmail.NewPush(gmail.PushOptions{Topic: topic, Audience: audience, ServiceAccount: account,
		Verifier: &gmail.KeySetVerifier{Keys: map[string]*rsa.PublicKey{"k1": &testKey().PublicKey}},
		OnChange: f.OnChange,
		Connections: func(_ context.Context, email string) []string {
			if email == strings.ToLower(fake.Email()) {
				return []string{conn.Name}
			}
			return nil
		}})
	if err != nil {
		t.Fatal(err)
	}
	otherHook := httptest.NewServer(other.Handler())
	t.Cleanup(otherHook.Close)
	settled(t, res, f.Health(), conn.Name)
	before = res.n.Load()
	begin2 := time.Now()
	fake.Deliver(connectortest.NewMessage("gmail-push-2", "Pedido"), "INBOX")
	hookURL = otherHook.URL
	deliver("m2", fake.HistoryID())
	waitFor(t, 10*time.Second, "the ticket through the other handler", func() bool { return len(sink.Tickets()) == 2 })
	t.Logf("Gmail: delivery to ticket through another process's handler: %s", time.Since(begin2).Round(time.Millisecond))
	time.Sleep(500 * time.Millisecond)
	if n := res.n.Load() - before; n != 1 {
		t.Errorf("%d syncs after one push to the other handler, want 1", n)
	}

	p := pushHealth(t, f, conn.Name)
	if p.Kind != fleet.PushGmail || !p.Active || p.LastNotification.Before(begin.Truncate(time.Millisecond)) ||
		p.Expires.Before(time.Now().Add(6*24*time.Hour)) || p.LastError != "" {
		t.Errorf("push health: %+v", p)
	}
}
