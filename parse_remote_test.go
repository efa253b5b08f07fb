package mailsync

import (
	"context"
	"io"
	"slices"
	"strings"
	"testing"

	"golang.org/x/net/html"

	"github.com/mailsync/mailsync/internal/mime"
)

// remoteHTML refers to remote images every way sanitised HTML can load one,
// plus an inline cid: image and things that must not load at all.
const remoteHTML = "From: a@example.com\r\nContent-Type: text/html; charset=utf-8\r\n\r\n" +
	`<p>Hi</p><img src="https://track.example/pixel.gif?u=1" alt="">` +
	`<img src="cid:logo@x" alt="Logo">` +
	`<img src="//cdn.example/scheme-relative.png">` +
	`<img src="/relative/own-site.png">` +
	`<img srcset="https://img.example/a-1x.png 1x, https://img.example/a-2x.png 2x">` +
	`<table background="http://bg.example/table.jpg"><tr><td background="https://bg.example/cell.jpg" style="color: red; background-image: url('https://bg.example/css.png')">x</td>` +
	`<td style="background-image: url(cid:bg@x)">y</td></tr></table>` +
	`<a href="https://example.com/link">a link is not loaded</a>`

// TestParseRemoteImages: by default remote images are blocked (the
// attribute renamed data-remote-…) and listed in RemoteContent; cid:
// images stay; relative URLs go; links are not remote content (issue 10).
func TestParseRemoteImages(t *testing.T) {
	wantURLs := []string{
		"https://track.example/pixel.gif?u=1", "//cdn.example/scheme-relative.png",
		"https://img.example/a-1x.png", "https://img.example/a-2x.png",
		"http://bg.example/table.jpg", "https://bg.example/cell.jpg", "https://bg.example/css.png",
	}
	m := mustParse(t, remoteHTML)
	if !slices.Equal(m.RemoteContent, wantURLs) {
		t.Errorf("RemoteContent =\n%q\nwant\n%q", m.RemoteContent, wantURLs)
	}
	for _, bad := range []string{
		` src="https://track`, ` src="//cdn`, ` srcset="`, ` background="`, ` style="color: red; background-image`,
		"own-site.png",
	} {
		if strings.Contains(m.HTML, bad) {
			t.Errorf("blocked HTML keeps %q: %s", bad, m.HTML)
		}
	}
	for _, good := range []string{
		`data-remote-src="https://track.example/pixel.gif?u=1"`, `data-remote-src="//cdn.example/scheme-relative.png"`,
		`data-remote-srcset="https://img.example/a-1x.png 1x, https://img.example/a-2x.png 2x"`,
		`data-remote-background="http://bg.example/table.jpg"`, `data-remote-background="https://bg.example/cell.jpg"`,
		`style="color: red"`, `data-remote-style="color: red; background-image: url(&#39;https://bg.example/css.png&#39;)"`,
		`src="cid:logo@x"`, `style="background-image: url(cid:bg@x)"`, `href="https://example.com/link"`,
	} {
		if !strings.Contains(m.HTML, good) {
			t.Errorf("blocked HTML lacks %q: %s", good, m.HTML)
		}
	}

	// Allowed: the same URLs are listed and load.
	p := &Parser{AllowRemoteImages: true}
	m, err := parseWith(t, p, []byte(remoteHTML))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(m.RemoteContent, wantURLs) {
		t.Errorf("allowed: RemoteContent = %q", m.RemoteContent)
	}
	for _, good := range []string{
		`src="https://track.example/pixel.gif?u=1"`, `srcset="https://img.example/a-1x.png 1x, https://img.example/a-2x.png 2x"`,
		`background="http://bg.example/table.jpg"`, `background-image: url(&#39;https://bg.example/css.png&#39;)`,
	} {
		if !strings.Contains(m.HTML, good) {
			t.Errorf("allowed HTML lacks %q: %s", good, m.HTML)
		}
	}
	if strings.Contains(m.HTML, "data-remote-") || strings.Contains(m.HTML, "own-site.png") {
		t.Errorf("allowed HTML: %s", m.HTML)
	}
}

