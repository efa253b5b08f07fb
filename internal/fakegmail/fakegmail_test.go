package fakegmail

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"strings"
	"testing"
)

type client struct {
	t   *testing.T
	s   *Server
	tok string
}

func (c *client) do(method, path string, body any) (int, http.Header, map[string]any) {
	c.t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, c.s.URL+path, rd)
	if c.tok != "" {
		req.Header.Set("Authorization", "Bearer "+c.tok)
	}
	resp, err := c.s.Client().Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	b, _ := io.ReadAll(resp.Body)
	if len(b) > 0 {
		if err := json.Unmarshal(b, &out); err != nil {
			c.t.Fatalf("%s %s: body %q: %v", method, path, b, err)
		}
	}
	return resp.StatusCode, resp.Header, out
}

func ids(v any) []string {
	var out []string
	list, _ := v.([]any)
	for _, m := range list {
		out = append(out, m.(map[string]any)["id"].(string))
	}
	return out
}

func TestAuth(t *testing.T) {
	s := New(Options{})
	defer s.Close()
	for _, tok := range []string{"", "wrong"} {
		code, h, body := (&client{t, s, tok}).do("GET", "gmail/v1/users/me/profile", nil)
		e, _ := body["error"].(map[string]any)
		if code != 401 || !strings.HasPrefix(h.Get("WWW-Authenticate"), "Bearer") || e["status"] != "UNAUTHENTICATED" || e["code"].(float64) != 401 {
			t.Fatalf("token %q: %d %v %v", tok, code, h, body)
		}
	}
	code, _, body := (&client{t, s, s.Token()}).do("GET", "gmail/v1/users/me/profile", nil)
	if code != 200 || body["emailAddress"] != s.Email() || body["historyId"] == "" {
		t.Fatalf("%d %v", code, body)
	}
	code, _, _ = (&client{t, s, s.Token()}).do("GET", "gmail/v1/users/other@example.com/profile", nil)
	if code != 403 {
		t.Fatalf("another user: %d", code)
	}
}

func TestListPagingAndLabels(t *testing.T) {
	s := New(Options{})
	defer s.Close()
	c := &client{t, s, s.Token()}
	var inbox []string
	for i := 0; i < 7; i++ {
		inbox = append(inbox, s.Deliver([]byte(fmt.Sprintf("Subject: %d\r\n\r\n", i))))
	}
	starred := s.Deliver([]byte("Subject: s\r\n\r\n"), "INBOX", "STARRED")
	spam := s.Deliver([]byte("Subject: spam\r\n\r\n"), "INBOX", "SPAM")
	var got []string
	token := ""
	pages := 0
	for {
		q := "?labelIds=INBOX&maxResults=3"
		if token != "" {
			q += "&pageToken=" + token
		}
		code, _, body := c.do("GET", "gmail/v1/users/me/messages"+q, nil)
		if code != 200 {
			t.Fatal(code, body)
		}
		pages++
		got = append(got, ids(body["messages"])...)
		next, _ := body["nextPageToken"].(string)
		if next == "" {
			break
		}
		token = next
	}
	// Newest first, SPAM left out, 8 messages in pages of 3.
	want := append([]string{starred}, reverse(inbox)...)
	if strings.Join(got, ",") != strings.Join(want, ",") || pages != 3 {
		t.Fatalf("got %v in %d pages, want %v", got, pages, want)
	}
	// labelIds: all of them must match.
	_, _, body := c.do("GET", "gmail/v1/users/me/messages?labelIds=INBOX&labelIds=STARRED", nil)
	if g := ids(body["messages"]); len(g) != 1 || g[0] != starred {
		t.Fatalf("INBOX and STARRED: %v", g)
	}
	_, _, body = c.do("GET", "gmail/v1/users/me/messages?labelIds=SPAM&includeSpamTrash=true", nil)
	if g := ids(body["messages"]); len(g) != 1 || g[0] != spam {
		t.Fatalf("spam: %v", g)
	}
	code, _, _ := c.do("GET", "gmail/v1/users/me/messages?labelIds=Label_999", nil)
	if code != 400 {
		t.Fatalf("unknown label: %d", code)
	}
	// Empty result: no messages member.
	_, _, body = c.do("GET", "gmail/v1/users/me/messages?labelIds=SENT", nil)
	if _, ok := body["messages"]; ok || body["resultSizeEstimate"].(float64) != 0 {
		t.Fatalf("empty: %v", body)
	}
}

func reverse(s []string) []string {
	out := make([]string, len(s))
	for i, v := range s {
		out[len(s)-1-i] = v
	}
	return out
}

