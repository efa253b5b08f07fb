package mailsync

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	stdhtml "html"
	"io"
	"net/textproto"
	"strings"

	_ "github.com/emersion/go-message/charset" // windows-1252, ISO-2022-JP, iso-8859-*, …
	"github.com/microcosm-cc/bluemonday"
	"github.com/teamwork/tnef"

	"github.com/mailsync/mailsync/internal/mime"
	"github.com/mailsync/mailsync/internal/reply"
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
	// SMIME opens S/MIME mail: signatures verified against SMIME.Roots,
	// encrypted mail decrypted with the key SMIME.Key gives. Signed mail
	// is opened (its content becomes the body) even without them.
	SMIME SMIME

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

	// dec reads the MIME structure; it holds the top-level charset and the
	// header buffers reused across the message.
	dec mime.Decoder

	// units are the body's pieces in order: a text or HTML part on its
	// own, or the renderings of one multipart/alternative.
	units              []bodyUnit
	altGroup, groups   int    // the innermost multipart/alternative being read (0: none), and a counter
	bodyCharset        string // a legacy charset detected in the body, for a header read as windows-1252
	images             int    // nameless images named so far
	textLeft, htmlLeft int64  // MaxTextBytes budgets

	memSpooled int64 // attachment bytes held in memory

	// sigWanted is true while the second part of a multipart/signed is
	// read; leaf then hands its signature part over in sigPart.
	sigWanted bool
	// capturing is true while a multipart/signed keeps a copy of its
	// signed part: one nested inside it takes none (the outer copy holds
	// the same bytes, and only the message's first signature is reported).
	capturing bool
	sigPart   *spool

	remote mime.RemoteRewriter // remote images of the HTML parts
}

func (ps *parseState) run() error {
	ps.textLeft, ps.htmlLeft = ps.lim.MaxTextBytes, ps.lim.MaxTextBytes
	ps.remote.Allow = ps.p.AllowRemoteImages
	ps.dec = mime.Decoder{MaxHeaderBytes: ps.lim.MaxHeaderBytes, MaxPreambleBytes: ps.lim.MaxTextBytes, Warn: ps.addWarning}
	br := bufio.NewReaderSize(ps.counter, 32<<10)
	if isMboxFromLine(br) {
		var n int64
		if _, err := ps.dec.ReadLine(br, &n); err != nil && err != io.EOF {
			return err
		}
		ps.warn("skipped a leading mbox \"From \" line")
	}
	if n := leadingGarbage(br); n > 0 {
		if _, err := br.Discard(n); err != nil {
			return err
		}
		ps.warn("skipped %d bytes before the first header line (e.g. a gateway's \"Original message\" line)", n)
	}
	h, body, err := ps.dec.ReadHeader(br)
	if err != nil {
		return err
	}
	if _, params := ps.dec.ContentType(h, ""); params != nil {
		ps.dec.TopCharset = params["charset"]
	}
	ps.header(h)
	if err := ps.walk(h, body, 0, ""); err != nil {
		return err
	}
	if ps.dec.HeaderGuessed && ps.bodyCharset != "" {
		// The header's undeclared 8-bit bytes fell back to windows-1252, and
		// the body turned out to be in a legacy charset that was detected:
		// a header is written by the same mailer, so read it again in that
		// charset (short header values alone are too short to detect).
		ps.dec.TopCharset, ps.dec.HeaderGuessed = ps.bodyCharset, false
		kept := ps.msg.Warnings[:0]
		for _, w := range ps.msg.Warnings {
			if w != mime.HeaderFallbackWarning {
				kept = append(kept, w)
			}
		}
		ps.msg.Warnings = kept
		clear(ps.msg.Header)
		ps.header(h)
	}
	// Read whatever trails the last part so the size check sees the whole message.
	if _, err := io.Copy(io.Discard, br); err != nil {
		return err
	}
	ps.msg.Size = ps.counter.n
	ps.msg.Text, ps.msg.HTML = ps.renderings()
	ps.msg.RemoteContent = ps.remote.URLs
	ps.linkInline()
	if ps.remote.Dropped > 0 {
		ps.warn("%d remote image URLs not listed in RemoteContent (more than %d, or longer than %d bytes)", ps.remote.Dropped, mime.MaxRemoteContent, mime.MaxRemoteURL)
	}
	if strings.TrimSpace(ps.msg.Text) == "" && ps.msg.HTML != "" {
		// Rendered from the sanitised HTML, so the text shows what the HTML shows.
		if t := mime.HTMLToText([]byte(ps.msg.HTML)); t != "" {
			ps.msg.Text, ps.msg.TextFromHTML = t, true
		}
	}
	ps.segment()
	return nil
}

