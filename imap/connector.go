package imap

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strconv"
	"strings"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/mailsync/mailsync"
)

// Connector reads one or more IMAP folders (Options.Folders). It implements mailsync.Connector. It
// connects on the first call and reconnects on the next call after the
// connection broke. Like every mailsync.Connector it is used by one
// goroutine at a time.
type Connector struct {
	cfg    *config
	s      *session // nil when not connected
	closed bool
}

var _ mailsync.Connector = (*Connector)(nil)

// New validates conn and opts and returns a Connector. It does not connect;
// the first List (or Fetch, Ack) does. Configuration problems are a
// *mailsync.ConfigError; a plaintext connection without
// Options.AllowPlaintextLogin is an error wrapping
// mailsync.ErrPlaintextRefused.
func New(conn mailsync.Connection, opts Options) (*Connector, error) {
	cfg, err := newConfig(conn, opts)
	if err != nil {
		return nil, err
	}
	return &Connector{cfg: cfg}, nil
}

// Connection returns the configuration the connector was made from.
func (c *Connector) Connection() mailsync.Connection { return c.cfg.conn }

// String describes the connector without credentials.
func (c *Connector) String() string {
	return fmt.Sprintf("imap connector %s folders %q (%s)", c.cfg.addr, c.cfg.opts.Folders, c.cfg.security)
}

// session returns a usable session, connecting if needed.
func (c *Connector) session(ctx context.Context) (*session, error) {
	if c.closed {
		return nil, errors.New("imap: connector is closed")
	}
	if c.s != nil {
		if c.s.usable() {
			return c.s, nil
		}
		c.cfg.log.Debug("imap reconnecting after a broken connection")
		c.drop()
	}
	s, err := dial(ctx, c.cfg)
	if err != nil {
		return nil, err
	}
	c.s = s
	return s, nil
}

// drop forgets the current session, closing it.
func (c *Connector) drop() {
	if c.s != nil {
		c.s.shutdown()
		c.s = nil
	}
}

// do runs f on a usable session while ctx and the stall timeout are
// watched. A broken session is dropped so the next call reconnects. The
// error is scrubbed of every secret a request carried, whatever text a
// server echoed into it.
func (c *Connector) do(ctx context.Context, op string, f func(s *session) error) error {
	return c.cfg.redactErr(c.run(ctx, op, f))
}

func (c *Connector) run(ctx context.Context, op string, f func(s *session) error) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("imap: %s: %w", op, err)
	}
	s, err := c.session(ctx)
	if err != nil {
		return err
	}
	stop := s.watch(ctx, c.cfg.opts.CommandTimeout)
	err = f(s)
	stop()
	if !s.usable() {
		c.drop()
		if err == nil {
			// The work was done but the connection did not survive (e.g.
			// ctx ended right after); the next call reconnects.
			c.cfg.log.Debug("imap connection closed after " + op)
		}
	}
	return err
}

// selectFolder selects (or, readOnly, examines) the folder the admin
// named name: as written (with the server's separator) or, when the server
// does not know that name, inside its personal namespace ("INBOX.Support"
// on Courier and Cyrus).
func (s *session) selectFolder(ctx context.Context, name string, readOnly bool) (*imap.SelectData, error) {
	s.selected, s.selName = false, ""
	folder, err := s.mailboxName(ctx, name)
	if err != nil {
		return nil, err
	}
	data, err := s.client.Select(folder, &imap.SelectOptions{ReadOnly: readOnly}).Wait()
	tried := ""
	if ie, ok := s.refusal(ctx, err); ok && folderMissing(ie) {
		names, nerr := s.destinations(ctx, name)
		if nerr != nil {
			return nil, nerr
		}
		if names[0] != folder {
			tried = fmt.Sprintf(" (also tried %q in the personal namespace)", names[0])
			if d, err2 := s.client.Select(names[0], &imap.SelectOptions{ReadOnly: readOnly}).Wait(); err2 == nil {
				data, err, folder = d, nil, names[0]
			} else if _, ok := s.refusal(ctx, err2); !ok {
				err = err2
			}
		}
	}
	if err != nil {
		var ie *imap.Error
		if errors.As(err, &ie) && ctx.Err() == nil && s.killReason() == nil {
			switch ie.Code {
			case imap.ResponseCodeUnavailable, imap.ResponseCodeInUse, imap.ResponseCodeLimit:
				return nil, s.cfg.responseError("select", ie)
			}
			return nil, fmt.Errorf("imap: folder %q on %s cannot be opened (%s)%s: %w", folder, s.cfg.addr, s.cfg.describe(ie), tried, mailsync.ErrFolderNotFound)
		}
		return nil, s.check(ctx, "select", err)
	}
	s.sel = *data
	s.selected, s.selName, s.selMailbox = !readOnly, name, folder
	return data, nil
}

