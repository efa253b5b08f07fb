package graph_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/mailsync/mailsync/graph"
	"github.com/mailsync/mailsync/internal/fakegraph"
)

// otherTenant is a directory (tenant) id that is not the fake's.
const otherTenant = "0f3c2a9e-51d7-4c4e-9a43-7b1e0d6c2f10"

// notificationBody is a changeNotificationCollection of n change
// notifications of subscription s with the given clientState and tenantId
// ("" leaves tenantId out).
func notificationBody(subID, state, tenant string, n int) []byte {
	var items []any
	for i := 0; i < n; i++ {
		res := "Users/8ee44408-0679-472c-bc2a-692812af3437/Messages/m" + string(rune('a'+i))
		x := map[string]any{"subscriptionId": subID, "clientState": state, "changeType": "created", "resource": res,
			"subscriptionExpirationDateTime": time.Now().Add(time.Hour), "resourceData": map[string]any{"id": "m" + string(rune('a'+i))}}
		if tenant != "" {
			x["tenantId"] = tenant
		}
		items = append(items, x)
	}
	b, _ := json.Marshal(map[string]any{"value": items})
	return b
}

// setTenant gives the connection's OAuth block the TenantID tenant (a
// copy: the connectors made earlier keep theirs).
func (p *pushEnv) setTenant(tenant string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	oa := *p.conn.OAuth
	oa.TenantID = tenant
	p.conn.OAuth = &oa
}

// A Subscriber that holds the connection knows its tenant (its OAuth
// block's TenantID, when that is a directory id, a GUID): a notification
// whose tenantId names another tenant is discarded, logged once per
// request (and counted), and answered 202; one without a tenantId, or with
// the same id in other case, counts. Lifecycle notifications carry the
// tenantId too.
func TestNotificationFromAnotherTenantIsDiscarded(t *testing.T) {
	p := newPushEnv(t, nil)
	p.setTenant(otherTenant) // the fake's notifications say fakegraph.TenantID
	s := p.subscribe(t)

	p.fake.SendRaw(s.NotificationURL, notificationBody(s.ID, s.ClientState, fakegraph.TenantID, 3))
	p.fake.WaitDeliveries()
	logs := p.logs.String()
	if n := strings.Count(logs, "another tenant"); n != 2 || !strings.Contains(logs, "count=2") {
		t.Fatalf("want the first discard logged and the other two counted in one line:\n%s", logs)
	}
	p.fake.SendLifecycle(s.ID, "missed")
	p.deliver(1, "wrong-tenant") // the fake's own notification, tenantId fakegraph.TenantID
	p.fake.WaitDeliveries()
	time.Sleep(500 * time.Millisecond)
	if n := p.got.count(); n != 0 {
		t.Fatalf("%d OnChange calls for notifications of another tenant", n)
	}
	for _, d := range p.fake.Deliveries() {
		if d.Status != http.StatusAccepted {
			t.Fatalf("answered %d, want 202", d.Status)
		}
	}
	assertNoSecret(t, "logs", p.logs.String(), s.ClientState)

	// The connection's own tenant, in any case, and no tenantId at all, count.
	p.fake.SendRaw(s.NotificationURL, notificationBody(s.ID, s.ClientState, strings.ToUpper(otherTenant), 1))
	if c := p.got.wait(t, 5*time.Second); c.conn != p.conn.Name {
		t.Fatalf("OnChange%+v", c)
	}
	time.Sleep(400 * time.Millisecond)
	p.fake.SendRaw(s.NotificationURL, notificationBody(s.ID, s.ClientState, "", 1))
	p.got.wait(t, 5*time.Second)

	// With the fake's tenant configured, the fake's notifications count.
	p.setTenant(strings.ToUpper(fakegraph.TenantID))
	p.subscribe(t)
	time.Sleep(400 * time.Millisecond)
	p.deliver(1, "right-tenant")
	p.got.wait(t, 5*time.Second)
}

// A tenant that is not a directory id (a domain name, "common",
// "organizations") cannot be compared with the notifications' tenantId
// (always a GUID): nothing is discarded for it.
func TestTenantThatIsNotAnIDIsNotChecked(t *testing.T) {
	for _, tenant := range []string{"contoso.onmicrosoft.com", "common", "organizations"} {
		p := newPushEnv(t, nil)
		p.setTenant(tenant)
		p.subscribe(t)
		p.deliver(1, "x")
		if c := p.got.wait(t, 5*time.Second); c.conn != p.conn.Name {
			t.Fatalf("%s: OnChange%+v", tenant, c)
		}
	}
}

// A receive-only Handler knows no connection's tenant unless told
// (ConnectionTenant): then it discards a notification of another tenant,
// logged once per request; a connection whose tenant is unknown ("") is
// not checked.
func TestReceiveOnlyHandlerChecksTheTenantWhenTold(t *testing.T) {
	logs := &syncBuffer{}
	got := newChanges()
	h, err := graph.NewHandler(graph.HandlerOptions{ClientStateKey: testClientStateKey, OnChange: got.on, Coalesce: 50 * time.Millisecond,
		Logger: slogTo(logs), ConnectionTenant: func(conn string) string {
			if conn == "graph-support" {
				return otherTenant
			}
			return ""
		}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	post := func(conn, tenant string, n int) {
		t.Helper()
		u := srv.URL + "/graph?" + graph.ConnectionParam + "=" + url.QueryEscape(conn)
		postTo(t, u, notificationBody("7f105c7d-2dc5-4530-97cd-000155aa", graph.DeriveClientState(testClientStateKey, conn), tenant, n))
	}
	post("graph-support", fakegraph.TenantID, 4)
	time.Sleep(300 * time.Millisecond)
	if n := got.count(); n != 0 {
		t.Fatalf("%d OnChange calls for notifications of another tenant", n)
	}
	if text := logs.String(); strings.Count(text, "\n") != 2 || !strings.Contains(text, "another tenant") || !strings.Contains(text, "count=3") {
		t.Fatalf("want one line for the first discard and one counting the others:\n%s", text)
	}
	post("graph-support", otherTenant, 1)
	if c := got.wait(t, 5*time.Second); c.conn != "graph-support" {
		t.Fatalf("OnChange%+v", c)
	}
	post("graph-sales", fakegraph.TenantID, 1) // tenant unknown: not checked
	if c := got.wait(t, 5*time.Second); c.conn != "graph-sales" {
		t.Fatalf("OnChange%+v", c)
	}
}