func TestGetRaw(t *testing.T) {
	raw := []byte("Subject: x\r\n\r\nbody>\xff") // 20 bytes: padded
	for enc, check := range map[RawEncoding]func(string) bool{
		Padded:         func(s string) bool { return strings.HasSuffix(s, "=") },
		Unpadded:       func(s string) bool { return !strings.Contains(s, "=") },
		EscapedPadding: func(s string) bool { return strings.HasSuffix(s, "=") }, // after JSON decoding
	} {
		s := New(Options{RawEncoding: enc})
		id := s.Deliver(raw)
		_, _, body := (&client{t, s, s.Token()}).do("GET", "gmail/v1/users/me/messages/"+id+"?format=raw", nil)
		r, _ := body["raw"].(string)
		dec, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(r, "="))
		if err != nil || !bytes.Equal(dec, raw) || !check(r) || body["id"] != id || body["sizeEstimate"].(float64) != float64(len(raw)) {
			t.Fatalf("encoding %d: %v %v", enc, body, err)
		}
		code, _, _ := (&client{t, s, s.Token()}).do("GET", "gmail/v1/users/me/messages/18c9a1b2c3d3ffff?format=raw", nil)
		if code != 404 {
			t.Fatalf("unknown id: %d", code)
		}
		s.Close()
	}
}

func TestHistory(t *testing.T) {
	s := New(Options{})
	defer s.Close()
	c := &client{t, s, s.Token()}
	start := s.HistoryID()
	a := s.Deliver([]byte("Subject: a\r\n\r\n"))
	s.ModifyLabels(a, nil, []string{"UNREAD"})
	b := s.Deliver([]byte("Subject: b\r\n\r\n"), "SENT")
	if h := s.HistoryID(); h <= start+2 {
		t.Fatalf("history ids should grow with gaps: %d → %d", start, h)
	}
	code, _, body := c.do("GET", fmt.Sprintf("gmail/v1/users/me/history?startHistoryId=%d&historyTypes=messageAdded&labelId=INBOX", start), nil)
	hist, _ := body["history"].([]any)
	if code != 200 || len(hist) != 1 || body["historyId"] != fmt.Sprint(s.HistoryID()) {
		t.Fatalf("%d %v", code, body)
	}
	added := hist[0].(map[string]any)["messagesAdded"].([]any)[0].(map[string]any)["message"].(map[string]any)
	if added["id"] != a {
		t.Fatalf("added %v", added)
	}
	// All types, no label: three records, ascending.
	_, _, body = c.do("GET", fmt.Sprintf("gmail/v1/users/me/history?startHistoryId=%d", start), nil)
	hist, _ = body["history"].([]any)
	if len(hist) != 3 || hist[2].(map[string]any)["messagesAdded"].([]any)[0].(map[string]any)["message"].(map[string]any)["id"] != b {
		t.Fatalf("all: %v", body)
	}
	// Nothing after the current id: no history member.
	_, _, body = c.do("GET", fmt.Sprintf("gmail/v1/users/me/history?startHistoryId=%d", s.HistoryID()), nil)
	if _, ok := body["history"]; ok {
		t.Fatalf("current: %v", body)
	}
	s.ExpireHistory()
	for _, id := range []uint64{start, s.HistoryID() + 100} {
		if code, _, _ := c.do("GET", fmt.Sprintf("gmail/v1/users/me/history?startHistoryId=%d", id), nil); code != 404 {
			t.Fatalf("start %d: %d", id, code)
		}
	}
	if code, _, _ := c.do("GET", "gmail/v1/users/me/history", nil); code != 400 {
		t.Fatalf("no start: %d", code)
	}
}

func TestLabelsAndModify(t *testing.T) {
	s := New(Options{})
	defer s.Close()
	c := &client{t, s, s.Token()}
	code, _, body := c.do("POST", "gmail/v1/users/me/labels", map[string]string{"name": "Processed"})
	id, _ := body["id"].(string)
	if code != 200 || !strings.HasPrefix(id, "Label_") || body["type"] != "user" {
		t.Fatalf("%d %v", code, body)
	}
	if code, _, _ := c.do("POST", "gmail/v1/users/me/labels", map[string]string{"name": "processed"}); code != 409 {
		t.Fatalf("duplicate: %d", code)
	}
	if code, _, _ := c.do("POST", "gmail/v1/users/me/labels", map[string]string{"name": "Inbox"}); code != 400 {
		t.Fatalf("reserved: %d", code)
	}
	m := s.Deliver([]byte("Subject: m\r\n\r\n"))
	code, _, _ = c.do("POST", "gmail/v1/users/me/messages/batchModify", map[string]any{"ids": []string{m, "18c9a1b2c3d3ffff"}, "addLabelIds": []string{id}, "removeLabelIds": []string{"INBOX"}})
	if got, _ := s.Message(m); code != 204 || strings.Join(got.LabelIDs, ",") != id+",UNREAD" {
		t.Fatalf("%d %v", code, got.LabelIDs)
	}
	if code, _, _ := c.do("POST", "gmail/v1/users/me/messages/batchModify", map[string]any{"ids": []string{m}, "addLabelIds": []string{"Label_1"}}); code != 400 {
		t.Fatalf("unknown label: %d", code)
	}
	many := make([]string, 1001)
	if code, _, _ := c.do("POST", "gmail/v1/users/me/messages/batchModify", map[string]any{"ids": many}); code != 400 {
		t.Fatalf("1001 ids: %d", code)
	}
	if code, _, body := c.do("POST", "gmail/v1/users/me/messages/"+m+"/trash", nil); code != 200 || !strings.Contains(fmt.Sprint(body["labelIds"]), "TRASH") {
		t.Fatalf("trash: %d %v", code, body)
	}
	if code, _, _ := c.do("POST", "gmail/v1/users/me/messages/batchDelete", map[string]any{"ids": []string{m, "18c9a1b2c3d3ffff"}}); code != 204 {
		t.Fatalf("batchDelete: %d", code)
	}
	if _, ok := s.Message(m); ok {
		t.Fatal("still there")
	}
}