// mailboxName maps a folder name written with "/" as the hierarchy
// separator ("Done/2026") to the server's separator (Dovecot's Maildir++
// uses "."), asking the server once per connection (LIST "" "").
func (s *session) mailboxName(ctx context.Context, name string) (string, error) {
	if !strings.Contains(name, "/") {
		return name, nil
	}
	if !s.delimKnown {
		cmd := s.client.List("", "", nil) // not Collect: one answer is expected
		for d := cmd.Next(); d != nil; d = cmd.Next() {
			if s.delim == 0 {
				s.delim = d.Delim
			}
		}
		err := cmd.Close()
		var ie *imap.Error
		if err != nil && !errors.As(err, &ie) {
			return "", s.check(ctx, "list", err)
		}
		s.delimKnown = true
	}
	if s.delim == 0 || s.delim == '/' {
		return name, nil
	}
	return strings.ReplaceAll(name, "/", string(s.delim)), nil
}

// ensureSelected selects the folder the admin named name read-write
// unless it already is.
func (s *session) ensureSelected(ctx context.Context, name string) error {
	if s.selected && s.selName == name {
		return nil
	}
	_, err := s.selectFolder(ctx, name, false)
	return err
}

// List returns the messages whose UID is above the cursor's, oldest first,
// folder after folder in the order of Options.Folders. With one folder the
// cursor is "v1:<uidvalidity>:<uid>"; with several it holds one such
// position per folder (see the package doc). An empty or unknown cursor
// lists every folder whole; a folder without a position in the cursor, or
// whose UIDVALIDITY changed, is listed whole (the latter with a note, since
// every key changes). Nothing new costs a SELECT and at most one UID FETCH
// per folder, whatever the folders' sizes.
func (c *Connector) List(ctx context.Context, cursor mailsync.Cursor) (*mailsync.Listing, error) {
	var listing *mailsync.Listing
	err := c.do(ctx, "list", func(s *session) error {
		var err error
		listing, err = s.list(ctx, cursor)
		return err
	})
	return listing, err
}

func (s *session) list(ctx context.Context, cursor mailsync.Cursor) (*mailsync.Listing, error) {
	folders := s.cfg.opts.Folders
	listing := &mailsync.Listing{}
	positions := cursorSet{}
	if cursor != "" {
		set, ok := parseCursors(cursor, folders[0])
		if ok {
			positions = set
		} else {
			listing.Notes = append(listing.Notes, fmt.Sprintf("IMAP cursor %q not understood; listing every message of %q again", cursor, strings.Join(folders, `", "`)))
		}
	}
	next := cursorSet{}
	for i, folder := range folders {
		pos, known := positions[folder]
		refs, p, notes, err := s.listFolder(ctx, folder, i == 0, pos, known)
		if err != nil {
			return nil, err
		}
		next[folder] = p
		listing.Messages = append(listing.Messages, refs...)
		listing.Notes = append(listing.Notes, notes...)
	}
	listing.Cursor = encodeCursors(folders, next)
	return listing, nil
}

