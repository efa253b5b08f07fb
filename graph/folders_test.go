package graph_test

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/mailsync/mailsync"
	"github.com/mailsync/mailsync/connectortest"
	"github.com/mailsync/mailsync/graph"
)

// deliverTo puts n messages with ids "<prefix>-<i>" into folder.
func (e *env) deliverTo(folder string, n int, prefix string) {
	e.t.Helper()
	for i := 0; i < n; i++ {
		if _, err := e.fake.Deliver(folder, connectortest.NewMessage(fmt.Sprintf("%s-%d", prefix, i), "Pedido")); err != nil {
			e.t.Fatal(err)
		}
	}
}

// queues returns, by Message-ID, each ticket's "queue" field.
func queues(sink *mailsync.MemorySink) map[string]string {
	out := map[string]string{}
	for _, tk := range sink.Tickets() {
		out[tk.Fields["email_message_id"]] = tk.Fields["queue"]
	}
	return out
}

func folderRouting() mailsync.Routing {
	return mailsync.Routing{Rules: []mailsync.Rule{{
		ID:   "support-folder",
		When: []mailsync.Condition{{Field: "folder", Op: mailsync.OpIs, Value: "Support"}},
		Set:  map[string]string{"queue": "support-desk"},
	}}}
}

// Two folders on the fake Graph, each with its own delta link: new mail
// in one is all the next sync lists, a rule routes by folder, Junk Email
// is never read, nothing new is one request per folder.
func TestFoldersIndependentDeltaLinks(t *testing.T) {
	e := newEnv(t, false)
	ctx := context.Background()
	e.fake.AddFolder("Support")
	e.fake.AddWellKnownFolder("Junk Email", "junkemail")
	e.deliverTo("inbox", 2, "in")
	e.deliverTo("Support", 2, "sup")
	e.deliverTo("junkemail", 1, "spam")
	two := func(o *graph.Options) { o.Folders = []string{"inbox", "Support"} }

	sink := mailsync.NewMemorySink()
	state := mailsync.NewMemoryState()
	sync := func() *mailsync.Report {
		t.Helper()
		rep, err := mailsync.Sync(ctx, e.connector(two), mailsync.DefaultMapping("incident"), sink,
			mailsync.WithState(state), mailsync.WithRouting(folderRouting()))
		if err != nil {
			t.Fatal(err)
		}
		return rep
	}
	rep := sync()
	if rep.Created != 4 || rep.Failed != 0 {
		t.Fatalf("first sync: created %d, failed %d; want 4, 0 (notes %q)", rep.Created, rep.Failed, rep.Notes)
	}
	want := map[string]string{"in-0@connectortest.invalid": "", "in-1@connectortest.invalid": "", "sup-0@connectortest.invalid": "support-desk", "sup-1@connectortest.invalid": "support-desk"}
	if got := queues(sink); !maps.Equal(got, want) {
		t.Fatalf("queues by message %v; want %v", got, want)
	}
	cursor, _ := state.Cursor(ctx, e.conn.Name)
	if !strings.HasPrefix(string(cursor), `{"v":2,"delta":{"Support":"https://`) || !strings.Contains(string(cursor), `"inbox":"https://`) || strings.Contains(string(cursor), `\u0026`) {
		t.Fatalf("cursor %q; want JSON with a delta link per folder", cursor)
	}

	e.deliverTo("Support", 1, "sup-new")
	rep = sync()
	if rep.Created != 1 || rep.Seen != 1 || queues(sink)["sup-new-0@connectortest.invalid"] != "support-desk" {
		t.Fatalf("second sync: created %d, seen %d, queues %v; want just sup-new-0 in the support queue", rep.Created, rep.Seen, queues(sink))
	}
	e.deliverTo("inbox", 1, "in-new")
	rep = sync()
	if rep.Created != 1 || rep.Seen != 1 {
		t.Fatalf("third sync: created %d, seen %d; want 1, 1", rep.Created, rep.Seen)
	}

	cursor, _ = state.Cursor(ctx, e.conn.Name)
	c := e.connector(two)
	e.fake.ResetRequests()
	l, err := c.List(ctx, cursor)
	if err != nil || len(l.Messages) != 0 || len(l.Notes) != 0 {
		t.Fatalf("nothing new: %+v, %v", l, err)
	}
	if n := len(graphRequests(e.fake)); n != 2 {
		t.Fatalf("nothing new in two folders took %d requests; want one per folder", n)
	}
	if len(sink.Tickets()) != 6 {
		t.Fatalf("%d tickets; want 6 (Junk Email not read)", len(sink.Tickets()))
	}
}

