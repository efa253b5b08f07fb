package mime

import (
	"bytes"
	"fmt"
	"io"
	"strings"
	"unicode/utf8"

	"github.com/emersion/go-message/charset"
	"github.com/gogs/chardet"
	"golang.org/x/text/encoding/charmap"
)

// Charsets: body and header bytes decoded to UTF-8.

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
		if s, found, ok := detectCharset(b); ok {
			return s, fmt.Sprintf("is not valid %s: detected as %s", name, found)
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
	if s, found, ok := detectCharset(b); ok && found != cs {
		return s, fmt.Sprintf("is not valid %s: detected as %s", cs, found)
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
	if dec, found, ok := detectCharset([]byte(s)); ok {
		d.warnf("header has undeclared 8-bit bytes: detected as %s", found)
		return dec
	}
	d.HeaderGuessed = true
	d.warnf(HeaderFallbackWarning)
	return fixUTF8([]byte(s))
}

// HeaderFallbackWarning is the warning of a header field whose undeclared
// 8-bit bytes were read as windows-1252.
const HeaderFallbackWarning = "header has undeclared 8-bit bytes: decoded as windows-1252"

// DetectedCharset returns the charset DecodeCharset detected, from its
// warning, or "".
func DetectedCharset(warning string) string {
	_, label, ok := strings.Cut(warning, "detected as ")
	if !ok {
		return ""
	}
	return label
}

// detectable are the legacy charsets detectCharset may answer: the
// multi-byte East Asian ones and the Cyrillic ones, which windows-1252 —
// the fallback otherwise — turns into mojibake. (Western single-byte text
// is what windows-1252 reads right anyway.)
var detectable = map[string]string{
	"GB18030": "gb18030", "Big5": "big5", "Shift_JIS": "shift_jis", "EUC-JP": "euc-jp", "EUC-KR": "euc-kr",
	"ISO-2022-JP": "iso-2022-jp", "KOI8-R": "koi8-r", "windows-1251": "windows-1251", "ISO-8859-5": "iso-8859-5",
}

// detectCharset guesses the charset of 8-bit bytes that are not valid in
// the declared one (or have none), with github.com/gogs/chardet (the
// maintained fork of saintfish/chardet, ICU's detectors). It answers only a
// detectable charset found with enough confidence, and only when the bytes
// then decode cleanly; otherwise ok is false and the caller falls back to
// windows-1252.
func detectCharset(b []byte) (s, label string, ok bool) {
	if len(b) < 4 {
		return "", "", false
	}
	res, err := chardet.NewTextDetector().DetectBest(b)
	if err != nil || res == nil || res.Confidence < 30 {
		return "", "", false
	}
	label, ok = detectable[res.Charset]
	if !ok {
		return "", "", false
	}
	r, err := charset.Reader(label, bytes.NewReader(b))
	if err != nil {
		return "", "", false
	}
	out, err := io.ReadAll(r)
	if err != nil || bytes.Count(out, []byte("\uFFFD")) > bytes.Count(b, []byte("\uFFFD")) {
		return "", "", false
	}
	return strings.ToValidUTF8(string(out), "\uFFFD"), label, true
}
