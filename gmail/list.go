package gmail

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"

	gmailapi "google.golang.org/api/gmail/v1"

	"github.com/mailsync/mailsync"
)

// cursor is the position a List leaves: the mailbox's history id and the
// labels it was taken for, written "HISTORYID;LABEL;NAME=ID…" (system
// labels as their id, others as the URL-escaped name, "=", the id), e.g.
// "4207;INBOX" or "4207;Support%2FTier+1=Label_12". Keeping the ids lets
// the next List skip labels.list; keeping the names lets it notice a
// changed configuration.
type cursor struct {
	history uint64
	labels  []label // nil for a bare history id
}

func (c cursor) String() string {
	var b strings.Builder
	b.WriteString(strconv.FormatUint(c.history, 10))
	for _, l := range c.labels {
		b.WriteByte(';')
		if l.Name == l.ID {
			b.WriteString(l.ID)
		} else {
			b.WriteString(url.QueryEscape(l.Name) + "=" + l.ID)
		}
	}
	return b.String()
}

func parseCursor(s string) (cursor, error) {
	parts := strings.Split(s, ";")
	h, err := strconv.ParseUint(parts[0], 10, 64)
	if err != nil || h == 0 {
		return cursor{}, fmt.Errorf("not a Gmail history cursor")
	}
	c := cursor{history: h}
	for _, p := range parts[1:] {
		name, id, ok := strings.Cut(p, "=")
		if !ok {
			if p == "" {
				return cursor{}, fmt.Errorf("empty label")
			}
			c.labels = append(c.labels, label{Name: p, ID: p})
			continue
		}
		n, err := url.QueryUnescape(name)
		if err != nil || n == "" || id == "" {
			return cursor{}, fmt.Errorf("bad label %q", p)
		}
		c.labels = append(c.labels, label{Name: n, ID: id})
	}
	return c, nil
}

// sameNames reports whether the cursor was taken for the configured labels.
func (c cursor) sameNames(names []string) bool {
	if len(c.labels) != len(names) {
		return false
	}
	for i, l := range c.labels {
		if l.Name != names[i] {
			return false
		}
	}
	return true
}

func allSystem(ls []label) bool {
	for _, l := range ls {
		if _, ok := systemLabel(l.Name); !ok {
			return false
		}
	}
	return true
}

// historyGone: the history from the cursor cannot be read (HTTP 404 for
// an expired history id, or a label whose id changed); List answers it
// with a full listing.
type historyGone struct{ why string }

func (e *historyGone) Error() string { return e.why }

