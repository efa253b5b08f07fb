package mailsync

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/textproto"
	"strings"
	"unicode"
	"unicode/utf8"

	_ "github.com/emersion/go-message/charset" // windows-1252, ISO-2022-JP, iso-8859-*, …
	"github.com/microcosm-cc/bluemonday"

	"github.com/mailsync/mailsync/internal/mime"
)

// Limits bound what one message may cost. A message that breaks one is
// quarantined with its raw bytes, never dropped.
type Limits struct {
	// MaxMessageBytes is the largest raw message accepted (default 64 MiB).
	// Larger ones are quarantined without being downloaded when the source
	// knows the size up front.
	MaxMessageBytes int64
	// MaxHeaderBytes bounds each header block: the message's and each MIME
	// part's (default 1 MiB).
	MaxHeaderBytes int64
	// MaxDepth bounds MIME nesting (default 32).
	MaxDepth int
	// MaxParts bounds the number of MIME parts (default 1000).
	MaxParts int
	// MaxTextBytes bounds the text and HTML bodies kept in memory (default
	// 4 MiB each, summed over all body parts); longer bodies are truncated
	// with a warning.
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

const (
	// maxHeaderFields bounds the fields of one header block, so a header of
	// millions of tiny fields cannot cost gigabytes of memory.
	maxHeaderFields = 10000
	// maxBoundaryLen: RFC 2046 allows 70 characters; anything longer than a
	// line is not a boundary.
	maxBoundaryLen = 998
	// memSpoolBudget is how many attachment bytes of one message stay in
	// memory in total; beyond it every attachment goes to a temporary file.
	memSpoolBudget = 8 << 20
	// maxWarnings bounds Message.Warnings.
	maxWarnings = 50
)

// Parser turns raw RFC 5322 mail into Messages. The zero value uses
// DefaultLimits and the system's temporary directory. A Parser is safe for
// concurrent use.
//
// Parsing is lenient where mail clients are: a header line without a field
// name is joined to the previous field, an unparsable field is dropped, a
// multipart without its closing boundary keeps the parts read, unquoted
// parameters with special characters (boundary=----=_Part…, filename=a b.txt)
// are accepted, unknown transfer encodings and charsets are read as they are.
// Each such repair adds a line to Message.Warnings.
type Parser struct {
	// Limits bound each message; zero fields take the defaults.
	Limits Limits
	// TempDir holds large attachments while their ticket is handed over
	// ("" means os.TempDir()).
	TempDir string
	// SpoolThreshold is how many bytes of an attachment stay in memory
	// before it moves to a temporary file (default 1 MiB). Whatever the
	// threshold, the attachments of one message hold at most 8 MiB of memory.
	SpoolThreshold int
	// AllowRemoteImages keeps the remote images of HTML mail loadable in
	// Message.HTML. By default they are blocked: each attribute that would
	// load one (img src and srcset, background, a style's background-image)
	// is renamed data-remote-<attribute>, so that showing a mail does not
	// tell its sender (tracking pixels); their URLs are listed in
	// Message.RemoteContent either way, for a "show remote content" button.
	AllowRemoteImages bool

	policy *bluemonday.Policy
	bufs   *bufferPool // set by Sync: spool buffers reused across messages
}

func (p *Parser) htmlPolicy() *bluemonday.Policy {
	if p.policy == nil {
		return mime.DefaultHTMLPolicy()
	}
	return p.policy
}

// Parse reads one raw message from r and parses it. Attachments are kept in
// memory or temporary files until m.Close is called. The error matches
// ErrMalformed or ErrOversized when the message cannot be parsed or breaks a
// limit; an error reading r is returned wrapped as it is (so a broken
// connection is not mistaken for a bad message). Parse never panics on bad
// input.
func (p *Parser) Parse(r io.Reader) (m *Message, err error) {
	defer func() {
		if rec := recover(); rec != nil { // a bug in a dependency must not stop a sync
			m, err = nil, fmt.Errorf("%w: parser panic: %v", ErrMalformed, rec)
		}
	}()
	return p.parse(r)
}

// parse is Parse without the recover: the corpus and fuzz tests call it so
// that a panic fails them instead of hiding as a quarantine.
func (p *Parser) parse(r io.Reader) (*Message, error) {
	lim := p.Limits.withDefaults()
	ps := &parseState{
		p:       p,
		lim:     lim,
		msg:     &Message{Header: textproto.MIMEHeader{}},
		counter: &countingReader{r: r, max: lim.MaxMessageBytes},
	}
	ok := false
	defer func() {
		if !ok { // also when panicking: release the temporary files
			ps.msg.Close()
		}
	}()
	if err := ps.run(); err != nil {
		return nil, ps.fail(err)
	}
	ok = true
	return ps.msg, nil
}

type parseState struct {
	p       *Parser
	lim     Limits
	msg     *Message
	counter *countingReader
	parts   int

	// topCharset is the charset of the top-level Content-Type, used for
	// undeclared 8-bit header bytes as mail clients do.
	topCharset string

	text, html         bytes.Buffer
	textLeft, htmlLeft int64 // MaxTextBytes budgets

	memSpooled int64 // attachment bytes held in memory

	remote mime.RemoteRewriter // remote images of the HTML parts

	longLine []byte // readLine's buffer for header lines longer than a bufio buffer
	fieldBuf []byte // readHeader's buffer for a field's unfolded value
}

func (ps *parseState) run() error {
	ps.textLeft, ps.htmlLeft = ps.lim.MaxTextBytes, ps.lim.MaxTextBytes
	ps.remote.Allow = ps.p.AllowRemoteImages
	br := bufio.NewReaderSize(ps.counter, 32<<10)
	if isMboxFromLine(br) {
		var n int64
		if _, err := readLine(br, &n, ps.lim.MaxHeaderBytes); err != nil && err != io.EOF {
			return err
		}
		ps.warn("skipped a leading mbox \"From \" line")
	}
	h, body, err := ps.readHeader(br)
	if err != nil {
		return err
	}
	if _, params := ps.contentType(h, ""); params != nil {
		ps.topCharset = params["charset"]
	}
	ps.header(h)
	if err := ps.walk(h, body, 0, ""); err != nil {
		return err
	}
	// Read whatever trails the last part so the size check sees the whole message.
	if _, err := io.Copy(io.Discard, br); err != nil {
		return err
	}
	ps.msg.Size = ps.counter.n
	ps.msg.Text = ps.text.String()
	ps.msg.HTML = ps.html.String()
	ps.msg.RemoteContent = ps.remote.URLs
	if ps.remote.Dropped > 0 {
		ps.warn("%d remote image URLs not listed in RemoteContent (more than %d, or longer than %d bytes)", ps.remote.Dropped, mime.MaxRemoteContent, mime.MaxRemoteURL)
	}
	if strings.TrimSpace(ps.msg.Text) == "" && ps.html.Len() > 0 {
		// Rendered from the sanitised HTML, so the text shows what the HTML shows.
		if t := mime.HTMLToText(ps.html.Bytes()); t != "" {
			ps.msg.Text, ps.msg.TextFromHTML = t, true
		}
	}
	return nil
}

// isMboxFromLine reports whether the message starts with an mbox envelope
// line ("From sender date"), which is not a header field ("From: …" or the
// obsolete "From  : …").
func isMboxFromLine(br *bufio.Reader) bool {
	head, _ := br.Peek(64)
	if !bytes.HasPrefix(head, []byte("From ")) {
		return false
	}
	rest := bytes.TrimLeft(head[5:], " \t")
	return len(rest) > 0 && rest[0] != ':'
}

// fail classifies an error: the size limit gives ErrOversized, a failing
// source is returned as it is, anything else matches ErrMalformed.
func (ps *parseState) fail(err error) error {
	c := ps.counter
	switch {
	case c.over:
		return fmt.Errorf("%w: larger than %d bytes", ErrOversized, ps.lim.MaxMessageBytes)
	case c.err != nil:
		return fmt.Errorf("mailsync: reading message: %w", c.err)
	case errors.Is(err, ErrMalformed) || errors.Is(err, ErrOversized):
		return err
	}
	return fmt.Errorf("%w: %v", ErrMalformed, err)
}

func (ps *parseState) warn(format string, args ...any) {
	w := fmt.Sprintf(format, args...)
	if len(ps.msg.Warnings) >= maxWarnings {
		return
	}
	for _, have := range ps.msg.Warnings {
		if have == w {
			return
		}
	}
	if len(ps.msg.Warnings) == maxWarnings-1 {
		w = "more problems not listed"
	}
	ps.msg.Warnings = append(ps.msg.Warnings, w)
}

// header fills the envelope fields, degrading gracefully on bad values.
func (ps *parseState) header(h mimeHeader) {
	m := ps.msg
	for _, f := range h {
		m.Header[f.key] = append(m.Header[f.key], ps.singleLine(f.key, ps.decodeText(f.value)))
	}
	if from := ps.addresses(h, "From"); len(from) > 0 {
		m.From = from[0]
	}
	m.To = ps.addresses(h, "To")
	m.Cc = ps.addresses(h, "Cc")
	m.ReplyTo = ps.addresses(h, "Reply-To")
	m.Subject = strings.TrimSpace(ps.singleLine("Subject", ps.decodeText(h.get("Subject"))))
	m.Date = ps.date(h.get("Date"))
	if ids := msgIDs(ps.singleLine("Message-Id", h.get("Message-Id"))); len(ids) > 0 {
		m.MessageID = ids[0]
	}
	m.InReplyTo = msgIDs(ps.singleLine("In-Reply-To", h.get("In-Reply-To")))
	m.References = msgIDs(ps.singleLine("References", h.get("References")))
}

// walk visits an entity; depth counts multipart levels.
func (ps *parseState) walk(h mimeHeader, body io.Reader, depth int, parentType string) error {
	ps.parts++
	if ps.parts > ps.lim.MaxParts {
		return fmt.Errorf("%w: more than %d MIME parts", ErrMalformed, ps.lim.MaxParts)
	}
	if depth > ps.lim.MaxDepth {
		return fmt.Errorf("%w: MIME nesting deeper than %d", ErrMalformed, ps.lim.MaxDepth)
	}
	mediaType, params := ps.contentType(h, parentType)
	if strings.HasPrefix(mediaType, "multipart/") {
		switch b := params["boundary"]; {
		case b == "":
			ps.warn("%s without a boundary: read as text", mediaType)
		case len(b) > maxBoundaryLen:
			ps.warn("%s with a boundary of %d characters: read as text", mediaType, len(b))
		default:
			return ps.multipart(mediaType, b, body, depth)
		}
		mediaType = "text/plain"
	}
	return ps.leaf(h, body, mediaType, params, parentType)
}

func (ps *parseState) multipart(mediaType, boundary string, body io.Reader, depth int) error {
	s := newSplitter(ps, body, boundary)
	for {
		h, part, err := s.next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
		if err := ps.walk(h, part, depth+1, mediaType); err != nil {
			return err
		}
	}
	switch {
	case s.parts == 0 && len(bytes.TrimSpace(s.preamble)) > 0:
		// No boundary line at all: show what is there rather than nothing.
		ps.warn("%s without any part: its content read as text", mediaType)
		b := s.preamble[:min(int64(len(s.preamble)), ps.textLeft)]
		ps.textLeft -= int64(len(b))
		ps.addText(b, "text/plain", nil)
	case s.parts == 0:
		ps.warn("%s has no parts", mediaType)
	case s.unterminated:
		ps.warn("%s ends without its closing boundary", mediaType)
	}
	if s.sloppyClose {
		ps.warn("%s closing boundary is misspelt", mediaType)
	}
	return nil
}

// leaf handles a non-multipart entity: a body or an attachment.
func (ps *parseState) leaf(h mimeHeader, body io.Reader, mediaType string, params map[string]string, parentType string) error {
	disp, dparams := ps.parseParams(h.get("Content-Disposition"))
	filename := dparams["filename"]
	if filename == "" {
		filename = params["name"]
	}
	if filename != "" {
		filename = ps.attachmentName(filename)
	}
	r := ps.transferDecoder(h.get("Content-Transfer-Encoding"), body)
	isBody := disp != "attachment" && filename == "" && (mediaType == "text/plain" || mediaType == "text/html")
	if isBody {
		return ps.body(r, mediaType, params)
	}
	threshold := ps.threshold()
	if left := memSpoolBudget - ps.memSpooled; int64(threshold) > left {
		threshold = int(max(left, 0))
	}
	sp := newSpool(ps.p.TempDir, threshold, ps.p.bufs)
	ps.msg.closers = append(ps.msg.closers, sp)
	if _, err := io.Copy(sp, r); err != nil {
		return err
	}
	if sp.file == nil {
		ps.memSpooled += sp.Size()
	}
	cid := strings.TrimSpace(msgIDOrRaw(ps.singleLine("Content-Id", h.get("Content-Id"))))
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

func (ps *parseState) threshold() int {
	if ps.p.SpoolThreshold > 0 {
		return ps.p.SpoolThreshold
	}
	return 1 << 20
}

// body reads a text/plain or text/html body part, bounded by what is left of
// MaxTextBytes; the rest is read and dropped with a warning.
func (ps *parseState) body(r io.Reader, mediaType string, params map[string]string) error {
	left := &ps.textLeft
	if mediaType == "text/html" {
		left = &ps.htmlLeft
	}
	var buf bytes.Buffer
	n, err := io.Copy(&buf, io.LimitReader(r, *left))
	if err != nil {
		return err
	}
	*left -= n
	extra, err := io.Copy(io.Discard, r)
	if err != nil {
		return err
	}
	if extra > 0 {
		ps.warn("%s body longer than %d bytes: truncated", mediaType, ps.lim.MaxTextBytes)
	}
	ps.addText(buf.Bytes(), mediaType, params)
	return nil
}

// addText decodes a body part's bytes from its charset and appends it to the
// message's text or HTML. Text in format=flowed (RFC 3676) is reflowed.
func (ps *parseState) addText(b []byte, mediaType string, params map[string]string) {
	s, warning := decodeCharset(b, params["charset"])
	if warning != "" {
		ps.warn("%s body %s", mediaType, warning)
	}
	if strings.TrimSpace(s) == "" {
		return
	}
	if mediaType == "text/html" {
		if clean := ps.remote.Rewrite(ps.p.htmlPolicy().Sanitize(s)); strings.TrimSpace(clean) != "" {
			appendPart(&ps.html, clean)
		}
		return
	}
	s = normalizeNewlines(s)
	if strings.EqualFold(params["format"], "flowed") {
		s = unflow(s, strings.EqualFold(params["delsp"], "yes"))
	}
	appendPart(&ps.text, s)
}

// unflow joins the soft line breaks of format=flowed text (RFC 3676): a line
// ending in a space continues on the next line of the same quote depth. Space
// stuffing is removed; with delsp=yes the space before the break goes too.
// The signature separator "-- " is never joined.
func unflow(s string, delsp bool) string {
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

func appendPart(dst *bytes.Buffer, s string) {
	if dst.Len() > 0 {
		dst.WriteString("\n\n")
	}
	dst.WriteString(s)
}

// normalizeNewlines turns CRLF and lone CR line ends into LF.
func normalizeNewlines(s string) string {
	if !strings.Contains(s, "\r") {
		return s
	}
	s = strings.ReplaceAll(s, "\r\n", "\n")
	return strings.ReplaceAll(s, "\r", "\n")
}

// maxFilenameBytes bounds an attachment's file name: 255 bytes of UTF-8, the
// limit of most file systems (NAME_MAX), so a sink that stores attachments
// under their names never meets ENAMETOOLONG.
const maxFilenameBytes = 255

// maxFilenameExt is the longest extension kept when a name is shortened.
const maxFilenameExt = 32

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

// capRawName cuts a raw parameter value of more than maxRawNameBytes to its
// head and tail, with a warning.
func (ps *parseState) capRawName(key, raw string) string {
	if len(raw) <= maxRawNameBytes {
		return raw
	}
	ps.warn("attachment name (%s parameter) of %d bytes: only its first and last bytes read", key, len(raw))
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

// attachmentName sanitises a decoded file name (see cleanFilename) and
// warns when that changed it.
func (ps *parseState) attachmentName(name string) string {
	clean, why := cleanFilename(name)
	if len(why) > 0 {
		ps.warn("attachment name %q changed to %q: %s", truncateForWarning([]byte(name)), truncateForWarning([]byte(clean)), strings.Join(why, ", "))
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
	if strings.IndexFunc(name, invisibleInName) >= 0 {
		name = strings.Map(func(r rune) rune {
			if invisibleInName(r) {
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

// invisibleInName reports the characters a file name must not hold:
// controls (C0, DEL, C1), line and paragraph separators, and format
// characters (Cf: U+200B–U+200F, U+202A–U+202E, U+2066–U+2069, U+FEFF, …).
func invisibleInName(r rune) bool {
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

// singleLine replaces the control characters of a decoded single-line field
// (CR and LF from an encoded word, NUL, …) by spaces, so a host that copies
// it into a header of its own (a reply's Subject) cannot be made to inject
// header lines. A tab, white space in a header, is replaced silently; any
// other control character adds a warning naming the field.
func (ps *parseState) singleLine(field, s string) string {
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
		ps.warn("control characters in %s replaced by spaces", field)
	}
	return s
}

// countingReader counts bytes and fails once more than max were read. It
// remembers an error of the source, which is not the message's fault.
type countingReader struct {
	r    io.Reader
	n    int64
	max  int64
	over bool
	err  error
}

func (c *countingReader) Read(p []byte) (int, error) {
	if c.n > c.max {
		c.over = true
		return 0, fmt.Errorf("%w: larger than %d bytes", ErrOversized, c.max)
	}
	n, err := c.r.Read(p)
	c.n += int64(n)
	if err != nil && err != io.EOF {
		c.err = err
	}
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
