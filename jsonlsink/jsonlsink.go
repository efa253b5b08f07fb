// Package jsonlsink is a durable mailsync.FollowUpSink that appends
// tickets, follow-ups and quarantined mail to a JSON-lines file and writes
// files next to it, below "<path>.files/<idempotency key>/".
//
// It is idempotent across crashes: every record is fsynced (with the files
// it names) before CreateTicket, AddFollowUp or Quarantine returns, a line
// cut short by a crash is dropped when the file is opened again, and a
// known idempotency key is reported as a duplicate. Tickets and follow-ups
// share one key space (see mailsync.FollowUpSink); quarantined messages
// have their own.
//
// What is kept on disk:
//   - Quarantined raw mail is always written (message.eml): it may be the
//     only copy once the mail is deleted from the server.
//   - Attachments (of tickets and follow-ups) are written only when Open's
//     saveFiles is true; otherwise only their name, type, size and SHA-256
//     are recorded and Attachment.File is empty. The sink then does not
//     hold the attachments, so do not pair saveFiles=false with a
//     post-action that removes the mail from the server (delete, move):
//     the post-action must remove only what the sink holds. mail2ticket
//     refuses that combination at start-up.
//   - A field value longer than MaxInlineValue bytes is written to a file
//     and named in Record.FieldFiles instead of being inlined; read it
//     with Record.Field.
//
// Lines are bounded: besides field values, recorded file names, content
// types, warnings and reasons are cut to a few KiB (Attachment.Filename
// keeps the start of a longer name and sets FilenameTruncated); the
// participant addresses are bounded by the parser's header limit
// (mailsync.Limits.MaxHeaderBytes). Reading
// has no line-length limit, so any line the sink wrote (or an older
// version wrote) reads back.
//
// File names on disk are made safe for the file system whatever the mail
// says: the last path element only, no drive prefix, no control, format
// (bidi overrides, zero-width) or separator characters, at most
// MaxFileNameBytes bytes of UTF-8 with the extension kept.
//
// Threading: the ticket id is the ticket's idempotency key. TicketInfo
// allows a sender who took part in the ticket: the From, To or Cc of the
// ticket's mail or of any of its follow-ups (compared case-insensitively).
// No ticket is ever closed. A follow-up to a ticket that is not in the
// file is refused (mailsync.ErrFollowUpRefused), so the engine makes it a
// new ticket naming the unknown one.
//
// The mail2ticket tool and the crash tests use it.
package jsonlsink

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"unicode"
	"unicode/utf8"

	"github.com/mailsync/mailsync"
)

// Record kinds.
const (
	KindTicket     = "ticket"
	KindFollowUp   = "follow_up"
	KindQuarantine = "quarantine"
)

const (
	// MaxFileNameBytes bounds the name of every file the sink writes (the
	// usual NAME_MAX of Linux and macOS file systems).
	MaxFileNameBytes = 255
	// MaxInlineValue is the longest field value kept inside a line; a
	// longer one goes to a file named in Record.FieldFiles.
	MaxInlineValue = 256 << 10

	maxRecordedName = 1 << 10 // Attachment.Filename
	maxShortText    = 1 << 10 // content type, content id, one warning, one reason
	maxReason       = 4 << 10 // Record.Reason
	maxWarnings     = 100
	maxExtBytes     = 16 // a longer "extension" is not one
)

