package mime

import (
	"bytes"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/net/html"
)

// HTMLToText renders HTML as plain text for HTML-only mail: paragraphs, line
// breaks, list items and table cells kept, <pre> verbatim, scripts, styles and
// the head dropped, other white space folded. It works in one pass over a
// byte buffer that is only ever appended to or cut at its end, so its cost is
// linear in the input.
func HTMLToText(src []byte) string {
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

// Remote content. Sanitised HTML may still load images from the sender's
// servers when shown: img src and srcset, the background attribute of
// tables and cells, and background-image url() in a style attribute. A
// remote image is a tracking pixel as often as not, so RemoteRewriter lists
// every remote URL and, unless allowed, renames the attribute that loads it
// X to data-remote-X (a style attribute loses its background-image
// declaration; data-remote-style holds the style with it). A host
// that offers "show remote content" renames them back. URLs that are
// neither http(s) nor cid: (relative ones would load from the host's own
// site) are dropped in any case.

const (
	// MaxRemoteContent bounds RemoteRewriter.URLs (Message.RemoteContent).
	MaxRemoteContent = 500
	// MaxRemoteURL is the longest URL listed in RemoteRewriter.URLs;
	// longer ones are still blocked.
	MaxRemoteURL = 8 << 10
	// remotePrefix renames a blocked attribute.
	remotePrefix = "data-remote-"
)

// urlKind classifies the URL of an image source.
type urlKind int

const (
	urlDrop   urlKind = iota // neither remote nor inline: dropped
	urlInline                // cid: a part of the message
	urlRemote                // http, https or scheme-relative
)

// InlineLocationAttr holds a relative image reference (src or background)
// that may name an inline part by its Content-Location.
const InlineLocationAttr = "data-inline-location"

// isPlainRelative reports whether u is a relative URL that may name a part
// ("image001.png", "images/logo.png"): no scheme, not starting with "/",
// "." or "#".
func isPlainRelative(u string) bool {
	u = strings.TrimSpace(u)
	if u == "" || strings.HasPrefix(u, "/") || strings.HasPrefix(u, "#") || strings.HasPrefix(u, ".") {
		return false // scheme- or root-relative, a fragment, or a path up: never a part's name
	}
	if i := strings.IndexAny(u, ":/?#"); i >= 0 && u[i] == ':' {
		return false // has a scheme
	}
	return true
}

func classifyURL(u string) urlKind {
	u = strings.TrimSpace(u)
	l := strings.ToLower(u[:min(len(u), 8)])
	switch {
	case strings.HasPrefix(l, "cid:"):
		return urlInline
	case strings.HasPrefix(l, "http://"), strings.HasPrefix(l, "https://"), strings.HasPrefix(l, "//"):
		return urlRemote
	}
	return urlDrop
}

// RemoteRewriter collects the remote URLs of a message's HTML parts.
type RemoteRewriter struct {
	// Allow keeps remote images loadable; they are listed either way.
	Allow bool
	// URLs are the remote URLs found, once each, in order.
	URLs []string
	// Dropped counts the URLs not listed: too many or too long.
	Dropped int

	seen map[string]bool
}

func (rw *RemoteRewriter) add(u string) {
	u = strings.TrimSpace(u)
	if rw.seen[u] {
		return
	}
	if len(rw.URLs) >= MaxRemoteContent || len(u) > MaxRemoteURL {
		rw.Dropped++
		return
	}
	if rw.seen == nil {
		rw.seen = map[string]bool{}
	}
	rw.seen[u] = true
	rw.URLs = append(rw.URLs, u)
}

// Rewrite processes one sanitised HTML part. Tags it does not change are
// copied byte for byte.
func (rw *RemoteRewriter) Rewrite(src string) string {
	if !strings.Contains(src, "=") { // no attribute at all
		return src
	}
	var out strings.Builder
	out.Grow(len(src))
	z := html.NewTokenizer(strings.NewReader(src))
	for {
		tt := z.Next()
		if tt == html.ErrorToken {
			return out.String()
		}
		if tt != html.StartTagToken && tt != html.SelfClosingTagToken {
			out.Write(z.Raw())
			continue
		}
		raw := z.Raw()
		if !mayRewrite(raw) {
			out.Write(raw)
			continue
		}
		saved := string(raw)
		tok := z.Token()
		if rw.tag(&tok) {
			out.WriteString(tok.String())
		} else {
			out.WriteString(saved)
		}
	}
}

// rewrittenAttrs are the attributes tag may change (sanitised HTML has
// lower-case attribute names followed by "=").
var rewrittenAttrs = [][]byte{
	[]byte("src="), []byte("href="), []byte("srcset="), []byte("background="), []byte("align="), []byte("width="),
	[]byte("height="), []byte("cellpadding="), []byte("cellspacing="), []byte("border="),
}

// mayRewrite is a quick look at a raw start tag: false when tag would not
// change it.
func mayRewrite(raw []byte) bool {
	for _, a := range rewrittenAttrs {
		if bytes.Contains(raw, a) {
			return true
		}
	}
	return bytes.Contains(raw, []byte("style=")) && (bytes.Contains(raw, []byte(`\`)) ||
		bytes.IndexByte(raw, '(') >= 0 && bytes.Contains(bytes.ToLower(raw), []byte("url(")))
}

// tag rewrites one start tag's attributes and reports whether it changed.
func (rw *RemoteRewriter) tag(tok *html.Token) bool {
	changed := false
	attrs := tok.Attr[:0]
	for _, a := range tok.Attr {
		keep := true
		switch a.Key {
		case "src", "background":
			switch classifyURL(a.Val) {
			case urlRemote:
				rw.add(a.Val)
				if !rw.Allow {
					a.Key, changed = remotePrefix+a.Key, true
				}
			case urlDrop:
				keep = false
				if isPlainRelative(a.Val) {
					// Maybe an inline part's Content-Location: inert here,
					// resolved by the host through Message.InlineHTML.
					a.Key, a.Val, keep = InlineLocationAttr, strings.TrimSpace(a.Val), true
				}
				changed = true
			}
		case "href":
			if isPlainRelative(a.Val) {
				keep, changed = false, true
			}
		case "srcset":
			remote, drop, n := false, false, 0
			for _, cand := range strings.Split(a.Val, ",") {
				f := strings.Fields(cand)
				if len(f) == 0 {
					continue
				}
				n++
				switch classifyURL(f[0]) {
				case urlRemote:
					rw.add(f[0])
					remote = true
				case urlDrop:
					drop = true
				}
			}
			switch {
			case drop || n == 0:
				keep = false
			case remote && !rw.Allow:
				a.Key, changed = remotePrefix+a.Key, true
			}
		case "style":
			kept, withRemote, remote := rw.style(a.Val)
			val := kept
			switch {
			case remote && rw.Allow:
				val = withRemote
			case remote:
				// What "show remote content" restores.
				attrs = append(attrs, html.Attribute{Key: remotePrefix + "style", Val: withRemote})
				changed = true
			}
			if val != a.Val {
				a.Val, changed = val, true
			}
			keep = val != ""
		case "align":
			// align=left/right makes an image or a table float out of the
			// text it is in, past the end of the mail's box.
			if tok.Data == "img" || tok.Data == "table" {
				v := strings.ToLower(strings.TrimSpace(a.Val))
				keep = v != "left" && v != "right"
			}
		case "width", "height":
			keep = htmlLengthWithin(a.Val, 2000)
		case "cellpadding", "cellspacing":
			keep = htmlLengthWithin(a.Val, 50)
		case "border":
			keep = htmlLengthWithin(a.Val, 20)
		}
		if keep {
			attrs = append(attrs, a)
		} else {
			changed = true
		}
	}
	tok.Attr = attrs
	return changed
}

// htmlLengthWithin reports whether an HTML width, height or spacing
// attribute is a number of at most max pixels, or a percentage of at most
// 100.
func htmlLengthWithin(v string, max int) bool {
	v = strings.TrimSpace(v)
	pct := strings.HasSuffix(v, "%")
	if pct {
		v = strings.TrimSuffix(v, "%")
		max = 100
	}
	v = strings.TrimSuffix(v, "px")
	if i := strings.IndexByte(v, '.'); i >= 0 {
		v = v[:i]
	}
	if v == "" || len(v) > 6 {
		return false
	}
	n := 0
	for _, c := range []byte(v) {
		if c < '0' || c > '9' {
			return false
		}
		n = n*10 + int(c-'0')
	}
	return n <= max
}

// style checks a sanitised style attribute ("prop: value; …") for images:
// a background-image with a remote URL is listed; one with any other URL
// but cid:, or a declaration with a CSS escape or a url() elsewhere, is
// removed. It returns the declarations kept without remote images, those
// kept with them, and whether there was a remote image.
func (rw *RemoteRewriter) style(v string) (kept, withRemote string, remote bool) {
	if !strings.Contains(strings.ToLower(v), "url(") && !strings.Contains(v, `\`) {
		return v, v, false
	}
	var without, with []string
	for _, decl := range strings.Split(v, ";") {
		prop, val, ok := strings.Cut(decl, ":")
		if !ok {
			continue
		}
		decl = strings.TrimSpace(decl)
		prop = strings.ToLower(strings.TrimSpace(prop))
		lval := strings.ToLower(val)
		switch {
		case strings.Contains(val, `\`):
			continue
		case !strings.Contains(lval, "url("):
			without, with = append(without, decl), append(with, decl)
			continue
		case prop != "background-image":
			continue
		}
		u := strings.TrimSpace(val[strings.Index(lval, "url(")+4:])
		u = strings.Trim(strings.TrimSuffix(u, ")"), ` "'`)
		switch classifyURL(u) {
		case urlRemote:
			rw.add(u)
			remote = true
			with = append(with, decl)
		case urlInline:
			without, with = append(without, decl), append(with, decl)
		}
	}
	return strings.Join(without, "; "), strings.Join(with, "; "), remote
}
