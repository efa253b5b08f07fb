package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mailsync/mailsync/connectortest"
	"github.com/mailsync/mailsync/internal/fakegmail"
	"github.com/mailsync/mailsync/internal/fakegraph"
	"github.com/mailsync/mailsync/internal/pgtest"
)

// syncBuffer is a bytes.Buffer the test may read while the tool writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// gmailFixture is a fake Gmail mailbox with n messages and a TLS token
// endpoint that accepts the refresh token "google-rt".
func gmailFixture(t *testing.T, n int) (*fakegmail.Server, *httptest.Server) {
	t.Helper()
	fake := fakegmail.New(fakegmail.Options{})
	t.Cleanup(fake.Close)
	for i := 0; i < n; i++ {
		fake.Deliver(connectortest.NewMessage(fmt.Sprintf("gmail-%d", i), fmt.Sprintf("Gmail %d", i)))
	}
	var mu sync.Mutex
	k := 0
	tokens := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.ParseForm()
		if r.PostForm.Get("refresh_token") != "google-rt" || r.PostForm.Get("client_secret") != "gsecret" {
			w.WriteHeader(http.StatusBadRequest)
			fmt.Fprint(w, `{"error":"invalid_grant"}`)
			return
		}
		mu.Lock()
		k++
		tok := fmt.Sprintf("ya29.serve-%d", k)
		mu.Unlock()
		fake.AddToken(tok, time.Now().Add(time.Hour))
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"access_token":%q,"token_type":"Bearer","expires_in":3599}`, tok)
	}))
	t.Cleanup(tokens.Close)
	return fake, tokens
}

// waitFor polls cond for up to d.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool, out *syncBuffer) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s; output so far:\n%s", what, out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestServe runs -serve against the fake Graph and Gmail APIs with a short
// interval, delivers mail while it runs, stops it (context cancel) and
// checks the tickets, the per-sync and health lines, the rotated Graph
// refresh token (each sync reads the config again, so the token rotated by
// one sync is the one the next uses) and that the password connection of
// the same config is skipped, never asked for.
func TestServe(t *testing.T) {
	const user = "serve@contoso.example"
	graph := graphFixture(t, user, 2)
	gmail, tokens := gmailFixture(t, 3)
	dir := t.TempDir()
	tickets := filepath.Join(dir, "tickets.jsonl")
	cfg := writeConfig(t, map[string]any{
		"state_file": filepath.Join(dir, "bolt.db"), "tickets_file": tickets,
		"connections": []map[string]any{
			graphConnection(t, "M365", user, graph),
			{
				"name": "Gmail", "enabled": true, "user": "support@example.com", "connected_with": []string{"incident"},
				"oauth": map[string]any{"provider": "gmail_api", "client_id": "gid", "client_secret": "gsecret",
					"refresh_token": "google-rt", "token_url": tokens.URL + "/token"},
				"api_endpoint": gmail.URL, "ca_file": writeCA(t, tokens),
			},
			{
				// Never dialled: a password connection is not scheduled.
				"name": "Senha", "enabled": true, "user": "suporte@empresa.pt", "server": "imap.invalid", "port": 993,
				"protocol": "imap", "connected_with": []string{"incident"},
			},
			{"name": "Off", "enabled": false, "user": "x@contoso.example", "connected_with": []string{"incident"},
				"oauth": map[string]any{"provider": "microsoft_graph", "client_id": "cid", "client_secret": "client-secret",
					"tenant_id": "contoso", "refresh_token": "rt-off", "token_url": graph.TokenURL()}},
		},
		"mappings": titleMapping,
	})
	t.Setenv("MAILSYNC_PASSWORD", "")
	ticketCount := func(want int) func() bool {
		return func() bool {
			f, err := os.Open(tickets)
			if err != nil {
				return false
			}
			defer f.Close()
			n := 0
			for _, line := range strings.Split(readAll(f), "\n") {
				if strings.Contains(line, `"kind":"ticket"`) {
					n++
				}
			}
			return n >= want
		}
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out syncBuffer
	done := make(chan error, 1)
	go func() {
		done <- runContext(ctx, []string{"-config", cfg, "-serve", "-interval", "200ms", "-status-interval", "300ms"},
			strings.NewReader(""), &out, &out)
	}()
	waitFor(t, 20*time.Second, "the first 5 tickets", ticketCount(5), &out)
	if _, err := graph.Deliver("Inbox", connectortest.NewMessage("graph-late", "Graph late")); err != nil {
		t.Fatal(err)
	}
	gmail.Deliver(connectortest.NewMessage("gmail-late", "Gmail late"))
	waitFor(t, 20*time.Second, "the 2 late tickets", ticketCount(7), &out)
	waitFor(t, 10*time.Second, "3 Graph syncs and a health line", func() bool {
		s := out.String()
		return strings.Count(s, "✓ M365: synced") >= 3 && strings.Contains(s, "health M365: last success")
	}, &out)
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("serve: %v\n%s", err, out.String())
		}
	case <-time.After(40 * time.Second):
		t.Fatalf("serve did not stop\n%s", out.String())
	}
	s := out.String()
	t.Logf("output:\n%s", s)

	recs := readTickets(t, tickets)
	titles := map[string]int{}
	for _, r := range recs {
		titles[r.Fields["title"]]++
	}
	for _, want := range []string{"Graph 0", "Graph 1", "Graph late", "Gmail 0", "Gmail 1", "Gmail 2", "Gmail late"} {
		if titles[want] != 1 {
			t.Errorf("ticket %q: %d, want 1 (all: %v)", want, titles[want], titles)
		}
	}
	if len(recs) != 7 {
		t.Errorf("%d records, want 7", len(recs))
	}
	for _, want := range []string{
		"- Senha: skipped: a password connection is never scheduled",
		"- Off: disabled, skipped",
		"serving 2 connection(s) every 200ms",
		"stopping: waiting for the running syncs",
	} {
		if !strings.Contains(s, want) {
			t.Errorf("output lacks %q", want)
		}
	}
	if strings.Contains(s, "✗") {
		t.Errorf("a sync failed:\n%s", s)
	}
	// The health printed at shutdown: after "stopping", one line per served
	// connection, never one for the skipped ones.
	_, final, _ := strings.Cut(s, "stopping:")
	for _, name := range []string{"M365", "Gmail"} {
		re := regexp.MustCompile(`health ` + name + `: last success \d{4}-\d\d-\d\d \d\d:\d\d:\d\d \(\S+ ago\), consecutive failures 0, needs admin no, degraded no, messages (\d+)`)
		m := re.FindStringSubmatch(final)
		if m == nil {
			t.Errorf("no final health line for %s", name)
		} else if want := map[string]string{"M365": "3", "Gmail": "4"}[name]; m[1] != want {
			t.Errorf("%s: messages %s, want %s", name, m[1], want)
		}
	}
	if strings.Contains(s, "health Senha") || strings.Contains(s, "health Off") {
		t.Error("a skipped connection has a health line")
	}
	// Rotated Graph refresh tokens were written back to the config.
	raw, _ := os.ReadFile(cfg)
	var doc struct {
		Connections []struct {
			Name  string `json:"name"`
			OAuth struct {
				RefreshToken string `json:"refresh_token"`
			} `json:"oauth"`
		} `json:"connections"`
	}
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	if rt := doc.Connections[0].OAuth.RefreshToken; !strings.HasPrefix(rt, "fake-refresh-") {
		t.Errorf("the rotated refresh token was not saved: %q", rt)
	}
	// By default the fleet lives in one SQLite file next to the config,
	// which holds no credential; the bbolt state_file is not used.
	db := filepath.Join(filepath.Dir(cfg), "mail2ticket.db")
	if _, err := os.Stat(db); err != nil {
		t.Fatal(err)
	}
	assertNoSecretsIn(t, db, "client-secret", "gsecret", "google-rt", "rt-0", "fake-refresh-", "ya29.")
	if _, err := os.Stat(filepath.Join(dir, "bolt.db")); !os.IsNotExist(err) {
		t.Errorf("-serve opened the bbolt state_file: %v", err)
	}
}

func readAll(f *os.File) string {
	var b bytes.Buffer
	_, _ = b.ReadFrom(f)
	return b.String()
}

// startServe runs -serve with args in the background; stop cancels it and
// returns its error.
func startServe(t *testing.T, args ...string) (out *syncBuffer, stop func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	out = &syncBuffer{}
	done := make(chan error, 1)
	go func() {
		done <- runContext(ctx, append([]string{"-serve"}, args...), strings.NewReader(""), out, out)
	}()
	stopped := false
	var err error
	stop = func() error {
		if stopped {
			return err
		}
		stopped = true
		cancel()
		select {
		case err = <-done:
		case <-time.After(40 * time.Second):
			t.Fatalf("serve did not stop\n%s", out.String())
		}
		return err
	}
	t.Cleanup(func() { _ = stop() })
	return out, stop
}

// TestServeNeedsAdmin: a connection whose refresh token is refused is
// tried once, shown as degraded and needing the admin, while the other
// keeps syncing; no secret reaches the output although the token endpoint
// echoes them (in several encodings) in its error.
func TestServeNeedsAdmin(t *testing.T) {
	good := graphFixture(t, "good@contoso.example", 1)
	bad := graphFixture(t, "bad@contoso.example", 1)
	bad.FailTokens("echo")
	dir := t.TempDir()
	cfg := writeConfig(t, map[string]any{
		"state": "sqlite:" + filepath.Join(dir, "m2t.db"), "tickets_file": filepath.Join(dir, "tickets.jsonl"),
		"connections": []map[string]any{
			graphConnection(t, "Good", "good@contoso.example", good),
			graphConnection(t, "Bad", "bad@contoso.example", bad),
		},
		"mappings": titleMapping,
	})
	out, stop := startServe(t, "-config", cfg, "-interval", "150ms", "-status-interval", "200ms")
	waitFor(t, 20*time.Second, "Bad to need the admin and Good to sync 3 times", func() bool {
		s := out.String()
		return strings.Contains(s, "✗ Bad: sync failed, needs the admin") && strings.Count(s, "✓ Good: synced") >= 3
	}, out)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	s := out.String()
	t.Logf("output:\n%s", s)
	if n := strings.Count(s, "✗ Bad:"); n != 1 {
		t.Errorf("Bad was tried %d times, want once (it waits for the admin)", n)
	}
	if !strings.Contains(s, "! Bad: degraded:") {
		t.Error("no degraded line for Bad")
	}
	_, final, _ := strings.Cut(s, "stopping:")
	if !regexp.MustCompile(`health Bad: last success never, consecutive failures 1, needs admin yes, degraded yes, messages 0, last error \(\w+\): `).MatchString(final) {
		t.Error("no final health line of Bad needing the admin")
	}
	if !regexp.MustCompile(`health Good: last success .*, consecutive failures 0, needs admin no`).MatchString(final) {
		t.Error("no final health line of Good")
	}
	for _, secret := range []string{"client-secret", "rt-0"} {
		for _, form := range fakegraph.EchoForms(secret) {
			if strings.Contains(s, form) {
				t.Errorf("the output holds the secret %q as %q", secret, form)
			}
		}
	}
}

// TestServePostgres runs -serve with a PostgreSQL "state" URL: River on
// riverpgxv5, state and health in the same database.
func TestServePostgres(t *testing.T) {
	url := pgtest.NewDatabase(t)
	const user = "pgserve@contoso.example"
	graph := graphFixture(t, user, 2)
	dir := t.TempDir()
	cfg := writeConfig(t, map[string]any{
		"state": url, "tickets_file": filepath.Join(dir, "tickets.jsonl"),
		"connections": []map[string]any{graphConnection(t, "M365", user, graph)},
		"mappings":    titleMapping,
	})
	out, stop := startServe(t, "-config", cfg, "-interval", "150ms", "-status-interval", "200ms")
	waitFor(t, 20*time.Second, "2 syncs", func() bool { return strings.Count(out.String(), "✓ M365: synced") >= 2 }, out)
	if _, err := graph.Deliver("Inbox", connectortest.NewMessage("pg-late", "Graph late")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 20*time.Second, "the late mail", func() bool { return strings.Contains(out.String(), "✓ M365: synced, 1 ticket") }, out)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	s := out.String()
	if !strings.Contains(s, "on PostgreSQL") || strings.Contains(s, url) {
		t.Errorf("the store is not named, or the URL is printed:\n%s", s)
	}
	if n := len(readTickets(t, filepath.Join(dir, "tickets.jsonl"))); n != 3 {
		t.Errorf("%d tickets, want 3\n%s", n, s)
	}
	if !regexp.MustCompile(`health M365: last success .*, consecutive failures 0, needs admin no, degraded no, messages 3`).MatchString(s) {
		t.Errorf("no health line with 3 messages:\n%s", s)
	}
}

// TestServeOnlyConnection: -serve -connection NAME syncs only NAME, even
// when the database still holds the job of another connection scheduled
// by an earlier -serve (the job is dropped, not run).
func TestServeOnlyConnection(t *testing.T) {
	a := graphFixture(t, "a@contoso.example", 1)
	b := graphFixture(t, "b@contoso.example", 1)
	dir := t.TempDir()
	tickets := filepath.Join(dir, "tickets.jsonl")
	cfg := writeConfig(t, map[string]any{
		"state": "sqlite:m2t.db", "tickets_file": tickets,
		"connections": []map[string]any{graphConnection(t, "A", "a@contoso.example", a), graphConnection(t, "B", "b@contoso.example", b)},
		"mappings":    titleMapping,
	})
	out, stop := startServe(t, "-config", cfg, "-interval", "150ms", "-status-interval", "1h")
	waitFor(t, 20*time.Second, "both to sync", func() bool {
		s := out.String()
		return strings.Contains(s, "✓ A: synced, 1") && strings.Contains(s, "✓ B: synced, 1")
	}, out)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Deliver("Inbox", connectortest.NewMessage("b-late", "B late")); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Deliver("Inbox", connectortest.NewMessage("a-late", "A late")); err != nil {
		t.Fatal(err)
	}
	out, stop = startServe(t, "-config", cfg, "-connection", "A", "-interval", "150ms", "-status-interval", "1h")
	waitFor(t, 20*time.Second, "A's late mail", func() bool { return strings.Contains(out.String(), "✓ A: synced, 1") }, out)
	time.Sleep(500 * time.Millisecond) // B's old job would have run by now
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	s := out.String()
	if !strings.Contains(s, "serving 1 connection(s)") || strings.Contains(s, " B:") || strings.Contains(s, "health B") {
		t.Errorf("B was served:\n%s", s)
	}
	for _, r := range readTickets(t, tickets) {
		if r.Fields["title"] == "B late" {
			t.Errorf("B's late mail became a ticket")
		}
	}
}

// TestOneOffRunWhileServing: a one-off run on the tickets file of a
// running -serve is refused (two processes must not write one jsonlsink
// file); once -serve stopped, it runs, sharing the SQLite state.
func TestOneOffRunWhileServing(t *testing.T) {
	const user = "lock@contoso.example"
	graph := graphFixture(t, user, 1)
	dir := t.TempDir()
	cfg := writeConfig(t, map[string]any{
		"state": "sqlite:m2t.db", "tickets_file": filepath.Join(dir, "tickets.jsonl"),
		"connections": []map[string]any{graphConnection(t, "M365", user, graph)},
		"mappings":    titleMapping,
	})
	out, stop := startServe(t, "-config", cfg, "-interval", "150ms", "-status-interval", "1h")
	waitFor(t, 20*time.Second, "a sync", func() bool { return strings.Contains(out.String(), "✓ M365: synced, 1") }, out)
	var one bytes.Buffer
	err := runContext(context.Background(), []string{"-config", cfg}, strings.NewReader(""), &one, &one)
	if err == nil || !strings.Contains(err.Error(), "in use by another mail2ticket") {
		t.Fatalf("one-off run beside -serve: %v\n%s", err, one.String())
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	one.Reset()
	if err := runContext(context.Background(), []string{"-config", cfg}, strings.NewReader(""), &one, &one); err != nil {
		t.Fatalf("one-off run after -serve: %v\n%s", err, one.String())
	}
	if !strings.Contains(one.String(), "created 0") {
		t.Errorf("the one-off run did not share -serve's state:\n%s", one.String())
	}
}
