package imap_test

import (
	"context"
	"errors"
	"maps"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/mailsync/mailsync"
	"github.com/mailsync/mailsync/connectortest"
	mimap "github.com/mailsync/mailsync/imap"
	"github.com/mailsync/mailsync/internal/dovecottest"
)

// supportRouting marks the tickets of mail read from the "Support" folder.
func supportRouting() mailsync.Routing {
	return mailsync.Routing{Rules: []mailsync.Rule{{
		ID:   "support-folder",
		When: []mailsync.Condition{{Field: "folder", Op: mailsync.OpIs, Value: "Support"}},
		Set:  map[string]string{"queue": "support-desk"},
	}}}
}

// queues returns, by Message-ID, the "queue" field of each ticket ("" when
// unset).
func queues(sink *mailsync.MemorySink) map[string]string {
	out := map[string]string{}
	for _, tk := range sink.Tickets() {
		out[tk.Fields["email_message_id"]] = tk.Fields["queue"]
	}
	return out
}

// Two folders on Dovecot, each with its own position in the cursor: new
// mail in one is all a second sync lists; a rule routes by folder; the
// post-action acts in each message's own folder (both folders have UIDs 1
// and 2); Junk is never read; nothing new costs one SELECT per folder.
func TestDovecotFoldersIndependentCursors(t *testing.T) {
	ctx := testCtx(t)
	h := newDovecot(t, dovecottest.Options{}, mimap.ImplicitTLS)
	for i := 1; i <= 2; i++ {
		h.srv.Deliver(t, h.user, "INBOX", mail(i, "inbox"))
	}
	for i := 11; i <= 12; i++ {
		h.srv.Deliver(t, h.user, "Support", mail(i, "support"))
	}
	h.srv.Deliver(t, h.user, "Junk", mail(99, "spam"))
	var log commandLog
	h.opts.Folders = []string{"INBOX", "Support"}
	h.opts.DialContext = log.dial

	sink, created := countingSink()
	state := mailsync.NewMemoryState()
	move := mailsync.WithPostAction(mailsync.PostAction{Kind: mailsync.MoveToFolder, Folder: "Processed"})
	sync := func() *mailsync.Report {
		t.Helper()
		rep, err := mailsync.Sync(ctx, h.connector(t), mailsync.DefaultMapping("incident"), sink,
			mailsync.WithState(state), mailsync.WithRouting(supportRouting()), move)
		if err != nil {
			t.Fatal(err)
		}
		return rep
	}
	rep := sync()
	if rep.Created != 4 || rep.Failed != 0 {
		t.Fatalf("first sync: created %d, failed %d; want 4, 0", rep.Created, rep.Failed)
	}
	for _, o := range rep.Messages {
		supportKey := strings.HasPrefix(o.Key, "Support/")
		if strings.Contains(o.Key, "/") && !supportKey {
			t.Errorf("key %q: only Support's keys carry a folder", o.Key)
		}
	}
	cursor, _ := state.Cursor(ctx, h.conn.Name)
	if !strings.HasPrefix(string(cursor), "v2;INBOX=") || !strings.Contains(string(cursor), ";Support=") {
		t.Fatalf("cursor %q; want a v2 cursor with INBOX and Support", cursor)
	}
	want := map[string]string{"msg-1@example.org": "", "msg-2@example.org": "", "msg-11@example.org": "support-desk", "msg-12@example.org": "support-desk"}
	if got := queues(sink); !maps.Equal(got, want) {
		t.Fatalf("queues by message %v; want %v", got, want)
	}
	if n := len(h.ids("INBOX")) + len(h.ids("Support")); n != 0 {
		t.Fatalf("%d messages left in the folders read after moving", n)
	}
	if got := h.ids("Processed"); len(got) != 4 {
		t.Fatalf("Processed holds %v; want the 4", got)
	}
	if got := h.ids("Junk"); len(got) != 1 {
		t.Fatalf("Junk holds %v; it must not be read", got)
	}

	// More mail in Support only: the second sync lists just that.
	h.srv.Deliver(t, h.user, "Support", mail(13, "support again"))
	rep = sync()
	if rep.Created != 1 || rep.Seen != 1 || created.Load() != 5 {
		t.Fatalf("second sync: created %d, seen %d (total %d); want 1, 1 (5)", rep.Created, rep.Seen, created.Load())
	}
	if q := queues(sink)["msg-13@example.org"]; q != "support-desk" {
		t.Fatalf("msg-13 queue %q", q)
	}
	// Then INBOX only.
	h.srv.Deliver(t, h.user, "INBOX", mail(3, "inbox again"))
	rep = sync()
	if rep.Created != 1 || rep.Seen != 1 || queues(sink)["msg-3@example.org"] != "" {
		t.Fatalf("third sync: created %d, seen %d; want 1, 1 without the Support queue", rep.Created, rep.Seen)
	}

}

