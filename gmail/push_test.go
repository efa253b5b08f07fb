package gmail_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mailsync/mailsync"
	"github.com/mailsync/mailsync/gmail"
	"github.com/mailsync/mailsync/internal/fakegmail"
)

const (
	testTopic    = "projects/helpdesk-1/topics/gmail-push"
	testAudience = "https://helpdesk.example.com/gmail/push"
	testPusher   = "pubsub-push@helpdesk-1.iam.gserviceaccount.com"
)

// testKeys is an RSA key set shared by the tests (key generation is slow
// under -race).
var testKeys = sync.OnceValue(func() *rsa.PrivateKey {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	return k
})

// signJWT makes an RS256 JWT with kid over claims.
func signJWT(t *testing.T, key *rsa.PrivateKey, kid string, claims map[string]any) string {
	t.Helper()
	enc := func(v any) string {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		return base64.RawURLEncoding.EncodeToString(b)
	}
	signed := enc(map[string]string{"alg": "RS256", "kid": kid, "typ": "JWT"}) + "." + enc(claims)
	sum := sha256.Sum256([]byte(signed))
	sig, err := rsa.SignPKCS1v15(rand.Reader, key, crypto.SHA256, sum[:])
	if err != nil {
		t.Fatal(err)
	}
	return signed + "." + base64.RawURLEncoding.EncodeToString(sig)
}

// goodClaims are the claims of a push subscription's token, as Google
// issues them.
func goodClaims() map[string]any {
	now := time.Now()
	return map[string]any{
		"iss": "https://accounts.google.com", "aud": testAudience,
		"azp": "1234567890", "sub": "1234567890",
		"email": testPusher, "email_verified": true,
		"iat": now.Unix(), "exp": now.Add(time.Hour).Unix(),
	}
}

// pushEnv is a fake mailbox, a Push and the OnChange calls.
type pushEnv struct {
	*env
	push *gmail.Push
	srv  *httptest.Server

	mu      sync.Mutex
	changes []string
	logs    bytes.Buffer
}

