package mailsync

import (
	"path"
	"strings"

	"golang.org/x/net/html"

	"github.com/mailsync/mailsync/internal/mime"
)

// imageExt is the file extension of an image type.
func imageExt(mediaType string) string {
	switch sub := strings.TrimPrefix(mediaType, "image/"); sub {
	case "jpeg", "pjpeg", "jpg":
		return "jpg"
	case "svg+xml":
		return "svg"
	case "x-icon", "vnd.microsoft.icon":
		return "ico"
	case "png", "gif", "bmp", "webp", "tiff", "avif", "heic":
		return sub
	}
	return "img"
}

// inlineRef is one reference of the HTML body to an inline part.
type inlineRef struct{ cid, location string }

// htmlRefs lists the cid: and relative references of sanitised HTML.
func htmlRefs(src string) []inlineRef {
	if !strings.Contains(src, "cid:") && !strings.Contains(src, mime.InlineLocationAttr) && !strings.Contains(src, "data-remote-") {
		return nil
	}
	var refs []inlineRef
	z := html.NewTokenizer(strings.NewReader(src))
	for {
		switch z.Next() {
		case html.ErrorToken:
			return refs
		case html.StartTagToken, html.SelfClosingTagToken:
			for _, a := range z.Token().Attr {
				switch {
				case a.Key == "src" || a.Key == "background":
					if v := strings.TrimSpace(a.Val); len(v) > 4 && strings.EqualFold(v[:4], "cid:") {
						refs = append(refs, inlineRef{cid: v[4:]})
					}
				case a.Key == mime.InlineLocationAttr || a.Key == "data-remote-src" || a.Key == "data-remote-background":
					refs = append(refs, inlineRef{location: strings.TrimSpace(a.Val)})
				case a.Key == "style":
					for _, cid := range styleCIDs(a.Val) {
						refs = append(refs, inlineRef{cid: cid})
					}
				}
			}
		}
	}
}

// styleCIDs finds url(cid:…) in a style attribute.
func styleCIDs(style string) []string {
	var out []string
	for {
		i := strings.Index(strings.ToLower(style), "url(")
		if i < 0 {
			return out
		}
		style = style[i+4:]
		j := strings.IndexByte(style, ')')
		if j < 0 {
			return out
		}
		v := strings.Trim(strings.TrimSpace(style[:j]), `"'`)
		if len(v) > 4 && strings.EqualFold(v[:4], "cid:") {
			out = append(out, v[4:])
		}
		style = style[j+1:]
	}
}

// find returns the attachment a reference names.
func (m *Message) findInline(r inlineRef) *Attachment {
	for _, a := range m.Attachments {
		switch {
		case r.cid != "" && a.ContentID != "" && strings.EqualFold(a.ContentID, r.cid):
			return a
		case r.location != "" && a.ContentLocation != "" &&
			(a.ContentLocation == r.location || path.Base(a.ContentLocation) == r.location):
			return a
		}
	}
	return nil
}

// linkInline marks the parts the HTML refers to as referenced and inline,
// and the inline parts it never refers to as ordinary attachments.
func (ps *parseState) linkInline() {
	m := ps.msg
	for _, r := range htmlRefs(m.HTML) {
		if a := m.findInline(r); a != nil {
			a.Referenced, a.Inline = true, true
		}
	}
	for _, a := range m.Attachments {
		if a.Inline && !a.Referenced && m.HTML != "" {
			a.Inline = false // shown nowhere in the body: an attachment
		}
	}
}

// InlineHTML returns the HTML body with its references to inline parts
// (cid: URLs, and Content-Location references kept inert by the parser)
// pointing at url(a) — where the host stored the part. References to parts
// the mail does not have stay as they are; url returning "" leaves one as
// it is too. Everything else of the sanitised HTML is unchanged.
func (m *Message) InlineHTML(url func(a *Attachment) string) string {
	src := m.HTML
	if len(htmlRefs(src)) == 0 {
		return src
	}
	var out strings.Builder
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
		raw := string(z.Raw())
		tok := z.Token()
		changed := false
		for i, a := range tok.Attr {
			var r inlineRef
			key := a.Key
			switch {
			case (a.Key == "src" || a.Key == "background") && len(a.Val) > 4 && strings.EqualFold(strings.TrimSpace(a.Val)[:4], "cid:"):
				r.cid = strings.TrimSpace(a.Val)[4:]
			case a.Key == mime.InlineLocationAttr, a.Key == "data-remote-src":
				r.location, key = strings.TrimSpace(a.Val), "src"
			case a.Key == "data-remote-background":
				r.location, key = strings.TrimSpace(a.Val), "background"
			case a.Key == "style":
				style := a.Val
				for _, cid := range styleCIDs(style) {
					if att := m.findInline(inlineRef{cid: cid}); att != nil {
						if u := url(att); u != "" {
							style = strings.ReplaceAll(style, "cid:"+cid, u)
						}
					}
				}
				if style != a.Val {
					tok.Attr[i].Val, changed = style, true
				}
				continue
			default:
				continue
			}
			att := m.findInline(r)
			if att == nil {
				continue
			}
			if u := url(att); u != "" {
				tok.Attr[i].Key, tok.Attr[i].Val, changed = key, u, true
			}
		}
		if changed {
			out.WriteString(tok.String())
		} else {
			out.WriteString(raw)
		}
	}
}