// listFolder lists the messages of folder above pos (all of them when
// known is false or the UIDVALIDITY changed) and returns the folder's new
// position.
func (s *session) listFolder(ctx context.Context, folder string, primary bool, pos position, known bool) ([]mailsync.MessageRef, position, []string, error) {
	sel, err := s.selectFolder(ctx, folder, false)
	if err != nil {
		return nil, position{}, nil, err
	}
	var notes []string
	uv := sel.UIDValidity
	var last imap.UID
	if known {
		if pos.uidValidity != uv {
			notes = append(notes, fmt.Sprintf(
				"UIDVALIDITY of folder %q changed from %d to %d (the folder was recreated or the server rebuilt its index): every message is listed again under new keys; already processed mail is recognised by its content",
				folder, pos.uidValidity, uv))
			s.cfg.log.Warn("imap UIDVALIDITY changed", slog.String("folder", folder),
				slog.Uint64("old", uint64(pos.uidValidity)), slog.Uint64("new", uint64(uv)))
		} else {
			last = pos.uid
		}
	}
	next := position{uidValidity: uv, uid: last}

	// Nothing can be above last when the folder is empty, when UIDNEXT
	// says so, or when last is the largest UID there is.
	if sel.NumMessages == 0 || (sel.UIDNext != 0 && sel.UIDNext <= last+1) || last == imap.UID(^uint32(0)) {
		return nil, next, notes, nil
	}

	var set imap.UIDSet
	set.AddRange(last+1, 0) // last+1:*
	cmd := s.client.Fetch(set, &imap.FetchOptions{UID: true, RFC822Size: true})
	type entry struct {
		uid  imap.UID
		size int64
	}
	var found []entry
	for {
		msg := cmd.Next()
		if msg == nil {
			break
		}
		buf, err := collectMeta(msg) // UID and RFC822.SIZE only: no body
		if err != nil {
			continue
		}
		// "n:*" also returns the highest message when its UID is below n.
		if buf.UID > last {
			// One answer per message: far more than the folder holds
			// (plus what may arrive meanwhile) is a server that would
			// make this listing grow without end.
			if len(found) > int(sel.NumMessages)+maxNewDuringListing {
				s.kill(fmt.Errorf("%[3]w: the server sent more than %[2]d FETCH responses listing a folder it said holds %[1]d messages; a broken or hostile server", sel.NumMessages, len(found), mailsync.ErrServerLimit))
				break
			}
			size := int64(-1)
			if buf.RFC822Size > 0 {
				size = buf.RFC822Size
			}
			found = append(found, entry{buf.UID, size})
		}
	}
	if err := cmd.Close(); err != nil {
		return nil, position{}, nil, s.check(ctx, "list", err)
	}
	slices.SortFunc(found, func(a, b entry) int { return int(int64(a.uid) - int64(b.uid)) })
	found = slices.CompactFunc(found, func(a, b entry) bool { return a.uid == b.uid })
	refs := make([]mailsync.MessageRef, len(found))
	for i, e := range found {
		refs[i] = mailsync.MessageRef{Key: folderKey(folder, primary, uv, e.uid), Size: e.size, Folder: folder}
	}
	if n := len(found); n > 0 {
		next.uid = found[n-1].uid
	}
	s.cfg.log.Debug("imap listed", slog.String("folder", folder), slog.Int("new", len(found)),
		slog.Uint64("uidvalidity", uint64(uv)), slog.Uint64("after_uid", uint64(last)))
	return refs, next, notes, nil
}

// collectMeta is FetchMessageData.Collect for UID, RFC822.SIZE and FLAGS,
// without buffering a body literal a server may send unasked: Collect
// would read it whole into memory.
func collectMeta(msg *imapclient.FetchMessageData) (*imapclient.FetchMessageBuffer, error) {
	buf := &imapclient.FetchMessageBuffer{SeqNum: msg.SeqNum}
	for item := msg.Next(); item != nil; item = msg.Next() {
		switch item := item.(type) {
		case imapclient.FetchItemDataUID:
			buf.UID = item.UID
		case imapclient.FetchItemDataRFC822Size:
			buf.RFC822Size = item.Size
		case imapclient.FetchItemDataFlags:
			buf.Flags = item.Flags
		case imapclient.FetchItemDataBodySection:
			if item.Literal != nil {
				if _, err := io.Copy(io.Discard, item.Literal); err != nil {
					return buf, err
				}
			}
		case imapclient.FetchItemDataBinarySection:
			if item.Literal != nil {
				if _, err := io.Copy(io.Discard, item.Literal); err != nil {
					return buf, err
				}
			}
		}
	}
	return buf, nil
}

