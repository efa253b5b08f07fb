package mime

import (
	"bytes"
	"io"
	"strings"
	"testing"
)

// CaptureNext copies the raw bytes of one part, header and body, as they
// stand between its delimiter line and the line end before the next
// delimiter — read by the caller or skipped by Next.
func TestSplitterCaptureNext(t *testing.T) {
	for name, c := range map[string]struct {
		body, want string
		read       bool
	}{
		"crlf read":       {"--b\r\nContent-Type: text/plain\r\n\r\nline 1\r\nline 2\r\n--b\r\nX: y\r\n\r\nsig\r\n--b--\r\n", "Content-Type: text/plain\r\n\r\nline 1\r\nline 2", true},
		"crlf skipped":    {"pre\r\n--b \r\nA: 1\r\n\r\nbody\r\n\r\n--b\r\n\r\nsig\r\n--b--\r\n", "A: 1\r\n\r\nbody\r\n", false},
		"lf only":         {"--b\nA: 1\n\nx\n--b\n\nsig\n--b--\n", "A: 1\n\nx", true},
		"nested boundary": {"--b\r\nContent-Type: multipart/mixed; boundary=c\r\n\r\n--c\r\n\r\nin\r\n--c--\r\n--b\r\n\r\nsig\r\n--b--", "Content-Type: multipart/mixed; boundary=c\r\n\r\n--c\r\n\r\nin\r\n--c--", false},
	} {
		t.Run(name, func(t *testing.T) {
			d := &Decoder{}
			s := d.NewSplitter(strings.NewReader(c.body), "b")
			var got bytes.Buffer
			s.CaptureNext(&got)
			_, part, err := s.Next()
			if err != nil {
				t.Fatal(err)
			}
			if c.read {
				if _, err := io.Copy(io.Discard, part); err != nil {
					t.Fatal(err)
				}
			}
			_, sig, err := s.Next()
			if err != nil {
				t.Fatal(err)
			}
			if got.String() != c.want {
				t.Fatalf("captured %q, want %q", got.String(), c.want)
			}
			// Only the part asked for is captured.
			b, _ := io.ReadAll(sig)
			if string(b) != "sig" || got.String() != c.want {
				t.Fatalf("second part %q, captured %q", b, got.String())
			}
		})
	}
}
