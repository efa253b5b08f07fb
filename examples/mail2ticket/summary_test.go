package main

import (
	"bytes"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mailsync/mailsync"
	"github.com/mailsync/mailsync/connectortest"
	"github.com/mailsync/mailsync/internal/fakegraph"
	"github.com/mailsync/mailsync/jsonlsink"
)

const graphUser = "servicedesk@contoso.example"

// graphConfig writes a config with one Graph connection to api (the fake
// Graph itself or a proxy in front of it), with extra connection and
// top-level settings.
func graphConfig(t *testing.T, api *httptest.Server, conn, top map[string]any) string {
	t.Helper()
	dir := t.TempDir()
	c := map[string]any{
		"name": "M365", "enabled": true, "user": graphUser, "connected_with": []string{"incident"},
		"oauth": map[string]any{"provider": "microsoft_graph", "client_id": "cid", "client_secret": "client-secret",
			"tenant_id": "contoso", "refresh_token": "rt-0", "token_url": api.URL + fakegraph.TokenPath},
		"api_endpoint": api.URL + "/v1.0", "ca_file": writeCA(t, api),
	}
	for k, v := range conn {
		c[k] = v
	}
	doc := map[string]any{
		"state_file": filepath.Join(dir, "state.db"), "tickets_file": filepath.Join(dir, "tickets.jsonl"),
		"connections": []map[string]any{c},
		"mappings": []map[string]any{{"ticket_type": "incident", "fields": []map[string]any{
			{"ticket": "title", "source": "subject"}, {"ticket": "attachments", "source": "attachments"}}}},
	}
	for k, v := range top {
		doc[k] = v
	}
	return writeConfig(t, doc)
}

func newFakeGraph(t *testing.T) *fakegraph.Server {
	fake := fakegraph.New(graphUser)
	t.Cleanup(fake.Close)
	fake.ConfigureOAuth("cid", "client-secret", "rt-0", false, 3600)
	return fake
}

// A delete or move post-action with attachments only hashed would remove
// from the server what the tool did not keep: refused at start-up.
func TestDestructivePostActionNeedsSaveFiles(t *testing.T) {
	fake := newFakeGraph(t)
	fake.Deliver("Inbox", connectortest.NewMessage("keep-me", "Keep me"))
	for _, tc := range []struct {
		action    map[string]any
		saveFiles bool
		refused   bool
	}{
		{map[string]any{"kind": "delete"}, false, true},
		{map[string]any{"kind": "move", "folder": "Archive"}, false, true},
		{map[string]any{"kind": "delete"}, true, false},
		{map[string]any{"kind": "mark_read"}, false, false},
		{nil, false, false},
	} {
		conn := map[string]any{}
		if tc.action != nil {
			conn["post_action"] = tc.action
		}
		cfg := graphConfig(t, fake.Server, conn, map[string]any{"save_files": tc.saveFiles})
		_, err := loadConfig(cfg)
		if !tc.refused {
			if err != nil {
				t.Errorf("%v save_files=%v: %v", tc.action, tc.saveFiles, err)
			}
			continue
		}
		if err == nil || !errors.Is(err, mailsync.ErrInvalidConfig) || !strings.Contains(err.Error(), "connections[0].post_action") ||
			!strings.Contains(err.Error(), "save_files") || !strings.Contains(err.Error(), "M365") {
			t.Errorf("%v save_files=false: got %v", tc.action, err)
		}
		var out bytes.Buffer
		if err := run([]string{"-config", cfg}, strings.NewReader(""), &out, &out); err == nil || strings.Contains(out.String(), "✓") {
			t.Errorf("run with %v and save_files=false: %v\n%s", tc.action, err, out.String())
		}
	}
	if msgs := fake.Messages(); len(msgs) != 1 || msgs[0].Folder != "Inbox" {
		t.Fatalf("the mail left the inbox: %+v", msgs)
	}
}