// TestParseHTMLStaysInBox: CSS and attributes that would move a mail out of
// the box it is shown in (negative margins and indents, huge sizes and
// offsets, viewport units, float, align=left on an image) are dropped;
// ordinary layout stays (issue 10).
func TestParseHTMLStaysInBox(t *testing.T) {
	bad := []string{
		"margin-top: -500px", "margin: 0 0 0 -9999px", "margin-left: -50%", "text-indent: -9999px",
		"width: 100000px", "height: 5000px", "min-height: 300em", "width: 100vw", "height: 100vh",
		"font-size: 900px", "font: bold 500px arial", "line-height: 99999px", "padding: 4000px",
		"float: left", "float: right", "clear: both", "vertical-align: 9000px", "letter-spacing: -400px",
		"border: 3000px solid red", "border-width: 900px", "max-width: 150%", "width: calc(100vw + 10px)",
		"margin: \\2d 500px",
	}
	good := []string{
		"margin: 0 auto", "margin: 10px 0", "padding: 4px 8px", "width: 600px", "width: 100%", "max-width: 600px",
		"font-size: 14px", "line-height: 1.5", "font: bold 12px arial", "text-indent: 2em", "border: 1px solid #ccc",
		"letter-spacing: -0.5px", "vertical-align: top", "height: 0",
	}
	var b strings.Builder
	b.WriteString("From: a@example.com\r\nContent-Type: text/html; charset=utf-8\r\n\r\n")
	for _, s := range append(slices.Clone(bad), good...) {
		b.WriteString(`<div style="` + s + `">x</div>`)
	}
	b.WriteString(`<img src="cid:a@x" align="left" width="99999" height="50"><table align="right" width="5000" cellpadding="900"><tr><td align="left" width="100%">c</td></tr></table>`)
	m := mustParse(t, b.String())
	for _, s := range bad {
		if strings.Contains(m.HTML, `style="`+s+`"`) {
			t.Errorf("kept %q: %s", s, m.HTML)
		}
	}
	for _, s := range []string{"-500px", "-9999px", "100vw", "float", "clear", "9000px", "3000px", `align="right"`, `width="99999"`, `width="5000"`, `cellpadding="900"`, `<img src="cid:a@x" align="left"`} {
		if strings.Contains(m.HTML, s) {
			t.Errorf("HTML keeps %q: %s", s, m.HTML)
		}
	}
	for _, s := range good {
		if !strings.Contains(m.HTML, `style="`+s+`"`) {
			t.Errorf("lost %q: %s", s, m.HTML)
		}
	}
	for _, s := range []string{`height="50"`, `<td align="left" width="100%">`} {
		if !strings.Contains(m.HTML, s) {
			t.Errorf("lost %q: %s", s, m.HTML)
		}
	}
}

