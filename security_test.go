package mailsync_test

import (
	"errors"
	"testing"

	"github.com/mailsync/mailsync"
)

func TestSecurityText(t *testing.T) {
	for in, want := range map[string]mailsync.Security{
		"": mailsync.SecurityAuto, "auto": mailsync.SecurityAuto, "implicit-tls": mailsync.ImplicitTLS, "TLS": mailsync.ImplicitTLS,
		"pop3s": mailsync.ImplicitTLS, "imaps": mailsync.ImplicitTLS, "starttls": mailsync.StartTLS, "STLS": mailsync.StartTLS,
		"plaintext": mailsync.Plaintext, "none": mailsync.Plaintext,
	} {
		var s mailsync.Security
		if err := s.UnmarshalText([]byte(in)); err != nil || s != want {
			t.Errorf("%q: %v %v, want %v", in, s, err, want)
		}
		if want != mailsync.SecurityAuto || in == "auto" {
			out, err := want.MarshalText()
			var back mailsync.Security
			if err != nil || back.UnmarshalText(out) != nil || back != want {
				t.Errorf("%v does not round-trip: %q %v", want, out, err)
			}
		}
	}
	var s mailsync.Security
	if err := s.UnmarshalText([]byte("ssl3")); !errors.Is(err, mailsync.ErrInvalidConfig) {
		t.Errorf("unknown mode: %v", err)
	}
}
