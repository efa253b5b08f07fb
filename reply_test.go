package mailsync

import (
	"bytes"
	"strings"
	"testing"
)

// TestParseReplySegments: a Gmail reply parsed gives the new text in Reply
// and ReplyHTML, the quote in Quoted and the signature in SignatureText,
// all readable as mapping source fields; Text and HTML stay whole.
func TestParseReplySegments(t *testing.T) {
	raw := "From: a@example.com\r\nSubject: Re: x\r\nMIME-Version: 1.0\r\nContent-Type: multipart/alternative; boundary=b\r\n\r\n" +
		"--b\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nNew words here.\r\n\r\n-- \r\nAnn\r\n\r\nOn Wed, Nov 1, 2023 at 9:00 AM Support <s@example.com>\r\nwrote:\r\n\r\n> Old text.\r\n" +
		"--b\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<div dir=\"ltr\">New words here.<br><span class=\"gmail_signature_prefix\">-- </span><br><div class=\"gmail_signature\">Ann</div></div><br>" +
		"<div class=\"gmail_quote\"><div class=\"gmail_attr\">On Wed, Nov 1, 2023 at 9:00 AM Support wrote:</div><blockquote class=\"gmail_quote\">Old text.</blockquote></div>\r\n--b--\r\n"
	m, err := (&Parser{}).Parse(strings.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if m.Reply != "New words here." || m.ReplyMarker != "on_wrote:en,sig_dash_dash" {
		t.Errorf("Reply %q marker %q", m.Reply, m.ReplyMarker)
	}
	if !strings.Contains(m.Quoted, "Old text.") || strings.Contains(m.Reply, "Old text") {
		t.Errorf("Quoted %q", m.Quoted)
	}
	if m.SignatureText != "-- \nAnn" {
		t.Errorf("SignatureText %q", m.SignatureText)
	}
	if m.ReplyHTMLMarker != "gmail_quote,gmail_signature" || strings.Contains(m.ReplyHTML, "Old text") || strings.Contains(m.ReplyHTML, "Ann") || !strings.Contains(m.ReplyHTML, "New words here.") {
		t.Errorf("ReplyHTML %q marker %q", m.ReplyHTML, m.ReplyHTMLMarker)
	}
	if !strings.Contains(m.Text, "Old text.") || !strings.Contains(m.HTML, "Old text.") {
		t.Error("Text and HTML must stay whole")
	}
	mp := Mapping{TicketType: "t", Fields: []FieldMapping{
		{Ticket: "r", Source: FieldBodyReply}, {Ticket: "rh", Source: FieldBodyReplyHTML},
		{Ticket: "q", Source: FieldBodyQuoted}, {Ticket: "s", Source: FieldBodySignature},
	}}
	if err := mp.Validate(); err != nil {
		t.Fatalf("Validate: %v", err)
	}
	got := mp.Apply(m)
	if got["r"] != m.Reply || got["rh"] != m.ReplyHTML || got["q"] != m.Quoted || got["s"] != m.SignatureText {
		t.Errorf("Apply = %q", got)
	}
}

// TestParseReplyNoMarks: a mail with no marks has Reply == Text, ReplyHTML
// == HTML and no marker.
func TestParseReplyNoMarks(t *testing.T) {
	raw := "From: a@example.com\r\nSubject: x\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<p>Just <b>this</b>.</p>\r\n"
	m, err := (&Parser{}).Parse(strings.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if m.Reply != m.Text || m.ReplyHTML != m.HTML || m.ReplyMarker != "" || m.Quoted != "" || m.SignatureText != "" {
		t.Errorf("Reply %q Text %q ReplyHTML %q HTML %q marker %q", m.Reply, m.Text, m.ReplyHTML, m.HTML, m.ReplyMarker)
	}
}

// BenchmarkSegmentMailbox measures reply segmentation alone on the bodies
// of the 2,000-message benchmark mailbox (BenchmarkParseMailbox parses it
// with segmentation), to compare with its parse time per mailbox:
//
//	go test -run '^$' -bench 'SegmentMailbox|ParseMailbox' -benchtime 3x .
func BenchmarkSegmentMailbox(b *testing.B) {
	p := &Parser{TempDir: b.TempDir()}
	var msgs []*Message
	for _, raw := range benchMailbox() {
		m, err := p.Parse(bytes.NewReader(raw))
		if err != nil {
			b.Fatal(err)
		}
		m.Close()
		msgs = append(msgs, m)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		for _, m := range msgs {
			ps := &parseState{msg: m}
			ps.segment()
		}
	}
	b.ReportMetric(float64(b.Elapsed().Milliseconds())/float64(b.N), "ms/mailbox")
}
