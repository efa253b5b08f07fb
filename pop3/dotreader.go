package pop3

import (
	"bufio"
	"errors"
	"fmt"
	"io"

	"github.com/mailsync/mailsync"
)

// errReaderClosed is returned by a message reader used after its callback.
var errReaderClosed = errors.New("pop3: message reader used after its callback returned")

// dotReader streams the body of a POP3 multi-line answer (RFC 1939 §3):
// it removes the byte-stuffed leading dot of lines that start with ".",
// stops at the terminating ".\r\n" line, and otherwise passes the bytes
// through unchanged, CRLF line ends included. It never holds more than the
// bufio.Reader's buffer.
type dotReader struct {
	r      *bufio.Reader
	line   []byte // bytes of the current line not yet returned
	bol    bool   // the next byte read from r starts a line
	done   bool   // the terminator was read
	err    error  // a read failure: the connection broke
	closed bool
}

func newDotReader(r *bufio.Reader) *dotReader { return &dotReader{r: r, bol: true} }

// Read implements io.Reader. It returns io.EOF after the terminator and an
// error wrapping mailsync.ErrConnection when the stream ends before it.
func (d *dotReader) Read(p []byte) (int, error) {
	if d.closed {
		return 0, errReaderClosed
	}
	n := 0
	for n < len(p) {
		if len(d.line) == 0 {
			if d.done || d.err != nil {
				break
			}
			// Return what we have rather than block for more.
			if n > 0 && d.r.Buffered() == 0 {
				break
			}
			d.fill()
			continue
		}
		c := copy(p[n:], d.line)
		d.line = d.line[c:]
		n += c
	}
	if n > 0 {
		return n, nil
	}
	if d.done {
		return 0, io.EOF
	}
	if d.err != nil {
		return 0, d.err
	}
	return 0, nil
}

// fill reads the next line, or the next buffer-full of a long line, into
// d.line. It is only called when d.line is empty, so the slice from
// ReadSlice is consumed before r is read again.
func (d *dotReader) fill() {
	s, err := d.r.ReadSlice('\n')
	switch {
	case err == nil:
		if d.bol && len(s) > 0 && s[0] == '.' {
			if string(s) == ".\r\n" || string(s) == ".\n" {
				d.done = true
				return
			}
			s = s[1:]
		}
		d.line, d.bol = s, true
	case errors.Is(err, bufio.ErrBufferFull):
		// A line longer than the buffer: pass it on in pieces. Its first
		// piece cannot be the terminator, which is three bytes long.
		if d.bol && s[0] == '.' {
			s = s[1:]
		}
		d.line, d.bol = s, false
	default:
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		if errors.Is(err, mailsync.ErrConnection) {
			d.err = fmt.Errorf("message cut short: %w", err)
		} else {
			d.err = fmt.Errorf("%w: message cut short: %w", mailsync.ErrConnection, err)
		}
	}
}

// readErr is the read failure, if the stream broke before its terminator.
func (d *dotReader) readErr() error {
	if d.done {
		return nil
	}
	return d.err
}

// close makes further reads fail: the reader is valid only during fn.
func (d *dotReader) close() { d.closed = true }
