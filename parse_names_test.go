package mailsync

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

// hostileNamesMessage is a mail of about 12 MB whose twelve attachments
// have names of about a million characters each, sent three ways (quoted
// UTF-8 with bidi overrides and zero-width characters, RFC 2231 continuations
// of percent escapes, and encoded words), each part header just under the
// default MaxHeaderBytes. Issue 10: such a mail became a 144 MB JSON line.
func hostileNamesMessage() []byte {
	const nameChars = 1_000_000
	var b bytes.Buffer
	b.WriteString("From: a@example.com\r\nSubject: names\r\nContent-Type: multipart/mixed; boundary=sep\r\n\r\n--sep\r\nContent-Type: text/plain\r\n\r\nhello\r\n")
	for i := 0; i < 12; i++ {
		b.WriteString("--sep\r\nContent-Type: application/octet-stream\r\nContent-Disposition: attachment;")
		switch i % 3 {
		case 0: // quoted raw UTF-8: "a\u202eb\u200b" repeated, 8 bytes a unit
			b.WriteString(" filename=\"")
			b.WriteString(strings.Repeat("a\u202eb\u200b", nameChars/8))
			b.WriteString(".exe\"")
		case 1: // RFC 2231 continuations: 999 pieces of about 1000 characters
			unit := "%E2%80%AEab"
			piece := strings.Repeat(unit, 1000/len(unit))
			for n := 0; n < 999; n++ {
				fmt.Fprintf(&b, "\r\n filename*%d*=", n)
				if n == 0 {
					b.WriteString("utf-8''")
				}
				b.WriteString(piece)
				b.WriteString(";")
			}
			b.WriteString("\r\n filename*999*=.pdf")
		case 2: // encoded words of 60 characters
			word := "=?utf-8?B?" + base64.StdEncoding.EncodeToString([]byte(strings.Repeat("\u202ex", 9))) + "?="
			b.WriteString(" filename=\"")
			for start := b.Len(); b.Len()-start < nameChars-len(word); {
				b.WriteString(word)
				b.WriteString(" ")
			}
			b.WriteString("=?utf-8?Q?.zip?=\"")
		}
		b.WriteString("\r\n\r\ndata\r\n")
	}
	b.WriteString("--sep--\r\n")
	return b.Bytes()
}

// TestParseHostileNames: a 12 MB mail with names of a million characters
// parses into twelve attachments whose names are at most 255 bytes, keep
// their extension and hold no bidi override or zero-width character, with a
// warning; the heap grows by less than 64 MiB. The figures are logged:
//
//	go test -run 'TestParseHostileNames$' -v .
//	go test -run '^$' -bench 'ParseHostileNames' -benchmem .
func TestParseHostileNames(t *testing.T) {
	raw := hostileNamesMessage()
	p := &Parser{TempDir: t.TempDir(), Limits: Limits{MaxMessageBytes: 64 << 20}}
	var m *Message
	var err error
	start := time.Now()
	peak := peakHeap(func() { m, err = p.parse(bytes.NewReader(raw)) })
	elapsed := time.Since(start)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	t.Logf("%.1f MB message: %s, heap grew by %.1f MiB at most", float64(len(raw))/1e6, elapsed.Round(time.Millisecond), float64(peak)/(1<<20))
	if len(m.Attachments) != 12 {
		t.Fatalf("%d attachments, want 12; warnings %q", len(m.Attachments), m.Warnings)
	}
	exts := []string{".exe", ".pdf", ".zip"}
	for i, a := range m.Attachments {
		if len(a.Filename) > 255 || !utf8.ValidString(a.Filename) {
			t.Errorf("attachment %d: name of %d bytes (valid UTF-8 %v)", i, len(a.Filename), utf8.ValidString(a.Filename))
		}
		if !strings.HasSuffix(a.Filename, exts[i%3]) {
			t.Errorf("attachment %d: name %q…%q lost its extension %s", i, a.Filename[:min(20, len(a.Filename))], a.Filename[max(0, len(a.Filename)-20):], exts[i%3])
		}
		if strings.ContainsAny(a.Filename, "\u202e\u200b") {
			t.Errorf("attachment %d: name keeps a bidi override or zero-width space", i)
		}
	}
	if !containsWarning(m, "attachment name") {
		t.Errorf("no warning about the names: %q", m.Warnings)
	}
	if peak >= 64<<20 {
		t.Errorf("heap grew by %d MiB, want < 64 MiB", peak>>20)
	}
}

