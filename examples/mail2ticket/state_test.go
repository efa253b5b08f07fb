package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mailsync/mailsync/connectortest"
	"github.com/mailsync/mailsync/internal/fakegraph"
	"github.com/mailsync/mailsync/internal/pgtest"
)

// graphFixture is a fake Graph mailbox with rotating refresh tokens.
func graphFixture(t *testing.T, user string, n int) *fakegraph.Server {
	t.Helper()
	fake := fakegraph.New(user)
	t.Cleanup(fake.Close)
	fake.ConfigureOAuth("cid", "client-secret", "rt-0", true, 3600)
	for i := 0; i < n; i++ {
		if _, err := fake.Deliver("Inbox", connectortest.NewMessage(fmt.Sprintf("%s-%d", user, i), fmt.Sprintf("Graph %d", i))); err != nil {
			t.Fatal(err)
		}
	}
	return fake
}

// graphConnection is the config entry of the fake Graph mailbox.
func graphConnection(t *testing.T, name, user string, fake *fakegraph.Server) map[string]any {
	return map[string]any{
		"name": name, "enabled": true, "user": user, "connected_with": []string{"incident"},
		"oauth": map[string]any{"provider": "microsoft_graph", "client_id": "cid", "client_secret": "client-secret",
			"tenant_id": "contoso", "refresh_token": "rt-0", "token_url": fake.TokenURL()},
		"api_endpoint": fake.BaseURL(), "ca_file": writeCA(t, fake.Server),
	}
}

// runTwiceStateOnly runs the tool twice, moving the tickets file away in
// between: the second run creates nothing only if the state remembered
// what the first did (the sink alone would not know).
func runTwiceStateOnly(t *testing.T, cfg, tickets, wantFirst string) {
	t.Helper()
	for i, want := range []string{wantFirst, "created 0"} {
		var out strings.Builder
		if err := run([]string{"-config", cfg}, strings.NewReader(""), &out, &out); err != nil {
			t.Fatalf("run %d: %v\n%s", i, err, out.String())
		}
		if !strings.Contains(out.String(), want) {
			t.Fatalf("run %d output lacks %q:\n%s", i, want, out.String())
		}
		if i == 0 {
			if err := os.Rename(tickets, tickets+".first"); err != nil {
				t.Fatal(err)
			}
		}
	}
	if n := len(readTickets(t, tickets)); n != 0 {
		t.Errorf("the second run wrote %d tickets", n)
	}
}

var titleMapping = []map[string]any{{"ticket_type": "incident", "fields": []map[string]any{{"ticket": "title", "source": "subject"}}}}

// assertNoSecretsIn fails when a file holds one of the OAuth secrets.
func assertNoSecretsIn(t *testing.T, path string, secrets ...string) {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range secrets {
		if strings.Contains(string(raw), s) {
			t.Errorf("%s holds the secret %q", path, s)
		}
	}
}

// TestSQLiteStateSyncsOnce syncs the fake Graph mailbox twice with the
// state in SQLite ("state": "sqlite:RELATIVE", next to the config): the
// second run creates nothing, and no bbolt file is made.
func TestSQLiteStateSyncsOnce(t *testing.T) {
	const user = "sqlite@contoso.example"
	fake := graphFixture(t, user, 2)
	dir := t.TempDir()
	cfg := writeConfig(t, map[string]any{
		"state": "sqlite:m2t-state.db", "state_file": filepath.Join(dir, "bolt.db"), "tickets_file": filepath.Join(dir, "tickets.jsonl"),
		"connections": []map[string]any{graphConnection(t, "M365", user, fake)},
		"mappings":    titleMapping,
	})
	runTwiceStateOnly(t, cfg, filepath.Join(dir, "tickets.jsonl"), "created 2")
	db := filepath.Join(filepath.Dir(cfg), "m2t-state.db")
	if _, err := os.Stat(db); err != nil {
		t.Fatalf("the SQLite state is not next to the config: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "bolt.db")); !os.IsNotExist(err) {
		t.Errorf("the bbolt state_file was opened although \"state\" is set: %v", err)
	}
	if n := len(readTickets(t, filepath.Join(dir, "tickets.jsonl.first"))); n != 2 {
		t.Errorf("%d tickets, want 2", n)
	}
	// The state file must hold no credential (WAL included: the process
	// closed the database, so it was checkpointed).
	assertNoSecretsIn(t, db, "client-secret", "rt-0", "fake-refresh-")
}

// TestPostgresStateSyncsOnce is the same on PostgreSQL (internal/pgtest),
// with a URL as "state".
func TestPostgresStateSyncsOnce(t *testing.T) {
	url := pgtest.NewDatabase(t)
	const user = "pg@contoso.example"
	fake := graphFixture(t, user, 3)
	dir := t.TempDir()
	cfg := writeConfig(t, map[string]any{
		"state": url, "tickets_file": filepath.Join(dir, "tickets.jsonl"),
		"connections": []map[string]any{graphConnection(t, "M365", user, fake)},
		"mappings":    titleMapping,
	})
	t.Chdir(dir) // the default bbolt state_file would land here
	runTwiceStateOnly(t, cfg, filepath.Join(dir, "tickets.jsonl"), "created 3")
	if _, err := os.Stat(filepath.Join(dir, "mailsync-state.db")); !os.IsNotExist(err) {
		t.Errorf("a bbolt state was made although \"state\" is a PostgreSQL URL: %v", err)
	}
	if n := len(readTickets(t, filepath.Join(dir, "tickets.jsonl.first"))); n != 3 {
		t.Errorf("%d tickets, want 3", n)
	}
}

func TestBadStateSettingIsRefused(t *testing.T) {
	for _, v := range []string{"mysql://x", "sqlite:", "/tmp/x.db", "sqlite::memory:"} {
		cfg := writeConfig(t, map[string]any{"state": v, "connections": []map[string]any{}, "mappings": titleMapping})
		if _, err := loadConfig(cfg); err == nil || !strings.Contains(err.Error(), "state") {
			t.Errorf("state %q: got %v", v, err)
		}
	}
}
