package mime

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
	"time"
)

// TestHTMLToTextLinear: the renderer only appends and cuts at the end, so
// large HTML with many breaks costs linear time (it used to rebuild the text
// at each break).
func TestHTMLToTextLinear(t *testing.T) {
	html := []byte(strings.Repeat("word <br> other word <p> para </p> ", 40000)) // 1.4 MB
	start := time.Now()
	text := HTMLToText(html)
	limit := 2 * time.Second
	if raceEnabled { // a quadratic renderer would still take minutes
		limit = 10 * time.Second
	}
	if took := time.Since(start); took > limit {
		t.Errorf("took %v for %d bytes", took, len(html))
	}
	if n := strings.Count(text, "word\nother word\n\npara"); n != 40000 {
		t.Errorf("%d repetitions rendered, want 40000", n)
	}
}

// htmlNewsletter is an HTML-only mail of about n bytes: tables, styles,
// links and many short paragraphs, like marketing mail (the same as the
// root package's BenchmarkParseHTML1MB parses).
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

func BenchmarkHTMLToText1MB(b *testing.B) {
	raw := htmlNewsletter(1 << 20)
	b.SetBytes(int64(len(raw)))
	b.ReportAllocs()
	for b.Loop() {
		if HTMLToText(raw) == "" {
			b.Fatal("no text")
		}
	}
}