// Nothing new in two folders costs one SELECT per folder and no FETCH,
// whatever the folders' sizes.
func TestFoldersNothingNewConstantRoundTrips(t *testing.T) {
	ctx := testCtx(t)
	run := func(n int) []string {
		m := startMem(t, memOptions{insecureAuth: true})
		for i := 1; i <= n; i++ {
			m.deliver(t, "INBOX", mail(i, "inbox"))
			m.deliver(t, "Support", mail(n+i, "support"))
		}
		log := &commandLog{}
		opts := plainOpts()
		opts.Folders = []string{"INBOX", "Support"}
		opts.DialContext = log.dial
		c := newConnector(t, connection(t, m.Addr), opts)
		l, err := c.List(ctx, "")
		if err != nil || len(l.Messages) != 2*n {
			t.Fatalf("n=%d: full list: %d messages, %v", n, len(l.Messages), err)
		}
		log.reset()
		l2, err := c.List(ctx, l.Cursor)
		if err != nil || len(l2.Messages) != 0 || l2.Cursor != l.Cursor {
			t.Fatalf("n=%d: nothing new: %d messages, cursor %q (was %q), %v", n, len(l2.Messages), l2.Cursor, l.Cursor, err)
		}
		return log.names()
	}
	small, large := run(5), run(1000)
	if !slices.Equal(small, large) || !slices.Equal(small, []string{"SELECT", "SELECT"}) {
		t.Fatalf("nothing new sent %v (5 messages a folder) and %v (1000); want one SELECT per folder", small, large)
	}
}

