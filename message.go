package mailsync

import (
	"fmt"
	"io"
	"net/textproto"
	"strconv"
	"strings"
	"time"
)

// Address is a mailbox: display name and address.
type Address struct {
	Name    string `json:"name,omitempty"`
	Address string `json:"address"`
}

// String formats the address as a mail client shows it: "Name <address>".
func (a Address) String() string {
	switch {
	case a.Address == "":
		return a.Name
	case a.Name == "":
		return "<" + a.Address + ">"
	case strings.ContainsAny(a.Name, `"(),.:;<>@[\]`):
		return strconv.Quote(a.Name) + " <" + a.Address + ">"
	}
	return a.Name + " <" + a.Address + ">"
}

// Message is a parsed e-mail.
type Message struct {
	From       Address
	To         []Address
	Cc         []Address
	ReplyTo    []Address
	Subject    string
	Date       time.Time
	MessageID  string   // without angle brackets
	InReplyTo  []string // without angle brackets
	References []string // without angle brackets
	// Text is the text/plain body, or a rendering of HTML when the mail has
	// no text part (TextFromHTML is then true).
	Text         string
	TextFromHTML bool
	// HTML is the text/html body, sanitised (no scripts, handlers or remote
	// forms, CSS that stays inside the box the mail is shown in). Remote
	// images are blocked unless Parser.AllowRemoteImages: an attribute that
	// would load one is renamed data-remote-<attribute> (data-remote-src,
	// data-remote-srcset, data-remote-background, data-remote-style holding
	// the style with its background-image); renaming them back shows them.
	HTML string
	// Reply is the new text of Text: without the quoted history, the
	// forwarded message and the signature that mail clients append
	// (see ReplyMarker). When nothing was recognised it is Text whole; it
	// is never empty when Text is not.
	Reply string
	// ReplyHTML is the new text of HTML (a fragment with its elements
	// closed), or HTML whole when no quote or signature mark was found.
	ReplyHTML string
	// Quoted is the quoted history or forwarded message cut off Reply, as
	// text, with the header that introduced it ("On … wrote:",
	// "From:/Sent:/To:/Subject:", …).
	Quoted string
	// SignatureText is the signature cut off the end of Reply, as text
	// (Signature is the S/MIME signature).
	SignatureText string
	// ReplyMarker names the rules that decided Reply, comma-separated: for
	// HTML marks "gmail_quote", "outlook_divRplyFwdMsg",
	// "outlook_appendonsend", "outlook_border_top", "blockquote_cite",
	// "moz-cite-prefix", "yahoo_quoted", "gmail_signature", …; for text
	// "on_wrote:<lang>", "outlook_header_block:<lang>",
	// "original_message", "forwarded", "quote_prefix", "quote_trailing" (a
	// "> " block that ends the body, set off by a blank line and not
	// introduced by a colon), "bottom_posted",
	// "sig_dash_dash", "sig_mobile". Empty when nothing was cut (Reply is
	// then Text). ReplyHTMLMarker is the same for ReplyHTML.
	ReplyMarker     string
	ReplyHTMLMarker string
	// RemoteContent lists the URLs of the remote images the HTML refers to
	// (img src and srcset, background attributes, background-image in
	// style attributes), once each, in order, blocked or not; a host can
	// offer "show remote content" when it is not empty.
	RemoteContent []string
	// Attachments are attachments and inline parts, in the order they appear.
	Attachments []*Attachment
	// Invite is the first event of a calendar invitation (a text/calendar
	// part, kept among the attachments as its .ics too), or nil.
	Invite *Invite
	// Signature is the S/MIME signature of a signed message, or nil.
	Signature *Signature
	// Header holds every header field, decoded, by canonical name.
	Header textproto.MIMEHeader
	// Size is the raw size in bytes.
	Size int64
	// Warnings say where parsing degraded gracefully (unknown charset,
	// undecodable bytes, truncated body, …).
	Warnings []string

	closers []io.Closer
}

// Invite is what a calendar invitation (iCalendar, RFC 5545) says of its
// event.
type Invite struct {
	Method    string // REQUEST, CANCEL, REPLY …
	UID       string
	Summary   string
	Location  string
	Organizer string // the organizer's address
	Start     time.Time
	End       time.Time
	AllDay    bool // Start is a date: the event lasts whole days
}

// Attachment is an attachment or inline part of a message.
type Attachment struct {
	// Filename is the part's file name (RFC 2231 and encoded words decoded),
	// maybe empty. It is safe to store under: at most 255 bytes of UTF-8
	// (cut keeping the extension), without control or Unicode format
	// characters (bidi overrides, zero-width), path or drive prefix; a
	// changed name adds a warning to the message.
	Filename    string
	ContentType string
	// ContentID is the inline part's Content-ID, without angle brackets.
	ContentID string
	// ContentLocation is the part's Content-Location, another way HTML
	// refers to an inline part.
	ContentLocation string
	// Inline is true for a part shown inside the HTML body: one the HTML
	// refers to (by cid: or Content-Location). An inline part the HTML never
	// refers to is listed as an ordinary attachment (Inline false).
	Inline bool
	// Referenced is true when the HTML body refers to the part, which is
	// then part of the body: the "attachments" mapping field leaves it out
	// ("attachments.inline" lists these), so it is not shown twice.
	Referenced bool
	// Size is the decoded size in bytes.
	Size int64

	open func() (io.ReadCloser, error)
}

// Open returns a reader over the decoded content. It may be called more than
// once; each reader must be closed. It is valid only while the ticket is handed
// to the sink.
func (a *Attachment) Open() (io.ReadCloser, error) {
	if a.open == nil {
		return nil, fmt.Errorf("mailsync: attachment %q has no content", a.Filename)
	}
	return a.open()
}

// NewAttachment makes an Attachment whose content is produced by open; for
// custom sinks and tests.
func NewAttachment(filename, contentType string, size int64, open func() (io.ReadCloser, error)) *Attachment {
	return &Attachment{Filename: filename, ContentType: contentType, Size: size, open: open}
}
