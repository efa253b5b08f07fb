package gmail_test

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mailsync/mailsync"
	"github.com/mailsync/mailsync/gmail"
	"github.com/mailsync/mailsync/internal/fakegmail"
)

func labelsOf(t *testing.T, f *fakegmail.Server, id string) []string {
	t.Helper()
	m, ok := f.Message(id)
	if !ok {
		return nil
	}
	return m.LabelIDs
}

func TestAckMarkRead(t *testing.T) {
	e := newEnv(t, fakegmail.Options{})
	ids := e.deliver("m", 3)
	other := e.deliver("o", 1)
	c := e.connector()
	gone := "18c9a1b2c3d3ffff" // never existed
	refs := refsOf(append(slices.Clone(ids), gone, ids[0]))
	for round := 0; round < 2; round++ { // the second round repeats it: idempotent
		e.fake.ResetStats()
		if err := c.Ack(context.Background(), refs, mailsync.PostAction{Kind: mailsync.MarkRead}); err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		if st := e.fake.Stats(); st.Requests != 1 || st.ByOp["messages.batchModify"] != 1 {
			t.Errorf("round %d: %+v", round, st)
		}
	}
	for _, id := range ids {
		if l := labelsOf(t, e.fake, id); slices.Contains(l, "UNREAD") || !slices.Contains(l, "INBOX") {
			t.Errorf("%s: labels %q", id, l)
		}
	}
	if l := labelsOf(t, e.fake, other[0]); !slices.Contains(l, "UNREAD") {
		t.Errorf("untouched message lost UNREAD: %q", l)
	}
}

func TestAckMoveCreatesLabelOnce(t *testing.T) {
	e := newEnv(t, fakegmail.Options{})
	ids := e.deliver("m", 4)
	action := mailsync.PostAction{Kind: mailsync.MoveToFolder, Folder: "Processed/Tickets"}
	for i, id := range ids {
		c := e.connector() // a fresh connector per sync, as the engine does
		for rep := 0; rep < 2; rep++ {
			if err := c.Ack(context.Background(), refsOf([]string{id}), action); err != nil {
				t.Fatalf("message %d: %v", i, err)
			}
		}
	}
	lid, ok := e.fake.LabelID("Processed/Tickets")
	if !ok {
		t.Fatal("label not created")
	}
	for _, id := range ids {
		l := labelsOf(t, e.fake, id)
		if slices.Contains(l, "INBOX") || !slices.Contains(l, lid) || !slices.Contains(l, "UNREAD") {
			t.Errorf("%s: labels %q", id, l)
		}
	}
	if st := e.fake.Stats(); st.ByOp["labels.create"] != 1 {
		t.Errorf("labels.create called %d times", st.ByOp["labels.create"])
	}
	// A system label as target, and a case-insensitive existing label.
	more := e.deliver("n", 2)
	c := e.connector()
	if err := c.Ack(context.Background(), refsOf(more[:1]), mailsync.PostAction{Kind: mailsync.MoveToFolder, Folder: "starred"}); err != nil {
		t.Fatal(err)
	}
	if l := labelsOf(t, e.fake, more[0]); !slices.Equal(l, []string{"STARRED", "UNREAD"}) {
		t.Errorf("moved to STARRED: %q", l)
	}
	if err := c.Ack(context.Background(), refsOf(more[1:]), mailsync.PostAction{Kind: mailsync.MoveToFolder, Folder: "processed/tickets"}); err != nil {
		t.Fatal(err)
	}
	if l := labelsOf(t, e.fake, more[1]); !slices.Contains(l, lid) {
		t.Errorf("case-insensitive match: %q", l)
	}
	// A reserved name cannot be created.
	err := c.Ack(context.Background(), refsOf(more[1:]), mailsync.PostAction{Kind: mailsync.MoveToFolder, Folder: "Inbox "})
	if err != nil {
		t.Errorf("INBOX is a system label: %v", err)
	}
}