func TestBatch(t *testing.T) {
	s := New(Options{MaxBatch: 3})
	defer s.Close()
	a := s.Deliver([]byte("Subject: a\r\n\r\n"))
	send := func(n int, lines ...string) (*http.Response, error) {
		var buf bytes.Buffer
		mw := multipart.NewWriter(&buf)
		for i := 0; i < n; i++ {
			w, _ := mw.CreatePart(map[string][]string{"Content-Type": {"application/http"}, "Content-ID": {fmt.Sprintf("<item%d>", i)}})
			io.WriteString(w, lines[i%len(lines)])
		}
		mw.Close()
		req, _ := http.NewRequest("POST", s.URL+"batch/gmail/v1", &buf)
		req.Header.Set("Content-Type", "multipart/mixed; boundary="+mw.Boundary())
		req.Header.Set("Authorization", "Bearer "+s.Token())
		return s.Client().Do(req)
	}
	resp, err := send(3, "GET /gmail/v1/users/me/messages/"+a+"?format=raw HTTP/1.1\r\n\r\n", "GET /gmail/v1/users/me/messages/18c9a1b2c3d3ffff?format=raw\r\n\r\n")
	if err != nil {
		t.Fatal(err)
	}
	_, params, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	mr := multipart.NewReader(resp.Body, params["boundary"])
	var got []string
	for {
		p, err := mr.NextPart()
		if err == io.EOF {
			break
		}
		b, _ := io.ReadAll(p)
		got = append(got, p.Header.Get("Content-ID")+" "+strings.SplitN(string(b), "\r\n", 2)[0])
	}
	want := []string{"<response-item0> HTTP/1.1 200 OK", "<response-item1> HTTP/1.1 404 Not Found", "<response-item2> HTTP/1.1 200 OK"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Fatalf("got %q", got)
	}
	if st := s.Stats(); st.Requests != 1 || st.Calls != 3 || st.BatchRequests != 1 {
		t.Fatalf("%+v", st)
	}
	resp, err = send(4, "GET /gmail/v1/users/me/profile\r\n\r\n")
	if err != nil || resp.StatusCode != 400 {
		t.Fatalf("over the limit: %v %v", resp.StatusCode, err)
	}
}

func TestFaults(t *testing.T) {
	s := New(Options{})
	defer s.Close()
	c := &client{t, s, s.Token()}
	s.InjectFault(Fault{Op: "users.getProfile", Status: 429, RetryAfter: "7", After: 1, Times: 2})
	codes := []int{}
	for i := 0; i < 4; i++ {
		code, h, body := c.do("GET", "gmail/v1/users/me/profile", nil)
		codes = append(codes, code)
		if code == 429 {
			e := body["error"].(map[string]any)
			reason := e["errors"].([]any)[0].(map[string]any)["reason"]
			if h.Get("Retry-After") != "7" || reason != "rateLimitExceeded" || e["status"] != "RESOURCE_EXHAUSTED" {
				t.Fatalf("%v %v", h, body)
			}
		}
	}
	if fmt.Sprint(codes) != "[200 429 429 200]" {
		t.Fatal(codes)
	}
}