// segment splits the body into the new text, the quoted history and the
// signature (Message.Reply, ReplyHTML, Quoted, SignatureText).
func (ps *parseState) segment() {
	m := ps.msg
	m.ReplyHTML = m.HTML
	var h reply.HTMLResult
	if m.HTML != "" {
		h = reply.HTML(m.HTML)
		m.ReplyHTML, m.ReplyHTMLMarker = h.Reply, h.Marker
	}
	if m.TextFromHTML && h.Refused {
		// The HTML's quote marks say the answer is interleaved with the
		// quote (or below it): keep the text whole.
		m.Reply = m.Text
		return
	}
	if m.TextFromHTML && h.Marker != "" {
		// The text is the HTML's rendering: render the HTML's segments.
		if t := mime.HTMLToText([]byte(h.Reply)); strings.TrimSpace(t) != "" {
			m.Reply, m.ReplyMarker = t, h.Marker
			m.Quoted = mime.HTMLToText([]byte(h.Quoted))
			if h.Signature != "" {
				m.SignatureText = mime.HTMLToText([]byte(h.Signature))
			}
			return
		}
	}
	t := reply.Text(m.Text)
	m.Reply, m.Quoted, m.SignatureText, m.ReplyMarker = t.Reply, t.Quoted, t.Signature, t.Marker
	if m.HTML != "" && h.Marker == "" && !h.Refused && t.Marker != "" {
		// The HTML has no quote mark in its structure but the text has one
		// (an "On … wrote:" line or Outlook's From:/Sent: block in plain
		// paragraphs, "> " lines): cut the HTML where that line starts.
		hr := reply.HTMLByText(m.HTML, t.Marker)
		switch {
		case hr.Marker != "":
			m.ReplyHTML, m.ReplyHTMLMarker = hr.Reply, hr.Marker
		case m.TextFromHTML:
			// The text is the HTML's rendering, which loses what the HTML
			// says (a blockquote's answers between quotes): where the
			// HTML's own lines do not confirm the cut, keep the text whole.
			m.Reply, m.Quoted, m.SignatureText, m.ReplyMarker = m.Text, "", "", ""
		}
	}
}

// leadingGarbage returns how many bytes of lines that are not header
// fields come before the header (e.g. "---- Original message ----" pasted
// above it by a gateway), or 0. It only skips when, within the first few
// lines, a well-known header field starts a run of at least three header
// lines — otherwise the message has no header and starts with its body.
func leadingGarbage(br *bufio.Reader) int {
	head, _ := br.Peek(8 << 10)
	if len(head) == 0 || isHeaderLine(firstLine(head)) {
		return 0
	}
	off := 0
	for skipped := 0; skipped < 5 && off < len(head); skipped++ {
		nl := bytes.IndexByte(head[off:], '\n')
		if nl < 0 {
			return 0
		}
		off += nl + 1
		rest := head[off:]
		if !wellKnownField(firstLine(rest)) {
			continue
		}
		// The run of header lines that follows must be a real header.
		lines, p := 0, 0
		for lines < 3 && p < len(rest) {
			line := firstLine(rest[p:])
			if !isHeaderLine(line) && !(len(line) > 0 && (line[0] == ' ' || line[0] == '\t')) {
				break
			}
			lines++
			nl := bytes.IndexByte(rest[p:], '\n')
			if nl < 0 {
				break
			}
			p += nl + 1
		}
		if lines >= 3 {
			return off
		}
	}
	return 0
}

func firstLine(b []byte) []byte {
	if i := bytes.IndexByte(b, '\n'); i >= 0 {
		b = b[:i]
	}
	return bytes.TrimRight(b, "\r")
}

