package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"
)

// tokenEndpoint is an OAuth token endpoint that rotates the refresh token
// at every refresh, as Microsoft's does.
type tokenEndpoint struct {
	mu      sync.Mutex
	refresh string // the valid refresh token
	access  string // the last access token handed out
	n       int
}

func (e *tokenEndpoint) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if r.PostFormValue("grant_type") != "refresh_token" || r.PostFormValue("refresh_token") != e.refresh {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(400)
		fmt.Fprint(w, `{"error":"invalid_grant"}`)
		return
	}
	e.n++
	e.access = fmt.Sprintf("AT-access-%d-7c1d", e.n)
	e.refresh = fmt.Sprintf("RT-rotated-%d-93ab", e.n)
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(map[string]any{"access_token": e.access, "refresh_token": e.refresh, "token_type": "Bearer", "expires_in": 3600})
}

func (e *tokenEndpoint) valid(token string) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return token != "" && token == e.access
}

// TestOAuthBackgroundSync: an OAuth connection saved in the form is synced
// by the fleet in the background (no person, no password), its health is
// shown on the connections page, and the refresh token the provider
// rotated is stored, sealed, in place of the old one.
func TestOAuthBackgroundSync(t *testing.T) {
	const firstRefresh = "RT-first-0e7f44"
	const clientSecret = "CS-client-secret-51aa"
	tok := &tokenEndpoint{refresh: firstRefresh}
	ts := httptest.NewServer(tok)
	defer ts.Close()
	h := newHarness(t, "", func(c *Config) {
		c.seedTokenCheck = func(user, token string) bool { return user == seedUser && tok.valid(token) }
		c.Interval = time.Hour
	})
	host, port, _ := net.SplitHostPort(h.app.seed.Addr)
	_, final, body := h.post("/connections/save", url.Values{"enabled": {"on"}, "name": {"Office"}, "user": {seedUser},
		"server": {host}, "port": {port}, "protocol": {"imap"}, "auth": {"microsoft_graph"},
		"graph_client_id": {"app-1"}, "graph_client_secret": {clientSecret}, "graph_tenant_id": {"contoso"},
		"graph_refresh_token": {firstRefresh}, "graph_token_url": {ts.URL + "/token"}, "connected_with": {"incident"}})
	if final != "/connections" {
		t.Fatalf("save: %s\n%s", final, clip(body))
	}
	// The fleet picks the job up (riversqlite polls every second).
	deadline := time.Now().Add(45 * time.Second)
	for {
		hl, ok, err := h.app.fleet.Health().Get(context.Background(), "Office")
		if err != nil {
			t.Fatal(err)
		}
		if ok && !hl.LastSuccess.IsZero() {
			if hl.MessagesSynced != 5 || hl.Quarantined != 1 {
				t.Errorf("health %+v", hl)
			}
			break
		}
		if ok && hl.ConsecutiveFailures > 0 {
			t.Fatalf("background sync failed: %s: %s", hl.LastErrorKind, hl.LastError)
		}
		if time.Now().After(deadline) {
			t.Fatalf("the fleet did not sync the OAuth connection in 45 s; log:\n%s", h.logs.String())
		}
		time.Sleep(200 * time.Millisecond)
	}
	_, body = h.get("/connections")
	row := body[strings.Index(body, `data-connection="Office"`):]
	row = row[:strings.Index(row, "</tr>")]
	mustContain(t, "health", row, "sincronização automática (OAuth)", `<span class="badge good">OK</span>`, "5 msg")
	var n int
	h.app.st.db.QueryRow(`SELECT COUNT(*) FROM hd_tickets WHERE connection = 'Office'`).Scan(&n)
	if n != 4 {
		t.Errorf("%d tickets from the OAuth connection", n)
	}
	conn, err := h.app.st.ConnectionWithSecrets(context.Background(), "Office")
	if err != nil {
		t.Fatal(err)
	}
	tok.mu.Lock()
	current, access := tok.refresh, tok.access
	tok.mu.Unlock()
	if got := conn.OAuth.RefreshToken.Reveal(); got != current || got == firstRefresh {
		t.Errorf("stored refresh token %q, the provider's current one is %q", got, current)
	}
	h.assertNoSecret(clientSecret, firstRefresh, current, access)
}
