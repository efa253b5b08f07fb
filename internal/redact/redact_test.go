package redact

import (
	"encoding/base64"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"testing"
)

func TestScrubEveryEncoding(t *testing.T) {
	const secret = `s3cr3t/Pa ss+wo"rd\é`
	cases := map[string]string{
		"raw":           "NO [AUTHENTICATIONFAILED] LOGIN user " + secret,
		"query":         "error_description=client_secret=" + url.QueryEscape(secret) + "&x=1",
		"path":          "GET /" + url.PathEscape(secret),
		"imap quoted":   `NO LOGIN "user" "s3cr3t/Pa ss+wo\"rd\\é"`,
		"json":          `{"error":"bad","echo":"s3cr3t/Pa ss+wo\"rd\\é"}`,
		"sasl plain":    "NO echo " + base64.StdEncoding.EncodeToString([]byte("\x00user\x00"+secret)),
		"sasl xoauth2":  "NO echo " + base64.StdEncoding.EncodeToString([]byte("user=u@x\x01auth=Bearer "+secret+"\x01\x01")),
		"base64url":     "echo " + base64.URLEncoding.EncodeToString([]byte("ab"+secret+"cd")),
		"lower hex url": "x=" + lowerHex(url.QueryEscape(secret)),
	}
	for name, text := range cases {
		got := String(text, secret)
		if !strings.Contains(got, Mark) {
			t.Errorf("%s: nothing scrubbed in %q", name, got)
		}
		for _, f := range Forms(secret) {
			if strings.Contains(got, f) {
				t.Errorf("%s: form %q left in %q", name, f, got)
			}
		}
		// Enough of the secret's base64 is gone that it cannot be decoded back.
		if strings.Contains(got, secret) {
			t.Errorf("%s: raw secret left", name)
		}
	}
}

func TestBase64InnerFormsDecodeBackNothing(t *testing.T) {
	const secret = "refresh-token-0123456789"
	for shift := 0; shift < 3; shift++ {
		blob := base64.StdEncoding.EncodeToString([]byte(strings.Repeat("x", shift) + secret + "tail"))
		got := String(blob, secret)
		dec, _ := base64.StdEncoding.DecodeString(strings.ReplaceAll(got, Mark, ""))
		if strings.Contains(string(dec), "0123456789") {
			t.Errorf("shift %d: %q still decodes to the secret", shift, got)
		}
		if !strings.Contains(got, Mark) {
			t.Errorf("shift %d: not scrubbed: %q", shift, got)
		}
	}
}

func TestShortAndEmptySecretsIgnored(t *testing.T) {
	if got := String("a ab abc", "", "ab", "abc"); got != "a ab abc" {
		t.Fatalf("short secrets scrubbed: %q", got)
	}
	var s *Scrubber
	if s.Scrub("x") != "x" {
		t.Fatal("nil scrubber changed text")
	}
}

// A secret at the end of a base64 blob (SASL PLAIN ends with the password)
// leaves not even its last characters behind.
func TestBase64TailLeavesNothing(t *testing.T) {
	for _, pass := range []string{"pw-1", "pw-12", "pw-123", "correct horse battery"} {
		for _, user := range []string{"u", "us", "use", "user@example.com"} {
			blob := base64.StdEncoding.EncodeToString([]byte("\x00" + user + "\x00" + pass))
			got := String("NO echo "+blob, pass)
			if !strings.HasSuffix(got, Mark) {
				t.Errorf("user %q pass %q: %q keeps characters after the mark", user, pass, got)
			}
		}
	}
}

type codeErr struct{ code int }

func (e *codeErr) Error() string { return "server said: token=abcd1234 refused" }

func TestErrorKeepsTheChain(t *testing.T) {
	s := New("abcd1234")
	base := &codeErr{401}
	err := s.Error(fmt.Errorf("wrapped: %w", base))
	if strings.Contains(err.Error(), "abcd1234") || !strings.Contains(err.Error(), Mark) {
		t.Fatalf("not scrubbed: %v", err)
	}
	var ce *codeErr
	if !errors.As(err, &ce) || ce.code != 401 {
		t.Fatal("the chain is lost")
	}
	clean := errors.New("nothing secret")
	if s.Error(clean) != clean || (*Scrubber)(nil).Error(clean) != clean || s.Error(nil) != nil {
		t.Fatal("an error without a secret must come back as it is")
	}
}

// A Scrubber makes the forms of its secrets when it first scrubs, not when
// they are added: every connector has one, and most never scrub anything.
// What it then scrubs is the same.
func TestScrubberMakesFormsWhenScrubbing(t *testing.T) {
	secret := "s3cret-pa$$word"
	if n := testing.AllocsPerRun(100, func() { New(secret) }); n > 4 {
		t.Errorf("New allocates %.0f times, want at most 4 (no forms made)", n)
	}
	s := New(secret)
	s.Add("another-secret")
	text := "LOGIN " + secret + " " + base64.StdEncoding.EncodeToString([]byte("\x00user\x00another-secret"))
	if got := s.Scrub(text); strings.Contains(got, secret) || strings.Contains(got, "YW5vdGhlci1zZWNyZXQ") {
		t.Errorf("Scrub = %q", got)
	}
	s.Add("third-secret") // after a Scrub: made by the next one
	if got := s.Scrub("x third-secret"); got != "x "+Mark {
		t.Errorf("Scrub = %q", got)
	}
}