func BenchmarkParseHostileNames(b *testing.B) {
	raw := hostileNamesMessage()
	p := &Parser{TempDir: b.TempDir(), Limits: Limits{MaxMessageBytes: 64 << 20}}
	b.SetBytes(int64(len(raw)))
	b.ReportAllocs()
	var peak uint64
	for b.Loop() {
		peak = max(peak, peakHeap(func() {
			m, err := p.Parse(bytes.NewReader(raw))
			if err != nil {
				b.Fatal(err)
			}
			m.Close()
		}))
	}
	b.ReportMetric(float64(peak)/(1<<20), "peak-heap-MiB")
}

// TestParseAttachmentNamesSanitised: names lose control and format
// characters (bidi overrides, zero-width characters, BOM), paths and drive
// prefixes, and are cut to 255 bytes on a character boundary keeping their
// extension, each change with a warning (issue 10 item 4).
func TestParseAttachmentNamesSanitised(t *testing.T) {
	long := strings.Repeat("é", 200) // 400 bytes
	tests := []struct {
		name, headers, want, warning string
	}{
		{"bidi override", "Content-Disposition: attachment; filename=\"invoice\u202Efdp.exe\"", "invoicefdp.exe", "control or format characters removed"},
		{"bidi isolate and marks", "Content-Disposition: attachment; filename*=UTF-8''a%E2%81%A6b%E2%80%8Fc%E2%81%A9.txt", "abc.txt", "control or format characters removed"},
		{"zero-width and BOM", "Content-Disposition: attachment; filename=\"=?UTF-8?B?" + base64.StdEncoding.EncodeToString([]byte("\ufeffre\u200bport\u200d.pdf")) + "?=\"", "report.pdf", "control or format characters removed"},
		{"control characters", "Content-Disposition: attachment; filename=\"=?UTF-8?Q?a=0D=0Ab=00c=C2=85.txt?=\"", "abc.txt", "control or format characters removed"},
		{"drive prefix", `Content-Disposition: attachment; filename="C:evil.exe"`, "evil.exe", "drive removed"},
		{"drive and path", `Content-Disposition: attachment; filename="D:\\x\\..\\y.bat"`, "y.bat", "path removed"},
		{"path hidden by a zero-width space", "Content-Disposition: attachment; filename=\"..\u200b/..\u200b/x\"", "x", "path removed"},
		{"300 characters", "Content-Disposition: attachment; filename=\"" + strings.Repeat("n", 300) + ".docx\"", strings.Repeat("n", 250) + ".docx", "shortened to 255 bytes"},
		{"cut on a character boundary", "Content-Disposition: attachment; filename*=UTF-8''" + strings.Repeat("%C3%A9", 200) + ".pdf", strings.Repeat("é", 125) + ".pdf", "shortened to 255 bytes"},
		{"no extension", "Content-Disposition: attachment; filename=\"" + long + "\"", strings.Repeat("é", 127), "shortened to 255 bytes"},
		{"a long extension is not one", "Content-Disposition: attachment; filename=\"a." + long + "\"", "a." + strings.Repeat("é", 126), "shortened to 255 bytes"},
		{"name parameter too", "Content-Type: application/pdf; name=\"x\u202E.pdf\"\r\nContent-Disposition: attachment", "x.pdf", "control or format characters removed"},
		{"dots only", `Content-Disposition: attachment; filename="C:.."`, "", "drive removed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := mustParse(t, string(multipartWith(tt.headers+"\r\n\r\ndata")))
			if len(m.Attachments) != 1 {
				t.Fatalf("%d attachments: %q", len(m.Attachments), m.Warnings)
			}
			got := m.Attachments[0].Filename
			if got != tt.want {
				t.Errorf("Filename = %q (%d bytes), want %q", got, len(got), tt.want)
			}
			if len(got) > 255 || !utf8.ValidString(got) {
				t.Errorf("Filename of %d bytes, valid UTF-8 %v", len(got), utf8.ValidString(got))
			}
			if !containsWarning(m, tt.warning) {
				t.Errorf("warnings %q lack %q", m.Warnings, tt.warning)
			}
		})
	}
	// A clean name gives no warning.
	m := mustParse(t, string(multipartWith("Content-Disposition: attachment; filename=\"Rapport annuel été.pdf\"\r\n\r\ndata")))
	if len(m.Warnings) != 0 || m.Attachments[0].Filename != "Rapport annuel été.pdf" {
		t.Errorf("clean name %q changed or warned: %q", m.Attachments[0].Filename, m.Warnings)
	}
}

