package mime

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"math"
	"net/textproto"
	"strings"
)

// Header blocks: reading, unfolding and repairing them within limits.

// Field is one header field.
type Field struct {
	Key   string // canonical (textproto.CanonicalMIMEHeaderKey)
	Value string // unfolded, not decoded
}

// Header is a header block in order.
type Header []Field

// Get returns the first value of the canonical key.
func (h Header) Get(key string) string {
	for _, f := range h {
		if f.Key == key {
			return f.Value
		}
	}
	return ""
}

var errHeaderTooBig = errors.New("header block too large")

// ReadLine reads one header line including its end, counting into *n and
// failing beyond MaxHeaderBytes, with a buffer for long lines reused
// across the message. The result is valid until the next read.
func (d *Decoder) ReadLine(br *bufio.Reader, n *int64) ([]byte, error) {
	line, err := readLineBuf(br, n, d.MaxHeaderBytes, d.longLine[:0])
	if cap(line) > cap(d.longLine) && cap(line) > br.Size() {
		d.longLine = line[:0]
	}
	return line, err
}

// readLineBuf reads one line including its end, counting into *n and
// failing with errHeaderTooBig beyond max (<= 0: no limit). A line longer
// than br's buffer is assembled in long, which it may grow.
func readLineBuf(br *bufio.Reader, n *int64, max int64, long []byte) ([]byte, error) {
	if max <= 0 {
		max = math.MaxInt64
	}
	for {
		chunk, err := br.ReadSlice('\n')
		*n += int64(len(chunk))
		if *n > max {
			return nil, errHeaderTooBig
		}
		if err == bufio.ErrBufferFull {
			long = append(long, chunk...)
			continue
		}
		if len(long) > 0 {
			chunk = append(long, chunk...)
		}
		return chunk, err
	}
}

func isWSP(c byte) bool { return c == ' ' || c == '\t' }

func trimWSP(b []byte) []byte {
	return bytes.Trim(b, " \t\r\n")
}

func validFieldName(k []byte) bool {
	if len(k) == 0 {
		return false
	}
	for _, c := range k {
		if c < 33 || c > 126 || c == ':' {
			return false
		}
	}
	return true
}

// ReadHeader reads a header block up to its empty line and returns it with
// the body that follows. It repairs what mail clients tolerate: a line
// without a field name is joined to the previous field, a line with an
// invalid name is dropped, and a first line that is no field at all starts
// the body (a message without header).
func (d *Decoder) ReadHeader(br *bufio.Reader) (Header, io.Reader, error) {
	var (
		h    Header
		key  string
		val  []byte
		have bool
		n    int64
	)
	val = d.fieldBuf[:0]
	defer func() { d.fieldBuf = val[:0] }()
	flush := func() {
		if have {
			h = append(h, Field{Key: key, Value: string(val)})
			have = false
		}
	}
	for {
		line, err := d.ReadLine(br, &n)
		if err == errHeaderTooBig {
			return nil, nil, malformed("header block larger than %d bytes", d.MaxHeaderBytes)
		}
		if err != nil && err != io.EOF {
			return nil, nil, err
		}
		content := bytes.TrimRight(line, "\r\n")
		switch {
		case len(line) == 0 || (len(content) == 0 && len(line) > 0):
			// end of input, or the empty line that ends the header
		case isWSP(content[0]):
			if t := trimWSP(content); !have {
				if len(t) > 0 {
					d.warnf("header starts with an indented line: dropped")
				}
			} else if len(t) > 0 {
				if len(val) > 0 {
					val = append(val, ' ')
				}
				val = append(val, t...)
			}
		default:
			colon := bytes.IndexByte(content, ':')
			var name []byte
			if colon > 0 {
				name = trimWSP(content[:colon])
			}
			switch {
			case validFieldName(name):
				flush()
				if len(h) >= MaxHeaderFields {
					return nil, nil, malformed("more than %d header fields", MaxHeaderFields)
				}
				// flush copied val: its buffer is reused.
				key, val, have = textproto.CanonicalMIMEHeaderKey(string(name)), append(val[:0], trimWSP(content[colon+1:])...), true
			case len(h) == 0 && !have:
				// Not a header at all: this line starts the body.
				d.warnf("no header: the content starts at once")
				rest := append([]byte(nil), line...)
				return nil, io.MultiReader(bytes.NewReader(rest), br), nil
			case colon < 0 && have:
				d.warnf("header line without a field name joined to %s", key)
				val = append(val, ' ')
				val = append(val, trimWSP(content)...)
			default:
				d.warnf("malformed header line %q dropped", truncateForWarning(content))
			}
			if err == nil {
				continue
			}
		}
		if len(content) == 0 || err != nil {
			break
		}
	}
	flush()
	return h, br, nil
}

func truncateForWarning(b []byte) string {
	const n = 60
	s := strings.ToValidUTF8(string(b), "\uFFFD")
	if len(s) > n {
		s = s[:n] + "…"
	}
	return s
}

// isLineControl reports the characters a single-line field must not hold:
// C0 controls (CR, LF, NUL, …), DEL, C1 controls and the Unicode line and
// paragraph separators.
func isLineControl(r rune) bool {
	return r < 0x20 || (0x7f <= r && r <= 0x9f) || r == 0x2028 || r == 0x2029
}

// SingleLine replaces the control characters of a decoded single-line field
// (CR and LF from an encoded word, NUL, …) by spaces, so a host that copies
// it into a header of its own (a reply's Subject) cannot be made to inject
// header lines. A tab, white space in a header, is replaced silently; any
// other control character adds a warning naming the field.
func (d *Decoder) SingleLine(field, s string) string {
	if strings.IndexFunc(s, isLineControl) < 0 {
		return s
	}
	warn := false
	s = strings.Map(func(r rune) rune {
		if isLineControl(r) {
			warn = warn || r != '\t'
			return ' '
		}
		return r
	}, s)
	if warn {
		d.warnf("control characters in %s replaced by spaces", field)
	}
	return s
}