// isHeaderLine reports whether line looks like "Name: value".
func isHeaderLine(line []byte) bool {
	i := bytes.IndexByte(line, ':')
	if i <= 0 {
		return false
	}
	for _, c := range line[:i] {
		if c <= ' ' || c >= 0x7f {
			return false
		}
	}
	return true
}

// wellKnownField reports whether line starts a header field every mail
// carries or gateways add first.
func wellKnownField(line []byte) bool {
	if !isHeaderLine(line) {
		return false
	}
	name := strings.ToLower(string(line[:bytes.IndexByte(line, ':')]))
	switch name {
	case "from", "to", "subject", "date", "message-id", "received", "return-path", "mime-version", "delivered-to", "sender", "reply-to":
		return true
	}
	return false
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
	case errors.Is(err, ErrMalformed) || errors.Is(err, ErrOversized) || errors.Is(err, ErrEncrypted):
		return err
	}
	if me := (*mime.MalformedError)(nil); errors.As(err, &me) {
		return fmt.Errorf("%w: %s", ErrMalformed, me.Reason)
	}
	return fmt.Errorf("%w: %v", ErrMalformed, err)
}

func (ps *parseState) warn(format string, args ...any) {
	ps.addWarning(fmt.Sprintf(format, args...))
}

// addWarning adds w to Message.Warnings unless it is there already or the
// list is full; it is also the Decoder's warning callback.
func (ps *parseState) addWarning(w string) {
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
func (ps *parseState) header(h mime.Header) {
	m, d := ps.msg, &ps.dec
	for _, f := range h {
		m.Header[f.Key] = append(m.Header[f.Key], d.SingleLine(f.Key, d.DecodeText(f.Value)))
	}
	from := ps.addresses(h, "From")
	if len(from) > 0 {
		m.From = from[0]
	}
	m.To = ps.addresses(h, "To")
	m.Cc = ps.addresses(h, "Cc")
	m.ReplyTo = ps.addresses(h, "Reply-To")
	if !usable(m.From) {
		m.From = ps.fallbackSender(h, from)
	}
	m.Subject = strings.TrimSpace(d.SingleLine("Subject", d.DecodeText(h.Get("Subject"))))
	m.Date = d.Date(h.Get("Date"))
	if ids := mime.MsgIDs(d.SingleLine("Message-Id", h.Get("Message-Id"))); len(ids) > 0 {
		m.MessageID = ids[0]
	}
	m.InReplyTo = mime.MsgIDs(d.SingleLine("In-Reply-To", h.Get("In-Reply-To")))
	m.References = mime.MsgIDs(d.SingleLine("References", h.Get("References")))
}

// usable reports whether a has an address a reply could go to.
func usable(a Address) bool {
	at := strings.IndexByte(a.Address, '@')
	return at > 0 && at < len(a.Address)-1
}

// fallbackSender finds the sender a mail client would show when From has
// no usable address: a later mailbox in From (a first one with an empty
// address, "<>"), then Reply-To, Sender, Return-Path. The display name of
// From is kept. The message gets a warning saying where the address came
// from; without any, From stays as it was.
func (ps *parseState) fallbackSender(h mime.Header, from []Address) Address {
	name := ps.msg.From.Name
	pick := func(list []Address, field string) (Address, bool) {
		for _, a := range list {
			if usable(a) {
				if name != "" && (a.Name == "" || field != "From") {
					a.Name = name
				}
				where := field
				if field == "From" {
					where = "a later mailbox in From"
				}
				ps.warn("From has no usable address; the sender's address was taken from %s", where)
				return a, true
			}
		}
		return Address{}, false
	}
	if a, ok := pick(from, "From"); ok {
		return a
	}
	for _, field := range []string{"Reply-To", "Sender", "Return-Path"} {
		if a, ok := pick(ps.addresses(h, field), field); ok {
			return a
		}
	}
	return ps.msg.From
}

// addresses reads an address list field.
func (ps *parseState) addresses(h mime.Header, key string) []Address {
	return mime.Addresses(&ps.dec, h, key, newAddress)
}

func newAddress(name, address string) Address { return Address{Name: name, Address: address} }

// walk visits an entity; depth counts multipart levels.
func (ps *parseState) walk(h mime.Header, body io.Reader, depth int, parentType string) error {
	ps.parts++
	if ps.parts > ps.lim.MaxParts {
		return fmt.Errorf("%w: more than %d MIME parts", ErrMalformed, ps.lim.MaxParts)
	}
	if depth > ps.lim.MaxDepth {
		return fmt.Errorf("%w: MIME nesting deeper than %d", ErrMalformed, ps.lim.MaxDepth)
	}
	mediaType, params := ps.dec.ContentType(h, parentType)
	if strings.HasPrefix(mediaType, "multipart/") {
		switch b := params["boundary"]; {
		case b == "":
			ps.warn("%s without a boundary: read as text", mediaType)
		case len(b) > mime.MaxBoundaryLen:
			ps.warn("%s with a boundary of %d characters: read as text", mediaType, len(b))
		default:
			return ps.multipart(mediaType, params, body, depth)
		}
		mediaType = "text/plain"
	}
	return ps.leaf(h, body, mediaType, params, parentType, depth)
}

func (ps *parseState) multipart(mediaType string, params map[string]string, body io.Reader, depth int) error {
	if mediaType == "multipart/alternative" {
		defer func(outer int) { ps.altGroup = outer }(ps.altGroup)
		ps.groups++
		ps.altGroup = ps.groups
	}
	s := ps.dec.NewSplitter(body, params["boundary"])
	var signed *signedContent
	nested := false // inside the signed part of one being copied
	if mediaType == "multipart/signed" && smimeProtocol(params["protocol"]) {
		signed = &signedContent{max: MaxSignedBytes, guessed: strings.TrimSpace(params["protocol"]) == ""}
		switch {
		case ps.capturing:
			// The outer signature, over everything this one signs and
			// more, is the one verified and reported: this one is neither
			// copied nor verified.
			nested = true
		case ps.p.SMIME.Roots != nil && ps.msg.Signature == nil:
			// The signature covers the first part's raw bytes: keep a
			// copy (bounded) while it streams past — only when it can be
			// verified (roots given) and reported (the message's first
			// signature, not one nested in a part already copied), else
			// the copy would be memory spent for nothing. One nested
			// inside is not copied again (ps.capturing).
			s.CaptureNext(signed)
			ps.capturing = true
			defer func() { ps.capturing = false }()
		}
	}
	for {
		h, part, err := s.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
		sigPart := signed != nil && s.Parts == 2
		ps.sigWanted, ps.sigPart = sigPart, nil // leaf sets sigPart when this part is the signature
		err = ps.walk(h, part, depth+1, mediaType)
		if sigPart {
			signed.sig = ps.sigPart
		}
		ps.sigWanted, ps.sigPart = false, nil
		if err != nil {
			return err
		}
	}
	if signed != nil && !nested {
		ps.verifyDetached(signed)
	}
	switch {
	case s.Parts == 0 && len(bytes.TrimSpace(s.Preamble)) > 0:
		// No boundary line at all: show what is there rather than nothing.
		ps.warn("%s without any part: its content read as text", mediaType)
		b := s.Preamble[:min(int64(len(s.Preamble)), ps.textLeft)]
		ps.textLeft -= int64(len(b))
		ps.addText(b, "text/plain", nil)
	case s.Parts == 0:
		ps.warn("%s has no parts", mediaType)
	case s.Unterminated:
		ps.warn("%s ends without its closing boundary", mediaType)
	}
	if s.SloppyClose {
		ps.warn("%s closing boundary is misspelt", mediaType)
	}
	return nil
}

// leaf handles a non-multipart entity: a body or an attachment.
func (ps *parseState) leaf(h mime.Header, body io.Reader, mediaType string, params map[string]string, parentType string, depth int) error {
	disp, dparams := ps.dec.ParseParams(h.Get("Content-Disposition"))
	filename := dparams["filename"]
	if filename == "" {
		filename = params["name"]
	}
	if filename != "" {
		filename = ps.dec.AttachmentName(filename)
	}
	r := ps.dec.TransferDecoder(h.Get("Content-Transfer-Encoding"), body)
	if isPKCS7Mime(mediaType, filename) && (depth == 0 || params["smime-type"] != "") {
		// Opaque S/MIME (the whole message, or a part that says so): open
		// it, so its content becomes the ticket rather than an empty ticket
		// with an smime.p7m attachment. A .p7m file attached to a mail
		// stays an attachment.
		var buf bytes.Buffer
		if _, err := io.Copy(&buf, r); err != nil {
			return err
		}
		opened, err := ps.smime(buf.Bytes(), depth)
		if err != nil || opened {
			return err
		}
		r = bytes.NewReader(buf.Bytes()) // kept as it is
	}
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
	cid := strings.TrimSpace(mime.MsgIDOrRaw(ps.dec.SingleLine("Content-Id", h.Get("Content-Id"))))
	if filename == "" && mediaType == "message/rfc822" {
		filename = "message.eml"
	}
	if mediaType == "application/pkcs7-signature" || mediaType == "application/x-pkcs7-signature" {
		if filename == "" {
			filename = "smime.p7s"
		}
		if ps.sigWanted && parentType == "multipart/signed" {
			ps.sigPart, ps.sigWanted = sp, false // verified by multipart against the first part
		} else {
			defer ps.detachedSignature(sp)
		}
	}
	isTNEF := mediaType == "application/ms-tnef" || mediaType == "application/vnd.ms-tnef" || strings.EqualFold(filename, "winmail.dat")
	if mediaType == "text/calendar" || mediaType == "application/ics" {
		if filename == "" {
			filename = "invite.ics"
		}
		if ps.msg.Invite == nil {
			ps.readInvite(sp)
		}
	}
	defer func() {
		if isTNEF { // after the winmail.dat itself, which stays
			ps.expandTNEF(sp)
		}
	}()
	if filename == "" && strings.HasPrefix(mediaType, "image/") {
		// Outlook's nameless inline images: image001.png, as Outlook names them.
		ps.images++
		filename = fmt.Sprintf("image%03d.%s", ps.images, imageExt(mediaType))
	}
	ps.msg.Attachments = append(ps.msg.Attachments, &Attachment{
		Filename:        filename,
		ContentType:     mediaType,
		ContentID:       cid,
		ContentLocation: ps.dec.SingleLine("Content-Location", strings.TrimSpace(h.Get("Content-Location"))),
		Inline:          disp == "inline" || (disp == "" && cid != "" && parentType == "multipart/related"),
		Size:            sp.Size(),
		open:            sp.Open,
	})
	return nil
}

// MaxTNEFBytes bounds the winmail.dat that is expanded (the TNEF decoder
// holds it whole in memory); a larger one stays as it is, with a warning.
const MaxTNEFBytes = 32 << 20

// expandTNEF expands Outlook's winmail.dat (application/ms-tnef) into its
// attachments and body with github.com/teamwork/tnef; the winmail.dat
// stays among the attachments. The decoder panics on some malformed files
// and reads only the plain and HTML body (not compressed RTF): a failure
// leaves the winmail.dat as it is, with a warning.
func (ps *parseState) expandTNEF(sp *spool) {
	if sp.Size() > MaxTNEFBytes {
		ps.warn("winmail.dat of %d bytes not expanded (more than %d)", sp.Size(), MaxTNEFBytes)
		return
	}
	rc, err := sp.Open()
	if err != nil {
		return
	}
	data, err := io.ReadAll(rc)
	rc.Close()
	if err != nil {
		return
	}
	t, err := decodeTNEF(data)
	if err != nil {
		ps.warn("winmail.dat could not be expanded (%v): kept as it is", err)
		return
	}
	for i, a := range t.Attachments {
		if a == nil || len(a.Data) == 0 {
			continue
		}
		name := ps.dec.AttachmentName(a.Title)
		if name == "" {
			name = fmt.Sprintf("winmail-%d.bin", i+1)
		}
		b := a.Data
		ps.msg.Attachments = append(ps.msg.Attachments, &Attachment{
			Filename: name, ContentType: "application/octet-stream", Size: int64(len(b)),
			open: func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil },
		})
	}
	if len(t.BodyHTML) > 0 {
		ps.addText(t.BodyHTML, "text/html", nil)
	} else if len(t.Body) > 0 {
		ps.addText(t.Body, "text/plain", nil)
	}
	ps.warn("winmail.dat expanded: %d attachments", len(t.Attachments))
}

