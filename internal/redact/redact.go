// Package redact removes secrets from text that came back from a server.
//
// A server may echo what it was sent — an IMAP NO that repeats the LOGIN
// line, a token endpoint whose error_description quotes the form body, a
// SASL failure that returns the initial response — so every error text
// that leaves a connector passes through a Scrubber that knows the secrets
// the request carried. A secret is removed in every encoding a request
// could have carried it in: raw, URL-encoded (query and path forms, upper
// and lower case hex), JSON- and IMAP-quoted, and base64 (standard and
// URL alphabets, padded or not, at each of the three byte alignments, so
// a secret inside a longer base64 blob such as a SASL PLAIN or XOAUTH2
// response is found too).
package redact

import (
	"encoding/base64"
	"encoding/json"
	"net/url"
	"strings"
	"sync"
)

// Mark replaces a secret in scrubbed text.
const Mark = "[REDACTED]"

// MinLen is the shortest secret that is scrubbed: shorter values would
// blank ordinary words.
const MinLen = 4

// Scrubber removes a set of secrets, in all their encodings, from text.
// It is safe for concurrent use; a nil or zero Scrubber removes nothing.
type Scrubber struct {
	mu      sync.Mutex
	seen    map[string]bool
	pending []string // added, their forms not made yet
	forms   []string
}

// New returns a Scrubber for secrets (values shorter than MinLen are ignored).
func New(secrets ...string) *Scrubber {
	s := &Scrubber{}
	s.Add(secrets...)
	return s
}

// Add adds secrets, with all their encoded forms, and the forms of their
// form-urlencoded spelling too (so the base64 of a Basic-auth or SASL blob
// that carried the encoded form is found). Adding a secret twice is a no-op.
// The forms are made by the first Scrub that follows: most Scrubbers (one
// per connector) never scrub anything.
func (s *Scrubber) Add(secrets ...string) {
	if s == nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, v := range secrets {
		if len(v) < MinLen || s.seen[v] {
			continue
		}
		if s.seen == nil {
			s.seen = map[string]bool{}
		}
		s.seen[v] = true
		s.pending = append(s.pending, v)
	}
}

// expand makes the forms of the pending secrets; s.mu is held.
func (s *Scrubber) expand() {
	if len(s.pending) == 0 {
		return
	}
	for _, v := range s.pending {
		s.forms = append(s.forms, Forms(v)...)
		if q := url.QueryEscape(v); q != v {
			s.forms = append(s.forms, Forms(q)...)
		}
	}
	s.pending = nil
	// Longest first, so a form that contains another is replaced whole.
	sortByLenDesc(s.forms)
}

// Scrub returns text with every known secret form replaced by Mark.
func (s *Scrubber) Scrub(text string) string {
	if s == nil || text == "" {
		return text
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.expand()
	for _, f := range s.forms {
		if strings.Contains(text, f) {
			text = strings.ReplaceAll(text, f, Mark)
		}
	}
	return text
}

// String scrubs text of secrets; a shortcut for New(secrets...).Scrub(text).
func String(text string, secrets ...string) string { return New(secrets...).Scrub(text) }

// imapQuote escapes a string as inside an IMAP quoted string (built once:
// a Replacer is costly to build and safe to share).
var imapQuote = strings.NewReplacer(`\`, `\\`, `"`, `\"`)

// Forms returns the encodings of secret that a request may have carried
// and a server may echo. Base64 forms are the stable inner part of the
// encoding at each alignment (the characters that do not depend on the
// bytes around the secret), so they match inside a longer encoded blob.
func Forms(secret string) []string {
	seen := map[string]bool{}
	var out []string
	add := func(f string) {
		if len(f) >= MinLen && !seen[f] {
			seen[f] = true
			out = append(out, f)
		}
	}
	add(secret)
	add(url.QueryEscape(secret))
	add(url.PathEscape(secret))
	add(strings.ReplaceAll(url.QueryEscape(secret), "+", "%20"))
	add(lowerHex(url.QueryEscape(secret)))
	if j, err := json.Marshal(secret); err == nil {
		add(strings.Trim(string(j), `"`))
	}
	add(imapQuote.Replace(secret)) // IMAP quoted string
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.URLEncoding} {
		for shift := 0; shift < 3; shift++ {
			add(innerBase64(enc, secret, shift))
			// At the end of a blob (a SASL PLAIN response ends with the
			// password) the last group is known too: take it, with and
			// without padding, so not even the last characters remain.
			add(tailBase64(enc, secret, shift))
			add(tailBase64(enc.WithPadding(base64.NoPadding), secret, shift))
		}
	}
	return out
}

// tailBase64 is the encoding of secret, preceded by shift arbitrary bytes
// and followed by nothing, from the first group that holds only its bytes.
func tailBase64(enc *base64.Encoding, secret string, shift int) string {
	full := enc.EncodeToString([]byte(strings.Repeat("\x00", shift) + secret))
	if shift > 0 {
		if len(full) <= 4 {
			return ""
		}
		return full[4:]
	}
	return full
}

// innerBase64 is the part of the base64 encoding of secret, preceded by
// shift arbitrary bytes, that does not depend on those bytes or on what
// follows: the characters covering only the secret's bytes.
func innerBase64(enc *base64.Encoding, secret string, shift int) string {
	pre := strings.Repeat("\x00", shift)
	full := enc.WithPadding(base64.NoPadding).EncodeToString([]byte(pre + secret))
	// Characters 4k..4k+3 encode bytes 3k..3k+2. Skip the group(s) that
	// mix in the prefix; drop the last group, which may mix in a suffix
	// (or padding) — unless the secret ends exactly on a group boundary.
	start := 0
	if shift > 0 {
		start = 4
	}
	n := shift + len(secret)
	end := (n / 3) * 4
	if end <= start {
		return ""
	}
	return full[start:end]
}

func lowerHex(s string) string {
	b := []byte(s)
	for i := 0; i+2 < len(b); i++ {
		if b[i] == '%' {
			for k := i + 1; k <= i+2; k++ {
				if b[k] >= 'A' && b[k] <= 'F' {
					b[k] += 'a' - 'A'
				}
			}
		}
	}
	return string(b)
}

func sortByLenDesc(a []string) {
	for i := 1; i < len(a); i++ {
		for j := i; j > 0 && len(a[j]) > len(a[j-1]); j-- {
			a[j], a[j-1] = a[j-1], a[j]
		}
	}
}

// Error returns err, or, when its text holds a known secret, an error with
// the scrubbed text that still unwraps to err, so errors.Is and errors.As
// keep working. A nil Scrubber returns err.
func (s *Scrubber) Error(err error) error {
	if err == nil || s == nil {
		return err
	}
	msg := err.Error()
	if clean := s.Scrub(msg); clean != msg {
		return &scrubbedError{msg: clean, cause: err}
	}
	return err
}

// scrubbedError is an error whose text had a secret removed.
type scrubbedError struct {
	msg   string
	cause error
}

func (e *scrubbedError) Error() string { return e.msg }
func (e *scrubbedError) Unwrap() error { return e.cause }
