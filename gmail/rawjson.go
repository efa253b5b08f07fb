package gmail

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"unicode/utf8"

	"github.com/mailsync/mailsync"
)

// The raw message of a messages.get format=raw answer is one JSON string
// of base64url text. Instead of decoding the JSON document (which would
// hold the base64 text, then the decoded bytes, in memory), newRawReader
// scans the object for its top-level "raw" member and returns a reader
// that unescapes the JSON string and decodes the base64url on the fly:
// memory stays at a few buffers whatever the message size.

// errNoRaw: the answer has no "raw" member.
var errNoRaw = errors.New("the answer has no raw member")

// newRawReader positions r after the opening quote of the top-level "raw"
// string of a JSON object and returns a reader of the decoded bytes.
// Padding ("=", also written \u003d) is optional, the URL alphabet is
// expected but the standard one tolerated, and line breaks are ignored.
// Read errors of r come back wrapping mailsync.ErrConnection.
func newRawReader(r io.Reader, key string) (io.Reader, error) {
	br := bufio.NewReaderSize(r, 64<<10)
	s := &jsonScan{r: br}
	if err := s.findMember("raw"); err != nil {
		return nil, s.wrap(key, err)
	}
	str := &jsonString{r: br}
	dec := base64.NewDecoder(base64.RawURLEncoding, &b64Filter{r: str})
	return &rawReader{r: dec, key: key}, nil
}

// rawReader annotates the errors of the decoding chain.
type rawReader struct {
	r   io.Reader
	key string
	err error
}

func (r *rawReader) Read(p []byte) (int, error) {
	if r.err != nil {
		return 0, r.err
	}
	n, err := r.r.Read(p)
	if err != nil && err != io.EOF {
		var ce base64.CorruptInputError
		switch {
		case errors.As(err, &ce):
			err = fmt.Errorf("gmail: message %s: raw is not base64url: %w", r.key, err)
		case errors.Is(err, errBadJSON):
			err = fmt.Errorf("gmail: message %s: %w", r.key, err)
		default:
			err = fmt.Errorf("gmail: message %s: reading: %w: %w", r.key, mailsync.ErrConnection, err)
		}
		r.err = err
	}
	return n, err
}

var errBadJSON = errors.New("malformed JSON in the answer")

// jsonScan walks a JSON object without keeping values.
type jsonScan struct {
	r *bufio.Reader
}

func (s *jsonScan) wrap(key string, err error) error {
	if errors.Is(err, errBadJSON) || errors.Is(err, errNoRaw) {
		return fmt.Errorf("gmail: messages.get %s: %w", key, err)
	}
	return fmt.Errorf("gmail: messages.get %s: reading the answer: %w: %w", key, mailsync.ErrConnection, err)
}

// eofErr turns EOF inside a document into ErrUnexpectedEOF.
func eofErr(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// skipSpace returns the next byte that is not JSON white space.
func (s *jsonScan) skipSpace() (byte, error) {
	for {
		b, err := s.r.ReadByte()
		if err != nil {
			return 0, eofErr(err)
		}
		switch b {
		case ' ', '\t', '\r', '\n':
			continue
		}
		return b, nil
	}
}

// findMember reads up to the opening quote of the string value of the
// top-level member name.
func (s *jsonScan) findMember(name string) error {
	b, err := s.skipSpace()
	if err != nil {
		return err
	}
	if b != '{' {
		return fmt.Errorf("%w: expected an object", errBadJSON)
	}
	for {
		b, err := s.skipSpace()
		if err != nil {
			return err
		}
		if b == '}' {
			return errNoRaw
		}
		if b == ',' {
			if b, err = s.skipSpace(); err != nil {
				return err
			}
		}
		if b != '"' {
			return fmt.Errorf("%w: expected a member name", errBadJSON)
		}
		key, err := s.readShortString(256)
		if err != nil {
			return err
		}
		if b, err = s.skipSpace(); err != nil {
			return err
		}
		if b != ':' {
			return fmt.Errorf("%w: expected ':'", errBadJSON)
		}
		if key == name {
			if b, err = s.skipSpace(); err != nil {
				return err
			}
			if b != '"' {
				return fmt.Errorf("%w: %s is not a string", errBadJSON, name)
			}
			return nil
		}
		if err := s.skipValue(); err != nil {
			return err
		}
	}
}

// readShortString reads a string after its opening quote, keeping at most
// limit bytes (a longer one comes back truncated: it is not a name we
// look for).
func (s *jsonScan) readShortString(limit int) (string, error) {
	js := &jsonString{r: s.r}
	var buf bytes.Buffer
	var p [64]byte
	for {
		n, err := js.Read(p[:])
		if buf.Len() < limit {
			buf.Write(p[:min(n, limit-buf.Len())])
		}
		if err == io.EOF {
			return buf.String(), nil
		}
		if err != nil {
			return "", err
		}
	}
}

// skipValue skips one JSON value.
func (s *jsonScan) skipValue() error {
	b, err := s.skipSpace()
	if err != nil {
		return err
	}
	switch b {
	case '"':
		return s.skipString()
	case '{', '[':
		depth := 1
		for depth > 0 {
			c, err := s.r.ReadByte()
			if err != nil {
				return eofErr(err)
			}
			switch c {
			case '"':
				if err := s.skipString(); err != nil {
					return err
				}
			case '{', '[':
				depth++
			case '}', ']':
				depth--
			}
		}
		return nil
	}
	// A number or literal: up to the next delimiter.
	for {
		c, err := s.r.ReadByte()
		if err != nil {
			return eofErr(err)
		}
		switch c {
		case ',', '}', ']', ' ', '\t', '\r', '\n':
			return s.r.UnreadByte()
		}
	}
}

// skipString skips the rest of a string after its opening quote.
func (s *jsonScan) skipString() error {
	for {
		c, err := s.r.ReadByte()
		if err != nil {
			return eofErr(err)
		}
		switch c {
		case '"':
			return nil
		case '\\':
			if _, err := s.r.ReadByte(); err != nil {
				return eofErr(err)
			}
		}
	}
}

// jsonString reads the unescaped content of a JSON string whose opening
// quote was consumed, up to (and consuming) the closing quote; then EOF.
type jsonString struct {
	r       *bufio.Reader
	pending [utf8.UTFMax * 2]byte
	np, off int
	done    bool
}

func (j *jsonString) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		if j.off < j.np {
			c := copy(p[n:], j.pending[j.off:j.np])
			j.off += c
			n += c
			continue
		}
		if j.done {
			break
		}
		// Fast path: copy plain bytes straight from the buffer.
		if j.r.Buffered() == 0 {
			if n > 0 {
				break // return what we have rather than block
			}
			if _, err := j.r.Peek(1); err != nil {
				return n, eofErr(err)
			}
		}
		buf, _ := j.r.Peek(min(j.r.Buffered(), len(p)-n))
		i := indexQuoteOrBackslash(buf)
		if i < 0 {
			n += copy(p[n:], buf)
			j.r.Discard(len(buf))
			continue
		}
		n += copy(p[n:], buf[:i])
		j.r.Discard(i)
		c, _ := j.r.ReadByte()
		if c == '"' {
			j.done = true
			continue
		}
		if err := j.escape(); err != nil {
			return n, err
		}
	}
	if n == 0 && j.done && j.off >= j.np {
		return 0, io.EOF
	}
	return n, nil
}