// The source labels are removed on move, whatever they are.
func TestAckMoveRemovesConfiguredLabels(t *testing.T) {
	e := newEnv(t, fakegmail.Options{})
	support := e.fake.CreateLabel("Support")
	id := e.fake.Deliver(msg("s"), support, "INBOX", "UNREAD")
	c := e.connector(func(o *gmail.Options) { o.Labels = []string{"Support"} })
	if err := c.Ack(context.Background(), refsOf([]string{id}), mailsync.PostAction{Kind: mailsync.MoveToFolder, Folder: "Done"}); err != nil {
		t.Fatal(err)
	}
	done, _ := e.fake.LabelID("Done")
	if l := labelsOf(t, e.fake, id); !slices.Equal(l, []string{"INBOX", done, "UNREAD"}) && !slices.Equal(l, []string{"INBOX", "UNREAD", done}) {
		t.Fatalf("labels %q: Support removed, INBOX kept, Done added", l)
	}
}

// The move target label deleted by someone after we looked it up.
func TestAckMoveTargetDeletedMeanwhile(t *testing.T) {
	e := newEnv(t, fakegmail.Options{})
	ids := e.deliver("m", 2)
	c := e.connector()
	action := mailsync.PostAction{Kind: mailsync.MoveToFolder, Folder: "Done"}
	if err := c.Ack(context.Background(), refsOf(ids[:1]), action); err != nil {
		t.Fatal(err)
	}
	old, _ := e.fake.LabelID("Done")
	e.fake.DeleteLabel(old)
	if err := c.Ack(context.Background(), refsOf(ids[1:]), action); err != nil {
		t.Fatal(err)
	}
	nid, ok := e.fake.LabelID("Done")
	if !ok || nid == old || !slices.Contains(labelsOf(t, e.fake, ids[1]), nid) {
		t.Fatalf("new label %q (old %q): %q", nid, old, labelsOf(t, e.fake, ids[1]))
	}
}

func TestAckDeleteTrashes(t *testing.T) {
	e := newEnv(t, fakegmail.Options{})
	ids := e.deliver("m", 70)
	inflight := &inflightTransport{base: latencyTransport{base: e.fake.Client().Transport, delay: 2 * time.Millisecond}}
	c := e.connector(func(o *gmail.Options) { o.HTTPClient = &http.Client{Transport: inflight} })
	gone := "18c9a1b2c3d3ffff"
	e.fake.ResetStats()
	for round := 0; round < 2; round++ {
		if err := c.Ack(context.Background(), refsOf(append(slices.Clone(ids), gone)), mailsync.PostAction{Kind: mailsync.Delete}); err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
	}
	for _, id := range ids {
		if l := labelsOf(t, e.fake, id); !slices.Contains(l, "TRASH") || slices.Contains(l, "INBOX") {
			t.Fatalf("%s not trashed: %q", id, l)
		}
	}
	// One messages.trash per message and round (the gone one answers 404),
	// never a permanent delete, a few calls in flight at once.
	if st := e.fake.Stats(); st.ByOp["messages.trash"] != 2*71 || st.Requests != 2*71 || st.ByOp["messages.delete"] != 0 || st.ByOp["messages.batchDelete"] != 0 {
		t.Errorf("trash: %+v", st)
	}
	if m := inflight.max.Load(); m < 2 || m > 4 {
		t.Errorf("%d trash calls in flight at most, want 2 to 4", m)
	}
}

// A trash call that fails for good stops the others and is returned.
func TestAckTrashFailureStops(t *testing.T) {
	e := newEnv(t, fakegmail.Options{})
	ids := e.deliver("m", 40)
	c := e.connector()
	e.fake.InjectFault(fakegmail.Fault{Op: "messages.trash", Status: 403, Reason: "insufficientPermissions", After: 5})
	err := c.Ack(context.Background(), refsOf(ids), mailsync.PostAction{Kind: mailsync.Delete})
	if !errors.Is(err, mailsync.ErrAuth) {
		t.Fatalf("got %v", err)
	}
	if n := e.fake.Stats().ByOp["messages.trash"]; n >= 40 {
		t.Errorf("%d trash calls after a permanent failure", n)
	}
}

// inflightTransport records the largest number of concurrent requests.
type inflightTransport struct {
	base     http.RoundTripper
	cur, max atomic.Int64
}