// The query parameters: each method's own plus Google's system
// parameters (alt, prettyPrint, fields …); any other is refused as
// Google's front end refuses it. Answers are indented unless
// prettyPrint=false.
func TestQueryParameters(t *testing.T) {
	s := New(Options{})
	defer s.Close()
	s.Deliver([]byte("Subject: x\r\n\r\nhi\r\n"))
	get := func(path string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest("GET", s.URL+path, nil)
		req.Header.Set("Authorization", "Bearer "+s.Token())
		resp, err := s.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	code, body := get("gmail/v1/users/me/profile?alt=json&prettyPrint=false")
	if code != 200 || strings.Contains(body, "\n") || !strings.Contains(body, `"emailAddress":"support@example.com"`) {
		t.Errorf("compact: %d %s", code, body)
	}
	code, body = get("gmail/v1/users/me/profile")
	if code != 200 || !strings.Contains(body, "{\n  \"emailAddress\": ") {
		t.Errorf("pretty by default: %d %s", code, body)
	}
	code, body = get("gmail/v1/users/me/messages?labelIds=INBOX&maxResults=10&fields=messages%2Fid&quotaUser=x&prettyPrint=true")
	if code != 200 || !strings.Contains(body, `"messages"`) {
		t.Errorf("system parameters: %d %s", code, body)
	}
	for path, want := range map[string]string{
		"gmail/v1/users/me/profile?foo=1":                                    `Unknown name \"foo\": Cannot bind query parameter`,
		"gmail/v1/users/me/history?startHistoryId=4100&format=raw":           `Unknown name \"format\"`,
		"gmail/v1/users/me/messages?labelId=INBOX":                           `Unknown name \"labelId\"`,
		"gmail/v1/users/me/messages?alt=media":                               "alt=json only",
		"gmail/v1/users/me/labels?prettyPrint=maybe":                         "pretty_print",
		"gmail/v1/users/me/messages/18c9a1b2c3d401d7?format=raw&%24.xgafv=3": "xgafv",
	} {
		code, body := get(path)
		var e struct {
			Error struct {
				Code   int
				Status string
			}
		}
		if code != 400 || json.Unmarshal([]byte(body), &e) != nil || e.Error.Code != 400 || e.Error.Status != "INVALID_ARGUMENT" || !strings.Contains(body, want) {
			t.Errorf("%s: %d %s, want 400 with %q", path, code, body, want)
		}
	}
}

// Label changes appear as the documented History records: labelsAdded
// and labelsRemoved entries of {message, labelIds}, selected by
// historyTypes labelAdded / labelRemoved and by labelId (a record
// concerns a label the message had before or after the change).
func TestHistoryLabelChangeRecords(t *testing.T) {
	s := New(Options{})
	defer s.Close()
	c := &client{t, s, s.Token()}
	m := s.Deliver([]byte("Subject: spam\r\n\r\n"), "SPAM", "UNREAD")
	start := s.HistoryID()
	s.ModifyLabels(m, []string{"INBOX"}, []string{"SPAM"}) // Spam → Inbox
	get := func(q string) []any {
		code, _, body := c.do("GET", fmt.Sprintf("gmail/v1/users/me/history?startHistoryId=%d&%s", start, q), nil)
		if code != 200 {
			t.Fatalf("%s: %d %v", q, code, body)
		}
		h, _ := body["history"].([]any)
		return h
	}
	h := get("historyTypes=labelAdded&labelId=INBOX")
	if len(h) != 1 {
		t.Fatalf("labelAdded INBOX: %v", h)
	}
	rec := h[0].(map[string]any)
	la := rec["labelsAdded"].([]any)[0].(map[string]any)
	if la["message"].(map[string]any)["id"] != m || fmt.Sprint(la["labelIds"]) != "[INBOX]" || rec["messages"].([]any)[0].(map[string]any)["id"] != m {
		t.Fatalf("labelsAdded record %v", rec)
	}
	if _, ok := rec["labelsRemoved"]; ok {
		t.Fatalf("labelAdded asked, labelsRemoved given: %v", rec)
	}
	if h := get("historyTypes=messageAdded&labelId=INBOX"); len(h) != 0 {
		t.Fatalf("a label change is no messageAdded: %v", h)
	}
	h = get("historyTypes=labelRemoved&labelId=SPAM")
	if len(h) != 1 {
		t.Fatalf("labelRemoved SPAM: %v", h)
	}
	lr := h[0].(map[string]any)["labelsRemoved"].([]any)[0].(map[string]any)
	if lr["message"].(map[string]any)["id"] != m || fmt.Sprint(lr["labelIds"]) != "[SPAM]" {
		t.Fatalf("labelsRemoved record %v", lr)
	}
	// A user label added to an archived message.
	l := s.CreateLabel("Support")
	a := s.Deliver([]byte("Subject: archived\r\n\r\n"), "UNREAD")
	start = s.HistoryID()
	s.ModifyLabels(a, []string{l}, nil)
	h = get("historyTypes=labelAdded&labelId=" + l)
	if len(h) != 1 || fmt.Sprint(h[0].(map[string]any)["labelsAdded"].([]any)[0].(map[string]any)["labelIds"]) != "["+l+"]" {
		t.Fatalf("user label added: %v", h)
	}
}
