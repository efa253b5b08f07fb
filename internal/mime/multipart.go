package mime

import (
	"bufio"
	"bytes"
	"errors"
	"io"
)

// Multipart bodies split into their parts.

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
	tee    io.Writer // receives the raw bytes of the next part (CaptureNext)

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

// CaptureNext makes the next part that Next returns copy its raw bytes,
// header and body exactly as they stand between its delimiter line and the
// line end before the next delimiter (what RFC 1847 multipart/signed
// signs), to w as they are read — also those Next skips when the caller
// did not read the part to its end. Write errors are ignored: w bounds
// itself.
func (s *Splitter) CaptureNext(w io.Writer) { s.tee = w }

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
				part := &mimePart{s: s, tee: s.tee}
				s.tee = nil
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
	tee     io.Writer // a copy of the bytes read, or nil
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
	if p.tee != nil {
		_, _ = p.tee.Write(d[:n])
	}
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