// maxNewDuringListing is how many more FETCH responses than the folder's
// EXISTS count a listing accepts (mail arriving while it runs).
const maxNewDuringListing = 100_000

// target is one message to fetch or act on.
type target struct {
	ref mailsync.MessageRef
	uid imap.UID
}

// folderRun is a run of consecutive refs of one folder.
type folderRun struct {
	folder string // the configured name
	refs   []mailsync.MessageRef
}

// byFolder splits refs, in order, into runs of the same folder, which
// the key names (a primary-folder key, or one this connector did not make,
// belongs to the primary folder; targets reports the latter gone).
func (c *config) byFolder(refs []mailsync.MessageRef) []folderRun {
	var runs []folderRun
	for _, r := range refs {
		folder, _, _, ok := parseFolderKey(r.Key)
		if !ok || folder == "" {
			folder = c.opts.Folders[0]
		}
		if n := len(runs); n > 0 && runs[n-1].folder == folder {
			runs[n-1].refs = append(runs[n-1].refs, r)
			continue
		}
		runs = append(runs, folderRun{folder: folder, refs: []mailsync.MessageRef{r}})
	}
	return runs
}

// targets keeps the refs of the selected folder's UIDVALIDITY; the others
// name messages that no longer exist under those keys (gone).
func (s *session) targets(refs []mailsync.MessageRef) (out []target, gone []mailsync.MessageRef) {
	out = make([]target, 0, len(refs))
	for _, r := range refs {
		_, uv, uid, ok := parseFolderKey(r.Key)
		if !ok {
			s.cfg.log.Warn("imap: a message key this connector did not make names no message", slog.String("key", r.Key))
			gone = append(gone, r)
			continue
		}
		if uv != s.sel.UIDValidity {
			gone = append(gone, r)
			continue
		}
		out = append(out, target{ref: r, uid: uid})
	}
	return out, gone
}

// Close logs out and releases the connection. It is safe to call twice.
func (c *Connector) Close() error {
	if c.closed {
		return nil
	}
	c.closed = true
	if c.s != nil {
		c.s.close()
		c.s = nil
	}
	return nil
}

// Ack applies action to refs: LeaveUntouched does nothing, MarkRead adds
// \Seen, Delete sets \Deleted and expunges exactly those UIDs (UID EXPUNGE,
// which needs UIDPLUS), MoveToFolder uses MOVE, or without it COPY, then
// \Deleted and UID EXPUNGE only after the copy succeeded. The destination
// folder is written with "/" as the hierarchy separator and is placed in
// the server's personal namespace (RFC 2342: "Done/2026" becomes
// "INBOX.Done.2026" on Courier and Cyrus) unless it already starts with a
// namespace prefix; a missing one is created. Messages already gone are not
// an error, so Ack can be repeated.
func (c *Connector) Ack(ctx context.Context, refs []mailsync.MessageRef, action mailsync.PostAction) error {
	if err := action.Validate(); err != nil {
		return err
	}
	if action.Kind == mailsync.LeaveUntouched || len(refs) == 0 {
		return nil
	}
	if action.Kind == mailsync.MoveToFolder {
		for _, f := range c.cfg.opts.Folders {
			if sameFolder(action.Folder, f) {
				return mailsync.NewConfigError(mailsync.Problem{Field: "post_action.folder", Code: mailsync.CodeConflict, Message: fmt.Sprintf("%q is a folder being read", action.Folder)})
			}
		}
	}
	return c.do(ctx, "ack", func(s *session) error {
		for _, run := range s.cfg.byFolder(refs) {
			if err := s.ensureSelected(ctx, run.folder); err != nil {
				return err
			}
			if err := s.ack(ctx, run.refs, action); err != nil {
				return err
			}
		}
		return nil
	})
}

