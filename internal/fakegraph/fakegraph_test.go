package fakegraph

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
)

func do(t *testing.T, s *Server, method, url, token string, body []byte, header map[string]string) (int, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest(method, url, bytes.NewReader(body))
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := s.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var out map[string]any
	json.Unmarshal(b, &out)
	return resp.StatusCode, out
}

func TestFakeFollowsTheDocumentedShapes(t *testing.T) {
	s := New("a@contoso.com")
	defer s.Close()
	s.IssueToken("t")
	for i := 0; i < 3; i++ {
		s.Deliver("inbox", []byte("Message-ID: <m@x>\r\nSubject: x\r\n\r\nbody\r\n"))
	}
	delta := s.BaseURL() + "/users/a@contoso.com/mailFolders/inbox/messages/delta()"
	if code, body := do(t, s, "GET", delta, "", nil, nil); code != 401 || body["error"].(map[string]any)["code"] != "InvalidAuthenticationToken" {
		t.Fatalf("no token: %d %v", code, body)
	}
	// Pages of 2 through nextLink, then a deltaLink; mutable ids without the Prefer header.
	code, page := do(t, s, "GET", delta, "t", nil, map[string]string{"Prefer": "odata.maxpagesize=2"})
	next, _ := page["@odata.nextLink"].(string)
	if code != 200 || len(page["value"].([]any)) != 2 || !strings.Contains(next, "delta()?%24skiptoken=") {
		t.Fatalf("first page %d %v", code, page)
	}
	mutable := page["value"].([]any)[0].(map[string]any)["id"].(string)
	code, page = do(t, s, "GET", next, "t", nil, map[string]string{"Prefer": "odata.maxpagesize=2"})
	deltaLink, _ := page["@odata.deltaLink"].(string)
	if code != 200 || len(page["value"].([]any)) != 1 || deltaLink == "" {
		t.Fatalf("last page %d %v", code, page)
	}
	// A gzip-compressed move (as the SDK sends it) changes the mutable id and
	// shows up as @removed in the inbox's next round.
	var zb bytes.Buffer
	zw := gzip.NewWriter(&zb)
	zw.Write([]byte(`{"DestinationId":"archive"}`))
	zw.Close()
	code, moved := do(t, s, "POST", s.BaseURL()+"/users/a@contoso.com/messages/"+mutable+"/move", "t", zb.Bytes(),
		map[string]string{"Content-Encoding": "gzip", "Content-Type": "application/json"})
	if code != 201 || moved["id"] == mutable || moved["parentFolderId"] != s.FolderByName("archive").ID {
		t.Fatalf("move: %d %v", code, moved)
	}
	code, page = do(t, s, "GET", deltaLink, "t", nil, map[string]string{"Prefer": `IdType="ImmutableId"`})
	vals := page["value"].([]any)
	if code != 200 || len(vals) != 1 || vals[0].(map[string]any)["@removed"] == nil {
		t.Fatalf("delta after move: %d %v", code, page)
	}
	s.ExpireDeltaTokens()
	if code, body := do(t, s, "GET", deltaLink, "t", nil, nil); code != 410 || body["error"].(map[string]any)["code"] != "SyncStateNotFound" {
		t.Fatalf("stale delta link: %d %v", code, body)
	}
	s.Throttle(429, 1, "7")
	req, _ := http.NewRequest("GET", delta, nil)
	req.Header.Set("Authorization", "Bearer t")
	resp, err := s.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 429 || resp.Header.Get("Retry-After") != "7" {
		t.Fatalf("throttle: %d %q", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
}
