package mailsync

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/textproto"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/emersion/go-message"
	_ "github.com/emersion/go-message/charset" // windows-1252, ISO-2022-JP, iso-8859-*, …
	"github.com/emersion/go-message/mail"
	"github.com/microcosm-cc/bluemonday"
	"golang.org/x/text/encoding/charmap"
)

// Limits bound what one message may cost. A message that breaks one is
// quarantined with its raw bytes, never dropped.
type Limits struct {
	// MaxMessageBytes is the largest raw message accepted (default 64 MiB).
	// Larger ones are quarantined without being downloaded when the source
	// knows the size up front.
	MaxMessageBytes int64
	// MaxHeaderBytes bounds the top-level header block (default 1 MiB).
	MaxHeaderBytes int64
	// MaxDepth bounds MIME nesting (default 32).
	MaxDepth int
	// MaxParts bounds the number of MIME parts (default 1000).
	MaxParts int
	// MaxTextBytes bounds the text and HTML bodies kept in memory (default
	// 4 MiB each); longer bodies are truncated with a warning.
	MaxTextBytes int64
}

// DefaultLimits returns the default limits.
func DefaultLimits() Limits {
	return Limits{
		MaxMessageBytes: 64 << 20,
		MaxHeaderBytes:  1 << 20,
		MaxDepth:        32,
		MaxParts:        1000,
		MaxTextBytes:    4 << 20,
	}
}

func (l Limits) withDefaults() Limits {
	d := DefaultLimits()
	if l.MaxMessageBytes <= 0 {
		l.MaxMessageBytes = d.MaxMessageBytes
	}
	if l.MaxHeaderBytes <= 0 {
		l.MaxHeaderBytes = d.MaxHeaderBytes
	}
	if l.MaxDepth <= 0 {
		l.MaxDepth = d.MaxDepth
	}
	if l.MaxParts <= 0 {
		l.MaxParts = d.MaxParts
	}
	if l.MaxTextBytes <= 0 {
		l.MaxTextBytes = d.MaxTextBytes
	}
	return l
}

// Parser turns raw RFC 5322 mail into Messages. The zero value uses
// DefaultLimits and the system's temporary directory. A Parser is safe for
// concurrent use.
type Parser struct {
	// Limits bound each message; zero fields take the defaults.
	Limits Limits
	// TempDir holds large attachments while their ticket is handed over
	// ("" means os.TempDir()).
	TempDir string
	// SpoolThreshold is how many bytes of an attachment stay in memory
	// before it moves to a temporary file (default 256 KiB).
	SpoolThreshold int

	policy *bluemonday.Policy
}

func (p *Parser) htmlPolicy() *bluemonday.Policy {
	if p.policy == nil {
		return defaultHTMLPolicy
	}
	return p.policy
}

var defaultHTMLPolicy = newHTMLPolicy()

func newHTMLPolicy() *bluemonday.Policy {
	pol := bluemonday.UGCPolicy()
	pol.AllowURLSchemes("mailto", "http", "https", "cid")
	pol.AllowAttrs("style").Globally() // keep mail layout; bluemonday filters dangerous CSS
	pol.AllowElements("center", "font")
	pol.AllowAttrs("color", "face", "size").OnElements("font")
	pol.AllowAttrs("bgcolor", "align", "valign", "width", "height", "border", "cellpadding", "cellspacing").Globally()
	return pol
}

// Parse reads one raw message from r and parses it. Attachments are kept in
// memory or temporary files until m.Close is called. The error matches
// ErrMalformed or ErrOversized when the message cannot be parsed or breaks a
// limit; Parse never panics on bad input.
func (p *Parser) Parse(r io.Reader) (m *Message, err error) {
	lim := p.Limits.withDefaults()
	ps := &parseState{p: p, lim: lim, msg: &Message{Header: textproto.MIMEHeader{}}}
	counter := &countingReader{r: r, max: lim.MaxMessageBytes}
	defer func() {
		if rec := recover(); rec != nil { // a bug in a dependency must not stop a sync
			err = fmt.Errorf("%w: parser panic: %v", ErrMalformed, rec)
		}
		if err != nil {
			ps.msg.Close()
			m = nil
		}
	}()
	br := bufio.NewReaderSize(counter, 32<<10)
	if head, _ := br.Peek(5); string(head) == "From " { // an mbox envelope line, not a header
		if _, err := br.ReadString('\n'); err != nil {
			return nil, ps.fail(counter, fmt.Errorf("%w: only an mbox From line", ErrMalformed))
		}
		ps.warn("skipped a leading mbox \"From \" line")
	}
	e, rerr := message.ReadWithOptions(br, &message.ReadOptions{MaxHeaderBytes: lim.MaxHeaderBytes})
	if rerr != nil && e == nil {
		return nil, ps.fail(counter, fmt.Errorf("%w: header: %v", ErrMalformed, rerr))
	}
	if rerr != nil {
		ps.warn("%v", rerr)
	}
	ps.header(mail.Header{Header: e.Header})
	if err := ps.walk(e, 0, ""); err != nil {
		return nil, ps.fail(counter, err)
	}
	// Read whatever trails the last part so the size check sees the whole message.
	if _, err := io.Copy(io.Discard, counter); err != nil {
		return nil, ps.fail(counter, err)
	}
	ps.msg.Size = counter.n
	if ps.msg.Text == "" && ps.msg.HTML != "" {
		ps.msg.Text = htmlToText(ps.rawHTML.String())
		ps.msg.TextFromHTML = true
	}
	return ps.msg, nil
}