// decodeTNEF runs the TNEF decoder, turning its panics on malformed input
// into an error.
func decodeTNEF(data []byte) (d *tnef.Data, err error) {
	if len(data) < 6 {
		return nil, tnef.ErrNoMarker
	}
	defer func() {
		if r := recover(); r != nil {
			d, err = nil, fmt.Errorf("malformed TNEF: %v", r)
		}
	}()
	return tnef.Decode(data)
}

// readInvite reads the event of a calendar part.
func (ps *parseState) readInvite(sp *spool) {
	rc, err := sp.Open()
	if err != nil {
		return
	}
	defer rc.Close()
	if ev, ok := mime.ParseCalendar(rc); ok {
		ps.msg.Invite = &Invite{Method: ev.Method, UID: ev.UID, Summary: ev.Summary, Location: ev.Location,
			Organizer: ev.Organizer, Start: ev.Start, End: ev.End, AllDay: ev.AllDay}
	}
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
	s, warning := mime.DecodeCharset(b, params["charset"])
	if warning != "" {
		ps.warn("%s body %s", mediaType, warning)
		if cs := mime.DetectedCharset(warning); cs != "" && ps.bodyCharset == "" {
			ps.bodyCharset = cs
		}
	}
	if strings.TrimSpace(s) == "" {
		return
	}
	if mediaType == "text/html" {
		if clean := ps.remote.Rewrite(ps.p.htmlPolicy().Sanitize(s)); strings.TrimSpace(clean) != "" {
			ps.addUnit(clean, true)
		}
		return
	}
	s = mime.NormalizeNewlines(s)
	if strings.EqualFold(params["format"], "flowed") {
		s = mime.Unflow(s, strings.EqualFold(params["delsp"], "yes"))
	}
	ps.addUnit(s, false)
}

