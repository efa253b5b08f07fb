package mime

import (
	"bufio"
	"bytes"
	"io"
	"strings"
	"time"
)

// MaxCalendarBytes bounds how much of a text/calendar part is read for its
// event; the whole part is kept as an attachment anyway.
const MaxCalendarBytes = 256 << 10

// Event is what a calendar invitation says of its first event (VEVENT).
type Event struct {
	Method    string // the iCalendar METHOD: REQUEST, CANCEL, REPLY …
	UID       string
	Summary   string
	Location  string
	Organizer string // the organizer's address (mailto: removed)
	Start     time.Time
	End       time.Time
	AllDay    bool // DTSTART is a date, not a time
}

// ParseCalendar reads the first VEVENT of an iCalendar (RFC 5545) object:
// lines unfolded, text values unescaped, times in UTC or their TZID zone
// (a zone this machine does not know is read as UTC). It reads at most
// MaxCalendarBytes; ok is false when there is no event.
func ParseCalendar(r io.Reader) (ev Event, ok bool) {
	sc := bufio.NewScanner(io.LimitReader(r, MaxCalendarBytes))
	sc.Buffer(make([]byte, 0, 4096), MaxCalendarBytes)
	var lines []string
	for sc.Scan() {
		line := strings.TrimRight(sc.Text(), "\r")
		if len(line) > 0 && (line[0] == ' ' || line[0] == '\t') && len(lines) > 0 {
			lines[len(lines)-1] += line[1:] // RFC 5545 3.1 unfolding
			continue
		}
		lines = append(lines, line)
	}
	inEvent, depth := false, 0
	for _, line := range lines {
		name, params, value := contentLine(line)
		switch {
		case name == "BEGIN" && strings.EqualFold(value, "VEVENT") && !ok:
			inEvent, ok = true, true
			continue
		case name == "BEGIN" && inEvent:
			depth++ // a VALARM inside the event
			continue
		case name == "END" && inEvent && depth > 0:
			depth--
			continue
		case name == "END" && strings.EqualFold(value, "VEVENT"):
			inEvent = false
			continue
		case name == "METHOD" && !inEvent:
			ev.Method = strings.ToUpper(strings.TrimSpace(value))
		}
		if !inEvent || depth > 0 {
			continue
		}
		switch name {
		case "UID":
			ev.UID = SingleLineText(value)
		case "SUMMARY":
			ev.Summary = SingleLineText(unescapeText(value))
		case "LOCATION":
			ev.Location = SingleLineText(unescapeText(value))
		case "ORGANIZER":
			v := strings.TrimSpace(value)
			if len(v) >= 7 && strings.EqualFold(v[:7], "mailto:") {
				v = v[7:]
			}
			ev.Organizer = SingleLineText(v)
		case "DTSTART":
			ev.Start, ev.AllDay = calendarTime(params, value)
		case "DTEND":
			ev.End, _ = calendarTime(params, value)
		}
	}
	return ev, ok
}

// contentLine splits "NAME;PARAM=V;…:value" (a quoted parameter value may
// hold ':' or ';').
func contentLine(line string) (name string, params map[string]string, value string) {
	quoted := false
	colon := -1
	for i := 0; i < len(line); i++ {
		if line[i] == '"' {
			quoted = !quoted
		} else if line[i] == ':' && !quoted {
			colon = i
			break
		}
	}
	if colon < 0 {
		return "", nil, ""
	}
	head, value := line[:colon], line[colon+1:]
	parts := strings.Split(head, ";")
	name = strings.ToUpper(strings.TrimSpace(parts[0]))
	for _, p := range parts[1:] {
		if k, v, ok := strings.Cut(p, "="); ok {
			if params == nil {
				params = map[string]string{}
			}
			params[strings.ToUpper(k)] = strings.Trim(v, `"`)
		}
	}
	return name, params, value
}

// calendarTime reads a DATE-TIME or DATE value.
func calendarTime(params map[string]string, v string) (time.Time, bool) {
	v = strings.TrimSpace(v)
	if params["VALUE"] == "DATE" || len(v) == 8 {
		t, err := time.Parse("20060102", v)
		return t, err == nil
	}
	if strings.HasSuffix(v, "Z") {
		t, _ := time.Parse("20060102T150405Z", v)
		return t, false
	}
	loc := time.UTC
	if tz := params["TZID"]; tz != "" {
		if l, err := time.LoadLocation(tz); err == nil {
			loc = l
		}
	}
	t, _ := time.ParseInLocation("20060102T150405", v, loc)
	return t, false
}

// unescapeText undoes RFC 5545 TEXT escapes (\n, \, \; \\).
func unescapeText(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b bytes.Buffer
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+1 < len(s) {
			i++
			switch s[i] {
			case 'n', 'N':
				b.WriteByte('\n')
			default:
				b.WriteByte(s[i])
			}
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// SingleLineText replaces control characters by spaces (a value that goes
// into a single-line field).
func SingleLineText(s string) string {
	return strings.Map(func(r rune) rune {
		if isLineControl(r) {
			return ' '
		}
		return r
	}, strings.ToValidUTF8(s, "\uFFFD"))
}
