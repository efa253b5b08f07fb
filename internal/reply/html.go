package reply

import (
	"bytes"
	"strings"

	"golang.org/x/net/html"
)

// HTMLResult is an HTML body split into its segments, each an HTML
// fragment.
type HTMLResult struct {
	// Reply is the new text, its open elements closed; the whole body when
	// nothing was recognised.
	Reply string
	// Quoted is the quoted history from its mark to the end (its closing
	// tags may be unbalanced: render it, do not embed it).
	Quoted string
	// Signature is the signature element cut off the end of the reply.
	Signature string
	// Marker names the marks that decided the split, comma-separated
	// (e.g. "gmail_quote", "outlook_divRplyFwdMsg,gmail_signature"); empty
	// when nothing was cut.
	Marker string
	// Refused is true when a quote mark was found but not cut at: an
	// interleaved answer, or a quote with no new text before or after it.
	// The body's text rendering must then be kept whole too (without "> "
	// prefixes its quotes look like new text).
	Refused bool
}

// voidElements have no end tag.
var voidElements = map[string]bool{
	"area": true, "base": true, "br": true, "col": true, "embed": true, "hr": true, "img": true,
	"input": true, "link": true, "meta": true, "param": true, "source": true, "track": true, "wbr": true,
}

// quoteMark names the quote mark a start tag is, or "".
func quoteMark(name string, class, id, typ, style string) string {
	switch {
	case hasClass(class, "gmail_quote") || hasClass(class, "gmail_quote_container"):
		return "gmail_quote"
	case hasClass(class, "yahoo_quoted") || strings.HasPrefix(id, "yahoo_quoted"):
		return "yahoo_quoted"
	case hasClass(class, "protonmail_quote"):
		return "protonmail_quote"
	case id == "appendonsend":
		return "outlook_appendonsend"
	case id == "divRplyFwdMsg":
		return "outlook_divRplyFwdMsg"
	case id == "zwchr":
		return "zimbra_zwchr"
	case id == "OLK_SRC_BODY_SECTION":
		return "outlook_mac"
	case hasClass(class, "moz-cite-prefix"):
		return "moz-cite-prefix"
	case hasClass(class, "moz-forward-container"):
		return "moz-forward-container"
	case name == "blockquote" && strings.EqualFold(typ, "cite"):
		return "blockquote_cite"
	case name == "div" && outlookBorder(style):
		return "outlook_border_top"
	}
	return ""
}

// outlookBorder reports whether a style is the top border Outlook desktop
// draws above the header block of the quoted message.
func outlookBorder(style string) bool {
	s := strings.ToLower(style)
	return strings.Contains(s, "border-top") && (strings.Contains(s, "#e1e1e1") || strings.Contains(s, "#b5c4df")) &&
		strings.Contains(s, "padding")
}

// sigMark names the signature mark a start tag is, or "".
func sigMark(class, id string) string {
	switch {
	case hasClass(class, "gmail_signature_prefix"), hasClass(class, "gmail_signature"):
		return "gmail_signature"
	case hasClass(class, "moz-signature"):
		return "moz-signature"
	case hasClass(class, "protonmail_signature_block"):
		return "protonmail_signature"
	case id == "Signature" || id == "ms-outlook-mobile-signature":
		return "outlook_signature"
	}
	return ""
}

func hasClass(class, name string) bool {
	if class == "" {
		return false
	}
	for _, c := range strings.Fields(class) {
		if c == name {
			return true
		}
	}
	return false
}

// marks are substrings one of which every mark has; a body without any is
// not tokenised.
var marks = []string{"gmail_", "yahoo_quoted", "protonmail_", "appendonsend", "divRplyFwdMsg", "zwchr",
	"OLK_SRC_BODY_SECTION", "moz-", "cite", "border-top", "Signature", "ms-outlook-mobile-signature"}

func mayHaveMark(src string) bool {
	for _, m := range marks {
		if strings.Contains(src, m) {
			return true
		}
	}
	return false
}

// citeMark reports whether a mark quotes in blockquotes (Gmail's,
// Apple Mail's and Thunderbird's), so that text outside them after the
// first one means an interleaved answer (or new text below the quote); the
// other marks start history that runs to the end.
func citeMark(m string) bool {
	return m == "blockquote_cite" || m == "moz-cite-prefix" || m == "gmail_quote"
}

// maxHRStack is the deepest nesting at which HTML remembers the elements
// open at an <hr> (a copy per <hr>, which a mail nesting thousands of
// elements deep would make quadratic).
const maxHRStack = 1024

