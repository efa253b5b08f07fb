package connectortest

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mailsync/mailsync"
	"github.com/mailsync/mailsync/boltstate"
)

const ticketType = "incident"

// Run runs the conformance suite against the harnesses newHarness makes:
// one fresh mailbox per test.
func Run(t *testing.T, newHarness HarnessMaker) {
	t.Helper()
	tests := []struct {
		name string
		fn   func(*testing.T, *suite)
	}{
		{"EmptyMailbox", testEmptyMailbox},
		{"NMessagesNTickets", testNMessages},
		{"RerunCreatesNothing", testRerun},
		{"MailBetweenSyncs", testMailBetweenSyncs},
		{"StateLossCreatesNoDuplicates", testStateLoss},
		{"PostActions", testPostActions},
		{"LargeMessageStreams", testLargeMessage},
		{"OversizedQuarantined", testOversized},
		{"MalformedQuarantined", testMalformed},
		{"CancelMidSync", testCancel},
		{"CursorSurvivesRestart", testDurableCursor},
	}
	tests = append(tests, directTests...)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
			defer cancel()
			h, err := newHarness(ctx, t)
			if err != nil {
				t.Fatalf("making harness: %v", err)
			}
			defer h.Close()
			tc.fn(t, &suite{t: t, ctx: ctx, h: h})
		})
	}
}

type suite struct {
	t   *testing.T
	ctx context.Context
	h   Harness
}

func (s *suite) deliver(raw []byte) {
	s.t.Helper()
	if err := s.h.Deliver(s.ctx, raw); err != nil {
		s.t.Fatalf("Deliver: %v", err)
	}
}

func (s *suite) deliverN(prefix string, n int) []string {
	s.t.Helper()
	var ids []string
	for i := 0; i < n; i++ {
		id := fmt.Sprintf("%s-%d-%s", prefix, i, sanitizeName(s.t.Name()))
		s.deliver(NewMessage(id, fmt.Sprintf("Pedido %d: impressão não funciona", i)))
		ids = append(ids, messageID(id))
	}
	return ids
}

// sync runs one Sync through a fresh connector, as a host would.
func (s *suite) sync(ctx context.Context, sink mailsync.Sink, opts ...mailsync.Option) (*mailsync.Report, error) {
	s.t.Helper()
	c, err := s.h.MakeConnector(ctx)
	if err != nil {
		s.t.Fatalf("MakeConnector: %v", err)
	}
	defer c.Close()
	m := mailsync.DefaultMapping(ticketType)
	if !c.Connection().ServesTicketType(ticketType) {
		s.t.Fatalf("the harness's connection must be connected with ticket type %q", ticketType)
	}
	return mailsync.Sync(ctx, c, m, sink, append([]mailsync.Option{mailsync.WithRetry(3, 50*time.Millisecond)}, opts...)...)
}

func (s *suite) mustSync(sink mailsync.Sink, opts ...mailsync.Option) *mailsync.Report {
	s.t.Helper()
	rep, err := s.sync(s.ctx, sink, opts...)
	if err != nil {
		s.t.Fatalf("Sync: %v", err)
	}
	for _, o := range rep.Messages {
		if o.Status == mailsync.StatusFailed {
			s.t.Errorf("message %s failed: %v", o.Key, o.Err)
		}
	}
	return rep
}

func ticketMessageIDs(sink *mailsync.MemorySink) []string {
	var ids []string
	for _, t := range sink.Tickets() {
		ids = append(ids, t.Fields["email_message_id"])
	}
	slices.Sort(ids)
	return ids
}

func (s *suite) expectTickets(sink *mailsync.MemorySink, want []string) {
	s.t.Helper()
	want = slices.Clone(want)
	slices.Sort(want)
	if got := ticketMessageIDs(sink); !slices.Equal(got, want) {
		s.t.Fatalf("tickets for Message-IDs\n got %q\nwant %q", got, want)
	}
	keys := map[string]bool{}
	for _, t := range sink.Tickets() {
		if keys[t.Source.MessageKey] {
			s.t.Errorf("two tickets from message key %q", t.Source.MessageKey)
		}
		keys[t.Source.MessageKey] = true
		if t.Source.MessageKey == "" || t.IdempotencyKey == "" {
			t := t
			s.t.Errorf("ticket without message key or idempotency key: %+v", t.Source)
		}
	}
}

