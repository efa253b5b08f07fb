// Package reply splits the body of a mail into the new text, the quoted
// history, the signature and forwarded messages, from the marks mail
// clients leave: in HTML the classes and ids of Gmail, Outlook, Apple Mail,
// Thunderbird and Yahoo; in text "> " quoting, the "-- " delimiter,
// "On … wrote:" headers (in English, Portuguese, Spanish, French, German,
// Italian, Dutch and Japanese, also wrapped over several lines) and
// Outlook's "From:/Sent:/To:/Subject:" block in the same languages.
//
// It keeps more text when unsure: it cuts only at a mark it recognises, a
// "-- " signature only near the end, quoted lines only when no new text
// follows them (an interleaved answer is kept whole), and it never returns
// an empty reply for a non-empty body. Every rule is linear in the body.
package reply

import (
	"regexp"
	"strings"
)

// Result is one body split into its segments.
type Result struct {
	// Reply is the new text; the whole body when nothing was recognised.
	Reply string
	// Quoted is the quoted history or forwarded message cut off, with the
	// header that introduced it.
	Quoted string
	// Signature is the signature cut off the end of the new text.
	Signature string
	// Marker names the rules that decided the split, comma-separated
	// (e.g. "on_wrote:pt", "outlook_header_block:de,sig_dash_dash"); empty
	// when nothing was cut.
	Marker string
}

// maxHeaderLines is how many lines an "On … wrote:" header may be wrapped
// over; maxHeaderRunes bounds the joined header.
const (
	maxHeaderLines = 4
	maxHeaderRunes = 500
	// maxSigLines is how far from the end of the new text a "-- "
	// delimiter may be to be taken for a signature's.
	maxSigLines = 12
	// maxBareSigLines is the same for "--" without its space.
	maxBareSigLines = 6
)

// onWrote are the "On <date>, <name> wrote:" headers, by language; each is
// matched against one line or a few lines joined with spaces, lower-cased.
var onWrote = []struct {
	lang string
	re   *regexp.Regexp
}{
	{"en", regexp.MustCompile(`(?i)^(?:on|at)\s.{0,400}\s(?:wrote|writes|said)\s?:$`)},
	{"pt", regexp.MustCompile(`(?i)^(?:em|a|no dia|às|as)\s.{0,400}\sescreveu\s?:$`)},
	{"es", regexp.MustCompile(`(?i)^(?:el|en)\s.{0,400}\sescribió\s?:$`)},
	{"fr", regexp.MustCompile(`(?i)^le\s.{0,400}\sa écrit\s?:$`)},
	{"de", regexp.MustCompile(`(?i)^am\s.{0,400}\sschrieb\s.{0,300}:$`)},
	{"it", regexp.MustCompile(`(?i)^(?:il|in data)\s.{0,400}\sha scritto\s?:$`)},
	{"nl", regexp.MustCompile(`(?i)^op\s.{0,400}\sschreef\s.{0,300}:$`)},
	{"ja", regexp.MustCompile(`(?i)^(?:\d{4}年\d{1,2}月\d{1,2}日|\d{4}/\d{1,2}/\d{1,2}).{0,300}[:：]$|^.{1,300}(?:書きました|のメール)\s?[:：]$`)},
}

// originalMessage are the separator lines above a quoted or forwarded
// message; each is confident on its own.
var originalMessage = []struct {
	marker string
	re     *regexp.Regexp
}{
	{"original_message", regexp.MustCompile(`(?i)^-{2,}\s*(?:original message|mensagem original|mensaje original|message d'origine|message original|ursprüngliche nachricht|originalnachricht|messaggio originale|oorspronkelijk bericht|oorspronkelijk e-mailbericht|元のメッセージ)\s*-{2,}$`)},
	{"forwarded", regexp.MustCompile(`(?i)^-{2,}\s*(?:forwarded message|mensagem encaminhada|mensagem reencaminhada|mensaje reenviado|message transféré|weitergeleitete nachricht|messaggio inoltrato|doorgestuurd bericht|転送されたメッセージ)\s*-{2,}$`)},
	{"forwarded", regexp.MustCompile(`(?i)^(?:begin forwarded message|início da mensagem reencaminhada|início da mensagem encaminhada|comienzo del mensaje reenviado|début du message réexpédié|anfang der weitergeleiteten nachricht|inizio messaggio inoltrato|begin doorgestuurd bericht|転送されたメッセージの始まり)\s?[:：]$`)},
}

