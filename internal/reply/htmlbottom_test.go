package reply

import (
	"strings"
	"testing"
	"time"
)

const bottomAttr = "On Mon, 6 Nov 2023 at 09:00, Ana &lt;ana@example.com&gt; wrote:"

// TestHTMLBottomPosted: HTML whose quote mark comes first (after nothing,
// or after its "On … wrote:" header only) and whose answer follows the
// quote, quoted nowhere after, gives the answer as Reply (the elements open
// around it reopened, quote marks bare) and the quote as Quoted. An answer
// between quotes, or new text before the quote too, keeps it whole.
func TestHTMLBottomPosted(t *testing.T) {
	for _, c := range []struct {
		name, in, reply, quoted, marker string
	}{
		{"thunderbird",
			`<div class="moz-cite-prefix">` + bottomAttr + `<br></div><blockquote type="cite"><p>Invoice?</p></blockquote><p>Attached.</p><p>Rui</p>`,
			`<p>Attached.</p><p>Rui</p>`,
			`<div class="moz-cite-prefix">` + bottomAttr + `<br></div><blockquote type="cite"><p>Invoice?</p></blockquote>`,
			"moz-cite-prefix,bottom_posted"},
		{"thunderbird answer as bare text after a br",
			`<div class="moz-cite-prefix">` + bottomAttr + `<br></div><blockquote type="cite">Invoice?</blockquote><br>Attached.`,
			`<br>Attached.`,
			`<div class="moz-cite-prefix">` + bottomAttr + `<br></div><blockquote type="cite">Invoice?</blockquote>`,
			"moz-cite-prefix,bottom_posted"},
		{"apple mail header then cite, answer in the outer div",
			`<div dir="ltr"><div>` + bottomAttr + `</div><blockquote type="cite"><div>Invoice?</div></blockquote><div>Attached.</div></div>`,
			`<div dir="ltr"><div>Attached.</div></div>`,
			`<div dir="ltr"><div>` + bottomAttr + `</div><blockquote type="cite"><div>Invoice?</div></blockquote>`,
			"blockquote_cite,bottom_posted"},
		{"gmail answer inside the quote container: the mark reopened bare",
			`<div dir="ltr"><br><div class="gmail_quote"><div class="gmail_attr">` + bottomAttr + `</div><blockquote class="gmail_quote">Invoice?</blockquote><div>Attached.</div></div></div>`,
			`<div dir="ltr"><div><div>Attached.</div></div></div>`,
			`<div dir="ltr"><br><div class="gmail_quote"><div class="gmail_attr">` + bottomAttr + `</div><blockquote class="gmail_quote">Invoice?</blockquote>`,
			"gmail_quote,bottom_posted"},
		{"interleaved: whole",
			`<div class="moz-cite-prefix">` + bottomAttr + `</div><blockquote type="cite">Version?</blockquote><p>5.2</p><blockquote type="cite">Since?</blockquote><p>Monday.</p>`,
			`<div class="moz-cite-prefix">` + bottomAttr + `</div><blockquote type="cite">Version?</blockquote><p>5.2</p><blockquote type="cite">Since?</blockquote><p>Monday.</p>`,
			"", ""},
		{"answer then a quote again with no text after: whole",
			`<blockquote type="cite">Version?</blockquote><p>5.2</p><blockquote type="cite">Since?</blockquote>`,
			`<blockquote type="cite">Version?</blockquote><p>5.2</p><blockquote type="cite">Since?</blockquote>`,
			"", ""},
		{"answer then another mark: whole",
			`<blockquote type="cite">Version?</blockquote><p>5.2</p><div class="gmail_quote">Older</div>`,
			`<blockquote type="cite">Version?</blockquote><p>5.2</p><div class="gmail_quote">Older</div>`,
			"", ""},
		{"new text before and after the quote: whole",
			`<p>Hi Ana,</p><blockquote type="cite">Version?</blockquote><p>5.2</p>`,
			`<p>Hi Ana,</p><blockquote type="cite">Version?</blockquote><p>5.2</p>`,
			"", ""},
		{"quote with nothing after: whole",
			`<div class="moz-cite-prefix">` + bottomAttr + `</div><blockquote type="cite">Version?</blockquote><p> </p>`,
			`<div class="moz-cite-prefix">` + bottomAttr + `</div><blockquote type="cite">Version?</blockquote><p> </p>`,
			"", ""},
		{"top posted: cut as before",
			`<p>Attached.</p><div class="moz-cite-prefix">` + bottomAttr + `</div><blockquote type="cite">Invoice?</blockquote>`,
			`<p>Attached.</p>`,
			`<div class="moz-cite-prefix">` + bottomAttr + `</div><blockquote type="cite">Invoice?</blockquote>`,
			"moz-cite-prefix"},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := HTML(c.in)
			if r.Reply != c.reply || r.Quoted != c.quoted || r.Marker != c.marker {
				t.Errorf("HTML(%q)\n = reply %q\n   quoted %q\n   marker %q\nwant %q\n   %q\n   %q", c.in, r.Reply, r.Quoted, r.Marker, c.reply, c.quoted, c.marker)
			}
			if c.marker == "" && !r.Refused {
				t.Error("kept whole but not Refused: the text rendering would be cut")
			}
		})
	}
}