// TestParseLongRawNames: a filename parameter far longer than what the
// parser decodes of it (RFC 2231 continuations, extended value, quoted
// value) keeps its beginning and its extension.
func TestParseLongRawNames(t *testing.T) {
	var cont strings.Builder
	for n := 0; n < 900; n++ {
		fmt.Fprintf(&cont, ";\r\n filename*%d*=%s", n, strings.Repeat("%61", 30))
	}
	fmt.Fprintf(&cont, ";\r\n filename*900=end.tar.gz")
	tests := []struct{ name, headers, ext string }{
		{"continuations", "Content-Disposition: attachment" + cont.String(), ".gz"},
		{"one huge continuation", "Content-Disposition: attachment; filename*0*=UTF-8''" + strings.Repeat("%62", 100000) + "; filename*1=.odt", ".odt"},
		{"extended value", "Content-Disposition: attachment; filename*=UTF-8''" + strings.Repeat("%63", 100000) + ".csv", ".csv"},
		{"quoted value", "Content-Disposition: attachment; filename=\"" + strings.Repeat("d", 100000) + ".png\"", ".png"},
		{"encoded words", "Content-Disposition: attachment; filename=\"" + strings.Repeat("=?utf-8?q?e?= ", 10000) + "=?utf-8?q?.gif?=\"", ".gif"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := mustParse(t, string(multipartWith(tt.headers+"\r\n\r\ndata")))
			if len(m.Attachments) != 1 {
				t.Fatalf("%d attachments: %q", len(m.Attachments), m.Warnings)
			}
			got := m.Attachments[0].Filename
			if len(got) != 255 || !strings.HasSuffix(got, tt.ext) || strings.ContainsAny(got, "%=?\"") {
				t.Errorf("Filename = %q (%d bytes), want 255 bytes ending in %q", got, len(got), tt.ext)
			}
			if !containsWarning(m, "only its first and last bytes read") {
				t.Errorf("warnings %q lack the cut", m.Warnings)
			}
		})
	}
}

// TestParseLongRawNameCutOnCharacters: the raw cut of a long name does not
// split a UTF-8 character (which would decode as windows-1252 junk with a
// warning about 8-bit bytes).
func TestParseLongRawNameCutOnCharacters(t *testing.T) {
	for _, h := range []string{
		"Content-Disposition: attachment; filename=\"" + strings.Repeat("€", 50000) + ".png\"",
		"Content-Disposition: attachment; filename*0=\"" + strings.Repeat("€", 1001) + "\"; filename*1=\"" + strings.Repeat("€", 30000) + ".png\"",
	} {
		m := mustParse(t, string(multipartWith(h+"\r\n\r\ndata")))
		got := m.Attachments[0].Filename
		if got != strings.Repeat("€", 83)+".png" || containsWarning(m, "8-bit") || containsWarning(m, "not valid") {
			t.Errorf("Filename = %q, warnings %q", got, m.Warnings)
		}
	}
}
