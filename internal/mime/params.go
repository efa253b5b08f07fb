package mime

import (
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Content-Type and other "value; key=val" fields: RFC 2045 parameters,
// RFC 2231 extended and continued ones, and bounds on file name values.

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