func newPushEnv(t *testing.T, fo fakegmail.Options, mod func(*gmail.PushOptions)) *pushEnv {
	t.Helper()
	pe := &pushEnv{env: newEnv(t, fo)}
	po := gmail.PushOptions{
		Topic: testTopic, Audience: testAudience, ServiceAccount: testPusher,
		Verifier: &gmail.KeySetVerifier{Keys: map[string]*rsa.PublicKey{"k1": &testKeys().PublicKey}},
		OnChange: func(conn string) {
			pe.mu.Lock()
			defer pe.mu.Unlock()
			pe.changes = append(pe.changes, conn)
		},
		Logger: slog.New(slog.NewTextHandler(&lockedWriter{w: &pe.logs, mu: &pe.mu}, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	if mod != nil {
		mod(&po)
	}
	p, err := gmail.NewPush(po)
	if err != nil {
		t.Fatalf("NewPush: %v", err)
	}
	pe.push = p
	pe.srv = httptest.NewServer(p.Handler())
	t.Cleanup(pe.srv.Close)
	return pe
}

type lockedWriter struct {
	w  *bytes.Buffer
	mu *sync.Mutex
}

func (l *lockedWriter) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(b)
}

func (pe *pushEnv) changeList() []string {
	pe.mu.Lock()
	defer pe.mu.Unlock()
	return slices.Clone(pe.changes)
}

func (pe *pushEnv) logText() string {
	pe.mu.Lock()
	defer pe.mu.Unlock()
	return pe.logs.String()
}

// deliver posts a Pub/Sub push delivery of Gmail's notification
// {emailAddress, historyId} with the bearer token and returns the status.
func (pe *pushEnv) deliver(token, messageID, email string, historyID uint64) int {
	pe.t.Helper()
	data, _ := json.Marshal(map[string]any{"emailAddress": email, "historyId": historyID})
	return pe.post(token, map[string]any{
		"message": map[string]any{
			"data":        base64.StdEncoding.EncodeToString(data),
			"messageId":   messageID,
			"message_id":  messageID,
			"publishTime": time.Now().UTC().Format(time.RFC3339Nano),
			"attributes":  map[string]string{},
		},
		"subscription": "projects/helpdesk-1/subscriptions/gmail-push",
	})
}

func (pe *pushEnv) post(token string, body any) int {
	pe.t.Helper()
	b, _ := json.Marshal(body)
	req, _ := http.NewRequest("POST", pe.srv.URL, bytes.NewReader(b))
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := pe.srv.Client().Do(req)
	if err != nil {
		pe.t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func (pe *pushEnv) watch() gmail.WatchStatus {
	pe.t.Helper()
	st, err := pe.push.Watch(context.Background(), pe.conn, pe.opts)
	if err != nil {
		pe.t.Fatalf("Watch: %v", err)
	}
	return st
}

func TestPushWatchCallsUsersWatch(t *testing.T) {
	pe := newPushEnv(t, fakegmail.Options{}, nil)
	support := pe.fake.CreateLabel("Support")
	pe.opts.Labels = []string{"inbox", "Support"}
	st := pe.watch()
	w, ok := pe.fake.Watch()
	if !ok {
		t.Fatal("no watch on the fake")
	}
	want := []string{"INBOX", support}
	slices.Sort(want)
	if w.TopicName != testTopic || !slices.Equal(w.LabelIDs, want) || !strings.EqualFold(w.LabelFilterBehavior, "include") {
		t.Errorf("watch = %+v, want topic %s, labels %v, include", w, testTopic, want)
	}
	if st.Email != pe.fake.Email() || st.HistoryID != pe.fake.HistoryID() || !st.Expiration.Equal(w.Expiration.Truncate(time.Millisecond)) {
		t.Errorf("status = %+v; fake email %s history %d expiration %v", st, pe.fake.Email(), pe.fake.HistoryID(), w.Expiration)
	}
	if d := time.Until(st.NextRenewal); d < 23*time.Hour || d > 24*time.Hour {
		t.Errorf("next renewal in %v, want about 24h (the default)", d)
	}
}

func TestPushRenewsBeforeExpiry(t *testing.T) {
	// The watch lasts 2 s: Run renews it at three quarters of its life
	// (1.5 s), long before RenewEvery (the default, a day).
	pe := newPushEnv(t, fakegmail.Options{WatchExpiry: 2 * time.Second}, nil)
	first := pe.watch()
	if d := first.NextRenewal.Sub(first.Renewed); d < time.Second || d > 1600*time.Millisecond {
		t.Errorf("next renewal %v after the watch, want 1.5 s", d)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- pe.push.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Errorf("Run = %v", err)
		}
	}()
	deadline := time.Now().Add(10 * time.Second)
	for pe.fake.Stats().ByOp["users.watch"] < 2 {
		if time.Now().After(deadline) {
			t.Fatal("users.watch not renewed in 10 s")
		}
		time.Sleep(10 * time.Millisecond)
	}
	st, _ := pe.push.Status(pe.conn.Name)
	for st.Renewed.Equal(first.Renewed) && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
		st, _ = pe.push.Status(pe.conn.Name)
	}
	if !st.Renewed.Before(first.Expiration) {
		t.Errorf("renewed at %v, after the first watch's expiration %v", st.Renewed, first.Expiration)
	}
	if !st.Expiration.After(first.Expiration) {
		t.Errorf("expiration not extended: %v, first %v", st.Expiration, first.Expiration)
	}
	if _, ok := pe.fake.Watch(); !ok {
		t.Error("no watch on the fake after the renewal")
	}
}

func TestPushRenewsEveryRenewEvery(t *testing.T) {
	pe := newPushEnv(t, fakegmail.Options{}, func(o *gmail.PushOptions) { o.RenewEvery = 100 * time.Millisecond })
	pe.watch()
	ctx, cancel := context.WithCancel(context.Background())
	start := time.Now()
	done := make(chan error, 1)
	go func() { done <- pe.push.Run(ctx) }()
	for pe.fake.Stats().ByOp["users.watch"] < 4 {
		if time.Since(start) > 10*time.Second {
			t.Fatalf("users.watch called %d times in 10 s with RenewEvery 100 ms", pe.fake.Stats().ByOp["users.watch"])
		}
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	<-done
	// Three renewals take at least 300 ms: Run does not renew in a loop.
	if el := time.Since(start); el < 300*time.Millisecond {
		t.Errorf("three renewals in %v, want ≥ 300 ms", el)
	}
}

func TestPushRenewalRetriesAfterFailure(t *testing.T) {
	pe := newPushEnv(t, fakegmail.Options{WatchExpiry: 200 * time.Millisecond}, func(o *gmail.PushOptions) {
		o.RetryEvery = 20 * time.Millisecond
	})
	pe.opts.MaxRetries = -1
	pe.watch()
	pe.fake.InjectFault(fakegmail.Fault{Op: "users.watch", Status: 500, Times: 2})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	go pe.push.Run(ctx)
	for pe.fake.Stats().ByOp["users.watch"] < 4 {
		if ctx.Err() != nil {
			t.Fatalf("users.watch called %d times; want the first, two failures, a success", pe.fake.Stats().ByOp["users.watch"])
		}
		time.Sleep(5 * time.Millisecond)
	}
	for {
		st, _ := pe.push.Status(pe.conn.Name)
		if st.Err == nil {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("status after the successful retry: %v", st.Err)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if !strings.Contains(pe.logText(), "users.watch failed") {
		t.Error("the failed renewal was not logged")
	}
}

func TestPushValidTokenCallsOnChangeOnce(t *testing.T) {
	pe := newPushEnv(t, fakegmail.Options{}, nil)
	pe.watch()
	tok := signJWT(t, testKeys(), "k1", goodClaims())
	if code := pe.deliver(tok, "m1", pe.fake.Email(), pe.fake.HistoryID()+10); code != 204 {
		t.Fatalf("delivery: %d, want 204", code)
	}
	if got := pe.changeList(); !slices.Equal(got, []string{pe.conn.Name}) {
		t.Fatalf("OnChange calls %v, want one for %s", got, pe.conn.Name)
	}
	// Redelivered (same messageId): no second OnChange, still acknowledged.
	if code := pe.deliver(tok, "m1", pe.fake.Email(), pe.fake.HistoryID()+10); code != 204 {
		t.Fatalf("redelivery: %d, want 204", code)
	}
	// The address is matched case-insensitively; a newer history id notifies.
	pe.deliver(tok, "m2", strings.ToUpper(pe.fake.Email()), pe.fake.HistoryID()+20)
	if got := pe.changeList(); len(got) != 2 {
		t.Fatalf("OnChange calls %v, want 2", got)
	}
	if strings.Contains(pe.logText(), tok) || strings.Contains(pe.logText(), strings.Split(tok, ".")[2]) {
		t.Error("the token was logged")
	}
}

func TestPushRefusesBadTokens(t *testing.T) {
	pe := newPushEnv(t, fakegmail.Options{}, nil)
	pe.watch()
	other, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	with := func(k string, v any) map[string]any {
		c := goodClaims()
		if v == nil {
			delete(c, k)
		} else {
			c[k] = v
		}
		return c
	}
	good := signJWT(t, testKeys(), "k1", goodClaims())
	parts := strings.Split(good, ".")
	tampered := parts[0] + "." + base64.RawURLEncoding.EncodeToString([]byte(`{"iss":"https://accounts.google.com","aud":"`+testAudience+`","email":"attacker@evil.example","email_verified":true,"iat":1,"exp":9999999999}`)) + "." + parts[2]
	cases := []struct {
		name  string
		token string
		want  int
	}{
		{"no token", "", 401},
		{"not a JWT", "opaque-token", 401},
		{"forged signature (other key, same kid)", signJWT(t, other, "k1", goodClaims()), 401},
		{"tampered payload", tampered, 401},
		{"unknown key id", signJWT(t, testKeys(), "k2", goodClaims()), 401},
		{"expired", signJWT(t, testKeys(), "k1", with("exp", time.Now().Add(-time.Hour).Unix())), 401},
		{"no exp", signJWT(t, testKeys(), "k1", with("exp", nil)), 401},
		{"issued in the future", signJWT(t, testKeys(), "k1", with("iat", time.Now().Add(time.Hour).Unix())), 401},
		{"wrong audience", signJWT(t, testKeys(), "k1", with("aud", "https://other.example.com/push")), 401},
		{"wrong issuer", signJWT(t, testKeys(), "k1", with("iss", "https://evil.example.com")), 403},
		{"other service account", signJWT(t, testKeys(), "k1", with("email", "someone@other-project.iam.gserviceaccount.com")), 403},
		{"email not verified", signJWT(t, testKeys(), "k1", with("email_verified", false)), 403},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			code := pe.deliver(c.token, "bad-"+string(rune('a'+i)), pe.fake.Email(), pe.fake.HistoryID()+uint64(i)+1)
			if code != c.want {
				t.Errorf("status %d, want %d", code, c.want)
			}
		})
	}
	if got := pe.changeList(); len(got) != 0 {
		t.Errorf("OnChange called %v for refused deliveries", got)
	}
	// The issuer without scheme is Google's too.
	if code := pe.deliver(signJWT(t, testKeys(), "k1", with("iss", "accounts.google.com")), "ok", pe.fake.Email(), pe.fake.HistoryID()+100); code != 204 {
		t.Errorf("iss accounts.google.com: %d, want 204", code)
	}
	if strings.Contains(pe.logText(), good) || strings.Contains(pe.logText(), parts[2]) {
		t.Error("a token was logged")
	}
}

func TestPushOldHistoryIDIsNoOp(t *testing.T) {
	pe := newPushEnv(t, fakegmail.Options{}, nil)
	pe.watch()
	tok := signJWT(t, testKeys(), "k1", goodClaims())
	h := pe.fake.HistoryID()
	pe.deliver(tok, "m1", pe.fake.Email(), h+10)
	pe.deliver(tok, "m2", pe.fake.Email(), h+5)  // older: late delivery
	pe.deliver(tok, "m3", pe.fake.Email(), h+10) // same id, another message
	if got := pe.changeList(); len(got) != 1 {
		t.Fatalf("OnChange calls %v, want 1", got)
	}
	pe.deliver(tok, "m4", pe.fake.Email(), h+11)
	if got := pe.changeList(); len(got) != 2 {
		t.Fatalf("OnChange calls %v, want 2", got)
	}
}

func TestPushCursorDecides(t *testing.T) {
	var cursor mailsync.Cursor
	pe := newPushEnv(t, fakegmail.Options{}, func(o *gmail.PushOptions) {
		o.Cursor = func(ctx context.Context, conn string) (mailsync.Cursor, error) { return cursor, nil }
	})
	pe.watch()
	c := pe.connector()
	pe.env.deliver("m", 1)
	l, err := c.List(context.Background(), "")
	if err != nil {
		t.Fatal(err)
	}
	cursor = l.Cursor
	synced := pe.fake.HistoryID()
	tok := signJWT(t, testKeys(), "k1", goodClaims())
	pe.deliver(tok, "m1", pe.fake.Email(), synced) // the cursor is there already
	pe.deliver(tok, "m2", pe.fake.Email(), synced-1)
	if got := pe.changeList(); len(got) != 0 {
		t.Fatalf("OnChange %v for history the cursor covers", got)
	}
	pe.env.deliver("m", 1)
	pe.deliver(tok, "m3", pe.fake.Email(), pe.fake.HistoryID())
	pe.deliver(tok, "m3", pe.fake.Email(), pe.fake.HistoryID()) // redelivered: ignored
	// With a cursor, a notification the cursor has not reached calls
	// OnChange every time (the sync it triggered may not have run yet).
	pe.deliver(tok, "m4", pe.fake.Email(), pe.fake.HistoryID())
	if got := pe.changeList(); len(got) != 2 {
		t.Fatalf("OnChange calls %v, want 2", got)
	}
	cursor = "not-a-cursor"
	pe.deliver(tok, "m5", pe.fake.Email(), synced)
	if got := pe.changeList(); len(got) != 3 {
		t.Fatalf("OnChange calls %v with an unreadable cursor, want 3", got)
	}
}

func TestPushAcknowledgesWhatItCannotUse(t *testing.T) {
	pe := newPushEnv(t, fakegmail.Options{}, nil)
	pe.watch()
	tok := signJWT(t, testKeys(), "k1", goodClaims())
	if code := pe.deliver(tok, "m1", "nobody@example.com", 99999); code != 204 {
		t.Errorf("unknown mailbox: %d, want 204", code)
	}
	for _, body := range []any{
		map[string]any{"message": map[string]any{"data": "not base64!", "messageId": "m2"}},
		map[string]any{"message": map[string]any{"data": base64.StdEncoding.EncodeToString([]byte("{")), "messageId": "m3"}},
		map[string]any{"message": map[string]any{"data": base64.StdEncoding.EncodeToString([]byte(`{"emailAddress":"x@example.com"}`)), "messageId": "m4"}},
		"just a string",
	} {
		if code := pe.post(tok, body); code != 204 {
			t.Errorf("malformed %v: %d, want 204 (acknowledged)", body, code)
		}
	}
	if got := pe.changeList(); len(got) != 0 {
		t.Errorf("OnChange %v", got)
	}
	// historyId as a JSON string is accepted too.
	data := base64.StdEncoding.EncodeToString([]byte(`{"emailAddress":"` + pe.fake.Email() + `","historyId":"999999"}`))
	pe.post(tok, map[string]any{"message": map[string]any{"data": data, "messageId": "m5"}})
	if got := pe.changeList(); len(got) != 1 {
		t.Errorf("OnChange %v for a string historyId, want 1", got)
	}
	resp, err := pe.srv.Client().Get(pe.srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 405 {
		t.Errorf("GET: %d, want 405", resp.StatusCode)
	}
}

func TestPushStop(t *testing.T) {
	pe := newPushEnv(t, fakegmail.Options{}, nil)
	pe.watch()
	if err := pe.push.Stop(context.Background(), pe.conn.Name); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if _, ok := pe.fake.Watch(); ok {
		t.Error("the fake still has a watch after Stop")
	}
	if n := pe.fake.Stats().ByOp["users.stop"]; n != 1 {
		t.Errorf("users.stop called %d times", n)
	}
	if _, ok := pe.push.Status(pe.conn.Name); ok {
		t.Error("Status after Stop")
	}
	tok := signJWT(t, testKeys(), "k1", goodClaims())
	if code := pe.deliver(tok, "m1", pe.fake.Email(), pe.fake.HistoryID()+1); code != 204 {
		t.Errorf("delivery after Stop: %d, want 204", code)
	}
	if got := pe.changeList(); len(got) != 0 {
		t.Errorf("OnChange %v after Stop", got)
	}
	if err := pe.push.Stop(context.Background(), pe.conn.Name); err != nil {
		t.Errorf("second Stop: %v", err)
	}
}

func TestPushTwoConnectionsOneMailbox(t *testing.T) {
	pe := newPushEnv(t, fakegmail.Options{}, nil)
	support := pe.fake.CreateLabel("Support")
	pe.watch()
	conn2 := pe.conn
	conn2.Name = "support-label"
	o2 := pe.opts
	o2.Labels = []string{"Support"}
	if _, err := pe.push.Watch(context.Background(), conn2, o2); err != nil {
		t.Fatal(err)
	}
	want := []string{"INBOX", support}
	slices.Sort(want)
	if w, _ := pe.fake.Watch(); !slices.Equal(w.LabelIDs, want) {
		t.Errorf("labels %v, want the union %v", w.LabelIDs, want)
	}
	tok := signJWT(t, testKeys(), "k1", goodClaims())
	pe.deliver(tok, "m1", pe.fake.Email(), pe.fake.HistoryID()+1)
	if got := pe.changeList(); !slices.Equal(got, []string{pe.conn.Name, conn2.Name}) {
		t.Errorf("OnChange %v, want both connections", got)
	}
	// Stopping one keeps the mailbox watched for the other.
	if err := pe.push.Stop(context.Background(), pe.conn.Name); err != nil {
		t.Fatal(err)
	}
	if w, ok := pe.fake.Watch(); !ok || !slices.Equal(w.LabelIDs, []string{support}) {
		t.Errorf("after stopping one: %+v %v, want a watch on %s", w, ok, support)
	}
	if n := pe.fake.Stats().ByOp["users.stop"]; n != 0 {
		t.Errorf("users.stop called %d times", n)
	}
}

func TestNewPushValidates(t *testing.T) {
	_, err := gmail.NewPush(gmail.PushOptions{Topic: "gmail-push"})
	var ce *mailsync.ConfigError
	if !errors.As(err, &ce) {
		t.Fatalf("NewPush: %v, want a *mailsync.ConfigError", err)
	}
	for _, f := range []string{"topic", "audience", "service_account", "on_change"} {
		if !strings.Contains(err.Error(), f) {
			t.Errorf("error %q does not name %s", err, f)
		}
	}
}

func TestPushPastExpirationDoesNotLoop(t *testing.T) {
	// An expiration already past (clock skew) must not make Run call
	// users.watch in a loop.
	pe := newPushEnv(t, fakegmail.Options{WatchExpiry: -time.Hour}, nil)
	pe.watch()
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	pe.push.Run(ctx)
	if n := pe.fake.Stats().ByOp["users.watch"]; n > 2 {
		t.Errorf("users.watch called %d times in 300 ms", n)
	}
}

func TestPushWatchErrors(t *testing.T) {
	pe := newPushEnv(t, fakegmail.Options{}, nil)
	o := pe.opts
	o.Labels = []string{"No Such Label"}
	if _, err := pe.push.Watch(context.Background(), pe.conn, o); !errors.Is(err, mailsync.ErrFolderNotFound) {
		t.Errorf("Watch with an unknown label: %v, want ErrFolderNotFound", err)
	}
	if _, ok := pe.push.Status(pe.conn.Name); ok {
		t.Error("a connection whose labels do not exist is registered")
	}
	pe.opts.MaxRetries = -1
	pe.fake.InjectFault(fakegmail.Fault{Op: "users.watch", Status: 500})
	if _, err := pe.push.Watch(context.Background(), pe.conn, pe.opts); !errors.Is(err, mailsync.ErrConnection) {
		t.Errorf("Watch with users.watch failing: %v, want ErrConnection", err)
	}
	st, ok := pe.push.Status(pe.conn.Name)
	if !ok || st.Err == nil {
		t.Fatalf("Status after a failed users.watch: %+v %v, want registered with the error", st, ok)
	}
	if d := time.Until(st.NextRenewal); d > time.Minute+time.Second {
		t.Errorf("retry in %v, want ≤ RetryEvery (1 min)", d)
	}
	// Notifications reach a registered connection even while its watch
	// is being retried.
	pe.deliver(signJWT(t, testKeys(), "k1", goodClaims()), "m1", pe.fake.Email(), 99999)
	if got := pe.changeList(); len(got) != 1 {
		t.Errorf("OnChange %v", got)
	}
}

func TestPushConcurrentRedeliveries(t *testing.T) {
	// Pub/Sub may deliver a message twice at once; with a Cursor (no
	// history id bookkeeping) the messageId alone must keep it to one
	// OnChange.
	pe := newPushEnv(t, fakegmail.Options{}, func(o *gmail.PushOptions) {
		o.Cursor = func(context.Context, string) (mailsync.Cursor, error) { return "4000;INBOX", nil }
	})
	pe.watch()
	tok := signJWT(t, testKeys(), "k1", goodClaims())
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			pe.deliver(tok, "same", pe.fake.Email(), 5000)
		}()
	}
	wg.Wait()
	if got := pe.changeList(); len(got) != 1 {
		t.Errorf("OnChange %v, want 1", got)
	}
}

// TestPushConnectionsWatchedElsewhere: a Push that watches nothing itself
// (another process of the host holds the watch) still calls OnChange for
// the connections PushOptions.Connections names for the mailbox, once per
// delivery; without them, or for another mailbox, it calls nothing.
func TestPushConnectionsWatchedElsewhere(t *testing.T) {
	var asked []string
	pe := newPushEnv(t, fakegmail.Options{}, func(o *gmail.PushOptions) {
		o.Connections = func(_ context.Context, email string) []string {
			asked = append(asked, email)
			if email == "support@example.com" {
				return []string{"support-gmail"}
			}
			return nil
		}
	})
	tok := signJWT(t, testKeys(), "k1", goodClaims())
	if code := pe.deliver(tok, "m1", "Support@Example.com", 100); code != 204 {
		t.Fatalf("delivery: %d, want 204", code)
	}
	if got := pe.changeList(); !slices.Equal(got, []string{"support-gmail"}) {
		t.Fatalf("OnChange calls %v, want one for support-gmail", got)
	}
	pe.deliver(tok, "m1", "support@example.com", 100) // redelivered
	pe.deliver(tok, "m2", "other@example.com", 101)   // another mailbox
	if got := pe.changeList(); len(got) != 1 {
		t.Fatalf("OnChange calls %v, want still one", got)
	}
	pe.deliver(tok, "m3", "support@example.com", 102)
	if got := pe.changeList(); len(got) != 2 {
		t.Fatalf("OnChange calls %v after a new delivery, want two", got)
	}
	if !slices.Equal(asked, []string{"support@example.com", "other@example.com", "support@example.com"}) {
		t.Errorf("Connections asked for %v", asked)
	}

	plain := newPushEnv(t, fakegmail.Options{}, nil)
	plain.deliver(tok, "m1", "support@example.com", 100)
	if got := plain.changeList(); len(got) != 0 {
		t.Errorf("without Connections: OnChange calls %v, want none", got)
	}
}
