package mailsync

import (
	"io"
	"strings"
	"testing"
)

func parseGap(t *testing.T, raw string) *Message {
	t.Helper()
	m, err := (&Parser{}).Parse(strings.NewReader(raw))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

func hasWarning(m *Message, part string) bool {
	for _, w := range m.Warnings {
		if strings.Contains(w, part) {
			return true
		}
	}
	return false
}

// Broken From headers: the address a mail client would show is recovered.
func TestParseBrokenFromRecovered(t *testing.T) {
	cases := []struct {
		name, from, extra  string
		wantName, wantAddr string
		warning            string
	}{
		{"Outlook's unquoted Last, First in an encoded word", "=?iso-8859-1?Q?M=FCller,=20Anna?= <a@example.com>", "", "Müller, Anna", "a@example.com", ""},
		{"a first mailbox with an empty address", `"Support" <>, Real <real@example.com>`, "", "Real", "real@example.com", "a later mailbox in From"},
		{"stray quotes around the address", `Ana <"ana@example.com">`, "", "Ana", "ana@example.com", ""},
		{"apostrophes around the address", `Ana <'ana@example.com'>`, "", "Ana", "ana@example.com", ""},
		{"no address: Reply-To", "Undisclosed", "Reply-To: rt@example.com\r\nSender: s@example.com\r\n", "Undisclosed", "rt@example.com", "Reply-To"},
		{"no address: Sender", "Undisclosed", "Sender: s@example.com\r\n", "Undisclosed", "s@example.com", "Sender"},
		{"no address: Return-Path", "", "Return-Path: <bounce@example.com>\r\n", "", "bounce@example.com", "Return-Path"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			raw := "From: " + tc.from + "\r\n" + tc.extra + "To: b@x.pt\r\nSubject: s\r\n\r\nbody\r\n"
			m := parseGap(t, raw)
			if m.From.Name != tc.wantName || m.From.Address != tc.wantAddr {
				t.Fatalf("From = %q <%s>, want %q <%s> (warnings %v)", m.From.Name, m.From.Address, tc.wantName, tc.wantAddr, m.Warnings)
			}
			if tc.warning != "" && !hasWarning(m, tc.warning) {
				t.Fatalf("no warning naming %s: %v", tc.warning, m.Warnings)
			}
		})
	}
}

// A gateway's line above the header must not cost the whole header.
func TestParseLeadingGarbageBeforeHeader(t *testing.T) {
	m := parseGap(t, "---- Original message ----\r\nFrom: Ana <ana@example.com>\r\nTo: b@x.pt\r\nSubject: hello\r\n\r\nbody\r\n")
	if m.From.Address != "ana@example.com" || m.Subject != "hello" || strings.TrimSpace(m.Text) != "body" {
		t.Fatalf("from %v subject %q text %q", m.From, m.Subject, m.Text)
	}
	if !hasWarning(m, "before the first header line") {
		t.Fatalf("no warning: %v", m.Warnings)
	}
	// A mail that really has no header keeps its first lines as its body.
	m = parseGap(t, "Dear support,\r\nmy printer broke.\r\nThanks\r\n")
	if !strings.Contains(m.Text, "Dear support") {
		t.Fatalf("text %q", m.Text)
	}
	// A body line with a colon is not taken for the start of a header.
	m = parseGap(t, "From: a@b.pt\r\nSubject: s\r\n\r\nNote: see below\r\nTo: whom it may concern\r\n")
	if !strings.Contains(m.Text, "Note: see below") {
		t.Fatalf("text %q", m.Text)
	}
}

// multipart/mixed with text and HTML side by side: both fields show all.
func TestParseMixedTextAndHTMLInBothRenderings(t *testing.T) {
	raw := "From: a@b.pt\r\nSubject: s\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n" +
		"--b\r\nContent-Type: text/plain\r\n\r\nFirst part <with brackets>.\r\n" +
		"--b\r\nContent-Type: text/html\r\n\r\n<p>Second part.</p>\r\n" +
		"--b\r\nContent-Type: text/plain\r\n\r\nThird part.\r\n--b--\r\n"
	m := parseGap(t, raw)
	for _, want := range []string{"First part <with brackets>.", "Second part.", "Third part."} {
		if !strings.Contains(m.Text, want) {
			t.Errorf("Text lacks %q: %q", want, m.Text)
		}
	}
	if strings.Index(m.Text, "First") > strings.Index(m.Text, "Second") || strings.Index(m.Text, "Second") > strings.Index(m.Text, "Third") {
		t.Errorf("Text out of order: %q", m.Text)
	}
	for _, want := range []string{"First part &lt;with brackets&gt;.", "<p>Second part.</p>", "Third part."} {
		if !strings.Contains(m.HTML, want) {
			t.Errorf("HTML lacks %q: %q", want, m.HTML)
		}
	}
	// multipart/alternative stays two renderings of one content.
	alt := "From: a@b.pt\r\nSubject: s\r\nMIME-Version: 1.0\r\nContent-Type: multipart/alternative; boundary=b\r\n\r\n" +
		"--b\r\nContent-Type: text/plain\r\n\r\nHello.\r\n--b\r\nContent-Type: text/html\r\n\r\n<p>Hello.</p>\r\n--b--\r\n"
	m = parseGap(t, alt)
	if strings.Count(m.Text, "Hello.") != 1 || strings.Count(m.HTML, "Hello.") != 1 {
		t.Errorf("alternative duplicated: text %q html %q", m.Text, m.HTML)
	}
	// A plain-text mail gets no HTML made up for it.
	m = parseGap(t, "From: a@b.pt\r\nSubject: s\r\n\r\nplain\r\n")
	if m.HTML != "" {
		t.Errorf("HTML %q for a plain-text mail", m.HTML)
	}
}

// x-uuencode without begin/end lines still decodes.
func TestParseUUEncodeWithoutBeginEnd(t *testing.T) {
	for name, body := range map[string]string{
		"bare lines":     "%:&5L;&\\`\r\n`\r\n",
		"with begin/end": "begin 644 a.txt\r\n%:&5L;&\\`\r\n`\r\nend\r\n",
	} {
		t.Run(name, func(t *testing.T) {
			raw := "From: a@b.pt\r\nSubject: s\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nhi\r\n" +
				"--b\r\nContent-Type: application/octet-stream; name=a.txt\r\nContent-Transfer-Encoding: x-uuencode\r\nContent-Disposition: attachment; filename=a.txt\r\n\r\n" + body + "--b--\r\n"
			m := parseGap(t, raw)
			if len(m.Attachments) != 1 {
				t.Fatalf("%d attachments", len(m.Attachments))
			}
			rc, err := m.Attachments[0].Open()
			if err != nil {
				t.Fatal(err)
			}
			defer rc.Close()
			got, _ := io.ReadAll(rc)
			if string(got) != "hello" {
				t.Fatalf("decoded %q, want hello", got)
			}
		})
	}
}
