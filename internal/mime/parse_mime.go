package mime

// The lenient MIME layer under Parse: header blocks, multipart splitting,
// Content-Type parameters (RFC 2045, 2231), transfer encodings and charsets.
// go-message (charset registry, address parsing) does the rest; these parts
// are our own because go-message's refuse mail that clients show (a header
// line without a name, boundary=----=_Part… unquoted, a misspelt closing
// boundary) and have no limits on part headers or nesting.

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"math"
	stdmime "mime"
	"net/mail"
	"net/textproto"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/emersion/go-message/charset"
	"golang.org/x/text/encoding/charmap"
)

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

// readLine reads one line including its end, counting into *n and failing
// with errHeaderTooBig beyond max. The result is valid until the next read.
func readLine(br *bufio.Reader, n *int64, max int64) ([]byte, error) {
	return readLineBuf(br, n, max, nil)
}

// readLineBuf is readLine that assembles a line longer than br's buffer in
// long (which it may grow).
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

// ContentType returns the media type and parameters; a missing or unusable
// Content-Type gives text/plain (message/rfc822 inside a digest).
func (d *Decoder) ContentType(h Header, parentType string) (string, map[string]string) {
	def := "text/plain"
	if parentType == "multipart/digest" {
		def = "message/rfc822"
	}
	v := h.Get("Content-Type")
	if strings.TrimSpace(v) == "" {
		return def, nil
	}
	mt, params := d.ParseParams(v)
	if !validMediaType(mt) {
		d.warnf("Content-Type %q not understood: read as %s", truncateForWarning([]byte(v)), def)
		return def, params
	}
	return mt, params
}

