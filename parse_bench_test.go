package mailsync

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"runtime/metrics"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mailsync/mailsync/internal/benchmail"
)

// Benchmarks (figures in the package README / report):
//
//	go test -run '^$' -bench 'Parse|HTMLToText' -benchmem . ./internal/mime/
//
// (BenchmarkHTMLToText1MB, the HTML renderer alone, is in internal/mime.)
// BenchmarkParseCorpus: throughput over the corpus (MB/s, allocations).
// BenchmarkParseMailbox: 2,000 mixed messages, about 125 MB, shaped like the
// provider benchmarks' mailboxes (plain, HTML alternatives, attachments).
// BenchmarkParseAttachment50MB: a 50 MB base64 attachment streams to a
// temporary file; B/op stays far below 50 MB.
// BenchmarkParse100MB and TestParsePeakHeap100MB: peak heap while parsing a
// 100 MB message stays under 64 MiB.
// BenchmarkParseHostileNames and TestParseHostileNames (parse_names_test.go):
// a 12 MB mail whose twelve attachment names have a million characters each.
// BenchmarkParseReplies: the labelled reply corpus, where segmentation cuts.

func BenchmarkParseCorpus(b *testing.B) {
	var msgs [][]byte
	var total int64
	for _, name := range corpusFiles(b) {
		raw := readCorpus(b, name)
		msgs = append(msgs, raw)
		total += int64(len(raw))
	}
	p := &Parser{TempDir: b.TempDir()}
	b.SetBytes(total)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		for _, raw := range msgs {
			m, err := p.Parse(bytes.NewReader(raw))
			if err != nil {
				b.Fatal(err)
			}
			m.Close()
		}
	}
}

// benchMailbox makes 2,000 messages of mixed kinds and sizes, about 125 MB,
// deterministically (the same shape as the POP3 and IMAP benchmarks').
func benchMailbox() [][]byte {
	var out [][]byte
	// The same realistic mailbox the IMAP benchmark syncs: 2,000 messages,
	// about 125 MB (text, HTML, inline images, attachments, a few of several MB).
	if _, err := benchmail.Generate(2000, 125<<20, 1, func(_ int, raw []byte) error {
		out = append(out, raw)
		return nil
	}); err != nil {
		panic(err)
	}
	return out
}

func BenchmarkParseMailbox(b *testing.B) {
	box := benchMailbox()
	var total int64
	for _, raw := range box {
		total += int64(len(raw))
	}
	p := &Parser{TempDir: b.TempDir()}
	b.SetBytes(total)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		for _, raw := range box {
			m, err := p.Parse(bytes.NewReader(raw))
			if err != nil {
				b.Fatal(err)
			}
			m.Close()
		}
	}
	b.ReportMetric(float64(b.Elapsed().Milliseconds())/float64(b.N), "ms/mailbox")
}

// repeatReader yields line n times, copying from a block of repeated lines
// so the generator costs little next to the parser.
type repeatReader struct {
	line  []byte
	n     int // lines left
	block []byte
	off   int // offset in the current line
}

func (r *repeatReader) Read(p []byte) (int, error) {
	if r.block == nil {
		r.block = bytes.Repeat(r.line, max(1, (32<<10)/len(r.line)))
	}
	written := 0
	for written < len(p) && r.n > 0 {
		avail := r.block[r.off:]
		if max := r.n*len(r.line) - r.off; len(avail) > max {
			avail = avail[:max]
		}
		c := copy(p[written:], avail)
		written += c
		pos := r.off + c
		r.n -= pos / len(r.line)
		r.off = pos % len(r.line)
	}
	if written == 0 {
		return 0, io.EOF
	}
	return written, nil
}

// bigMessage streams a message with a base64 attachment of about
// attachmentBytes decoded bytes; it returns the reader, the raw size and the
// exact decoded size.
func bigMessage(attachmentBytes int) (io.Reader, int64, int64) {
	chunk := make([]byte, 57) // one 76-character base64 line
	for i := range chunk {
		chunk[i] = byte(i * 7)
	}
	line := []byte(base64.StdEncoding.EncodeToString(chunk) + "\r\n")
	lines := (attachmentBytes + 56) / 57
	head := "From: Big <big@example.com>\r\nTo: helpdesk@example.com\r\nSubject: big\r\nContent-Type: multipart/mixed; boundary=BIG\r\n\r\n" +
		"--BIG\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nPlease see the attached file.\r\n" +
		"--BIG\r\nContent-Type: application/octet-stream\r\nContent-Disposition: attachment; filename=big.bin\r\nContent-Transfer-Encoding: base64\r\n\r\n"
	tail := "--BIG--\r\n"
	size := int64(len(head)) + int64(lines)*int64(len(line)) + int64(len(tail))
	r := io.MultiReader(strings.NewReader(head), &repeatReader{line: line, n: lines}, strings.NewReader(tail))
	return r, size, int64(lines) * 57
}

func parseBig(tb testing.TB, p *Parser, attachmentBytes int) int64 {
	r, size, decoded := bigMessage(attachmentBytes)
	m, err := p.Parse(r)
	if err != nil {
		tb.Fatal(err)
	}
	defer m.Close()
	if m.Size != size || len(m.Attachments) != 1 || m.Attachments[0].Size != decoded || m.Text != "Please see the attached file." {
		tb.Fatalf("parsed %d bytes, %d attachments, text %q; want %d bytes, one attachment of %d", m.Size, len(m.Attachments), m.Text, size, decoded)
	}
	return size
}

