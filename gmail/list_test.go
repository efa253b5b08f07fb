package gmail_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/mailsync/mailsync"
	"github.com/mailsync/mailsync/gmail"
	"github.com/mailsync/mailsync/internal/fakegmail"
)

func TestListFullThenHistory(t *testing.T) {
	e := newEnv(t, fakegmail.Options{})
	first := e.deliver("a", 7)
	e.deliver("sent", 2, "SENT") // not in INBOX: never listed
	c := e.connector(func(o *gmail.Options) { o.PageSize = 3 })
	ctx := context.Background()

	e.fake.ResetStats()
	l, err := c.List(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	if got := keys(l); !slices.Equal(got, first) {
		t.Fatalf("first listing %q, want %q (oldest first)", got, first)
	}
	for _, r := range l.Messages {
		if r.Size != -1 {
			t.Errorf("size %d, want -1 (unknown)", r.Size)
		}
	}
	if l.Complete || len(l.Notes) != 0 {
		t.Errorf("complete %v, notes %q", l.Complete, l.Notes)
	}
	// profile + 3 pages of 3.
	if st := e.fake.Stats(); st.Requests != 4 || st.ByOp["users.getProfile"] != 1 || st.ByOp["messages.list"] != 3 {
		t.Errorf("full listing requests: %+v", st)
	}
	if !strings.HasSuffix(string(l.Cursor), ";INBOX") {
		t.Errorf("cursor %q", l.Cursor)
	}

	// Nothing new: one request.
	e.fake.ResetStats()
	l2, err := c.List(ctx, l.Cursor)
	if err != nil {
		t.Fatal(err)
	}
	if len(l2.Messages) != 0 || l2.Cursor != l.Cursor {
		t.Fatalf("nothing new: %q, cursor %q → %q", keys(l2), l.Cursor, l2.Cursor)
	}
	if st := e.fake.Stats(); st.Requests != 1 || st.ByOp["history.list"] != 1 {
		t.Fatalf("nothing-new List cost %+v, want one history.list", st)
	}

	// New mail, label changes and other labels' mail: only the new INBOX mail.
	if !e.fake.ModifyLabels(first[0], nil, []string{"UNREAD"}) {
		t.Fatal("modify")
	}
	e.deliver("other", 1, "SPAM")
	second := e.deliver("b", 5)
	e.fake.ResetStats()
	l3, err := c.List(ctx, l.Cursor)
	if err != nil {
		t.Fatal(err)
	}
	if got := keys(l3); !slices.Equal(got, second) {
		t.Fatalf("history listing %q, want %q", got, second)
	}
	if st := e.fake.Stats(); st.ByOp["history.list"] != 2 || st.Requests != 2 {
		t.Errorf("history with 5 records and page size 3: %+v", st)
	}
	if l3.Cursor == l.Cursor {
		t.Errorf("cursor did not move")
	}
	// And from the new cursor, nothing.
	l4, err := c.List(ctx, l3.Cursor)
	if err != nil || len(l4.Messages) != 0 {
		t.Fatalf("after: %q %v", keys(l4), err)
	}
}

// A sync with nothing new costs the same whatever the mailbox size.
func TestNothingNewConstantCost(t *testing.T) {
	for _, n := range []int{10, 3000} {
		e := newEnv(t, fakegmail.Options{})
		e.deliver("m", n)
		c := e.connector()
		l, err := c.List(context.Background(), "")
		if err != nil || len(l.Messages) != n {
			t.Fatalf("%d: listed %d, %v", n, len(l.Messages), err)
		}
		e.fake.ResetStats()
		before := c.Requests()
		if _, err := c.List(context.Background(), l.Cursor); err != nil {
			t.Fatal(err)
		}
		if got := c.Requests() - before; got != 1 || e.fake.Stats().Requests != 1 {
			t.Fatalf("mailbox of %d: nothing-new List sent %d requests", n, got)
		}
	}
}

// Mail that arrives while the first listing pages through messages.list
// is listed then or by the next List: never lost.
func TestMailArrivingDuringFirstListing(t *testing.T) {
	e := newEnv(t, fakegmail.Options{})
	e.deliver("old", 6)
	hook := &hookTransport{base: e.fake.Client().Transport}
	var late []string
	pages := 0
	hook.before = func(r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/messages") {
			pages++
			if pages == 2 { // between the first and second page
				late = append(late, e.fake.Deliver(msg("late-1")), e.fake.Deliver(msg("late-2")))
			}
		}
	}
	c := e.connector(func(o *gmail.Options) {
		o.PageSize = 2
		o.HTTPClient = &http.Client{Transport: hook}
	})
	l, err := c.List(context.Background(), "")
	if err != nil {
		t.Fatal(err)
	}
	hook.mu.Lock()
	hook.before = nil
	hook.mu.Unlock()
	l2, err := c.List(context.Background(), l.Cursor)
	if err != nil {
		t.Fatal(err)
	}
	all := append(keys(l), keys(l2)...)
	for _, id := range late {
		if !slices.Contains(all, id) {
			t.Errorf("message %s that arrived during the listing was lost (first %q, next %q)", id, keys(l), keys(l2))
		}
	}
	if len(late) != 2 {
		t.Fatalf("hook did not run")
	}
}

