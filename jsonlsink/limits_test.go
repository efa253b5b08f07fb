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
	"unicode"
	"unicode/utf8"

	"github.com/mailsync/mailsync"
	"github.com/mailsync/mailsync/jsonlsink"
)

func textAttachment(name, body string) *mailsync.Attachment {
	return mailsync.NewAttachment(name, "text/plain", int64(len(body)), func() (io.ReadCloser, error) {
		return io.NopCloser(strings.NewReader(body)), nil
	})
}

func readAll(t *testing.T, path string) []jsonlsink.Record {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	recs, err := jsonlsink.ReadRecords(f)
	if err != nil {
		t.Fatal(err)
	}
	return recs
}

// Quarantined raw mail is written to disk even when attachments are not
// saved: the mail may be deleted from the server afterwards, and the
// quarantine is then its only copy.
func TestQuarantineIsWrittenWithoutSaveFiles(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "tickets.jsonl")
	s, err := jsonlsink.Open(path, false)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	q := &mailsync.Quarantined{IdempotencyKey: "q1", Raw: strings.NewReader("broken mail"), Err: errors.New("bad MIME")}
	if err := s.Quarantine(ctx, q); err != nil {
		t.Fatal(err)
	}
	recs := readAll(t, path)
	if len(recs) != 1 || recs[0].RawFile == "" {
		t.Fatalf("quarantine record %+v: the raw mail must be kept on disk", recs)
	}
	if got, err := os.ReadFile(recs[0].RawFile); err != nil || string(got) != "broken mail" {
		t.Fatalf("raw file %q: %q %v", recs[0].RawFile, got, err)
	}
}

// checkName asserts a stored attachment file name is safe for the file system.
func checkName(t *testing.T, sinkPath string, a jsonlsink.Attachment, wantExt string) {
	t.Helper()
	if a.File == "" {
		t.Fatal("attachment not stored")
	}
	base := filepath.Base(a.File)
	if len(base) > 255 {
		t.Errorf("file name of %d bytes", len(base))
	}
	if !utf8.ValidString(base) {
		t.Errorf("file name %q is not UTF-8", base)
	}
	for _, r := range base {
		if unicode.IsControl(r) || unicode.Is(unicode.Cf, r) || strings.ContainsRune(`/\:`, r) {
			t.Errorf("file name %q holds %U", base, r)
		}
	}
	if !strings.HasSuffix(base, wantExt) {
		t.Errorf("file name %q lost its extension %q", base, wantExt)
	}
	if !strings.HasPrefix(a.File, sinkPath+".files"+string(filepath.Separator)) {
		t.Errorf("file %q is outside the sink's folder", a.File)
	}
	if b, err := os.ReadFile(a.File); err != nil || string(b) != "data" {
		t.Errorf("content %q %v", b, err)
	}
}

// Attachment names of any length and content become safe file names, and
// the file (however long its lines) opens again.
func TestUnsafeAttachmentNames(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	path := filepath.Join(dir, "tickets.jsonl")
	s, err := jsonlsink.Open(path, true)
	if err != nil {
		t.Fatal(err)
	}
	names := []struct{ name, ext string }{
		{strings.Repeat("a", 1_000_000) + ".pdf", ".pdf"},
		{strings.Repeat("é", 150) + ".docx", ".docx"}, // 300 bytes + extension
		{strings.Repeat("x", 300), ""},
		{"invoice\u202Efdp.exe", ".exe"},
		{"zero\u200Bwidth\u2066\x00\x07\r\nname.txt", ".txt"},
		{`C:\Users\me\report.xlsx`, ".xlsx"},
		{"C:evil.txt", ".txt"},
		{"../../etc/passwd", ""},
		{"\xff\xfebad utf8.txt", ".txt"},
		{strings.Repeat("\u202E", 1_000_000) + ".png", ".png"},
		{"report." + strings.Repeat("e", 300), ""},
	}
	var atts []*mailsync.Attachment
	for _, n := range names {
		atts = append(atts, textAttachment(n.name, "data"))
	}
	tk := &mailsync.Ticket{IdempotencyKey: "ms1-names", Type: "incident", Attachments: atts}
	if _, err := s.CreateTicket(ctx, tk); err != nil {
		t.Fatalf("create: %v", err)
	}
	s.Close()
	raw, _ := os.ReadFile(path)
	if len(raw) > 64<<10 {
		t.Errorf("the ticket line is %d bytes: file names must not be inlined unbounded", len(raw))
	}
	s, err = jsonlsink.Open(path, true)
	if err != nil {
		t.Fatalf("reopen: %v", err)
	}
	defer s.Close()
	if s.Tickets() != 1 {
		t.Fatalf("%d tickets after reopen", s.Tickets())
	}
	recs := readAll(t, path)
	if len(recs) != 1 || len(recs[0].Attachments) != len(names) {
		t.Fatalf("records %d", len(recs))
	}
	seen := map[string]bool{}
	for i, a := range recs[0].Attachments {
		checkName(t, path, a, names[i].ext)
		if seen[a.File] {
			t.Errorf("two attachments share %q", a.File)
		}
		seen[a.File] = true
		if a.Size != 4 {
			t.Errorf("size %d", a.Size)
		}
	}
	if got := recs[0].Attachments[5].Filename; got != `C:\Users\me\report.xlsx` {
		t.Errorf("recorded file name %q: a short name is kept as the mail gave it", got)
	}
	if got := recs[0].Attachments[0]; len(got.Filename) > 4096 || !got.FilenameTruncated {
		t.Errorf("recorded file name of %d bytes, truncated=%v", len(got.Filename), got.FilenameTruncated)
	}
}