// List returns the messages that carry one of the configured labels and
// arrived after cur (all of them when cur is empty), oldest first.
//
// With an empty cursor it reads the mailbox's current history id
// (users.getProfile) first and then pages through messages.list for each
// label. The history id is taken before the listing so that mail arriving
// during it is never lost: such a message is either in the listing or in
// the history after that id, or both (the engine skips keys it has
// processed, so a duplicate costs nothing).
//
// With a cursor it pages through history.list (messageAdded,
// messageDeleted and labelAdded records, filtered by label; labelRemoved
// too when a label was added) from the cursor's history id, so mail that
// gains a configured label later (moved out of Spam, un-archived,
// labelled by hand) is new mail too (see history): one request when
// nothing is new and the labels are system labels or were resolved
// before. When Gmail no longer has that history (HTTP 404, typically after
// a week), or the configured labels changed, it lists the labels in full
// and says so in Listing.Notes; the keys (Gmail message ids) are stable,
// so the engine creates no duplicate tickets.
//
// MessageRef.Size is -1: neither messages.list nor history.list give
// sizes. Listing.Complete is false: a message that left the labels (moved
// by a post-action) must stay recorded as processed.
func (c *Connector) List(ctx context.Context, cur mailsync.Cursor) (_ *mailsync.Listing, err error) {
	defer func() { err = c.cfg.scrub.err(err) }()
	if err := c.check(ctx); err != nil {
		return nil, err
	}
	var notes []string
	if cur != "" {
		pc, err := parseCursor(string(cur))
		switch {
		case err != nil:
			notes = append(notes, fmt.Sprintf("gmail: the stored cursor is not a Gmail history cursor (%v); listed the labels in full", err))
		case pc.labels != nil && !pc.sameNames(c.cfg.labels):
			notes = append(notes, fmt.Sprintf("gmail: the labels changed since the last sync (%s → %s); listed them in full", names(pc.labels), strings.Join(c.cfg.labels, ", ")))
		default:
			labels := pc.labels
			if labels == nil {
				if labels, err = c.resolve(ctx, false); err != nil {
					return nil, err
				}
			}
			l, err := c.history(ctx, pc.history, labels)
			if err == nil {
				return l, nil
			}
			var gone *historyGone
			if !errors.As(err, &gone) {
				return nil, err
			}
			c.cfg.log.WarnContext(ctx, "gmail: history id expired, listing in full", "history_id", pc.history)
			notes = append(notes, fmt.Sprintf("gmail: history id %d is no longer usable (%s); listed the labels in full", pc.history, gone.why))
			if !allSystem(labels) {
				// The 404 may come from a deleted label: look the labels up again.
				c.allLabels = nil
			}
		}
	}
	labels, err := c.resolve(ctx, false)
	if err != nil {
		return nil, err
	}
	l, err := c.listAll(ctx, labels)
	if err != nil {
		return nil, err
	}
	l.Notes = append(notes, l.Notes...)
	return l, nil
}

func names(ls []label) string {
	var s []string
	for _, l := range ls {
		s = append(s, l.Name)
	}
	return strings.Join(s, ", ")
}

// profile reads the mailbox's profile (users.getProfile).
func (c *Connector) profile(ctx context.Context) (*gmailapi.Profile, error) {
	var prof *gmailapi.Profile
	err := c.api.do(ctx, "users.getProfile", func(ctx context.Context) (err error) {
		prof, err = c.api.svc.Users.GetProfile(c.cfg.user).Context(ctx).Do()
		return err
	})
	return prof, err
}

// listAll is the full listing: profile, then every page of every label.
func (c *Connector) listAll(ctx context.Context, labels []label) (*mailsync.Listing, error) {
	prof, err := c.profile(ctx)
	if err != nil {
		return nil, err
	}
	hid := prof.HistoryId
	if hid == 0 {
		return nil, fmt.Errorf("gmail: users.getProfile: answer without historyId")
	}
	seen := map[string]bool{}
	var keys []string
	for _, l := range labels {
		ids, err := c.listLabel(ctx, l)
		if err != nil {
			return nil, err
		}
		for _, id := range ids {
			if !seen[id] {
				seen[id] = true
				keys = append(keys, id)
			}
		}
	}
	if len(labels) > 1 {
		// Merge the labels' listings. Gmail message ids grow with the
		// time a message reached the mailbox (they are hex timestamps
		// with a counter), which is the order we want.
		slices.SortStableFunc(keys, compareIDs)
	}
	c.cfg.log.DebugContext(ctx, "gmail: listed in full", "messages", len(keys), "history_id", hid)
	return &mailsync.Listing{Messages: refs(keys), Cursor: mailsync.Cursor(cursor{history: hid, labels: labels}.String())}, nil
}

// listLabel pages through messages.list for one label and returns the
// ids oldest first (the API lists newest first).
func (c *Connector) listLabel(ctx context.Context, l label) ([]string, error) {
	var ids []string
	err := c.api.pages(ctx, "messages.list", func(ctx context.Context, token string) (string, error) {
		call := c.api.svc.Users.Messages.List(c.cfg.user).LabelIds(l.ID).MaxResults(int64(c.cfg.pageSize)).Context(ctx)
		if token != "" {
			call.PageToken(token)
		}
		res, err := call.Do()
		if err != nil {
			return "", err
		}
		for _, m := range res.Messages {
			if m != nil && m.Id != "" {
				ids = append(ids, m.Id)
			}
		}
		return res.NextPageToken, nil
	})
	if err != nil {
		if isNotFound(err) || isInvalidLabel(err) {
			return nil, fmt.Errorf("gmail: label %q (%s): %w: %w", l.Name, l.ID, mailsync.ErrFolderNotFound, err)
		}
		return nil, err
	}
	slices.Reverse(ids)
	return ids, nil
}