// fail turns a read error caused by the size limit into ErrOversized.
func (ps *parseState) fail(c *countingReader, err error) error {
	if c.over {
		return fmt.Errorf("%w: larger than %d bytes", ErrOversized, ps.lim.MaxMessageBytes)
	}
	if errors.Is(err, ErrMalformed) || errors.Is(err, ErrOversized) {
		return err
	}
	return fmt.Errorf("%w: %v", ErrMalformed, err)
}

type parseState struct {
	p       *Parser
	lim     Limits
	msg     *Message
	parts   int
	rawHTML strings.Builder
	spools  []*spool
}

func (ps *parseState) warn(format string, args ...any) {
	w := fmt.Sprintf(format, args...)
	for _, have := range ps.msg.Warnings {
		if have == w {
			return
		}
	}
	ps.msg.Warnings = append(ps.msg.Warnings, w)
}

// header fills the envelope fields, degrading gracefully on bad values.
func (ps *parseState) header(h mail.Header) {
	m := ps.msg
	fields := h.Fields()
	for fields.Next() {
		v, err := fields.Text()
		if err != nil {
			ps.warn("header %s: %v", fields.Key(), err)
			v = fields.Value()
		}
		v = ps.validUTF8("header "+fields.Key(), v)
		k := textproto.CanonicalMIMEHeaderKey(fields.Key())
		m.Header[k] = append(m.Header[k], v)
	}
	if from := ps.addresses(h, "From"); len(from) > 0 {
		m.From = from[0]
	}
	m.To = ps.addresses(h, "To")
	m.Cc = ps.addresses(h, "Cc")
	m.ReplyTo = ps.addresses(h, "Reply-To")
	if s, err := h.Subject(); err == nil {
		m.Subject = s
	} else {
		ps.warn("subject: %v", err)
		m.Subject = h.Get("Subject")
	}
	m.Subject = ps.validUTF8("subject", strings.TrimSpace(m.Subject))
	m.Date = ps.date(h)
	if id, err := h.MessageID(); err == nil && id != "" {
		m.MessageID = id
	} else if raw := strings.TrimSpace(h.Get("Message-Id")); raw != "" {
		m.MessageID = strings.Trim(raw, "<> ")
	}
	m.InReplyTo = ps.msgIDs(h, "In-Reply-To")
	m.References = ps.msgIDs(h, "References")
}

func (ps *parseState) addresses(h mail.Header, key string) []Address {
	raw := h.Get(key)
	if strings.TrimSpace(raw) == "" {
		return nil
	}
	list, err := h.AddressList(key)
	if err != nil {
		ps.warn("%s: %v", key, err)
		list := lenientAddresses(raw)
		for i := range list {
			list[i].Name = ps.validUTF8(key, list[i].Name)
			list[i].Address = ps.validUTF8(key, list[i].Address)
		}
		return list
	}
	out := make([]Address, 0, len(list))
	for _, a := range list {
		name := a.Name
		if strings.Contains(name, "=?") { // an encoded word inside quotes: clients decode it too
			if d, err := (&mime.WordDecoder{CharsetReader: message.CharsetReader}).DecodeHeader(name); err == nil {
				name = d
			}
		}
		out = append(out, Address{Name: ps.validUTF8(key, name), Address: ps.validUTF8(key, a.Address)})
	}
	return out
}

