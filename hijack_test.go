package mailsync_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mailsync/mailsync"
	"github.com/mailsync/mailsync/boltstate"
)

func storedTicket(s *mailsync.MemorySink, id string) *mailsync.StoredTicket {
	for _, t := range s.Tickets() {
		if t.ID == id {
			return t
		}
	}
	return nil
}

// A stranger's mail that reuses the customer's Message-ID must not take the
// id over: the customer's later replies still reach the customer's ticket.
func TestReusedMessageIDDoesNotRepointThread(t *testing.T) {
	for _, sameSync := range []bool{false, true} {
		t.Run(fmt.Sprintf("same sync %v", sameSync), func(t *testing.T) {
			b := newThreadBox()
			customer := mail("João <joao@cliente.pt>", "Impressora", "orig@cliente.pt")
			stranger := mail("Intruso <x@evil.example>", "Olá", "orig@cliente.pt") // same Message-ID, other content
			var first mailsync.Outcome
			if sameSync {
				b.msgs = append(b.msgs, fakeMsg{key: "a", raw: []byte(customer)}, fakeMsg{key: "b", raw: []byte(stranger)})
				rep, err := mailsync.Sync(context.Background(), b.fakeConnector, mapping, b.sink, mailsync.WithState(b.state))
				if err != nil {
					t.Fatal(err)
				}
				first = rep.Messages[0]
			} else {
				first = b.deliverSync(t, customer)
				b.deliverSync(t, stranger)
			}
			if n := len(b.sink.Tickets()); n != 2 {
				t.Fatalf("%d tickets, want 2 (the stranger's mail is its own ticket)", n)
			}
			reply := b.deliverSync(t, mail("João <joao@cliente.pt>", "Re: Impressora", "r1@cliente.pt", "In-Reply-To: <orig@cliente.pt>\r\n"))
			if reply.Status != mailsync.StatusFollowUp || reply.TicketID != first.TicketID {
				t.Fatalf("the customer's reply went to %s (%s), want a follow-up on %s", reply.TicketID, reply.Status, first.TicketID)
			}
		})
	}
}

// The first ticket to own a Message-ID keeps it, in every State.
func TestStateThreadsFirstOwnerKeepsID(t *testing.T) {
	bolt, err := boltstate.Open(filepath.Join(t.TempDir(), "s.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer bolt.Close()
	for name, st := range map[string]mailsync.State{"memory": mailsync.NewMemoryState(), "bolt": bolt} {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			if err := st.Record(ctx, "c", mailsync.Record{Threads: map[string]string{"id@x": "T1"}}); err != nil {
				t.Fatal(err)
			}
			if err := st.Record(ctx, "c", mailsync.Record{Threads: map[string]string{"id@x": "T2"}}); err != nil {
				t.Fatal(err)
			}
			got, err := st.Threads(ctx, []string{"id@x"})
			if err != nil || got["id@x"] != "T1" {
				t.Fatalf("Threads = %v, %v; want T1", got, err)
			}
		})
	}
}

// With AllowNonParticipants a colleague's reply joins the ticket, flagged.
func TestAllowNonParticipantsFlagsFollowUp(t *testing.T) {
	b := newThreadBox(mailsync.WithThreading(mailsync.Threading{AllowNonParticipants: true}))
	first := b.deliverSync(t, mail("João <joao@cliente.pt>", "Impressora", "orig@cliente.pt"))
	o := b.deliverSync(t, mail("Colega <colega@cliente.pt>", "Re: Impressora", "c1@cliente.pt", "In-Reply-To: <orig@cliente.pt>\r\n"))
	if o.Status != mailsync.StatusFollowUp || o.TicketID != first.TicketID || !strings.Contains(o.Reason, "not a participant") {
		t.Fatalf("colleague's reply: %+v", o)
	}
	fu := storedTicket(b.sink, first.TicketID).FollowUps
	if len(fu) != 1 || !fu[0].NonParticipant {
		t.Fatalf("follow-up not flagged: %+v", fu)
	}
	// The participant's own reply is not flagged.
	o = b.deliverSync(t, mail("João <joao@cliente.pt>", "Re: Impressora", "r2@cliente.pt", "In-Reply-To: <orig@cliente.pt>\r\n"))
	if fu := storedTicket(b.sink, first.TicketID).FollowUps; o.Status != mailsync.StatusFollowUp || len(fu) != 2 || fu[1].NonParticipant {
		t.Fatalf("participant's reply: %+v %+v", o, fu)
	}
}

