package mailsync

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"
)

// This file is the path of one message through the engine, in the order it
// runs: spool (read it off the connection and hash it) → parse → classify →
// decide (route by kind, thread, rate limit) → apply (map, hand to the
// sink). The post-action and the state record follow per batch, in
// sync.go's settle.

// rawSpoolMemory is how much of one raw message stays in memory before it
// spools to a temporary file. At most six messages are in flight (one being
// read, four queued, one being processed), so this bounds memory at 6 MiB.
const rawSpoolMemory = 1 << 20

// spooled is one raw message read off the connection, waiting for the worker.
type spooled struct {
	ref   MessageRef
	gone  bool   // the connector reported it deleted
	raw   *spool // the bytes, up to the size limit
	n     int64  // bytes spooled
	total int64  // the whole size when it was over the limit, else n
	sum   []byte // SHA-256 of the raw bytes
}

func (j *spooled) close() {
	if j.raw != nil {
		j.raw.Close()
	}
}

// oversized reports whether a message of size bytes is over the limit: the
// one place the size limit is checked, before the download (by the size a
// provider announced) and after it (by the bytes read).
func (e *engine) oversized(size int64) bool {
	return size > e.o.parser.Limits.MaxMessageBytes
}

// spool reads one message off the connection into a spool, hashing it. A
// message over the size limit is drained (the connection must stay usable)
// and only its head kept.
func (e *engine) spool(ctx context.Context, ref MessageRef, r io.Reader) (*spooled, error) {
	raw := newSpool(e.o.parser.TempDir, rawSpoolMemory, e.o.parser.bufs)
	hash := sha256.New()
	limit := e.o.parser.Limits.MaxMessageBytes
	n, err := io.Copy(io.MultiWriter(raw, hash), io.LimitReader(r, limit+1))
	total := n
	if err == nil && e.oversized(n) {
		var rest int64
		rest, err = io.Copy(io.Discard, r)
		total += rest
	}
	if err != nil {
		raw.Close()
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, fmt.Errorf("%w: reading message %s: %w", ErrConnection, ref.Key, err)
	}
	return &spooled{ref: ref, raw: raw, n: n, total: total, sum: hash.Sum(nil)}, nil
}

// verdictKind is what becomes of a parsed message.
type verdictKind int

const (
	verdictTicket     verdictKind = iota // a new ticket (maybe linked to another)
	verdictFollowUp                      // added to an existing ticket
	verdictDrop                          // nothing; the mail stays untouched
	verdictQuarantine                    // handed over raw, with a reason
)

// verdict is decide's answer for one message; apply carries it out.
type verdict struct {
	kind    verdictKind
	match   *threadMatch  // verdictFollowUp: the ticket and the rule
	related string        // verdictTicket: the ticket it refers to but may not join
	reason  string        // why, when it is not obvious (Outcome.Reason)
	err     *MessageError // verdictQuarantine: the reason, with its kind
	routed                // the mapping, constant fields and rules the routing chose
}

