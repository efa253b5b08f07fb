package imap

import (
	"bytes"
	"strconv"
	"strings"
	"testing"
)

// feed scans stream in pieces of size n (0: whole) and returns the first error.
func feed(g *guard, stream []byte, n int) error {
	if n == 0 {
		n = len(stream)
	}
	for len(stream) > 0 {
		k := min(n, len(stream))
		if err := g.scan(stream[:k]); err != nil {
			return err
		}
		stream = stream[k:]
	}
	return nil
}

func TestGuardFraming(t *testing.T) {
	body := bytes.Repeat([]byte("x\r\n{99999999}\r\n"), (5<<20)/4/15) // a 1.25 MiB body that looks like framing
	var ok bytes.Buffer
	ok.WriteString("* OK [CAPABILITY IMAP4rev1] hi\r\n")
	ok.WriteString("* LIST () \".\" {11}\r\nINBOX.Tests\r\n")
	ok.WriteString("* 1 FETCH (UID 1 BODY[] {" + strconv.Itoa(len(body)) + "}\r\n")
	ok.Write(body)
	ok.WriteString(" FLAGS (\\Seen))\r\n")
	ok.WriteString("* 2 FETCH (UID 2 BODY[]<0> {5}\r\nhello BINARY[1] ~{3}\r\nabc)\r\n")
	ok.WriteString("A1 OK done\r\n")
	for _, n := range []int{0, 1, 7, 4096} {
		g := newGuard(1<<20, nil)
		g.wrote()
		if err := feed(g, ok.Bytes(), n); err != nil {
			t.Fatalf("chunks of %d: a legitimate stream was stopped: %v (%v)", n, err, g.err())
		}
		if g.cmdActive.Load() {
			t.Errorf("chunks of %d: the tagged OK did not end the command", n)
		}
	}

	bad := map[string]string{
		"long line":                 "* OK " + strings.Repeat("a", 1<<20+10) + "\r\n",
		"big literal in LIST":       "* LIST () \".\" {2000000}\r\n",
		"many literals in one resp": "* LIST () \".\" " + strings.Repeat("{600000}\r\n"+strings.Repeat("n", 600000), 2) + "\r\n",
		"body name outside FETCH":   "* OK BODY[] {2000000}\r\n",
		"BODY[] in a tagged line":   "A1 NO BODY[] {2000000}\r\n",
		"huge literal size":         "* LIST () \".\" {99999999999999999999}\r\n",
	}
	for name, stream := range bad {
		g := newGuard(1<<20, nil)
		if err := feed(g, []byte(stream), 3); err == nil || g.err() == nil {
			t.Errorf("%s: not stopped", name)
		}
	}
}
