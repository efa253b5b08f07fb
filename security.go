package mailsync

import (
	"fmt"
	"strings"
)

// Security is how a connection to an IMAP or POP3 server is protected. The
// imap and pop3 packages use this one type (imap.Security and
// pop3.Security are aliases of it).
type Security int

// The security modes. The zero value, SecurityAuto, lets the provider choose
// by port: STARTTLS on the protocol's plain port (IMAP 143, POP3 110),
// implicit TLS on every other.
const (
	// SecurityAuto chooses by port.
	SecurityAuto Security = iota
	// ImplicitTLS speaks TLS from the first byte (IMAPS on 993, POP3S on 995).
	ImplicitTLS
	// StartTLS connects in clear and upgrades before any credential is sent:
	// the STARTTLS command in IMAP, STLS in POP3 (RFC 2595). A server that
	// does not offer it is an ErrTLS failure, never a silent downgrade.
	StartTLS
	// Plaintext never encrypts. Credentials go over it only when the
	// provider's AllowPlaintextLogin option says so.
	Plaintext
)

// String returns the mode's name: "auto", "implicit-tls", "starttls" or
// "plaintext".
func (s Security) String() string {
	switch s {
	case SecurityAuto:
		return "auto"
	case ImplicitTLS:
		return "implicit-tls"
	case StartTLS:
		return "starttls"
	case Plaintext:
		return "plaintext"
	}
	return fmt.Sprintf("Security(%d)", int(s))
}

// MarshalText implements encoding.TextMarshaler with the String names.
func (s Security) MarshalText() ([]byte, error) {
	if s < SecurityAuto || s > Plaintext {
		return nil, fmt.Errorf("mailsync: unknown security mode %d", int(s))
	}
	return []byte(s.String()), nil
}

// UnmarshalText implements encoding.TextUnmarshaler. It accepts the String
// names, "" for auto, and the aliases "tls", "ssl", "imaps", "pop3s"
// (implicit TLS), "stls" (the POP3 name of StartTLS) and "none" (plaintext).
func (s *Security) UnmarshalText(b []byte) error {
	switch strings.ToLower(strings.TrimSpace(string(b))) {
	case "", "auto":
		*s = SecurityAuto
	case "implicit-tls", "tls", "ssl", "imaps", "pop3s":
		*s = ImplicitTLS
	case "starttls", "stls":
		*s = StartTLS
	case "plaintext", "none":
		*s = Plaintext
	default:
		return NewConfigError(Problem{Field: "security", Code: CodeUnknown, Allowed: []string{"auto", "implicit-tls", "starttls", "plaintext"},
			Message: fmt.Sprintf("%q is not one of auto, implicit-tls, starttls, plaintext", b)})
	}
	return nil
}
