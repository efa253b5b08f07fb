package connectortest

import (
	"context"
	"errors"
	"io"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mailsync/mailsync"
)

// Remover is an optional interface of a Harness: Remove deletes the message
// with messageID from the server behind the connector's back (as another
// mail client would), so the suite can test the gone path.
type Remover interface {
	Remove(ctx context.Context, messageID string) error
}

// RoundTripCounter is an optional interface of a Harness: RoundTrips
// returns how many requests (IMAP or POP3 commands, HTTP requests) the
// server has answered so far, so the suite can check that a sync with
// nothing new costs the same whatever the mailbox holds.
type RoundTripCounter interface {
	RoundTrips() int64
}

// The tests that drive the Connector directly, as gocloud.dev's drivertest
// does, without Sync in between.
var directTests = []struct {
	name string
	fn   func(*testing.T, *suite)
}{
	{"Direct/FetchDeliversInOrder", testDirectOrder},
	{"Direct/GoneIsReported", testDirectGone},
	{"Direct/AckUnsupportedAction", testDirectAckUnsupported},
	{"Direct/UseAfterClose", testDirectUseAfterClose},
	{"Direct/NothingNewCostsConstantRoundTrips", testDirectRoundTrips},
	{"Direct/Check", testDirectCheck},
}

func (s *suite) connector() mailsync.Connector {
	s.t.Helper()
	c, err := s.h.MakeConnector(s.ctx)
	if err != nil {
		s.t.Fatalf("MakeConnector: %v", err)
	}
	s.t.Cleanup(func() { c.Close() })
	return c
}

// fetchAll fetches refs and returns the Message-IDs in delivery order, and
// the keys reported gone.
func fetchAll(t *testing.T, ctx context.Context, c mailsync.Connector, refs []mailsync.MessageRef) (ids, gone []string) {
	t.Helper()
	err := c.Fetch(ctx, refs, func(ref mailsync.MessageRef, r io.Reader) error {
		if r == nil {
			gone = append(gone, ref.Key)
			return nil
		}
		raw, err := io.ReadAll(r)
		if err != nil {
			return err
		}
		ids = append(ids, headerMessageID(raw))
		return nil
	})
	if err != nil {
		t.Fatalf("Fetch: %v", err)
	}
	return ids, gone
}

func headerMessageID(raw []byte) string {
	head, _, _ := strings.Cut(string(raw), "\r\n\r\n")
	for _, line := range strings.Split(head, "\r\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.EqualFold(k, "Message-ID") {
			return strings.Trim(strings.TrimSpace(v), "<>")
		}
	}
	return ""
}

func testDirectOrder(t *testing.T, s *suite) {
	want := s.deliverN("order", 5)
	c := s.connector()
	l, err := c.List(s.ctx, "")
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	if len(l.Messages) != 5 {
		t.Fatalf("listed %d messages, want 5", len(l.Messages))
	}
	// Fetch delivers in the order of refs, also when asked in reverse.
	refs := slices.Clone(l.Messages)
	slices.Reverse(refs)
	got, gone := fetchAll(t, s.ctx, c, refs)
	if len(gone) != 0 || len(got) != 5 {
		t.Fatalf("delivered %v, gone %v", got, gone)
	}
	first, _ := fetchAll(t, s.ctx, c, l.Messages)
	if !slices.Equal(got, reversed(first)) {
		t.Fatalf("refs in reverse delivered %v; in order %v", got, first)
	}
	if !sameSet(first, want) {
		t.Fatalf("delivered %v, want %v", first, want)
	}
}

func reversed(a []string) []string {
	b := slices.Clone(a)
	slices.Reverse(b)
	return b
}

func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}

func testDirectGone(t *testing.T, s *suite) {
	rm, ok := s.h.(Remover)
	if !ok {
		t.Skip("the harness cannot remove mail behind the connector's back (connectortest.Remover)")
	}
	ids := s.deliverN("gone", 3)
	c := s.connector()
	l, err := c.List(s.ctx, "")
	if err != nil || len(l.Messages) != 3 {
		t.Fatalf("List: %d messages, %v", len(l.Messages), err)
	}
	// Learn which ref is which message (Fetch is read-only), one at a time.
	var removedKey string
	for _, ref := range l.Messages {
		got, _ := fetchAll(t, s.ctx, c, []mailsync.MessageRef{ref})
		if len(got) == 1 && got[0] == ids[1] {
			removedKey = ref.Key
		}
	}
	if removedKey == "" {
		t.Fatalf("no listed ref delivers %s", ids[1])
	}
	if err := rm.Remove(s.ctx, ids[1]); err != nil {
		t.Fatalf("Remove: %v", err)
	}
	got, gone := fetchAll(t, s.ctx, c, l.Messages)
	if !sameSet(got, []string{ids[0], ids[2]}) {
		t.Fatalf("delivered %v, want the other two", got)
	}
	// The contract: a gone ref is reported with fn(ref, nil), so Sync can
	// move the cursor past it. (Leaving it undelivered is allowed, but then
	// the cursor cannot move past it; the suite asks for the report.)
	if len(gone) != 1 || gone[0] != removedKey {
		t.Fatalf("reported gone: %v; want exactly %s, the removed message's ref", gone, removedKey)
	}
}

