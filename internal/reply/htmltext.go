package reply

import (
	"strings"

	"golang.org/x/net/html"
)

// HTML bodies whose quote is marked only in their text: an "On … wrote:"
// line or Outlook's From:/Sent: block in plain paragraphs, "> " lines
// inside the HTML, an AOL "-----Original Message-----" line. HTML finds no
// mark in their structure; HTMLByText renders them into lines, applies the
// text rules, and maps the line where the quote starts back to the element
// where it starts.

// htmlLine is where a rendered line starts in the HTML source.
type htmlLine struct {
	off int // the offset of its first element or text
}

// lineBreakers end the line they are in, at their start and their end;
// paragraphs (the first group) also leave a blank line, as
// mime.HTMLToText renders them.
var (
	paragraphs = map[string]bool{"p": true, "table": true, "h1": true, "h2": true, "h3": true, "h4": true, "h5": true,
		"h6": true, "blockquote": true, "ul": true, "ol": true, "dl": true, "pre": true}
	blocks = map[string]bool{"div": true, "tr": true, "li": true, "dt": true, "dd": true, "hr": true, "section": true,
		"article": true, "header": true, "footer": true, "address": true, "center": true}
)

// maxQuotePrefix bounds the "> " prefixes of a line inside nested
// blockquotes: the text rules look only at the first, and a prefix per
// nesting level on every line would make the rendering of a hostile mail
// quadratic.
const maxQuotePrefix = 4

// htmlLines renders an HTML body as lines of text for the text rules —
// paragraphs, divs and line breaks end lines, <pre> and white-space: pre
// keep theirs, lines inside a blockquote start with "> " — and says
// where each line starts in src.
func htmlLines(src string) ([]string, []htmlLine) {
	z := html.NewTokenizer(strings.NewReader(src))
	var (
		lines    []string
		meta     []htmlLine
		cur      strings.Builder
		curMeta  = htmlLine{off: -1}
		stack    []string
		open     = map[string]int{} // open elements by name
		preserve []bool             // per open element: keeps its line breaks
		kept     int                // open elements that keep line breaks
		quotes   int                // open blockquotes
		skip     int                // inside script, style, head, title
		off      int
		runOff   = -1 // the first of the start tags just before, which a line starting here starts with
	)
	endLine := func(at int) {
		if curMeta.off < 0 {
			curMeta = htmlLine{off: at}
		}
		lines = append(lines, cur.String())
		meta = append(meta, curMeta)
		cur.Reset()
		curMeta = htmlLine{off: -1}
	}
	breakLine := func(at int, blankLine bool) {
		if cur.Len() > 0 {
			endLine(at)
		}
		if blankLine && len(lines) > 0 && lines[len(lines)-1] != "" {
			endLine(at)
		}
	}
	// text adds text that starts at offset at.
	text := func(t string, at int) {
		if strings.TrimSpace(t) == "" {
			if cur.Len() > 0 {
				cur.WriteByte(' ')
			}
			return
		}
		if curMeta.off < 0 {
			curMeta = htmlLine{off: at}
			if runOff >= 0 {
				curMeta = htmlLine{off: runOff}
			}
			cur.WriteString(strings.Repeat("> ", min(quotes, maxQuotePrefix)))
		}
		cur.WriteString(t)
		runOff = -1
	}
	for {
		tt := z.Next()
		if tt == html.ErrorToken {
			break
		}
		raw := z.Raw()
		start := off
		off += len(raw)
		switch tt {
		case html.StartTagToken, html.SelfClosingTagToken:
			nameB, hasAttr := z.TagName()
			name := string(nameB)
			keep := name == "pre"
			for hasAttr && !keep {
				var k, v []byte
				k, v, hasAttr = z.TagAttr()
				if string(k) == "style" {
					s := strings.ToLower(string(v))
					if i := strings.Index(s, "white-space"); i >= 0 && strings.Contains(s[i:], "pre") {
						keep = true
					}
				}
			}
			switch name {
			case "script", "style", "head", "title":
				if tt == html.StartTagToken {
					skip++
				}
			case "br":
				endLine(start) // each <br> ends a line, an empty one too
			case "img", "td", "th":
				if name == "img" {
					runOff = -1
				}
				if cur.Len() > 0 {
					cur.WriteByte(' ')
				}
			}
			if paragraphs[name] || blocks[name] {
				breakLine(start, paragraphs[name])
			}
			if voidElements[name] && name != "hr" || tt == html.SelfClosingTagToken {
				if name != "hr" {
					runOff = -1
				}
				continue
			}
			if runOff < 0 {
				runOff = start
			}
			if name == "hr" {
				continue
			}
			stack = append(stack, name)
			open[name]++
			preserve = append(preserve, keep)
			if keep {
				kept++
			}
			if name == "blockquote" {
				quotes++
			}
		case html.EndTagToken:
			nameB, _ := z.TagName()
			name := string(nameB)
			runOff = -1
			if i := innermost(stack, open, name); i >= 0 {
				for j := i; j < len(stack); j++ {
					if preserve[j] {
						kept--
					}
					if stack[j] == "blockquote" {
						quotes--
					}
				}
				stack, preserve = dropFrom(stack, open, i), preserve[:i]
			}
			switch name {
			case "script", "style", "head", "title":
				skip = max(skip-1, 0)
			}
			if paragraphs[name] || blocks[name] {
				breakLine(start, paragraphs[name])
			}
		case html.TextToken:
			if skip > 0 {
				continue
			}
			if kept == 0 {
				if first := raw[0]; (first == ' ' || first == '\n' || first == '\t' || first == '\r') && cur.Len() > 0 {
					cur.WriteByte(' ')
				}
				text(strings.Join(strings.Fields(html.UnescapeString(string(raw))), " "), start)
				if last := raw[len(raw)-1]; last == ' ' || last == '\n' || last == '\t' || last == '\r' {
					if cur.Len() > 0 {
						cur.WriteByte(' ')
					}
				}
				continue
			}
			// Line breaks kept: each source line is a line, at its own offset.
			for i, piece := range strings.Split(string(raw), "\n") {
				if i > 0 {
					breakLine(start, false)
				}
				text(strings.TrimRight(html.UnescapeString(piece), "\r"), start)
				start += len(piece) + 1
			}
		}
	}
	breakLine(off, false)
	return lines, meta
}

