// Package jsonlsink is a durable mailsync.Sink that appends tickets to a
// JSON-lines file and writes attachments and quarantined raw mail next to
// it. It is idempotent across crashes: every record is fsynced before
// CreateTicket returns, a line cut short by a crash is dropped when the file
// is opened again, and a known idempotency key is reported as a duplicate.
// The mail2ticket tool and the crash tests use it.
package jsonlsink

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/mailsync/mailsync"
)

// Record is one line of the file.
type Record struct {
	Kind           string            `json:"kind"` // "ticket" or "quarantine"
	TicketID       string            `json:"ticket_id,omitempty"`
	IdempotencyKey string            `json:"idempotency_key"`
	Type           string            `json:"type,omitempty"`
	Fields         map[string]string `json:"fields,omitempty"`
	Attachments    []Attachment      `json:"attachments,omitempty"`
	Source         mailsync.Source   `json:"source"`
	Warnings       []string          `json:"warnings,omitempty"`
	Reason         string            `json:"reason,omitempty"`
	RawFile        string            `json:"raw_file,omitempty"`
	Truncated      bool              `json:"truncated,omitempty"`
}

// Attachment describes a stored attachment.
type Attachment struct {
	Filename    string `json:"filename"`
	ContentType string `json:"content_type"`
	ContentID   string `json:"content_id,omitempty"`
	Size        int64  `json:"size"`
	SHA256      string `json:"sha256"`
	File        string `json:"file,omitempty"`
}

// Sink appends to one JSON-lines file. It is safe for concurrent use.
type Sink struct {
	mu    sync.Mutex
	f     *os.File
	dir   string // attachments and quarantine files go below it
	keys  map[string]string
	count int
}

// Open opens (creating) the file at path. Attachments and quarantined mail
// are written under "<path>.files/" when saveFiles is true.
func Open(path string, saveFiles bool) (*Sink, error) {
	raw, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		return nil, err
	}
	end := bytes.LastIndexByte(raw, '\n') + 1 // drop a line cut short by a crash
	if end != len(raw) {
		if err := os.Truncate(path, int64(end)); err != nil {
			return nil, err
		}
	}
	s := &Sink{keys: map[string]string{}}
	recs, err := ReadRecords(bytes.NewReader(raw[:end]))
	if err != nil {
		return nil, err
	}
	for _, r := range recs {
		s.keys[r.IdempotencyKey] = r.TicketID
		if r.Kind == "ticket" {
			s.count++
		}
	}
	if saveFiles {
		s.dir = path + ".files"
	}
	s.f, err = os.OpenFile(path, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		return nil, err
	}
	return s, nil
}

// ReadRecords reads every complete record of a JSON-lines file.
func ReadRecords(r io.Reader) ([]Record, error) {
	var out []Record
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 64<<20)
	for sc.Scan() {
		var rec Record
		if err := json.Unmarshal(sc.Bytes(), &rec); err != nil {
			return nil, fmt.Errorf("jsonlsink: bad line: %w", err)
		}
		out = append(out, rec)
	}
	return out, sc.Err()
}

// Close closes the file.
func (s *Sink) Close() error { return s.f.Close() }

// Tickets returns how many tickets the file holds.
func (s *Sink) Tickets() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.count
}

func (s *Sink) append(rec Record) error {
	line, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	if _, err := s.f.Write(append(line, '\n')); err != nil {
		return err
	}
	return s.f.Sync()
}

// saveBlob copies r to a file below the sink's directory (or only hashes it).
func (s *Sink) saveBlob(key, name string, r io.Reader) (size int64, sum, file string, err error) {
	h := sha256.New()
	w := io.Writer(h)
	var f *os.File
	if s.dir != "" {
		dir := filepath.Join(s.dir, key)
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return 0, "", "", err
		}
		file = filepath.Join(dir, safeName(name))
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

func safeName(name string) string {
	name = filepath.Base(strings.ReplaceAll(name, "\\", "/"))
	if name == "" || name == "." || name == "/" || name == ".." {
		return "attachment"
	}
	return name
}

// CreateTicket implements mailsync.Sink.
func (s *Sink) CreateTicket(ctx context.Context, t *mailsync.Ticket) (mailsync.Receipt, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if id, ok := s.keys[t.IdempotencyKey]; ok {
		return mailsync.Receipt{TicketID: id, Duplicate: true}, nil
	}
	rec := Record{Kind: "ticket", TicketID: t.IdempotencyKey, IdempotencyKey: t.IdempotencyKey, Type: t.Type, Fields: t.Fields, Source: t.Source}
	if t.Message != nil {
		rec.Warnings = t.Message.Warnings
	}
	for i, a := range t.Attachments {
		rc, err := a.Open()
		if err != nil {
			return mailsync.Receipt{}, err
		}
		name := a.Filename
		if name == "" {
			name = fmt.Sprintf("part-%d", i+1)
		}
		size, sum, file, err := s.saveBlob(t.IdempotencyKey, fmt.Sprintf("%02d-%s", i+1, name), rc)
		rc.Close()
		if err != nil {
			return mailsync.Receipt{}, err
		}
		rec.Attachments = append(rec.Attachments, Attachment{Filename: a.Filename, ContentType: a.ContentType, ContentID: a.ContentID, Size: size, SHA256: sum, File: file})
	}
	if err := s.append(rec); err != nil {
		return mailsync.Receipt{}, err
	}
	s.keys[t.IdempotencyKey] = rec.TicketID
	s.count++
	return mailsync.Receipt{TicketID: rec.TicketID}, nil
}

// Quarantine implements mailsync.Sink: the raw bytes go to a .eml file
// (when files are saved) and a "quarantine" record to the file.
func (s *Sink) Quarantine(ctx context.Context, q *mailsync.Quarantined) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.keys[q.IdempotencyKey]; ok {
		return nil
	}
	rec := Record{Kind: "quarantine", IdempotencyKey: q.IdempotencyKey, Source: q.Source, Truncated: q.Truncated}
	if q.Err != nil {
		rec.Reason = q.Err.Error()
	}
	if q.Raw != nil {
		_, _, file, err := s.saveBlob(q.IdempotencyKey, "message.eml", q.Raw)
		if err != nil {
			return err
		}
		rec.RawFile = file
	}
	if err := s.append(rec); err != nil {
		return err
	}
	s.keys[q.IdempotencyKey] = ""
	return nil
}
