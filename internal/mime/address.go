package mime

// Address lists and message identifiers.

import (
	"io"
	stdmime "mime"
	"net/mail"
	"regexp"
	"strings"
)

// Addresses parses the address list field key of h with go-message
// (net/mail); when it refuses the value, a lenient reading keeps whatever
// looks like an address, as mail clients show it. Each address is made by
// mk, so that the caller gets its own type without a copy. The result is
// nil when the field is empty.
func Addresses[A any](d *Decoder, h Header, key string, mk func(name, address string) A) []A {
	raw := d.fixHeaderBytes(h.Get(key))
	if strings.TrimSpace(raw) == "" {
		return nil
	}
	parser := mail.AddressParser{WordDecoder: mimeWordDecoder(d)}
	list, err := parser.ParseList(raw)
	if err != nil {
		d.warnf("%s: %v: read leniently", key, err)
		lenient := d.lenientAddresses(raw)
		if lenient == nil {
			return nil
		}
		out := make([]A, 0, len(lenient))
		for _, a := range lenient {
			out = append(out, mk(d.SingleLine(key+" name", a.Name), d.SingleLine(key+" address", a.Address)))
		}
		return out
	}
	for _, a := range list {
		if strings.Contains(a.Name, "=?") { // an encoded word inside quotes: clients decode it too
			a.Name = d.DecodeText(a.Name)
		}
		a.Name, a.Address = strings.ToValidUTF8(a.Name, "\uFFFD"), unquoteAddress(strings.ToValidUTF8(a.Address, "\uFFFD"))
	}
	// Display names come from encoded words, which may hold CR, LF or NUL;
	// a quoted local part may too.
	out := make([]A, 0, len(list))
	for _, a := range list {
		out = append(out, mk(d.SingleLine(key+" name", a.Name), d.SingleLine(key+" address", a.Address)))
	}
	return out
}

// encodedWord matches one RFC 2047 encoded word.
var encodedWord = regexp.MustCompile(`^=\?[^?\s]+\?[bBqQ]\?[^?\s]*\?=`)

// unquoteAddress drops stray quotes or apostrophes that wrap a whole
// address ('ana@example.com'), which the grammar allows as part of the
// local part and the domain but no mailer means.
func unquoteAddress(a string) string {
	if len(a) > 2 && (a[0] == '\'' || a[0] == '"') && a[len(a)-1] == a[0] && strings.Count(a, "@") == 1 {
		return a[1 : len(a)-1]
	}
	return a
}

// mailbox is one address the lenient reading found.
type mailbox struct{ Name, Address string }

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
func (d *Decoder) lenientAddresses(raw string) []mailbox {
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
		case c == '=' && i+1 < len(s) && s[i+1] == '?':
			// An encoded word is one token, whatever it holds: Outlook
			// writes "Last, First" unquoted inside one.
			if loc := encodedWord.FindStringIndex(s[i:]); loc != nil && loc[0] == 0 {
				i += loc[1] - 1
			}
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
	var out []mailbox
	for _, item := range items {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		if i, j := strings.LastIndex(item, "<"), strings.LastIndex(item, ">"); i >= 0 && j > i {
			// Stray quotes or apostrophes around the address: <"a@b.pt">.
			addr := strings.Trim(strings.Join(strings.Fields(item[i+1:j]), ""), `"'`)
			if k := strings.LastIndexByte(addr, ':'); strings.HasPrefix(addr, "@") && k >= 0 { // obs-route
				addr = addr[k+1:]
			}
			out = append(out, mailbox{Name: d.displayName(item[:i]), Address: addr})
			continue
		}
		if !strings.Contains(item, "@") {
			out = append(out, mailbox{Name: d.displayName(item)})
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
			ad := mailbox{Address: a}
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
