package mailsync

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"
)

// MemorySink is a Sink that keeps tickets in memory, for tests and examples.
// It reads every attachment and raw quarantined message in full (so streams
// are exercised) and keeps their size and SHA-256, and their bytes up to
// KeepBytes. It is safe for concurrent use.
type MemorySink struct {
	// KeepBytes is how many bytes of each attachment or raw message are
	// kept (default 1 MiB). Size and SHA256 always cover everything.
	KeepBytes int
	// BeforeCreate, when set, is called before a ticket is stored; an error
	// refuses the ticket (for failure-injection tests).
	BeforeCreate func(ctx context.Context, t *Ticket) error
	// ReopenClosed makes a follow-up to a closed ticket reopen it; by
	// default such a follow-up is refused (ErrFollowUpRefused) and the mail
	// becomes a new ticket linked to the closed one.
	ReopenClosed bool

	mu          sync.Mutex
	tickets     []*StoredTicket
	byKey       map[string]*StoredTicket
	quarantined []*StoredQuarantine
	qByKey      map[string]bool
	fuKeys      map[string]string // follow-up key → ticket id
}

var _ FollowUpSink = (*MemorySink)(nil)

// StoredTicket is a ticket as MemorySink keeps it.
type StoredTicket struct {
	ID             string
	IdempotencyKey string
	Type           string
	Fields         map[string]string
	Attachments    []StoredBlob
	Source         Source
	Warnings       []string
	Classification Classification
	// RelatedTicketID is set when the mail referred to a ticket that refused it.
	RelatedTicketID string
	// Participants are the addresses allowed to post follow-ups: the
	// sender and the recipients of the first mail.
	Participants []string
	// FollowUps are the replies threaded onto the ticket.
	FollowUps []*StoredFollowUp
	// Closed tickets refuse follow-ups unless ReopenClosed is set.
	Closed bool
}

// StoredFollowUp is a follow-up as MemorySink keeps it.
type StoredFollowUp struct {
	IdempotencyKey string
	Rule           ThreadRule
	NonParticipant bool // the sender was not allowed on the ticket; the host let it in
	From           Address
	Fields         map[string]string
	Attachments    []StoredBlob
	Classification Classification
	Source         Source
}

// StoredBlob is an attachment or a raw message as MemorySink keeps it.
type StoredBlob struct {
	Filename    string
	ContentType string
	ContentID   string
	Size        int64
	SHA256      string
	Data        []byte // the first KeepBytes bytes
}

// StoredQuarantine is a quarantined message as MemorySink keeps it.
type StoredQuarantine struct {
	IdempotencyKey string
	Source         Source
	Reason         string
	Err            error
	Raw            StoredBlob
	Truncated      bool
}

// NewMemorySink returns an empty MemorySink.
func NewMemorySink() *MemorySink { return &MemorySink{} }

func (s *MemorySink) keep() int {
	if s.KeepBytes > 0 {
		return s.KeepBytes
	}
	return 1 << 20
}

func (s *MemorySink) readBlob(r io.Reader) (StoredBlob, error) {
	h := sha256.New()
	var head bytes.Buffer
	n, err := io.Copy(io.MultiWriter(h, &limitedWriter{w: &head, n: s.keep()}), r)
	if err != nil {
		return StoredBlob{}, err
	}
	return StoredBlob{Size: n, SHA256: hex.EncodeToString(h.Sum(nil)), Data: head.Bytes()}, nil
}

