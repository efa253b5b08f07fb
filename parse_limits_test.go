package mailsync

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/mailsync/mailsync/internal/mime"
)

// nestedMessage builds a message whose leaf text part sits levels multiparts deep.
func nestedMessage(levels int) []byte {
	var b bytes.Buffer
	b.WriteString("From: a@example.com\r\nSubject: nested\r\n")
	for i := 0; i < levels; i++ {
		fmt.Fprintf(&b, "Content-Type: multipart/mixed; boundary=\"b%d\"\r\n\r\n--b%d\r\n", i, i)
	}
	b.WriteString("Content-Type: text/plain\r\n\r\ndeep\r\n")
	for i := levels - 1; i >= 0; i-- {
		fmt.Fprintf(&b, "--b%d--\r\n", i)
	}
	return b.Bytes()
}

// multipartWith builds a multipart/mixed message with the given part bodies.
func multipartWith(parts ...string) []byte {
	var b bytes.Buffer
	b.WriteString("From: a@example.com\r\nContent-Type: multipart/mixed; boundary=sep\r\n\r\n")
	for _, p := range parts {
		b.WriteString("--sep\r\n" + p + "\r\n")
	}
	b.WriteString("--sep--\r\n")
	return b.Bytes()
}

func parseWith(t *testing.T, p *Parser, raw []byte) (*Message, error) {
	t.Helper()
	if p.TempDir == "" {
		p.TempDir = t.TempDir()
	}
	m, err := p.parse(bytes.NewReader(raw))
	if m != nil {
		t.Cleanup(func() { m.Close() })
	}
	return m, err
}

func wantErr(t *testing.T, err, kind error, reason string) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error, want %v: %s", kind, reason)
	}
	if !errors.Is(err, kind) || !strings.Contains(err.Error(), reason) {
		t.Fatalf("error %q, want %v with %q", err, kind, reason)
	}
}

func TestParseLimitMessageBytes(t *testing.T) {
	raw := multipartWith("Content-Type: application/octet-stream\r\n\r\n" + strings.Repeat("x", 5000))
	n := int64(len(raw))
	m, err := parseWith(t, &Parser{Limits: Limits{MaxMessageBytes: n}}, raw)
	if err != nil {
		t.Fatalf("a message of exactly MaxMessageBytes: %v", err)
	}
	if m.Size != n {
		t.Errorf("Size %d, want %d", m.Size, n)
	}
	_, err = parseWith(t, &Parser{Limits: Limits{MaxMessageBytes: n - 1}}, raw)
	wantErr(t, err, ErrOversized, fmt.Sprintf("larger than %d bytes", n-1))
	if errors.Is(err, ErrMalformed) {
		t.Error("oversized also matches ErrMalformed")
	}
	// The limit holds in the epilogue too, after the last part.
	_, err = parseWith(t, &Parser{Limits: Limits{MaxMessageBytes: n}}, append(raw, strings.Repeat("trailing\r\n", 10)...))
	wantErr(t, err, ErrOversized, "larger than")
}

func TestParseLimitHeaderBytes(t *testing.T) {
	long := "X-Long: " + strings.Repeat("a", 3000) + "\r\n"
	raw := []byte("From: a@example.com\r\n" + long + "\r\nbody\r\n")
	if _, err := parseWith(t, &Parser{Limits: Limits{MaxHeaderBytes: 4096}}, raw); err != nil {
		t.Fatalf("header under the limit: %v", err)
	}
	_, err := parseWith(t, &Parser{Limits: Limits{MaxHeaderBytes: 2048}}, raw)
	wantErr(t, err, ErrMalformed, "header block larger than 2048 bytes")

	// A part's header has the same bound.
	part := multipartWith("Content-Type: text/plain\r\n" + long + "\r\nbody")
	if _, err := parseWith(t, &Parser{Limits: Limits{MaxHeaderBytes: 4096}}, part); err != nil {
		t.Fatalf("part header under the limit: %v", err)
	}
	_, err = parseWith(t, &Parser{Limits: Limits{MaxHeaderBytes: 2048}}, part)
	wantErr(t, err, ErrMalformed, "header block larger than 2048 bytes")
}

