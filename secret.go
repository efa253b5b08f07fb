package mailsync

import (
	"fmt"
	"io"
	"log/slog"
)

// redacted is what a Secret prints as wherever it is formatted or logged.
const redacted = "[REDACTED]"

// Secret holds a credential (client secret, refresh token, password).
//
// It marshals to JSON as its plain value, because the host stores the
// connection configuration, but it never prints: String, every fmt verb
// (%v, %+v, %#v, %s, %q, %x) and slog show "[REDACTED]" (or "" when empty).
// Use Reveal to hand the value to the code that needs it.
type Secret string

// Reveal returns the secret's value. Call it only where the value is sent to
// the server that checks it.
func (s Secret) Reveal() string { return string(s) }

// String returns "[REDACTED]" for a non-empty secret and "" for an empty one.
func (s Secret) String() string {
	if s == "" {
		return ""
	}
	return redacted
}

// GoString implements fmt.GoStringer so %#v redacts too.
func (s Secret) GoString() string { return fmt.Sprintf("%q", s.String()) }

// Format implements fmt.Formatter so that no verb prints the value.
func (s Secret) Format(f fmt.State, verb rune) {
	if verb == 'q' || (verb == 'v' && f.Flag('#')) {
		fmt.Fprintf(f, "%q", s.String())
		return
	}
	io.WriteString(f, s.String())
}

// LogValue implements slog.LogValuer so structured logs redact it.
func (s Secret) LogValue() slog.Value { return slog.StringValue(s.String()) }
