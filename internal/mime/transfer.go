package mime

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"io"
	"strings"
)

// Content-Transfer-Encodings: base64, quoted-printable and uuencode, all
// read leniently.

// TransferDecoder decodes a Content-Transfer-Encoding. Misspellings seen in
// the wild are understood; an unknown encoding is read as it is.
func (d *Decoder) TransferDecoder(cte string, r io.Reader) io.Reader {
	enc := strings.ToLower(cte)
	if i := strings.IndexByte(enc, ';'); i >= 0 {
		enc = enc[:i]
	}
	enc = strings.Join(strings.Fields(strings.Trim(enc, "\"'")), " ")
	switch enc {
	case "", "7bit", "8bit", "binary":
		return r
	case "base64":
		return newBase64Reader(r)
	case "quoted-printable":
		return newQPReader(r)
	case "7-bit", "7bits", "8-bit", "8bits", "7 bit", "8 bit", "plain", "text", "none", "ascii", "text/plain", "text/html":
	case "base-64", "base 64", "b64":
		d.warnf("transfer encoding %q read as base64", cte)
		return newBase64Reader(r)
	case "quoted printable", "quotedprintable", "qp", "quoted_printable":
		d.warnf("transfer encoding %q read as quoted-printable", cte)
		return newQPReader(r)
	case "x-uuencode", "uuencode", "x-uue", "uue":
		return newUUReader(r)
	default:
		d.warnf("unknown transfer encoding %q: read as it is", truncateForWarning([]byte(cte)))
		return r
	}
	d.warnf("transfer encoding %q read as 8bit", truncateForWarning([]byte(cte)))
	return r
}

// base64Reader decodes base64 leniently, as mail clients do: characters
// outside the alphabet are skipped, padding ends a quantum wherever it
// appears, a missing padding is forgiven. It never fails on its input. The
// input is first filtered to alphabet characters and "=", then decoded with
// encoding/base64 a chunk at a time.
type base64Reader struct {
	r       io.Reader
	in      []byte // read buffer
	clean   []byte // filtered input; clean[:carry] are left over from the last chunk
	carry   int
	out     []byte
	pending []byte
	err     error
}

// b64Table maps alphabet characters to their value, others to 0xff.
var b64Table = func() (t [256]byte) {
	for i := range t {
		t[i] = 0xff
	}
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
	for i := 0; i < len(alphabet); i++ {
		t[alphabet[i]] = byte(i)
	}
	return t
}()

// b64Keep is 1 for the bytes the filter keeps: the alphabet and "=".
var b64Keep = func() (t [256]byte) {
	for i := range t {
		if b64Table[i] != 0xff || i == '=' {
			t[i] = 1
		}
	}
	return t
}()

func newBase64Reader(r io.Reader) *base64Reader {
	const size = 16 << 10
	return &base64Reader{r: r, in: make([]byte, size), clean: make([]byte, size+4), out: make([]byte, size*3/4+8)}
}

// decodeBase64 decodes a short string the same lenient way, for encoded words.
func decodeBase64(s string) []byte {
	clean := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		if b64Keep[s[i]] == 1 {
			clean = append(clean, s[i])
		}
	}
	out := make([]byte, len(clean)*3/4+3)
	n, rest := decodeClean(out, clean, true)
	_ = rest
	return out[:n]
}

// decodeClean decodes filtered base64 (alphabet and "=") into out, which
// must hold len(clean)*3/4+3 bytes. Padding ends a quantum early; at the end
// of the input (final) a partial quantum is flushed, otherwise its
// characters are returned to be carried into the next chunk.
func decodeClean(out, clean []byte, final bool) (n int, rest []byte) {
	for len(clean) > 0 {
		seg := clean
		pad := bytes.IndexByte(clean, '=')
		if pad >= 0 {
			seg = clean[:pad]
		}
		whole := len(seg) / 4 * 4
		m, _ := base64.StdEncoding.Decode(out[n:], seg[:whole]) // only alphabet characters: cannot fail
		n += m
		tail := seg[whole:]
		if pad < 0 {
			if !final {
				return n, tail
			}
			return n + flushQuantum(out[n:], tail), nil
		}
		n += flushQuantum(out[n:], tail)
		for pad < len(clean) && clean[pad] == '=' {
			pad++
		}
		clean = clean[pad:]
	}
	return n, nil
}

// flushQuantum decodes 2 or 3 characters of an unfinished quantum.
func flushQuantum(out, q []byte) int {
	var acc uint32
	for _, c := range q {
		acc = acc<<6 | uint32(b64Table[c])
	}
	switch len(q) {
	case 2:
		out[0] = byte(acc >> 4)
		return 1
	case 3:
		out[0], out[1] = byte(acc>>10), byte(acc>>2)
		return 2
	}
	return 0
}