func BenchmarkParseAttachment50MB(b *testing.B) {
	p := &Parser{TempDir: b.TempDir(), Limits: Limits{MaxMessageBytes: 128 << 20}}
	_, size, _ := bigMessage(50_000_000)
	b.SetBytes(size)
	b.ReportAllocs()
	for b.Loop() {
		parseBig(b, p, 50_000_000)
	}
}

// peakHeap runs f and returns how far the heap grew above where it started,
// sampled every millisecond.
func peakHeap(f func()) uint64 {
	runtime.GC()
	sample := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	metrics.Read(sample)
	base := sample[0].Value.Uint64()
	var (
		peak uint64
		wg   sync.WaitGroup
		stop = make(chan struct{})
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
		tick := time.NewTicker(time.Millisecond)
		defer tick.Stop()
		for {
			metrics.Read(s)
			peak = max(peak, s[0].Value.Uint64())
			select {
			case <-stop:
				return
			case <-tick.C:
			}
		}
	}()
	f()
	close(stop)
	wg.Wait()
	if peak < base {
		return 0
	}
	return peak - base
}

// TestParsePeakHeap100MB: a 100 MB message (a 74 MB base64 attachment)
// parses with the heap growing by less than 64 MiB: the attachment streams
// to a temporary file.
func TestParsePeakHeap100MB(t *testing.T) {
	if testing.Short() {
		t.Skip("parses 100 MB")
	}
	p := &Parser{TempDir: t.TempDir(), Limits: Limits{MaxMessageBytes: 128 << 20}}
	var size int64
	peak := peakHeap(func() { size = parseBig(t, p, 74_000_000) })
	if size < 100_000_000 {
		t.Fatalf("message of %d bytes, want 100 MB", size)
	}
	t.Logf("%.1f MB message: heap grew by %.1f MiB at most", float64(size)/1e6, float64(peak)/(1<<20))
	if peak >= 64<<20 {
		t.Errorf("heap grew by %d MiB, want < 64 MiB", peak>>20)
	}
}

func BenchmarkParse100MB(b *testing.B) {
	p := &Parser{TempDir: b.TempDir(), Limits: Limits{MaxMessageBytes: 128 << 20}}
	_, size, _ := bigMessage(74_000_000)
	b.SetBytes(size)
	b.ReportAllocs()
	var peak uint64
	for b.Loop() {
		peak = max(peak, peakHeap(func() { parseBig(b, p, 74_000_000) }))
	}
	b.ReportMetric(float64(peak)/(1<<20), "peak-heap-MiB")
}

// htmlNewsletter is an HTML-only mail of about n bytes: tables, styles,
// links and many short paragraphs, like marketing mail.
func htmlNewsletter(n int) []byte {
	var b bytes.Buffer
	b.WriteString("From: news@example.com\r\nSubject: News\r\nContent-Type: text/html; charset=utf-8\r\n\r\n")
	b.WriteString("<html><head><style>td{font:12px Arial}</style></head><body><table width=\"600\" cellpadding=\"0\">")
	for i := 0; b.Len() < n; i++ {
		fmt.Fprintf(&b, "<tr><td style=\"padding:4px;color:#333\"><a href=\"https://example.com/item/%d?utm_source=news\" onclick=\"track(%d)\">Item %d</a><br>\r\n"+
			"<p>Some <b>bold</b> and <i>italic</i> text &amp; an entity, line %d.</p><img src=\"https://example.com/p/%d.png\" alt=\"\"></td></tr>\r\n", i, i, i, i, i)
	}
	b.WriteString("</table></body></html>\r\n")
	return b.Bytes()
}

func BenchmarkParseHTML1MB(b *testing.B) {
	raw := htmlNewsletter(1 << 20)
	p := &Parser{}
	b.SetBytes(int64(len(raw)))
	b.ReportAllocs()
	for b.Loop() {
		m, err := p.Parse(bytes.NewReader(raw))
		if err != nil || !m.TextFromHTML {
			b.Fatal(err)
		}
		m.Close()
	}
}

// BenchmarkParseReplies parses the labelled reply corpus (testdata/replies):
// replies whose segmentation cuts, in HTML by its structure or only by its
// text — where segmentation costs most.
func BenchmarkParseReplies(b *testing.B) {
	emls, err := filepath.Glob(filepath.Join("testdata", "replies", "*.eml"))
	if err != nil || len(emls) == 0 {
		b.Fatalf("no corpus: %v", err)
	}
	var msgs [][]byte
	var total int64
	for _, path := range emls {
		raw, err := os.ReadFile(path)
		if err != nil {
			b.Fatal(err)
		}
		msgs = append(msgs, raw)
		total += int64(len(raw))
	}
	p := &Parser{TempDir: b.TempDir()}
	b.SetBytes(total)
	b.ReportAllocs()
	for b.Loop() {
		for _, raw := range msgs {
			m, err := p.Parse(bytes.NewReader(raw))
			if err != nil {
				b.Fatal(err)
			}
			m.Close()
		}
	}
}
