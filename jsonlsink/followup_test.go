package jsonlsink_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mailsync/mailsync"
	"github.com/mailsync/mailsync/examples/customprovider/maildir"
	"github.com/mailsync/mailsync/jsonlsink"
)

func mail(from, subject, msgID string, extra ...string) string {
	return "From: " + from + "\r\nTo: Suporte <suporte@empresa.pt>\r\nSubject: " + subject + "\r\nMessage-ID: <" + msgID + ">\r\n" +
		strings.Join(extra, "") + "Date: Mon, 23 Nov 2026 10:00:00 +0000\r\n\r\nbody of " + msgID + "\r\n"
}

// box is a Maildir synced into one sink, message by message.
type box struct {
	dir   string
	n     int
	conn  *maildir.Connector
	state *mailsync.MemoryState
	opts  []mailsync.Option
}

func newBox(t *testing.T) *box {
	dir := filepath.Join(t.TempDir(), "Maildir")
	c, err := maildir.New(mailsync.Connection{Name: "Suporte", Enabled: true, User: dir, Protocol: maildir.Protocol, ConnectedWith: []string{"incident"}})
	if err != nil {
		t.Fatal(err)
	}
	return &box{dir: dir, conn: c, state: mailsync.NewMemoryState(),
		opts: []mailsync.Option{mailsync.WithThreading(mailsync.Threading{Rules: []mailsync.ThreadRule{mailsync.RuleReferences, mailsync.RuleSubject}})}}
}