// Record is one line of the file.
type Record struct {
	// Kind is "ticket", "follow_up" or "quarantine".
	Kind string `json:"kind"`
	// TicketID is the ticket's id (its idempotency key); for a follow-up,
	// the ticket it belongs to.
	TicketID       string `json:"ticket_id,omitempty"`
	IdempotencyKey string `json:"idempotency_key"`
	Type           string `json:"type,omitempty"`
	// Fields are the mapped fields, except those in FieldFiles.
	Fields map[string]string `json:"fields,omitempty"`
	// FieldFiles names the files that hold field values longer than
	// MaxInlineValue (field name → path). Record.Field reads them.
	FieldFiles  map[string]string `json:"field_files,omitempty"`
	Attachments []Attachment      `json:"attachments,omitempty"`
	Source      mailsync.Source   `json:"source"`
	Warnings    []string          `json:"warnings,omitempty"`
	// Classification is what mailsync.Classify said about the mail
	// (tickets and follow-ups).
	Classification *mailsync.Classification `json:"classification,omitempty"`
	// RelatedTicketID names the ticket a new ticket's mail referred to
	// when that ticket refused it as a follow-up.
	RelatedTicketID string `json:"related_ticket_id,omitempty"`
	// Rule is the threading rule that made a follow-up.
	Rule mailsync.ThreadRule `json:"rule,omitempty"`
	// From is the sender of a ticket's or follow-up's mail.
	From string `json:"from,omitempty"`
	// Participants are the From, To and Cc addresses (lower case) of a
	// ticket's or follow-up's mail: they may post on the ticket.
	Participants []string `json:"participants,omitempty"`
	// Reason says why a message was quarantined.
	Reason string `json:"reason,omitempty"`
	// RawFile is the quarantined raw mail.
	RawFile string `json:"raw_file,omitempty"`
	// Truncated is true when RawFile holds only the start of the message.
	Truncated bool `json:"truncated,omitempty"`
}

// Field returns field name's value, reading it from its file when it was
// too long to inline.
func (r Record) Field(name string) (string, error) {
	if file, ok := r.FieldFiles[name]; ok {
		b, err := os.ReadFile(file)
		if err != nil {
			return "", fmt.Errorf("jsonlsink: field %q: %w", name, err)
		}
		return string(b), nil
	}
	return r.Fields[name], nil
}

// Attachment describes a stored attachment.
type Attachment struct {
	// Filename is the name the mail gave, cut to 1 KiB.
	Filename string `json:"filename"`
	// FilenameTruncated is true when Filename was cut.
	FilenameTruncated bool   `json:"filename_truncated,omitempty"`
	ContentType       string `json:"content_type"`
	ContentID         string `json:"content_id,omitempty"`
	Size              int64  `json:"size"`
	SHA256            string `json:"sha256"`
	// File is where the attachment was written; empty when attachments
	// are not saved (only hashed).
	File string `json:"file,omitempty"`
}

// Sink appends to one JSON-lines file. It is safe for concurrent use.
type Sink struct {
	mu        sync.Mutex
	f         *os.File
	size      int64  // bytes of complete lines in f
	dir       string // "<path>.files": quarantined mail, long values, attachments
	saveFiles bool
	keys      map[string]string          // ticket or follow-up key → ticket id
	qkeys     map[string]bool            // quarantined keys
	parts     map[string]map[string]bool // ticket id → participants
	count     int
	followUps int
}

var _ mailsync.FollowUpSink = (*Sink)(nil)

// Open opens (creating) the file at path. Quarantined raw mail and long
// field values are written under "<path>.files/"; attachments too when
// saveFiles is true.
func Open(path string, saveFiles bool) (*Sink, error) {
	s := &Sink{dir: path + ".files", saveFiles: saveFiles, keys: map[string]string{}, qkeys: map[string]bool{}, parts: map[string]map[string]bool{}}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, err
	}
	end, err := readLines(f, func(rec Record) { s.load(rec) })
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if st, err := f.Stat(); err != nil {
		f.Close()
		return nil, err
	} else if st.Size() != end { // drop a line cut short by a crash
		if err := f.Truncate(end); err != nil {
			f.Close()
			return nil, err
		}
		if err := f.Sync(); err != nil {
			f.Close()
			return nil, err
		}
	}
	f.Close()
	if s.f, err = os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0o600); err != nil {
		return nil, err
	}
	s.size = end
	return s, nil
}

func (s *Sink) load(r Record) {
	switch r.Kind {
	case KindQuarantine:
		s.qkeys[r.IdempotencyKey] = true
		return
	case KindTicket:
		s.count++
	case KindFollowUp:
		s.followUps++
	}
	s.keys[r.IdempotencyKey] = r.TicketID
	s.addParticipants(r.TicketID, r.Participants)
}

func (s *Sink) addParticipants(ticketID string, addrs []string) {
	p := s.parts[ticketID]
	if p == nil {
		p = map[string]bool{}
		s.parts[ticketID] = p
	}
	for _, a := range addrs {
		p[strings.ToLower(a)] = true
	}
}