// innermost returns the index in stack of the innermost open element
// named name, or -1. open counts stack's elements by name, so an end tag
// that closes nothing costs no scan, and a scan only walks the elements
// the caller then drops: linear in the input, whatever the nesting a
// hostile mail makes.
func innermost(stack []string, open map[string]int, name string) int {
	if open[name] == 0 {
		return -1
	}
	for i := len(stack) - 1; i >= 0; i-- {
		if stack[i] == name {
			return i
		}
	}
	return -1
}

// dropFrom closes stack[i:], as an end tag does, and keeps open's counts.
func dropFrom(stack []string, open map[string]int, i int) []string {
	for _, n := range stack[i:] {
		open[n]--
	}
	return stack[:i]
}

// HTML splits an HTML body (sanitised: the marks are read from the class,
// id, type and style attributes the sanitiser keeps).
//
// A blockquote-style quote (Gmail's, Apple Mail's, Thunderbird's) that
// comes first — after nothing, or after its "On … wrote:" header only — and
// is followed by new text, with no quote after that text, is a
// bottom-posted reply: Reply is what follows the quote, the elements open
// around it reopened, Quoted what precedes it, and Marker ends with
// ",bottom_posted". New text between quotes keeps the body whole.
func HTML(src string) HTMLResult {
	whole := HTMLResult{Reply: src}
	if !mayHaveMark(src) {
		return whole
	}
	z := html.NewTokenizer(strings.NewReader(src))
	var (
		stack                []string           // open elements
		open                 = map[string]int{} // open elements by name
		off                  int                // offset of the current token
		cut                  = -1               // where the quote starts
		cutStack             []string           // elements open at cut
		marker               string
		quoteDepth           int  // blockquotes open after cut
		sawQuote             bool // a blockquote started after cut
		interleaved          bool
		sigStart, sigDepth   = -1, -1
		sigEnd               = -1
		sigMarker            string
		sigStack             []string
		textAfterSig         bool
		hrAt                 = -1 // an <hr> just before, which goes with a mark after it
		hrStack              []string
		sawText, textBeforeQ bool
		// Bottom posting: the quote first, then the answer.
		preText  strings.Builder // the text before the mark, up to maxHeaderRunes*3 bytes
		afterAt  = -1            // where the content after the quote starts
		answerAt = -1            // afterAt when text followed it outside the quotes
		requoted bool            // a quote again after that text
	)
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
			class, id, typ, style := markAttrs(z, hasAttr)
			markTag := false
			if cut < 0 {
				if m := quoteMark(name, class, id, typ, style); m != "" {
					cut, marker, markTag = start, m, true
					cutStack = append([]string(nil), stack...)
					if hrAt >= 0 {
						cut, cutStack = hrAt, hrStack
					}
					textBeforeQ = sawText
				} else if m := sigMark(class, id); m != "" && sawText {
					switch {
					case sigStart < 0:
						sigStart, sigMarker = start, m
						sigStack = append([]string(nil), stack...)
						sigDepth = len(stack)
					case sigEnd >= 0 && !textAfterSig:
						// The signature goes on (Gmail's "-- " prefix, then
						// the signature itself).
						sigDepth, sigEnd = min(sigDepth, len(stack)), -1
					}
				}
				if name == "hr" && len(stack) <= maxHRStack {
					hrAt, hrStack = start, append([]string(nil), stack...)
				} else if name == "hr" {
					hrAt = -1 // nested too deep to copy at every <hr>: the cut starts at the mark
				} else if name != "br" && name != "div" {
					hrAt = -1
				}
			} else if name == "blockquote" && tt == html.StartTagToken {
				quoteDepth++
				sawQuote = true
				if answerAt >= 0 {
					requoted = true
				}
			} else if answerAt >= 0 && quoteMark(name, class, id, typ, style) != "" {
				requoted = true
			}
			if cut >= 0 && sawQuote && quoteDepth == 0 && answerAt < 0 && afterAt < 0 {
				afterAt = start
			}
			if tt == html.StartTagToken && !voidElements[name] {
				stack = append(stack, name)
				open[name]++
				if markTag && name == "blockquote" {
					quoteDepth++
					sawQuote = true
				}
			}
		case html.EndTagToken:
			nameB, _ := z.TagName()
			name := string(nameB)
			if i := innermost(stack, open, name); i >= 0 {
				stack = dropFrom(stack, open, i)
			}
			if cut >= 0 && name == "blockquote" && quoteDepth > 0 {
				quoteDepth--
			}
			if answerAt < 0 {
				afterAt = -1 // the content after the quote starts after this end tag
			}
			if sigStart >= 0 && sigEnd < 0 && len(stack) <= sigDepth {
				sigEnd = off
			}
		case html.TextToken:
			text := z.Text()
			if strings.TrimSpace(strings.ReplaceAll(string(text), "\u00a0", " ")) == "" {
				continue
			}
			hrAt = -1
			switch {
			case cut < 0:
				sawText = true
				if sigEnd >= 0 {
					textAfterSig = true
				}
				if preText.Len() <= maxHeaderRunes*3 {
					preText.WriteByte(' ')
					preText.Write(text)
				}
			case citeMark(marker) && quoteDepth == 0 && sawQuote:
				// Text outside the quotes after the first one (the text
				// before it is the "On … wrote:" header).
				interleaved = true
				if answerAt < 0 {
					answerAt = afterAt
					if answerAt < 0 {
						answerAt = start
					}
				}
			}
		}
	}
	if interleaved && !requoted && (!textBeforeQ || attribution(preText.String())) {
		// Bottom posting: the quote (after nothing, or after its "On …
		// wrote:" header only), then the answer, quoted nowhere after.
		return HTMLResult{
			Reply:  reopenAt(src, answerAt) + src[answerAt:],
			Quoted: src[:answerAt],
			Marker: marker + ",bottom_posted",
		}
	}
	if cut < 0 && sigStart < 0 || interleaved || cut >= 0 && !textBeforeQ {
		// Nothing found, an interleaved answer, or a quote with no new text
		// before it (a forward, or new text below a quote that is not
		// first): keep everything.
		whole.Refused = cut >= 0
		return whole
	}
	var r HTMLResult
	var markers []string
	end, endStack := len(src), stack
	if cut >= 0 {
		r.Quoted = src[cut:]
		end, endStack = cut, cutStack
		markers = append(markers, marker)
	}
	if sigStart >= 0 && !textAfterSig && sigStart < end {
		if sigEnd < 0 || sigEnd > end {
			sigEnd = end
		}
		r.Signature = src[sigStart:sigEnd]
		end, endStack = sigStart, sigStack
		markers = append(markers, sigMarker)
	}
	var b bytes.Buffer
	b.Grow(end + 8*len(endStack))
	b.WriteString(src[:end])
	for i := len(endStack) - 1; i >= 0; i-- {
		b.WriteString("</" + endStack[i] + ">")
	}
	r.Reply = b.String()
	r.Marker = strings.Join(markers, ",")
	return r
}

