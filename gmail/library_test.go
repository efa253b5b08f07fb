package gmail_test

import (
	"context"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/mailsync/mailsync"
	"github.com/mailsync/mailsync/gmail"
	"github.com/mailsync/mailsync/internal/fakegmail"
)

// Every JSON call goes through google.golang.org/api/gmail/v1 (its
// x-goog-api-client header names the generated client, "gdcl/", and it
// asks alt=json&prettyPrint=false); only the batch endpoint and the
// streamed messages.get format=raw are the provider's own requests.
func TestCallsGoThroughGeneratedClient(t *testing.T) {
	e := newEnv(t, fakegmail.Options{StrictBatchModify: true})
	ids := e.deliver("m", 5)
	var mu sync.Mutex
	seen := map[string]bool{}
	routes := []struct {
		op, method string
		path       *regexp.Regexp
	}{
		{"users.getProfile", "GET", regexp.MustCompile(`^/gmail/v1/users/me/profile$`)},
		{"messages.list", "GET", regexp.MustCompile(`^/gmail/v1/users/me/messages$`)},
		{"history.list", "GET", regexp.MustCompile(`^/gmail/v1/users/me/history$`)},
		{"labels.list", "GET", regexp.MustCompile(`^/gmail/v1/users/me/labels$`)},
		{"labels.create", "POST", regexp.MustCompile(`^/gmail/v1/users/me/labels$`)},
		{"labels.get", "GET", regexp.MustCompile(`^/gmail/v1/users/me/labels/[^/]+$`)},
		{"messages.batchModify", "POST", regexp.MustCompile(`^/gmail/v1/users/me/messages/batchModify$`)},
		{"messages.batchDelete", "POST", regexp.MustCompile(`^/gmail/v1/users/me/messages/batchDelete$`)},
		{"messages.modify", "POST", regexp.MustCompile(`^/gmail/v1/users/me/messages/[0-9a-f]+/modify$`)},
		{"messages.trash", "POST", regexp.MustCompile(`^/gmail/v1/users/me/messages/[0-9a-f]+/trash$`)},
		{"messages.get raw", "GET", regexp.MustCompile(`^/gmail/v1/users/me/messages/[0-9a-f]+$`)},
		{"batch", "POST", regexp.MustCompile(`^/batch/gmail/v1$`)},
	}
	hook := &hookTransport{base: e.fake.Client().Transport}
	hook.before = func(r *http.Request) {
		op := ""
		for _, rt := range routes {
			if r.Method == rt.method && rt.path.MatchString(r.URL.Path) {
				op = rt.op
				break
			}
		}
		q := r.URL.Query()
		library := strings.Contains(r.Header.Get("X-Goog-Api-Client"), "gdcl/")
		own := op == "batch" || op == "messages.get raw"
		switch {
		case op == "":
			t.Errorf("unexpected request %s %s", r.Method, r.URL)
		case own && library:
			t.Errorf("%s went through the generated client", op)
		case !own && (!library || q.Get("alt") != "json" || q.Get("prettyPrint") != "false"):
			t.Errorf("%s: not sent by gmail/v1: %s %q", op, r.URL, r.Header.Get("X-Goog-Api-Client"))
		case op == "messages.get raw" && (q.Get("format") != "raw" || q.Get("prettyPrint") != "false"):
			t.Errorf("raw get: %s", r.URL)
		}
		if !strings.HasPrefix(r.Header.Get("Authorization"), "Bearer ") {
			t.Errorf("%s without the access token", op)
		}
		mu.Lock()
		seen[op] = true
		mu.Unlock()
	}
	opts := func(o *gmail.Options) { o.HTTPClient = &http.Client{Transport: hook}; o.PageSize = 2 }
	c := e.connector(opts)
	ctx := context.Background()
	l, err := c.List(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	more := e.deliver("n", 1)
	if l2, err := c.List(ctx, l.Cursor); err != nil || !slices.Equal(keys(l2), more) {
		t.Fatalf("history: %v", err)
	}
	fetchAll(t, c, refsOf(ids[:1]))
	fetchAll(t, c, refsOf(ids))
	e.fake.DeleteMessage(ids[4]) // batchModify answers 404: the messages.modify fallback
	for _, a := range []mailsync.PostAction{{Kind: mailsync.MarkRead}, {Kind: mailsync.MoveToFolder, Folder: "Done"}, {Kind: mailsync.Delete}} {
		if err := c.Ack(ctx, refsOf(ids), a); err != nil {
			t.Fatalf("%s: %v", a.Kind, err)
		}
	}
	if err := e.connector(opts, func(o *gmail.Options) { o.PermanentDelete = true }).Ack(ctx, refsOf(ids[:1]), mailsync.PostAction{Kind: mailsync.Delete}); err != nil {
		t.Fatal(err)
	}
	o := e.opts
	opts(&o)
	if _, err := gmail.Check(ctx, e.conn, o); err != nil {
		t.Fatal(err)
	}
	for _, rt := range routes {
		if !seen[rt.op] {
			t.Errorf("%s never called", rt.op)
		}
	}
}