// headerKeys are the fields of Outlook's header block above a quoted
// message, by language: the "From" key, then the others.
var headerKeys = []struct {
	lang   string
	from   []string
	others []string
}{
	{"en", []string{"from"}, []string{"sent", "date", "to", "subject", "cc"}},
	{"pt", []string{"de"}, []string{"enviado", "enviada", "data", "para", "assunto", "cc"}},
	{"es", []string{"de"}, []string{"enviado el", "enviado", "fecha", "para", "asunto", "cc"}},
	{"fr", []string{"de"}, []string{"envoyé", "date", "à", "a", "objet", "cc"}},
	{"de", []string{"von"}, []string{"gesendet", "datum", "an", "betreff", "cc"}},
	{"it", []string{"da"}, []string{"inviato", "data", "a", "oggetto", "cc"}},
	{"nl", []string{"van"}, []string{"verzonden", "datum", "aan", "onderwerp", "cc"}},
	{"ja", []string{"差出人", "送信者"}, []string{"送信日時", "日付", "宛先", "件名", "cc"}},
}

// mobileSignature are the one-line signatures phones add.
var mobileSignature = regexp.MustCompile(`(?i)^(?:sent from my \S.{0,40}|sent from (?:outlook|mail|yahoo mail).{0,40}|get outlook for \S.{0,30}|enviado do meu \S.{0,40}|enviado desde mi \S.{0,40}|envoyé de mon \S.{0,40}|von meinem \S.{0,40} gesendet|inviato da(?:l mio)? \S.{0,40}|verzonden (?:met|vanaf) mijn \S.{0,40}|\S{1,30}から送信)$`)

// Text splits a text body.
func Text(s string) Result {
	r, _, _, _ := splitLines(s, strings.Split(s, "\n"))
	return r
}

// splitLines is Text on s split into lines; it also returns the line where
// the quote starts and the line where the signature starts (-1: none, or
// not a cut of the lines' end as for a bottom-posted reply), and for a
// bottom-posted reply the line where its new text starts (else -1).
func splitLines(s string, lines []string) (r Result, quoteAt, sigAt, replyAt int) {
	quoteAt, sigAt, replyAt = -1, -1, -1
	whole := Result{Reply: s}
	if strings.TrimSpace(s) == "" {
		return whole, -1, -1, -1
	}
	// The lines trimmed (not copied); the rules match them without regard
	// to case.
	lower := make([]string, len(lines))
	for i, l := range lines {
		lower[i] = strings.TrimSpace(l)
	}
	var markers []string
	end := len(lines) // the new text is lines[:end]
	cut, marker, prefixed := findQuote(lines, lower)
	var quoted string
	if cut >= 0 {
		if marker == "quote_prefix" && !quotedHistory(lower, cut) {
			// "> " lines with no header in them may be the customer's own
			// quotation (an error message, a line of a document): keep.
			return whole, -1, -1, -1
		}
		if blank(lower[:cut]) {
			// Bottom posting: the quote comes first. Keep the text after
			// it when the quote is one "> " block followed by new text
			// only.
			if at, ok := bottomPosted(lower, cut); ok && marker != "quote_prefix" {
				r := finish(Result{
					Reply:  strings.Join(lines[at:], "\n"),
					Quoted: strings.Join(lines[cut:at], "\n"),
					Marker: marker + ",bottom_posted",
				}, s)
				if r.Marker == "" {
					return r, -1, -1, -1
				}
				return r, -1, -1, at
			}
			return whole, -1, -1, -1
		}
		if prefixed && !quoteRunsToEnd(lower, cut) {
			return whole, -1, -1, -1 // an interleaved answer: keep everything
		}
		end, quoteAt = cut, cut
		quoted = strings.Join(lines[cut:], "\n")
		markers = append(markers, marker)
	}
	sig, sigMarker := findSignature(lines, lower, end)
	var signature string
	if sig >= 0 {
		signature = strings.TrimSpace(strings.Join(lines[sig:end], "\n"))
		end, sigAt = sig, sig
		markers = append(markers, sigMarker)
	}
	if len(markers) == 0 {
		return whole, -1, -1, -1
	}
	r = finish(Result{
		Reply:     strings.Join(lines[:end], "\n"),
		Quoted:    quoted,
		Signature: signature,
		Marker:    strings.Join(markers, ","),
	}, s)
	if r.Marker == "" { // the reply came out empty: kept whole
		return r, -1, -1, -1
	}
	return r, quoteAt, sigAt, -1
}