// A connection that cannot log in or list shows only the failure ("✗"),
// never a "✓ … seen 0" line, and the exit code is non-zero.
func TestFailedConnectionShowsOnlyTheFailure(t *testing.T) {
	for _, tc := range []struct {
		name string
		conn map[string]any
		fail func(*fakegraph.Server)
	}{
		{"login", nil, func(f *fakegraph.Server) { f.FailTokens("invalid_grant") }},
		{"listing", map[string]any{"folder": "No Such Folder"}, func(*fakegraph.Server) {}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fake := newFakeGraph(t)
			fake.Deliver("Inbox", connectortest.NewMessage("m1", "One"))
			tc.fail(fake)
			cfg := graphConfig(t, fake.Server, tc.conn, nil)
			var out, errb bytes.Buffer
			err := run([]string{"-config", cfg}, strings.NewReader(""), &out, &errb)
			if err == nil || !strings.Contains(err.Error(), "M365") {
				t.Fatalf("exit error %v\n%s", err, out.String())
			}
			if strings.Contains(out.String(), "✓") || strings.Contains(out.String(), "seen 0") || !strings.Contains(out.String(), "✗ M365") {
				t.Fatalf("output:\n%s", out.String())
			}
		})
	}
}

// failPatches is a proxy in front of the fake that refuses every PATCH
// (mark as read) with 403.
func failPatches(t *testing.T, fake *fakegraph.Server) *httptest.Server {
	target, _ := url.Parse(fake.URL)
	rp := httputil.NewSingleHostReverseProxy(target)
	rp.Transport = fake.Client().Transport
	proxy := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPatch {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusForbidden)
			fmt.Fprint(w, `{"error":{"code":"ErrorAccessDenied","message":"Access is denied."}}`)
			return
		}
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(proxy.Close)
	return proxy
}

// Every post-action failed: the tool says so and exits non-zero.
func TestFailedPostActionsExitNonZero(t *testing.T) {
	fake := newFakeGraph(t)
	for i := 0; i < 2; i++ {
		fake.Deliver("Inbox", connectortest.NewMessage(fmt.Sprintf("pa-%d", i), fmt.Sprintf("Post-action %d", i)))
	}
	proxy := failPatches(t, fake)
	cfg := graphConfig(t, proxy, map[string]any{"post_action": map[string]any{"kind": "mark_read"}}, nil)
	var out, errb bytes.Buffer
	err := run([]string{"-config", cfg}, strings.NewReader(""), &out, &errb)
	if err == nil || !strings.Contains(err.Error(), "M365 (2)") || !strings.Contains(err.Error(), "messages failed") {
		t.Fatalf("exit error %v\n%s", err, out.String())
	}
	if strings.Contains(out.String(), "✓") || !strings.Contains(out.String(), "✗ M365: 2 message(s) failed") {
		t.Fatalf("output:\n%s", out.String())
	}
}

// Replies become follow-ups in the file, and the summary counts them.
func TestFollowUpsInSummary(t *testing.T) {
	fake := newFakeGraph(t)
	first := "From: João <joao@cliente.pt>\r\nTo: " + graphUser + "\r\nSubject: Impressora\r\nMessage-ID: <first@cliente.pt>\r\nDate: Mon, 23 Nov 2026 10:00:00 +0000\r\n\r\nnão imprime\r\n"
	reply := "From: João <joao@cliente.pt>\r\nTo: " + graphUser + "\r\nSubject: RE: Impressora\r\nMessage-ID: <r1@cliente.pt>\r\nIn-Reply-To: <first@cliente.pt>\r\nDate: Mon, 23 Nov 2026 11:00:00 +0000\r\n\r\nainda não\r\n"
	fake.Deliver("Inbox", []byte(first))
	cfg := graphConfig(t, fake.Server, nil, nil)
	var out bytes.Buffer
	if err := run([]string{"-config", cfg}, strings.NewReader(""), &out, &out); err != nil || !strings.Contains(out.String(), "created 1, follow-ups 0") {
		t.Fatalf("first run: %v\n%s", err, out.String())
	}
	fake.Deliver("Inbox", []byte(reply))
	out.Reset()
	if err := run([]string{"-config", cfg}, strings.NewReader(""), &out, &out); err != nil || !strings.Contains(out.String(), "created 0, follow-ups 1") ||
		!strings.Contains(out.String(), "holds 1 tickets and 1 follow-ups") {
		t.Fatalf("second run: %v\n%s", err, out.String())
	}
	cfgDoc, _ := loadConfig(cfg)
	raw, _ := os.ReadFile(cfgDoc.TicketsFile)
	recs, err := jsonlsink.ReadRecords(bytes.NewReader(raw))
	if err != nil || len(recs) != 2 || recs[1].Kind != jsonlsink.KindFollowUp || recs[1].TicketID != recs[0].TicketID ||
		recs[0].Classification == nil || recs[0].Classification.Kind != mailsync.KindNormal {
		t.Fatalf("records %+v %v", recs, err)
	}
}
