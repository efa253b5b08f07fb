package mailsync

import (
	"context"
	"io"
	"time"
)

// Ticket is what a Mapping makes of one e-mail, handed to the host's Sink.
type Ticket struct {
	// IdempotencyKey is stable for one message of one connection: a re-run,
	// a crash and retry, a changed IMAP UIDVALIDITY or a restarted Graph
	// delta all yield the same key. The sink must create at most one ticket
	// per key.
	IdempotencyKey string
	// Type is the ticket type of the mapping.
	Type string
	// Fields are the ticket fields the mapping filled, by ticket field name.
	Fields map[string]string
	// Attachments are the mail's attachments and inline parts, present when
	// the mapping maps "attachments". Their readers are valid only during
	// Sink.CreateTicket.
	Attachments []*Attachment
	// Source says where the ticket came from.
	Source Source
	// Message is the whole parsed e-mail, for hosts that want more than the mapping.
	Message *Message
	// Classification says whether the mail is an auto-reply, a bounce,
	// bulk mail or a loop. Never send an automatic answer when
	// Classification.Automatic() is true.
	Classification Classification
	// RelatedTicketID names the ticket this mail replied to but could not
	// join: the ticket refused the follow-up (ErrFollowUpRefused, e.g. a
	// closed one), no longer exists, or the sender is not a participant of
	// it (TicketInfo.SenderAllowed). Outcome.Reason says which.
	RelatedTicketID string
}

// Source is the reference from a ticket back to its e-mail.
type Source struct {
	Connection string `json:"connection"`
	Provider   string `json:"provider"`
	MessageKey string `json:"message_key"`
	// MessageID is the mail's Message-ID without angle brackets. For a
	// mail quarantined because it could not be parsed or was too large,
	// it is read from the raw header by a bounded, tolerant scan (the
	// first 64 KiB; empty when there is none, or it is longer than 998
	// bytes or holds control characters); it is empty for a mail too large
	// to download.
	MessageID string    `json:"message_id,omitempty"`
	Received  time.Time `json:"received"`
}

// Receipt is the sink's answer to CreateTicket.
type Receipt struct {
	// TicketID is the host's id of the ticket.
	TicketID string
	// Duplicate is true when a ticket with the same IdempotencyKey already
	// existed and nothing new was created.
	Duplicate bool
}

// Quarantined is a message that could not become a ticket: it is handed over
// raw, with the reason, so nothing is lost.
type Quarantined struct {
	// IdempotencyKey is stable like Ticket.IdempotencyKey.
	IdempotencyKey string
	Source         Source
	// Err says why (a *MessageError: errors.Is(q.Err, ErrMalformed) or ErrOversized).
	Err error
	// Raw reads the message's raw bytes; nil when the message was too large
	// to download (Truncated is then true and Size says how large it was).
	Raw io.Reader
	// Size is the message's size in bytes, -1 if unknown.
	Size int64
	// Truncated is true when Raw holds only the beginning of the message or nothing.
	Truncated bool
}

// Sink is the host's side: it stores tickets. Both methods must be idempotent
// on the key they are given, because after a crash Sync may hand over the same
// message again. One Sync calls its sink from one goroutine at a time, in
// mailbox order.
//
// The rule that keeps mail from being lost: the post-action (move, delete)
// removes from the mailbox only what the sink holds. Returning nil from
// CreateTicket means the ticket and everything the mapping handed over with
// it (fields, attachments) is durable; returning nil from Quarantine means
// the raw bytes are durable. A sink that keeps less than it is given (e.g.
// hashes attachments instead of storing them) must refuse a destructive
// post-action at start-up, or keep everything when one is configured.
//
// A sink that keeps failing on one message (CreateTicket returns an error
// in several syncs) gets it as a Quarantine instead after
// WithSinkFailureLimit syncs, so one message cannot hold a mailbox back.
type Sink interface {
	// CreateTicket stores t, or reports Duplicate when a ticket with
	// t.IdempotencyKey exists. Returning nil means the ticket is durable.
	CreateTicket(ctx context.Context, t *Ticket) (Receipt, error)
	// Quarantine stores a message that cannot be a ticket, with its raw
	// bytes (all of them unless Truncated). Returning nil means they are durable.
	Quarantine(ctx context.Context, q *Quarantined) error
}