// escape decodes the escape sequence after a backslash into pending.
func (j *jsonString) escape() error {
	c, err := j.r.ReadByte()
	if err != nil {
		return eofErr(err)
	}
	j.off, j.np = 0, 1
	switch c {
	case '"', '\\', '/':
		j.pending[0] = c
	case 'b':
		j.pending[0] = '\b'
	case 'f':
		j.pending[0] = '\f'
	case 'n':
		j.pending[0] = '\n'
	case 'r':
		j.pending[0] = '\r'
	case 't':
		j.pending[0] = '\t'
	case 'u':
		r, err := j.hex4()
		if err != nil {
			return err
		}
		if r >= 0xD800 && r < 0xDC00 {
			// A surrogate pair is \uD8xx\uDCxx.
			if b, _ := j.r.Peek(2); len(b) == 2 && b[0] == '\\' && b[1] == 'u' {
				j.r.Discard(2)
				lo, err := j.hex4()
				if err != nil {
					return err
				}
				r = (r-0xD800)<<10 + (lo - 0xDC00) + 0x10000
			}
		}
		j.np = utf8.EncodeRune(j.pending[:], r)
	default:
		return fmt.Errorf("%w: bad escape \\%c", errBadJSON, c)
	}
	return nil
}

func (j *jsonString) hex4() (rune, error) {
	var r rune
	for i := 0; i < 4; i++ {
		c, err := j.r.ReadByte()
		if err != nil {
			return 0, eofErr(err)
		}
		var v byte
		switch {
		case c >= '0' && c <= '9':
			v = c - '0'
		case c >= 'a' && c <= 'f':
			v = c - 'a' + 10
		case c >= 'A' && c <= 'F':
			v = c - 'A' + 10
		default:
			return 0, fmt.Errorf("%w: bad \\u escape", errBadJSON)
		}
		r = r<<4 | rune(v)
	}
	return r, nil
}

// b64Filter drops padding and white space and maps the standard base64
// alphabet onto the URL one, so base64.RawURLEncoding decodes padded,
// unpadded and standard input alike.
type b64Filter struct {
	r io.Reader
}

func (f *b64Filter) Read(p []byte) (int, error) {
	for {
		n, err := f.r.Read(p)
		if clean(p[:n]) {
			return n, err
		}
		w := 0
		for _, c := range p[:n] {
			switch c {
			case '=', '\r', '\n', ' ', '\t':
				continue
			case '+':
				c = '-'
			case '/':
				c = '_'
			}
			p[w] = c
			w++
		}
		if w > 0 || err != nil || len(p) == 0 {
			return w, err
		}
	}
}

// indexQuoteOrBackslash is bytes.IndexAny(b, `"\`) with the assembly
// IndexByte, which is much faster on long base64 runs.
func indexQuoteOrBackslash(b []byte) int {
	q := bytes.IndexByte(b, '"')
	if q < 0 {
		q = len(b)
	}
	if bs := bytes.IndexByte(b[:q], '\\'); bs >= 0 {
		return bs
	}
	if q == len(b) {
		return -1
	}
	return q
}

// clean reports whether b needs no filtering: no padding, white space or
// standard-alphabet characters (the usual case but for the last bytes).
func clean(b []byte) bool {
	for _, c := range []byte("=\r\n+/ \t") {
		if bytes.IndexByte(b, c) >= 0 {
			return false
		}
	}
	return true
}