// TestHTMLByTextBottomPosted: HTML with no quote mark whose text rendering
// is bottom-posted ("On … wrote:", "> " lines, then the answer) is cut
// after the quote when the text's marker confirms it; an interleaved
// rendering or a marker that differs keeps it whole.
func TestHTMLByTextBottomPosted(t *testing.T) {
	for _, c := range []struct {
		name, in, confirm, reply, quoted, marker string
	}{
		{"paragraphs",
			`<p>` + bottomAttr + `</p><p>&gt; Invoice?<br>&gt; Thanks</p><p>Attached.</p><p>Rui</p>`,
			"on_wrote:en,bottom_posted",
			`<p>Attached.</p><p>Rui</p>`,
			`<p>` + bottomAttr + `</p><p>&gt; Invoice?<br>&gt; Thanks</p>`,
			"text:on_wrote:en,text:bottom_posted"},
		{"answer inside the quote's div after a br",
			`<div dir="ltr">` + bottomAttr + `<br>&gt; Invoice?<br><br>Attached.<br></div>`,
			"on_wrote:en,bottom_posted",
			`<div dir="ltr">Attached.<br></div>`,
			`<div dir="ltr">` + bottomAttr + `<br>&gt; Invoice?<br><br>`,
			"text:on_wrote:en,text:bottom_posted"},
		{"plain blockquote",
			`<div>` + bottomAttr + `</div><blockquote>Invoice?</blockquote><div>Attached.</div>`,
			"on_wrote:en,bottom_posted",
			`<div>Attached.</div>`,
			`<div>` + bottomAttr + `</div><blockquote>Invoice?</blockquote>`,
			"text:on_wrote:en,text:bottom_posted"},
		{"interleaved: whole",
			`<p>` + bottomAttr + `</p><p>&gt; Version?</p><p>5.2</p><p>&gt; Since?</p><p>Monday.</p>`,
			"on_wrote:en,bottom_posted",
			`<p>` + bottomAttr + `</p><p>&gt; Version?</p><p>5.2</p><p>&gt; Since?</p><p>Monday.</p>`,
			"", ""},
		{"the text's marker differs: whole",
			`<p>` + bottomAttr + `</p><p>&gt; Invoice?</p><p>Attached.</p>`,
			"original_message,bottom_posted",
			`<p>` + bottomAttr + `</p><p>&gt; Invoice?</p><p>Attached.</p>`,
			"", ""},
		{"the text is bottom-posted, the HTML's rendering is not: whole",
			`<p>Hi.</p><p>` + bottomAttr + `</p><p>&gt; Invoice?</p><p>Attached.</p>`,
			"on_wrote:en,bottom_posted",
			`<p>Hi.</p><p>` + bottomAttr + `</p><p>&gt; Invoice?</p><p>Attached.</p>`,
			"", ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := HTMLByText(c.in, c.confirm)
			if r.Reply != c.reply || r.Quoted != c.quoted || r.Marker != c.marker {
				t.Errorf("HTMLByText(%q, %q)\n = reply %q\n   quoted %q\n   marker %q\nwant %q\n   %q\n   %q", c.in, c.confirm, r.Reply, r.Quoted, r.Marker, c.reply, c.quoted, c.marker)
			}
		})
	}
}

// TestHostileBottomPostedIsLinear: the bottom-posting rules stay linear on
// what a hostile mail can send: thousands of nested quotes before the
// answer, the answer deep inside thousands of open elements (all
// reopened), and a hundred thousand alternating quotes and answers.
func TestHostileBottomPostedIsLinear(t *testing.T) {
	limit := time.Second
	if raceEnabled {
		limit = 15 * time.Second
	}
	const alt = 100000
	for _, c := range []struct {
		name   string
		run    func() HTMLResult
		marker string
	}{
		{"nested cite quotes", func() HTMLResult {
			return HTML(`<div class="moz-cite-prefix">` + bottomAttr + `</div>` + strings.Repeat(`<blockquote type="cite">`, 10000) +
				"q" + strings.Repeat("</blockquote>", 10000) + "<p>answer</p>")
		}, "moz-cite-prefix,bottom_posted"},
		{"answer deep in open elements", func() HTMLResult {
			return HTML(strings.Repeat(`<div class="x">`, 100000) + `<blockquote type="cite">q</blockquote>` +
				strings.Repeat("</b>", 100000) + "<p>answer</p>")
		}, "blockquote_cite,bottom_posted"},
		{"alternating cite quotes and answers", func() HTMLResult {
			return HTML(`<div class="moz-cite-prefix">` + bottomAttr + `</div>` +
				strings.Repeat(`<blockquote type="cite">q</blockquote><p>a</p>`, alt))
		}, ""},
		{"alternating end tags after the quote", func() HTMLResult {
			return HTML(`<blockquote type="cite">q</blockquote>` + strings.Repeat("<i></i>", alt) + "<p>answer</p>")
		}, "blockquote_cite,bottom_posted"},
		{"nested plain quotes by text", func() HTMLResult {
			return HTMLByText(`<div>`+bottomAttr+`</div>`+strings.Repeat("<blockquote>", 10000)+"q<br>q"+
				strings.Repeat("</blockquote>", 10000)+"<p>answer</p>", "on_wrote:en,bottom_posted")
		}, "text:on_wrote:en,text:bottom_posted"},
		{"answer deep in open elements by text", func() HTMLResult {
			return HTMLByText(`<p>`+bottomAttr+`</p><p>&gt; q</p>`+strings.Repeat("<span>", 100000)+"answer",
				"on_wrote:en,bottom_posted")
		}, "text:on_wrote:en,text:bottom_posted"},
		{"alternating prefixed quotes and answers by text", func() HTMLResult {
			return HTMLByText(`<p>`+bottomAttr+`</p>`+strings.Repeat("<p>&gt; q</p><p>a</p>", alt), "on_wrote:en,bottom_posted")
		}, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			start := time.Now()
			r := c.run()
			if took := time.Since(start); took > limit {
				t.Errorf("took %v", took)
			}
			if r.Marker != c.marker {
				t.Errorf("marker %q, want %q", r.Marker, c.marker)
			}
			if r.Reply == "" {
				t.Error("empty reply")
			}
		})
	}
}
