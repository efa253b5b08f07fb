package mailsync

import (
	"bytes"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/net/html"
)

// htmlToText renders HTML as plain text for HTML-only mail: paragraphs, line
// breaks, list items and table cells kept, <pre> verbatim, scripts, styles and
// the head dropped, other white space folded. It works in one pass over a
// byte buffer that is only ever appended to or cut at its end, so its cost is
// linear in the input.
func htmlToText(src []byte) string {
	z := html.NewTokenizer(bytes.NewReader(src))
	t := textBuf{b: make([]byte, 0, len(src)/2)}
	skip, pre := 0, 0 // inside <script>, <style>, <head>, <title>; inside <pre>
	for {
		tt := z.Next()
		switch tt {
		case html.ErrorToken:
			return tidyText(t.b)
		case html.TextToken:
			if skip > 0 {
				continue
			}
			raw := z.Text()
			if pre > 0 {
				t.b = append(t.b, bytes.ReplaceAll(raw, []byte("\r\n"), []byte("\n"))...)
				continue
			}
			t.words(raw)
		case html.StartTagToken, html.SelfClosingTagToken:
			name, _ := z.TagName()
			switch string(name) {
			case "script", "style", "head", "title":
				if tt == html.StartTagToken {
					skip++
				}
			case "br":
				t.trimSpace()
				t.b = append(t.b, '\n')
			case "pre":
				t.trimSpace()
				t.newlines(2)
				if tt == html.StartTagToken {
					pre++
				}
			case "p", "table", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote", "ul", "ol", "hr", "dl":
				t.trimSpace()
				t.newlines(2)
			case "div", "tr", "dt", "dd":
				t.trimSpace()
				t.newlines(1)
			case "li":
				t.trimSpace()
				t.newlines(1)
				t.b = append(t.b, "- "...)
			case "td", "th":
				if len(t.b) > 0 && t.b[len(t.b)-1] != '\n' {
					t.trimSpace()
					t.b = append(t.b, '\t')
				}
			case "img":
				if alt := attr(z, "alt"); strings.TrimSpace(alt) != "" && skip == 0 {
					t.words([]byte(" " + alt + " "))
				}
			}
		case html.EndTagToken:
			name, _ := z.TagName()
			switch string(name) {
			case "script", "style", "head", "title":
				if skip > 0 {
					skip--
				}
			case "pre":
				if pre > 0 {
					pre--
				}
				t.newlines(1)
			case "p", "table", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote", "ul", "ol", "dl":
				t.trimSpace()
				t.newlines(2)
			case "div", "tr":
				t.trimSpace()
				t.newlines(1)
			}
		}
	}
}

// attr returns an attribute of the current tag.
func attr(z *html.Tokenizer, name string) string {
	for {
		k, v, more := z.TagAttr()
		if string(k) == name {
			return string(v)
		}
		if !more {
			return ""
		}
	}
}

type textBuf struct{ b []byte }

// words appends text with its white space folded to single spaces, keeping
// one space at either end where the source had white space.
func (t *textBuf) words(raw []byte) {
	atBreak := len(t.b) == 0 || t.b[len(t.b)-1] == ' ' || t.b[len(t.b)-1] == '\n' || t.b[len(t.b)-1] == '\t'
	for len(raw) > 0 {
		r, size := utf8.DecodeRune(raw)
		if unicode.IsSpace(r) {
			if !atBreak {
				t.b = append(t.b, ' ')
				atBreak = true
			}
		} else {
			t.b = append(t.b, raw[:size]...)
			atBreak = false
		}
		raw = raw[size:]
	}
}

// trimSpace cuts spaces and tabs at the end.
func (t *textBuf) trimSpace() {
	n := len(t.b)
	for n > 0 && (t.b[n-1] == ' ' || t.b[n-1] == '\t') {
		n--
	}
	t.b = t.b[:n]
}

// newlines makes the text end in at least n line breaks (none at the start).
func (t *textBuf) newlines(n int) {
	if len(t.b) == 0 {
		return
	}
	have := 0
	for have < len(t.b) && t.b[len(t.b)-1-have] == '\n' {
		have++
	}
	for ; have < n; have++ {
		t.b = append(t.b, '\n')
	}
}

// tidyText trims lines and collapses runs of blank lines.
func tidyText(b []byte) string {
	var out strings.Builder
	out.Grow(len(b))
	blank := 0
	for len(b) > 0 {
		line := b
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			line, b = b[:i], b[i+1:]
		} else {
			b = nil
		}
		line = bytes.TrimRightFunc(line, unicode.IsSpace)
		if len(bytes.TrimSpace(line)) == 0 {
			blank++
			continue
		}
		if out.Len() > 0 {
			if blank > 0 {
				out.WriteString("\n\n")
			} else {
				out.WriteByte('\n')
			}
		}
		blank = 0
		out.Write(line)
	}
	return strings.ToValidUTF8(out.String(), "\uFFFD")
}