// ack applies action to refs of the selected folder.
func (s *session) ack(ctx context.Context, refs []mailsync.MessageRef, action mailsync.PostAction) error {
	ts, _ := s.targets(refs) // acting on what is gone is a no-op
	for len(ts) > 0 {
		n := min(len(ts), 500)
		var set imap.UIDSet
		for _, t := range ts[:n] {
			set.AddNum(t.uid)
		}
		ts = ts[n:]
		var err error
		switch action.Kind {
		case mailsync.MarkRead:
			err = s.store(ctx, set, imap.FlagSeen)
		case mailsync.Delete:
			err = s.delete(ctx, set)
		case mailsync.MoveToFolder:
			var dests []string
			if dests, err = s.destinations(ctx, action.Folder); err == nil {
				err = s.move(ctx, set, action.Folder, dests)
			}
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func sameFolder(a, b string) bool {
	if strings.EqualFold(a, "INBOX") && strings.EqualFold(b, "INBOX") {
		return true
	}
	return a == b
}

// store adds flag to set, silently.
func (s *session) store(ctx context.Context, set imap.UIDSet, flag imap.Flag) error {
	err := s.client.Store(set, &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{flag}}, nil).Close()
	return s.check(ctx, "store "+string(flag), err)
}

// expunge removes exactly set with UID EXPUNGE.
func (s *session) expunge(ctx context.Context, set imap.UIDSet) error {
	return s.check(ctx, "uid expunge", s.client.UIDExpunge(set).Close())
}

func (s *session) hasUIDPlus() bool {
	return s.caps.Has(imap.CapUIDPlus) || s.caps.Has(imap.CapIMAP4rev2)
}

// delete marks set \Deleted and expunges exactly those messages.
func (s *session) delete(ctx context.Context, set imap.UIDSet) error {
	if !s.hasUIDPlus() {
		return fmt.Errorf("imap: delete: %s lacks UIDPLUS, so only a plain EXPUNGE could remove the messages, which would also remove any other message marked deleted in %q; choose another post-action: %w",
			s.cfg.addr, s.selName, mailsync.ErrUnsupported)
	}
	if err := s.store(ctx, set, imap.FlagDeleted); err != nil {
		return err
	}
	return s.expunge(ctx, set)
}

// present returns which UIDs of set still exist.
func (s *session) present(ctx context.Context, set imap.UIDSet) (existing imap.UIDSet, err error) {
	cmd := s.client.Fetch(set, &imap.FetchOptions{UID: true})
	for {
		msg := cmd.Next()
		if msg == nil {
			break
		}
		buf, cerr := collectMeta(msg)
		if cerr != nil || buf.UID == 0 || !set.Contains(buf.UID) {
			continue
		}
		existing.AddNum(buf.UID)
	}
	if err := cmd.Close(); err != nil {
		return nil, s.check(ctx, "fetch uids", err)
	}
	return existing, nil
}

// move moves set to folder. With MOVE it is one command. Without it: COPY,
// and only once the server confirmed the copy, \Deleted and UID EXPUNGE of
// exactly the UIDs it confirmed (its COPYUID source set; without COPYUID,
// the UIDs of the COPY it answered OK, which copies all or nothing). A
// \Deleted flag found on a message proves nothing about a copy (another
// client may have set it), so every message still present is copied: an
// attempt interrupted between COPY and EXPUNGE leaves a second copy in
// folder when repeated, never a lost message.
//
// dests are the server names to try for the admin's folder name (see
// destinations).
func (s *session) move(ctx context.Context, set imap.UIDSet, folder string, dests []string) error {
	hasMove := s.caps.Has(imap.CapMove)
	if !hasMove && !s.hasUIDPlus() {
		return fmt.Errorf("imap: move: %s has neither MOVE nor UIDPLUS, so moving would need a plain EXPUNGE that could remove other messages marked deleted: %w",
			s.cfg.addr, mailsync.ErrUnsupported)
	}
	existing, err := s.present(ctx, set)
	if err != nil {
		return err
	}
	if len(existing) == 0 {
		return nil // already moved or gone
	}
	if hasMove {
		return s.withFolder(ctx, "move", folder, dests, func(dest string) error {
			_, err := s.client.Move(existing, dest).Wait()
			return err
		})
	}
	var data *imap.CopyData
	err = s.withFolder(ctx, "copy", folder, dests, func(dest string) error {
		var err error
		data, err = s.client.Copy(existing, dest).Wait()
		return err
	})
	if err != nil {
		return fmt.Errorf("%w (nothing was deleted from %q)", err, s.selName)
	}
	copied := confirmedCopies(existing, data)
	if len(copied) == 0 {
		s.cfg.log.Warn("imap: the server confirmed none of the copies (COPYUID); nothing is deleted from the source", slog.String("folder", s.selName))
		return nil
	}
	if err := s.store(ctx, copied, imap.FlagDeleted); err != nil {
		return err
	}
	return s.expunge(ctx, copied)
}

// confirmedCopies is the part of requested that a COPY answered with data
// confirmed: the COPYUID source UIDs when the server sent them, else all
// of requested (the COPY succeeded as a whole).
func confirmedCopies(requested imap.UIDSet, data *imap.CopyData) imap.UIDSet {
	if data == nil || len(data.SourceUIDs) == 0 {
		return requested
	}
	var out imap.UIDSet
	nums, _ := requested.Nums()
	for _, uid := range nums {
		if data.SourceUIDs.Contains(uid) {
			out.AddNum(uid)
		}
	}
	return out
}

// withFolder runs a COPY or MOVE to the first of dests that works. When
// the server refuses one because the folder is missing (NO [TRYCREATE] or
// [NONEXISTENT], or a NO without a code: Courier and Cyrus answer "Mailbox
// does not exist" or "Invalid mailbox name" without TRYCREATE), it creates
// that folder and runs once more; when the folder cannot be created it goes
// on to the next name. The error names every name tried.
func (s *session) withFolder(ctx context.Context, op, folder string, dests []string, run func(dest string) error) error {
	var tried, why []string
	for _, dest := range dests {
		tried = append(tried, strconv.Quote(dest))
		err := run(dest)
		if err == nil {
			return nil
		}
		ie, ok := s.refusal(ctx, err)
		if !ok {
			return s.check(ctx, op, err)
		}
		if !folderMissing(ie) {
			return fmt.Errorf("imap: %s to %q refused: %w", op, dest, s.cfg.responseError(op, ie))
		}
		s.cfg.log.Info("imap creating destination folder", slog.String("folder", dest))
		cerr := s.client.Create(dest, nil).Wait()
		if cie, ok := s.refusal(ctx, cerr); ok && cie.Code == imap.ResponseCodeAlreadyExists {
			cerr = nil
		}
		if cerr != nil {
			cie, ok := s.refusal(ctx, cerr)
			if !ok {
				return s.check(ctx, "create folder", cerr)
			}
			why = append(why, fmt.Sprintf("%s to %q: %s; create: %s", op, dest, s.cfg.describe(ie), s.cfg.describe(cie)))
			continue
		}
		err = run(dest)
		if err == nil {
			return nil
		}
		if ie, ok = s.refusal(ctx, err); !ok {
			return s.check(ctx, op, err)
		}
		if folderMissing(ie) {
			why = append(why, fmt.Sprintf("%s to %q after creating it: %s", op, dest, s.cfg.describe(ie)))
			continue
		}
		return fmt.Errorf("imap: %s to %q refused: %w", op, dest, s.cfg.responseError(op, ie))
	}
	return fmt.Errorf("imap: %s: destination folder %q does not exist and cannot be created on %s (tried %s: %s): %w",
		op, folder, s.cfg.addr, strings.Join(tried, ", "), strings.Join(why, "; "), mailsync.ErrFolderNotFound)
}

// refusal returns the server's NO or BAD in err, if the connection is
// still fine.
func (s *session) refusal(ctx context.Context, err error) (*imap.Error, bool) {
	var ie *imap.Error
	if err == nil || !errors.As(err, &ie) || ctx.Err() != nil || s.killReason() != nil {
		return nil, false
	}
	return ie, true
}

// folderMissing reports whether a refused COPY/MOVE may mean that the
// destination folder does not exist.
func folderMissing(ie *imap.Error) bool {
	switch ie.Code {
	case "", imap.ResponseCodeTryCreate, imap.ResponseCodeNonExistent:
		return true
	}
	return false
}

// namespaces returns the server's namespaces (RFC 2342), asked once per
// connection; nil without the NAMESPACE capability or a usable answer.
func (s *session) namespaces(ctx context.Context) (*imap.NamespaceData, error) {
	if s.nsKnown {
		return s.ns, nil
	}
	if s.caps.Has(imap.CapNamespace) || s.caps.Has(imap.CapIMAP4rev2) {
		data, err := s.client.Namespace().Wait()
		if err != nil {
			if _, ok := s.refusal(ctx, err); !ok {
				return nil, s.check(ctx, "namespace", err)
			}
		} else {
			s.ns = data
		}
	}
	s.nsKnown = true
	return s.ns, nil
}

// destinations returns the server names to try, best first, for a folder
// the admin wrote with "/" as the hierarchy separator ("Done/2026"): inside
// the personal namespace, with its prefix and separator ("INBOX.Done.2026"
// on Courier and Cyrus), unless the name already starts with a namespace's
// prefix; then the name as written, with the server's separator.
func (s *session) destinations(ctx context.Context, name string) ([]string, error) {
	plain, err := s.mailboxName(ctx, name)
	if err != nil {
		return nil, err
	}
	ns, err := s.namespaces(ctx)
	if err != nil {
		return nil, err
	}
	if ns == nil || len(ns.Personal) == 0 || ns.Personal[0].Prefix == "" || strings.EqualFold(name, "INBOX") {
		return []string{plain}, nil
	}
	personal := ns.Personal[0]
	inside := name
	if personal.Delim != 0 && personal.Delim != '/' {
		inside = strings.ReplaceAll(name, "/", string(personal.Delim))
	}
	for _, list := range [][]imap.NamespaceDescriptor{ns.Personal, ns.Other, ns.Shared} {
		for _, d := range list {
			if d.Prefix != "" && (hasPrefixFold(inside, d.Prefix) || hasPrefixFold(plain, d.Prefix)) {
				return []string{plain}, nil // the admin wrote the prefix
			}
		}
	}
	inside = personal.Prefix + inside
	if inside == plain {
		return []string{plain}, nil
	}
	return []string{inside, plain}, nil
}

// bodyReader hands a message literal to the caller's callback: reads past
// the callback are refused, read errors are remembered (they mean the
// connection broke), and the stall timer runs only while reading.
type bodyReader struct {
	r    io.Reader
	m    *meteredConn
	g    *guard // counts the bytes delivered (they extend the command's time)
	err  error
	done bool
}

var errReaderExpired = errors.New("imap: message reader used after the Fetch callback returned")

func (b *bodyReader) Read(p []byte) (int, error) {
	if b.done {
		return 0, errReaderExpired
	}
	if b.err != nil {
		// Never read a failed literal again: go-imap's decoder has moved
		// on, and a second read races with it.
		return 0, b.err
	}
	b.m.paused.Add(-1)
	b.m.touch()
	n, err := b.r.Read(p)
	b.m.paused.Add(1)
	if n > 0 && b.g != nil {
		b.g.bodyBytes.Add(int64(n))
	}
	if err != nil && err != io.EOF {
		b.err = err
	}
	return n, err
}

// Format prints String for every verb, so no verb reaches the credentials.
func (c *Connector) Format(f fmt.State, _ rune) { io.WriteString(f, c.String()) }
