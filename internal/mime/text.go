package mime

import "strings"

// Plain text bodies: line ends and format=flowed (RFC 3676).

// Unflow joins the soft line breaks of format=flowed text (RFC 3676): a line
// ending in a space continues on the next line of the same quote depth. Space
// stuffing is removed; with delsp=yes the space before the break goes too.
// The signature separator "-- " is never joined.
func Unflow(s string, delsp bool) string {
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

// NormalizeNewlines turns CRLF and lone CR line ends into LF.
func NormalizeNewlines(s string) string {
	if !strings.Contains(s, "\r") {
		return s
	}
	s = strings.ReplaceAll(s, "\r\n", "\n")
	return strings.ReplaceAll(s, "\r", "\n")
}
