package mime

import (
	"bufio"
	"errors"
	"io"
	"strings"
	"testing"
)

// TestDecoderZeroValue: the zero Decoder has no header limit and drops its
// warnings.
func TestDecoderZeroValue(t *testing.T) {
	var d Decoder
	raw := "Subject: " + strings.Repeat("x", 1<<16) + "\r\nbad line\r\n\r\nbody"
	h, body, err := d.ReadHeader(bufio.NewReader(strings.NewReader(raw)))
	if err != nil {
		t.Fatal(err)
	}
	if got := len(h.Get("Subject")); got != 1<<16+len(" bad line") {
		t.Errorf("Subject of %d bytes", got)
	}
	if b, _ := io.ReadAll(body); string(b) != "body" {
		t.Errorf("body %q", b)
	}
}

// TestDecoderLimitsAndWarnings: a header block beyond MaxHeaderBytes is a
// MalformedError, and repairs reach Warn.
func TestDecoderLimitsAndWarnings(t *testing.T) {
	var warnings []string
	d := Decoder{MaxHeaderBytes: 100, Warn: func(w string) { warnings = append(warnings, w) }}
	_, _, err := d.ReadHeader(bufio.NewReader(strings.NewReader("Subject: " + strings.Repeat("x", 200) + "\r\n\r\n")))
	var me *MalformedError
	if !errors.As(err, &me) || me.Reason != "header block larger than 100 bytes" {
		t.Fatalf("error %v, want a MalformedError", err)
	}
	h, _, err := d.ReadHeader(bufio.NewReader(strings.NewReader("Subject: a\r\ncontinued\r\n\r\n")))
	if err != nil || h.Get("Subject") != "a continued" {
		t.Fatalf("%q %v", h, err)
	}
	if len(warnings) != 1 || warnings[0] != "header line without a field name joined to Subject" {
		t.Errorf("warnings %q", warnings)
	}
}
