package main

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/mailsync/mailsync"
)

// maxAttachmentBytes bounds one stored attachment. The library already
// bounds the whole message (Limits.MaxMessageBytes); this keeps one BLOB
// reasonable.
const maxAttachmentBytes = 32 << 20

// Sink is the host's mailsync.FollowUpSink: it writes tickets, follow-ups,
// attachments and quarantined mail into the host's tables.
//
// The contract that makes a sync safe to re-run (see mailsync.Sink):
// CreateTicket is idempotent on Ticket.IdempotencyKey — here by the UNIQUE
// column and one INSERT … ON CONFLICT DO NOTHING — and returning nil means
// the ticket and its attachments are committed, because only then does Sync
// mark the mail read on the server. Tickets and follow-ups share one key
// space: a key stored as either is a Duplicate for both.
type Sink struct{ st *Store }

var _ mailsync.FollowUpSink = (*Sink)(nil)

// CreateTicket implements mailsync.Sink.
func (k *Sink) CreateTicket(ctx context.Context, t *mailsync.Ticket) (rc mailsync.Receipt, err error) {
	err = k.st.inTx(ctx, func(tx querier) error {
		rc, err = k.createTicket(ctx, tx, t)
		return err
	})
	return rc, err
}

func (k *Sink) createTicket(ctx context.Context, tx querier, t *mailsync.Ticket) (mailsync.Receipt, error) {
	s := k.st
	// The key may already be a follow-up (a re-run may route a mail the other way).
	var owner int64
	err := tx.QueryRowContext(ctx, s.q(`SELECT ticket_id FROM hd_followups WHERE idempotency_key = ?`), t.IdempotencyKey).Scan(&owner)
	if err == nil {
		return mailsync.Receipt{TicketID: strconv.FormatInt(owner, 10), Duplicate: true}, nil
	} else if !errors.Is(err, sql.ErrNoRows) {
		return mailsync.Receipt{}, err
	}

	fields, _ := json.Marshal(t.Fields)
	var sender, messageID string
	var participants []string // who may post on the ticket: the sender and whoever was in Cc
	if t.Message != nil {
		sender, messageID = t.Message.From.Address, t.Message.MessageID
		participants = append(participants, strings.ToLower(sender))
		for _, a := range t.Message.Cc {
			participants = append(participants, strings.ToLower(a.Address))
		}
	}
	var id int64
	err = tx.QueryRowContext(ctx, s.q(`INSERT INTO hd_tickets (idempotency_key, connection, ticket_type, status, title, requester, sender_address,
		participants, description, body_html, fields_json, kind, kind_reasons, message_id, related_ticket_id, created_at)
		VALUES (?, ?, ?, 'open', ?, ?, ?, ?, ?, '', ?, ?, ?, ?, ?, ?)
		ON CONFLICT (idempotency_key) DO NOTHING RETURNING id`),
		t.IdempotencyKey, t.Source.Connection, t.Type, t.Fields["title"], t.Fields["requester"], sender, " "+strings.Join(participants, " ")+" ",
		t.Fields["description"], string(fields), string(t.Classification.Kind), strings.Join(t.Classification.Reasons, "; "),
		messageID, t.RelatedTicketID, now()).Scan(&id)
	if errors.Is(err, sql.ErrNoRows) { // ON CONFLICT: the ticket exists
		if err := tx.QueryRowContext(ctx, s.q(`SELECT id FROM hd_tickets WHERE idempotency_key = ?`), t.IdempotencyKey).Scan(&id); err != nil {
			return mailsync.Receipt{}, err
		}
		return mailsync.Receipt{TicketID: strconv.FormatInt(id, 10), Duplicate: true}, nil
	}
	if err != nil {
		return mailsync.Receipt{}, err
	}
	html, err := k.storeAttachments(ctx, tx, id, 0, t)
	if err != nil {
		return mailsync.Receipt{}, err
	}
	if _, err := tx.ExecContext(ctx, s.q(`UPDATE hd_tickets SET body_html = ? WHERE id = ?`), html, id); err != nil {
		return mailsync.Receipt{}, err
	}
	return mailsync.Receipt{TicketID: strconv.FormatInt(id, 10)}, nil
}