// An expired history id (HTTP 404) leads to a full listing with a note.
func TestHistoryExpiredRelists(t *testing.T) {
	e := newEnv(t, fakegmail.Options{})
	first := e.deliver("a", 3)
	c := e.connector()
	l, err := c.List(context.Background(), "")
	if err != nil {
		t.Fatal(err)
	}
	second := e.deliver("b", 2)
	e.fake.ExpireHistory()
	l2, err := c.List(context.Background(), l.Cursor)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := keys(l2), append(slices.Clone(first), second...); !slices.Equal(got, want) {
		t.Fatalf("re-list %q, want %q", got, want)
	}
	if len(l2.Notes) != 1 || !strings.Contains(l2.Notes[0], "404") {
		t.Fatalf("notes %q", l2.Notes)
	}
	// The new cursor works.
	l3, err := c.List(context.Background(), l2.Cursor)
	if err != nil || len(l3.Messages) != 0 || len(l3.Notes) != 0 {
		t.Fatalf("after re-list: %q %q %v", keys(l3), l3.Notes, err)
	}
}

// Through the engine: the expired history re-lists everything but creates
// no duplicate tickets.
func TestHistoryExpiredNoDuplicateTickets(t *testing.T) {
	e := newEnv(t, fakegmail.Options{})
	e.deliver("a", 3)
	sink := mailsync.NewMemorySink()
	state := mailsync.NewMemoryState()
	syncOnce := func() *mailsync.Report {
		c := e.connector()
		rep, err := mailsync.Sync(context.Background(), c, mailsync.DefaultMapping("incident"), sink, mailsync.WithState(state))
		if err != nil {
			t.Fatal(err)
		}
		return rep
	}
	syncOnce()
	e.deliver("b", 2)
	e.fake.ExpireHistory()
	rep := syncOnce()
	if rep.Created != 2 || rep.AlreadyDone != 3 || len(rep.Notes) == 0 {
		t.Fatalf("after expiry: created %d, already done %d, notes %q", rep.Created, rep.AlreadyDone, rep.Notes)
	}
	if n := len(sink.Tickets()); n != 5 {
		t.Fatalf("%d tickets, want 5", n)
	}
}

func TestUserAndMultipleLabels(t *testing.T) {
	e := newEnv(t, fakegmail.Options{})
	support := e.fake.CreateLabel("Support/Tier 1")
	var want []string
	want = append(want, e.fake.Deliver(msg("s1"), support))
	e.deliver("inbox", 1) // INBOX only: not read
	want = append(want, e.fake.Deliver(msg("both"), support, "STARRED"))
	want = append(want, e.fake.Deliver(msg("starred"), "STARRED"))
	c := e.connector(func(o *gmail.Options) { o.Labels = []string{"support/tier 1", "starred"} })
	l, err := c.List(context.Background(), "")
	if err != nil {
		t.Fatal(err)
	}
	if got := keys(l); !slices.Equal(got, want) {
		t.Fatalf("listing %q, want %q", got, want)
	}
	if !strings.Contains(string(l.Cursor), "="+support) {
		t.Errorf("cursor %q does not keep the label id", l.Cursor)
	}
	// Next List: a fresh connector (as the engine makes) needs no labels.list.
	c2 := e.connector(func(o *gmail.Options) { o.Labels = []string{"support/tier 1", "starred"} })
	more := []string{e.fake.Deliver(msg("s2"), support), e.fake.Deliver(msg("st2"), "STARRED", support)}
	e.fake.ResetStats()
	l2, err := c2.List(context.Background(), l.Cursor)
	if err != nil {
		t.Fatal(err)
	}
	if got := keys(l2); !slices.Equal(got, more) {
		t.Fatalf("history %q, want %q", got, more)
	}
	if st := e.fake.Stats(); st.ByOp["labels.list"] != 0 || st.ByOp["history.list"] != 2 {
		t.Errorf("requests %+v", st.ByOp)
	}

	// Changing the labels lists in full, with a note.
	c3 := e.connector(func(o *gmail.Options) { o.Labels = []string{"STARRED"} })
	l3, err := c3.List(context.Background(), l2.Cursor)
	if err != nil {
		t.Fatal(err)
	}
	if len(l3.Notes) != 1 || !strings.Contains(l3.Notes[0], "labels changed") || len(l3.Messages) != 3 {
		t.Fatalf("after a label change: %q, notes %q", keys(l3), l3.Notes)
	}
}

func TestLabelNotFound(t *testing.T) {
	e := newEnv(t, fakegmail.Options{})
	c := e.connector(func(o *gmail.Options) { o.Labels = []string{"Nope"} })
	_, err := c.List(context.Background(), "")
	if !errors.Is(err, mailsync.ErrFolderNotFound) || !strings.Contains(err.Error(), "Nope") {
		t.Fatalf("got %v", err)
	}
}

