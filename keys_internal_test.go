package mailsync

import (
	"strings"
	"testing"
)

// The key formats are a stored contract: hosts keep idempotency keys and
// States keep state keys. These values must never change; a change here
// makes every host see its mail again as new, or forget what was done.
func TestKeyFormatsArePinned(t *testing.T) {
	if got := keyForContent("Suporte", "abc@cliente.pt", "0f"); got != "ms1-fa0ed1d25d258d96ec3e885d2e63c0c4" {
		t.Errorf("keyForContent = %s", got)
	}
	if got := keyForRef("Suporte", "42:7"); got != "ms1r-8e121bec2b6d0b0c2c3e883507b662c9" {
		t.Errorf("keyForRef = %s", got)
	}
	hashed := "~sha256:84a0678c90937f5dcf9994d5866668da6b995109c8ad845410559b48a4ecafed"
	for in, want := range map[string]string{
		"42:7":                             "42:7",
		"abc@cliente.pt":                   "abc@cliente.pt",
		strings.Repeat("y", MaxStateKey):   strings.Repeat("y", MaxStateKey),
		strings.Repeat("x", MaxStateKey+1): hashed,
		hashed:                             hashed, // idempotent
		"a\r\nb":                           "~sha256:18745f36a05e29072709042d6062ce54f1b08ff36c27ba80c39f81fb010c8ce2",
		"~sha256:x":                        "~sha256:1ba40c34618acb08acbefe23d0ceb7513d218cb8b211e22fec7d1d0736e9804d",
	} {
		if got := StateKey(in); got != want {
			t.Errorf("StateKey(%.20q) = %s, want %s", in, got, want)
		}
	}
}