func validMediaType(mt string) bool {
	slash := strings.IndexByte(mt, '/')
	if slash <= 0 || slash == len(mt)-1 {
		return false
	}
	for i := 0; i < len(mt); i++ {
		c := mt[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte(`()<>@,;:\"[]?=`, c) >= 0 {
			return false
		}
	}
	return strings.Count(mt, "/") == 1
}

// ParseParams parses a "value; key=val; …" field (Content-Type,
// Content-Disposition) leniently: unquoted values may hold any character but
// ';', a missing closing quote ends the value at the end of the field, RFC
// 2231 extended and continued parameters are joined and decoded in their
// charset, encoded words in values are decoded as clients do. The value and
// parameter names are lower case.
func (d *Decoder) ParseParams(v string) (string, map[string]string) {
	segs := splitParams(v)
	if len(segs) == 0 {
		return "", nil
	}
	value := strings.ToLower(strings.TrimSpace(segs[0]))
	if len(segs) == 1 {
		return value, nil
	}
	params := make(map[string]string)
	type piece struct {
		n       int
		encoded bool
		val     string
	}
	var (
		extended = map[string]string{}  // key*=charset'lang'value
		pieces   = map[string][]piece{} // key*N[*]=value
	)
	for _, seg := range segs[1:] {
		eq := strings.IndexByte(seg, '=')
		if eq < 0 {
			continue
		}
		key := strings.ToLower(strings.TrimSpace(seg[:eq]))
		rv := strings.TrimSpace(seg[eq+1:])
		if base, _, _ := strings.Cut(key, "*"); isNameParam(base) {
			rv = d.capRawName(base, rv)
		}
		val := unquoteParam(rv)
		if key == "" {
			continue
		}
		if star := strings.IndexByte(key, '*'); star > 0 {
			base, rest := key[:star], key[star+1:]
			if rest == "" {
				if _, dup := extended[base]; !dup {
					extended[base] = val
				}
				continue
			}
			encoded := strings.HasSuffix(rest, "*")
			if n, err := strconv.Atoi(strings.TrimSuffix(rest, "*")); err == nil && n >= 0 && n < 1000 {
				pieces[base] = append(pieces[base], piece{n: n, encoded: encoded, val: val})
				continue
			}
		}
		if _, dup := params[key]; !dup {
			params[key] = d.DecodeText(val)
		}
	}
	for base, ps2 := range pieces {
		sort.SliceStable(ps2, func(i, j int) bool { return ps2[i].n < ps2[j].n })
		n := 0
		for n < len(ps2) && ps2[n].n == n {
			n++ // a gap or a duplicate ends the value
		}
		if n == 0 {
			continue
		}
		ps2 = ps2[:n]
		cs := ""
		if ps2[0].encoded {
			cs, ps2[0].val = split2231(ps2[0].val)
		}
		decode := func(p piece) []byte {
			if p.encoded {
				return percentDecode(p.val)
			}
			return []byte(p.val)
		}
		var raw []byte
		limit := len(ps2) * maxRawNameBytes // no limit but the header's
		if isNameParam(base) {
			limit = maxRawNameBytes - rawNameTail
		}
		used := 0
		for ; used < len(ps2) && len(raw) < limit; used++ {
			raw = append(raw, decode(ps2[used])...)
		}
		if used < len(ps2) || len(raw) > limit+rawNameTail {
			// A name longer than maxRawNameBytes: its head and its tail,
			// read from the pieces the head did not use.
			d.warnf("attachment name (%s parameter) of %d continuations: only its first and last bytes read", base, len(ps2))
			var tail []byte
			if used == len(ps2) {
				tail = raw[limit:]
			}
			for i := len(ps2) - 1; i >= used && len(tail) < rawNameTail; i-- {
				tail = append(decode(ps2[i]), tail...)
			}
			raw = append([]byte(truncateUTF8(string(raw[:min(len(raw), limit+utf8.UTFMax)]), limit)), tail[tailStart(tail, rawNameTail):]...)
		}
		params[base] = d.decode2231(raw, cs, ps2[0].encoded)
	}
	for base, val := range extended {
		cs, text := split2231(val)
		params[base] = d.decode2231(percentDecode(text), cs, true)
	}
	return value, params
}

// isNameParam reports the parameters that carry a file name.
func isNameParam(key string) bool { return key == "filename" || key == "name" }

func (d *Decoder) decode2231(raw []byte, cs string, encoded bool) string {
	if !encoded || cs == "" {
		return d.DecodeText(string(raw))
	}
	s, warning := DecodeCharset(raw, cs)
	if warning != "" {
		d.warnf("parameter %s", warning)
	}
	return s
}

// splitParams splits at semicolons outside quoted strings.
func splitParams(v string) []string {
	var segs []string
	start, quoted := 0, false
	for i := 0; i < len(v); i++ {
		switch v[i] {
		case '\\':
			if quoted {
				i++
			}
		case '"':
			quoted = !quoted
		case ';':
			if !quoted {
				segs = append(segs, v[start:i])
				start = i + 1
			}
		}
	}
	return append(segs, v[start:])
}

// unquoteParam removes the quotes of a quoted string (a missing closing quote
// is forgiven) and its backslash escapes.
func unquoteParam(v string) string {
	if len(v) == 0 || v[0] != '"' {
		return v
	}
	var b strings.Builder
	b.Grow(len(v) - 1)
	for i := 1; i < len(v); i++ {
		switch c := v[i]; c {
		case '\\':
			if i+1 < len(v) {
				i++
				b.WriteByte(v[i])
			}
		case '"':
			return b.String()
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// split2231 splits "charset'language'text"; without the two quotes it is all text.
func split2231(v string) (cs, text string) {
	parts := strings.SplitN(v, "'", 3)
	if len(parts) != 3 {
		return "", v
	}
	return parts[0], parts[2]
}

// percentDecode decodes %XX escapes; a malformed escape stays as it is.
func percentDecode(s string) []byte {
	out := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		if s[i] == '%' && i+2 < len(s) {
			if hi, lo := unhex(s[i+1]), unhex(s[i+2]); hi >= 0 && lo >= 0 {
				out = append(out, byte(hi<<4|lo))
				i += 2
				continue
			}
		}
		out = append(out, s[i])
	}
	return out
}

func unhex(c byte) int {
	switch {
	case '0' <= c && c <= '9':
		return int(c - '0')
	case 'a' <= c && c <= 'f':
		return int(c-'a') + 10
	case 'A' <= c && c <= 'F':
		return int(c-'A') + 10
	}
	return -1
}

// Splitter reads the parts of a multipart body. It finds delimiter lines
// ("--boundary") with either CRLF or LF line ends, forgives a missing or
// misspelt closing delimiter, and keeps what precedes the first delimiter
// (bounded), for a multipart that has none.
type Splitter struct {
	d      *Decoder
	br     *bufio.Reader
	nlDash []byte // "\n--boundary"
	dash   []byte // "--boundary"
	part   *mimePart
	done   bool

	// What Next has seen so far; complete once it returned io.EOF.

	// Parts counts the parts returned.
	Parts int
	// Unterminated is true when the body ended without a closing delimiter.
	Unterminated bool
	// SloppyClose is true when the closing delimiter was misspelt
	// ("--boundary-").
	SloppyClose bool
	// Preamble holds the start of what precedes the first delimiter, at most
	// the Decoder's MaxPreambleBytes.
	Preamble []byte
}

// NewSplitter returns a Splitter over the multipart body r; boundary is
// the Content-Type's boundary parameter. Part headers are read with d.
func (d *Decoder) NewSplitter(r io.Reader, boundary string) *Splitter {
	nl := []byte("\n--" + boundary)
	return &Splitter{d: d, br: bufio.NewReaderSize(r, 16<<10), nlDash: nl, dash: nl[1:]}
}

type delimKind int

const (
	noDelim delimKind = iota
	needMore
	openDelim
	closeDelim
	sloppyCloseDelim
)

// classifyDelimiter looks at what follows "--boundary" up to the end of the line:
// optional white space (a delimiter), "--" (the closing delimiter) or a single
// "-" (a misspelt closing delimiter, seen in the wild). Anything else means a
// longer boundary, not ours.
func classifyDelimiter(rest []byte, eof bool) delimKind {
	line := rest
	if nl := bytes.IndexByte(rest, '\n'); nl >= 0 {
		line = rest[:nl]
	} else if !eof {
		if len(rest) > 256 {
			return noDelim
		}
		return needMore
	}
	line = bytes.TrimRight(line, "\r")
	switch {
	case len(bytes.Trim(line, " \t")) == 0:
		return openDelim
	case bytes.HasPrefix(line, []byte("--")):
		return closeDelim
	case line[0] == '-' && len(bytes.Trim(line[1:], " \t")) == 0:
		return sloppyCloseDelim
	}
	return noDelim
}

// Next returns the next part's header and body, or io.EOF after the last.
// The previous part's body is skipped if it was not read to its end.
func (s *Splitter) Next() (Header, io.Reader, error) {
	if s.part != nil {
		if _, err := io.Copy(io.Discard, s.part); err != nil {
			return nil, nil, err
		}
		s.part = nil
	}
	if s.done {
		return nil, nil, io.EOF
	}
	longLine := false
	for {
		line, err := s.br.ReadSlice('\n')
		if !longLine && bytes.HasPrefix(line, s.dash) {
			kind := classifyDelimiter(line[len(s.dash):], true)
			switch kind {
			case openDelim:
				s.Parts++
				part := &mimePart{s: s}
				s.part = part
				h, body, err := s.d.ReadHeader(bufio.NewReaderSize(part, 2048))
				if err != nil {
					return nil, nil, err
				}
				return h, body, nil
			case closeDelim, sloppyCloseDelim:
				s.SloppyClose = kind == sloppyCloseDelim
				s.done = true
				return nil, nil, io.EOF
			}
		}
		longLine = err == bufio.ErrBufferFull
		if s.Parts == 0 && int64(len(s.Preamble)) < s.d.MaxPreambleBytes {
			s.Preamble = append(s.Preamble, line[:min(int64(len(line)), s.d.MaxPreambleBytes-int64(len(s.Preamble)))]...)
		}
		switch {
		case err == nil, err == bufio.ErrBufferFull:
		case err == io.EOF:
			s.done, s.Unterminated = true, true
			return nil, nil, io.EOF
		default:
			return nil, nil, err
		}
	}
}

// mimePart reads one part's body from the splitter, up to the CRLF or LF
// that precedes the next delimiter line.
type mimePart struct {
	s       *Splitter
	n       int   // bytes in s.br known to belong to the part
	err     error // returned once those are read: io.EOF at the delimiter
	total   int64
	readErr error
}

func (p *mimePart) Read(d []byte) (int, error) {
	br := p.s.br
	for p.n == 0 && p.err == nil {
		peek, _ := br.Peek(br.Buffered())
		p.n, p.err = p.scan(peek)
		if p.n == 0 && p.err == nil {
			if p.readErr == bufio.ErrBufferFull {
				return 0, malformed("multipart delimiter not found in a full buffer")
			}
			_, p.readErr = br.Peek(len(peek) + 1)
		}
	}
	if p.n == 0 {
		if p.err == errUnterminated {
			p.s.done, p.s.Unterminated = true, true
			return 0, io.EOF
		}
		return 0, p.err
	}
	n, _ := br.Read(d[:min(len(d), p.n)])
	p.total += int64(n)
	p.n -= n
	return n, nil
}

var errUnterminated = errors.New("multipart ends without its closing boundary")

// scan decides how many bytes of buf belong to the part and what follows them.
func (p *mimePart) scan(buf []byte) (int, error) {
	s := p.s
	eof := p.readErr != nil && p.readErr != bufio.ErrBufferFull
	endErr := func() error {
		if p.readErr == io.EOF {
			return errUnterminated
		}
		return p.readErr
	}
	if p.total == 0 {
		if bytes.HasPrefix(buf, s.dash) { // an empty part: the delimiter follows the header at once
			switch classifyDelimiter(buf[len(s.dash):], eof) {
			case needMore:
				return 0, nil
			case openDelim, closeDelim, sloppyCloseDelim:
				return 0, io.EOF
			}
		} else if bytes.HasPrefix(s.dash, buf) {
			if eof {
				return len(buf), endErr()
			}
			return 0, nil
		}
	}
	for off := 0; ; {
		i := bytes.Index(buf[off:], s.nlDash)
		if i < 0 {
			break
		}
		i += off
		end := i
		if end > 0 && buf[end-1] == '\r' {
			end--
		}
		switch classifyDelimiter(buf[i+len(s.nlDash):], eof) {
		case needMore:
			return end, nil
		case openDelim, closeDelim, sloppyCloseDelim:
			return end, io.EOF
		}
		off = i + 1
	}
	if eof {
		return len(buf), endErr()
	}
	// Hold back a tail that may be the start of a delimiter.
	safe := len(buf)
	if j := bytes.LastIndexByte(buf, '\n'); j >= 0 && bytes.HasPrefix(s.nlDash, buf[j:]) {
		safe = j
	}
	if safe > 0 && buf[safe-1] == '\r' {
		safe--
	}
	return safe, nil
}

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

// uuReader decodes x-uuencode: the lines between "begin" and "end".
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
		case !u.begun:
			u.begun = bytes.HasPrefix(line, []byte("begin "))
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

// Charset labels read as windows-1252, as browsers and mail clients do: it
// is a superset that gives the C1 range printable characters.
var latin1Labels = map[string]bool{
	"iso-8859-1": true, "iso8859-1": true, "iso_8859-1": true, "latin1": true, "l1": true,
	"iso-ir-100": true, "csisolatin1": true, "cp819": true, "ibm819": true, "iso_8859-1:1987": true,
	"windows-1252": true, "cp1252": true, "x-cp1252": true, "ansi_x3.110-1983": true,
}

var utf8Labels = map[string]bool{
	"": true, "utf-8": true, "utf8": true, "unicode-1-1-utf-8": true, "x-unicode20utf8": true,
	"us-ascii": true, "ascii": true, "ansi_x3.4-1968": true, "iso646-us": true, "us": true, "646": true,
}

// DecodeCharset decodes b from the charset label. The declared charset wins;
// the warning says how it degraded: undeclared or unknown charsets are read
// as UTF-8 with invalid bytes taken as windows-1252; when the bytes are not
// valid in a declared multi-byte charset, they are read as UTF-8 if they are
// valid UTF-8, and otherwise as windows-1252, unless only a few characters
// are broken (those become U+FFFD).
func DecodeCharset(b []byte, label string) (string, string) {
	cs := strings.ToLower(strings.Trim(label, " \t\"'"))
	switch {
	case utf8Labels[cs]:
		if utf8.Valid(b) {
			return string(b), ""
		}
		name := cs
		if name == "" {
			name = "us-ascii"
		}
		return fixUTF8(b), fmt.Sprintf("is not valid %s: invalid bytes decoded as windows-1252", name)
	case latin1Labels[cs]:
		return decode1252(b), ""
	}
	r, err := charset.Reader(cs, bytes.NewReader(b))
	if err != nil {
		return fixUTF8(b), fmt.Sprintf("has an unknown charset %q: read as UTF-8", truncateForWarning([]byte(label)))
	}
	out, err := io.ReadAll(r)
	if err != nil {
		return fixUTF8(b), fmt.Sprintf("could not be decoded as %s: read as UTF-8", cs)
	}
	s := string(out)
	bad := strings.Count(s, "\uFFFD") - bytes.Count(b, []byte("\uFFFD"))
	if bad <= 0 {
		if utf8.ValidString(s) {
			return s, ""
		}
		return strings.ToValidUTF8(s, "\uFFFD"), ""
	}
	if utf8.Valid(b) {
		return string(b), fmt.Sprintf("is not valid %s: read as UTF-8", cs)
	}
	if bad*100 > utf8.RuneCountInString(s) {
		return decode1252(b), fmt.Sprintf("is not valid %s: decoded as windows-1252", cs)
	}
	return strings.ToValidUTF8(s, "\uFFFD"), fmt.Sprintf("has %d bytes not valid in %s: replaced by U+FFFD", bad, cs)
}

func decode1252(b []byte) string {
	s, err := charmap.Windows1252.NewDecoder().Bytes(b)
	if err != nil {
		return strings.ToValidUTF8(string(b), "\uFFFD")
	}
	return string(s)
}

// fixUTF8 keeps valid UTF-8 and decodes every invalid byte as windows-1252.
func fixUTF8(b []byte) string {
	var sb strings.Builder
	sb.Grow(len(b) + len(b)/8)
	for len(b) > 0 {
		r, size := utf8.DecodeRune(b)
		if r == utf8.RuneError && size <= 1 {
			sb.WriteString(decode1252(b[:1]))
			b = b[1:]
			continue
		}
		sb.Write(b[:size])
		b = b[size:]
	}
	return sb.String()
}

// fixHeaderBytes makes a raw header value valid UTF-8. Undeclared 8-bit bytes
// are decoded in the message's charset when it has one that fits, as mail
// clients do, otherwise as windows-1252.
func (d *Decoder) fixHeaderBytes(s string) string {
	if utf8.ValidString(s) {
		return s
	}
	cs := strings.ToLower(strings.Trim(d.TopCharset, " \t\"'"))
	if !utf8Labels[cs] {
		if dec, warning := DecodeCharset([]byte(s), cs); warning == "" {
			d.warnf("header has undeclared 8-bit bytes: decoded as %s, the message's charset", cs)
			return dec
		}
	}
	d.warnf("header has undeclared 8-bit bytes: decoded as windows-1252")
	return fixUTF8([]byte(s))
}

// DecodeText decodes a header value: raw 8-bit bytes, then RFC 2047 encoded
// words. Adjacent encoded words in one charset are joined before decoding,
// so a character split across two words survives; B words with bad padding
// and Q words with spaces are decoded as clients do.
func (d *Decoder) DecodeText(v string) string {
	v = d.fixHeaderBytes(v)
	if !strings.Contains(v, "=?") {
		return v
	}
	var (
		out       strings.Builder
		pendingCS string
		pending   []byte // decoded bytes of adjacent encoded words in pendingCS
	)
	flush := func() {
		if pending != nil {
			s, warning := DecodeCharset(pending, pendingCS)
			if warning != "" {
				d.warnf("encoded word %s", warning)
			}
			out.WriteString(s)
			pending, pendingCS = nil, ""
		}
	}
	for {
		start := strings.Index(v, "=?")
		if start < 0 {
			break
		}
		cs, raw, n, ok := parseEncodedWord(v[start:])
		if !ok {
			flush()
			out.WriteString(v[:start+2])
			v = v[start+2:]
			continue
		}
		// White space between two encoded words is dropped (RFC 2047 6.2).
		if gap := v[:start]; pending == nil || strings.Trim(gap, " \t") != "" {
			flush()
			out.WriteString(gap)
		}
		if pending != nil && !strings.EqualFold(pendingCS, cs) {
			flush()
		}
		if pending == nil {
			pending, pendingCS = []byte{}, cs
		}
		pending = append(pending, raw...)
		v = v[start+n:]
	}
	flush()
	out.WriteString(v)
	return out.String()
}

// parseEncodedWord parses "=?charset?enc?text?=" at the start of s and
// returns the charset, the decoded bytes and the length consumed.
func parseEncodedWord(s string) (cs string, raw []byte, n int, ok bool) {
	rest := s[2:]
	q1 := strings.IndexByte(rest, '?')
	if q1 <= 0 || q1 > 64 || len(rest) < q1+3 || rest[q1+2] != '?' {
		return "", nil, 0, false
	}
	cs = rest[:q1]
	if i := strings.IndexByte(cs, '*'); i >= 0 { // RFC 2231 language suffix
		cs = cs[:i]
	}
	if strings.ContainsAny(cs, " \t\"()<>@,;:/[]=") {
		return "", nil, 0, false
	}
	enc := rest[q1+1]
	text := rest[q1+3:]
	end := strings.Index(text, "?=")
	if end < 0 || strings.ContainsAny(text[:end], "?\r\n") {
		return "", nil, 0, false
	}
	text = text[:end]
	switch enc {
	case 'B', 'b':
		raw = decodeBase64(text)
	case 'Q', 'q':
		raw = make([]byte, 0, len(text))
		for i := 0; i < len(text); i++ {
			c := text[i]
			switch {
			case c == '_':
				raw = append(raw, ' ')
			case c == '=' && i+2 < len(text) && unhex(text[i+1]) >= 0 && unhex(text[i+2]) >= 0:
				raw = append(raw, byte(unhex(text[i+1])<<4|unhex(text[i+2])))
				i += 2
			default:
				raw = append(raw, c)
			}
		}
	default:
		return "", nil, 0, false
	}
	return cs, raw, 2 + q1 + 3 + end + 2, true
}

// Addresses parses an address list header with go-message (net/mail); when
// it refuses the value, a lenient reading keeps whatever looks like an
// address, as mail clients show it.
func (d *Decoder) Addresses(h Header, key string) []Address {
	raw := d.fixHeaderBytes(h.Get(key))
	if strings.TrimSpace(raw) == "" {
		return nil
	}
	parser := mail.AddressParser{WordDecoder: mimeWordDecoder(d)}
	list, err := parser.ParseList(raw)
	var out []Address
	if err != nil {
		d.warnf("%s: %v: read leniently", key, err)
		out = d.lenientAddresses(raw)
	} else {
		out = make([]Address, 0, len(list))
		for _, a := range list {
			name := a.Name
			if strings.Contains(name, "=?") { // an encoded word inside quotes: clients decode it too
				name = d.DecodeText(name)
			}
			out = append(out, Address{Name: strings.ToValidUTF8(name, "\uFFFD"), Address: strings.ToValidUTF8(a.Address, "\uFFFD")})
		}
	}
	// Display names come from encoded words, which may hold CR, LF or NUL;
	// a quoted local part may too.
	for i := range out {
		out[i].Name = d.SingleLine(key+" name", out[i].Name)
		out[i].Address = d.SingleLine(key+" address", out[i].Address)
	}
	return out
}

// stripComments removes RFC 5322 comments (nested, with escapes) outside
// quoted strings and angle brackets' quoted parts.
func stripComments(s string) string {
	if !strings.Contains(s, "(") {
		return s
	}
	var b strings.Builder
	depth, quoted := 0, false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '\\' && (quoted || depth > 0):
			if depth == 0 {
				b.WriteByte(c)
				if i+1 < len(s) {
					b.WriteByte(s[i+1])
				}
			}
			i++
		case quoted:
			if c == '"' {
				quoted = false
			}
			b.WriteByte(c)
		case c == '(':
			depth++
		case c == ')' && depth > 0:
			depth--
			if depth == 0 {
				b.WriteByte(' ')
			}
		case depth > 0:
		case c == '"':
			quoted = true
			b.WriteByte(c)
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// lenientAddresses reads an address list that the strict parser refused:
// comments and group names are dropped, obsolete routes removed, an item
// without angle brackets gives one address per word with an "@".
func (d *Decoder) lenientAddresses(raw string) []Address {
	s := stripComments(raw)
	var items []string
	start, quoted, angle := 0, false, false
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '\\' && quoted:
			i++
		case c == '"':
			quoted = !quoted
		case quoted:
		case c == '<':
			angle = true
		case c == '>':
			angle = false
		case angle:
		case c == ',' || c == ';':
			items = append(items, s[start:i])
			start = i + 1
		case c == ':': // a group's display name
			start = i + 1
		}
	}
	items = append(items, s[start:])
	var out []Address
	for _, item := range items {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		if i, j := strings.LastIndex(item, "<"), strings.LastIndex(item, ">"); i >= 0 && j > i {
			addr := strings.Join(strings.Fields(item[i+1:j]), "")
			if k := strings.LastIndexByte(addr, ':'); strings.HasPrefix(addr, "@") && k >= 0 { // obs-route
				addr = addr[k+1:]
			}
			out = append(out, Address{Name: d.displayName(item[:i]), Address: addr})
			continue
		}
		if !strings.Contains(item, "@") {
			out = append(out, Address{Name: d.displayName(item)})
			continue
		}
		// "jdoe@test . example", "a@x b@y", "Big Bug bb@bug.com"
		item = strings.Join(strings.Fields(item), " ")
		for _, sep := range []string{".", "@"} {
			item = strings.ReplaceAll(strings.ReplaceAll(item, " "+sep, sep), sep+" ", sep)
		}
		var name []string
		var addrs []string
		for _, w := range strings.Fields(item) {
			if strings.Contains(w, "@") {
				addrs = append(addrs, strings.Trim(w, `"<>`))
			} else {
				name = append(name, w)
			}
		}
		for k, a := range addrs {
			ad := Address{Address: a}
			if k == 0 {
				ad.Name = d.displayName(strings.Join(name, " "))
			}
			out = append(out, ad)
		}
	}
	return out
}

func (d *Decoder) displayName(s string) string {
	s = strings.TrimSpace(s)
	if len(s) >= 2 && s[0] == '"' {
		s = unquoteParam(s)
	}
	s = strings.Join(strings.Fields(s), " ")
	return strings.ToValidUTF8(d.DecodeText(s), "\uFFFD")
}

// MsgIDs extracts message identifiers ("<id>" …) without angle brackets;
// white space and comments inside are dropped, a bare id without brackets is
// taken as it is.
func MsgIDs(v string) []string {
	v = stripComments(v)
	if strings.TrimSpace(v) == "" {
		return nil
	}
	var ids []string
	if strings.Contains(v, "<") {
		for {
			i := strings.IndexByte(v, '<')
			if i < 0 {
				break
			}
			j := strings.IndexByte(v[i:], '>')
			if j < 0 {
				j = len(v) - i
			}
			if id := strings.Join(strings.Fields(v[i+1:i+j]), ""); id != "" {
				ids = append(ids, strings.ToValidUTF8(id, "\uFFFD"))
			}
			if i+j >= len(v) {
				break
			}
			v = v[i+j+1:]
		}
		return ids
	}
	for _, f := range strings.Fields(v) {
		if f = strings.Trim(f, "<>,"); f != "" {
			ids = append(ids, strings.ToValidUTF8(f, "\uFFFD"))
		}
	}
	return ids
}

// MsgIDOrRaw returns the first message identifier of v, or v trimmed.
func MsgIDOrRaw(v string) string {
	if ids := MsgIDs(v); len(ids) > 0 {
		return ids[0]
	}
	return strings.ToValidUTF8(strings.TrimSpace(v), "\uFFFD")
}

// mimeWordDecoder is the decoder go-message's address parser uses for
// display names; charsets go through DecodeCharset, so none is unknown.
func mimeWordDecoder(d *Decoder) *stdmime.WordDecoder {
	return &stdmime.WordDecoder{CharsetReader: func(label string, input io.Reader) (io.Reader, error) {
		b, err := io.ReadAll(input)
		if err != nil {
			return nil, err
		}
		s, warning := DecodeCharset(b, label)
		if warning != "" {
			d.warnf("encoded word %s", warning)
		}
		return strings.NewReader(s), nil
	}}
}

// Zones of RFC 5322's obsolete syntax; Go would give them the local offset
// or zero.
var obsZones = map[string]int{
	"UT": 0, "GMT": 0, "Z": 0, "EST": -5, "EDT": -4, "CST": -6, "CDT": -5, "MST": -7, "MDT": -6, "PST": -8, "PDT": -7,
}

var lenientDateLayouts = []string{
	time.RFC1123Z, time.RFC1123, time.RFC850, time.ANSIC, time.UnixDate, time.RubyDate, time.RFC3339,
	"Mon, 2 Jan 2006 15:04:05 -0700", "Mon, 2 Jan 2006 15:04:05 MST", "2 Jan 2006 15:04:05 -0700",
	"Mon, 2 Jan 06 15:04:05 -0700", "Mon, 2 Jan 2006 15:04 -0700", "Mon, 2 Jan 2006 15:04:05 -0700 MST",
	"Mon 2 Jan 2006 15:04:05 -0700", "2006-01-02 15:04:05 -0700", "2 Jan 2006 15:04:05 MST",
	"Mon, 2 Jan 2006 15:04:05", "2 Jan 2006 15:04:05", "Mon, 2 Jan 2006 15:04 MST",
}

// Date parses the Date field with net/mail, then leniently (comments and
// white space around colons removed, more layouts). A date nothing
// understands is the zero time, with a warning.
func (d *Decoder) Date(raw string) time.Time {
	raw = strings.TrimSpace(raw)
	if raw == "" {
		return time.Time{}
	}
	if t, err := mail.ParseDate(raw); err == nil {
		return fixZone(t)
	}
	clean := strings.Join(strings.Fields(stripComments(raw)), " ")
	clean = strings.ReplaceAll(strings.ReplaceAll(clean, " :", ":"), ": ", ":")
	clean = strings.Replace(clean, ",", ", ", 1)
	clean = strings.Join(strings.Fields(clean), " ")
	for _, layout := range lenientDateLayouts {
		if t, err := time.Parse(layout, clean); err == nil {
			return fixZone(t)
		}
	}
	d.warnf("date %q not understood", truncateForWarning([]byte(raw)))
	return time.Time{}
}

// fixZone gives the obsolete zone names their RFC 5322 offsets.
func fixZone(t time.Time) time.Time {
	name, off := t.Zone()
	if h, ok := obsZones[strings.ToUpper(name)]; ok && off != h*3600 {
		y, mo, d := t.Date()
		hh, mm, ss := t.Clock()
		return time.Date(y, mo, d, hh, mm, ss, t.Nanosecond(), time.FixedZone(name, h*3600))
	}
	return t
}

// maxRawNameBytes bounds what the parser decodes of a filename or name
// parameter (after joining RFC 2231 continuations, before percent escapes,
// encoded words and charsets are decoded): longer values keep their first
// bytes and their last rawNameTail bytes, which hold the extension. The
// header block is already bounded by MaxHeaderBytes; this keeps a name of a
// million characters from being decoded, copied and sanitised whole.
const (
	maxRawNameBytes = 4 << 10
	rawNameTail     = 512
)

// maxFilenameBytes bounds an attachment's file name: 255 bytes of UTF-8, the
// limit of most file systems (NAME_MAX), so a sink that stores attachments
// under their names never meets ENAMETOOLONG.
const maxFilenameBytes = 255

// maxFilenameExt is the longest extension kept when a name is shortened.
const maxFilenameExt = 32

// capRawName cuts a raw parameter value of more than maxRawNameBytes to its
// head and tail, with a warning.
func (d *Decoder) capRawName(key, raw string) string {
	if len(raw) <= maxRawNameBytes {
		return raw
	}
	d.warnf("attachment name (%s parameter) of %d bytes: only its first and last bytes read", key, len(raw))
	return truncateUTF8(raw, maxRawNameBytes-rawNameTail) + raw[tailStart(raw, rawNameTail):]
}

// tailStart is where the last n bytes of s start, moved forward so as not
// to split a UTF-8 character.
func tailStart[T string | []byte](s T, n int) int {
	i := max(0, len(s)-n)
	for i < len(s) && !utf8.RuneStart(s[i]) {
		i++
	}
	return i
}

// AttachmentName sanitises a decoded file name (see cleanFilename) and
// warns when that changed it.
func (d *Decoder) AttachmentName(name string) string {
	clean, why := cleanFilename(name)
	if len(why) > 0 {
		d.warnf("attachment name %q changed to %q: %s", truncateForWarning([]byte(name)), truncateForWarning([]byte(clean)), strings.Join(why, ", "))
	}
	return clean
}

// cleanFilename makes a file name safe to store under: control characters
// and Unicode format characters (bidi overrides and isolates, zero-width
// characters, BOM, tag characters; category Cf) are removed, only the last
// path element is kept and a drive prefix ("C:") removed, so a sink that
// stores attachments cannot be sent elsewhere nor shown a name that reads
// differently from what it is ("invoice\u202Efdp.exe"), and the name is
// cut to 255 bytes of UTF-8 on a character boundary, keeping its extension.
// It returns the reasons for any change beyond trimming white space.
func cleanFilename(name string) (string, []string) {
	var why []string
	name = strings.ToValidUTF8(name, "\uFFFD")
	if strings.IndexFunc(name, InvisibleInName) >= 0 {
		name = strings.Map(func(r rune) rune {
			if InvisibleInName(r) {
				return -1
			}
			return r
		}, name)
		why = append(why, "control or format characters removed")
	}
	if i := strings.LastIndexAny(name, `/\`); i >= 0 {
		name = name[i+1:]
		why = append(why, "path removed")
	}
	if len(name) >= 2 && name[1] == ':' && ('a' <= name[0]|0x20 && name[0]|0x20 <= 'z') {
		name = name[2:]
		why = append(why, "drive removed")
	}
	name = strings.TrimSpace(name)
	if name == "." || name == ".." {
		return "", append(why, "no name left")
	}
	if len(name) > maxFilenameBytes {
		why = append(why, fmt.Sprintf("shortened to %d bytes", maxFilenameBytes))
		ext := ""
		if dot := strings.LastIndexByte(name, '.'); dot > 0 && len(name)-dot <= maxFilenameExt && !strings.ContainsAny(name[dot:], " \t") {
			ext = name[dot:]
		}
		name = truncateUTF8(name[:len(name)-len(ext)], maxFilenameBytes-len(ext)) + ext
	}
	return name, why
}

// InvisibleInName reports the characters a file name must not hold:
// controls (C0, DEL, C1), line and paragraph separators, and format
// characters (Cf: U+200B–U+200F, U+202A–U+202E, U+2066–U+2069, U+FEFF, …).
func InvisibleInName(r rune) bool {
	return r < 0x20 || (0x7f <= r && r <= 0x9f) || r == 0x2028 || r == 0x2029 || unicode.Is(unicode.Cf, r)
}

// truncateUTF8 cuts s to at most n bytes without splitting a character.
func truncateUTF8(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
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

// Unflow joins the soft line breaks of format=flowed text (RFC 3676): a line
// ending in a space continues on the next line of the same quote depth. Space
// stuffing is removed; with delsp=yes the space before the break goes too.
// The signature separator "-- " is never joined.
func Unflow(s string, delsp bool) string {
	var out, para strings.Builder
	depth := -1 // quote depth of the paragraph being joined
	flush := func() {
		if depth < 0 {
			return
		}
		if depth > 0 {
			out.WriteString(strings.Repeat(">", depth))
			out.WriteByte(' ')
		}
		out.WriteString(para.String())
		out.WriteByte('\n')
		para.Reset()
		depth = -1
	}
	trailingNL := strings.HasSuffix(s, "\n")
	for _, line := range strings.Split(strings.TrimSuffix(s, "\n"), "\n") {
		q := 0
		for q < len(line) && line[q] == '>' {
			q++
		}
		content := strings.TrimPrefix(line[q:], " ")
		if depth >= 0 && q != depth {
			flush()
		}
		flowed := strings.HasSuffix(content, " ") && content != "-- "
		if flowed && delsp {
			content = content[:len(content)-1]
		}
		para.WriteString(content)
		depth = q
		if !flowed {
			flush()
		}
	}
	flush()
	r := out.String()
	if !trailingNL {
		r = strings.TrimSuffix(r, "\n")
	}
	return r
}

// NormalizeNewlines turns CRLF and lone CR line ends into LF.
func NormalizeNewlines(s string) string {
	if !strings.Contains(s, "\r") {
		return s
	}
	s = strings.ReplaceAll(s, "\r\n", "\n")
	return strings.ReplaceAll(s, "\r", "\n")
}