// process turns one spooled message into an outcome. Every message gets
// exactly one, returned here (a failed one too, so the report is in mailbox
// order); an error stops the sync (ctx cancelled).
func (e *engine) process(ctx context.Context, j *spooled) (*accepted, error) {
	defer e.tick()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	ref := j.ref
	if j.gone {
		return &accepted{ref: ref, outcome: Outcome{Key: ref.Key, Status: StatusGone}}, nil
	}
	src := Source{Connection: e.conn.Name, Provider: e.o.provider, MessageKey: ref.Key, Received: time.Now().UTC()}
	if e.oversized(j.n) {
		limit := e.o.parser.Limits.MaxMessageBytes
		src.MessageID = rawMessageID(j.raw.Reader())
		q := &Quarantined{IdempotencyKey: keyForRef(e.conn.Name, ref.Key), Source: src, Raw: io.LimitReader(j.raw.Reader(), limit), Size: j.total, Truncated: true,
			Err: &MessageError{Key: ref.Key, Kind: ErrOversized, Reason: fmt.Sprintf("%d bytes, more than the limit of %d", j.total, limit)}}
		return e.quarantine(ctx, ref, q, false)
	}
	digest := hex.EncodeToString(j.sum)
	msg, perr := e.o.parser.Parse(j.raw.Reader())
	if perr != nil {
		// Not parsed: the raw header may still name the mail.
		src.MessageID = rawMessageID(j.raw.Reader())
		q := &Quarantined{IdempotencyKey: keyForContent(e.conn.Name, "", digest), Source: src, Raw: j.raw.Reader(), Size: j.n,
			Err: &MessageError{Key: ref.Key, Kind: kindOf(perr), Reason: perr.Error(), Err: perr}}
		return e.quarantine(ctx, ref, q, true)
	}
	defer msg.Close()
	src.MessageID = msg.MessageID
	class := Classify(msg, e.classify)
	key := keyForContent(e.conn.Name, msg.MessageID, digest)
	base := Outcome{Key: ref.Key, MessageID: msg.MessageID, Kind: class.Kind}

	v, err := e.decide(ctx, ref, msg, class)
	if err == nil {
		var o Outcome
		if o, err = e.apply(ctx, j, msg, class, key, src, base, v); err == nil {
			if o.Status == StatusQuarantined {
				q := &Quarantined{IdempotencyKey: key, Source: src, Raw: j.raw.Reader(), Size: j.n, Err: o.Err}
				a, err := e.quarantine(ctx, ref, q, true)
				if a != nil && a.outcome.Status == StatusQuarantined {
					a.outcome.MessageID, a.outcome.Kind, a.outcome.Rules, a.outcome.Blocked = o.MessageID, o.Kind, o.Rules, o.Blocked
				}
				return a, err
			}
			if o.Status != StatusDropped {
				e.th.remember(msg.MessageID, o.TicketID)
			}
			e.log.Debug("mailsync: delivered", "key", ref.Key, "message_id", msg.MessageID, "ticket", o.TicketID, "status", o.Status, "rule", o.Rule, "kind", o.Kind)
			return &accepted{ref: ref, postable: o.Status != StatusDropped, outcome: o}, nil
		}
	}
	// The sink failed (deciding asks it about tickets, applying stores).
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	if times, ok := e.countSinkFailure(ctx, ref); ok && times >= e.o.sinkFailMax {
		e.log.Warn("mailsync: sink refused the message again; quarantining it", "key", ref.Key, "message_id", msg.MessageID, "times", times, "err", err)
		q := &Quarantined{IdempotencyKey: key, Source: src, Raw: j.raw.Reader(), Size: j.n,
			Err: &MessageError{Key: ref.Key, Kind: ErrSink, Reason: fmt.Sprintf("the sink refused its ticket in %d syncs: %v", times, err), Err: err}}
		return e.quarantine(ctx, ref, q, true)
	}
	e.log.Warn("mailsync: sink refused the message; left for the next run", "key", ref.Key, "message_id", msg.MessageID, "err", err)
	base.Status, base.Err = StatusFailed, fmt.Errorf("%w: %w", ErrSink, err)
	return &accepted{ref: ref, outcome: base}, nil
}

