package benchmail

import (
	"bytes"
	"crypto/sha256"
	"net/mail"
	"testing"
)

func TestGenerate(t *testing.T) {
	const n, target = 250, 16 << 20
	sum := func() ([32]byte, int64, int) {
		h := sha256.New()
		big := 0
		total, err := Generate(n, target, 7, func(i int, raw []byte) error {
			h.Write(raw)
			if len(raw) > 2<<20 {
				big++
			}
			m, err := mail.ReadMessage(bytes.NewReader(raw))
			if err != nil {
				t.Fatalf("message %d does not parse: %v", i, err)
			}
			if m.Header.Get("Message-ID") == "" || m.Header.Get("Subject") == "" {
				t.Fatalf("message %d lacks headers", i)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		var s [32]byte
		copy(s[:], h.Sum(nil))
		return s, total, big
	}
	s1, total, big := sum()
	if total < target*9/10 || total > target*11/10 {
		t.Errorf("total %d bytes, want about %d", total, target)
	}
	if big < 1 {
		t.Errorf("no message above 2 MiB")
	}
	if s2, _, _ := sum(); s1 != s2 {
		t.Error("the same seed gave different mail")
	}
	t.Logf("%d messages, %.1f MB, %d above 2 MiB", n, float64(total)/1e6, big)
}
