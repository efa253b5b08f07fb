// Package sinktest is the conformance suite for mailsync.Sink (and
// FollowUpSink) implementations: the rules Sync relies on, run against a
// fresh sink per test. A host runs it on its own sink:
//
//	func TestMySink(t *testing.T) {
//		sinktest.Run(t, func(t *testing.T) sinktest.Harness {
//			db := openTestDB(t)
//			return sinktest.Harness{Sink: newSink(db), Reopen: func() mailsync.Sink { return newSink(db) }}
//		})
//	}
//
// When the sink implements mailsync.FollowUpSink, its rules are tested too.
package sinktest

import (
	"context"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/mailsync/mailsync"
)

// Harness is one fresh sink.
type Harness struct {
	// Sink is the sink under test, empty.
	Sink mailsync.Sink
	// Reopen, when set, returns the same sink as a new process would see it
	// (same storage, new value), to test that idempotency survives a restart.
	Reopen func() mailsync.Sink
}

// Maker returns a fresh Harness for one test (cleanup through t.Cleanup).
type Maker func(t *testing.T) Harness

// Run runs every rule as a subtest.
func Run(t *testing.T, newHarness Maker) {
	t.Helper()
	tests := []struct {
		name string
		fn   func(*testing.T, Harness)
	}{
		{"CreateTicketIsIdempotent", testCreateIdempotent},
		{"DistinctKeysDistinctTickets", testDistinct},
		{"IdempotencySurvivesReopen", testReopen},
		{"QuarantineIsIdempotent", testQuarantine},
		{"AttachmentsReadDuringCall", testAttachments},
		{"CancelledContext", testCancelled},
		{"FollowUpUnknownTicket", testFollowUpUnknown},
		{"FollowUpParticipants", testFollowUpParticipants},
		{"FollowUpSharesKeySpace", testFollowUpKeySpace},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, newHarness(t)) })
	}
}

var ctx = context.Background()

// Ticket returns a ticket parsed from a small mail from sender with the
// given idempotency key, and one text attachment when withAttachment.
func Ticket(t *testing.T, key, sender string, withAttachment bool) *mailsync.Ticket {
	t.Helper()
	raw := "From: " + sender + "\r\nTo: suporte@empresa.pt\r\nCc: colega@cliente.pt\r\nSubject: Pedido " + key + "\r\nMessage-ID: <" + key + "@cliente.pt>\r\nDate: Mon, 23 Nov 2026 10:00:00 +0000\r\nMIME-Version: 1.0\r\n"
	if withAttachment {
		raw += "Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nA impressora não imprime.\r\n--b\r\nContent-Type: text/plain; name=log.txt\r\nContent-Disposition: attachment; filename=log.txt\r\n\r\nerror 42\r\n--b--\r\n"
	} else {
		raw += "Content-Type: text/plain; charset=utf-8\r\n\r\nA impressora não imprime.\r\n"
	}
	msg, err := (&mailsync.Parser{}).Parse(strings.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { msg.Close() })
	tk := &mailsync.Ticket{IdempotencyKey: key, Type: "incident", Message: msg,
		Fields:         map[string]string{"title": msg.Subject, "requester": msg.From.Address, "description": msg.Text},
		Source:         mailsync.Source{Connection: "conformance", Provider: "test", MessageKey: key, MessageID: msg.MessageID, Received: time.Now().UTC()},
		Classification: mailsync.Classification{Kind: mailsync.KindNormal}}
	if withAttachment {
		tk.Attachments = msg.Attachments
		tk.Fields["attachments"] = "log.txt"
	}
	return tk
}

func create(t *testing.T, s mailsync.Sink, tk *mailsync.Ticket) mailsync.Receipt {
	t.Helper()
	rc, err := s.CreateTicket(ctx, tk)
	if err != nil {
		t.Fatalf("CreateTicket(%s): %v", tk.IdempotencyKey, err)
	}
	if rc.TicketID == "" {
		t.Fatalf("CreateTicket(%s) returned no ticket id", tk.IdempotencyKey)
	}
	return rc
}