// finish trims the segments and falls back to the whole body when the
// reply came out empty.
func finish(r Result, whole string) Result {
	r.Reply = strings.TrimRight(r.Reply, " \t\r\n")
	r.Quoted = strings.TrimSpace(r.Quoted)
	if strings.TrimSpace(r.Reply) == "" {
		return Result{Reply: whole}
	}
	return r
}

func blank(lower []string) bool {
	for _, l := range lower {
		if l != "" {
			return false
		}
	}
	return true
}

func isQuoted(l string) bool { return strings.HasPrefix(l, ">") }

// findQuote returns the first line of the quoted history, the marker that
// found it and whether the history is "> "-quoted (then new text may
// follow it), or -1.
func findQuote(lines, lower []string) (int, string, bool) {
	for i, l := range lower {
		if l == "" {
			continue
		}
		if isQuoted(l) {
			// A block of quoted lines that begins like quoted mail:
			// history when nothing but quoted lines or blank lines follow
			// (checked by the caller). Other quoted lines are the
			// customer's own quotation: look further.
			if quotedHistory(lower, i) {
				return i, "quote_prefix", true
			}
			if trailingQuote(lower, i) {
				return i, "quote_trailing", true
			}
			continue
		}
		if strings.HasPrefix(l, "--") || strings.HasSuffix(l, ":") || strings.HasSuffix(l, "：") {
			for _, om := range originalMessage {
				if om.re.MatchString(l) {
					return i, om.marker, false
				}
			}
		}
		if isUnderscoreRule(l) {
			if lang := headerBlock(lower, i+1); lang != "" {
				return i, "outlook_header_block:" + lang, false
			}
		}
		if lang := headerBlock(lower, i); lang != "" {
			return i, "outlook_header_block:" + lang, false
		}
		if lang, n := onWroteHeader(lower, i); lang != "" {
			next := nextNonBlank(lower, i+n)
			return i, "on_wrote:" + lang, next >= 0 && isQuoted(lower[next])
		}
	}
	return -1, "", false
}

func nextNonBlank(lower []string, i int) int {
	for ; i < len(lower); i++ {
		if lower[i] != "" {
			return i
		}
	}
	return -1
}

func isUnderscoreRule(l string) bool {
	return len(l) >= 20 && strings.Trim(l, "_") == ""
}

// onWroteHeader reports whether an "On … wrote:" header starts at line i,
// maybe wrapped over a few lines, with its language and its line count.
func onWroteHeader(lower []string, i int) (string, int) {
	size := 0
	for n := 1; n <= maxHeaderLines && i+n <= len(lower); n++ {
		l := lower[i+n-1]
		if l == "" || isQuoted(l) && n > 1 {
			break
		}
		if size += len(l) + 1; size > maxHeaderRunes*3 {
			break
		}
		if !strings.HasSuffix(l, ":") && !strings.HasSuffix(l, "：") {
			continue
		}
		joined := strings.Join(lower[i:i+n], " ")
		if !strings.ContainsAny(joined, "0123456789@") {
			// A real header has a date or an address, or quoted lines
			// under it.
			if next := nextNonBlank(lower, i+n); next < 0 || !isQuoted(lower[next]) {
				return "", 0
			}
		}
		for _, ow := range onWrote {
			if ow.re.MatchString(joined) {
				return ow.lang, n
			}
		}
	}
	return "", 0
}

// headerBlock reports whether Outlook's header block ("From: … Sent: …
// To: … Subject: …") starts at line i, and in which language: a From
// field and at least two of the others within the next lines.
func headerBlock(lower []string, i int) string {
	if !fieldLike(lower[i]) {
		return ""
	}
	for _, hk := range headerKeys {
		if !hasKey(lower[i], hk.from) {
			continue
		}
		seen := 0
		for j := i + 1; j < len(lower) && j <= i+8; j++ {
			if lower[j] == "" {
				if seen >= 2 {
					break
				}
				continue
			}
			if fieldLike(lower[j]) && hasKey(lower[j], hk.others) {
				seen++
			}
		}
		if seen >= 2 {
			return hk.lang
		}
	}
	return ""
}

// fieldLike reports whether a line has a colon close enough to its start
// to be a header field of the block (the keys are short).
func fieldLike(l string) bool {
	head := l[:min(len(l), 32)]
	return strings.IndexByte(head, ':') >= 0 || strings.Contains(head, "：")
}

