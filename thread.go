package mailsync

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base32"
	"fmt"
	"log/slog"
	"regexp"
	"strings"
	"sync"
	"time"
)

// ThreadRule names a rule that links a reply to an existing ticket.
type ThreadRule string

// The threading rules, tried in the order Threading.Rules gives.
const (
	// RuleReferences: In-Reply-To or References names a Message-ID that
	// became a ticket or follow-up, or one the host sent (registered with
	// RegisterOutgoing, or made by a MessageIDSigner).
	RuleReferences ThreadRule = "references"
	// RuleSubject: the subject carries a ticket reference in
	// Threading.SubjectPattern, and the sink says the sender may post on
	// that ticket.
	RuleSubject ThreadRule = "subject"
	// RulePlusAddress: a recipient is the connection's address with
	// "+<ticket id>" (support+123@example.com), and the sender may post.
	RulePlusAddress ThreadRule = "plus_address"
	// RuleBounce: a bounce attached to the ticket whose notification
	// bounced (Mapping.Routes[KindBounce] == RouteFollowUpOriginal).
	RuleBounce ThreadRule = "bounce"
	// RuleRateLimit: a sender over the rate limit; its mail is held on its
	// latest ticket instead of opening new ones.
	RuleRateLimit ThreadRule = "rate_limit"
)

// DefaultSubjectPattern matches "[Ticket#123]", "[Chamado#123]" or
// "[#123]"; the first group is the ticket id.
const DefaultSubjectPattern = `(?i)\[(?:ticket|chamado|case|caso)?\s*#\s*([A-Za-z0-9][A-Za-z0-9._-]*)\]`

// Threading configures how replies find their ticket. The zero value uses
// RuleReferences then RuleSubject with DefaultSubjectPattern.
type Threading struct {
	// Rules in the order they are tried; nil means the default order.
	// An empty, non-nil slice switches threading off.
	Rules []ThreadRule `json:"rules,omitempty"`
	// SubjectPattern is a regular expression whose first group is the
	// ticket id (default DefaultSubjectPattern).
	SubjectPattern string `json:"subject_pattern,omitempty"`
	// Signer recognises the Message-IDs the host gave its notifications.
	Signer *MessageIDSigner `json:"-"`
	// AllowNonParticipants lets a reply from a sender the sink does not
	// allow on the ticket (TicketInfo.SenderAllowed false, e.g. a colleague
	// in Cc) join the ticket as a follow-up flagged NonParticipant. By
	// default such a reply, whatever rule found the ticket, becomes a new
	// ticket whose RelatedTicketID names it.
	AllowNonParticipants bool `json:"allow_non_participants,omitempty"`
}

func (t Threading) rules() []ThreadRule {
	if t.Rules == nil {
		return []ThreadRule{RuleReferences, RuleSubject}
	}
	return t.Rules
}

// Validate checks the rules and the pattern.
func (t Threading) Validate() error {
	var e ConfigError
	for i, r := range t.Rules {
		switch r {
		case RuleReferences, RuleSubject, RulePlusAddress:
		default:
			e.addp(Problem{Field: fmt.Sprintf("threading.rules[%d]", i), Code: CodeUnknown,
				Allowed: []string{string(RuleReferences), string(RuleSubject), string(RulePlusAddress)},
				Message: fmt.Sprintf("%q is not references, subject or plus_address", r)})
		}
	}
	if t.SubjectPattern != "" {
		if re, err := regexp.Compile(t.SubjectPattern); err != nil {
			e.add("threading.subject_pattern", CodeInvalid, err.Error())
		} else if re.NumSubexp() < 1 {
			e.add("threading.subject_pattern", CodeInvalid, "needs a group that captures the ticket id")
		}
	}
	if len(e.Problems) == 0 {
		return nil
	}
	return &e
}