// storeAttachments stores the mail's attachments and inline parts (their
// readers are valid only during the sink call) and returns the HTML body
// with its cid: references pointing at the stored parts, through
// Message.InlineHTML: the library sanitised the HTML; the host only says
// where each part now lives.
func (k *Sink) storeAttachments(ctx context.Context, tx querier, ticketID, followUpID int64, t *mailsync.Ticket) (string, error) {
	urls := map[*mailsync.Attachment]string{}
	for _, a := range t.Attachments { // present when the mapping maps "attachments"
		r, err := a.Open()
		if err != nil {
			return "", err
		}
		data, err := io.ReadAll(io.LimitReader(r, maxAttachmentBytes+1))
		r.Close()
		if err != nil {
			return "", err
		}
		if len(data) > maxAttachmentBytes {
			return "", fmt.Errorf("attachment %q is larger than %d bytes", a.Filename, maxAttachmentBytes)
		}
		var id int64
		if err := tx.QueryRowContext(ctx, k.st.q(`INSERT INTO hd_attachments (ticket_id, followup_id, filename, content_type, content_id, inline, size, data)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING id`), ticketID, followUpID, a.Filename, a.ContentType, a.ContentID, b2i(a.Inline), int64(len(data)), data).Scan(&id); err != nil {
			return "", err
		}
		urls[a] = "/attachments/" + strconv.FormatInt(id, 10)
	}
	if t.Message == nil || t.Message.HTML == "" {
		return "", nil
	}
	return t.Message.InlineHTML(func(a *mailsync.Attachment) string { return urls[a] }), nil
}

// AddFollowUp implements mailsync.FollowUpSink: a reply that Sync threaded
// onto ticket f.TicketID.
func (k *Sink) AddFollowUp(ctx context.Context, f *mailsync.FollowUp) (rc mailsync.Receipt, err error) {
	ticketID, err := strconv.ParseInt(f.TicketID, 10, 64)
	if err != nil {
		return mailsync.Receipt{}, fmt.Errorf("ticket id %q: %w", f.TicketID, err)
	}
	err = k.st.inTx(ctx, func(tx querier) error {
		rc, err = k.addFollowUp(ctx, tx, ticketID, f)
		return err
	})
	return rc, err
}

func (k *Sink) addFollowUp(ctx context.Context, tx querier, ticketID int64, f *mailsync.FollowUp) (mailsync.Receipt, error) {
	s := k.st
	var existing int64
	err := tx.QueryRowContext(ctx, s.q(`SELECT id FROM hd_tickets WHERE idempotency_key = ?`), f.IdempotencyKey).Scan(&existing)
	if err == nil {
		return mailsync.Receipt{TicketID: strconv.FormatInt(existing, 10), Duplicate: true}, nil
	} else if !errors.Is(err, sql.ErrNoRows) {
		return mailsync.Receipt{}, err
	}
	var status string
	if err := tx.QueryRowContext(ctx, s.q(`SELECT status FROM hd_tickets WHERE id = ?`), ticketID).Scan(&status); errors.Is(err, sql.ErrNoRows) {
		return mailsync.Receipt{}, fmt.Errorf("ticket %d does not exist", ticketID)
	} else if err != nil {
		return mailsync.Receipt{}, err
	}
	if f.TicketClosed {
		// This host reopens a closed ticket when its requester writes again.
		if _, err := tx.ExecContext(ctx, s.q(`UPDATE hd_tickets SET status = 'open' WHERE id = ?`), ticketID); err != nil {
			return mailsync.Receipt{}, err
		}
	}
	var sender string
	if f.Message != nil {
		sender = f.Message.From.Address
	}
	body := f.Fields["description"]
	var id int64
	err = tx.QueryRowContext(ctx, s.q(`INSERT INTO hd_followups (ticket_id, idempotency_key, rule, sender_address, title, body, body_html, kind, non_participant, created_at)
		VALUES (?, ?, ?, ?, ?, ?, '', ?, ?, ?) ON CONFLICT (idempotency_key) DO NOTHING RETURNING id`),
		ticketID, f.IdempotencyKey, string(f.Rule), sender, f.Fields["title"], body, string(f.Classification.Kind), b2i(f.NonParticipant), now()).Scan(&id)
	if errors.Is(err, sql.ErrNoRows) {
		return mailsync.Receipt{TicketID: f.TicketID, Duplicate: true}, nil
	}
	if err != nil {
		return mailsync.Receipt{}, err
	}
	html, err := k.storeAttachments(ctx, tx, ticketID, id, &f.Ticket)
	if err != nil {
		return mailsync.Receipt{}, err
	}
	if _, err := tx.ExecContext(ctx, s.q(`UPDATE hd_followups SET body_html = ? WHERE id = ?`), html, id); err != nil {
		return mailsync.Receipt{}, err
	}
	return mailsync.Receipt{TicketID: f.TicketID}, nil
}

