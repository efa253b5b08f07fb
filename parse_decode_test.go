package mailsync

import (
	"strings"
	"testing"
	"time"

	"golang.org/x/text/encoding/charmap"
	"golang.org/x/text/encoding/japanese"
)

func mustParse(t *testing.T, raw string) *Message {
	t.Helper()
	m, err := parseWith(t, &Parser{}, []byte(raw))
	if err != nil {
		t.Fatalf("%v\n%s", err, raw)
	}
	return m
}

func sjis(t *testing.T, s string) string {
	t.Helper()
	b, err := japanese.ShiftJIS.NewEncoder().String(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func koi8r(t *testing.T, s string) string {
	t.Helper()
	b, err := charmap.KOI8R.NewEncoder().String(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func textMessage(charset, body string) string {
	ct := "text/plain"
	if charset != "" {
		ct += "; charset=" + charset
	}
	return "From: a@example.com\r\nContent-Type: " + ct + "\r\n\r\n" + body
}

// TestParseCharsets: the declared charset wins; an unknown one degrades to
// UTF-8 with a warning; bytes that are invalid in the declared charset are
// decoded as windows-1252 (or UTF-8 when they are valid UTF-8), with a
// warning; a few broken characters in a long text become U+FFFD.
func TestParseCharsets(t *testing.T) {
	jp := "このメールはテスト用のメールです。今後ともよろしくお願いします。"
	tests := []struct {
		name, charset, body, want, warning string
	}{
		{"utf-8", "utf-8", "caf\xc3\xa9", "café", ""},
		// The same bytes declared iso-8859-1 are "cafÃ©": the declaration wins over a guess.
		{"declared wins", "iso-8859-1", "caf\xc3\xa9", "cafÃ©", ""},
		// iso-8859-1 is read as windows-1252, as clients do: 0x80 is the euro sign.
		{"latin1 as windows-1252", "ISO-8859-1", "\x80 5", "€ 5", ""},
		{"windows-1251", "windows-1251", "\xcf\xf0\xe8\xe2\xe5\xf2", "Привет", ""},
		{"koi8-r", "koi8-r", koi8r(t, "Привет"), "Привет", ""},
		{"shift_jis", "Shift_JIS", sjis(t, jp), jp, ""},
		{"quoted charset", `"utf-8"`, "caf\xc3\xa9", "café", ""},
		{"unknown charset", "x-unknown", "caf\xc3\xa9", "café", `text/plain body has an unknown charset "x-unknown": read as UTF-8`},
		{"unknown charset, 8-bit", "x-unknown", "caf\xe9", "café", `text/plain body has an unknown charset "x-unknown": read as UTF-8`},
		// Invalid UTF-8 bytes among valid ones: only the invalid bytes become windows-1252.
		{"invalid utf-8", "utf-8", "caf\xe9 na\xefve \xe2\x9c\x93", "café naïve ✓", "text/plain body is not valid utf-8: invalid bytes decoded as windows-1252"},
		{"undeclared 8-bit", "", "caf\xe9", "café", "text/plain body is not valid us-ascii: invalid bytes decoded as windows-1252"},
		{"us-ascii with 8-bit", "us-ascii", "\x93quoted\x94", "“quoted”", "text/plain body is not valid us-ascii: invalid bytes decoded as windows-1252"},
		// Latin-1 text declared Shift_JIS: mostly invalid, so the label lies.
		{"lying multibyte label", "shift_jis", "caf\xe9 \xe0 la cr\xe8me br\xfbl\xe9e", "café à la crème brûlée", "text/plain body is not valid shift_jis: decoded as windows-1252"},
		// UTF-8 text declared ISO-2022-JP.
		{"utf-8 under another label", "iso-2022-jp", jp, jp, "text/plain body is not valid iso-2022-jp: read as UTF-8"},
		// One broken byte in a long Shift_JIS text: the rest stays Japanese.
		{"one broken character", "shift_jis", sjis(t, strings.Repeat(jp, 4)) + "\x81", strings.Repeat(jp, 4) + "\uFFFD", "text/plain body has 1 bytes not valid in shift_jis: replaced by U+FFFD"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := mustParse(t, textMessage(tt.charset, tt.body))
			if m.Text != tt.want {
				t.Errorf("Text = %q, want %q", m.Text, tt.want)
			}
			if tt.warning == "" && len(m.Warnings) > 0 {
				t.Errorf("unexpected warnings %q", m.Warnings)
			}
			if tt.warning != "" && !containsWarning(m, tt.warning) {
				t.Errorf("warnings %q lack %q", m.Warnings, tt.warning)
			}
		})
	}
}

func TestParseHeaderDecoding(t *testing.T) {
	tests := []struct {
		name, header, charset, want, warning string
	}{
		{"plain", "Hello", "", "Hello", ""},
		{"B word", "=?UTF-8?B?w6l0w6k=?=", "", "été", ""},
		{"Q word with underscores", "=?iso-8859-1?Q?caf=E9_cr=E8me?=", "", "café crème", ""},
		{"lower-case q", "=?utf-8?q?caf=C3=A9?=", "", "café", ""},
		// White space between encoded words is dropped, around plain words it stays.
		{"adjacent words", "=?utf-8?Q?a?= =?utf-8?Q?b?=  c =?utf-8?Q?d?=", "", "ab  c d", ""},
		// A UTF-8 character split across two words (bad encoders do this) survives.
		{"split character", "=?UTF-8?B?4pw=?= =?UTF-8?B?kw==?=", "", "✓", ""},
		{"two charsets", "=?iso-8859-1?Q?=E9?= =?utf-8?Q?=C3=A9?=", "", "éé", ""},
		{"missing padding", "=?utf-8?B?w6l0w6k?=", "", "été", ""},
		{"unknown charset", "=?x-foo?Q?caf=C3=A9?=", "", "café", `encoded word has an unknown charset "x-foo": read as UTF-8`},
		{"RFC 2231 language", "=?utf-8*fr?Q?caf=C3=A9?=", "", "café", ""},
		{"not a word", "=?what ever?= and =?utf-8?X?abc?=", "", "=?what ever?= and =?utf-8?X?abc?=", ""},
		// Raw 8-bit: the message's declared charset first, as clients do, then windows-1252.
		{"8-bit in the message's charset", koi8r(t, "Привет"), "koi8-r", "Привет", "header has undeclared 8-bit bytes: decoded as koi8-r, the message's charset"},
		{"8-bit without charset", "Caf\xe9", "", "Café", "header has undeclared 8-bit bytes: decoded as windows-1252"},
		{"raw UTF-8 (RFC 6532)", "Caf\xc3\xa9", "iso-8859-1", "Café", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ct := "text/plain"
			if tt.charset != "" {
				ct += "; charset=" + tt.charset
			}
			m := mustParse(t, "Subject: "+tt.header+"\r\nContent-Type: "+ct+"\r\n\r\nbody")
			if m.Subject != tt.want {
				t.Errorf("Subject = %q, want %q", m.Subject, tt.want)
			}
			if got := m.Header.Get("Subject"); got != tt.want {
				t.Errorf("Header[Subject] = %q, want %q", got, tt.want)
			}
			if tt.warning != "" && !containsWarning(m, tt.warning) {
				t.Errorf("warnings %q lack %q", m.Warnings, tt.warning)
			}
		})
	}
}

func TestParseAttachmentNames(t *testing.T) {
	tests := []struct {
		name, headers, want string
	}{
		{"quoted", `Content-Disposition: attachment; filename="a b.pdf"`, "a b.pdf"},
		{"escaped quote", `Content-Disposition: attachment; filename="say \"hi\".txt"`, `say "hi".txt`},
		{"unquoted with spaces", `Content-Disposition: attachment; filename=a b.pdf`, "a b.pdf"},
		{"name from Content-Type", "Content-Type: application/pdf; name=\"x.pdf\"\r\nContent-Disposition: attachment", "x.pdf"},
		{"filename wins over name", "Content-Type: application/pdf; name=\"n.pdf\"\r\nContent-Disposition: attachment; filename=f.pdf", "f.pdf"},
		{"RFC 2231 latin1", `Content-Disposition: attachment; filename*=iso-8859-1'fr'caf%E9.txt`, "café.txt"},
		{"RFC 2231 utf-8", `Content-Disposition: attachment; filename*=UTF-8''%E2%9C%93.txt`, "✓.txt"},
		{"RFC 2231 wins over plain", `Content-Disposition: attachment; filename="plain.txt"; filename*=UTF-8''ext.txt`, "ext.txt"},
		{"RFC 2231 continuation", "Content-Disposition: attachment;\r\n filename*0*=UTF-8''%E2%9C%93;\r\n filename*1=\" and more\";\r\n filename*2*=%E2%9C%93.txt", "✓ and more✓.txt"},
		{"RFC 2231 continuation out of order", "Content-Disposition: attachment; filename*1=b.txt; filename*0=a", "ab.txt"},
		{"encoded word in quotes", `Content-Disposition: attachment; filename="=?UTF-8?B?w6l0w6kucGRm?="`, "été.pdf"},
		{"path removed", `Content-Disposition: attachment; filename="../../etc/passwd"`, "passwd"},
		{"windows path removed", `Content-Disposition: attachment; filename="C:\\temp\\x.exe"`, "x.exe"},
		{"missing closing quote", `Content-Disposition: attachment; filename="open.txt`, "open.txt"},
		{"upper-case parameter", `Content-Disposition: ATTACHMENT; FILENAME="up.txt"`, "up.txt"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := mustParse(t, string(multipartWith(tt.headers+"\r\n\r\ndata")))
			if len(m.Attachments) != 1 {
				t.Fatalf("%d attachments: %q", len(m.Attachments), m.Warnings)
			}
			if got := m.Attachments[0].Filename; got != tt.want {
				t.Errorf("Filename = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestParseTransferEncodings(t *testing.T) {
	tests := []struct {
		name, cte, body, want, warning string
	}{
		{"base64", "base64", "aGVsbG8gd29y\r\nbGQ=\r\n", "hello world", ""},
		{"base64 upper case", "BASE64", "aGVsbG8=", "hello", ""},
		// Junk characters are skipped, missing padding forgiven, as clients do.
		{"base64 lenient", "base64", "aGV sbG8g*d29y!bGQ", "hello world", ""},
		{"base64 concatenated blocks", "base64", "aGk=aGk=", "hihi", ""},
		{"quoted-printable", "quoted-printable", "caf=C3=A9 =\r\nsoft   \r\nnext", "café soft\nnext", ""},
		// "=" not followed by two hex digits stays literal.
		{"quoted-printable lenient", "quoted-printable", "a=ZZb = c=\x01", "a=ZZb = c=\x01", ""},
		{"quoted printable misspelt", "quoted printable", "caf=C3=A9", "café", `transfer encoding "quoted printable" read as quoted-printable`},
		{"trailing semicolon", "quoted-printable;", "caf=C3=A9", "café", ""},
		{"7-bit misspelt", "7-bit", "plain", "plain", `transfer encoding "7-bit" read as 8bit`},
		{"8 bit with a space", " 8 bit ", "plain", "plain", `transfer encoding "8 bit" read as 8bit`},
		{"quoted", `"base64"`, "aGk=", "hi", ""},
		{"unknown", "x-gzip64", "as is", "as is", `unknown transfer encoding "x-gzip64": read as it is`},
		{"uuencode", "x-uuencode", "begin 644 hi.txt\r\n%:&5L;&\\`\r\n`\r\nend\r\n", "hello", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := mustParse(t, "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: "+tt.cte+"\r\n\r\n"+tt.body)
			if m.Text != tt.want {
				t.Errorf("Text = %q, want %q", m.Text, tt.want)
			}
			if tt.warning != "" && !containsWarning(m, tt.warning) {
				t.Errorf("warnings %q lack %q", m.Warnings, tt.warning)
			}
		})
	}
}

func TestParseMultipartStructure(t *testing.T) {
	tests := []struct {
		name, raw, text, warning string
		attachments              int
	}{
		{"LF line ends", "Content-Type: multipart/mixed; boundary=b\n\npreamble\n--b\n\none\n--b\nContent-Type: text/plain\n\ntwo\n--b--\nepilogue\n", "one\n\ntwo", "", 0},
		{"missing closing boundary", "Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n\r\none\r\n--b\r\n\r\ntwo\r\n", "one\n\ntwo\n", "multipart/mixed ends without its closing boundary", 0},
		{"no delimiter at all", "Content-Type: multipart/mixed; boundary=b\r\n\r\nJust text.\r\n", "Just text.\n", "multipart/mixed without any part: its content read as text", 0},
		{"no boundary parameter", "Content-Type: multipart/mixed\r\n\r\nJust text.\r\n", "Just text.\n", "multipart/mixed without a boundary: read as text", 0},
		{"empty part", "Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n\r\n--b\r\n\r\nx\r\n--b--\r\n", "x", "", 0},
		{"delimiter with trailing space", "Content-Type: multipart/mixed; boundary=b\r\n\r\n--b  \r\n\r\nx\r\n--b--  \r\n", "x", "", 0},
		// "--b-x" is another boundary, not ours: it stays in the part.
		{"longer boundary is content", "Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n\r\n--b-x\r\n--bb\r\n--b--\r\n", "--b-x\n--bb", "", 0},
		{"digest default type", "Content-Type: multipart/digest; boundary=d\r\n\r\n--d\r\n\r\nSubject: inner\r\n\r\nhi\r\n--d--\r\n", "", "", 1},
		{"part without header", "Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nno header here\r\n--b--\r\n", "no header here", "no header: the content starts at once", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := mustParse(t, tt.raw)
			if m.Text != tt.text {
				t.Errorf("Text = %q, want %q", m.Text, tt.text)
			}
			if len(m.Attachments) != tt.attachments {
				t.Errorf("%d attachments, want %d", len(m.Attachments), tt.attachments)
			}
			if tt.warning != "" && !containsWarning(m, tt.warning) {
				t.Errorf("warnings %q lack %q", m.Warnings, tt.warning)
			}
		})
	}
}

func TestParseHeaderRepairs(t *testing.T) {
	m := mustParse(t, "  indented first line\r\nSubject: a\r\nbroken line without colon\r\nbad name: x\r\nFrom: b@example.com\r\n\r\nbody")
	if m.Subject != "a broken line without colon" || m.From.Address != "b@example.com" || m.Text != "body" {
		t.Errorf("got %q %q %q", m.Subject, m.From.Address, m.Text)
	}
	for _, w := range []string{"header starts with an indented line: dropped", "header line without a field name joined to Subject", `malformed header line "bad name: x" dropped`} {
		if !containsWarning(m, w) {
			t.Errorf("warnings %q lack %q", m.Warnings, w)
		}
	}
	// A message that is only text has no header.
	m = mustParse(t, "Hello, no header here.\r\nSecond line.\r\n")
	if m.Text != "Hello, no header here.\nSecond line.\n" {
		t.Errorf("Text = %q", m.Text)
	}
}

func TestParseHTML(t *testing.T) {
	raw := "From: a@example.com\r\nContent-Type: text/html; charset=utf-8\r\n\r\n" +
		`<html><head><title>Title</title><style>p{color:red}</style><script>alert(1)</script></head><body>` +
		`<p onclick="steal()" style="color: red; position: fixed; top: 0; z-index: 9; background: url(https://evil.example/x.png)">Hello&nbsp;<b>world</b> &amp; friends</p>` +
		`<a href="javascript:alert(2)">bad link</a> <a href="https://example.com/x">good link</a>` +
		`<img src="cid:logo@x" alt="Logo"><ul><li>one</li><li>two</li></ul>` +
		`<table><tr><td>a</td><td>b</td></tr></table><pre>  keep   this
  spacing</pre>line<br>break<form action="https://evil"><input name=q></form></body></html>`
	m := mustParse(t, raw)
	for _, bad := range []string{"<script", "alert(", "onclick", "steal", "javascript:", "<form", "<input", "<style", "Title", "position", "z-index", "evil.example"} {
		if strings.Contains(m.HTML, bad) {
			t.Errorf("sanitised HTML keeps %q: %s", bad, m.HTML)
		}
	}
	for _, good := range []string{"<b>world</b>", `href="https://example.com/x"`, `src="cid:logo@x"`, "<li>one</li>", `style="color: red"`} {
		if !strings.Contains(m.HTML, good) {
			t.Errorf("sanitised HTML lost %q: %s", good, m.HTML)
		}
	}
	if !m.TextFromHTML {
		t.Error("TextFromHTML = false for an HTML-only mail")
	}
	want := "Hello world & friends\n\nbad link good link Logo\n\n- one\n- two\n\na\tb\n\n  keep   this\n  spacing\nline\nbreak"
	if m.Text != want {
		t.Errorf("Text =\n%q\nwant\n%q", m.Text, want)
	}

	// A text part and an HTML part side by side in multipart/mixed are two
	// pieces of the mail, shown one after the other: each field holds both
	// (issue 15; they used to be split, one per field).
	m = mustParse(t, string(multipartWith("Content-Type: text/plain\r\n\r\nplain", "Content-Type: text/html\r\n\r\n<p>html</p>")))
	if m.Text != "plain\n\nhtml" || m.TextFromHTML || !strings.Contains(m.HTML, "<p>html</p>") || !strings.Contains(m.HTML, ">plain</div>") {
		t.Errorf("Text %q FromHTML %v HTML %q", m.Text, m.TextFromHTML, m.HTML)
	}
}

func TestParseDateZones(t *testing.T) {
	tests := []struct{ raw, want string }{
		{"Wed, 9 Jan 2002 19:47:50 MST", "2002-01-09T19:47:50-07:00"},
		{"Wed, 9 Jan 2002 19:47:50 EDT", "2002-01-09T19:47:50-04:00"},
		{"Wed, 9 Jan 2002 19:47:50 GMT", "2002-01-09T19:47:50Z"},
		{"9 Jan 2002 19:47:50 +0100", "2002-01-09T19:47:50+01:00"},
		{"Wed,  9 Jan 2002 19:47 +0100", "2002-01-09T19:47:00+01:00"},
		{"2002-01-09 19:47:50 +0100", "2002-01-09T19:47:50+01:00"},
	}
	for _, tt := range tests {
		m := mustParse(t, "Date: "+tt.raw+"\r\n\r\nx")
		want, _ := time.Parse(time.RFC3339, tt.want)
		if !m.Date.Equal(want) || m.Date.Format("-07:00") != want.Format("-07:00") {
			t.Errorf("%s: %v, want %v", tt.raw, m.Date, want)
		}
	}
}

func TestParseFormatFlowed(t *testing.T) {
	tests := []struct{ params, body, want string }{
		{"format=flowed", "Hello this is a \r\nlong line that \r\nwas wrapped.\r\n\r\n> quoted \r\n> more\r\n>> deeper\r\n-- \r\nsig\r\n",
			"Hello this is a long line that was wrapped.\n\n> quoted more\n>> deeper\n-- \nsig\n"},
		// delsp=yes: the space before a soft break belongs to the encoding (for languages without spaces).
		{"format=flowed; delsp=yes", "まみむ \r\nめも\r\n", "まみむめも\n"},
		// Space stuffing is removed.
		{"format=flowed", " From me\r\n  indented\r\n", "From me\n indented\n"},
		// A quote depth change ends the paragraph even after a soft break.
		{"format=flowed", "> a \r\nb\r\n", "> a \nb\n"},
		// Without format=flowed, nothing is joined.
		{"format=fixed", "a \r\nb\r\n", "a \nb\n"},
	}
	for _, tt := range tests {
		m := mustParse(t, "Content-Type: text/plain; charset=utf-8; "+tt.params+"\r\n\r\n"+tt.body)
		if m.Text != tt.want {
			t.Errorf("%s %q:\n got %q\nwant %q", tt.params, tt.body, m.Text, tt.want)
		}
	}
}