func (b *box) sync(t *testing.T, sink mailsync.Sink) *mailsync.Report {
	t.Helper()
	rep, err := mailsync.Sync(context.Background(), b.conn, mailsync.DefaultMapping("incident"), sink, append([]mailsync.Option{mailsync.WithState(b.state)}, b.opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	return rep
}

// deliverSync adds raw and syncs; it returns raw's outcome.
func (b *box) deliverSync(t *testing.T, sink mailsync.Sink, raw string) mailsync.Outcome {
	t.Helper()
	b.n++
	name := fmt.Sprintf("%010d.m", b.n)
	if err := os.WriteFile(filepath.Join(b.dir, "new", name), []byte(raw), 0o600); err != nil {
		t.Fatal(err)
	}
	rep := b.sync(t, sink)
	for _, o := range rep.Messages {
		if o.Status != mailsync.StatusAlreadyDone {
			return o
		}
	}
	t.Fatalf("no outcome for %s: %+v", name, rep.Messages)
	return mailsync.Outcome{}
}

// The jsonl sink threads follow-ups exactly as MemorySink does, keeps
// them (and who may post) across reopening, and stores nothing twice.
func TestFollowUpsLikeMemorySink(t *testing.T) {
	script := func(tid string) []string {
		return []string{
			mail("João <joao@cliente.pt>", "RE: Impressora não imprime", "r1@cliente.pt", "In-Reply-To: <first@cliente.pt>\r\nReferences: <first@cliente.pt>\r\n"),
			mail("joao@cliente.pt", "RES: [Ticket#"+tid+"] Impressora", "r2@cliente.pt"),
			mail("Intruso <x@evil.example>", "Enc: [Ticket#"+tid+"] Impressora", "f1@evil.example"),
			mail("Maria <MARIA@cliente.pt>", "[#"+tid+"] eu também", "r3@cliente.pt"),                                                    // a Cc of the first mail
			mail("Maria <maria@cliente.pt>", "AW: Impressora", "r4@cliente.pt", "References: <r3@cliente.pt>\r\nCc: ana@partner.de\r\n"), // a follow-up that brings in a Cc
			mail("ana@partner.de", "[Ticket#"+tid+"] from a Cc of a follow-up", "r5@partner.de"),
			mail("ana@outra.pt", "Pedido novo", "n1@outra.pt"),
			"From: MAILER-DAEMON@empresa.pt\r\nTo: suporte@empresa.pt\r\nSubject: Undelivered Mail Returned to Sender\r\nMessage-ID: <b1@empresa.pt>\r\nAuto-Submitted: auto-replied\r\nContent-Type: text/plain\r\n\r\nbounce\r\n",
		}
	}
	const fromFollowUpCc = 5 // the script's message from a Cc of a follow-up
	first := mail("João <joao@cliente.pt>", "Impressora não imprime", "first@cliente.pt", "Cc: maria@cliente.pt\r\n")

	// Reference: MemorySink.
	mem := mailsync.NewMemorySink()
	mb := newBox(t)
	o := mb.deliverSync(t, mem, first)
	var want []mailsync.Outcome
	for _, raw := range script(o.TicketID) {
		want = append(want, mb.deliverSync(t, mem, raw))
	}

	path := filepath.Join(t.TempDir(), "tickets.jsonl")
	open := func() *jsonlsink.Sink {
		s, err := jsonlsink.Open(path, true)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	jb := newBox(t)
	s := open()
	o = jb.deliverSync(t, s, first)
	tid := o.TicketID
	for i, raw := range script(tid) {
		s.Close()
		s = open() // everything threading needs survives a restart
		got := jb.deliverSync(t, s, raw)
		if i == fromFollowUpCc {
			// MemorySink only allows the first mail's addresses; jsonlsink
			// also allows those who took part in a follow-up.
			if want[i].Status != mailsync.StatusCreated || got.Status != mailsync.StatusFollowUp || got.Rule != mailsync.RuleSubject {
				t.Errorf("message %d (Cc of a follow-up): jsonlsink %s %q, MemorySink %s", i, got.Status, got.Rule, want[i].Status)
			}
			continue
		}
		if got.Status != want[i].Status || got.Rule != want[i].Rule || got.Kind != want[i].Kind {
			t.Errorf("message %d: jsonlsink %s rule %q kind %q; MemorySink %s rule %q kind %q", i, got.Status, got.Rule, got.Kind, want[i].Status, want[i].Rule, want[i].Kind)
		}
		if got.Status == mailsync.StatusFollowUp && got.TicketID != tid {
			t.Errorf("message %d threaded onto %s, want %s", i, got.TicketID, tid)
		}
	}
	memFollowUps := 0
	for _, tk := range mem.Tickets() {
		memFollowUps += len(tk.FollowUps)
	}
	memFollowUps++ // fromFollowUpCc
	if s.Tickets() != len(mem.Tickets())-1 || s.FollowUps() != memFollowUps || memFollowUps < 5 {
		t.Fatalf("jsonlsink %d tickets %d follow-ups; MemorySink %d and %d", s.Tickets(), s.FollowUps(), len(mem.Tickets()), memFollowUps)
	}

	// A re-run with a lost state stores nothing twice.
	jb.state = mailsync.NewMemoryState()
	rep := jb.sync(t, s)
	if rep.Created != 0 || rep.FollowUps != 0 || rep.AlreadyDone != rep.Seen {
		t.Fatalf("re-run: %+v", rep)
	}
	s.Close()

	recs := readAll(t, path)
	kinds := map[string]int{}
	for _, r := range recs {
		kinds[r.Kind]++
		if r.Classification == nil || r.Classification.Kind == "" {
			t.Errorf("%s %s has no classification", r.Kind, r.IdempotencyKey)
		}
		if r.Kind == jsonlsink.KindFollowUp && (r.TicketID != tid || r.Rule == "" || r.From == "") {
			t.Errorf("follow-up record %+v", r)
		}
	}
	if kinds[jsonlsink.KindTicket] != len(mem.Tickets())-1 || kinds[jsonlsink.KindFollowUp] != memFollowUps {
		t.Fatalf("records %v", kinds)
	}
	if last := recs[len(recs)-1]; last.Classification.Kind != mailsync.KindAutoReply && last.Classification.Kind != mailsync.KindBounce {
		t.Errorf("the bounce was recorded as %q", last.Classification.Kind)
	}
}

// Tickets and follow-ups share one key space; a follow-up to an unknown
// ticket is refused, so the engine opens a linked ticket instead.
func TestFollowUpKeySpace(t *testing.T) {
	ctx := context.Background()
	s, err := jsonlsink.Open(filepath.Join(t.TempDir(), "t.jsonl"), false)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	msg := &mailsync.Message{From: mailsync.Address{Address: "Joao@Cliente.pt"}, To: []mailsync.Address{{Address: "suporte@empresa.pt"}}}
	if _, err := s.CreateTicket(ctx, &mailsync.Ticket{IdempotencyKey: "t1", Message: msg}); err != nil {
		t.Fatal(err)
	}
	fu := &mailsync.FollowUp{Ticket: mailsync.Ticket{IdempotencyKey: "f1", Message: msg}, TicketID: "t1", Rule: mailsync.RuleReferences}
	if r, err := s.AddFollowUp(ctx, fu); err != nil || r.Duplicate || r.TicketID != "t1" {
		t.Fatalf("follow-up: %+v %v", r, err)
	}
	if r, err := s.CreateTicket(ctx, &mailsync.Ticket{IdempotencyKey: "f1"}); err != nil || !r.Duplicate || r.TicketID != "t1" {
		t.Fatalf("a ticket with a follow-up's key: %+v %v", r, err)
	}
	if r, err := s.AddFollowUp(ctx, &mailsync.FollowUp{Ticket: mailsync.Ticket{IdempotencyKey: "t1"}, TicketID: "t1"}); err != nil || !r.Duplicate {
		t.Fatalf("a follow-up with a ticket's key: %+v %v", r, err)
	}
	if _, err := s.AddFollowUp(ctx, &mailsync.FollowUp{Ticket: mailsync.Ticket{IdempotencyKey: "f2"}, TicketID: "nope"}); !errors.Is(err, mailsync.ErrFollowUpRefused) {
		t.Fatalf("follow-up to an unknown ticket: %v", err)
	}
	if info, _ := s.TicketInfo(ctx, "f1", msg.From); info.Exists {
		t.Fatal("a follow-up's key is not a ticket id")
	}
	if info, _ := s.TicketInfo(ctx, "t1", mailsync.Address{Address: "JOAO@cliente.PT"}); !info.Exists || !info.SenderAllowed || info.Closed {
		t.Fatalf("requester: %+v", info)
	}
	if info, _ := s.TicketInfo(ctx, "t1", mailsync.Address{Address: "x@evil.example"}); info.SenderAllowed {
		t.Fatal("a stranger may post")
	}
	if info, _ := s.TicketInfo(ctx, "t1", mailsync.Address{}); info.SenderAllowed {
		t.Fatal("an empty sender may post")
	}
	if s.Tickets() != 1 || s.FollowUps() != 1 {
		t.Fatalf("%d tickets %d follow-ups", s.Tickets(), s.FollowUps())
	}
}