// validUTF8 returns s as valid UTF-8: raw 8-bit header bytes, which some
// mailers send undeclared, are taken as windows-1252, as mail clients do.
func (ps *parseState) validUTF8(what, s string) string {
	if utf8.ValidString(s) {
		return s
	}
	ps.warn("%s has undeclared 8-bit bytes: decoded as windows-1252", what)
	if d, err := charmap.Windows1252.NewDecoder().String(s); err == nil {
		return d
	}
	return strings.ToValidUTF8(s, "\uFFFD")
}

// lenientAddresses splits an address header that a strict parser refused,
// keeping whatever looks like an address.
func lenientAddresses(raw string) []Address {
	dec := new(mime.WordDecoder)
	var out []Address
	for _, part := range strings.Split(raw, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		var a Address
		if i, j := strings.LastIndex(part, "<"), strings.LastIndex(part, ">"); i >= 0 && j > i {
			a.Address = strings.TrimSpace(part[i+1 : j])
			a.Name = strings.Trim(strings.TrimSpace(part[:i]), `"`)
		} else if strings.Contains(part, "@") {
			a.Address = strings.Fields(part)[0]
		} else {
			a.Name = part
		}
		if n, err := dec.DecodeHeader(a.Name); err == nil {
			a.Name = n
		}
		out = append(out, a)
	}
	return out
}

var lenientDateLayouts = []string{
	time.RFC1123Z, time.RFC1123, time.RFC850, time.ANSIC, time.UnixDate, time.RubyDate, time.RFC3339,
	"Mon, 2 Jan 2006 15:04:05 -0700", "Mon, 2 Jan 2006 15:04:05 MST", "2 Jan 2006 15:04:05 -0700",
	"Mon, 2 Jan 06 15:04:05 -0700", "Mon, 2 Jan 2006 15:04 -0700", "Mon, 02 Jan 2006 15:04:05 -0700 (MST)",
	"Mon, 2 Jan 2006 15:04:05 -0700 (MST)", "Mon 2 Jan 2006 15:04:05 -0700", "2006-01-02 15:04:05 -0700",
}

func (ps *parseState) date(h mail.Header) time.Time {
	raw := strings.TrimSpace(h.Get("Date"))
	if raw == "" {
		return time.Time{}
	}
	if t, err := h.Date(); err == nil {
		return t
	}
	clean := strings.Join(strings.Fields(raw), " ")
	for _, layout := range lenientDateLayouts {
		if t, err := time.Parse(layout, clean); err == nil {
			return t
		}
	}
	ps.warn("date %q not understood", raw)
	return time.Time{}
}

func (ps *parseState) msgIDs(h mail.Header, key string) []string {
	raw := h.Get(key)
	if strings.TrimSpace(raw) == "" {
		return nil
	}
	if ids, err := h.MsgIDList(key); err == nil {
		return ids
	}
	var ids []string
	for _, f := range strings.Fields(raw) {
		if f = strings.Trim(f, "<>,"); f != "" {
			ids = append(ids, f)
		}
	}
	return ids
}

// walk visits an entity; depth counts multipart levels.
func (ps *parseState) walk(e *message.Entity, depth int, parentType string) error {
	ps.parts++
	if ps.parts > ps.lim.MaxParts {
		return fmt.Errorf("%w: more than %d MIME parts", ErrMalformed, ps.lim.MaxParts)
	}
	if depth > ps.lim.MaxDepth {
		return fmt.Errorf("%w: MIME nesting deeper than %d", ErrMalformed, ps.lim.MaxDepth)
	}
	if mediaType, params, _ := e.Header.ContentType(); strings.HasPrefix(mediaType, "multipart/") && params["boundary"] == "" {
		ps.warn("%s without a boundary: read as text", mediaType)
		return ps.body(e, "text/plain", params["charset"])
	}
	if mr := e.MultipartReader(); mr != nil {
		mediaType, _, _ := e.Header.ContentType()
		for {
			part, err := mr.NextPart()
			if err == io.EOF {
				return nil
			}
			if err != nil && part == nil {
				if isMissingBoundaryEnd(err) {
					ps.warn("multipart: %v", err)
					return nil
				}
				return fmt.Errorf("%w: multipart: %v", ErrMalformed, err)
			}
			if err != nil {
				ps.degraded(part, err)
			}
			if err := ps.walk(part, depth+1, mediaType); err != nil {
				return err
			}
		}
	}
	return ps.leaf(e, parentType)
}

// isMissingBoundaryEnd reports the common breakage of a multipart that just
// stops without its closing boundary: the parts read so far are kept.
func isMissingBoundaryEnd(err error) bool {
	return errors.Is(err, io.ErrUnexpectedEOF) || strings.Contains(err.Error(), "EOF")
}

