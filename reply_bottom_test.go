package mailsync

import (
	"strings"
	"testing"
)

// TestParseReplyHTMLBottomPosted: HTML-only replies whose answer comes
// after the quote (bottom posting) give the answer alone in Reply and
// ReplyHTML and the quote in Quoted; an interleaved reply (answers between
// quotes) stays whole, and a top-posted reply keeps its cut.
func TestParseReplyHTMLBottomPosted(t *testing.T) {
	const attr = "On Mon, 6 Nov 2023 at 09:00, Ana &lt;ana@example.com&gt; wrote:"
	for _, c := range []struct {
		name, html string
		// what an agent should read; empty wantQuoted: nothing cut
		reply, quoted []string // substrings Reply and ReplyHTML must hold, and Quoted
		notReply      []string // substrings neither Reply nor ReplyHTML may hold
		marker        string   // substring of both markers; "" for none
	}{
		{name: "thunderbird moz-cite-prefix then the answer",
			html: `<html><body><div class="moz-cite-prefix">` + attr + `<br></div><blockquote type="cite"><p>Can you send the invoice?</p></blockquote>` +
				`<p>Sure, it is attached.</p><p>Best,<br>Rui</p></body></html>`,
			reply: []string{"Sure, it is attached.", "Rui"}, quoted: []string{"Can you send the invoice?", "Ana"},
			notReply: []string{"invoice?", "wrote:"}, marker: "bottom_posted"},
		{name: "apple mail attribution div then blockquote cite",
			html:  `<div><div>` + attr + `</div><blockquote type="cite"><div>Can you send the invoice?</div></blockquote></div><div>Sure, it is attached.</div>`,
			reply: []string{"Sure, it is attached."}, quoted: []string{"Can you send the invoice?"},
			notReply: []string{"invoice?", "wrote:"}, marker: "bottom_posted"},
		{name: "plain paragraphs with quote prefixes",
			html: `<p>` + attr + `</p><p>&gt; Can you send the invoice?<br>&gt; Thanks</p>` +
				`<p>Sure, it is attached.</p><p>Rui</p>`,
			reply: []string{"Sure, it is attached.", "Rui"}, quoted: []string{"Can you send the invoice?"},
			notReply: []string{"invoice?", "wrote:"}, marker: "bottom_posted"},
		{name: "interleaved thunderbird answers stay whole",
			html: `<div class="moz-cite-prefix">` + attr + `<br></div><blockquote type="cite">Which version?</blockquote><p>5.2</p>` +
				`<blockquote type="cite">Since when?</blockquote><p>Monday.</p>`,
			reply: []string{"Which version?", "5.2", "Since when?", "Monday."}},
		{name: "interleaved plain prefixes stay whole",
			html:  `<p>` + attr + `</p><p>&gt; Which version?</p><p>5.2</p><p>&gt; Since when?</p><p>Monday.</p>`,
			reply: []string{"Which version?", "5.2", "Since when?", "Monday."}},
		{name: "top-posted thunderbird reply keeps its cut",
			html:  `<p>Sure, it is attached.</p><div class="moz-cite-prefix">` + attr + `<br></div><blockquote type="cite"><p>Can you send the invoice?</p></blockquote>`,
			reply: []string{"Sure, it is attached."}, quoted: []string{"Can you send the invoice?"},
			notReply: []string{"invoice?"}, marker: "moz-cite-prefix"},
		{name: "top-posted plain reply keeps its cut",
			html:  `<p>Sure, it is attached.</p><p>` + attr + `</p><p>&gt; Can you send the invoice?</p>`,
			reply: []string{"Sure, it is attached."}, quoted: []string{"Can you send the invoice?"},
			notReply: []string{"invoice?"}, marker: "on_wrote:en"},
	} {
		t.Run(c.name, func(t *testing.T) {
			raw := "From: rui@example.com\r\nSubject: Re: invoice\r\nContent-Type: text/html; charset=utf-8\r\n\r\n" + c.html + "\r\n"
			m, err := (&Parser{}).Parse(strings.NewReader(raw))
			if err != nil {
				t.Fatal(err)
			}
			defer m.Close()
			for _, s := range c.reply {
				if !strings.Contains(m.Reply, s) || !strings.Contains(m.ReplyHTML, s) {
					t.Errorf("%q missing:\nReply %q\nReplyHTML %q", s, m.Reply, m.ReplyHTML)
				}
			}
			for _, s := range c.notReply {
				if strings.Contains(m.Reply, s) || strings.Contains(m.ReplyHTML, s) {
					t.Errorf("%q kept:\nReply %q\nReplyHTML %q", s, m.Reply, m.ReplyHTML)
				}
			}
			for _, s := range c.quoted {
				if !strings.Contains(m.Quoted, s) {
					t.Errorf("Quoted %q lacks %q", m.Quoted, s)
				}
			}
			if c.marker == "" {
				if m.Reply != m.Text || m.ReplyHTML != m.HTML || m.ReplyMarker != "" || m.ReplyHTMLMarker != "" || m.Quoted != "" {
					t.Errorf("not whole: Reply %q marker %q ReplyHTML %q marker %q Quoted %q", m.Reply, m.ReplyMarker, m.ReplyHTML, m.ReplyHTMLMarker, m.Quoted)
				}
				return
			}
			if !strings.Contains(m.ReplyMarker, c.marker) || !strings.Contains(m.ReplyHTMLMarker, c.marker) {
				t.Errorf("ReplyMarker %q ReplyHTMLMarker %q, want %q in both", m.ReplyMarker, m.ReplyHTMLMarker, c.marker)
			}
		})
	}
}

// TestParseReplyHTMLBottomPostedAlternative: a Thunderbird bottom-posted
// reply with its text/plain alternative gives the answer in both Reply
// (from the text) and ReplyHTML.
func TestParseReplyHTMLBottomPostedAlternative(t *testing.T) {
	raw := "From: rui@example.com\r\nSubject: Re: invoice\r\nMIME-Version: 1.0\r\nContent-Type: multipart/alternative; boundary=b\r\n\r\n" +
		"--b\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nOn Mon, 6 Nov 2023 at 09:00, Ana <ana@example.com> wrote:\r\n> Can you send the invoice?\r\n\r\nSure, it is attached.\r\n" +
		"--b\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<div class=\"moz-cite-prefix\">On Mon, 6 Nov 2023 at 09:00, Ana &lt;ana@example.com&gt; wrote:<br></div>" +
		"<blockquote type=\"cite\"><p>Can you send the invoice?</p></blockquote><p>Sure, it is attached.</p>\r\n--b--\r\n"
	m, err := (&Parser{}).Parse(strings.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if m.Reply != "Sure, it is attached." || m.ReplyMarker != "on_wrote:en,bottom_posted" {
		t.Errorf("Reply %q marker %q", m.Reply, m.ReplyMarker)
	}
	if !strings.Contains(m.ReplyHTML, "Sure, it is attached.") || strings.Contains(m.ReplyHTML, "invoice?") ||
		m.ReplyHTMLMarker != "moz-cite-prefix,bottom_posted" {
		t.Errorf("ReplyHTML %q marker %q", m.ReplyHTML, m.ReplyHTMLMarker)
	}
}
