package fakegraph

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestSubscriptionsFollowTheDocumentedShapes(t *testing.T) {
	s := New("a@contoso.com")
	defer s.Close()
	s.IssueToken("t")
	var mu sync.Mutex
	var got []map[string]any
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if tok := r.URL.Query().Get("validationToken"); tok != "" {
			w.Header().Set("Content-Type", "text/plain")
			io.WriteString(w, tok)
			return
		}
		var body map[string]any
		json.NewDecoder(r.Body).Decode(&body)
		mu.Lock()
		got = append(got, body)
		mu.Unlock()
		w.WriteHeader(202)
	}))
	defer hook.Close()
	mute := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(200) }))
	defer mute.Close()

	sub := func(notify string, exp time.Time) (int, map[string]any) {
		b, _ := json.Marshal(map[string]any{"changeType": "created", "notificationUrl": notify, "lifecycleNotificationUrl": notify,
			"resource": "users/a@contoso.com/mailFolders('inbox')/messages", "expirationDateTime": exp.Format(time.RFC3339), "clientState": "cs"})
		return do(t, s, "POST", s.BaseURL()+"/subscriptions", "t", b, map[string]string{"Content-Type": "application/json"})
	}
	if code, body := sub(mute.URL, time.Now().Add(time.Hour)); code != 400 || body["error"].(map[string]any)["code"] != "ValidationError" {
		t.Fatalf("no echo: %d %v", code, body)
	}
	if code, _ := sub(hook.URL, time.Now().Add(MaxMessageSubscriptionLifetime+time.Hour)); code != 400 {
		t.Fatalf("beyond the maximum lifetime: %d", code)
	}
	code, created := sub(hook.URL, time.Now().Add(time.Hour))
	id, _ := created["id"].(string)
	if code != 201 || id == "" || created["clientState"] != "cs" || created["changeType"] != "created" {
		t.Fatalf("create: %d %v", code, created)
	}
	s.Deliver("archive", []byte("Subject: not watched\r\n\r\nx\r\n"))
	mid, _ := s.Deliver("inbox", []byte("Subject: x\r\n\r\nx\r\n"))
	s.WaitDeliveries()
	mu.Lock()
	if len(got) != 1 {
		t.Fatalf("%d notifications, want 1", len(got))
	}
	n := got[0]["value"].([]any)[0].(map[string]any)
	mu.Unlock()
	if n["subscriptionId"] != id || n["clientState"] != "cs" || n["changeType"] != "created" || n["tenantId"] != TenantID ||
		n["resourceData"].(map[string]any)["id"] != mid || n["subscriptionExpirationDateTime"] == nil {
		t.Fatalf("notification %v", n)
	}
	newExp := time.Now().Add(2 * time.Hour).UTC().Format(time.RFC3339)
	if code, body := do(t, s, "PATCH", s.BaseURL()+"/subscriptions/"+id, "t", []byte(`{"expirationDateTime":"`+newExp+`"}`), nil); code != 200 || body["expirationDateTime"] == nil {
		t.Fatalf("renew: %d %v", code, body)
	}
	if !s.SendLifecycle(id, "missed") {
		t.Fatal("no subscription")
	}
	s.WaitDeliveries()
	mu.Lock()
	if l := got[len(got)-1]["value"].([]any)[0].(map[string]any); l["lifecycleEvent"] != "missed" || l["subscriptionId"] != id {
		t.Fatalf("lifecycle %v", l)
	}
	mu.Unlock()
	if code, _ := do(t, s, "DELETE", s.BaseURL()+"/subscriptions/"+id, "t", nil, nil); code != 204 {
		t.Fatalf("delete: %d", code)
	}
	if code, _ := do(t, s, "PATCH", s.BaseURL()+"/subscriptions/"+id, "t", []byte(`{"expirationDateTime":"`+newExp+`"}`), nil); code != 404 {
		t.Fatalf("renew after delete: %d", code)
	}
}

// The notification URL's path and query reach the endpoint byte for byte:
// in the validation handshake (the token appended to the query as given)
// and in every notification, lifecycle ones included, as Graph documents
// ("any query string parameter included in the notificationUrl property
// is included in the HTTP POST request").
func TestNotificationURLPathAndQueryArePreserved(t *testing.T) {
	s := New("a@contoso.com")
	defer s.Close()
	s.IssueToken("t")
	type seen struct{ path, rawPath, rawQuery, token string }
	var mu sync.Mutex
	var got []seen
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tok := r.URL.Query().Get("validationToken")
		mu.Lock()
		got = append(got, seen{r.URL.Path, r.URL.EscapedPath(), r.URL.RawQuery, tok})
		mu.Unlock()
		if tok != "" {
			w.Header().Set("Content-Type", "text/plain")
			io.WriteString(w, tok)
			return
		}
		w.WriteHeader(202)
	}))
	defer hook.Close()
	const path, query = "/hooks/t%C3%A9nant%2Fa/graph", "z=1&mailsync_connection=support%2Finbox+%C3%A9&a=%7E"
	notify := hook.URL + path + "?" + query
	b, _ := json.Marshal(map[string]any{"changeType": "created", "notificationUrl": notify, "lifecycleNotificationUrl": notify,
		"resource": "users/a@contoso.com/mailFolders('inbox')/messages", "expirationDateTime": time.Now().Add(time.Hour).Format(time.RFC3339), "clientState": "cs"})
	code, created := do(t, s, "POST", s.BaseURL()+"/subscriptions", "t", b, map[string]string{"Content-Type": "application/json"})
	if code != 201 || created["notificationUrl"] != notify {
		t.Fatalf("create: %d %v", code, created)
	}
	s.Deliver("inbox", []byte("Subject: x\r\n\r\nx\r\n"))
	s.SendLifecycle(created["id"].(string), "missed")
	s.WaitDeliveries()
	mu.Lock()
	defer mu.Unlock()
	if len(got) != 4 { // two handshakes, one change, one lifecycle notification
		t.Fatalf("%d requests, want 4: %+v", len(got), got)
	}
	for i, g := range got {
		if g.rawPath != path {
			t.Errorf("request %d: path %q, want %q", i, g.rawPath, path)
		}
		want := query
		if i < 2 {
			if g.token == "" || !strings.HasPrefix(g.rawQuery, query+"&validationToken=") {
				t.Errorf("handshake %d: query %q, want %q followed by &validationToken=…", i, g.rawQuery, query)
			}
			continue
		}
		if g.rawQuery != want || g.token != "" {
			t.Errorf("notification %d: query %q, want %q", i, g.rawQuery, want)
		}
	}
}