func (d *base64Reader) Read(p []byte) (int, error) {
	for len(d.pending) == 0 {
		if d.err != nil {
			return 0, d.err
		}
		m, err := d.r.Read(d.in)
		k := d.carry
		clean := d.clean
		for _, c := range d.in[:m] {
			clean[k] = c
			k += int(b64Keep[c])
		}
		if err != nil {
			d.err = err
		}
		n, rest := decodeClean(d.out, clean[:k], err != nil)
		d.carry = copy(d.clean, rest)
		d.pending = d.out[:n]
	}
	n := copy(p, d.pending)
	d.pending = d.pending[n:]
	return n, nil
}

// qpReader decodes quoted-printable leniently: "=" not followed by two hex
// digits is a literal "=", trailing white space is dropped, "=" at the end of
// a line joins it to the next. It never fails on its input.
type qpReader struct {
	br      *bufio.Reader
	out     []byte
	pending []byte
	err     error
}

func newQPReader(r io.Reader) *qpReader {
	return &qpReader{br: bufio.NewReaderSize(r, 4<<10)}
}

func (q *qpReader) Read(p []byte) (int, error) {
	for len(q.pending) == 0 {
		if q.err != nil {
			return 0, q.err
		}
		line, err := q.br.ReadSlice('\n')
		if err != nil && err != bufio.ErrBufferFull {
			q.err = err
		}
		q.out = q.decodeLine(q.out[:0], line, err == bufio.ErrBufferFull)
		q.pending = q.out
	}
	n := copy(p, q.pending)
	q.pending = q.pending[n:]
	return n, nil
}

func (q *qpReader) decodeLine(o, line []byte, partial bool) []byte {
	var eol []byte
	if !partial {
		body := bytes.TrimRight(line, "\r\n")
		eol = line[len(body):]
		line = bytes.TrimRight(body, " \t")
		if bytes.HasSuffix(line, []byte("=")) { // soft line break
			line, eol = line[:len(line)-1], nil
		}
	}
	for i := 0; i < len(line); i++ {
		c := line[i]
		if c == '=' && i+2 < len(line) {
			if hi, lo := unhex(line[i+1]), unhex(line[i+2]); hi >= 0 && lo >= 0 {
				o = append(o, byte(hi<<4|lo))
				i += 2
				continue
			}
		}
		o = append(o, c)
	}
	return append(o, eol...)
}

// uuReader decodes x-uuencode: the lines between "begin" and "end". Some
// mailers send the encoded lines alone, without "begin" and "end": the
// first line that is a well-formed encoded line then starts the data.
type uuReader struct {
	br      *bufio.Reader
	out     []byte
	pending []byte
	begun   bool
	err     error
}

func newUUReader(r io.Reader) *uuReader { return &uuReader{br: bufio.NewReader(r)} }

func (u *uuReader) Read(p []byte) (int, error) {
	for len(u.pending) == 0 {
		if u.err != nil {
			return 0, u.err
		}
		line, err := u.br.ReadSlice('\n')
		if err != nil && err != bufio.ErrBufferFull {
			u.err = err
		}
		line = bytes.TrimRight(line, "\r\n")
		switch {
		case !u.begun && bytes.HasPrefix(line, []byte("begin ")):
			u.begun = true
			continue
		case !u.begun && !isUULine(line):
			continue
		case bytes.Equal(bytes.TrimSpace(line), []byte("end")):
			u.err = io.EOF
			continue
		case len(line) == 0:
			continue
		}
		want := int((line[0] - ' ') & 63)
		o := u.out[:0]
		var acc uint32
		k := 0
		for _, c := range line[1:] {
			acc = acc<<6 | uint32((c-' ')&63)
			if k++; k == 4 {
				o = append(o, byte(acc>>16), byte(acc>>8), byte(acc))
				acc, k = 0, 0
			}
		}
		if want < len(o) {
			o = o[:want]
		}
		u.out = o
		u.pending = o
	}
	n := copy(p, u.pending)
	u.pending = u.pending[n:]
	return n, nil
}

// isUULine reports whether line is a well-formed uuencoded data line: its
// length character announces n bytes, and it holds the 4·⌈n/3⌉ characters
// of the uuencode alphabet that encode them (a few trailing extra
// characters, which some encoders add, are allowed).
func isUULine(line []byte) bool {
	if len(line) < 2 || line[0] < ' ' || line[0] > '`' {
		return false
	}
	n := int((line[0] - ' ') & 63)
	if n == 0 {
		return false
	}
	need := (n + 2) / 3 * 4
	if len(line)-1 < need || len(line)-1 > need+2 {
		return false
	}
	for _, c := range line[1:] {
		if c < ' ' || c > '`' {
			return false
		}
	}
	return true
}
