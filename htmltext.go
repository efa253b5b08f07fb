package mailsync

import (
	"strings"

	"golang.org/x/net/html"
)

// htmlToText renders HTML as plain text for HTML-only mail: paragraphs and
// line breaks kept, scripts, styles and the head dropped, whitespace folded.
func htmlToText(s string) string {
	z := html.NewTokenizer(strings.NewReader(s))
	var b strings.Builder
	skip := 0 // inside <script>, <style>, <head>, <title>
	newline := func(n int) {
		cur := b.String()
		trail := len(cur) - len(strings.TrimRight(cur, "\n"))
		for ; trail < n && b.Len() > 0; trail++ {
			b.WriteByte('\n')
		}
	}
	for {
		switch z.Next() {
		case html.ErrorToken:
			return tidyText(b.String())
		case html.TextToken:
			raw := string(z.Text()) // Text may be called once per token
			if skip > 0 {
				continue
			}
			text := strings.Join(strings.Fields(raw), " ")
			atBreak := b.Len() == 0 || strings.HasSuffix(b.String(), " ") || strings.HasSuffix(b.String(), "\n")
			if text == "" {
				if !atBreak {
					b.WriteByte(' ')
				}
				continue
			}
			if !atBreak && strings.ContainsRune(" \t\r\n", rune(raw[0])) {
				b.WriteByte(' ')
			}
			b.WriteString(text)
			if strings.ContainsRune(" \t\r\n", rune(raw[len(raw)-1])) {
				b.WriteByte(' ')
			}
		case html.StartTagToken, html.SelfClosingTagToken:
			name, _ := z.TagName()
			switch string(name) {
			case "script", "style", "head", "title":
				if t := z.Token(); t.Type == html.StartTagToken {
					skip++
				}
			case "br":
				trimSpace(&b)
				b.WriteByte('\n')
			case "p", "div", "table", "tr", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote", "pre", "ul", "ol", "hr":
				trimSpace(&b)
				newline(2)
			case "li":
				trimSpace(&b)
				newline(1)
				b.WriteString("- ")
			case "td", "th":
				if !strings.HasSuffix(b.String(), "\n") && b.Len() > 0 {
					b.WriteString("\t")
				}
			}
		case html.EndTagToken:
			name, _ := z.TagName()
			switch string(name) {
			case "script", "style", "head", "title":
				if skip > 0 {
					skip--
				}
			case "p", "div", "table", "tr", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote", "pre", "ul", "ol":
				trimSpace(&b)
				newline(1)
			}
		}
	}
}

func trimSpace(b *strings.Builder) {
	s := b.String()
	t := strings.TrimRight(s, " \t")
	if len(t) != len(s) {
		b.Reset()
		b.WriteString(t)
	}
}

// tidyText trims lines and collapses runs of blank lines.
func tidyText(s string) string {
	lines := strings.Split(s, "\n")
	out := make([]string, 0, len(lines))
	blank := 0
	for _, l := range lines {
		l = strings.TrimSpace(l)
		if l == "" {
			blank++
			if blank > 1 {
				continue
			}
		} else {
			blank = 0
		}
		out = append(out, l)
	}
	return strings.TrimSpace(strings.Join(out, "\n"))
}
