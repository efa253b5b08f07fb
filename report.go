package mailsync

import "time"

// Status is the outcome of one message in a sync.
type Status string

// The outcomes.
const (
	StatusCreated     Status = "created"      // a new ticket
	StatusDuplicate   Status = "duplicate"    // the sink already had the ticket (a re-run after a crash)
	StatusAlreadyDone Status = "already_done" // the state says it was done; not downloaded
	StatusQuarantined Status = "quarantined"  // handed to the sink raw, with the reason
	StatusFailed      Status = "failed"       // left for the next run
	StatusFollowUp    Status = "follow_up"    // added to an existing ticket (see Outcome.Rule)
	StatusDropped     Status = "dropped"      // routed to RouteDrop: no ticket, mail left untouched
	StatusGone        Status = "gone"         // listed, but deleted from the mailbox before it was fetched
)

// Outcome is what happened to one message.
type Outcome struct {
	Key       string `json:"key"`
	MessageID string `json:"message_id,omitempty"`
	Status    Status `json:"status"`
	TicketID  string `json:"ticket_id,omitempty"`
	// Rule is the threading rule that made it a follow-up.
	Rule ThreadRule `json:"rule,omitempty"`
	// Kind is the classification of the mail (auto-reply, bounce, …).
	Kind Kind `json:"kind,omitempty"`
	// RelatedTicketID is, for a new ticket, the ticket a reply pointed to
	// but could not join (closed and refused, gone, or the sender is not a
	// participant); Reason says which.
	RelatedTicketID string `json:"related_ticket_id,omitempty"`
	// Reason explains a decision that is not obvious from the status, e.g.
	// why a reply became a new ticket.
	Reason string `json:"reason,omitempty"`
	// Warnings are problems with this message that did not stop it, e.g.
	// side data (its thread entry) the State could not record.
	Warnings []string `json:"warnings,omitempty"`
	// TicketType is the ticket type of the ticket or follow-up (the one a
	// rule chose, or the mapping's).
	TicketType string `json:"ticket_type,omitempty"`
	// Rules are the ids of the routing rules that matched, in order.
	Rules []string `json:"rules,omitempty"`
	// Blocked names the sender when its mail was blocked (block list or a
	// block rule).
	Blocked string `json:"blocked,omitempty"`
	// Fields are the mapped ticket fields, in a dry run only.
	Fields map[string]string `json:"fields,omitempty"`
	// Err says why a message was quarantined or failed.
	Err error `json:"-"`
}

// Report summarises a sync.
type Report struct {
	Connection  string        `json:"connection"`
	Provider    string        `json:"provider"`
	Started     time.Time     `json:"started"`
	Duration    time.Duration `json:"duration"`
	ListTime    time.Duration `json:"list_time"`
	Seen        int           `json:"seen"`         // messages listed
	Created     int           `json:"created"`      // new tickets
	AlreadyDone int           `json:"already_done"` // skipped by state, or duplicates the sink already had
	FollowUps   int           `json:"follow_ups"`   // added to existing tickets
	Dropped     int           `json:"dropped"`      // routed to RouteDrop
	Gone        int           `json:"gone"`         // deleted before they could be fetched
	Quarantined int           `json:"quarantined"`
	Failed      int           `json:"failed"`
	Blocked     int           `json:"blocked"` // dropped or quarantined because the sender is blocked
	// DryRun is true for a preview (WithDryRun): nothing was stored.
	DryRun bool `json:"dry_run,omitempty"`
	// Cursor is the cursor stored at the end ("" if unchanged because something failed).
	Cursor   Cursor    `json:"-"`
	Notes    []string  `json:"notes,omitempty"`
	Messages []Outcome `json:"messages,omitempty"`
}

func (r *Report) add(o Outcome) {
	if o.Blocked != "" {
		r.Blocked++
	}
	switch o.Status {
	case StatusCreated:
		r.Created++
	case StatusDuplicate, StatusAlreadyDone:
		r.AlreadyDone++
	case StatusFollowUp:
		r.FollowUps++
	case StatusDropped:
		r.Dropped++
	case StatusGone:
		r.Gone++
	case StatusQuarantined:
		r.Quarantined++
	case StatusFailed:
		r.Failed++
	}
	r.Messages = append(r.Messages, o)
}

// Progress is reported during long syncs.
type Progress struct {
	Done, Total int
}