// decide says what becomes of a parsed message: the block list and the
// routing rules first (ticket type, drop, quarantine), then its kind's route
// in the chosen mapping, then a ticket it belongs to (threading, bounces),
// then the sender's rate limit; otherwise a new ticket. It only asks the
// sink (TicketInfo), it stores nothing.
func (e *engine) decide(ctx context.Context, ref MessageRef, msg *Message, class Classification) (verdict, error) {
	r := routed{mapping: e.m}
	if e.router != nil {
		r = e.router.route(msg, class, ref, e.m)
	}
	switch {
	case r.blocked && r.action == ActionQuarantine:
		return verdict{kind: verdictQuarantine, routed: r, err: &MessageError{Kind: ErrBlocked, Reason: fmt.Sprintf("the sender %s is blocked", msg.From.Address)}}, nil
	case r.action == ActionDrop:
		return verdict{kind: verdictDrop, routed: r}, nil
	case r.action == ActionQuarantine:
		return verdict{kind: verdictQuarantine, routed: r, err: &MessageError{Kind: ErrRouted, Reason: fmt.Sprintf("routed to quarantine by rule %s", r.rules[len(r.rules)-1])}}, nil
	}
	switch r.mapping.route(class.Kind) {
	case RouteDrop:
		return verdict{kind: verdictDrop, routed: r}, nil
	case RouteQuarantine:
		return verdict{kind: verdictQuarantine, routed: r, err: &MessageError{Kind: ErrRouted,
			Reason: fmt.Sprintf("routed to quarantine: %s (%s)", class.Kind, strings.Join(class.Reasons, "; "))}}, nil
	}
	fs, threading := e.sink.(FollowUpSink)
	if threading {
		m, err := e.th.find(ctx, fs, msg, class, r.mapping.route(KindBounce) == RouteFollowUpOriginal)
		if err != nil {
			return verdict{}, err
		}
		if m != nil {
			v := e.join(*m)
			v.routed = r
			return v, nil
		}
	}
	if sender := msg.From.Address; e.o.limiter != nil && sender != "" {
		if ok, last := e.o.limiter.allow(sender); !ok {
			if threading && last != "" {
				info, err := fs.TicketInfo(ctx, last, msg.From)
				if err != nil {
					return verdict{}, err
				}
				v := e.join(threadMatch{ticketID: last, rule: RuleRateLimit, info: info})
				v.routed = r
				return v, nil
			}
			return verdict{kind: verdictQuarantine, routed: r, err: &MessageError{Kind: ErrRateLimited, Reason: fmt.Sprintf("%s opened too many tickets recently", sender)}}, nil
		}
	}
	return verdict{kind: verdictTicket, routed: r}, nil
}

// join decides between a follow-up on m's ticket and a new ticket linked
// to it: the ticket must exist and the sender be a participant (or the host
// lets non-participants in).
func (e *engine) join(m threadMatch) verdict {
	switch {
	case !m.info.Exists:
		return verdict{kind: verdictTicket, related: m.ticketID, reason: fmt.Sprintf("ticket %s found by rule %s no longer exists", m.ticketID, m.rule)}
	case !m.participant() && !e.o.threading.AllowNonParticipants:
		e.log.Warn("mailsync: reply from a sender not allowed on its ticket; made a new ticket", "ticket", m.ticketID, "rule", m.rule)
		return verdict{kind: verdictTicket, related: m.ticketID, reason: fmt.Sprintf("the sender is not a participant of ticket %s (rule %s)", m.ticketID, m.rule)}
	case !m.participant():
		return verdict{kind: verdictFollowUp, match: &m, reason: fmt.Sprintf("the sender is not a participant of ticket %s; accepted (Threading.AllowNonParticipants)", m.ticketID)}
	}
	return verdict{kind: verdictFollowUp, match: &m}
}

// apply carries out v: the mapping runs here, only for tickets and
// follow-ups. An outcome with StatusQuarantined asks the caller to
// quarantine the raw message with o.Err.
func (e *engine) apply(ctx context.Context, j *spooled, msg *Message, class Classification, key string, src Source, o Outcome, v verdict) (Outcome, error) {
	o.Reason, o.Rules = v.reason, v.rules
	if v.blocked {
		o.Blocked = msg.From.Address
	}
	switch v.kind {
	case verdictDrop:
		o.Status = StatusDropped
		return o, nil
	case verdictQuarantine:
		v.err.Key = j.ref.Key
		o.Status, o.Err = StatusQuarantined, v.err
		return o, nil
	}
	t := &Ticket{IdempotencyKey: key, Type: v.mapping.TicketType, Fields: v.mapping.Apply(msg), Source: src, Message: msg, Classification: class}
	for k, val := range v.set {
		t.Fields[k] = val
	}
	if v.mapping.MapsAttachments() {
		t.Attachments = msg.Attachments
	}
	o.TicketType = t.Type
	if e.o.dryRun {
		return e.preview(t, o, v), nil
	}
	if v.kind == verdictFollowUp {
		m := v.match
		rc, err := e.sink.(FollowUpSink).AddFollowUp(ctx, &FollowUp{Ticket: *t, TicketID: m.ticketID, Rule: m.rule, TicketClosed: m.info.Closed, NonParticipant: !m.participant()})
		if err == nil {
			o.Status, o.TicketID, o.Rule = StatusFollowUp, rc.TicketID, m.rule
			if rc.Duplicate {
				o.Status = StatusDuplicate
			}
			return o, nil
		}
		if !errors.Is(err, ErrFollowUpRefused) {
			return o, err
		}
		v.related, o.Reason = m.ticketID, fmt.Sprintf("ticket %s refused the follow-up (rule %s): %v", m.ticketID, m.rule, err)
	}
	t.RelatedTicketID, o.RelatedTicketID = v.related, v.related
	rc, err := e.sink.CreateTicket(ctx, t)
	if err != nil {
		return o, err
	}
	o.Status, o.TicketID = StatusCreated, rc.TicketID
	if rc.Duplicate {
		o.Status = StatusDuplicate
	}
	if sender := msg.From.Address; e.o.limiter != nil && sender != "" && !rc.Duplicate {
		e.o.limiter.opened(sender, rc.TicketID)
	}
	return o, nil
}