func TestParseLimitHeaderFields(t *testing.T) {
	many := strings.Repeat("X: y\r\n", mime.MaxHeaderFields+1)
	_, err := parseWith(t, &Parser{}, []byte(many+"\r\nbody"))
	wantErr(t, err, ErrMalformed, fmt.Sprintf("more than %d header fields", mime.MaxHeaderFields))
	m, err := parseWith(t, &Parser{}, []byte(strings.Repeat("X: y\r\n", mime.MaxHeaderFields)+"\r\nbody"))
	if err != nil {
		t.Fatal(err)
	}
	if got := len(m.Header["X"]); got != mime.MaxHeaderFields {
		t.Errorf("%d X fields, want %d", got, mime.MaxHeaderFields)
	}
}

func TestParseLimitDepth(t *testing.T) {
	raw := nestedMessage(5) // the text part is at depth 5
	m, err := parseWith(t, &Parser{Limits: Limits{MaxDepth: 5}}, raw)
	if err != nil {
		t.Fatalf("depth 5 with MaxDepth 5: %v", err)
	}
	if m.Text != "deep" {
		t.Errorf("Text %q", m.Text)
	}
	_, err = parseWith(t, &Parser{Limits: Limits{MaxDepth: 4}}, raw)
	wantErr(t, err, ErrMalformed, "MIME nesting deeper than 4")
}

// TestParseDeepNestingIsQuick: 4,000 levels in 266 KiB cost go-message alone
// 7.5 s (each level re-reads the bytes below it); the depth limit stops at
// level 33.
func TestParseDeepNestingIsQuick(t *testing.T) {
	raw := nestedMessage(4000)
	if len(raw) < 250<<10 || len(raw) > 300<<10 {
		t.Fatalf("message of %d bytes, want about 266 KiB", len(raw))
	}
	start := time.Now()
	_, err := parseWith(t, &Parser{}, raw)
	took := time.Since(start)
	wantErr(t, err, ErrMalformed, "MIME nesting deeper than 32")
	if took > time.Second {
		t.Errorf("took %v, want < 1s", took)
	}
	t.Logf("%d KiB nested 4000 deep rejected in %v", len(raw)>>10, took)
}

func TestParseLimitParts(t *testing.T) {
	parts := make([]string, 9)
	for i := range parts {
		parts[i] = fmt.Sprintf("Content-Type: application/octet-stream\r\nContent-Disposition: attachment; filename=f%d\r\n\r\ndata", i)
	}
	raw := multipartWith(parts...) // 10 entities: the multipart and its 9 parts
	m, err := parseWith(t, &Parser{Limits: Limits{MaxParts: 10}}, raw)
	if err != nil {
		t.Fatalf("10 entities with MaxParts 10: %v", err)
	}
	if len(m.Attachments) != 9 {
		t.Errorf("%d attachments, want 9", len(m.Attachments))
	}
	_, err = parseWith(t, &Parser{Limits: Limits{MaxParts: 9}}, raw)
	wantErr(t, err, ErrMalformed, "more than 9 MIME parts")
}

func TestParseLimitTextBytes(t *testing.T) {
	text := strings.Repeat("0123456789", 100) // 1000 bytes
	raw := multipartWith(
		"Content-Type: text/plain\r\n\r\n"+text,
		"Content-Type: text/plain\r\n\r\n"+text, // the budget is shared by all text parts
		"Content-Type: text/html\r\n\r\n<p>"+text+"</p>",
	)
	m, err := parseWith(t, &Parser{Limits: Limits{MaxTextBytes: 1500}}, raw)
	if err != nil {
		t.Fatal(err)
	}
	// The text parts' first 1500 bytes, then the HTML part rendered as text
	// (a piece of the mail of its own, with its own budget).
	if want := text + "\n\n" + text[:500] + "\n\n" + text; m.Text != want {
		t.Errorf("Text has %d bytes, want the first 1500 bytes of the text parts and the HTML part's text (%d)", len(m.Text), len(want))
	}
	if !strings.Contains(m.HTML, text) {
		t.Errorf("HTML within its own budget was cut: %d bytes", len(m.HTML))
	}
	want := "text/plain body longer than 1500 bytes: truncated"
	if !containsWarning(m, want) {
		t.Errorf("warnings %q lack %q", m.Warnings, want)
	}
	if containsWarning(m, "text/html body longer") {
		t.Errorf("HTML reported truncated: %q", m.Warnings)
	}
}

func containsWarning(m *Message, w string) bool {
	for _, have := range m.Warnings {
		if strings.Contains(have, w) {
			return true
		}
	}
	return false
}

