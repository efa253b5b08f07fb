package imap

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/emersion/go-imap/v2"

	"github.com/mailsync/mailsync"
)

// CheckResult is what the admin's "test connection" button shows.
type CheckResult struct {
	// Server is the host:port connected to.
	Server string
	// Security is the protection used (never SecurityAuto).
	Security Security
	// TLSVersion is the negotiated TLS version ("TLS 1.3"), empty without TLS.
	TLSVersion string
	// Auth is the login method: "LOGIN", "XOAUTH2" or "OAUTHBEARER".
	Auth string
	// Capabilities is the server's capability list after login, sorted.
	Capabilities []string
	// Folder is the first folder read (Options.Folders), Messages its
	// message count.
	Folder   string
	Messages uint32
	// UIDValidity and UIDNext are the first folder's identifiers.
	UIDValidity uint32
	UIDNext     uint32
	// Read are the folders the connector reads, each examined, in the
	// order of Options.Folders (the first is Folder above).
	Read []FolderCheck
	// Mailboxes are all the account's selectable folders, sorted by name,
	// so an admin can pick what to read (at most 10,000).
	Mailboxes []Mailbox
	// CanMove is true when the server has MOVE; without it "move" uses
	// COPY + UID EXPUNGE, which needs CanExpungeUIDs.
	CanMove bool
	// CanExpungeUIDs is true when the server has UIDPLUS (or IMAP4rev2),
	// needed by the "delete" post-action.
	CanExpungeUIDs bool
	// Elapsed is how long the check took.
	Elapsed time.Duration
}

// FolderCheck is one folder the connector reads, as Check found it.
type FolderCheck struct {
	// Name is the folder's name as configured.
	Name string
	// Mailbox is the folder's name on the server, written with "/" as the
	// hierarchy separator like Mailbox.Name ("INBOX/Support" when the
	// server put "Support" in its personal namespace "INBOX.").
	Mailbox string
	// Messages is its message count.
	Messages uint32
	// UIDValidity and UIDNext are the folder's identifiers.
	UIDValidity uint32
	UIDNext     uint32
}

// Mailbox is one selectable folder of the account.
type Mailbox struct {
	// Name is the folder's name written with "/" as the hierarchy
	// separator, as Options.Folders takes it ("INBOX", "Support/Tier 1").
	Name string
	// SpecialUse is the folder's RFC 6154 special use, when the server
	// says: `\Junk`, `\Sent`, `\Trash`, `\Drafts`, `\Archive`, `\All`,
	// `\Flagged`; "" otherwise. A \Junk folder is read only when listed
	// in Options.Folders.
	SpecialUse string
}

