package mime

import "fmt"

const (
	// MaxHeaderFields bounds the fields of one header block, so a header of
	// millions of tiny fields cannot cost gigabytes of memory.
	MaxHeaderFields = 10000
	// MaxBoundaryLen is the longest multipart boundary used: RFC 2046
	// allows 70 characters; anything longer than a line is not a boundary.
	MaxBoundaryLen = 998
)

// A Decoder reads the MIME structure of one message: header blocks,
// parameters, multipart bodies, transfer encodings, charsets, encoded
// words, addresses and dates. Every repair it makes is reported through
// Warn. A Decoder holds buffers reused across the message, so it serves one
// message at a time; the zero value has no limits and drops warnings.
type Decoder struct {
	// MaxHeaderBytes bounds each header block (<= 0: no limit).
	MaxHeaderBytes int64
	// MaxPreambleBytes bounds what a Splitter keeps of the text before a
	// multipart's first delimiter (<= 0: nothing).
	MaxPreambleBytes int64
	// Warn receives a line for each repair; nil drops them.
	Warn func(string)
	// TopCharset is the charset of the message's top-level Content-Type,
	// used for undeclared 8-bit bytes in header fields as mail clients do.
	TopCharset string
	// HeaderGuessed is set when a header field's undeclared 8-bit bytes
	// fell back to windows-1252: the caller may decode the header again
	// with a charset it learns from the body.
	HeaderGuessed bool

	longLine []byte // ReadLine's buffer for header lines longer than a bufio buffer
	fieldBuf []byte // ReadHeader's buffer for a field's unfolded value
}

func (d *Decoder) warnf(format string, args ...any) {
	if d.Warn != nil {
		d.Warn(fmt.Sprintf(format, args...))
	}
}

// MalformedError is input the Decoder cannot read past (a header block or
// a part beyond the limits). The message is not usable; mailsync reports it
// as ErrMalformed.
type MalformedError struct {
	// Reason says what is wrong ("more than 10000 header fields").
	Reason string
}

// Error says what is wrong.
func (e *MalformedError) Error() string { return "malformed MIME: " + e.Reason }

func malformed(format string, args ...any) error {
	return &MalformedError{Reason: fmt.Sprintf(format, args...)}
}