// TicketInfo is what the sink tells the engine about an existing ticket.
type TicketInfo struct {
	// Exists is false for an unknown ticket id.
	Exists bool
	// Closed tells the host's AddFollowUp it has to decide: reopen, open a
	// new linked ticket, or refuse.
	Closed bool
	// SenderAllowed says the sender may post on the ticket (the requester,
	// a participant, an agent). A reply from anyone else, whatever rule
	// found the ticket (a reference, the subject, a plus address, a signed
	// Message-ID), does not join it unless Threading.AllowNonParticipants.
	SenderAllowed bool
}

// FollowUp is a message that belongs to an existing ticket.
type FollowUp struct {
	// Ticket holds the mail as a ticket would (idempotency key, fields,
	// attachments, source, message, classification).
	Ticket
	// TicketID is the existing ticket.
	TicketID string
	// Rule is the rule that matched.
	Rule ThreadRule
	// TicketClosed is true when the ticket is closed.
	TicketClosed bool
	// NonParticipant is true when the sender is not allowed on the ticket
	// and the host accepted it anyway (Threading.AllowNonParticipants).
	NonParticipant bool
}

// FollowUpSink is a Sink that also takes follow-ups. Sync threads replies
// only when the sink implements it.
type FollowUpSink interface {
	Sink
	// AddFollowUp adds f to ticket f.TicketID, idempotent on
	// f.IdempotencyKey. Tickets and follow-ups share one key space: a key
	// already stored as a ticket (or as a follow-up) must be reported as a
	// Duplicate by both AddFollowUp and CreateTicket, because a re-run may
	// route the same message the other way (e.g. once a sender's rate limit
	// is reached). It may return ErrFollowUpRefused.
	AddFollowUp(ctx context.Context, f *FollowUp) (Receipt, error)
	// TicketInfo says whether ticketID exists, is closed, and whether
	// sender may post on it.
	TicketInfo(ctx context.Context, ticketID string, sender Address) (TicketInfo, error)
}

// MessageIDSigner makes Message-IDs for the host's outgoing notifications
// that embed the ticket id and an HMAC, so a reply threads even without any
// state, and nobody can forge a reference to someone else's ticket.
type MessageIDSigner struct {
	// Key is a secret of at least 16 bytes. It never prints.
	Key Secret
	// Domain is the right-hand side of the Message-IDs, e.g. "helpdesk.example.com".
	Domain string
}

var b32 = base32.StdEncoding.WithPadding(base32.NoPadding)

func (s *MessageIDSigner) mac(ticketID, nonce string) string {
	m := hmac.New(sha256.New, []byte(s.Key.Reveal()))
	m.Write([]byte(ticketID + "\x00" + nonce))
	return strings.ToLower(b32.EncodeToString(m.Sum(nil)[:10]))
}

// New returns a fresh Message-ID (without angle brackets) for a mail about ticketID.
func (s *MessageIDSigner) New(ticketID string) (string, error) {
	if len(s.Key) < 16 || s.Domain == "" {
		return "", fmt.Errorf("%w: MessageIDSigner needs a key of 16+ bytes and a domain", ErrInvalidConfig)
	}
	if strings.ContainsAny(ticketID, ".@<> \r\n") || ticketID == "" {
		return "", fmt.Errorf("%w: ticket id %q cannot go into a Message-ID", ErrInvalidConfig, ticketID)
	}
	var n [8]byte
	rand.Read(n[:])
	nonce := strings.ToLower(b32.EncodeToString(n[:]))
	return fmt.Sprintf("tkt.%s.%s.%s@%s", ticketID, nonce, s.mac(ticketID, nonce), s.Domain), nil
}

// Verify returns the ticket id of a Message-ID made by New with the same key.
func (s *MessageIDSigner) Verify(messageID string) (string, bool) {
	local, domain, ok := strings.Cut(strings.Trim(messageID, "<> "), "@")
	if !ok || !strings.EqualFold(domain, s.Domain) || len(s.Key) < 16 {
		return "", false
	}
	parts := strings.Split(local, ".")
	if len(parts) != 4 || parts[0] != "tkt" {
		return "", false
	}
	if !hmac.Equal([]byte(parts[3]), []byte(s.mac(parts[1], parts[2]))) {
		return "", false
	}
	return parts[1], true
}