// A deployment that read inbox with Options.Folder and moves to Folders
// keeps its delta link (the cursor keeps its form with one folder) and
// its keys; a folder added after it is listed whole, inbox is not.
func TestFoldersUpgradeKeepsDeltaLinkAndKeys(t *testing.T) {
	e := newEnv(t, false)
	ctx := context.Background()
	e.fake.AddFolder("Support")
	e.deliverTo("inbox", 3, "in")
	e.deliverTo("Support", 2, "sup")

	sink := mailsync.NewMemorySink()
	state := mailsync.NewMemoryState()
	sync := func(mod func(*graph.Options)) *mailsync.Report {
		t.Helper()
		rep, err := mailsync.Sync(ctx, e.connector(mod), mailsync.DefaultMapping("incident"), sink, mailsync.WithState(state))
		if err != nil {
			t.Fatal(err)
		}
		return rep
	}
	old := func(o *graph.Options) { o.Folder = "inbox" }
	single := func(o *graph.Options) { o.Folders = []string{"inbox"} }
	two := func(o *graph.Options) { o.Folders = []string{"inbox", "Support"} }
	if rep := sync(old); rep.Created != 3 {
		t.Fatalf("first sync created %d", rep.Created)
	}
	v1, _ := state.Cursor(ctx, e.conn.Name)
	oldList, err := e.connector(old).List(ctx, "")
	if err != nil {
		t.Fatal(err)
	}

	e.deliverTo("inbox", 1, "in-new")
	if rep := sync(single); rep.Created != 1 || rep.Seen != 1 {
		t.Fatalf("after Folder→Folders: created %d, seen %d; want 1, 1", rep.Created, rep.Seen)
	}
	if c, _ := state.Cursor(ctx, e.conn.Name); !strings.HasSuffix(string(c), "#mailsync-folder=inbox") {
		t.Fatalf("one folder's cursor %q changed form", c)
	}
	newList, err := e.connector(single).List(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range oldList.Messages {
		if newList.Messages[i].Key != r.Key || newList.Messages[i].Folder != "inbox" {
			t.Fatalf("key %d: %q (folder %q) with Folders, %q with Folder", i, newList.Messages[i].Key, newList.Messages[i].Folder, r.Key)
		}
	}

	rep := sync(two)
	if rep.Created != 2 || rep.Seen != 2 {
		t.Fatalf("after adding Support: created %d, seen %d; want Support's 2 only (notes %q)", rep.Created, rep.Seen, rep.Notes)
	}
	// The old single-folder cursor is inbox's delta link for two folders.
	l, err := e.connector(two).List(ctx, v1)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range l.Messages {
		if m.Key == oldList.Messages[0].Key {
			t.Fatalf("the single-folder cursor re-listed inbox: %+v", l.Messages)
		}
	}
	// And back to one folder: the JSON cursor gives inbox its link.
	if rep := sync(single); rep.Seen != 0 {
		t.Fatalf("back to one folder: seen %d; want 0 (notes %q)", rep.Seen, rep.Notes)
	}
	if n := len(sink.Tickets()); n != 6 {
		t.Fatalf("%d tickets; want 6, once each", n)
	}
}

// Check reads every folder's counts and lists the mailbox's folders with
// their well-known names; reading Junk Email is a warning.
func TestFoldersCheckListsMailboxes(t *testing.T) {
	e := newEnv(t, false)
	ctx := context.Background()
	e.fake.AddFolder("Support")
	e.fake.AddChildFolder("Support", "Tier 1")
	e.fake.AddWellKnownFolder("Junk Email", "junkemail")
	e.deliverTo("inbox", 1, "in")
	e.deliverTo("Support", 2, "sup")
	e.deliverTo("Tier 1", 1, "t1")

	r, err := e.connector(func(o *graph.Options) { o.Folders = []string{"inbox", "Support/Tier 1"} }).Check(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Folders) != 2 || r.Folders[0].Messages != 1 || r.Folders[1].Name != "Tier 1" || r.Folders[1].Messages != 1 || len(r.Warnings) != 0 {
		t.Fatalf("folders %+v, warnings %q", r.Folders, r.Warnings)
	}
	d, ok := r.Details.(*graph.CheckResult)
	if !ok {
		t.Fatalf("Details %T", r.Details)
	}
	got := map[string]string{}
	for _, m := range d.Mailboxes {
		got[m.Name] = m.WellKnown
	}
	for name, wk := range map[string]string{"Inbox": "inbox", "Support": "", "Support/Tier 1": "", "Junk Email": "junkemail", "Deleted Items": "deleteditems"} {
		if w, ok := got[name]; !ok || w != wk {
			t.Errorf("mailbox %q: well-known %q (listed %v); want %q — all: %v", name, w, ok, wk, got)
		}
	}
	for _, junk := range []string{"junkemail", "Junk Email"} {
		r, err = e.connector(func(o *graph.Options) { o.Folders = []string{"inbox", junk} }).Check(ctx)
		if err != nil || len(r.Warnings) != 1 || !strings.Contains(r.Warnings[0], "Junk") {
			t.Fatalf("reading %q: warnings %q, %v", junk, r.Warnings, err)
		}
	}
	if err := graph.Check(ctx, e.conn, func() graph.Options { o := e.opts; o.Folders = []string{"inbox", "Nope"}; return o }()); !errors.Is(err, mailsync.ErrFolderNotFound) {
		t.Fatalf("Check with a missing second folder: %v", err)
	}
}

func TestFoldersOptionValidation(t *testing.T) {
	e := newEnv(t, false)
	for _, tc := range []struct {
		name  string
		mod   func(*graph.Options)
		field string
	}{
		{"both", func(o *graph.Options) { o.Folder, o.Folders = "inbox", []string{"Support"} }, "folders"},
		{"empty", func(o *graph.Options) { o.Folders = []string{"inbox", " "} }, "folders[1]"},
		{"twice", func(o *graph.Options) { o.Folders = []string{"Inbox", "inbox"} }, "folders[1]"},
	} {
		o := e.opts
		tc.mod(&o)
		_, err := graph.New(e.conn, o)
		var ce *mailsync.ConfigError
		if !errors.As(err, &ce) || !slices.ContainsFunc(ce.Problems, func(p mailsync.Problem) bool { return p.Field == tc.field }) {
			t.Errorf("%s: %v; want a problem on %q", tc.name, err, tc.field)
		}
	}
}

// A several-folder cursor whose link points elsewhere, or that is not the
// expected JSON, is not followed: the folders are listed whole, with a note.
func TestFoldersCursorNotFollowedElsewhere(t *testing.T) {
	e := newEnv(t, false)
	ctx := context.Background()
	e.fake.AddFolder("Support")
	e.deliverTo("inbox", 1, "in")
	e.deliverTo("Support", 1, "sup")
	two := func(o *graph.Options) { o.Folders = []string{"inbox", "Support"} }
	for _, bad := range []mailsync.Cursor{
		`{"v":2,"delta":{"inbox":"https://evil.example/v1.0/users/x/messages/delta()"}}`,
		`{"v":3,"delta":{}}`,
		`{"v":2,"delta":`,
	} {
		l, err := e.connector(two).List(ctx, bad)
		if err != nil || len(l.Messages) != 2 || len(l.Notes) != 1 || !strings.Contains(l.Notes[0], "not usable") {
			t.Fatalf("cursor %s: %v, %d messages, notes %q", bad, err, len(l.Messages), l.Notes)
		}
	}
}
