package imap_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mailsync/mailsync"
	"github.com/mailsync/mailsync/internal/cutproxy"
)

// countingSink is a MemorySink that counts the tickets it really creates.
func countingSink() (*mailsync.MemorySink, *atomic.Int32) {
	sink := mailsync.NewMemorySink()
	var n atomic.Int32
	sink.BeforeCreate = func(context.Context, *mailsync.Ticket) error { n.Add(1); return nil }
	return sink, &n
}

// expectOneTicketEach checks that the sink holds exactly one ticket per id.
func expectOneTicketEach(t *testing.T, sink *mailsync.MemorySink, ids []string) {
	t.Helper()
	got := sink.FieldValues("email_message_id")
	slices.Sort(got)
	want := slices.Clone(ids)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("tickets for %d message ids %v; want one for each of %d", len(got), got, len(want))
	}
}

// The whole sync survives connections cut in the middle of FETCH: the
// engine retries, the connector reconnects, nothing is lost or duplicated,
// and the post-action (move) runs once per message.
func TestSyncResumesAcrossCuts(t *testing.T) {
	ctx := testCtx(t)
	m := startMem(t, memOptions{insecureAuth: true})
	var ids []string
	for i := 1; i <= 30; i++ {
		m.deliver(t, "INBOX", mail(i, strings.Repeat(fmt.Sprintf("paragraph %d of the customer's long complaint\r\n", i), 1200)))
		ids = append(ids, fmt.Sprintf("msg-%d@example.org", i))
	}
	proxy := cutproxy.Start(t, m.Addr)
	proxy.CutAfter(400_000) // first connection: after the listing, inside the first FETCH
	proxy.CutAfter(700_000) // the reconnection, again mid-FETCH
	c := newConnector(t, connection(t, proxy.Addr), plainOpts())

	sink, created := countingSink()
	state := mailsync.NewMemoryState()
	move := mailsync.WithPostAction(mailsync.PostAction{Kind: mailsync.MoveToFolder, Folder: "Processed"})
	rep, err := mailsync.Sync(ctx, c, mailsync.DefaultMapping("incident"), sink,
		mailsync.WithState(state), mailsync.WithRetry(5, 10*time.Millisecond), move)
	if err != nil {
		t.Fatalf("Sync: %v", err)
	}
	if proxy.Cuts() != 2 || proxy.Conns() < 3 {
		t.Fatalf("%d cuts over %d connections; the test wants 2 cuts and reconnections", proxy.Cuts(), proxy.Conns())
	}
	if rep.Created != 30 || created.Load() != 30 || rep.Failed != 0 {
		t.Fatalf("created %d (sink %d), failed %d; want 30, 30, 0", rep.Created, created.Load(), rep.Failed)
	}
	expectOneTicketEach(t, sink, ids)
	if got := inspectMem(t, m, "INBOX"); len(got) != 0 {
		t.Errorf("%d messages left in INBOX after moving", len(got))
	}
	if got := messageIDs(inspectMem(t, m, "Processed")); !slices.Equal(got, slices.Sorted(slices.Values(ids))) {
		t.Errorf("Processed holds %d messages, want the 30 once each", len(got))
	}

	c2 := newConnector(t, connection(t, m.Addr), plainOpts())
	rep, err = mailsync.Sync(ctx, c2, mailsync.DefaultMapping("incident"), sink, mailsync.WithState(state), move)
	if err != nil || rep.Created != 0 || rep.Seen != 0 {
		t.Fatalf("second sync: %+v, %v; want nothing", rep, err)
	}
}

// A recreated folder (new UIDVALIDITY) is re-listed, but the engine
// recognises the mail by content: no duplicate tickets, a note in the report.
func TestSyncUIDValidityChangeNoDuplicates(t *testing.T) {
	ctx := testCtx(t)
	m := startMem(t, memOptions{insecureAuth: true})
	opts := plainOpts()
	opts.Folder = "Support"
	for i := 1; i <= 3; i++ {
		m.deliver(t, "Support", mail(i, "first delivery"))
	}
	sink, created := countingSink()
	state := mailsync.NewMemoryState()
	sync := func() *mailsync.Report {
		c := newConnector(t, connection(t, m.Addr), opts)
		rep, err := mailsync.Sync(ctx, c, mailsync.DefaultMapping("incident"), sink, mailsync.WithState(state))
		if err != nil {
			t.Fatal(err)
		}
		return rep
	}
	if rep := sync(); rep.Created != 3 {
		t.Fatalf("first sync created %d", rep.Created)
	}
	if err := m.User.Delete("Support"); err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 4; i++ { // the same three, and one new
		m.deliver(t, "Support", mail(i, "first delivery"))
	}
	rep := sync()
	if rep.Created != 1 || created.Load() != 4 || rep.AlreadyDone != 3 {
		t.Fatalf("after UIDVALIDITY change: created %d (sink total %d), already done %d; want 1, 4, 3", rep.Created, created.Load(), rep.AlreadyDone)
	}
	if !slices.ContainsFunc(rep.Notes, func(n string) bool { return strings.Contains(n, "UIDVALIDITY") }) {
		t.Errorf("report notes %q do not mention UIDVALIDITY", rep.Notes)
	}
	expectOneTicketEach(t, sink, []string{"msg-1@example.org", "msg-2@example.org", "msg-3@example.org", "msg-4@example.org"})
	if rep := sync(); rep.Created != 0 || rep.Seen != 0 {
		t.Fatalf("third sync: created %d, seen %d; want nothing", rep.Created, rep.Seen)
	}
}