// A line of any size the sink wrote reads back: ReadRecords and Open have
// no line-length limit.
func TestReopenAfterHugeLine(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "tickets.jsonl")
	s, err := jsonlsink.Open(path, false)
	if err != nil {
		t.Fatal(err)
	}
	big := strings.Repeat("<p>ç\x01", 20<<20/6) // ~20 MiB, escaped to ~100 MiB of JSON if inlined
	tk := &mailsync.Ticket{IdempotencyKey: "ms1-huge", Type: "incident", Fields: map[string]string{"title": "huge", "description": big}}
	if _, err := s.CreateTicket(ctx, tk); err != nil {
		t.Fatal(err)
	}
	tk2 := &mailsync.Ticket{IdempotencyKey: "ms1-next", Type: "incident", Fields: map[string]string{"title": "next"}}
	if _, err := s.CreateTicket(ctx, tk2); err != nil {
		t.Fatal(err)
	}
	s.Close()
	if st, _ := os.Stat(path); st.Size() > 4<<20 {
		t.Errorf("the file is %d bytes: huge values must not be inlined", st.Size())
	}
	s, err = jsonlsink.Open(path, false)
	if err != nil {
		t.Fatalf("reopen: %v", err)
	}
	defer s.Close()
	if s.Tickets() != 2 {
		t.Fatalf("%d tickets", s.Tickets())
	}
	if r, _ := s.CreateTicket(ctx, tk); !r.Duplicate {
		t.Fatal("the huge ticket was forgotten")
	}
	recs := readAll(t, path)
	if len(recs) != 2 {
		t.Fatalf("%d records", len(recs))
	}
	got, err := recs[0].Field("description")
	if err != nil || got != big {
		t.Fatalf("description reads back as %d bytes (want %d), err %v", len(got), len(big), err)
	}
	if got, _ := recs[1].Field("title"); got != "next" {
		t.Fatalf("title %q", got)
	}
}

// ReadRecords reads a line longer than any buffer (written by an older
// version that inlined everything).
func TestReadRecordsLongLine(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tickets.jsonl")
	long := strings.Repeat("x", 70<<20)
	line := `{"kind":"ticket","ticket_id":"a","idempotency_key":"a","fields":{"d":"` + long + `"}}` + "\n" +
		`{"kind":"ticket","ticket_id":"b","idempotency_key":"b"}` + "\n" + `{"kind":"tick`
	if err := os.WriteFile(path, []byte(line), 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := jsonlsink.Open(path, false)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	defer s.Close()
	if s.Tickets() != 2 {
		t.Fatalf("%d tickets", s.Tickets())
	}
	raw, _ := os.ReadFile(path)
	if !bytes.HasSuffix(raw, []byte("\"b\"}\n")) {
		t.Fatal("the cut last line was not dropped")
	}
}