// TicketInfo implements mailsync.FollowUpSink. The requester, whoever was
// in Cc of the first mail, and whoever already wrote on the ticket may post
// on it; anyone else's reply becomes a new ticket linked to this one
// (RelatedTicketID).
func (k *Sink) TicketInfo(ctx context.Context, ticketID string, sender mailsync.Address) (mailsync.TicketInfo, error) {
	s := k.st
	id, err := strconv.ParseInt(ticketID, 10, 64)
	if err != nil {
		return mailsync.TicketInfo{}, nil // not one of ours
	}
	var status, participants string
	err = s.db.QueryRowContext(ctx, s.q(`SELECT status, participants FROM hd_tickets WHERE id = ?`), id).Scan(&status, &participants)
	if errors.Is(err, sql.ErrNoRows) {
		return mailsync.TicketInfo{}, nil
	}
	if err != nil {
		return mailsync.TicketInfo{}, err
	}
	allowed := sender.Address != "" && strings.Contains(participants, " "+strings.ToLower(sender.Address)+" ")
	if !allowed {
		var n int
		if err := s.db.QueryRowContext(ctx, s.q(`SELECT COUNT(*) FROM hd_followups WHERE ticket_id = ? AND LOWER(sender_address) = LOWER(?) AND non_participant = 0`), id, sender.Address).Scan(&n); err != nil {
			return mailsync.TicketInfo{}, err
		}
		allowed = n > 0
	}
	return mailsync.TicketInfo{Exists: true, Closed: status == "closed", SenderAllowed: allowed}, nil
}

// Quarantine implements mailsync.Sink: the raw mail is kept, with the
// reason, so an admin can download it and replay it (see replay in web.go).
func (k *Sink) Quarantine(ctx context.Context, q *mailsync.Quarantined) error {
	s := k.st
	var raw []byte
	if q.Raw != nil {
		var err error
		if raw, err = io.ReadAll(q.Raw); err != nil {
			return err
		}
	}
	// Source.MessageID is set for a mail the parser gave up on too: the
	// library reads it from the raw header.
	messageID := q.Source.MessageID
	reason := "quarantined"
	if q.Err != nil {
		reason = q.Err.Error()
	}
	_, err := s.db.ExecContext(ctx, s.q(`INSERT INTO hd_quarantine (idempotency_key, connection, message_key, message_id, reason, size, truncated, raw, created_at, replay_status, replay_ticket)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, '', '') ON CONFLICT (idempotency_key) DO NOTHING`),
		q.IdempotencyKey, q.Source.Connection, q.Source.MessageKey, messageID, reason, q.Size, b2i(q.Truncated), raw, now())
	return err
}
