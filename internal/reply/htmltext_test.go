package reply

import (
	"strings"
	"testing"
)

// HTMLByText cuts HTML whose quote is marked only by its text at the
// element where the marked line starts, closing what is open there; when
// unsure it keeps the HTML whole.
func TestHTMLByText(t *testing.T) {
	for _, c := range []struct {
		name, in, confirm, reply, marker string
	}{
		{"aol original message in a div",
			`<font size="2">Hello<br><br><div style="color: black">-----Original Message-----<br>From: bob<br>Subject: Test<br><pre>Hi</pre></div></font>`,
			"original_message", `<font size="2">Hello<br><br></font>`, "text:original_message"},
		{"hotmail quoted lines after a div",
			`<div dir="ltr">Hello<br><br><div><div id="x"></div>&gt; Subject: Test<br>&gt; From: bob@example.com<br>&gt; Date: Mon, 2 Apr 2012<br>&gt; <br>&gt; Hi<br></div></div>`,
			"quote_prefix", `<div dir="ltr">Hello<br><br><div><div id="x"></div></div></div>`, "text:quote_prefix"},
		{"outlook block in a bold paragraph",
			`<div><p><span>Hello</span></p><p><b><span>From:</span></b><span> a@example.com<br><b>Sent:</b> March 9<br><b>To:</b> Dan<br><b>Subject:</b> Loop</span></p><p>Hi</p></div>`,
			"outlook_header_block:en", `<div><p><span>Hello</span></p></div>`, "text:outlook_header_block:en"},
		{"pt on wrote before a plain blockquote",
			`<p>Oi, ainda n&atilde;o.</p><p>Em qua., 1 de nov. de 2023 &agrave;s 16:05, Suporte &lt;s@example.com.br&gt; escreveu:</p><blockquote>Ol&aacute;</blockquote>`,
			"on_wrote:pt", `<p>Oi, ainda n&atilde;o.</p>`, "text:on_wrote:pt"},
		{"text pre-wrap div from a text part",
			"<div style=\"white-space: pre-wrap\">Sim, pode fechar.\n\nEm 1/11/2023, às 09:00, Ana &lt;a@example.pt&gt; escreveu:\n\n&gt; Podemos fechar?</div>",
			"on_wrote:pt", `<div style="white-space: pre-wrap">Sim, pode fechar.` + "\n\n</div>", "text:on_wrote:pt"},
		{"dash dash signature confirmed",
			`<div>Thanks</div><div>-- </div><div>Ann</div>`, "sig_dash_dash", `<div>Thanks</div>`, "text:sig_dash_dash"},
		{"the text's marker differs: kept whole",
			`<div>Hello</div><div>-----Original Message-----</div><div>From: bob</div>`, "on_wrote:en",
			`<div>Hello</div><div>-----Original Message-----</div><div>From: bob</div>`, ""},
		{"no text marker: kept whole", `<div>Hello</div><div>-----Original Message-----</div>`, "",
			`<div>Hello</div><div>-----Original Message-----</div>`, ""},
		{"interleaved answers in plain blockquotes: kept whole",
			`<div>Below.</div><div>On Wed, Nov 1, 2023 Support &lt;s@example.com&gt; wrote:</div><blockquote>Version?</blockquote><div>5.2</div><blockquote>Always?</blockquote><div>No.</div>`,
			"on_wrote:en",
			`<div>Below.</div><div>On Wed, Nov 1, 2023 Support &lt;s@example.com&gt; wrote:</div><blockquote>Version?</blockquote><div>5.2</div><blockquote>Always?</blockquote><div>No.</div>`, ""},
		{"the customer's own quotation: kept whole",
			`<div>It says:<br>&gt; Error 402<br>&gt; Try later<br>Help?</div>`, "quote_prefix",
			`<div>It says:<br>&gt; Error 402<br>&gt; Try later<br>Help?</div>`, ""},
		{"quote first: kept whole",
			`<div>-----Original Message-----<br>From: bob</div><div>Hello</div>`, "original_message",
			`<div>-----Original Message-----<br>From: bob</div><div>Hello</div>`, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := HTMLByText(c.in, c.confirm)
			if r.Reply != c.reply || r.Marker != c.marker {
				t.Errorf("HTMLByText(%q, %q)\n = %q marker %q\nwant %q %q", c.in, c.confirm, r.Reply, r.Marker, c.reply, c.marker)
			}
			if c.marker != "" && len(r.Quoted)+len(r.Signature) == 0 {
				t.Errorf("nothing cut off: %+v", r)
			}
		})
	}
}

func BenchmarkHTMLByText(b *testing.B) {
	s := strings.Repeat("<div>", 20000) + strings.Repeat("<p>Some line of a long mail body, with words: and more.<br>x</p>\n", 20000) +
		"<div>On Mon, 1 Nov 2023 A &lt;a@example.com&gt; wrote:</div><blockquote>q</blockquote>"
	b.SetBytes(int64(len(s)))
	for b.Loop() {
		HTMLByText(s, "on_wrote:en")
	}
}
