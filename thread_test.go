package mailsync_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mailsync/mailsync"
)

func parse(t *testing.T, raw string) *mailsync.Message {
	t.Helper()
	m, err := (&mailsync.Parser{}).Parse(strings.NewReader(raw))
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

// threadBox is a fake mailbox whose messages arrive between syncs.
type threadBox struct {
	*fakeConnector
	state *mailsync.MemoryState
	sink  *mailsync.MemorySink
	opts  []mailsync.Option
}

func newThreadBox(opts ...mailsync.Option) *threadBox {
	f := newFake(0)
	f.conn.User = "suporte@empresa.pt"
	return &threadBox{fakeConnector: f, state: mailsync.NewMemoryState(), sink: mailsync.NewMemorySink(), opts: opts}
}

// deliverSync adds raw to the mailbox and syncs; it returns the outcome of raw.
func (b *threadBox) deliverSync(t *testing.T, raw string) mailsync.Outcome {
	t.Helper()
	key := fmt.Sprint(len(b.msgs))
	b.msgs = append(b.msgs, fakeMsg{key: key, raw: []byte(raw)})
	rep, err := mailsync.Sync(context.Background(), b.fakeConnector, mapping, b.sink, append([]mailsync.Option{mailsync.WithState(b.state)}, b.opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range rep.Messages {
		if o.Key == key {
			return o
		}
	}
	t.Fatalf("no outcome for message %s: %+v", key, rep.Messages)
	return mailsync.Outcome{}
}

func mail(from, subject, msgID string, extra ...string) string {
	return "From: " + from + "\r\nTo: Suporte <suporte@empresa.pt>\r\nSubject: " + subject + "\r\nMessage-ID: <" + msgID + ">\r\n" +
		strings.Join(extra, "") + "Date: Mon, 23 Nov 2026 10:00:00 +0000\r\n\r\nbody of " + msgID + "\r\n"
}

func TestThreadingThroughSync(t *testing.T) {
	signer := &mailsync.MessageIDSigner{Key: "0123456789abcdef-signing-key", Domain: "helpdesk.empresa.pt"}
	b := newThreadBox(mailsync.WithThreading(mailsync.Threading{Rules: []mailsync.ThreadRule{mailsync.RuleReferences, mailsync.RuleSubject, mailsync.RulePlusAddress}, Signer: signer}))
	first := b.deliverSync(t, mail("João <joao@cliente.pt>", "Impressora não imprime", "first@cliente.pt", "Cc: maria@cliente.pt\r\n"))
	if first.Status != mailsync.StatusCreated {
		t.Fatalf("first mail: %+v", first)
	}
	tid := first.TicketID

	tests := []struct {
		name   string
		raw    string
		status mailsync.Status
		rule   mailsync.ThreadRule
	}{
		{"Outlook reply (RE:, In-Reply-To)", mail("João <joao@cliente.pt>", "RE: Impressora não imprime", "r1@cliente.pt", "In-Reply-To: <first@cliente.pt>\r\nReferences: <first@cliente.pt>\r\nThread-Topic: Impressora\r\n"), mailsync.StatusFollowUp, mailsync.RuleReferences},
		{"Gmail reply to a reply (References chain)", mail("Maria <maria@cliente.pt>", "Re: Impressora não imprime", "r2@cliente.pt", "In-Reply-To: <r1@cliente.pt>\r\nReferences: <first@cliente.pt> <r1@cliente.pt>\r\n"), mailsync.StatusFollowUp, mailsync.RuleReferences},
		{"Thunderbird German AW: with only References, from a participant", mail("Maria <maria@cliente.pt>", "AW: Impressora", "r3@cliente.pt", "References: <unknown@x> <r2@cliente.pt>\r\n"), mailsync.StatusFollowUp, mailsync.RuleReferences},
		{"reply by References from a non-participant: new linked ticket", mail("Jörg <joerg@partner.de>", "AW: Impressora", "r3b@partner.de", "References: <unknown@x> <r2@cliente.pt>\r\n"), mailsync.StatusCreated, ""},
		{"Portuguese RES: with subject reference from the requester", mail("joao@cliente.pt", "RES: [Ticket#"+tid+"] Impressora", "r4@cliente.pt"), mailsync.StatusFollowUp, mailsync.RuleSubject},
		{"Enc: forward with subject reference from a stranger", mail("Intruso <x@evil.example>", "Enc: [Ticket#"+tid+"] Impressora", "f1@evil.example"), mailsync.StatusCreated, ""},
		{"reply to the host's signed notification", mail("joao@cliente.pt", "Re: Atualização do pedido", "r5@cliente.pt", "In-Reply-To: <"+mustSign(t, signer, tid)+">\r\n"), mailsync.StatusFollowUp, mailsync.RuleReferences},
		{"genuine signed id from a stranger: new linked ticket", mail("x@evil.example", "Re: Atualização do pedido", "r5b@evil.example", "In-Reply-To: <"+mustSign(t, signer, tid)+">\r\n"), mailsync.StatusCreated, ""},
		{"forged signed id", mail("x@evil.example", "Re: Atualização", "r6@evil.example", "In-Reply-To: <tkt."+tid+".aaaaaaaaaaaaa.bbbbbbbbbbbbbbbb@helpdesk.empresa.pt>\r\n"), mailsync.StatusCreated, ""},
		{"plus address from a participant", strings.Replace(mail("maria@cliente.pt", "mais uma coisa", "p1@cliente.pt"), "To: Suporte <suporte@empresa.pt>", "To: suporte+"+tid+"@EMPRESA.pt", 1), mailsync.StatusFollowUp, mailsync.RulePlusAddress},
		{"new topic", mail("ana@outra.pt", "Pedido novo", "n1@outra.pt"), mailsync.StatusCreated, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			o := b.deliverSync(t, tc.raw)
			if o.Status != tc.status || o.Rule != tc.rule {
				t.Fatalf("got %s rule %q (ticket %s), want %s rule %q", o.Status, o.Rule, o.TicketID, tc.status, tc.rule)
			}
			if tc.status == mailsync.StatusFollowUp && !strings.EqualFold(o.TicketID, tid) {
				t.Fatalf("threaded onto %s, want %s", o.TicketID, tid)
			}
			if strings.Contains(tc.name, "new linked ticket") {
				if o.RelatedTicketID != tid || !strings.Contains(o.Reason, "not a participant") {
					t.Fatalf("want a new ticket linked to %s with the reason, got %+v", tid, o)
				}
				if st := storedTicket(b.sink, o.TicketID); st == nil || st.RelatedTicketID != tid {
					t.Fatalf("stored ticket %s is not linked to %s: %+v", o.TicketID, tid, st)
				}
			}
		})
	}
	var tk *mailsync.StoredTicket
	for _, x := range b.sink.Tickets() {
		if x.ID == tid {
			tk = x
		}
	}
	if len(tk.FollowUps) != 6 {
		t.Fatalf("%d follow-ups on %s, want 6", len(tk.FollowUps), tid)
	}
	// Closed ticket: the host refuses, the mail becomes a new linked ticket.
	b.sink.CloseTicket(tid)
	o := b.deliverSync(t, mail("joao@cliente.pt", "Re: Impressora", "late@cliente.pt", "In-Reply-To: <first@cliente.pt>\r\n"))
	if o.Status != mailsync.StatusCreated {
		t.Fatalf("reply to closed ticket: %+v", o)
	}
	last := b.sink.Tickets()[len(b.sink.Tickets())-1]
	if last.RelatedTicketID != tid {
		t.Fatalf("new ticket links %q, want %q", last.RelatedTicketID, tid)
	}
	// Re-running everything with a fresh state still creates nothing twice.
	before := len(b.sink.Tickets())
	b.state = mailsync.NewMemoryState()
	rep, err := mailsync.Sync(context.Background(), b.fakeConnector, mapping, b.sink, append([]mailsync.Option{mailsync.WithState(b.state)}, b.opts...)...)
	if err != nil || rep.Created != 0 || len(b.sink.Tickets()) != before {
		t.Fatalf("re-run: created %d, err %v", rep.Created, err)
	}
}

func mustSign(t *testing.T, s *mailsync.MessageIDSigner, ticket string) string {
	id, err := s.New(ticket)
	if err != nil {
		t.Fatal(err)
	}
	if got, ok := s.Verify(id); !ok || got != ticket {
		t.Fatalf("Verify(%s) = %q %v", id, got, ok)
	}
	return id
}

func TestBouncesFollowTheirTicket(t *testing.T) {
	m := mapping
	m.Routes = map[mailsync.Kind]mailsync.Route{mailsync.KindBounce: mailsync.RouteFollowUpOriginal, mailsync.KindAutoReply: mailsync.RouteDrop}
	b := newThreadBox()
	saved := mapping
	mapping = m
	defer func() { mapping = saved }()
	first := b.deliverSync(t, mail("joao@cliente.pt", "Pedido", "orig@cliente.pt"))
	// The host e-mailed João about the ticket and registered the Message-ID.
	if err := mailsync.RegisterOutgoing(context.Background(), b.state, "<notif-1@helpdesk.empresa.pt>", first.TicketID); err != nil {
		t.Fatal(err)
	}
	bounce := "From: MAILER-DAEMON@relay.empresa.pt\r\nTo: suporte@empresa.pt\r\nSubject: Undelivered Mail Returned to Sender\r\nMessage-ID: <b1@relay>\r\n" +
		"MIME-Version: 1.0\r\nContent-Type: multipart/report; report-type=delivery-status; boundary=\"r\"\r\n\r\n" +
		"--r\r\nContent-Type: text/plain\r\n\r\nCould not deliver.\r\n" +
		"--r\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; relay\r\n\r\nFinal-Recipient: rfc822; joao@cliente.pt\r\nAction: failed\r\nStatus: 5.1.1\r\n" +
		"--r\r\nContent-Type: text/rfc822-headers\r\n\r\nFrom: suporte@empresa.pt\r\nTo: joao@cliente.pt\r\nMessage-ID: <notif-1@helpdesk.empresa.pt>\r\nSubject: Pedido recebido\r\n" +
		"--r--\r\n"
	o := b.deliverSync(t, bounce)
	if o.Status != mailsync.StatusFollowUp || o.Rule != mailsync.RuleBounce || o.TicketID != first.TicketID || o.Kind != mailsync.KindBounce {
		t.Fatalf("bounce: %+v", o)
	}
	ooo := b.deliverSync(t, mail("joao@cliente.pt", "Automatic reply: Pedido", "ooo@cliente.pt", "Auto-Submitted: auto-replied\r\n"))
	if ooo.Status != mailsync.StatusDropped || ooo.Kind != mailsync.KindAutoReply {
		t.Fatalf("auto-reply routed to drop: %+v", ooo)
	}
	if n := len(b.sink.Tickets()); n != 1 {
		t.Fatalf("%d tickets, want 1", n)
	}
	// An invoice notification is auto-generated, not a reply: dropping
	// auto-replies must not drop it.
	inv := b.deliverSync(t, mail("faturas@fornecedor.pt", "Fatura 118", "inv@fornecedor.pt", "Auto-Submitted: auto-generated\r\n"))
	if inv.Status != mailsync.StatusCreated || inv.Kind != mailsync.KindAutoGenerated {
		t.Fatalf("auto-generated notification: %+v", inv)
	}
	if len(b.fakeConnector.acked) != 0 {
		t.Fatalf("nothing was configured to ack, acked %v", b.fakeConnector.acked)
	}
}

// A loop of 200 auto-replies from one address opens at most the limit's
// number of tickets; the rest is held on the latest one, none is lost.
func TestMailLoopIsRateLimited(t *testing.T) {
	limiter := mailsync.NewSenderLimiter(3, time.Hour)
	f := newFake(0)
	for i := 0; i < 200; i++ {
		f.msgs = append(f.msgs, fakeMsg{key: fmt.Sprint(i), raw: []byte(mail("robot@autoresponder.example", fmt.Sprintf("Auto: recebido %d", i), fmt.Sprintf("loop-%d@autoresponder.example", i), "Auto-Submitted: auto-replied\r\n"))})
	}
	f.msgs = append(f.msgs, fakeMsg{key: "human", raw: []byte(mail("ana@cliente.pt", "Pedido real", "human@cliente.pt"))})
	sink := mailsync.NewMemorySink()
	rep, err := mailsync.Sync(context.Background(), f, mapping, sink, mailsync.WithSenderLimit(limiter))
	if err != nil {
		t.Fatal(err)
	}
	robotTickets, followUps := 0, 0
	for _, tk := range sink.Tickets() {
		if tk.Fields["requester"] == "robot@autoresponder.example" {
			robotTickets++
			if tk.Classification.Kind != mailsync.KindAutoReply {
				t.Errorf("ticket %s classified %s", tk.ID, tk.Classification.Kind)
			}
		}
		followUps += len(tk.FollowUps)
	}
	if robotTickets != 3 || followUps != 197 || rep.FollowUps != 197 || rep.Created != 4 {
		t.Fatalf("robot tickets %d, follow-ups %d (report %d), created %d; want 3, 197, 197, 4", robotTickets, followUps, rep.FollowUps, rep.Created)
	}
	held := 0
	for _, o := range rep.Messages {
		if o.Rule == mailsync.RuleRateLimit {
			held++
		}
	}
	if held != 197 || !slices.ContainsFunc(sink.Tickets(), func(t *mailsync.StoredTicket) bool { return t.Fields["requester"] == "ana@cliente.pt" }) {
		t.Fatalf("held %d; the human's ticket must still be created", held)
	}
}

func TestRateLimitWithoutFollowUpsQuarantines(t *testing.T) {
	f := newFake(0)
	for i := 0; i < 5; i++ {
		f.msgs = append(f.msgs, fakeMsg{key: fmt.Sprint(i), raw: []byte(mail("robot@x.example", "Auto", fmt.Sprintf("q%d@x", i)))})
	}
	sink := plainSink{m: mailsync.NewMemorySink()}
	rep, err := mailsync.Sync(context.Background(), f, mapping, sink, mailsync.WithSenderLimit(mailsync.NewSenderLimiter(2, time.Hour)))
	if err != nil || rep.Created != 2 || rep.Quarantined != 3 {
		t.Fatalf("created %d quarantined %d err %v", rep.Created, rep.Quarantined, err)
	}
	for _, q := range sink.m.QuarantinedMessages() {
		if q.Raw.Size == 0 || !strings.Contains(q.Reason, "too many tickets") {
			t.Errorf("quarantined %+v", q)
		}
	}
}

// plainSink hides MemorySink's follow-up methods: a Sink, not a FollowUpSink.
type plainSink struct{ m *mailsync.MemorySink }

func (p plainSink) CreateTicket(ctx context.Context, t *mailsync.Ticket) (mailsync.Receipt, error) {
	return p.m.CreateTicket(ctx, t)
}
func (p plainSink) Quarantine(ctx context.Context, q *mailsync.Quarantined) error {
	return p.m.Quarantine(ctx, q)
}

// A MessageIDSigner gives the host's notifications Message-IDs that carry
// the ticket id and an HMAC: replies thread without any state, and a forged
// id does not.
func ExampleMessageIDSigner() {
	s := &mailsync.MessageIDSigner{Key: "a-long-random-secret-key", Domain: "helpdesk.example.com"}
	id, _ := s.New("4711") // put it in the notification's Message-ID header
	ticket, ok := s.Verify("<" + id + ">")
	fmt.Println(ticket, ok)
	_, ok = s.Verify("<tkt.4711.aaaaaaaaaaaaa.bbbbbbbbbbbbbbbb@helpdesk.example.com>")
	fmt.Println(ok)
	// Output:
	// 4711 true
	// false
}

// A message the sink already holds as a ticket is not stored again as a
// follow-up when a re-run routes it differently (here: its sender is now
// over the rate limit).
func TestReRunRoutedDifferentlyStoresNothingTwice(t *testing.T) {
	f := newFake(0)
	for i := 1; i <= 3; i++ {
		f.msgs = append(f.msgs, fakeMsg{key: fmt.Sprint(i), raw: []byte(mail("robot@x.example", fmt.Sprintf("Auto %d", i), fmt.Sprintf("rr%d@x", i)))})
	}
	sink := mailsync.NewMemorySink()
	if _, err := mailsync.Sync(context.Background(), f, mapping, sink); err != nil { // no limit: 3 tickets
		t.Fatal(err)
	}
	// The state is lost, a new mail from the same sender comes first, and
	// the sender is now limited to 1 ticket: the three old messages are
	// routed as follow-ups this time, but the sink already has them.
	f.msgs = append([]fakeMsg{{key: "0", raw: []byte(mail("robot@x.example", "Auto 0", "rr0@x"))}}, f.msgs...)
	rep, err := mailsync.Sync(context.Background(), f, mapping, sink, mailsync.WithSenderLimit(mailsync.NewSenderLimiter(1, time.Hour)))
	if err != nil {
		t.Fatal(err)
	}
	followUps := 0
	for _, tk := range sink.Tickets() {
		followUps += len(tk.FollowUps)
	}
	if len(sink.Tickets()) != 4 || followUps != 0 || rep.Created != 1 || rep.AlreadyDone != 3 {
		t.Fatalf("%d tickets, %d follow-ups, created %d, already done %d; want 4, 0, 1, 3", len(sink.Tickets()), followUps, rep.Created, rep.AlreadyDone)
	}
}
