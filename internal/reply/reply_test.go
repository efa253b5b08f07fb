package reply

import (
	"strings"
	"testing"
)

func TestText(t *testing.T) {
	for _, c := range []struct {
		name, in, reply, marker, quoted, sig string
	}{
		{"plain", "Hello\nworld", "Hello\nworld", "", "", ""},
		{"empty", "", "", "", "", ""},
		{"on wrote wrapped over three lines", "Yes.\n\nOn Wed, Nov 1, 2023 at 9:00 AM A Very Long Name\n<someone@example.com>\nwrote:\n> q", "Yes.", "on_wrote:en", "On Wed, Nov 1, 2023 at 9:00 AM A Very Long Name\n<someone@example.com>\nwrote:\n> q", ""},
		{"pt-PT Apple header", "Sim.\n\nA 1/11/2023, às 09:00, Ana <a@example.pt> escreveu:\n\n> q", "Sim.", "on_wrote:pt", "", ""},
		{"interleaved answer kept whole", "Hi\n> q1\na1\n> q2\na2", "Hi\n> q1\na1\n> q2\na2", "", "", ""},
		{"quote only kept", "> q1\n> q2", "> q1\n> q2", "", "", ""},
		{"customer's quotation at the end kept", "The app says:\n> Error 500: try later", "The app says:\n> Error 500: try later", "", "", ""},
		{"customer's quotation at the start kept", "> Error 500\nThis is what I see.", "> Error 500\nThis is what I see.", "", "", ""},
		{"customer's quotation then a real quote", "Hi\n> Error 5\nsee above\n\nOn Mon, 1 Nov 2023 A <a@example.com> wrote:\n> q", "Hi\n> Error 5\nsee above", "on_wrote:en", "", ""},
		{"trailing quote without a header", "Restarted it, same.\n\n> Good morning,\n> the printer does not print\n>", "Restarted it, same.", "quote_trailing", "> Good morning,\n> the printer does not print\n>", ""},
		{"trailing quote introduced by a colon kept", "It still says:\n\n> Error 500\n> try later", "It still says:\n\n> Error 500\n> try later", "", "", ""},
		{"trailing quote after another quoted block kept", "Hi\n> Error 5\n\n> Error 6", "Hi\n> Error 5\n\n> Error 6", "", "", ""},
		{"trailing quote then a signature", "Thanks\n-- \nAnn\n\n> q1\n> q2", "Thanks", "quote_trailing,sig_dash_dash", "> q1\n> q2", "-- \nAnn"},
		{"quoted header block", "Hi\n\n> From: a\n> Sent: today\n> To: b\n>\n> q", "Hi", "quote_prefix", "", ""},
		{"forward without note kept", "-----Original Message-----\nFrom: a\n\nbody", "-----Original Message-----\nFrom: a\n\nbody", "", "", ""},
		{"dash dash signature", "Thanks\n-- \nAnn\nACME", "Thanks", "sig_dash_dash", "", "-- \nAnn\nACME"},
		{"dash dash too far from the end kept", "a\n-- \n1\n2\n3\n4\n5\n6\n7\n8\n9\n10\n11\n12\n13\n14", "a\n-- \n1\n2\n3\n4\n5\n6\n7\n8\n9\n10\n11\n12\n13\n14", "", "", ""},
		{"dash dash first line kept", "-- \nAnn", "-- \nAnn", "", "", ""},
		{"header block needs two more fields", "Hi\nFrom: me\nwhat else", "Hi\nFrom: me\nwhat else", "", "", ""},
		{"outlook pt block", "Olá\n\nDe: Suporte\nEnviado: hoje\nPara: mim\nAssunto: x\n\nq", "Olá", "outlook_header_block:pt", "", ""},
		{"german on wrote", "Ja\n\nAm 01.11.2023 um 09:00 schrieb Hans <h@example.de>:\n> q", "Ja", "on_wrote:de", "", ""},
		{"japanese on wrote", "はい\n\n2023年11月1日(水) 9:00 山田 <y@example.jp>:\n> q", "はい", "on_wrote:ja", "", ""},
		{"bottom posted", "On Mon, A wrote:\n> q\nanswer", "answer", "on_wrote:en,bottom_posted", "", ""},
		{"on wrote in prose kept", "Hi\nOn the checkout page the site wrote:\nDeclined\nHelp?", "Hi\nOn the checkout page the site wrote:\nDeclined\nHelp?", "", "", ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := Text(c.in)
			if r.Reply != c.reply || r.Marker != c.marker {
				t.Errorf("Text(%q) = reply %q marker %q, want %q %q", c.in, r.Reply, r.Marker, c.reply, c.marker)
			}
			if c.quoted != "" && r.Quoted != c.quoted {
				t.Errorf("quoted %q, want %q", r.Quoted, c.quoted)
			}
			if c.sig != "" && r.Signature != c.sig {
				t.Errorf("signature %q, want %q", r.Signature, c.sig)
			}
			if strings.TrimSpace(c.in) != "" && strings.TrimSpace(r.Reply) == "" {
				t.Error("empty reply")
			}
		})
	}
}