func (it *inflightTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	n := it.cur.Add(1)
	defer it.cur.Add(-1)
	for {
		m := it.max.Load()
		if n <= m || it.max.CompareAndSwap(m, n) {
			break
		}
	}
	return it.base.RoundTrip(r)
}

func TestAckPermanentDelete(t *testing.T) {
	e := newEnv(t, fakegmail.Options{})
	ids := e.deliver("m", 3)
	c := e.connector(func(o *gmail.Options) { o.PermanentDelete = true })
	for round := 0; round < 2; round++ {
		if err := c.Ack(context.Background(), refsOf(ids), mailsync.PostAction{Kind: mailsync.Delete}); err != nil {
			t.Fatal(err)
		}
	}
	if n := len(e.fake.Messages()); n != 0 {
		t.Fatalf("%d messages left", n)
	}
}

func TestAckThrottledTrashRetries(t *testing.T) {
	e := newEnv(t, fakegmail.Options{})
	ids := e.deliver("m", 10)
	c := e.connector()
	e.fake.InjectFault(fakegmail.Fault{Op: "messages.trash", Status: 429, After: 4, Times: 3})
	if err := c.Ack(context.Background(), refsOf(ids), mailsync.PostAction{Kind: mailsync.Delete}); err != nil {
		t.Fatal(err)
	}
	for _, id := range ids {
		if !slices.Contains(labelsOf(t, e.fake, id), "TRASH") {
			t.Fatalf("%s not trashed", id)
		}
	}
}

// If batchModify answers 404 for a gone message (the real API ignores
// them), the messages are modified one by one.
func TestAckBatchModifyFallback(t *testing.T) {
	e := newEnv(t, fakegmail.Options{StrictBatchModify: true})
	ids := e.deliver("m", 3)
	e.fake.DeleteMessage(ids[1])
	c := e.connector()
	if err := c.Ack(context.Background(), refsOf(ids), mailsync.PostAction{Kind: mailsync.MarkRead}); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{ids[0], ids[2]} {
		if slices.Contains(labelsOf(t, e.fake, id), "UNREAD") {
			t.Errorf("%s still unread", id)
		}
	}
	if st := e.fake.Stats(); st.ByOp["messages.modify"] != 3 {
		t.Errorf("fallback: %+v", st.ByOp)
	}
}

func TestAckInvalidAction(t *testing.T) {
	e := newEnv(t, fakegmail.Options{})
	c := e.connector()
	err := c.Ack(context.Background(), refsOf([]string{"1"}), mailsync.PostAction{Kind: "archive"})
	if !errors.Is(err, mailsync.ErrInvalidConfig) {
		t.Fatalf("got %v", err)
	}
	if err := c.Ack(context.Background(), nil, mailsync.PostAction{Kind: mailsync.Delete}); err != nil {
		t.Fatalf("nothing to do: %v", err)
	}
	if st := e.fake.Stats(); st.Requests != 0 {
		t.Fatalf("requests %d", st.Requests)
	}
}

func TestScopes(t *testing.T) {
	for _, tc := range []struct {
		a    mailsync.PostAction
		perm bool
		want string
	}{
		{mailsync.PostAction{}, false, gmail.ScopeReadonly},
		{mailsync.PostAction{Kind: mailsync.MarkRead}, false, gmail.ScopeModify},
		{mailsync.PostAction{Kind: mailsync.MoveToFolder, Folder: "x"}, false, gmail.ScopeModify},
		{mailsync.PostAction{Kind: mailsync.Delete}, false, gmail.ScopeModify},
		{mailsync.PostAction{Kind: mailsync.Delete}, true, gmail.ScopeFullAccess},
		{mailsync.PostAction{}, true, gmail.ScopeReadonly},
	} {
		got := gmail.Options{PermanentDelete: tc.perm}.Scopes(tc.a)
		if len(got) != 1 || got[0] != tc.want {
			t.Errorf("%+v perm %v: %q", tc.a, tc.perm, got)
		}
		if !tc.perm && gmail.Scopes(tc.a)[0] != tc.want {
			t.Errorf("Scopes(%+v)", tc.a)
		}
	}
}