// attribution reports whether text (the text of the HTML before its quote
// mark) is an "On … wrote:" header and nothing else.
func attribution(text string) bool {
	l := strings.Join(strings.Fields(strings.ReplaceAll(html.UnescapeString(text), "\u00a0", " ")), " ")
	if l == "" || len(l) > maxHeaderRunes*3 {
		return false
	}
	lang, _ := onWroteHeader([]string{l}, 0)
	return lang != ""
}

// reopenAt returns the start tags of the elements open at offset off of src
// (a token boundary), outermost first, so that src[off:] after them is a
// fragment whose end tags close what they open. A start tag that is a quote
// or signature mark is reopened bare (its name only), so the fragment holds
// no mark.
func reopenAt(src string, off int) string {
	type openTag struct {
		start, end int
		mark       bool
	}
	z := html.NewTokenizer(strings.NewReader(src[:off]))
	var (
		stack []string
		tags  []openTag
		open  = map[string]int{} // open elements by name
		pos   int
	)
	for {
		tt := z.Next()
		if tt == html.ErrorToken {
			break
		}
		start := pos
		pos += len(z.Raw())
		switch tt {
		case html.StartTagToken:
			nameB, hasAttr := z.TagName()
			name := string(nameB)
			if voidElements[name] {
				continue
			}
			class, id, typ, style := markAttrs(z, hasAttr)
			stack = append(stack, name)
			open[name]++
			tags = append(tags, openTag{start, pos, quoteMark(name, class, id, typ, style) != "" || sigMark(class, id) != ""})
		case html.EndTagToken:
			nameB, _ := z.TagName()
			if i := innermost(stack, open, string(nameB)); i >= 0 {
				stack, tags = dropFrom(stack, open, i), tags[:i]
			}
		}
	}
	var b strings.Builder
	for i, t := range tags {
		if t.mark {
			b.WriteString("<" + stack[i] + ">")
		} else {
			b.WriteString(src[t.start:t.end])
		}
	}
	return b.String()
}

// markAttrs reads the current tag's attributes that quote and signature
// marks are recognised by (hasAttr: the tag has attributes, as TagName
// said).
func markAttrs(z *html.Tokenizer, hasAttr bool) (class, id, typ, style string) {
	for hasAttr {
		var k, v []byte
		k, v, hasAttr = z.TagAttr()
		switch string(k) {
		case "class":
			class = string(v)
		case "id":
			id = string(v)
		case "type":
			typ = string(v)
		case "style":
			style = string(v)
		}
	}
	return class, id, typ, style
}
