package jsonlsink_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mailsync/mailsync"
	"github.com/mailsync/mailsync/jsonlsink"
)

func TestSinkIsDurableAndIdempotent(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "tickets.jsonl")
	s, err := jsonlsink.Open(path, true)
	if err != nil {
		t.Fatal(err)
	}
	att := mailsync.NewAttachment("../../etc/passwd", "text/plain", 5, func() (io.ReadCloser, error) {
		return io.NopCloser(strings.NewReader("hello")), nil
	})
	tk := &mailsync.Ticket{IdempotencyKey: "k1", Type: "incident", Fields: map[string]string{"title": "Olá"}, Attachments: []*mailsync.Attachment{att}}
	if r, err := s.CreateTicket(ctx, tk); err != nil || r.Duplicate {
		t.Fatalf("create: %+v %v", r, err)
	}
	if r, err := s.CreateTicket(ctx, tk); err != nil || !r.Duplicate {
		t.Fatalf("second create: %+v %v", r, err)
	}
	q := &mailsync.Quarantined{IdempotencyKey: "q1", Raw: strings.NewReader("broken mail"), Err: errors.New("bad MIME")}
	if err := s.Quarantine(ctx, q); err != nil {
		t.Fatal(err)
	}
	s.Close()

	// A crash in the middle of a line: the cut line is dropped on reopen.
	f, _ := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	f.WriteString(`{"kind":"ticket","idempotency_key":"half`)
	f.Close()
	s, err = jsonlsink.Open(path, true)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if s.Tickets() != 1 {
		t.Fatalf("%d tickets after reopen", s.Tickets())
	}
	if r, _ := s.CreateTicket(ctx, tk); !r.Duplicate {
		t.Fatal("the key was forgotten across reopen")
	}
	raw, _ := os.ReadFile(path)
	recs, err := jsonlsink.ReadRecords(bytes.NewReader(raw))
	if err != nil || len(recs) != 2 {
		t.Fatalf("%d records, err %v", len(recs), err)
	}
	a := recs[0].Attachments[0]
	if a.Size != 5 || filepath.Dir(a.File) != filepath.Join(path+".files", "k1") {
		t.Fatalf("attachment stored at %q (%d bytes): must stay below the sink's folder", a.File, a.Size)
	}
	if b, _ := os.ReadFile(a.File); string(b) != "hello" {
		t.Fatalf("attachment content %q", b)
	}
	if got, _ := os.ReadFile(recs[1].RawFile); string(got) != "broken mail" || recs[1].Reason != "bad MIME" {
		t.Fatalf("quarantine: %q %q", got, recs[1].Reason)
	}
}
