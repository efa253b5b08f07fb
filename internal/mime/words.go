package mime

import "strings"

// Encoded words (RFC 2047) in header values.

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