func testCreateIdempotent(t *testing.T, h Harness) {
	first := create(t, h.Sink, Ticket(t, "ms1-aaaa", "joao@cliente.pt", false))
	if first.Duplicate {
		t.Fatal("the first CreateTicket reported a duplicate")
	}
	again := create(t, h.Sink, Ticket(t, "ms1-aaaa", "joao@cliente.pt", false))
	if !again.Duplicate || again.TicketID != first.TicketID {
		t.Fatalf("second CreateTicket with the same key: %+v, want Duplicate of %s", again, first.TicketID)
	}
}

func testDistinct(t *testing.T, h Harness) {
	a := create(t, h.Sink, Ticket(t, "ms1-0001", "joao@cliente.pt", false))
	b := create(t, h.Sink, Ticket(t, "ms1-0002", "joao@cliente.pt", false)) // same sender, same text: still another mail
	if b.Duplicate || a.TicketID == b.TicketID {
		t.Fatalf("two keys gave %+v and %+v", a, b)
	}
}

func testReopen(t *testing.T, h Harness) {
	if h.Reopen == nil {
		t.Skip("the harness has no Reopen (an in-memory sink)")
	}
	first := create(t, h.Sink, Ticket(t, "ms1-bbbb", "joao@cliente.pt", true))
	again := create(t, h.Reopen(), Ticket(t, "ms1-bbbb", "joao@cliente.pt", true))
	if !again.Duplicate || again.TicketID != first.TicketID {
		t.Fatalf("after reopening, the same key gave %+v, want Duplicate of %s", again, first.TicketID)
	}
}

func testQuarantine(t *testing.T, h Harness) {
	raw := "From: x\r\nContent-Type: multipart/mixed; boundary=\"\r\n\r\nbroken"
	q := func() *mailsync.Quarantined {
		return &mailsync.Quarantined{IdempotencyKey: "ms1-cccc", Raw: strings.NewReader(raw), Size: int64(len(raw)),
			Source: mailsync.Source{Connection: "conformance", MessageKey: "k"},
			Err:    &mailsync.MessageError{Key: "k", Kind: mailsync.ErrMalformed, Reason: "broken boundary"}}
	}
	for i := 0; i < 2; i++ {
		if err := h.Sink.Quarantine(ctx, q()); err != nil {
			t.Fatalf("Quarantine #%d: %v", i+1, err)
		}
	}
}

// countingReader records how much of an attachment the sink read.
type countingReader struct {
	r io.Reader
	n *int64
}

func (c countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	*c.n += int64(n)
	return n, err
}
func (c countingReader) Close() error { return nil }

func testAttachments(t *testing.T, h Harness) {
	tk := Ticket(t, "ms1-dddd", "joao@cliente.pt", true)
	if len(tk.Attachments) != 1 {
		t.Fatalf("test mail has %d attachments", len(tk.Attachments))
	}
	var read int64
	a := tk.Attachments[0]
	tk.Attachments = []*mailsync.Attachment{mailsync.NewAttachment(a.Filename, a.ContentType, a.Size, func() (io.ReadCloser, error) {
		rc, err := a.Open()
		if err != nil {
			return nil, err
		}
		return struct {
			io.Reader
			io.Closer
		}{countingReader{rc, &read}, rc}, nil
	})}
	create(t, h.Sink, tk)
	// A sink that stores attachments reads them whole during the call (the
	// readers are invalid afterwards); one that does not store them must
	// not claim it does (see the Sink doc on destructive post-actions).
	if read != 0 && read != a.Size {
		t.Fatalf("the sink read %d of %d attachment bytes: a partial read stores a cut file", read, a.Size)
	}
}

func testCancelled(t *testing.T, h Harness) {
	c, cancel := context.WithCancel(ctx)
	cancel()
	rc, err := h.Sink.CreateTicket(c, Ticket(t, "ms1-eeee", "joao@cliente.pt", false))
	if err == nil {
		// Storing despite the cancel is allowed; claiming a duplicate is not.
		if rc.Duplicate || rc.TicketID == "" {
			t.Fatalf("CreateTicket on a cancelled context: %+v", rc)
		}
	}
	// Whatever happened, the ticket can be created (or found) afterwards.
	create(t, h.Sink, Ticket(t, "ms1-eeee", "joao@cliente.pt", false))
}