// RegisterOutgoing records that the host sent a mail with messageID about
// ticketID, so replies to it thread onto that ticket (RuleReferences).
func RegisterOutgoing(ctx context.Context, s State, messageID, ticketID string) error {
	return s.Record(ctx, "", Record{Threads: map[string]string{StateKey(strings.Trim(messageID, "<> ")): ticketID}})
}

// SenderLimiter stops a mail loop from opening hundreds of tickets: each
// sender may open at most N new tickets per window; more mail from it is
// held as follow-ups on its latest ticket (or quarantined when the sink
// takes no follow-ups), never lost. Keep one limiter across syncs. It is
// safe for concurrent use.
type SenderLimiter struct {
	n      int
	window time.Duration
	now    func() time.Time

	mu   sync.Mutex
	seen map[string][]time.Time
	last map[string]string // sender → latest ticket id
}

// NewSenderLimiter allows n new tickets per sender per window.
func NewSenderLimiter(n int, window time.Duration) *SenderLimiter {
	return &SenderLimiter{n: n, window: window, now: time.Now, seen: map[string][]time.Time{}, last: map[string]string{}}
}

// allow reports whether sender may open another ticket now, and the id of
// its latest ticket.
func (l *SenderLimiter) allow(sender string) (bool, string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	sender = strings.ToLower(sender)
	now := l.now()
	times := l.seen[sender]
	for len(times) > 0 && now.Sub(times[0]) > l.window {
		times = times[1:]
	}
	l.seen[sender] = times
	return len(times) < l.n, l.last[sender]
}

// opened records that sender opened ticketID.
func (l *SenderLimiter) opened(sender, ticketID string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	sender = strings.ToLower(sender)
	l.seen[sender] = append(l.seen[sender], l.now())
	l.last[sender] = ticketID
}

// threader finds the ticket a reply belongs to. Every threading rule lives
// here: to add one, add a ThreadRule, accept it in Threading.Validate and
// give it a case in find.
type threader struct {
	cfg       Threading
	subjectRE *regexp.Regexp
	user      string // the connection's address, for plus addressing
	state     State
	seen      map[string]string // StateKey(Message-ID) → ticket, made in this sync
	log       *slog.Logger
}

func newThreader(cfg Threading, user string, state State, log *slog.Logger) *threader {
	pattern := cfg.SubjectPattern
	if pattern == "" {
		pattern = DefaultSubjectPattern
	}
	return &threader{cfg: cfg, subjectRE: subjectRE(pattern),
		user: user, state: state, seen: map[string]string{}, log: log}
}

// subjectREs caches the compiled subject patterns: every Sync makes a
// threader, and compiling the pattern was a measurable part of a sync
// with nothing new. A *regexp.Regexp is safe for concurrent use.
var subjectREs struct {
	sync.Mutex
	m map[string]*regexp.Regexp
}

// maxSubjectREs bounds the cache (patterns come from the host's
// configuration; beyond this many distinct ones they are compiled per
// sync, as before).
const maxSubjectREs = 64

// subjectRE returns pattern compiled (validated before by
// Threading.Validate).
func subjectRE(pattern string) *regexp.Regexp {
	subjectREs.Lock()
	defer subjectREs.Unlock()
	if re, ok := subjectREs.m[pattern]; ok {
		return re
	}
	re := regexp.MustCompile(pattern)
	if subjectREs.m == nil {
		subjectREs.m = map[string]*regexp.Regexp{}
	}
	if len(subjectREs.m) < maxSubjectREs {
		subjectREs.m[pattern] = re
	}
	return re
}

// threadMatch is an existing ticket a message may belong to.
type threadMatch struct {
	ticketID string
	rule     ThreadRule
	info     TicketInfo // what the sink said of the ticket and the sender
}

// participant reports whether the sender may post on the matched ticket.
// Bounces (from a mailer daemon, about the host's own notification) and a
// sender's own latest ticket under the rate limit need no check.
func (m threadMatch) participant() bool {
	return m.info.SenderAllowed || m.rule == RuleBounce || m.rule == RuleRateLimit
}