// bodyUnit is one piece of the body in both renderings it came with.
type bodyUnit struct {
	group      int // its multipart/alternative, 0 for a part on its own
	text, html string
}

// addUnit adds a decoded text or sanitised HTML part: to the unit of the
// same multipart/alternative when it is one of its renderings, else as a
// unit of its own.
func (ps *parseState) addUnit(s string, isHTML bool) {
	var u *bodyUnit
	if ps.altGroup != 0 {
		for i := len(ps.units) - 1; i >= 0; i-- {
			if ps.units[i].group == ps.altGroup {
				u = &ps.units[i]
				break
			}
		}
	}
	if u == nil {
		ps.units = append(ps.units, bodyUnit{group: ps.altGroup})
		u = &ps.units[len(ps.units)-1]
	}
	dst := &u.text
	if isHTML {
		dst = &u.html
	}
	*dst = joinParts(*dst, s)
}

func joinParts(a, b string) string {
	if a == "" {
		return b
	}
	return a + "\n\n" + b
}

// renderings composes Message.Text and Message.HTML from the units in
// order, as mail clients show a multipart/mixed with text and HTML parts
// side by side: when the mail has both kinds, a unit with only one
// rendering lends it to the other (HTML rendered as text, text escaped
// into HTML), so each field shows the whole mail. A mail of only one kind
// keeps the other field empty.
func (ps *parseState) renderings() (text, html string) {
	var anyText, anyHTML bool
	for _, u := range ps.units {
		anyText = anyText || u.text != ""
		anyHTML = anyHTML || u.html != ""
	}
	var tb, hb strings.Builder
	for _, u := range ps.units {
		t, h := u.text, u.html
		if t == "" && anyText {
			t = mime.HTMLToText([]byte(h))
		}
		if h == "" && anyHTML {
			h = `<div style="white-space: pre-wrap">` + stdhtml.EscapeString(t) + `</div>`
		}
		for _, p := range []struct {
			b *strings.Builder
			s string
		}{{&tb, t}, {&hb, h}} {
			if p.s == "" {
				continue
			}
			if p.b.Len() > 0 {
				p.b.WriteString("\n\n")
			}
			p.b.WriteString(p.s)
		}
	}
	return tb.String(), hb.String()
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