func testEmptyMailbox(t *testing.T, s *suite) {
	sink := mailsync.NewMemorySink()
	rep := s.mustSync(sink)
	if rep.Seen != 0 || rep.Created != 0 || len(sink.Tickets()) != 0 {
		t.Fatalf("empty mailbox: seen %d, created %d, tickets %d", rep.Seen, rep.Created, len(sink.Tickets()))
	}
}

func testNMessages(t *testing.T, s *suite) {
	ids := s.deliverN("n", 5)
	sink := mailsync.NewMemorySink()
	rep := s.mustSync(sink)
	if rep.Created != 5 {
		t.Fatalf("created %d tickets, want 5 (report %+v)", rep.Created, rep)
	}
	s.expectTickets(sink, ids)
	titles := sink.FieldValues("title")
	for i, title := range titles {
		if want := fmt.Sprintf("Pedido %d: impressão não funciona", i); title != want {
			t.Errorf("title %d = %q, want %q", i, title, want)
		}
	}
	for _, tk := range sink.Tickets() {
		if tk.Fields["requester"] != "ana.sousa@example.com" || tk.Fields["requester_name"] != "Ana Sousa" {
			t.Errorf("requester = %q %q", tk.Fields["requester_name"], tk.Fields["requester"])
		}
		if tk.Type != ticketType || tk.Source.Connection == "" {
			t.Errorf("ticket type %q, source %+v", tk.Type, tk.Source)
		}
	}
}

func testRerun(t *testing.T, s *suite) {
	ids := s.deliverN("r", 3)
	sink := mailsync.NewMemorySink()
	state := mailsync.NewMemoryState()
	s.mustSync(sink, mailsync.WithState(state))
	rep := s.mustSync(sink, mailsync.WithState(state))
	if rep.Created != 0 {
		t.Fatalf("re-run created %d tickets", rep.Created)
	}
	s.expectTickets(sink, ids)
}

func testMailBetweenSyncs(t *testing.T, s *suite) {
	first := s.deliverN("a", 2)
	sink := mailsync.NewMemorySink()
	state := mailsync.NewMemoryState()
	s.mustSync(sink, mailsync.WithState(state))
	second := s.deliverN("b", 3)
	rep := s.mustSync(sink, mailsync.WithState(state))
	if rep.Created != 3 {
		t.Fatalf("second sync created %d, want 3", rep.Created)
	}
	s.expectTickets(sink, append(first, second...))
}

// A host that lost its state (or a provider that re-keys its messages, as a
// changed IMAP UIDVALIDITY does) still gets no duplicate tickets.
func testStateLoss(t *testing.T, s *suite) {
	ids := s.deliverN("s", 3)
	sink := mailsync.NewMemorySink()
	s.mustSync(sink, mailsync.WithState(mailsync.NewMemoryState()))
	rep := s.mustSync(sink, mailsync.WithState(mailsync.NewMemoryState()))
	if rep.Created != 0 || rep.AlreadyDone != 3 {
		t.Fatalf("after state loss: created %d, already done %d; want 0, 3", rep.Created, rep.AlreadyDone)
	}
	s.expectTickets(sink, ids)
}

