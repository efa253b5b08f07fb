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
	// Folder is the folder examined, Messages its message count.
	Folder   string
	Messages uint32
	// UIDValidity and UIDNext are the folder's identifiers.
	UIDValidity uint32
	UIDNext     uint32
	// CanMove is true when the server has MOVE; without it "move" uses
	// COPY + UID EXPUNGE, which needs CanExpungeUIDs.
	CanMove bool
	// CanExpungeUIDs is true when the server has UIDPLUS (or IMAP4rev2),
	// needed by the "delete" post-action.
	CanExpungeUIDs bool
	// Elapsed is how long the check took.
	Elapsed time.Duration
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
	res := &CheckResult{Server: c.cfg.addr, Security: c.cfg.security, Folder: c.cfg.opts.Folder}
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
		sel, err := s.selectFolder(ctx, true)
		if err != nil {
			if errors.Is(err, mailsync.ErrFolderNotFound) {
				if names := s.folderNames(ctx, 30); len(names) > 0 {
					return fmt.Errorf("%w; the account has: %s", err, strings.Join(names, ", "))
				}
			}
			return err
		}
		res.Messages, res.UIDValidity, res.UIDNext = sel.NumMessages, sel.UIDValidity, uint32(sel.UIDNext)
		return nil
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

// Check implements mailsync.Checker with the package's Check on the
// connector's configuration (a separate connection).
func (c *Connector) Check(ctx context.Context) (*mailsync.CheckResult, error) {
	start := time.Now()
	r, err := Check(ctx, c.cfg.conn, c.cfg.opts)
	if err != nil {
		return nil, err
	}
	return &mailsync.CheckResult{Provider: "imap", Server: r.Server, Security: r.Security.String(), TLSVersion: r.TLSVersion,
		Auth: r.Auth, Folders: []mailsync.FolderStatus{{Name: r.Folder, Messages: int(r.Messages), Unread: -1}},
		Capabilities: r.Capabilities, Elapsed: time.Since(start), Details: r}, nil
}