// A deployment that read INBOX with Options.Folder and moves to Folders
// keeps its cursor and its keys: nothing is listed again, INBOX's keys are
// the same, and a folder added after it is listed from its start.
func TestDovecotFoldersUpgradeKeepsCursorAndKeys(t *testing.T) {
	ctx := testCtx(t)
	h := newDovecot(t, dovecottest.Options{}, mimap.ImplicitTLS)
	for i := 1; i <= 3; i++ {
		h.srv.Deliver(t, h.user, "INBOX", mail(i, "inbox"))
	}
	h.srv.Deliver(t, h.user, "Support", mail(11, "support"))
	old := h.opts
	old.Folder = "INBOX"

	sink, created := countingSink()
	state := mailsync.NewMemoryState()
	sync := func(opts mimap.Options) *mailsync.Report {
		t.Helper()
		rep, err := mailsync.Sync(ctx, newConnector(t, h.conn, opts), mailsync.DefaultMapping("incident"), sink, mailsync.WithState(state))
		if err != nil {
			t.Fatal(err)
		}
		return rep
	}
	if rep := sync(old); rep.Created != 3 {
		t.Fatalf("first sync created %d", rep.Created)
	}
	v1, _ := state.Cursor(ctx, h.conn.Name)
	if !strings.HasPrefix(string(v1), "v1:") {
		t.Fatalf("single-folder cursor %q", v1)
	}
	oldList, err := newConnector(t, h.conn, old).List(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range oldList.Messages {
		if !regexp.MustCompile(`^[0-9]+:[0-9]+$`).MatchString(r.Key) {
			t.Fatalf("single-folder key %q; the keys every earlier version made are <uidvalidity>:<uid>", r.Key)
		}
	}

	// The same folder as a list: same cursor form, same keys, nothing again.
	single := h.opts
	single.Folders = []string{"INBOX"}
	h.srv.Deliver(t, h.user, "INBOX", mail(4, "inbox"))
	if rep := sync(single); rep.Created != 1 || rep.Seen != 1 {
		t.Fatalf("after Folder→Folders: created %d, seen %d; want 1, 1", rep.Created, rep.Seen)
	}
	if c, _ := state.Cursor(ctx, h.conn.Name); !strings.HasPrefix(string(c), "v1:") {
		t.Fatalf("cursor %q; one folder keeps the v1 form", c)
	}
	newList, err := newConnector(t, h.conn, single).List(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range oldList.Messages {
		if newList.Messages[i].Key != r.Key || newList.Messages[i].Folder != "INBOX" {
			t.Fatalf("key %d: %q (folder %q) with Folders, %q with Folder", i, newList.Messages[i].Key, newList.Messages[i].Folder, r.Key)
		}
	}

	// A second folder after it: INBOX keeps its position, Support is new.
	two := h.opts
	two.Folders = []string{"INBOX", "Support"}
	rep := sync(two)
	if rep.Created != 1 || rep.Seen != 1 || created.Load() != 5 {
		t.Fatalf("after adding Support: created %d, seen %d (total %d); want 1, 1 (5)", rep.Created, rep.Seen, created.Load())
	}
	twoList, err := newConnector(t, h.conn, two).List(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range newList.Messages {
		if twoList.Messages[i].Key != r.Key {
			t.Fatalf("INBOX key %d changed to %q from %q when Support was added", i, twoList.Messages[i].Key, r.Key)
		}
	}
	// An old single-folder cursor given to the two-folder connector is
	// INBOX's position: INBOX is not listed again.
	l, err := newConnector(t, h.conn, two).List(ctx, v1)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range l.Messages {
		if r.Folder == "INBOX" && r.Key == oldList.Messages[0].Key {
			t.Fatalf("the v1 cursor re-listed INBOX: %+v", l.Messages)
		}
	}
	// And back to one folder: the v2 cursor gives INBOX its position.
	v2, _ := state.Cursor(ctx, h.conn.Name)
	if rep := sync(single); rep.Seen != 0 {
		t.Fatalf("back to one folder with cursor %q: seen %d; want 0", v2, rep.Seen)
	}
	expectOneTicketEach(t, sink, []string{"msg-1@example.org", "msg-2@example.org", "msg-3@example.org", "msg-4@example.org", "msg-11@example.org"})
}

// Check examines every folder read and lists the account's folders with
// their special use, and warns when Junk is read.
func TestDovecotCheckListsFolders(t *testing.T) {
	ctx := testCtx(t)
	h := newDovecot(t, dovecottest.Options{}, mimap.ImplicitTLS)
	h.srv.Deliver(t, h.user, "INBOX", mail(1, "inbox"))
	h.srv.Deliver(t, h.user, "Support", mail(2, "support"))
	h.srv.Deliver(t, h.user, "Support", mail(3, "support"))
	h.srv.Deliver(t, h.user, "Junk", mail(4, "spam"))
	h.opts.Folders = []string{"INBOX", "Support"}

	res, err := mimap.Check(ctx, h.conn, h.opts)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Read) != 2 || res.Read[0].Name != "INBOX" || res.Read[0].Messages != 1 || res.Read[1].Name != "Support" || res.Read[1].Messages != 2 {
		t.Fatalf("Read = %+v", res.Read)
	}
	uses := map[string]string{}
	for _, m := range res.Mailboxes {
		uses[m.Name] = m.SpecialUse
	}
	for name, use := range map[string]string{"INBOX": "", "Support": "", "Junk": `\Junk`} {
		if got, ok := uses[name]; !ok || got != use {
			t.Errorf("mailbox %q: special use %q (listed %v); want %q", name, got, ok, use)
		}
	}

	gen, err := h.connector(t).Check(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(gen.Folders) != 2 || gen.Folders[1].Name != "Support" || gen.Folders[1].Messages != 2 || len(gen.Warnings) != 0 {
		t.Fatalf("mailsync.CheckResult folders %+v warnings %q", gen.Folders, gen.Warnings)
	}
	h.opts.Folders = []string{"INBOX", "Junk"}
	gen, err = h.connector(t).Check(ctx)
	if err != nil || len(gen.Warnings) != 1 || !strings.Contains(gen.Warnings[0], "Junk") {
		t.Fatalf("reading Junk: warnings %q, %v", gen.Warnings, err)
	}
}

func TestFoldersOptionValidation(t *testing.T) {
	conn := connection(t, "127.0.0.1:993")
	for _, tc := range []struct {
		name  string
		opts  mimap.Options
		field string
	}{
		{"both", mimap.Options{Folder: "INBOX", Folders: []string{"Support"}}, "folders"},
		{"empty", mimap.Options{Folders: []string{"INBOX", " "}}, "folders[1]"},
		{"twice", mimap.Options{Folders: []string{"inbox", "INBOX"}}, "folders[1]"},
		{"crlf", mimap.Options{Folders: []string{"INBOX", "A\r\nB"}}, "folders[1]"},
	} {
		tc.opts.Password = "pw"
		_, err := mimap.New(conn, tc.opts)
		var ce *mailsync.ConfigError
		if !errors.As(err, &ce) || !slices.ContainsFunc(ce.Problems, func(p mailsync.Problem) bool { return p.Field == tc.field }) {
			t.Errorf("%s: %v; want a problem on %q", tc.name, err, tc.field)
		}
	}
	c, err := mimap.New(conn, mimap.Options{Password: "pw", Folders: []string{"INBOX", "Support"}})
	if err != nil {
		t.Fatal(err)
	}
	err = c.Ack(context.Background(), []mailsync.MessageRef{{Key: "1:1"}}, mailsync.PostAction{Kind: mailsync.MoveToFolder, Folder: "Support"})
	if !errors.Is(err, mailsync.ErrInvalidConfig) {
		t.Errorf("moving into a folder being read: %v; want a config error", err)
	}
}

// The conformance suite with a second (empty) folder in Options.Folders:
// the several-folder cursor, and Fetch and Ack selecting the source folder
// again after List selected the other. (The suite's Check test takes the
// first folder for the source, so the source stays first here; keys of a
// second folder are covered by TestDovecotFoldersIndependentCursors.)
func TestConformanceDovecotTwoFolders(t *testing.T) {
	connectortest.Run(t, func(ctx context.Context, t *testing.T) (connectortest.Harness, error) {
		h := newDovecot(t, dovecottest.Options{}, mimap.ImplicitTLS)
		h.srv.Doveadm(t, "mailbox", "create", "-u", h.user, "Other")
		h.opts.Folders = []string{"INBOX", "Other"}
		return h, nil
	})
}

// A changed UIDVALIDITY in one folder re-lists that folder only.
func TestDovecotFoldersUIDValidityChangeInOne(t *testing.T) {
	ctx := testCtx(t)
	h := newDovecot(t, dovecottest.Options{}, mimap.ImplicitTLS)
	for i := 1; i <= 2; i++ {
		h.srv.Deliver(t, h.user, "INBOX", mail(i, "inbox"))
		h.srv.Deliver(t, h.user, "Support", mail(10+i, "support"))
	}
	h.opts.Folders = []string{"INBOX", "Support"}
	l, err := h.connector(t).List(ctx, "")
	if err != nil || len(l.Messages) != 4 {
		t.Fatalf("full list: %+v, %v", l, err)
	}
	h.srv.SetUIDValidity(t, h.user, "Support", 777)
	l2, err := h.connector(t).List(ctx, l.Cursor)
	if err != nil {
		t.Fatal(err)
	}
	if len(l2.Messages) != 2 || len(l2.Notes) != 1 || !strings.Contains(l2.Notes[0], `"Support"`) {
		t.Fatalf("after Support's UIDVALIDITY changed: %+v", l2)
	}
	for _, m := range l2.Messages {
		if m.Folder != "Support" || !strings.HasPrefix(m.Key, "Support/777:") {
			t.Fatalf("re-listed %+v; want Support's messages under UIDVALIDITY 777", m)
		}
	}
}

// With a Courier namespace, "Junk" is "INBOX.Junk" on the server: Check
// names the server's folder and still warns that Junk is read.
func TestDovecotCheckJunkInCourierNamespace(t *testing.T) {
	ctx := testCtx(t)
	h := newDovecot(t, dovecottest.Options{CourierNamespace: true}, mimap.ImplicitTLS)
	h.srv.Deliver(t, h.user, "INBOX", mail(1, "inbox"))
	h.srv.Deliver(t, h.user, "Junk", mail(2, "spam"))
	h.opts.Folders = []string{"INBOX", "Junk"}
	gen, err := h.connector(t).Check(ctx)
	if err != nil {
		t.Fatal(err)
	}
	res := gen.Details.(*mimap.CheckResult)
	if len(res.Read) != 2 || res.Read[1].Mailbox != "INBOX/Junk" || res.Read[1].Messages != 1 {
		t.Fatalf("Read = %+v", res.Read)
	}
	if len(gen.Warnings) != 1 || !strings.Contains(gen.Warnings[0], `"Junk"`) {
		t.Fatalf("warnings %q (mailboxes %+v)", gen.Warnings, res.Mailboxes)
	}
}
