package main

import (
	"bytes"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mailsync/mailsync/connectortest"
	"github.com/mailsync/mailsync/internal/fakegmail"
	"github.com/mailsync/mailsync/internal/fakegraph"
)

// writeCA writes the certificate of an httptest TLS server as a PEM file.
func writeCA(t *testing.T, srv *httptest.Server) string {
	path := filepath.Join(t.TempDir(), "ca.pem")
	pemBytes := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	if err := os.WriteFile(path, pemBytes, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func runTwice(t *testing.T, cfg string, wantFirst string) {
	t.Helper()
	for i, want := range []string{wantFirst, "created 0"} {
		var out bytes.Buffer
		if err := run([]string{"-config", cfg}, strings.NewReader(""), &out, &out); err != nil {
			t.Fatalf("run %d: %v\n%s", i, err, out.String())
		}
		if !strings.Contains(out.String(), want) {
			t.Fatalf("run %d output lacks %q:\n%s", i, want, out.String())
		}
	}
}

// TestMicrosoftGraphConnection syncs a Graph mailbox (the fake Graph API)
// through the tool, twice, and checks the rotated refresh token was saved
// into the config file, as a host would store it.
func TestMicrosoftGraphConnection(t *testing.T) {
	const user = "servicedesk@contoso.example"
	fake := fakegraph.New(user)
	t.Cleanup(fake.Close)
	fake.ConfigureOAuth("cid", "client-secret", "rt-0", true, 3600)
	for i := 0; i < 2; i++ {
		if _, err := fake.Deliver("Inbox", connectortest.NewMessage(fmt.Sprintf("graph-%d", i), fmt.Sprintf("Graph %d", i))); err != nil {
			t.Fatal(err)
		}
	}
	dir := t.TempDir()
	cfg := writeConfig(t, map[string]any{
		"state_file": filepath.Join(dir, "state.db"), "tickets_file": filepath.Join(dir, "tickets.jsonl"),
		"connections": []map[string]any{{
			"name": "M365", "enabled": true, "user": user, "connected_with": []string{"incident"},
			"oauth": map[string]any{"provider": "microsoft_graph", "client_id": "cid", "client_secret": "client-secret",
				"tenant_id": "contoso", "refresh_token": "rt-0", "token_url": fake.TokenURL()},
			"api_endpoint": fake.BaseURL(), "ca_file": writeCA(t, fake.Server),
		}},
		"mappings": []map[string]any{{"ticket_type": "incident", "fields": []map[string]any{{"ticket": "title", "source": "subject"}}}},
	})
	runTwice(t, cfg, "created 2")
	raw, _ := os.ReadFile(cfg)
	var doc struct {
		Connections []struct {
			OAuth struct {
				RefreshToken string `json:"refresh_token"`
			} `json:"oauth"`
		} `json:"connections"`
	}
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	if rt := doc.Connections[0].OAuth.RefreshToken; rt == "rt-0" || rt == "" {
		t.Fatalf("the rotated refresh token was not saved: %q", rt)
	}
}

// TestGmailAPIConnection syncs a Gmail mailbox (the fake Gmail API) through
// the tool, with tokens from a local token endpoint.
func TestGmailAPIConnection(t *testing.T) {
	fake := fakegmail.New(fakegmail.Options{})
	t.Cleanup(fake.Close)
	for i := 0; i < 3; i++ {
		fake.Deliver(connectortest.NewMessage(fmt.Sprintf("gmail-%d", i), fmt.Sprintf("Gmail %d", i)))
	}
	var mu sync.Mutex
	n := 0
	tokens := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.ParseForm()
		if r.PostForm.Get("refresh_token") != "google-rt" || r.PostForm.Get("client_secret") != "gsecret" {
			w.WriteHeader(http.StatusBadRequest)
			fmt.Fprint(w, `{"error":"invalid_grant"}`)
			return
		}
		mu.Lock()
		n++
		tok := fmt.Sprintf("ya29.test-%d", n)
		mu.Unlock()
		fake.AddToken(tok, time.Now().Add(time.Hour))
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"access_token":%q,"token_type":"Bearer","expires_in":3599}`, tok)
	}))
	t.Cleanup(tokens.Close)
	dir := t.TempDir()
	cfg := writeConfig(t, map[string]any{
		"state_file": filepath.Join(dir, "state.db"), "tickets_file": filepath.Join(dir, "tickets.jsonl"),
		"connections": []map[string]any{{
			"name": "Gmail", "enabled": true, "user": "support@example.com", "connected_with": []string{"incident"},
			"oauth": map[string]any{"provider": "gmail_api", "client_id": "gid", "client_secret": "gsecret",
				"refresh_token": "google-rt", "token_url": tokens.URL + "/token"},
			"api_endpoint": fake.URL, "ca_file": writeCA(t, tokens),
		}},
		"mappings": []map[string]any{{"ticket_type": "incident", "fields": []map[string]any{{"ticket": "title", "source": "subject"}}}},
	})
	runTwice(t, cfg, "created 3")
}
