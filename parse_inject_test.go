package mailsync

import (
	"strings"
	"testing"
)

// TestParseHeaderControlCharacters: CR, LF, NUL and other control
// characters decoded from encoded words (or sent raw) leave the parser as
// spaces in every single-line field, each with a warning, so a host that
// copies the subject into a reply cannot be made to inject a Bcc (issue 10
// item 5). A tab becomes a space without a warning.
func TestParseHeaderControlCharacters(t *testing.T) {
	raw := "From: =?utf-8?Q?Eve=0D=0ABcc=3A_victim=40example.com?= <eve@example.com>\r\n" +
		"To: =?utf-8?B?" + "Qm9iAEJjYzogeEB5" + "?= <bob@example.com>, \"Ann\" <ann\x00@example.com>\r\n" +
		"Cc: =?utf-8?Q?C=0Ac?= <c@example.com>\r\n" +
		"Reply-To: =?utf-8?Q?R=0Dr?= <r@example.com>\r\n" +
		"Subject: =?utf-8?Q?Hello=0D=0ABcc:_victim@example.com?=\r\n" +
		"Message-ID: <id\x00\x01@example.com>\r\n" +
		"In-Reply-To: <p\x1b@example.com>\r\n" +
		"References: <r1\x7f@example.com> <r2@example.com>\r\n" +
		"X-Ticket: =?utf-8?Q?42=0D=0AX-Evil:_1?=\r\n" +
		"X-Tabbed: a\tb\r\n" +
		"\r\nbody"
	m := mustParse(t, raw)
	fields := map[string]string{
		"Subject":         m.Subject,
		"From.Name":       m.From.Name,
		"From.Address":    m.From.Address,
		"To[0].Name":      m.To[0].Name,
		"To[1].Address":   m.To[1].Address,
		"Cc[0].Name":      m.Cc[0].Name,
		"ReplyTo[0]":      m.ReplyTo[0].Name,
		"MessageID":       m.MessageID,
		"InReplyTo":       strings.Join(m.InReplyTo, " "),
		"References":      strings.Join(m.References, " "),
		"header:Subject":  SourceValue(m, "header:Subject"),
		"header:X-Ticket": SourceValue(m, "header:X-Ticket"),
		"header:From":     SourceValue(m, "header:From"),
		"header:To":       SourceValue(m, "header:To"),
		"from":            SourceValue(m, FieldFrom),
		"to":              SourceValue(m, FieldTo),
	}
	for k, vs := range m.Header {
		for _, v := range vs {
			fields["Header["+k+"]"] = v
		}
	}
	for what, v := range fields {
		if hasLineControl(v) {
			t.Errorf("%s = %q keeps a control character", what, v)
		}
	}
	for what, got := range map[string]string{
		"Subject": m.Subject, "From.Name": m.From.Name, "X-Ticket": m.Header.Get("X-Ticket"),
		"X-Tabbed": m.Header.Get("X-Tabbed"), "MessageID": m.MessageID, "InReplyTo": strings.Join(m.InReplyTo, " "),
		"References": strings.Join(m.References, " "),
	} {
		want := map[string]string{
			"Subject": "Hello  Bcc: victim@example.com", "From.Name": "Eve  Bcc: victim@example.com",
			"X-Ticket": "42  X-Evil: 1", "X-Tabbed": "a b", "MessageID": "id@example.com",
			"InReplyTo": "p@example.com", "References": "r1@example.com r2@example.com",
		}[what]
		if got != want {
			t.Errorf("%s = %q, want %q", what, got, want)
		}
	}
	for _, w := range []string{"Subject", "From name", "To name", "To address", "Cc name", "Reply-To name", "Message-Id", "In-Reply-To", "References", "X-Ticket"} {
		if !containsWarning(m, "control characters in "+w+" replaced by spaces") {
			t.Errorf("no warning for %s: %q", w, m.Warnings)
		}
	}
	if containsWarning(m, "in X-Tabbed") {
		t.Errorf("a tab warned: %q", m.Warnings)
	}
}

// hasLineControl reports a character a single-line field must not hold.
func hasLineControl(s string) bool {
	return strings.ContainsFunc(s, func(r rune) bool {
		return r < 0x20 || (0x7f <= r && r <= 0x9f) || r == 0x2028 || r == 0x2029
	})
}