// HTMLByText splits an HTML body in which HTML finds no quote mark, by the
// text rules (Text) applied to its rendering, and returns its reply cut at
// the element where the quote's first line (or the signature's) starts.
// confirm is the marker Text found in the body's text rendering (the
// text/plain alternative, or the HTML rendered as text): a cut is made only
// where the HTML's rendering gives the same marker, so that when the two
// disagree the HTML is kept whole. Its Marker is "text:" and the text
// rule's (e.g. "text:on_wrote:en"). A bottom-posted reply (the quote
// first, then the new text: confirm ends with "bottom_posted") gives the
// HTML after the quote, its open elements reopened, marked e.g.
// "text:on_wrote:en,text:bottom_posted".
func HTMLByText(src, confirm string) HTMLResult {
	whole := HTMLResult{Reply: src}
	if confirm == "" {
		return whole
	}
	lines, meta := htmlLines(src)
	t, quoteAt, sigAt, replyAt := splitLines(strings.Join(lines, "\n"), lines)
	if t.Marker == "" {
		return whole
	}
	if strings.Contains(confirm, "bottom_posted") {
		// The quote first, then the new text: the HTML's rendering must
		// find the same quote and new text after it.
		if replyAt < 0 || t.Marker != confirm {
			return whole
		}
		off := meta[replyAt].off
		if strings.TrimSpace(html.UnescapeString(stripTags(src[off:]))) == "" {
			return whole // never an empty reply
		}
		markers := strings.Split(t.Marker, ",")
		for i, m := range markers {
			markers[i] = "text:" + m
		}
		return HTMLResult{Reply: reopenAt(src, off) + src[off:], Quoted: src[:off], Marker: strings.Join(markers, ",")}
	}
	want := strings.Split(confirm, ",")
	got := strings.Split(t.Marker, ",")
	has := func(m string) bool {
		for _, w := range want {
			if w == m {
				return true
			}
		}
		return false
	}
	var markers []string
	if quoteAt >= 0 {
		if !has(got[0]) {
			return whole // the HTML's quote is not the one the text has: unsure
		}
		markers = append(markers, got[0])
	}
	if sigAt >= 0 && !has(got[len(got)-1]) {
		sigAt = -1
	}
	if sigAt >= 0 {
		markers = append(markers, got[len(got)-1])
	}
	if len(markers) == 0 {
		return whole
	}
	var r HTMLResult
	end := htmlLine{off: len(src)}
	if quoteAt >= 0 {
		end = meta[quoteAt]
		r.Quoted = src[end.off:]
	}
	if sigAt >= 0 && meta[sigAt].off < end.off {
		r.Signature = src[meta[sigAt].off:end.off]
		end = meta[sigAt]
	}
	if strings.TrimSpace(html.UnescapeString(stripTags(src[:end.off]))) == "" {
		return whole // never an empty reply
	}
	stack := openAt(src, end.off)
	var b strings.Builder
	b.Grow(end.off + 8*len(stack))
	b.WriteString(src[:end.off])
	for i := len(stack) - 1; i >= 0; i-- {
		b.WriteString("</" + stack[i] + ">")
	}
	r.Reply = b.String()
	for i, m := range markers {
		markers[i] = "text:" + m
	}
	r.Marker = strings.Join(markers, ",")
	return r
}

// openAt returns the elements open at offset off of src (a token
// boundary), as htmlLines and HTML track them.
func openAt(src string, off int) []string {
	z := html.NewTokenizer(strings.NewReader(src[:off]))
	var stack []string
	open := map[string]int{} // open elements by name
	for {
		switch z.Next() {
		case html.ErrorToken:
			return stack
		case html.StartTagToken:
			name, _ := z.TagName()
			if !voidElements[string(name)] {
				stack = append(stack, string(name))
				open[string(name)]++
			}
		case html.EndTagToken:
			name, _ := z.TagName()
			if i := innermost(stack, open, string(name)); i >= 0 {
				stack = dropFrom(stack, open, i)
			}
		}
	}
}

// stripTags returns the text of an HTML fragment, roughly (for a blank check).
func stripTags(s string) string {
	var b strings.Builder
	in := false
	for _, c := range s {
		switch {
		case c == '<':
			in = true
		case c == '>':
			in = false
		case !in:
			b.WriteRune(c)
		}
	}
	return strings.ReplaceAll(b.String(), "\u00a0", " ")
}