// remoteLoad returns the first attribute of h that would load a remote
// resource when shown ("" if none): a src, srcset or background that is not
// cid:, or a style with a url() that is not cid:.
func remoteLoad(h string) string {
	z := html.NewTokenizer(strings.NewReader(h))
	for {
		switch z.Next() {
		case html.ErrorToken:
			return ""
		case html.StartTagToken, html.SelfClosingTagToken:
			for _, a := range z.Token().Attr {
				v := strings.ToLower(strings.TrimSpace(a.Val))
				switch a.Key {
				case "src", "background":
					if !strings.HasPrefix(v, "cid:") {
						return a.Key + "=" + a.Val
					}
				case "srcset":
					for _, cand := range strings.Split(v, ",") {
						if f := strings.Fields(cand); len(f) > 0 && !strings.HasPrefix(f[0], "cid:") {
							return a.Key + "=" + a.Val
						}
					}
				case "style":
					if strings.Contains(strings.ReplaceAll(v, "url(cid:", ""), "url(") || strings.Contains(v, `\`) {
						return a.Key + "=" + a.Val
					}
				}
			}
		}
	}
}

// TestParseCorpusBlocksRemoteImages: no corpus mail's HTML loads anything
// remote by default.
func TestParseCorpusBlocksRemoteImages(t *testing.T) {
	if got := remoteLoad(`<img src="https://x">`); got == "" {
		t.Fatal("remoteLoad misses a remote image")
	}
	for _, name := range corpusFiles(t) {
		m, err := parseCorpus(t, name)
		if err != nil {
			continue
		}
		if got := remoteLoad(m.HTML); got != "" {
			t.Errorf("%s: HTML loads %q", name, got)
		}
	}
}

// FuzzParseHTMLRemote: whatever HTML a mail holds, the sanitised and
// rewritten HTML loads nothing remote, and every remote URL it blocked is
// listed.
//
//	go test -run '^$' -fuzz '^FuzzParseHTMLRemote$' -fuzztime 30s .
func FuzzParseHTMLRemote(f *testing.F) {
	f.Add(remoteHTML[strings.Index(remoteHTML, "\r\n\r\n")+4:])
	f.Add(`<img SRC="HTTPS://x/y" srcset=" https://a/b 1x , cid:c 2x"><td BACKGROUND='//h/i' style="BACKGROUND-IMAGE: URL( 'https://u/v' ); color: red">`)
	f.Add(`<div style="background-image: url(h\74tps://e/x); margin: -1px">`)
	f.Fuzz(func(t *testing.T, h string) {
		rw := &mime.RemoteRewriter{}
		out := rw.Rewrite(mime.DefaultHTMLPolicy().Sanitize(h))
		if got := remoteLoad(out); got != "" {
			t.Errorf("loads %q: %s", got, out)
		}
		z := html.NewTokenizer(strings.NewReader(out))
		for tt := z.Next(); tt != html.ErrorToken; tt = z.Next() {
			for _, a := range z.Token().Attr {
				if a.Key == "data-remote-src" && !slices.Contains(rw.URLs, strings.TrimSpace(a.Val)) {
					t.Errorf("blocked %q not listed in %q", a.Val, rw.URLs)
				}
			}
		}
	})
}

func TestSyncRemoteImagesOption(t *testing.T) {
	raw := "From: a@b.pt\r\nTo: c@d.pt\r\nSubject: pixel\r\nMessage-ID: <px@b.pt>\r\nMIME-Version: 1.0\r\nContent-Type: text/html\r\n\r\n<p>Hi<img src=\"https://tracker.example/p.gif\"></p>\r\n"
	for _, allow := range []bool{false, true} {
		c := &oneMessage{raw: raw}
		sink := NewMemorySink()
		m := Mapping{TicketType: "incident", Fields: []FieldMapping{{Ticket: "description_html", Source: FieldBodyHTML}}}
		if _, err := Sync(context.Background(), c, m, sink, WithRemoteImages(allow)); err != nil {
			t.Fatal(err)
		}
		html := sink.FieldValues("description_html")
		if len(html) != 1 {
			t.Fatalf("%d tickets", len(html))
		}
		loads := strings.Contains(html[0], ` src="https://tracker.example/p.gif"`)
		if loads != allow {
			t.Fatalf("allow=%v: html %q", allow, html[0])
		}
	}
}

// oneMessage is a Connector with one message.
type oneMessage struct{ raw string }

func (c *oneMessage) Connection() Connection {
	return Connection{Name: "one", Enabled: true, User: "u", Server: "h", Protocol: IMAP, ConnectedWith: []string{"incident"}}
}
func (c *oneMessage) Close() error { return nil }
func (c *oneMessage) List(context.Context, Cursor) (*Listing, error) {
	return &Listing{Messages: []MessageRef{{Key: "1", Size: int64(len(c.raw))}}}, nil
}
func (c *oneMessage) Fetch(ctx context.Context, refs []MessageRef, fn func(MessageRef, io.Reader) error) error {
	for _, r := range refs {
		if err := fn(r, strings.NewReader(c.raw)); err != nil {
			return err
		}
	}
	return nil
}
func (c *oneMessage) Ack(context.Context, []MessageRef, PostAction) error { return nil }
