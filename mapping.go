package mailsync

import (
	"fmt"
	"net/textproto"
	"strings"
	"time"
	"unicode/utf8"
)

// The e-mail source fields a Mapping can read. A field named
// "header:<Name>" reads any header (decoded, multiple values joined by ", ").
const (
	FieldFrom            = "from"         // "Name <address>"
	FieldFromAddress     = "from.address" // sender's address
	FieldFromName        = "from.name"    // sender's display name
	FieldTo              = "to"           // recipients, comma-separated "Name <address>"
	FieldCc              = "cc"
	FieldReplyTo         = "reply_to"
	FieldSubject         = "subject"
	FieldBodyText        = "body.text"       // text body, or the text rendering of an HTML-only mail
	FieldBodyHTML        = "body.html"       // sanitised HTML body
	FieldBodyReply       = "body.reply"      // the new text of body.text, without quoted history and signature
	FieldBodyReplyHTML   = "body.reply_html" // the new text of body.html
	FieldBodyQuoted      = "body.quoted"     // the quoted history cut off body.reply, as text
	FieldBodySignature   = "body.signature"  // the signature cut off body.reply, as text
	FieldDate            = "date"            // RFC 3339
	FieldMessageID       = "message_id"
	FieldInReplyTo       = "in_reply_to"
	FieldReferences      = "references"         // space-separated Message-IDs
	FieldAttachments     = "attachments"        // file names, comma-separated; the ticket gets the attachments
	FieldInlineImages    = "attachments.inline" // file names of the inline parts the HTML body shows
	FieldInviteSummary   = "invite.summary"     // a calendar invitation's event title
	FieldInviteStart     = "invite.start"       // its start, RFC 3339 (a date for all-day events)
	FieldInviteEnd       = "invite.end"         // its end
	FieldInviteOrganizer = "invite.organizer"   // its organizer's address
	FieldInviteLocation  = "invite.location"
	HeaderFieldPrefix    = "header:"
	maxTicketFieldName   = 128
)

var knownSourceFields = map[string]bool{
	FieldFrom: true, FieldFromAddress: true, FieldFromName: true, FieldTo: true, FieldCc: true,
	FieldReplyTo: true, FieldSubject: true, FieldBodyText: true, FieldBodyHTML: true, FieldDate: true,
	FieldMessageID: true, FieldInReplyTo: true, FieldReferences: true, FieldAttachments: true,
	FieldInlineImages: true, FieldInviteSummary: true, FieldInviteStart: true, FieldInviteEnd: true, FieldInviteOrganizer: true, FieldInviteLocation: true,
	FieldBodyReply: true, FieldBodyReplyHTML: true, FieldBodyQuoted: true, FieldBodySignature: true,
}

// Mapping says, for one ticket type, which e-mail field fills which ticket
// field, as the host's admin configures it. It is JSON-serialisable.
type Mapping struct {
	// TicketType is the type of the tickets this mapping makes; the
	// connection must be connected with it.
	TicketType string `json:"ticket_type"`
	// Fields fill the ticket's fields, in order.
	Fields []FieldMapping `json:"fields"`
	// Routes say what to do with each kind of mail (see Classify); a kind
	// not listed becomes a ticket (RouteTicket).
	Routes map[Kind]Route `json:"routes,omitempty"`
}

// Route is what Sync does with one kind of mail.
type Route string

// The routes.
const (
	// RouteTicket makes a ticket (or a follow-up, when it threads). The default.
	RouteTicket Route = "ticket"
	// RouteDrop makes nothing and leaves the mail in the mailbox untouched
	// (no post-action), recorded as done.
	RouteDrop Route = "drop"
	// RouteQuarantine hands the mail to Sink.Quarantine, raw.
	RouteQuarantine Route = "quarantine"
	// RouteFollowUpOriginal adds a bounce as a follow-up to the ticket whose
	// notification bounced (found by its Message-ID), or makes a ticket
	// when that ticket is unknown.
	RouteFollowUpOriginal Route = "follow_up_original"
)