// Check connects, logs in and examines the folder read-only, for the admin's
// "test connection" button. Errors are actionable and typed: the DNS name,
// a refused port, TLS (mailsync.ErrTLS), credentials (mailsync.ErrAuth),
// a missing folder (mailsync.ErrFolderNotFound, with the folders that do
// exist), a configuration problem (mailsync.ErrInvalidConfig).
func Check(ctx context.Context, conn mailsync.Connection, opts Options) (*CheckResult, error) {
	start := time.Now()
	c, err := New(conn, opts)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	res := &CheckResult{Server: c.cfg.addr, Security: c.cfg.security, Folder: c.cfg.opts.Folders[0]}
	err = c.do(ctx, "check", func(s *session) error {
		res.Auth = s.auth
		if s.tls.Version != 0 {
			res.TLSVersion = tls.VersionName(s.tls.Version)
		}
		for cp := range s.caps {
			res.Capabilities = append(res.Capabilities, string(cp))
		}
		slices.Sort(res.Capabilities)
		res.CanMove = s.caps.Has(imap.CapMove)
		res.CanExpungeUIDs = s.hasUIDPlus()
		for i, folder := range s.cfg.opts.Folders {
			sel, err := s.selectFolder(ctx, folder, true)
			if err != nil {
				if errors.Is(err, mailsync.ErrFolderNotFound) {
					if names := s.folderNames(ctx, 30); len(names) > 0 {
						return fmt.Errorf("%w; the account has: %s", err, strings.Join(names, ", "))
					}
				}
				return err
			}
			if i == 0 {
				res.Messages, res.UIDValidity, res.UIDNext = sel.NumMessages, sel.UIDValidity, uint32(sel.UIDNext)
			}
			res.Read = append(res.Read, FolderCheck{Name: folder, Mailbox: s.selMailbox,
				Messages: sel.NumMessages, UIDValidity: sel.UIDValidity, UIDNext: uint32(sel.UIDNext)})
		}
		var err error
		res.Mailboxes, err = s.mailboxes(ctx)
		for i := range res.Read {
			res.Read[i].Mailbox = s.slashName(res.Read[i].Mailbox)
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	res.Elapsed = time.Since(start)
	return res, nil
}

// folderNames lists up to limit selectable folder names, best effort.
func (s *session) folderNames(ctx context.Context, limit int) []string {
	// Not Collect: a hostile server could send LIST responses without end.
	const keep = 10_000
	cmd := s.client.List("", "*", nil)
	var names []string
	more := 0
	for d := cmd.Next(); d != nil; d = cmd.Next() {
		if slices.Contains(d.Attrs, imap.MailboxAttrNoSelect) {
			continue
		}
		if len(names) == keep {
			more++
			continue
		}
		names = append(names, fmt.Sprintf("%q", s.cfg.redactText(d.Mailbox)))
	}
	if err := cmd.Close(); err != nil || ctx.Err() != nil {
		return nil
	}
	slices.Sort(names)
	if len(names)+more > limit {
		names = append(names[:limit], fmt.Sprintf("… (%d more)", len(names)+more-limit))
	}
	return names
}

// maxMailboxes bounds the folders Check lists (a hostile server could
// send LIST responses without end).
const maxMailboxes = 10_000

// mailboxes lists the account's selectable folders with their special
// use (RETURN (SPECIAL-USE) when the server has SPECIAL-USE and
// LIST-EXTENDED; servers with SPECIAL-USE also send the attributes
// unasked), names written with "/" as the hierarchy separator.
func (s *session) mailboxes(ctx context.Context) ([]Mailbox, error) {
	var opts *imap.ListOptions
	if s.caps.Has(imap.CapSpecialUse) && (s.caps.Has(imap.CapListExtended) || s.caps.Has(imap.CapIMAP4rev2)) {
		opts = &imap.ListOptions{ReturnSpecialUse: true}
	}
	cmd := s.client.List("", "*", opts)
	var out []Mailbox
	for d := cmd.Next(); d != nil; d = cmd.Next() {
		if slices.Contains(d.Attrs, imap.MailboxAttrNoSelect) || slices.Contains(d.Attrs, imap.MailboxAttrNonExistent) || len(out) == maxMailboxes {
			continue
		}
		if s.delim == 0 && d.Delim != 0 {
			s.delim, s.delimKnown = d.Delim, true
		}
		name := s.cfg.redactText(d.Mailbox)
		if d.Delim != 0 && d.Delim != '/' {
			name = strings.ReplaceAll(name, string(d.Delim), "/")
		}
		m := Mailbox{Name: name}
		for _, a := range d.Attrs {
			switch a {
			case imap.MailboxAttrAll, imap.MailboxAttrArchive, imap.MailboxAttrDrafts, imap.MailboxAttrFlagged,
				imap.MailboxAttrJunk, imap.MailboxAttrSent, imap.MailboxAttrTrash:
				m.SpecialUse = string(a)
			}
		}
		out = append(out, m)
	}
	if err := cmd.Close(); err != nil {
		if _, ok := s.refusal(ctx, err); ok {
			return nil, nil // a server that refuses LIST still passed the check
		}
		return nil, s.check(ctx, "list", err)
	}
	slices.SortFunc(out, func(a, b Mailbox) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

// slashName writes a server mailbox name with "/" as the hierarchy
// separator, once the separator is known.
func (s *session) slashName(name string) string {
	if s.delim != 0 && s.delim != '/' {
		return strings.ReplaceAll(name, string(s.delim), "/")
	}
	return name
}

// Check implements mailsync.Checker with the package's Check on the
// connector's configuration (a separate connection).
func (c *Connector) Check(ctx context.Context) (*mailsync.CheckResult, error) {
	start := time.Now()
	r, err := Check(ctx, c.cfg.conn, c.cfg.opts)
	if err != nil {
		return nil, err
	}
	folders := make([]mailsync.FolderStatus, len(r.Read))
	for i, f := range r.Read {
		folders[i] = mailsync.FolderStatus{Name: f.Name, Messages: int(f.Messages), Unread: -1}
	}
	var warnings []string
	for _, m := range r.Mailboxes {
		if m.SpecialUse != string(imap.MailboxAttrJunk) {
			continue
		}
		for _, f := range r.Read {
			if sameFolder(f.Mailbox, m.Name) {
				warnings = append(warnings, fmt.Sprintf("folder %q is the account's junk folder (\\Junk): its spam becomes tickets", f.Name))
			}
		}
	}
	return &mailsync.CheckResult{Provider: "imap", Server: r.Server, Security: r.Security.String(), TLSVersion: r.TLSVersion,
		Auth: r.Auth, Folders: folders, Capabilities: r.Capabilities, Warnings: warnings, Elapsed: time.Since(start), Details: r}, nil
}