// readLines decodes every complete line of r and returns the offset just
// after the last one. Lines may be of any length.
func readLines(r io.Reader, fn func(Record)) (int64, error) {
	br := bufio.NewReaderSize(r, 64<<10)
	var end int64
	for n := 1; ; n++ {
		line, err := br.ReadBytes('\n')
		if err == io.EOF {
			return end, nil // a line without '\n' was cut short by a crash
		}
		if err != nil {
			return end, err
		}
		var rec Record
		if err := json.Unmarshal(line, &rec); err != nil {
			return end, fmt.Errorf("jsonlsink: bad line %d: %w", n, err)
		}
		fn(rec)
		end += int64(len(line))
	}
}

// ReadRecords reads every complete record of a JSON-lines file; a last
// line cut short by a crash is ignored. Lines may be of any length.
func ReadRecords(r io.Reader) ([]Record, error) {
	var out []Record
	_, err := readLines(r, func(rec Record) { out = append(out, rec) })
	return out, err
}

// Close closes the file.
func (s *Sink) Close() error { return s.f.Close() }

// Tickets returns how many tickets the file holds.
func (s *Sink) Tickets() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.count
}

// FollowUps returns how many follow-ups the file holds.
func (s *Sink) FollowUps() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.followUps
}

// append writes rec as one line and fsyncs it. A failed write is cut off
// again, so the next line never joins a partial one.
func (s *Sink) append(rec Record) error {
	line, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	line = append(line, '\n')
	if _, err := s.f.Write(line); err != nil {
		s.f.Truncate(s.size)
		return err
	}
	if err := s.f.Sync(); err != nil {
		s.f.Truncate(s.size)
		return err
	}
	s.size += int64(len(line))
	return nil
}

var plainKey = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$`)

// keyDir is the folder of one record's files: the key itself when it is a
// plain name (mailsync's keys are), otherwise a hash of it.
func (s *Sink) keyDir(key string) string {
	if !plainKey.MatchString(key) {
		h := sha256.Sum256([]byte(key))
		key = "k-" + hex.EncodeToString(h[:16])
	}
	return filepath.Join(s.dir, key)
}

// writeFile copies r to dir/name (when dir is not empty) and hashes it.
func writeFile(dir, name string, r io.Reader) (size int64, sum, file string, err error) {
	h := sha256.New()
	w := io.Writer(h)
	var f *os.File
	if dir != "" {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return 0, "", "", err
		}
		file = filepath.Join(dir, name)
		if f, err = os.OpenFile(file, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600); err != nil {
			return 0, "", "", err
		}
		defer f.Close()
		w = io.MultiWriter(h, f)
	}
	if size, err = io.Copy(w, r); err != nil {
		return 0, "", "", err
	}
	if f != nil {
		if err := f.Sync(); err != nil {
			return 0, "", "", err
		}
	}
	return size, hex.EncodeToString(h.Sum(nil)), file, nil
}

// syncDirs makes the entries of new files durable: dir, its parent (the
// sink's folder) and the sink's folder's entry in its own parent.
func syncDirs(dir string) error {
	for _, d := range []string{dir, filepath.Dir(dir), filepath.Dir(filepath.Dir(dir))} {
		f, err := os.Open(d)
		if err != nil {
			return err
		}
		err = f.Sync()
		f.Close()
		if err != nil {
			return err
		}
	}
	return nil
}

// SafeFileName makes name usable as a file name on any common file system:
// only its last path element, without a drive prefix ("C:"), control or
// format characters (bidi overrides, zero-width), path separators or
// characters Windows forbids, without a leading dot, leading spaces, or
// trailing dots and spaces,
// valid UTF-8 and at most max bytes, keeping a short extension. It returns
// fallback when nothing is left.
func SafeFileName(name, fallback string, max int) string {
	name = strings.ToValidUTF8(name, "_")
	name = strings.ReplaceAll(name, `\`, "/")
	if i := strings.LastIndexByte(name, '/'); i >= 0 {
		name = name[i+1:]
	}
	if len(name) >= 2 && name[1] == ':' && ('a' <= name[0]|0x20 && name[0]|0x20 <= 'z') {
		name = name[2:] // "C:name" is relative to drive C's current folder
	}
	name = strings.Map(func(r rune) rune {
		switch {
		case unicode.IsControl(r), unicode.Is(unicode.Cf, r), unicode.In(r, unicode.Zl, unicode.Zp),
			r == utf8.RuneError, unicode.Is(unicode.Noncharacter_Code_Point, r):
			return -1
		case strings.ContainsRune(`<>:"|?*`, r):
			return '_'
		case unicode.IsSpace(r):
			return ' '
		}
		return r
	}, name)
	name = strings.TrimRight(strings.TrimLeft(name, " "), ". ")
	if strings.Trim(name, ".") == "" {
		return fallback
	}
	if name[0] == '.' {
		name = "_" + name // neither hidden nor a relative path
	}
	if len(name) <= max {
		return name
	}
	ext := filepath.Ext(name)
	if len(ext) > maxExtBytes || len(ext) >= max/2 {
		ext = ""
	}
	return strings.TrimRight(cutUTF8(strings.TrimSuffix(name, ext), max-len(ext)), ". ") + ext
}