func followUps(t *testing.T, h Harness) mailsync.FollowUpSink {
	fs, ok := h.Sink.(mailsync.FollowUpSink)
	if !ok {
		t.Skip("the sink does not implement mailsync.FollowUpSink (optional)")
	}
	return fs
}

func testFollowUpUnknown(t *testing.T, h Harness) {
	fs := followUps(t, h)
	info, err := fs.TicketInfo(ctx, "no-such-ticket", mailsync.Address{Address: "joao@cliente.pt"})
	if err != nil {
		t.Fatal(err)
	}
	if info.Exists || info.SenderAllowed {
		t.Fatalf("TicketInfo of an unknown ticket: %+v", info)
	}
	_, err = fs.AddFollowUp(ctx, &mailsync.FollowUp{Ticket: *Ticket(t, "ms1-ffff", "joao@cliente.pt", false), TicketID: "no-such-ticket", Rule: mailsync.RuleReferences})
	if err == nil {
		t.Fatal("AddFollowUp to an unknown ticket succeeded")
	}
}

func testFollowUpParticipants(t *testing.T, h Harness) {
	fs := followUps(t, h)
	id := create(t, fs, Ticket(t, "ms1-1000", "Joao@Cliente.pt", false)).TicketID
	for sender, want := range map[string]bool{"joao@cliente.pt": true, "colega@cliente.pt": true, "x@evil.example": false} {
		info, err := fs.TicketInfo(ctx, id, mailsync.Address{Address: sender})
		if err != nil {
			t.Fatal(err)
		}
		if !info.Exists || info.SenderAllowed != want {
			t.Errorf("TicketInfo(%s, %s) = %+v, want Exists and SenderAllowed=%v", id, sender, info, want)
		}
	}
	fu := &mailsync.FollowUp{Ticket: *Ticket(t, "ms1-1001", "joao@cliente.pt", false), TicketID: id, Rule: mailsync.RuleReferences}
	rc, err := fs.AddFollowUp(ctx, fu)
	if err != nil || rc.Duplicate || rc.TicketID != id {
		t.Fatalf("AddFollowUp: %+v %v", rc, err)
	}
	rc, err = fs.AddFollowUp(ctx, fu)
	if err != nil || !rc.Duplicate || rc.TicketID != id {
		t.Fatalf("AddFollowUp again: %+v %v, want Duplicate on %s", rc, err, id)
	}
}

func testFollowUpKeySpace(t *testing.T, h Harness) {
	fs := followUps(t, h)
	id := create(t, fs, Ticket(t, "ms1-2000", "joao@cliente.pt", false)).TicketID
	// A key stored as a ticket is a duplicate as a follow-up …
	rc, err := fs.AddFollowUp(ctx, &mailsync.FollowUp{Ticket: *Ticket(t, "ms1-2000", "joao@cliente.pt", false), TicketID: id, Rule: mailsync.RuleRateLimit})
	if err != nil || !rc.Duplicate {
		t.Fatalf("a ticket's key as a follow-up: %+v %v, want Duplicate", rc, err)
	}
	// … and a key stored as a follow-up is a duplicate as a ticket.
	if _, err := fs.AddFollowUp(ctx, &mailsync.FollowUp{Ticket: *Ticket(t, "ms1-2001", "joao@cliente.pt", false), TicketID: id, Rule: mailsync.RuleReferences}); err != nil {
		t.Fatal(err)
	}
	rc, err = fs.CreateTicket(ctx, Ticket(t, "ms1-2001", "joao@cliente.pt", false))
	if err != nil || !rc.Duplicate {
		t.Fatalf("a follow-up's key as a ticket: %+v %v, want Duplicate", rc, err)
	}
	if errors.Is(err, mailsync.ErrFollowUpRefused) {
		t.Fatal("unexpected refusal")
	}
}