func testDirectAckUnsupported(t *testing.T, s *suite) {
	supported := s.h.PostActions()
	s.deliverN("ack", 1)
	c := s.connector()
	l, err := c.List(s.ctx, "")
	if err != nil || len(l.Messages) != 1 {
		t.Fatalf("List: %v", err)
	}
	for _, kind := range []mailsync.ActionKind{mailsync.MarkRead, mailsync.MoveToFolder, mailsync.Delete} {
		if slices.Contains(supported, kind) {
			continue
		}
		a := mailsync.PostAction{Kind: kind}
		if kind == mailsync.MoveToFolder {
			a.Folder = MoveFolder
		}
		if err := c.Ack(s.ctx, l.Messages, a); !errors.Is(err, mailsync.ErrUnsupported) {
			t.Errorf("Ack(%s), which the provider lacks: %v, want ErrUnsupported", kind, err)
		}
	}
	// Leaving mail untouched needs no call, but a call must not fail.
	if err := c.Ack(s.ctx, l.Messages, mailsync.PostAction{Kind: mailsync.LeaveUntouched}); err != nil {
		t.Errorf("Ack(LeaveUntouched): %v", err)
	}
}

func testDirectUseAfterClose(t *testing.T, s *suite) {
	s.deliverN("closed", 1)
	c, err := s.h.MakeConnector(s.ctx)
	if err != nil {
		t.Fatal(err)
	}
	l, err := c.List(s.ctx, "")
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	if err := c.Close(); err != nil {
		t.Logf("Close: %v", err)
	}
	// After Close every call fails (or does nothing) promptly: no panic,
	// no hang, no delivery.
	ctx, cancel := context.WithTimeout(s.ctx, 30*time.Second)
	defer cancel()
	done := make(chan struct{})
	go func() {
		defer close(done)
		if _, err := c.List(ctx, ""); err == nil {
			t.Log("List after Close succeeded (it reconnected)")
		}
		delivered := 0
		_ = c.Fetch(ctx, l.Messages, func(mailsync.MessageRef, io.Reader) error { delivered++; return nil })
		if delivered > 0 {
			t.Log("Fetch after Close delivered (it reconnected)")
		}
		_ = c.Close() // a second Close is harmless
	}()
	select {
	case <-done:
	case <-ctx.Done():
		t.Fatal("a call after Close hung")
	}
}

func testDirectRoundTrips(t *testing.T, s *suite) {
	rc, ok := s.h.(RoundTripCounter)
	if !ok {
		t.Skip("the harness does not count round trips (connectortest.RoundTripCounter)")
	}
	state := mailsync.NewMemoryState()
	sink := mailsync.NewMemorySink()
	nothingNew := func() int64 {
		t.Helper()
		before := rc.RoundTrips()
		rep := s.mustSync(sink, mailsync.WithState(state))
		if rep.Created != 0 {
			t.Fatalf("a sync with nothing new created %d tickets", rep.Created)
		}
		return rc.RoundTrips() - before
	}
	s.deliverN("rt-a", 2)
	s.mustSync(sink, mailsync.WithState(state))
	small := nothingNew()
	s.deliverN("rt-b", 30)
	s.mustSync(sink, mailsync.WithState(state))
	large := nothingNew()
	t.Logf("a sync with nothing new: %d round trips on 2 messages, %d on 32", small, large)
	if large != small {
		t.Fatalf("a sync with nothing new cost %d round trips on 2 messages and %d on 32: it must not grow with the mailbox", small, large)
	}
}

func testDirectCheck(t *testing.T, s *suite) {
	s.deliverN("check", 2)
	c := s.connector()
	ch, ok := c.(mailsync.Checker)
	if !ok {
		t.Skip("the connector does not implement mailsync.Checker (optional)")
	}
	r, err := ch.Check(s.ctx)
	if err != nil {
		t.Fatalf("Check: %v", err)
	}
	if r.Provider == "" || r.Server == "" || r.Security == "" || len(r.Folders) == 0 || r.String() == "" {
		t.Fatalf("incomplete check result: %+v", r)
	}
	if n := r.Folders[0].Messages; n != 2 && n != -1 {
		t.Errorf("the source folder holds %d messages by the check, want 2: %s", n, r)
	}
	if u := r.Folders[0].Unread; u != 2 && u != -1 {
		t.Errorf("%d unread by the check, want 2: %s", u, r)
	}
	// A check changes nothing: the mail is still there, unread.
	msgs, err := s.h.Inspect(s.ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range msgs {
		if m.Folder != SourceFolder || m.Seen && !fetchMarksRead(s.h) {
			t.Errorf("after Check: %+v", m)
		}
	}
}