// hasKey reports whether line l is a "Key: value" field with one of keys
// (a bold "*From:*" as Outlook renders it as text included).
func hasKey(l string, keys []string) bool {
	l = strings.TrimLeft(l, "*")
	for _, k := range keys {
		if len(l) < len(k) || !strings.EqualFold(l[:len(k)], k) {
			continue
		}
		rest := strings.TrimLeft(l[len(k):], "* \u00a0")
		if strings.HasPrefix(rest, ":") || strings.HasPrefix(rest, "：") {
			return true
		}
	}
	return false
}

// quotedHistory reports whether the "> " block starting at line cut
// begins like quoted mail: an "On … wrote:" header or two header fields
// (From, Sent, To, Subject … in any of the languages) in its first lines.
func quotedHistory(lower []string, cut int) bool {
	var inner []string
	for _, l := range lower[cut:min(len(lower), cut+10)] {
		if !isQuoted(l) {
			break
		}
		inner = append(inner, strings.TrimSpace(strings.TrimLeft(l, "> ")))
	}
	fields := 0
	for i, l := range inner {
		if l == "" {
			continue
		}
		if lang, _ := onWroteHeader(inner, i); lang != "" {
			return true
		}
		if !fieldLike(l) {
			continue
		}
		for _, hk := range headerKeys {
			if hasKey(l, hk.from) || hasKey(l, hk.others) {
				fields++
				break
			}
		}
	}
	return fields >= 2
}

// trailingQuote reports whether the "> " block starting at line i is
// quoted history that has no header: the whole previous mail quoted under
// the answer, as some clients do without an "On … wrote:" line. It must end
// the body (only quoted and blank lines follow it), be set off from the new
// text above by a blank line, and not be introduced by that text (its last
// line does not end with a colon, as "The page says:" does before the
// customer's own quotation of an error).
func trailingQuote(lower []string, i int) bool {
	if i == 0 || lower[i-1] != "" {
		return false
	}
	prev := i - 1
	for prev >= 0 && lower[prev] == "" {
		prev--
	}
	if prev < 0 || isQuoted(lower[prev]) {
		return false // nothing above it, or another quoted block: unsure
	}
	if strings.HasSuffix(lower[prev], ":") || strings.HasSuffix(lower[prev], "：") {
		return false
	}
	for _, l := range lower[i:] {
		if l != "" && !isQuoted(l) {
			return false
		}
	}
	return true
}

// quoteRunsToEnd reports whether, from line cut, only quoted lines, blank
// lines and a short tail follow: no new text after the quote.
func quoteRunsToEnd(lower []string, cut int) bool {
	inQuote := false
	for _, l := range lower[cut:] {
		switch {
		case l == "":
		case isQuoted(l):
			inQuote = true
		case !inQuote:
			// the header line(s) above the first quoted line
		default:
			return false
		}
	}
	return true
}

// bottomPosted handles a body that starts with its quote: a header and
// "> " lines, then new text with no quoted line after it. It returns the
// line where the new text starts.
func bottomPosted(lower []string, cut int) (at int, ok bool) {
	i := cut
	for i < len(lower) && !isQuoted(lower[i]) {
		i++ // the header
	}
	if i-cut > maxHeaderLines {
		return -1, false
	}
	for i < len(lower) && (isQuoted(lower[i]) || lower[i] == "") {
		i++
	}
	for _, l := range lower[i:] {
		if isQuoted(l) {
			return -1, false
		}
	}
	return i, i < len(lower)
}

// findSignature returns the first line of the signature at the end of
// lines[:end] ("-- " delimiter near the end, or a phone's one-line
// signature as the last line), or -1.
func findSignature(lines, lower []string, end int) (int, string) {
	last := end - 1
	for last >= 0 && lower[last] == "" {
		last--
	}
	if last < 0 {
		return -1, ""
	}
	for i := last; i >= 0 && i >= last-maxSigLines; i-- {
		// "-- " is the delimiter; "--" (a client that trims trailing
		// spaces) only closer to the end, as it also draws rules.
		if lower[i] == "--" && (strings.TrimRight(lines[i], "\r") == "-- " || last-i <= maxBareSigLines) {
			if !blank(lower[:i]) {
				return i, "sig_dash_dash"
			}
			break
		}
	}
	if mobileSignature.MatchString(lower[last]) && !blank(lower[:last]) {
		return last, "sig_mobile"
	}
	return -1, ""
}