// One message whose Message-ID is 40 KB (bbolt refuses keys over 32 KiB)
// must not stop the mailbox: with a durable State and threading, three runs
// over 120 mails make 120 tickets, and the third run has nothing to do.
func TestHostileMessageIDDoesNotStopMailbox(t *testing.T) {
	st, err := boltstate.Open(filepath.Join(t.TempDir(), "s.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	f := newFake(0)
	f.conn.User = "suporte@empresa.pt"
	for i := 0; i < 120; i++ {
		id := fmt.Sprintf("m%d@cliente.pt", i)
		if i == 60 {
			id = strings.Repeat("x", 40<<10) + "@evil.example"
		}
		f.msgs = append(f.msgs, fakeMsg{key: fmt.Sprint(i), raw: []byte(mail(fmt.Sprintf("c%d@cliente.pt", i), fmt.Sprintf("Pedido %d", i), id))})
	}
	sink := mailsync.NewMemorySink()
	for run := 1; run <= 3; run++ {
		rep, err := mailsync.Sync(context.Background(), f, mapping, sink, mailsync.WithState(st), mailsync.WithBatchSize(25))
		if err != nil {
			t.Fatalf("run %d: %v", run, err)
		}
		if run > 1 && rep.AlreadyDone != 120 {
			t.Fatalf("run %d: %d already done, want 120 (%+v)", run, rep.AlreadyDone, rep)
		}
	}
	if n := len(sink.Tickets()) + len(sink.QuarantinedMessages()); n != 120 {
		t.Fatalf("%d tickets and quarantined, want 120", n)
	}
	// A reply to the hostile message still finds its ticket.
	long := strings.Repeat("x", 40<<10) + "@evil.example"
	f.msgs = append(f.msgs, fakeMsg{key: "reply", raw: []byte(mail("c60@cliente.pt", "Re: Pedido 60", "r@cliente.pt", "In-Reply-To: <"+long+">\r\n"))})
	rep, err := mailsync.Sync(context.Background(), f, mapping, sink, mailsync.WithState(st))
	if err != nil {
		t.Fatal(err)
	}
	last := rep.Messages[len(rep.Messages)-1]
	if last.Status != mailsync.StatusFollowUp {
		t.Fatalf("reply to the long id: %+v", last)
	}
}

// A State that cannot store one message's thread entry degrades to a
// warning on that message; the sync goes on and records it as done.
func TestThreadRecordFailureIsAWarning(t *testing.T) {
	st := &pickyState{MemoryState: mailsync.NewMemoryState(), refuse: "bad@cliente.pt"}
	f := newFake(0)
	for i, id := range []string{"a@cliente.pt", "bad@cliente.pt", "c@cliente.pt"} {
		f.msgs = append(f.msgs, fakeMsg{key: fmt.Sprint(i), raw: []byte(mail("x@cliente.pt", "s", id))})
	}
	sink := mailsync.NewMemorySink()
	rep, err := mailsync.Sync(context.Background(), f, mapping, sink, mailsync.WithState(st))
	if err != nil {
		t.Fatal(err)
	}
	if rep.Created != 3 || len(st.ProcessedKeys(f.conn.Name)) != 3 {
		t.Fatalf("report %+v, processed %v", rep, st.ProcessedKeys(f.conn.Name))
	}
	var warned int
	for _, o := range rep.Messages {
		warned += len(o.Warnings)
		if len(o.Warnings) > 0 && o.MessageID != "bad@cliente.pt" {
			t.Fatalf("warning on the wrong message: %+v", o)
		}
	}
	if warned != 1 {
		t.Fatalf("%d warnings, want 1: %+v", warned, rep.Messages)
	}
}

// pickyState refuses any Record whose Threads name one Message-ID.
type pickyState struct {
	*mailsync.MemoryState
	refuse string
}

func (s *pickyState) Record(ctx context.Context, conn string, r mailsync.Record) error {
	if _, bad := r.Threads[s.refuse]; bad {
		return errors.New("picky: value too large")
	}
	return s.MemoryState.Record(ctx, conn, r)
}

// A message the sink refuses in every sync is quarantined after the limit
// (default 3), so it stops holding the cursor back; the others flow.
func TestRepeatedSinkFailureQuarantines(t *testing.T) {
	f := newFake(0)
	for i := 0; i < 5; i++ {
		f.msgs = append(f.msgs, fakeMsg{key: fmt.Sprint(i), raw: []byte(mail("x@cliente.pt", fmt.Sprintf("s%d", i), fmt.Sprintf("m%d@cliente.pt", i)))})
	}
	sink := &refusingSink{MemorySink: mailsync.NewMemorySink(), refuse: "m2@cliente.pt"}
	st := mailsync.NewMemoryState()
	var rep *mailsync.Report
	for run := 1; run <= 3; run++ {
		var err error
		rep, err = mailsync.Sync(context.Background(), f, mapping, sink, mailsync.WithState(st), mailsync.WithRetry(1, 0))
		if err != nil {
			t.Fatal(err)
		}
		want := mailsync.StatusFailed
		if run == 3 {
			want = mailsync.StatusQuarantined
		}
		for _, o := range rep.Messages {
			if o.Key == "2" && o.Status != want {
				t.Fatalf("run %d: message 2 is %s, want %s", run, o.Status, want)
			}
		}
	}
	q := sink.QuarantinedMessages()
	if len(q) != 1 || !errors.Is(q[0].Err, mailsync.ErrSink) || len(sink.Tickets()) != 4 {
		t.Fatalf("quarantined %+v, %d tickets", q, len(sink.Tickets()))
	}
	if rep.Cursor == "" {
		t.Fatal("the cursor did not move once the message was quarantined")
	}
}

type refusingSink struct {
	*mailsync.MemorySink
	refuse string
}

func (s *refusingSink) CreateTicket(ctx context.Context, t *mailsync.Ticket) (mailsync.Receipt, error) {
	if t.Message.MessageID == s.refuse {
		return mailsync.Receipt{}, errors.New("open attachments/…: file name too long")
	}
	return s.MemorySink.CreateTicket(ctx, t)
}

// A mail the parser gives up on is quarantined with the Message-ID its raw
// header still carries, so the host can tell which mail it is; so is one
// downloaded and found too large to parse (its announced size was wrong).
func TestQuarantinedUnparsedMailHasMessageID(t *testing.T) {
	unparsable := "From: Ana <ana@cliente.pt>\r\nMessage-ID:\r\n <broken-1@cliente.pt>\r\nSubject: x\r\n" +
		strings.Repeat("X-Spam: y\r\n", 200) + "\r\nbody\r\n" // a header larger than MaxHeaderBytes
	big := "From: Ana <ana@cliente.pt>\r\nMessage-ID: <big-1@cliente.pt>\r\nSubject: big\r\n\r\n" + strings.Repeat("z", 8192) + "\r\n"
	b := newThreadBox(mailsync.WithLimits(mailsync.Limits{MaxMessageBytes: 4096, MaxHeaderBytes: 1024}))
	b.msgs = append(b.msgs, fakeMsg{key: "u", raw: []byte(unparsable)}, fakeMsg{key: "b", raw: []byte(big)})
	rep, err := mailsync.Sync(context.Background(), lyingSizes{b.fakeConnector}, mapping, b.sink, append([]mailsync.Option{mailsync.WithState(b.state)}, b.opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Quarantined != 2 {
		t.Fatalf("report %+v, want 2 quarantined", rep)
	}
	want := map[string]string{"u": "broken-1@cliente.pt", "b": "big-1@cliente.pt"}
	for _, q := range b.sink.QuarantinedMessages() {
		if got := q.Source.MessageID; got != want[q.Source.MessageKey] {
			t.Errorf("quarantined %s (%s): Source.MessageID %q, want %q", q.Source.MessageKey, q.Reason, got, want[q.Source.MessageKey])
		}
	}
	for _, o := range rep.Messages {
		if o.MessageID != want[o.Key] {
			t.Errorf("outcome %s: MessageID %q, want %q", o.Key, o.MessageID, want[o.Key])
		}
	}
}

// lyingSizes announces every message as small, so it is downloaded.
type lyingSizes struct{ *fakeConnector }

func (l lyingSizes) List(ctx context.Context, c mailsync.Cursor) (*mailsync.Listing, error) {
	ls, err := l.fakeConnector.List(ctx, c)
	if ls != nil {
		for i := range ls.Messages {
			ls.Messages[i].Size = 100
		}
	}
	return ls, err
}