func testPostActions(t *testing.T, s *suite) {
	supported := s.h.PostActions()
	// One mailbox, sink and state for all actions: each round delivers two
	// fresh messages and checks what happened to them.
	sink := mailsync.NewMemorySink()
	state := mailsync.NewMemoryState()
	for round, kind := range []mailsync.ActionKind{mailsync.LeaveUntouched, mailsync.MarkRead, mailsync.MoveToFolder, mailsync.Delete} {
		ids := s.deliverN(fmt.Sprintf("p%d", round), 2)
		action := mailsync.PostAction{Kind: kind}
		if kind == mailsync.MoveToFolder {
			action.Folder = MoveFolder
		}
		rep, err := s.sync(s.ctx, sink, mailsync.WithState(state), mailsync.WithPostAction(action))
		if err != nil {
			t.Fatalf("%s: Sync: %v", kind, err)
		}
		// The sink gets the tickets whatever the action; an unsupported
		// action makes their outcome "failed", so they are retried later.
		if n := len(sink.Tickets()); n != 2*(round+1) {
			t.Fatalf("%s: the sink has %d tickets after round %d, want %d", kind, n, round+1, 2*(round+1))
		}
		mine := 0
		for _, o := range rep.Messages {
			if !slices.Contains(ids, o.MessageID) {
				continue
			}
			mine++
			unsupported := kind != mailsync.LeaveUntouched && !slices.Contains(supported, kind)
			switch {
			case unsupported && (o.Status != mailsync.StatusFailed || !errors.Is(o.Err, mailsync.ErrUnsupported)):
				t.Errorf("%s is unsupported: outcome %s %v should be failed with ErrUnsupported", kind, o.Status, o.Err)
			case !unsupported && o.Status != mailsync.StatusCreated:
				t.Errorf("%s: message %s: %s %v", kind, o.Key, o.Status, o.Err)
			}
		}
		if mine != 2 {
			t.Errorf("%s: the report has %d outcomes for this round's messages, want 2", kind, mine)
		}
		if kind != mailsync.LeaveUntouched && !slices.Contains(supported, kind) {
			continue
		}
		box, err := s.h.Inspect(s.ctx)
		if err != nil {
			t.Fatalf("Inspect: %v", err)
		}
		for _, id := range ids {
			var found []MailboxMessage
			for _, m := range box {
				if m.MessageID == id {
					found = append(found, m)
				}
			}
			switch kind {
			case mailsync.LeaveUntouched:
				switch {
				case len(found) != 1 || found[0].Folder != SourceFolder:
					t.Errorf("untouched %s: %+v", id, found)
				case found[0].Seen && fetchMarksRead(s.h):
					t.Logf("untouched %s is marked read: the harness declares that fetching marks mail read (FetchMarksRead)", id)
				case found[0].Seen:
					t.Errorf("untouched %s is marked read: %+v (if the server marks mail read on fetch, declare it with FetchMarksReader)", id, found)
				}
			case mailsync.MarkRead:
				if len(found) != 1 || found[0].Folder != SourceFolder || !found[0].Seen {
					t.Errorf("mark read %s: %+v", id, found)
				}
			case mailsync.MoveToFolder:
				if len(found) != 1 || found[0].Folder != ServerMoveFolder(s.h) {
					t.Errorf("moved %s: %+v", id, found)
				}
			case mailsync.Delete:
				if len(found) != 0 {
					t.Errorf("deleted %s still there: %+v", id, found)
				}
			}
		}
		// Applied once: a re-run neither fails nor creates anything.
		rep, err = s.sync(s.ctx, sink, mailsync.WithState(state), mailsync.WithPostAction(action))
		if err != nil || rep.Created != 0 || rep.Failed != 0 {
			t.Errorf("%s: re-run: created %d failed %d err %v", kind, rep.Created, rep.Failed, err)
		}
	}
	if n := len(sink.Tickets()); n != 8 {
		t.Errorf("%d tickets after four rounds of two messages", n)
	}
}

func testLargeMessage(t *testing.T, s *suite) {
	raw, att := NewLargeMessage("large-"+sanitizeName(t.Name()), 21<<20)
	s.deliver(raw)
	sink := mailsync.NewMemorySink()
	sink.KeepBytes = 1 << 10
	rep := s.mustSync(sink)
	if rep.Created != 1 {
		t.Fatalf("created %d, want 1", rep.Created)
	}
	tk := sink.Tickets()[0]
	if len(tk.Attachments) != 1 {
		t.Fatalf("%d attachments, want 1", len(tk.Attachments))
	}
	sum := sha256.Sum256(att)
	if a := tk.Attachments[0]; a.Size != int64(len(att)) || a.SHA256 != hex.EncodeToString(sum[:]) || a.Filename != "data.bin" {
		t.Fatalf("attachment %q: %d bytes sha %s; want %d bytes sha %x", a.Filename, a.Size, a.SHA256, len(att), sum)
	}
}