func (m Mapping) route(k Kind) Route {
	if r, ok := m.Routes[k]; ok && r != "" {
		return r
	}
	return RouteTicket
}

// FieldMapping fills one ticket field from an e-mail field or a constant.
type FieldMapping struct {
	// Ticket is the name of the ticket field to fill.
	Ticket string `json:"ticket"`
	// Source is an e-mail field (see the Field constants, or "header:<Name>").
	Source string `json:"source,omitempty"`
	// Const is a constant value, used instead of Source.
	Const string `json:"const,omitempty"`
	// Default is used when Source yields an empty value.
	Default string `json:"default,omitempty"`
	// MaxLength, when positive, truncates the value to that many characters.
	MaxLength int `json:"max_length,omitempty"`
}

// DefaultMapping maps the usual fields: requester, subject, description
// (text body), received date, message id and attachments.
func DefaultMapping(ticketType string) Mapping {
	return Mapping{TicketType: ticketType, Fields: []FieldMapping{
		{Ticket: "requester", Source: FieldFromAddress},
		{Ticket: "requester_name", Source: FieldFromName},
		{Ticket: "title", Source: FieldSubject, Default: "(no subject)", MaxLength: 255},
		{Ticket: "description", Source: FieldBodyText},
		{Ticket: "received_at", Source: FieldDate},
		{Ticket: "email_message_id", Source: FieldMessageID},
		{Ticket: "attachments", Source: FieldAttachments},
	}}
}

// Validate reports every problem at once as a *ConfigError naming the
// fields, e.g. an unknown source field.
func (m Mapping) Validate() error {
	var e ConfigError
	if strings.TrimSpace(m.TicketType) == "" {
		e.add("ticket_type", CodeRequired, "is required")
	}
	seen := map[string]bool{}
	for i, f := range m.Fields {
		at := fmt.Sprintf("fields[%d]", i)
		switch {
		case strings.TrimSpace(f.Ticket) == "":
			e.add(at+".ticket", CodeRequired, "is required")
		case len(f.Ticket) > maxTicketFieldName:
			e.addp(Problem{Field: at + ".ticket", Code: CodeTooLong, Limit: maxTicketFieldName, Message: "is too long"})
		case seen[f.Ticket]:
			e.add(at+".ticket", CodeDuplicate, fmt.Sprintf("%q is filled twice", f.Ticket))
		}
		seen[f.Ticket] = true
		switch {
		case f.Source == "" && f.Const == "":
			e.add(at, CodeRequired, "needs a source or a const")
		case f.Source != "" && f.Const != "":
			e.add(at, CodeConflict, "has both a source and a const")
		case f.Source != "" && !validSourceField(f.Source):
			e.add(at+".source", CodeUnknown, fmt.Sprintf("%q is not a known e-mail field", f.Source))
		}
		if f.MaxLength < 0 {
			e.add(at+".max_length", CodeNegative, "must not be negative")
		}
	}
	for k, r := range m.Routes {
		switch k {
		case KindNormal, KindAutoReply, KindAutoGenerated, KindBounce, KindBulk, KindLoop:
		default:
			e.addp(Problem{Field: "routes", Code: CodeUnknown,
				Allowed: []string{string(KindNormal), string(KindAutoReply), string(KindAutoGenerated), string(KindBounce), string(KindBulk), string(KindLoop)},
				Message: fmt.Sprintf("%q is not a kind of mail (normal, auto_reply, auto_generated, bounce, bulk, loop)", k)})
		}
		switch r {
		case RouteTicket, RouteDrop, RouteQuarantine, RouteFollowUpOriginal:
		default:
			e.addp(Problem{Field: "routes." + string(k), Code: CodeUnknown,
				Allowed: []string{string(RouteTicket), string(RouteDrop), string(RouteQuarantine), string(RouteFollowUpOriginal)},
				Message: fmt.Sprintf("%q is not ticket, drop, quarantine or follow_up_original", r)})
		}
	}
	if len(e.Problems) == 0 {
		return nil
	}
	return &e
}