// cutUTF8 returns the longest prefix of s of at most n bytes that ends on
// a rune boundary.
func cutUTF8(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// clip bounds a recorded text.
func clip(s string, n int) string {
	return strings.ToValidUTF8(cutUTF8(s, n), "\uFFFD")
}

// entry is a ticket or a follow-up, as both are stored.
type entry struct {
	kind   string
	ticket *mailsync.Ticket
}

// record builds a ticket's or follow-up's record, writing its attachments
// and long field values. Call with mu held.
func (s *Sink) record(e entry, ticketID string) (Record, error) {
	t := e.ticket
	class := t.Classification
	class.Reasons = clipAll(class.Reasons, maxShortText, maxWarnings)
	class.OriginalMessageID = clip(class.OriginalMessageID, maxShortText)
	class.OriginalRecipient = clip(class.OriginalRecipient, maxShortText)
	rec := Record{Kind: e.kind, TicketID: ticketID, IdempotencyKey: t.IdempotencyKey, Type: t.Type, Source: clipSource(t.Source),
		Classification: &class, RelatedTicketID: t.RelatedTicketID}
	dir := s.keyDir(t.IdempotencyKey)
	wrote := false
	names := make([]string, 0, len(t.Fields))
	for k := range t.Fields {
		names = append(names, k)
	}
	sort.Strings(names)
	for i, k := range names {
		v := t.Fields[k]
		if len(v) <= MaxInlineValue {
			if rec.Fields == nil {
				rec.Fields = map[string]string{}
			}
			rec.Fields[k] = v
			continue
		}
		name := SafeFileName(fmt.Sprintf("field-%02d-%s", i+1, k), "field", MaxFileNameBytes-len(".txt")) + ".txt"
		_, _, file, err := writeFile(dir, name, strings.NewReader(v))
		if err != nil {
			return rec, err
		}
		if rec.FieldFiles == nil {
			rec.FieldFiles = map[string]string{}
		}
		rec.FieldFiles[k], wrote = file, true
	}
	if m := t.Message; m != nil {
		rec.Warnings = clipAll(m.Warnings, maxShortText, maxWarnings)
		rec.From = clip(strings.ToLower(m.From.Address), maxShortText)
		seen := map[string]bool{}
		for _, a := range append(append([]mailsync.Address{m.From}, m.To...), m.Cc...) {
			addr := clip(strings.ToLower(strings.TrimSpace(a.Address)), maxShortText)
			if addr != "" && !seen[addr] {
				seen[addr] = true
				rec.Participants = append(rec.Participants, addr)
			}
		}
	}
	attDir := ""
	if s.saveFiles {
		attDir = dir
	}
	for i, a := range t.Attachments {
		rc, err := a.Open()
		if err != nil {
			return rec, err
		}
		prefix := fmt.Sprintf("%02d-", i+1)
		name := prefix + SafeFileName(a.Filename, "attachment", MaxFileNameBytes-len(prefix))
		size, sum, file, err := writeFile(attDir, name, rc)
		rc.Close()
		if err != nil {
			return rec, err
		}
		wrote = wrote || file != ""
		rec.Attachments = append(rec.Attachments, Attachment{Filename: clip(a.Filename, maxRecordedName), FilenameTruncated: len(a.Filename) > maxRecordedName,
			ContentType: clip(a.ContentType, maxShortText), ContentID: clip(a.ContentID, maxShortText), Size: size, SHA256: sum, File: file})
	}
	if wrote {
		if err := syncDirs(dir); err != nil {
			return rec, err
		}
	}
	return rec, nil
}

// clipSource bounds the Message-ID a mail may make arbitrarily long
// (RFC 5322 lines end at 998 characters).
func clipSource(src mailsync.Source) mailsync.Source {
	src.MessageID = clip(src.MessageID, maxReason)
	return src
}

func clipAll(in []string, each, count int) []string {
	if len(in) == 0 {
		return nil
	}
	out := make([]string, 0, min(len(in), count))
	for i, s := range in {
		if i == count {
			out = append(out, fmt.Sprintf("… %d more", len(in)-count))
			break
		}
		out = append(out, clip(s, each))
	}
	return out
}

// CreateTicket implements mailsync.Sink. The ticket id is its idempotency key.
func (s *Sink) CreateTicket(ctx context.Context, t *mailsync.Ticket) (mailsync.Receipt, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if id, ok := s.keys[t.IdempotencyKey]; ok {
		return mailsync.Receipt{TicketID: id, Duplicate: true}, nil
	}
	rec, err := s.record(entry{kind: KindTicket, ticket: t}, t.IdempotencyKey)
	if err != nil {
		return mailsync.Receipt{}, err
	}
	if err := s.append(rec); err != nil {
		return mailsync.Receipt{}, err
	}
	s.load(rec)
	return mailsync.Receipt{TicketID: rec.TicketID}, nil
}

// TicketInfo implements mailsync.FollowUpSink: the ticket exists when the
// file holds it; it is never closed; sender may post when its address was
// the From, a To or a Cc of the ticket's mail or of one of its follow-ups.
func (s *Sink) TicketInfo(ctx context.Context, ticketID string, sender mailsync.Address) (mailsync.TicketInfo, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.isTicket(ticketID) {
		return mailsync.TicketInfo{}, nil
	}
	addr := strings.ToLower(strings.TrimSpace(sender.Address))
	return mailsync.TicketInfo{Exists: true, SenderAllowed: addr != "" && s.parts[ticketID][addr]}, nil
}

// isTicket reports whether id is a ticket of the file. Call with mu held.
func (s *Sink) isTicket(id string) bool {
	t, ok := s.keys[id]
	return ok && t == id
}

// AddFollowUp implements mailsync.FollowUpSink. A key already stored as a
// ticket or a follow-up is a Duplicate; a follow-up to a ticket the file
// does not hold is refused (mailsync.ErrFollowUpRefused).
func (s *Sink) AddFollowUp(ctx context.Context, f *mailsync.FollowUp) (mailsync.Receipt, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if id, ok := s.keys[f.IdempotencyKey]; ok {
		return mailsync.Receipt{TicketID: id, Duplicate: true}, nil
	}
	if !s.isTicket(f.TicketID) {
		return mailsync.Receipt{}, fmt.Errorf("%w: jsonlsink: no ticket %q in this file", mailsync.ErrFollowUpRefused, f.TicketID)
	}
	rec, err := s.record(entry{kind: KindFollowUp, ticket: &f.Ticket}, f.TicketID)
	if err != nil {
		return mailsync.Receipt{}, err
	}
	rec.Rule = f.Rule
	if err := s.append(rec); err != nil {
		return mailsync.Receipt{}, err
	}
	s.load(rec)
	return mailsync.Receipt{TicketID: f.TicketID}, nil
}

// Quarantine implements mailsync.Sink: the raw bytes always go to a
// message.eml file, and a "quarantine" record to the file.
func (s *Sink) Quarantine(ctx context.Context, q *mailsync.Quarantined) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.qkeys[q.IdempotencyKey] {
		return nil
	}
	rec := Record{Kind: KindQuarantine, IdempotencyKey: q.IdempotencyKey, Source: clipSource(q.Source), Truncated: q.Truncated}
	if q.Err != nil {
		rec.Reason = clip(q.Err.Error(), maxReason)
	}
	if q.Raw != nil {
		dir := s.keyDir(q.IdempotencyKey)
		_, _, file, err := writeFile(dir, "message.eml", q.Raw)
		if err != nil {
			return err
		}
		if err := syncDirs(dir); err != nil {
			return err
		}
		rec.RawFile = file
	}
	if err := s.append(rec); err != nil {
		return err
	}
	s.load(rec)
	return nil
}
