package pop3

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/mailsync/mailsync"
)

// stuff encodes body as a POP3 multi-line answer body: lines that start
// with "." get another one, and the ".\r\n" terminator follows.
func stuff(body []byte) []byte {
	var b bytes.Buffer
	bol := true
	for _, c := range body {
		if bol && c == '.' {
			b.WriteByte('.')
		}
		b.WriteByte(c)
		bol = c == '\n'
	}
	b.WriteString(".\r\n")
	return b.Bytes()
}

func TestDotReader(t *testing.T) {
	tests := []struct{ wire, want string }{
		{".\r\n", ""},
		{"a\r\n.\r\n", "a\r\n"},
		{"..\r\n.\r\n", ".\r\n"},
		{"...x\r\n..\r\n.\r\n", "..x\r\n.\r\n"},
		{"a.b\r\n .\r\n.\r\n", "a.b\r\n .\r\n"},
		{"bare lf\n.x\n.\n", "bare lf\nx\n"},
		{"x\r\n.\r\nAFTER", "x\r\n"},
		{strings.Repeat("y", 100) + "\r\n." + strings.Repeat("z", 50) + "\r\n.\r\n", strings.Repeat("y", 100) + "\r\n" + strings.Repeat("z", 50) + "\r\n"},
		{".." + strings.Repeat("w", 40) + "\r\n.\r\n", "." + strings.Repeat("w", 40) + "\r\n"},
		// A dot in the middle of a long line (after a buffer boundary) stays.
		{strings.Repeat("v", 16) + ".tail\r\n.\r\n", strings.Repeat("v", 16) + ".tail\r\n"},
	}
	for _, tc := range tests {
		for _, size := range []int{16, 17, 4096} {
			br := bufio.NewReaderSize(strings.NewReader(tc.wire), size)
			d := newDotReader(br)
			got, err := io.ReadAll(iotest.OneByteReader(d))
			if err != nil || string(got) != tc.want {
				t.Errorf("buffer %d, wire %q: got %q, %v; want %q", size, tc.wire, got, err, tc.want)
			}
			if d.readErr() != nil {
				t.Errorf("readErr = %v after a complete answer", d.readErr())
			}
			// Nothing after the terminator was consumed.
			rest, _ := io.ReadAll(br)
			if strings.HasSuffix(tc.wire, "AFTER") && string(rest) != "AFTER" {
				t.Errorf("after the terminator %q is left, want %q", rest, "AFTER")
			}
		}
	}
}

func TestDotReaderTruncated(t *testing.T) {
	for _, wire := range []string{"", "abc", "abc\r\n", "abc\r\n..", strings.Repeat("q", 100)} {
		d := newDotReader(bufio.NewReaderSize(strings.NewReader(wire), 16))
		_, err := io.ReadAll(d)
		if !errors.Is(err, mailsync.ErrConnection) || !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Errorf("wire %q: err %v, want ErrConnection and ErrUnexpectedEOF", wire, err)
		}
		if d.readErr() == nil {
			t.Errorf("wire %q: readErr is nil", wire)
		}
	}
}

func TestDotReaderClosed(t *testing.T) {
	d := newDotReader(bufio.NewReader(strings.NewReader("abc\r\n.\r\n")))
	d.close()
	if _, err := d.Read(make([]byte, 10)); !errors.Is(err, errReaderClosed) {
		t.Fatalf("read after close: %v", err)
	}
}

// TestDotReaderStreams checks the reader returns data before the whole
// answer arrived: a message is never buffered whole.
func TestDotReaderStreams(t *testing.T) {
	pr, pw := io.Pipe()
	d := newDotReader(bufio.NewReaderSize(pr, 4096))
	go pw.Write([]byte("first line\r\n"))
	buf := make([]byte, 100)
	n, err := d.Read(buf)
	if err != nil || string(buf[:n]) != "first line\r\n" {
		t.Fatalf("got %q, %v", buf[:n], err)
	}
	go func() {
		pw.Write([]byte(".\r\n"))
		pw.Close()
	}()
	if n, err := d.Read(buf); n != 0 || err != io.EOF {
		t.Fatalf("at the end: %d, %v", n, err)
	}
}

func FuzzDotReader(f *testing.F) {
	f.Add([]byte("hello\r\n.world\r\n"), uint8(0))
	f.Add([]byte(".\r\n..\r\n...\r\n"), uint8(3))
	f.Add([]byte("no newline at end"), uint8(1))
	f.Add([]byte("\n.\n.\r\n"), uint8(7))
	f.Fuzz(func(t *testing.T, body []byte, size uint8) {
		if len(body) > 0 && body[len(body)-1] != '\n' {
			body = append(body, '\r', '\n')
		}
		wire := append(stuff(body), "NEXT"...)
		br := bufio.NewReaderSize(bytes.NewReader(wire), 16+int(size))
		got, err := io.ReadAll(newDotReader(br))
		if err != nil {
			t.Fatalf("read: %v", err)
		}
		if !bytes.Equal(got, body) {
			t.Fatalf("round trip:\n got %q\nwant %q", got, body)
		}
		if rest, _ := io.ReadAll(br); string(rest) != "NEXT" {
			t.Fatalf("left %q after the terminator", rest)
		}
	})
}
