package mailsync

import (
	"strings"
	"testing"
)

// Outlook-style HTML mail: a nameless inline image referenced by cid, one
// by Content-Location, one inline part the HTML never shows, and a real
// attachment.
func TestParseInlineImages(t *testing.T) {
	png := "iVBORw0KGgo="
	raw := "From: a@b.pt\r\nSubject: s\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=m\r\n\r\n" +
		"--m\r\nContent-Type: multipart/related; boundary=r\r\n\r\n" +
		"--r\r\nContent-Type: text/html; charset=utf-8\r\n\r\n" +
		`<p>Logo: <img src="cid:image001.png@01DB0000.ABCDEF00"> chart: <img src="chart.gif"> <a href="details.html">details</a></p>` + "\r\n" +
		"--r\r\nContent-Type: image/png\r\nContent-ID: <image001.png@01DB0000.ABCDEF00>\r\nContent-Transfer-Encoding: base64\r\n\r\n" + png + "\r\n" +
		"--r\r\nContent-Type: image/gif\r\nContent-Location: chart.gif\r\nContent-Transfer-Encoding: base64\r\n\r\nR0lGODlh\r\n" +
		"--r\r\nContent-Type: image/jpeg\r\nContent-ID: <unused@x>\r\nContent-Disposition: inline\r\nContent-Transfer-Encoding: base64\r\n\r\n/9j/\r\n" +
		"--r--\r\n" +
		"--m\r\nContent-Type: application/pdf; name=fatura.pdf\r\nContent-Disposition: attachment; filename=fatura.pdf\r\nContent-Transfer-Encoding: base64\r\n\r\nJVBERg==\r\n" +
		"--m--\r\n"
	m := parseGap(t, raw)
	byName := map[string]*Attachment{}
	var names []string
	for _, a := range m.Attachments {
		byName[a.Filename] = a
		names = append(names, a.Filename)
	}
	if strings.Join(names, ",") != "image001.png,image002.gif,image003.jpg,fatura.pdf" {
		t.Fatalf("names %v", names)
	}
	if a := byName["image001.png"]; !a.Referenced || !a.Inline {
		t.Errorf("cid image: %+v", a)
	}
	if a := byName["image002.gif"]; !a.Referenced || a.ContentLocation != "chart.gif" {
		t.Errorf("Content-Location image: %+v", a)
	}
	if a := byName["image003.jpg"]; a.Referenced || a.Inline {
		t.Errorf("an inline part the HTML never shows must be an ordinary attachment: %+v", a)
	}
	if strings.Contains(m.HTML, `href="details.html"`) || strings.Contains(m.HTML, `src="chart.gif"`) {
		t.Errorf("a relative URL would load from the helpdesk's site: %s", m.HTML)
	}
	got := m.InlineHTML(func(a *Attachment) string { return "https://helpdesk.example/files/" + a.Filename })
	for _, want := range []string{`src="https://helpdesk.example/files/image001.png"`, `src="https://helpdesk.example/files/image002.gif"`} {
		if !strings.Contains(got, want) {
			t.Errorf("InlineHTML lacks %s: %s", want, got)
		}
	}
	if SourceValue(m, FieldAttachments) != "image003.jpg, fatura.pdf" || SourceValue(m, FieldInlineImages) != "image001.png, image002.gif" {
		t.Errorf("attachments %q, inline %q", SourceValue(m, FieldAttachments), SourceValue(m, FieldInlineImages))
	}
	// A url function that returns "" leaves the reference as it is.
	if same := m.InlineHTML(func(*Attachment) string { return "" }); same != m.HTML {
		t.Errorf("unchanged HTML expected: %s", same)
	}
}