// degraded records an unknown charset or transfer encoding; the entity's
// body is then still readable, undecoded.
func (ps *parseState) degraded(e *message.Entity, err error) {
	ps.warn("%v", err)
}

// leaf handles a non-multipart entity: a body or an attachment.
func (ps *parseState) leaf(e *message.Entity, parentType string) error {
	mediaType, params, ctErr := e.Header.ContentType()
	if ctErr != nil || mediaType == "" {
		mediaType = "text/plain"
		if parentType == "multipart/digest" {
			mediaType = "message/rfc822"
		}
	}
	disp, dparams, _ := e.Header.ContentDisposition()
	filename := dparams["filename"]
	if filename == "" {
		filename = params["name"]
	}
	filename = strings.ToValidUTF8(filename, "\uFFFD")
	isBody := disp != "attachment" && filename == "" && (mediaType == "text/plain" || mediaType == "text/html")
	if isBody {
		return ps.body(e, mediaType, params["charset"])
	}
	sp := newSpool(ps.p.TempDir, ps.threshold())
	ps.spools = append(ps.spools, sp)
	ps.msg.closers = append(ps.msg.closers, sp)
	if _, err := io.Copy(sp, e.Body); err != nil {
		return fmt.Errorf("%w: attachment %q: %v", ErrMalformed, filename, err)
	}
	cid := strings.Trim(strings.TrimSpace(e.Header.Get("Content-Id")), "<>")
	if filename == "" && mediaType == "message/rfc822" {
		filename = "message.eml"
	}
	ps.msg.Attachments = append(ps.msg.Attachments, &Attachment{
		Filename:    filename,
		ContentType: mediaType,
		ContentID:   cid,
		Inline:      disp == "inline" || (disp == "" && cid != "" && parentType == "multipart/related"),
		Size:        sp.Size(),
		open:        sp.Open,
	})
	return nil
}

// body reads a text/plain or text/html body part.
func (ps *parseState) body(e *message.Entity, mediaType, charset string) error {
	text, err := ps.readText(e, charset)
	if err != nil {
		return err
	}
	if mediaType == "text/html" {
		ps.appendBody(&ps.msg.HTML, ps.p.htmlPolicy().Sanitize(text))
		ps.rawHTML.WriteString(text)
	} else {
		ps.appendBody(&ps.msg.Text, text)
	}
	return nil
}

func (ps *parseState) threshold() int {
	if ps.p.SpoolThreshold > 0 {
		return ps.p.SpoolThreshold
	}
	return 256 << 10
}

func (ps *parseState) appendBody(dst *string, s string) {
	if *dst == "" {
		*dst = s
		return
	}
	*dst += "\n\n" + s
}

// readText reads a text body, bounded by MaxTextBytes, and makes it valid UTF-8.
// The declared charset wins; when go-message does not know it, or the bytes
// are not valid in it, the body is decoded as windows-1252 with a warning.
func (ps *parseState) readText(e *message.Entity, declared string) (string, error) {
	var buf bytes.Buffer
	n, err := io.Copy(&buf, io.LimitReader(e.Body, ps.lim.MaxTextBytes))
	if err != nil {
		return "", fmt.Errorf("%w: body: %v", ErrMalformed, err)
	}
	if n == ps.lim.MaxTextBytes {
		extra, err := io.Copy(io.Discard, e.Body)
		if err != nil {
			return "", fmt.Errorf("%w: body: %v", ErrMalformed, err)
		}
		if extra > 0 {
			ps.warn("body longer than %d bytes: truncated", ps.lim.MaxTextBytes)
		}
	}
	b := buf.Bytes()
	if utf8.Valid(b) {
		return string(b), nil
	}
	if declared == "" {
		declared = "us-ascii"
	}
	ps.warn("body is not valid %s: decoded as windows-1252", declared)
	s, derr := charmap.Windows1252.NewDecoder().Bytes(b)
	if derr != nil {
		return strings.ToValidUTF8(string(b), "\uFFFD"), nil
	}
	return string(s), nil
}

// countingReader counts bytes and fails once more than max were read.
type countingReader struct {
	r    io.Reader
	n    int64
	max  int64
	over bool
}

func (c *countingReader) Read(p []byte) (int, error) {
	if c.n > c.max {
		c.over = true
		return 0, fmt.Errorf("%w: larger than %d bytes", ErrOversized, c.max)
	}
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// Close releases the temporary storage of the message's attachments.
func (m *Message) Close() error {
	var first error
	for _, c := range m.closers {
		if err := c.Close(); err != nil && first == nil {
			first = err
		}
	}
	m.closers = nil
	return first
}