// A user label deleted and made again gets a new id: the cursor's old id
// no longer works, and List looks the label up again and lists in full.
func TestLabelRecreated(t *testing.T) {
	e := newEnv(t, fakegmail.Options{})
	old := e.fake.CreateLabel("Support")
	e.fake.Deliver(msg("x"), old)
	opt := func(o *gmail.Options) { o.Labels = []string{"Support"} }
	l, err := e.connector(opt).List(context.Background(), "")
	if err != nil || len(l.Messages) != 1 {
		t.Fatal(keys(l), err)
	}
	e.fake.DeleteLabel(old)
	id := e.fake.CreateLabel("Support")
	want := e.fake.Deliver(msg("y"), id)
	l2, err := e.connector(opt).List(context.Background(), l.Cursor)
	if err != nil {
		t.Fatal(err)
	}
	if got := keys(l2); !slices.Equal(got, []string{want}) || len(l2.Notes) != 1 {
		t.Fatalf("got %q, notes %q", got, l2.Notes)
	}
	// Deleted for good: ErrFolderNotFound.
	e.fake.DeleteLabel(id)
	_, err = e.connector(opt).List(context.Background(), l2.Cursor)
	if !errors.Is(err, mailsync.ErrFolderNotFound) {
		t.Fatalf("deleted label: %v", err)
	}
}

func TestBadCursorRelists(t *testing.T) {
	e := newEnv(t, fakegmail.Options{})
	ids := e.deliver("a", 2)
	c := e.connector()
	for _, cur := range []mailsync.Cursor{"garbage", "12;", "0;INBOX"} {
		l, err := c.List(context.Background(), cur)
		if err != nil || !slices.Equal(keys(l), ids) || len(l.Notes) != 1 {
			t.Errorf("cursor %q: %q %q %v", cur, keys(l), l.Notes, err)
		}
	}
	// A bare history id (no labels) is accepted as one.
	hid := e.fake.HistoryID()
	more := e.deliver("b", 1)
	l, err := c.List(context.Background(), mailsync.Cursor(strconv.FormatUint(hid, 10)))
	if err != nil || !slices.Equal(keys(l), more) || len(l.Notes) != 0 {
		t.Fatalf("bare id: %q %q %v", keys(l), l.Notes, err)
	}
}

// A message added and deleted for good between two syncs is not listed:
// the engine would wait for it and keep its cursor.
func TestHistoryLeavesOutDeleted(t *testing.T) {
	e := newEnv(t, fakegmail.Options{})
	c := e.connector()
	l, err := c.List(context.Background(), "")
	if err != nil {
		t.Fatal(err)
	}
	ids := e.deliver("m", 3)
	e.fake.DeleteMessage(ids[1])
	e.fake.ModifyLabels(ids[2], []string{"TRASH"}, []string{"INBOX"}) // trashed: still there, still listed
	l2, err := c.List(context.Background(), l.Cursor)
	if err != nil {
		t.Fatal(err)
	}
	if got := keys(l2); !slices.Equal(got, []string{ids[0], ids[2]}) {
		t.Fatalf("got %q", got)
	}
}

func TestOptionsDoNotPrintTokens(t *testing.T) {
	o := gmail.Options{TokenSource: staticToken("ya29.secret"), Labels: []string{"INBOX"}}
	for _, s := range []string{fmt.Sprint(o), fmt.Sprintf("%+v", o), fmt.Sprintf("%#v", o), fmt.Sprintf("%v", &o)} {
		if strings.Contains(s, "ya29") || !strings.Contains(s, "INBOX") {
			t.Errorf("%s", s)
		}
	}
}

// A throttled page is asked for again on its own: the listing does not
// restart from the first page, and each page has its own retries.
func TestThrottledPageRetriedAlone(t *testing.T) {
	e := newEnv(t, fakegmail.Options{})
	ids := e.deliver("m", 5)
	hook := &hookTransport{base: e.fake.Client().Transport}
	armed := false
	hook.before = func(r *http.Request) {
		if r.URL.Query().Get("pageToken") == "p4" && !armed {
			armed = true
			e.fake.InjectFault(fakegmail.Fault{Op: "messages.list", Status: 403, Reason: "userRateLimitExceeded", Times: 2})
		}
	}
	c := e.connector(func(o *gmail.Options) {
		o.PageSize = 2
		o.MaxRetries = 2
		o.HTTPClient = &http.Client{Transport: hook}
	})
	// Pages 2 and 3 are each throttled twice: 4 failures in all, more than
	// MaxRetries, but never more than 2 for one page.
	e.fake.InjectFault(fakegmail.Fault{Op: "messages.list", Status: 429, After: 1, Times: 2})
	e.fake.ResetStats()
	l, err := c.List(context.Background(), "")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(keys(l), ids) {
		t.Fatalf("listing %q, want %q", keys(l), ids)
	}
	if n := e.fake.Stats().ByOp["messages.list"]; n != 3+4 || !armed {
		t.Errorf("%d messages.list calls, want 3 pages + 4 throttled", n)
	}
}