// History record types List asks for. The first request of each label
// asks for messages added and deleted and for labels added: mail that
// gains a watched label later (moved out of Spam, un-archived, labelled
// by hand) appears in the history only as a labelsAdded record. Label
// removals are asked for only when such an arrival was seen, to cancel
// it: asking every time would page through a record for every message
// the provider's own mark-read touched.
var (
	arrivalTypes = []string{"messageAdded", "messageDeleted", "labelAdded"}
	removalTypes = []string{"labelRemoved"}
)

// histEvent is one change of one message in one label's history.
type histEvent struct {
	rec  uint64 // history record id
	id   string // message id
	kind int    // evAdded, evLabelled, evUnlabelled, evDeleted
}

const (
	evAdded      = iota // messageAdded with the label
	evLabelled          // labelsAdded of the label
	evUnlabelled        // labelsRemoved of the label
	evDeleted           // messageDeleted
)

// historyEvents pages through history.list for label l from start with
// the given record types and returns the events that concern l, and the
// mailbox's history id.
func (c *Connector) historyEvents(ctx context.Context, start uint64, l label, types []string) ([]histEvent, uint64, error) {
	var evs []histEvent
	var last uint64
	err := c.api.pages(ctx, "history.list", func(ctx context.Context, token string) (string, error) {
		call := c.api.svc.Users.History.List(c.cfg.user).StartHistoryId(start).
			HistoryTypes(types...).LabelId(l.ID).MaxResults(int64(c.cfg.pageSize)).Context(ctx)
		if token != "" {
			call.PageToken(token)
		}
		res, err := call.Do()
		if err != nil {
			return "", err
		}
		for _, h := range res.History {
			if h == nil {
				continue
			}
			for _, ma := range h.MessagesAdded {
				if ma == nil || ma.Message == nil || ma.Message.Id == "" {
					continue
				}
				// With labelId, history.list returns additions of messages
				// that carry the label; labelIds, when present, must agree.
				if ls := ma.Message.LabelIds; len(ls) > 0 && !slices.Contains(ls, l.ID) {
					continue
				}
				evs = append(evs, histEvent{h.Id, ma.Message.Id, evAdded})
			}
			for _, la := range h.LabelsAdded {
				if la != nil && la.Message != nil && la.Message.Id != "" && slices.Contains(la.LabelIds, l.ID) {
					evs = append(evs, histEvent{h.Id, la.Message.Id, evLabelled})
				}
			}
			for _, lr := range h.LabelsRemoved {
				if lr != nil && lr.Message != nil && lr.Message.Id != "" && slices.Contains(lr.LabelIds, l.ID) {
					evs = append(evs, histEvent{h.Id, lr.Message.Id, evUnlabelled})
				}
			}
			for _, md := range h.MessagesDeleted {
				if md != nil && md.Message != nil && md.Message.Id != "" {
					evs = append(evs, histEvent{h.Id, md.Message.Id, evDeleted})
				}
			}
		}
		if res.HistoryId != 0 {
			last = res.HistoryId
		}
		return res.NextPageToken, nil
	})
	return evs, last, err
}

