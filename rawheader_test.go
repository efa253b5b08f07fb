package mailsync

import (
	"errors"
	"strings"
	"testing"
	"testing/iotest"
)

func TestRawMessageID(t *testing.T) {
	long := strings.Repeat("a", maxRawMessageID) + "@x"
	for _, c := range []struct{ name, raw, want string }{
		{"plain", "From: a@b\r\nMessage-ID: <id-1@example.com>\r\n\r\nbody", "id-1@example.com"},
		{"case and LF", "subject: x\nmessage-id:   <id-2@example.com> \n\nbody", "id-2@example.com"},
		{"folded", "From: a@b\r\nMessage-Id:\r\n <id-3@example.com>\r\nSubject: s\r\n\r\n", "id-3@example.com"},
		{"folded inside", "Message-Id: <id-4@\r\n\texample.com>\r\n\r\n", "id-4@example.com"},
		{"comment", "Message-Id: (note) <id-5@example.com>\r\n\r\n", "id-5@example.com"},
		{"no brackets", "Message-Id: id-6@example.com\r\n\r\n", "id-6@example.com"},
		{"first of two", "Message-Id: <a@x>\r\nMessage-Id: <b@x>\r\n\r\n", "a@x"},
		{"in the body only", "From: a@b\r\n\r\nMessage-Id: <body@x>\r\n", ""},
		{"none", "From: a@b\r\nSubject: s\r\n\r\nbody", ""},
		{"empty", "", ""},
		{"no end of header", "From: a@b\r\nMessage-Id: <id-7@x>", "id-7@x"},
		{"too long", "Message-Id: <" + long + ">\r\n\r\n", ""},
		{"invalid UTF-8", "Message-Id: <id-\xff@x>\r\n\r\n", "id-\uFFFD@x"},
		{"control", "Message-Id: <id-\x01@x>\r\n\r\n", ""},
		{"long line before", "X-Long: " + strings.Repeat("y", 10000) + "\r\nMessage-Id: <id-8@x>\r\n\r\n", "id-8@x"},
		{"past the bound", "X-Long: " + strings.Repeat("y", maxRawHeaderScan) + "\r\nMessage-Id: <id-9@x>\r\n\r\n", ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := rawMessageID(strings.NewReader(c.raw)); got != c.want {
				t.Errorf("rawMessageID = %q, want %q", got, c.want)
			}
		})
	}
	if got := rawMessageID(nil); got != "" {
		t.Errorf("nil reader: %q", got)
	}
	if got := rawMessageID(iotest.ErrReader(errors.New("boom"))); got != "" {
		t.Errorf("failing reader: %q", got)
	}
	// A read error after the field still gives the id.
	r := iotest.TimeoutReader(strings.NewReader("Message-Id: <id-10@x>\r\n\r\n"))
	if got := rawMessageID(r); got != "id-10@x" {
		t.Errorf("reader failing later: %q", got)
	}
}