// find returns the ticket msg belongs to, or nil. A bounce whose kind is
// routed to its original ticket is tried first, then the rules in order.
// The sink is asked about each candidate ticket once (TicketInfo), and the
// first one the sender may post on wins. When the sender may post on none,
// the first candidate that exists (or that a reference named) is returned,
// so that the caller makes the mail a new ticket linked to it (or, with
// AllowNonParticipants, a flagged follow-up) — never a follow-up a stranger
// slipped into someone else's ticket.
func (th *threader) find(ctx context.Context, fs FollowUpSink, msg *Message, c Classification, bounceToOriginal bool) (*threadMatch, error) {
	var first *threadMatch
	asked := map[string]bool{}
	try := func(id string, rule ThreadRule) (*threadMatch, error) {
		if id == "" || asked[id] {
			return nil, nil
		}
		asked[id] = true
		info, err := fs.TicketInfo(ctx, id, msg.From)
		if err != nil {
			return nil, err
		}
		m := &threadMatch{ticketID: id, rule: rule, info: info}
		switch {
		case info.Exists && m.participant():
			return m, nil
		case first == nil && (info.Exists || rule == RuleReferences):
			// A reference to a ticket that is gone still links the new one.
			first = m
		}
		return nil, nil
	}
	if bounceToOriginal && c.Kind == KindBounce && c.OriginalMessageID != "" {
		if m, err := try(th.lookup(ctx, []string{c.OriginalMessageID}), RuleBounce); m != nil || err != nil {
			return m, err
		}
	}
	for _, rule := range th.cfg.rules() {
		var id string
		switch rule {
		case RuleReferences:
			id = th.lookup(ctx, append(append([]string(nil), msg.InReplyTo...), msg.References...))
		case RuleSubject:
			if sm := th.subjectRE.FindStringSubmatch(msg.Subject); sm != nil {
				id = sm[1]
			}
		case RulePlusAddress:
			id = th.plusAddressID(msg)
		}
		if m, err := try(id, rule); m != nil || err != nil {
			return m, err
		}
	}
	return first, nil
}

// lookup finds the ticket of the first known Message-ID: this sync's, the
// state's, or one the host's MessageIDSigner made.
func (th *threader) lookup(ctx context.Context, ids []string) string {
	if len(ids) == 0 {
		return ""
	}
	keys := make([]string, len(ids))
	for i, id := range ids {
		keys[i] = StateKey(id)
		if t, ok := th.seen[keys[i]]; ok {
			return t
		}
	}
	known, err := th.state.Threads(ctx, keys)
	if err != nil {
		th.log.Warn("mailsync: reading threads from state", "err", err)
	}
	for i, id := range ids {
		if t, ok := known[keys[i]]; ok {
			return t
		}
		if s := th.cfg.Signer; s != nil {
			if t, ok := s.Verify(id); ok {
				return t
			}
		}
	}
	return ""
}

// remember maps messageID to ticketID for the rest of this sync; the first
// ticket to own an id keeps it.
func (th *threader) remember(messageID, ticketID string) {
	if k := StateKey(messageID); messageID != "" && ticketID != "" && th.seen[k] == "" {
		th.seen[k] = ticketID
	}
}

// plusAddressID finds "+<id>" on the connection's own address among the recipients.
func (th *threader) plusAddressID(msg *Message) string {
	local, domain, ok := strings.Cut(strings.ToLower(th.user), "@")
	if !ok {
		return ""
	}
	var addrs []string
	for _, a := range append(append([]Address(nil), msg.To...), msg.Cc...) {
		addrs = append(addrs, a.Address)
	}
	addrs = append(addrs, msg.Header.Values("Delivered-To")...)
	addrs = append(addrs, msg.Header.Values("X-Original-To")...)
	for _, a := range addrs {
		l, d, ok := strings.Cut(strings.Trim(strings.TrimSpace(a), "<>"), "@")
		if !ok || !strings.EqualFold(d, domain) {
			continue
		}
		if base, id, ok := strings.Cut(l, "+"); ok && strings.EqualFold(base, local) && id != "" {
			return id // as written: ticket ids may be case-sensitive
		}
	}
	return ""
}
