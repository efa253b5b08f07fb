package gmail

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/mailsync/mailsync"
)

// CheckResult is what Check found out about a working configuration.
type CheckResult struct {
	// EmailAddress is the mailbox's address, as the API reports it.
	EmailAddress string
	// MessagesTotal is the number of messages in the mailbox.
	MessagesTotal int
	// HistoryID is the mailbox's current history id.
	HistoryID uint64
	// Labels are the labels the connector reads, with their counts.
	Labels []LabelStatus
	// Warnings point at things that work but look wrong, e.g. a
	// connection user that is not the mailbox's address.
	Warnings []string
	// Requests is the number of HTTP requests the check made.
	Requests int64
}

// LabelStatus is one label the connector reads.
type LabelStatus struct {
	Name, ID       string
	MessagesTotal  int
	MessagesUnread int
}

// String summarises the result for an admin screen or a log line.
func (r *CheckResult) String() string {
	var ls []string
	for _, l := range r.Labels {
		ls = append(ls, fmt.Sprintf("%s %d messages (%d unread)", l.Name, l.MessagesTotal, l.MessagesUnread))
	}
	s := fmt.Sprintf("gmail %s: %d messages; %s", r.EmailAddress, r.MessagesTotal, strings.Join(ls, "; "))
	for _, w := range r.Warnings {
		s += "; warning: " + w
	}
	return s
}

// Check tests conn and opts as the admin form's "test connection" button
// does: it gets an access token, reads the mailbox's profile and looks up
// each configured label with its message counts, changing nothing. Its
// errors are typed like the Connector's: *mailsync.ConfigError,
// mailsync.ErrConsentRequired (the refresh token was revoked: sign in
// again), ErrAuth (token refused, or a 403 such as a missing scope),
// ErrFolderNotFound (a label does not exist), ErrConnection, ErrTLS and
// *mailsync.ThrottledError.
//
// Check cannot see the token's scopes: a read-only token passes, and the
// first post-action that writes then fails with ErrAuth. See Scopes.
func Check(ctx context.Context, conn mailsync.Connection, opts Options) (_ *CheckResult, err error) {
	c, err := New(conn, opts)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	defer func() { err = c.cfg.scrub.err(err) }()
	prof, err := c.profile(ctx)
	if err != nil {
		return nil, err
	}
	res := &CheckResult{EmailAddress: prof.EmailAddress, MessagesTotal: int(prof.MessagesTotal), HistoryID: prof.HistoryId}
	if conn.User != "" && c.cfg.user == "me" && !strings.EqualFold(conn.User, prof.EmailAddress) {
		res.Warnings = append(res.Warnings, fmt.Sprintf("the connection's user %q is not the mailbox's address %q the token belongs to", conn.User, prof.EmailAddress))
	}
	labels, err := c.resolve(ctx, false)
	if err != nil {
		return nil, err
	}
	for _, l := range labels {
		lj, err := c.getLabel(ctx, l.ID)
		if isNotFound(err) {
			return nil, fmt.Errorf("gmail: label %q: %w", l.Name, mailsync.ErrFolderNotFound)
		}
		if err != nil {
			return nil, err
		}
		res.Labels = append(res.Labels, LabelStatus{Name: l.Name, ID: l.ID, MessagesTotal: int(lj.MessagesTotal), MessagesUnread: int(lj.MessagesUnread)})
	}
	res.Requests = c.Requests()
	return res, nil
}

// Check implements mailsync.Checker with the package's Check on the
// connector's configuration.
func (c *Connector) Check(ctx context.Context) (*mailsync.CheckResult, error) {
	start := time.Now()
	r, err := Check(ctx, c.cfg.conn, c.cfg.opts)
	if err != nil {
		return nil, err
	}
	res := &mailsync.CheckResult{Provider: "gmail", Server: c.cfg.root.String(), Account: r.EmailAddress, Security: "https",
		Auth: "OAuth 2.0", Warnings: r.Warnings, Elapsed: time.Since(start), Details: r}
	for _, l := range r.Labels {
		res.Folders = append(res.Folders, mailsync.FolderStatus{Name: l.Name, Messages: l.MessagesTotal, Unread: l.MessagesUnread})
	}
	return res, nil
}