func testOversized(t *testing.T, s *suite) {
	raw, _ := NewLargeMessage("big-"+sanitizeName(t.Name()), 300<<10)
	s.deliver(raw)
	ids := s.deliverN("o", 1)
	sink := mailsync.NewMemorySink()
	lim := mailsync.DefaultLimits()
	lim.MaxMessageBytes = 200 << 10
	rep := s.mustSync(sink, mailsync.WithLimits(lim))
	if rep.Quarantined != 1 || rep.Created != 1 {
		t.Fatalf("quarantined %d created %d; want 1 and 1", rep.Quarantined, rep.Created)
	}
	s.expectTickets(sink, ids)
	q := sink.QuarantinedMessages()[0]
	if !errors.Is(q.Err, mailsync.ErrOversized) || !q.Truncated {
		t.Fatalf("quarantined: err %v truncated %v; want ErrOversized, truncated", q.Err, q.Truncated)
	}
	if q.Raw.Size > lim.MaxMessageBytes {
		t.Fatalf("quarantine holds %d bytes of an oversized message, more than the limit", q.Raw.Size)
	}
}

func testMalformed(t *testing.T, s *suite) {
	bad := NewMalformedMessage("bad-" + sanitizeName(t.Name()))
	good1 := s.deliverN("g", 1)
	s.deliver(bad)
	good2 := s.deliverN("h", 1)
	sink := mailsync.NewMemorySink()
	state := mailsync.NewMemoryState()
	rep := s.mustSync(sink, mailsync.WithState(state))
	if rep.Created != 2 || rep.Quarantined != 1 {
		t.Fatalf("created %d quarantined %d; want 2 and 1", rep.Created, rep.Quarantined)
	}
	s.expectTickets(sink, append(good1, good2...))
	q := sink.QuarantinedMessages()[0]
	if !errors.Is(q.Err, mailsync.ErrMalformed) || q.Truncated || q.Raw.Size < int64(len(bad))*9/10 {
		t.Fatalf("quarantined: err %v, %d raw bytes (delivered %d), truncated %v", q.Err, q.Raw.Size, len(bad), q.Truncated)
	}
	rep = s.mustSync(sink, mailsync.WithState(state))
	if rep.Quarantined != 0 || len(sink.QuarantinedMessages()) != 1 {
		t.Fatalf("re-run quarantined again: %d", rep.Quarantined)
	}
}

func testCancel(t *testing.T, s *suite) {
	ids := s.deliverN("c", 10)
	sink := mailsync.NewMemorySink()
	state := mailsync.NewMemoryState()
	ctx, cancel := context.WithCancel(s.ctx)
	defer cancel()
	var created atomic.Int32
	sink.BeforeCreate = func(context.Context, *mailsync.Ticket) error {
		if created.Add(1) == 4 {
			cancel()
		}
		return nil
	}
	start := time.Now()
	rep, err := s.sync(ctx, sink, mailsync.WithState(state))
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled Sync returned %v, want context.Canceled", err)
	}
	if d := time.Since(start); d > 30*time.Second {
		t.Errorf("cancelled sync took %s", d)
	}
	if n := len(sink.Tickets()); n < 3 || n >= 10 {
		t.Fatalf("%d tickets after cancelling at the 4th", n)
	}
	if rep.Created == 0 {
		t.Errorf("report says nothing was created, the sink has %d", len(sink.Tickets()))
	}
	sink.BeforeCreate = nil
	s.mustSync(sink, mailsync.WithState(state))
	s.expectTickets(sink, ids)
}

func testDurableCursor(t *testing.T, s *suite) {
	path := filepath.Join(t.TempDir(), "state.db")
	first := s.deliverN("d", 3)
	sink := mailsync.NewMemorySink()
	syncWithStore := func() *mailsync.Report {
		st, err := boltstate.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		defer st.Close()
		return s.mustSync(sink, mailsync.WithState(st))
	}
	syncWithStore()
	second := s.deliverN("e", 2)
	rep := syncWithStore()
	if rep.Created != 2 {
		t.Fatalf("after restart: created %d, want 2", rep.Created)
	}
	s.expectTickets(sink, append(first, second...))
	rep = syncWithStore()
	if rep.Created != 0 || rep.Seen-rep.AlreadyDone != 0 {
		t.Fatalf("nothing-new sync after restart: seen %d, already done %d, created %d", rep.Seen, rep.AlreadyDone, rep.Created)
	}
	for _, o := range rep.Messages {
		if o.Status != mailsync.StatusAlreadyDone {
			t.Errorf("nothing-new sync downloaded %s (%s)", o.Key, o.Status)
		}
	}
}