func validSourceField(s string) bool {
	if name, ok := strings.CutPrefix(s, HeaderFieldPrefix); ok {
		return name != "" && !strings.ContainsAny(name, " :\r\n")
	}
	return knownSourceFields[s]
}

// MapsAttachments reports whether the mapping hands attachments to the ticket.
func (m Mapping) MapsAttachments() bool {
	for _, f := range m.Fields {
		if f.Source == FieldAttachments {
			return true
		}
	}
	return false
}

// Apply fills the ticket fields from msg.
func (m Mapping) Apply(msg *Message) map[string]string {
	out := make(map[string]string, len(m.Fields))
	for _, f := range m.Fields {
		v := f.Const
		if f.Source != "" {
			v = SourceValue(msg, f.Source)
		}
		if v == "" {
			v = f.Default
		}
		if f.MaxLength > 0 && utf8.RuneCountInString(v) > f.MaxLength {
			v = string([]rune(v)[:f.MaxLength])
		}
		out[f.Ticket] = v
	}
	return out
}

// SourceValue returns the value of one e-mail source field of msg as a string.
func SourceValue(msg *Message, field string) string {
	if name, ok := strings.CutPrefix(field, HeaderFieldPrefix); ok {
		return strings.Join(msg.Header[textproto.CanonicalMIMEHeaderKey(name)], ", ")
	}
	switch field {
	case FieldFrom:
		return msg.From.String()
	case FieldFromAddress:
		return msg.From.Address
	case FieldFromName:
		return msg.From.Name
	case FieldTo:
		return joinAddresses(msg.To)
	case FieldCc:
		return joinAddresses(msg.Cc)
	case FieldReplyTo:
		return joinAddresses(msg.ReplyTo)
	case FieldSubject:
		return msg.Subject
	case FieldBodyText:
		return msg.Text
	case FieldBodyHTML:
		return msg.HTML
	case FieldBodyReply:
		return msg.Reply
	case FieldBodyReplyHTML:
		return msg.ReplyHTML
	case FieldBodyQuoted:
		return msg.Quoted
	case FieldBodySignature:
		return msg.SignatureText
	case FieldDate:
		if msg.Date.IsZero() {
			return ""
		}
		return msg.Date.Format(time.RFC3339)
	case FieldMessageID:
		return msg.MessageID
	case FieldInReplyTo:
		return strings.Join(msg.InReplyTo, " ")
	case FieldReferences:
		return strings.Join(msg.References, " ")
	case FieldInviteSummary, FieldInviteStart, FieldInviteEnd, FieldInviteOrganizer, FieldInviteLocation:
		return inviteValue(msg.Invite, field)
	case FieldAttachments, FieldInlineImages:
		// The parts the HTML body shows are part of the body, not listed
		// again as attachments; "attachments.inline" lists them.
		names := make([]string, 0, len(msg.Attachments))
		for _, a := range msg.Attachments {
			if a.Referenced == (field == FieldInlineImages) {
				names = append(names, a.Filename)
			}
		}
		return strings.Join(names, ", ")
	}
	return ""
}

func joinAddresses(list []Address) string {
	parts := make([]string, len(list))
	for i, a := range list {
		parts[i] = a.String()
	}
	return strings.Join(parts, ", ")
}

// inviteValue is one field of a calendar invitation, "" without one.
func inviteValue(inv *Invite, field string) string {
	if inv == nil {
		return ""
	}
	when := func(t time.Time) string {
		switch {
		case t.IsZero():
			return ""
		case inv.AllDay:
			return t.Format(time.DateOnly)
		}
		return t.Format(time.RFC3339)
	}
	switch field {
	case FieldInviteSummary:
		return inv.Summary
	case FieldInviteStart:
		return when(inv.Start)
	case FieldInviteEnd:
		return when(inv.End)
	case FieldInviteOrganizer:
		return inv.Organizer
	case FieldInviteLocation:
		return inv.Location
	}
	return ""
}