// TestParseLimitDefaults: zero Limits take the documented defaults.
func TestParseLimitDefaults(t *testing.T) {
	got := Limits{}.withDefaults()
	if got != DefaultLimits() {
		t.Errorf("zero limits give %+v, want %+v", got, DefaultLimits())
	}
	d := DefaultLimits()
	if d.MaxMessageBytes != 64<<20 || d.MaxHeaderBytes != 1<<20 || d.MaxDepth != 32 || d.MaxParts != 1000 || d.MaxTextBytes != 4<<20 {
		t.Errorf("defaults changed: %+v", d)
	}
	custom := Limits{MaxDepth: 3}.withDefaults()
	if custom.MaxDepth != 3 || custom.MaxParts != d.MaxParts {
		t.Errorf("a set field must stay and the others default: %+v", custom)
	}
}

type failingReader struct {
	data []byte
	err  error
}

func (f *failingReader) Read(p []byte) (int, error) {
	if len(f.data) == 0 {
		return 0, f.err
	}
	n := copy(p, f.data)
	f.data = f.data[n:]
	return n, nil
}

// TestParseSourceErrorIsNotMalformed: a broken source is not the message's
// fault; the error is returned as it is, so the caller retries instead of
// quarantining.
func TestParseSourceErrorIsNotMalformed(t *testing.T) {
	broken := errors.New("connection reset")
	raw := multipartWith("Content-Type: application/octet-stream\r\n\r\n" + strings.Repeat("x", 100000))
	for _, cut := range []int{10, 200, len(raw) / 2} {
		_, err := (&Parser{}).Parse(&failingReader{data: raw[:cut], err: broken})
		if !errors.Is(err, broken) {
			t.Errorf("cut at %d: error %v does not wrap the source's", cut, err)
		}
		if errors.Is(err, ErrMalformed) || errors.Is(err, ErrOversized) {
			t.Errorf("cut at %d: a source error reported as the message's: %v", cut, err)
		}
	}
}

// TestParseSpoolsLargeAttachments: attachments above SpoolThreshold go to
// unlinked temporary files, and all attachments of a message hold at most
// memSpoolBudget bytes in memory.
func TestParseSpoolsLargeAttachments(t *testing.T) {
	small := strings.Repeat("s", 100)
	large := strings.Repeat("L", 5000)
	raw := multipartWith(
		"Content-Type: application/octet-stream\r\n\r\n"+small,
		"Content-Type: application/octet-stream\r\n\r\n"+large,
	)
	m, err := parseWith(t, &Parser{SpoolThreshold: 1000}, raw)
	if err != nil {
		t.Fatal(err)
	}
	spools := messageSpools(m)
	if len(spools) != 2 || spools[0].file != nil || spools[1].file == nil {
		t.Fatalf("want the small attachment in memory and the large one in a file")
	}
	if got := readAttachment(t, m.Attachments[1]); string(got) != large {
		t.Errorf("large attachment reads %d bytes", len(got))
	}

	// Many attachments just under the threshold: memory stops at the budget.
	each := 1 << 20
	var parts []string
	for i := 0; i < 12; i++ {
		parts = append(parts, "Content-Type: application/octet-stream\r\n\r\n"+strings.Repeat("m", each-100))
	}
	m, err = parseWith(t, &Parser{SpoolThreshold: each}, multipartWith(parts...))
	if err != nil {
		t.Fatal(err)
	}
	var inMemory int64
	for _, sp := range messageSpools(m) {
		if sp.file == nil {
			inMemory += sp.Size()
		}
	}
	if inMemory > memSpoolBudget || inMemory < memSpoolBudget/2 {
		t.Errorf("%d attachment bytes in memory, want up to the budget of %d", inMemory, memSpoolBudget)
	}
}

func messageSpools(m *Message) []*spool {
	var out []*spool
	for _, c := range m.closers {
		if sp, ok := c.(*spool); ok {
			out = append(out, sp)
		}
	}
	return out
}

// TestParseCloseReleases: after Close, attachments no longer open.
func TestParseCloseReleases(t *testing.T) {
	raw := multipartWith("Content-Type: application/octet-stream\r\n\r\n" + strings.Repeat("L", 5000))
	m, err := parseWith(t, &Parser{SpoolThreshold: 10}, raw)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	if rc, err := m.Attachments[0].Open(); err == nil {
		rc.Close()
		t.Error("attachment opens after Close")
	}
}
