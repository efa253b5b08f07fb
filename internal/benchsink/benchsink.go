// Package benchsink holds the sink the benchmarks sync into.
package benchsink

import (
	"context"
	"io"
	"strconv"
	"sync/atomic"

	"github.com/mailsync/mailsync"
)

// DiscardSink is the benchmarks' sink: it keeps nothing but reads every
// attachment and quarantined raw message through, as a sink storing them
// would (or fetchmail delivering to /dev/null).
type DiscardSink struct {
	Tickets         atomic.Int64 // tickets "created"
	MessageBytes    atomic.Int64 // raw size of the messages handed over
	AttachmentBytes atomic.Int64 // decoded attachment bytes read
}

// CreateTicket implements mailsync.Sink.
func (s *DiscardSink) CreateTicket(ctx context.Context, t *mailsync.Ticket) (mailsync.Receipt, error) {
	if t.Message != nil {
		s.MessageBytes.Add(t.Message.Size)
	}
	for _, a := range t.Attachments {
		rc, err := a.Open()
		if err != nil {
			return mailsync.Receipt{}, err
		}
		n, err := io.Copy(io.Discard, rc)
		rc.Close()
		if err != nil {
			return mailsync.Receipt{}, err
		}
		s.AttachmentBytes.Add(n)
	}
	return mailsync.Receipt{TicketID: strconv.FormatInt(s.Tickets.Add(1), 10)}, nil
}

// Quarantine implements mailsync.Sink.
func (s *DiscardSink) Quarantine(ctx context.Context, q *mailsync.Quarantined) error {
	if q.Raw == nil {
		return nil
	}
	n, err := io.Copy(io.Discard, q.Raw)
	s.MessageBytes.Add(n)
	return err
}