// CreateTicket implements Sink.
func (s *MemorySink) CreateTicket(ctx context.Context, t *Ticket) (Receipt, error) {
	if err := ctx.Err(); err != nil {
		return Receipt{}, err
	}
	s.mu.Lock()
	if id, dup := s.seenKey(t.IdempotencyKey); dup {
		s.mu.Unlock()
		return Receipt{TicketID: id, Duplicate: true}, nil
	}
	s.mu.Unlock()
	if s.BeforeCreate != nil {
		if err := s.BeforeCreate(ctx, t); err != nil {
			return Receipt{}, err
		}
	}
	st := &StoredTicket{IdempotencyKey: t.IdempotencyKey, Type: t.Type, Fields: map[string]string{}, Source: t.Source,
		Classification: t.Classification, RelatedTicketID: t.RelatedTicketID}
	for k, v := range t.Fields {
		st.Fields[k] = v
	}
	if t.Message != nil {
		st.Warnings = append(st.Warnings, t.Message.Warnings...)
		for _, a := range append(append([]Address{t.Message.From}, t.Message.To...), t.Message.Cc...) {
			if a.Address != "" {
				st.Participants = append(st.Participants, strings.ToLower(a.Address))
			}
		}
	}
	var err error
	if st.Attachments, err = s.readAttachments(t.Attachments); err != nil {
		return Receipt{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if id, dup := s.seenKey(t.IdempotencyKey); dup { // a concurrent duplicate won
		return Receipt{TicketID: id, Duplicate: true}, nil
	}
	if s.byKey == nil {
		s.byKey = map[string]*StoredTicket{}
	}
	st.ID = fmt.Sprintf("T%06d", len(s.tickets)+1)
	s.tickets = append(s.tickets, st)
	s.byKey[t.IdempotencyKey] = st
	return Receipt{TicketID: st.ID}, nil
}

func (s *MemorySink) readAttachments(atts []*Attachment) ([]StoredBlob, error) {
	var out []StoredBlob
	for _, a := range atts {
		rc, err := a.Open()
		if err != nil {
			return nil, err
		}
		blob, err := s.readBlob(rc)
		rc.Close()
		if err != nil {
			return nil, err
		}
		blob.Filename, blob.ContentType, blob.ContentID = a.Filename, a.ContentType, a.ContentID
		out = append(out, blob)
	}
	return out, nil
}

// TicketInfo implements FollowUpSink: a sender may post when it took part
// in the first mail (sender, To, Cc) of the ticket.
func (s *MemorySink) TicketInfo(ctx context.Context, ticketID string, sender Address) (TicketInfo, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.byID(ticketID)
	if t == nil {
		return TicketInfo{}, nil
	}
	allowed := false
	for _, p := range t.Participants {
		if p == strings.ToLower(sender.Address) {
			allowed = true
		}
	}
	return TicketInfo{Exists: true, Closed: t.Closed, SenderAllowed: allowed}, nil
}

// AddFollowUp implements FollowUpSink.
func (s *MemorySink) AddFollowUp(ctx context.Context, f *FollowUp) (Receipt, error) {
	if err := ctx.Err(); err != nil {
		return Receipt{}, err
	}
	s.mu.Lock()
	t := s.byID(f.TicketID)
	if t == nil {
		s.mu.Unlock()
		return Receipt{}, fmt.Errorf("memory sink: no ticket %q", f.TicketID)
	}
	if id, dup := s.seenKey(f.IdempotencyKey); dup {
		s.mu.Unlock()
		return Receipt{TicketID: id, Duplicate: true}, nil
	}
	if t.Closed && !s.ReopenClosed {
		s.mu.Unlock()
		return Receipt{}, fmt.Errorf("%w: ticket %s is closed", ErrFollowUpRefused, t.ID)
	}
	s.mu.Unlock()
	blobs, err := s.readAttachments(f.Attachments)
	if err != nil {
		return Receipt{}, err
	}
	fu := &StoredFollowUp{IdempotencyKey: f.IdempotencyKey, Rule: f.Rule, NonParticipant: f.NonParticipant, Fields: map[string]string{}, Attachments: blobs,
		Classification: f.Classification, Source: f.Source}
	for k, v := range f.Fields {
		fu.Fields[k] = v
	}
	if f.Message != nil {
		fu.From = f.Message.From
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if id, dup := s.seenKey(f.IdempotencyKey); dup {
		return Receipt{TicketID: id, Duplicate: true}, nil
	}
	if s.fuKeys == nil {
		s.fuKeys = map[string]string{}
	}
	s.fuKeys[f.IdempotencyKey] = t.ID
	t.Closed = false
	t.FollowUps = append(t.FollowUps, fu)
	return Receipt{TicketID: t.ID}, nil
}

// seenKey reports whether key is already a ticket or a follow-up, and the
// ticket it belongs to: tickets and follow-ups share one key space, so a
// message is stored once whichever way a re-run routes it. Call with mu held.
func (s *MemorySink) seenKey(key string) (string, bool) {
	if t, ok := s.byKey[key]; ok {
		return t.ID, true
	}
	id, ok := s.fuKeys[key]
	return id, ok
}

// CloseTicket marks a ticket closed, for tests of follow-ups to closed tickets.
func (s *MemorySink) CloseTicket(ticketID string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if t := s.byID(ticketID); t != nil {
		t.Closed = true
	}
}

func (s *MemorySink) byID(id string) *StoredTicket {
	for _, t := range s.tickets {
		if t.ID == id {
			return t
		}
	}
	return nil
}

// Quarantine implements Sink.
func (s *MemorySink) Quarantine(ctx context.Context, q *Quarantined) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	sq := &StoredQuarantine{IdempotencyKey: q.IdempotencyKey, Source: q.Source, Err: q.Err, Truncated: q.Truncated}
	if q.Err != nil {
		sq.Reason = q.Err.Error()
	}
	if q.Raw != nil {
		blob, err := s.readBlob(q.Raw)
		if err != nil {
			return err
		}
		sq.Raw = blob
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.qByKey[q.IdempotencyKey] {
		return nil
	}
	if s.qByKey == nil {
		s.qByKey = map[string]bool{}
	}
	s.qByKey[q.IdempotencyKey] = true
	s.quarantined = append(s.quarantined, sq)
	return nil
}

// Tickets returns the stored tickets in creation order.
func (s *MemorySink) Tickets() []*StoredTicket {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]*StoredTicket(nil), s.tickets...)
}

// QuarantinedMessages returns the quarantined messages in order.
func (s *MemorySink) QuarantinedMessages() []*StoredQuarantine {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]*StoredQuarantine(nil), s.quarantined...)
}

// FieldValues returns the values of one ticket field across all tickets,
// sorted; a small helper for tests and examples.
func (s *MemorySink) FieldValues(field string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, t := range s.tickets {
		out = append(out, t.Fields[field])
	}
	sort.Strings(out)
	return out
}

type limitedWriter struct {
	w io.Writer
	n int
}

func (l *limitedWriter) Write(p []byte) (int, error) {
	if l.n > 0 {
		k := min(len(p), l.n)
		if _, err := l.w.Write(p[:k]); err != nil {
			return 0, err
		}
		l.n -= k
	}
	return len(p), nil
}