func TestHTML(t *testing.T) {
	for _, c := range []struct {
		name, in, reply, marker string
	}{
		{"none", `<div>Hi</div>`, `<div>Hi</div>`, ""},
		{"gmail closes open elements", `<div dir="ltr"><p>Hi</p><div class="gmail_quote">On x wrote:<blockquote class="gmail_quote">q</blockquote></div></div>`, `<div dir="ltr"><p>Hi</p></div>`, "gmail_quote"},
		{"outlook web takes the rule with it", `<div>Hi</div><div id="appendonsend"></div><hr style="display: inline-block; width: 98%"><div id="divRplyFwdMsg">From: x</div>`, `<div>Hi</div>`, "outlook_appendonsend"},
		{"outlook web rule then divRplyFwdMsg", `<div>Hi</div><hr><div id="divRplyFwdMsg">From: x</div>`, `<div>Hi</div>`, "outlook_divRplyFwdMsg"},
		{"interleaved cite kept whole", `<div>Hi</div><blockquote type="cite">q1</blockquote><div>a1</div><blockquote type="cite">q2</blockquote>`, `<div>Hi</div><blockquote type="cite">q1</blockquote><div>a1</div><blockquote type="cite">q2</blockquote>`, ""},
		{"quote with no new text before kept", `<div class="gmail_quote">fwd</div>`, `<div class="gmail_quote">fwd</div>`, ""},
		{"signature then quote", `<div>Hi<br><span class="gmail_signature_prefix">-- </span><br><div class="gmail_signature">Ann</div></div><div class="gmail_quote">q</div>`, `<div>Hi<br></div>`, "gmail_quote,gmail_signature"},
		{"text after the signature keeps it", `<div>Hi</div><div class="moz-signature">Ann</div><div>PS: more</div>`, `<div>Hi</div><div class="moz-signature">Ann</div><div>PS: more</div>`, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := HTML(c.in)
			if r.Reply != c.reply || r.Marker != c.marker {
				t.Errorf("HTML(%q)\n = %q marker %q\nwant %q %q", c.in, r.Reply, r.Marker, c.reply, c.marker)
			}
		})
	}
}

func FuzzText(f *testing.F) {
	f.Add("Hi\n\nOn x wrote:\n> q\n-- \nsig")
	f.Add("<div>Hi</div><div class=\"gmail_quote\">q</div>")
	f.Add("<div>Hi<br><br><div>-----Original Message-----<br>From: a</div></div>")
	f.Add("<pre>Yes\n\nOn Mon, 1 Nov 2023 A <a@b.c> wrote:\n&gt; q</pre>")
	f.Fuzz(func(t *testing.T, s string) {
		if r := Text(s); strings.TrimSpace(s) != "" && strings.TrimSpace(r.Reply) == "" {
			t.Errorf("empty reply for %q", s)
		}
		HTML(s)
		if r := HTMLByText(s, Text(s).Marker); r.Marker != "" && (len(r.Reply) == 0 || len(r.Quoted)+len(r.Signature) > len(s)) {
			t.Errorf("HTMLByText(%q) = %+v", s, r)
		}
	})
}

func BenchmarkText(b *testing.B) {
	s := strings.Repeat("Some line of a long mail body, with words: and more.\n", 2000) + "\nOn Mon, A wrote:\n> q\n"
	b.SetBytes(int64(len(s)))
	for b.Loop() {
		Text(s)
	}
}

func TestHTMLInterleaved(t *testing.T) {
	for name, in := range map[string]string{
		"gmail inline answers": `<div>Hi, answers below.</div><div class="gmail_quote"><div class="gmail_attr">On Mon, 1 Nov 2023 A wrote:</div><blockquote class="gmail_quote">q1</blockquote><div>a1</div><blockquote class="gmail_quote">q2</blockquote></div>`,
		"gmail text below":     `<div>Hi</div><div class="gmail_quote">On 1 Nov 2023 A wrote:<blockquote class="gmail_quote">q1</blockquote></div><div>more below</div>`,
		"cite after an hr":     `<div>Hi</div><hr><blockquote type="cite">q1</blockquote><div>a1</div>`,
	} {
		if r := HTML(in); r.Reply != in || r.Marker != "" {
			t.Errorf("%s: HTML = %q marker %q, want it whole", name, r.Reply, r.Marker)
		}
	}
	// The header text before the first blockquote is no answer.
	in := `<div>Hi</div><div class="gmail_quote">On 1 Nov 2023 A wrote:<br><blockquote class="gmail_quote">q1</blockquote></div>`
	if r := HTML(in); r.Reply != `<div>Hi</div>` {
		t.Errorf("old Gmail header: %q", r.Reply)
	}
}