// history pages through history.list from start for each label and
// returns the messages that came into the labels within the window, in
// the order of the history records that brought them in:
//
//   - a message added to the mailbox with a label (messageAdded) is
//     listed, even if it left the label later in the window (trashed,
//     archived: it is still there to fetch);
//   - a message that gained a label (labelsAdded: moved out of Spam,
//     un-archived, labelled by hand) is listed unless a later
//     labelsRemoved of that label in the window cancels it;
//   - a message deleted for good within the window is left out (Fetch
//     could only skip it, and the engine keeps its cursor while listed
//     messages go missing);
//   - each message is listed once; changes of other labels (the UNREAD a
//     mark-read removes, a move's target label) bring nothing back.
func (c *Connector) history(ctx context.Context, start uint64, labels []label) (*mailsync.Listing, error) {
	type arrival struct {
		rec   uint64
		added bool // by messageAdded: a later removal does not cancel it
	}
	in := map[string]arrival{} // over all labels
	deleted := map[string]bool{}
	next := uint64(0)
	for _, l := range labels {
		evs, last, err := c.historyEvents(ctx, start, l, arrivalTypes)
		if err == nil && slices.ContainsFunc(evs, func(e histEvent) bool { return e.kind == evLabelled }) {
			var more []histEvent
			more, _, err = c.historyEvents(ctx, start, l, removalTypes)
			evs = append(evs, more...)
			slices.SortStableFunc(evs, func(a, b histEvent) int {
				switch {
				case a.rec < b.rec:
					return -1
				case a.rec > b.rec:
					return 1
				}
				return 0
			})
		}
		if isNotFound(err) {
			return nil, &historyGone{why: "history.list answered HTTP 404"}
		}
		if isInvalidLabel(err) {
			if _, sys := systemLabel(l.Name); !sys {
				// The label was deleted (and maybe made again with
				// another id): List looks it up and lists in full.
				return nil, &historyGone{why: fmt.Sprintf("label %q no longer has id %s", l.Name, l.ID)}
			}
			return nil, fmt.Errorf("gmail: label %q (%s): %w: %w", l.Name, l.ID, mailsync.ErrFolderNotFound, err)
		}
		if err != nil {
			return nil, err
		}
		arrived := map[string]arrival{} // in this label
		for _, e := range evs {
			a, ok := arrived[e.id]
			switch e.kind {
			case evAdded:
				if !ok || !a.added {
					arrived[e.id] = arrival{rec: e.rec, added: true}
				}
			case evLabelled:
				if !ok {
					arrived[e.id] = arrival{rec: e.rec}
				}
			case evUnlabelled:
				if ok && !a.added {
					delete(arrived, e.id)
				}
			case evDeleted:
				deleted[e.id] = true
				delete(arrived, e.id)
			}
		}
		for id, a := range arrived {
			if prev, ok := in[id]; !ok || a.rec < prev.rec {
				in[id] = a
			}
		}
		// With several labels, keep the smallest of their history ids: a
		// message that arrived between the calls is listed again next
		// time rather than missed.
		if last != 0 && (next == 0 || last < next) {
			next = last
		}
	}
	if next < start {
		next = start
	}
	type item struct {
		id  string
		rec uint64
	}
	all := make([]item, 0, len(in))
	for id, a := range in {
		if !deleted[id] {
			all = append(all, item{id, a.rec})
		}
	}
	slices.SortFunc(all, func(a, b item) int {
		switch {
		case a.rec < b.rec:
			return -1
		case a.rec > b.rec:
			return 1
		}
		return compareIDs(a.id, b.id)
	})
	keys := make([]string, 0, len(all))
	for _, a := range all {
		keys = append(keys, a.id)
	}
	c.cfg.log.DebugContext(ctx, "gmail: listed history", "start", start, "messages", len(keys), "history_id", next)
	return &mailsync.Listing{Messages: refs(keys), Cursor: mailsync.Cursor(cursor{history: next, labels: labels}.String())}, nil
}

func refs(keys []string) []mailsync.MessageRef {
	out := make([]mailsync.MessageRef, len(keys))
	for i, k := range keys {
		out[i] = mailsync.MessageRef{Key: k, Size: -1}
	}
	return out
}

// compareIDs orders Gmail message ids (hex numbers) numerically.
func compareIDs(a, b string) int {
	if len(a) != len(b) {
		return len(a) - len(b)
	}
	return strings.Compare(a, b)
}