// preview is apply in a dry run: the outcome the sink would have been asked
// for, with the mapped fields, and nothing stored.
func (e *engine) preview(t *Ticket, o Outcome, v verdict) Outcome {
	o.Fields = t.Fields
	o.Status = StatusCreated
	if v.kind == verdictFollowUp {
		o.Status, o.TicketID, o.Rule = StatusFollowUp, v.match.ticketID, v.match.rule
	} else {
		o.RelatedTicketID = v.related
	}
	return o
}

// countSinkFailure counts one more sync in which the sink refused ref, when
// the State can count (FailureCounter).
func (e *engine) countSinkFailure(ctx context.Context, ref MessageRef) (int, bool) {
	fc, ok := e.o.state.(FailureCounter)
	if !ok || e.o.sinkFailMax <= 0 || e.o.dryRun {
		return 0, false
	}
	n, err := fc.CountFailure(context.WithoutCancel(ctx), e.conn.Name, StateKey(ref.Key))
	if err != nil {
		e.log.Warn("mailsync: counting a sink failure", "key", ref.Key, "err", err)
		return 0, false
	}
	return n, true
}

// quarantine hands q to the sink. A sink failure gives a failed outcome
// (the message stays for the next run); only a cancelled ctx is an error.
func (e *engine) quarantine(ctx context.Context, ref MessageRef, q *Quarantined, postable bool) (*accepted, error) {
	if e.o.dryRun {
		return &accepted{ref: ref, outcome: Outcome{Key: ref.Key, MessageID: q.Source.MessageID, Status: StatusQuarantined, Err: q.Err}}, nil
	}
	e.log.Warn("mailsync: quarantining message", "key", ref.Key, "reason", q.Err)
	if err := e.sink.Quarantine(ctx, q); err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return &accepted{ref: ref, outcome: Outcome{Key: ref.Key, Status: StatusFailed, Err: fmt.Errorf("%w: quarantine: %w", ErrSink, err)}}, nil
	}
	return &accepted{ref: ref, postable: postable, outcome: Outcome{Key: ref.Key, MessageID: q.Source.MessageID, Status: StatusQuarantined, Err: q.Err}}, nil
}

// quarantineUnfetched quarantines a message whose announced size is over the
// limit without downloading it. The mail stays on the server untouched.
func (e *engine) quarantineUnfetched(ctx context.Context, ref MessageRef) (*accepted, error) {
	defer e.tick()
	limit := e.o.parser.Limits.MaxMessageBytes
	q := &Quarantined{IdempotencyKey: keyForRef(e.conn.Name, ref.Key), Size: ref.Size, Truncated: true,
		Source: Source{Connection: e.conn.Name, Provider: e.o.provider, MessageKey: ref.Key, Received: time.Now().UTC()},
		Err:    &MessageError{Key: ref.Key, Kind: ErrOversized, Reason: fmt.Sprintf("%d bytes, more than the limit of %d; not downloaded", ref.Size, limit)}}
	return e.quarantine(ctx, ref, q, false)
}

func kindOf(err error) error {
	switch {
	case errors.Is(err, ErrOversized):
		return ErrOversized
	case errors.Is(err, ErrEncrypted):
		return ErrEncrypted
	}
	return ErrMalformed
}
