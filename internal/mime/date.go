package mime

import (
	"net/mail"
	"strings"
	"time"
)

// The Date field, read leniently.

// Zones of RFC 5322's obsolete syntax; Go would give them the local offset
// or zero.
var obsZones = map[string]int{
	"UT": 0, "GMT": 0, "Z": 0, "EST": -5, "EDT": -4, "CST": -6, "CDT": -5, "MST": -7, "MDT": -6, "PST": -8, "PDT": -7,
}

var lenientDateLayouts = []string{
	time.RFC1123Z, time.RFC1123, time.RFC850, time.ANSIC, time.UnixDate, time.RubyDate, time.RFC3339,
	"Mon, 2 Jan 2006 15:04:05 -0700", "Mon, 2 Jan 2006 15:04:05 MST", "2 Jan 2006 15:04:05 -0700",
	"Mon, 2 Jan 06 15:04:05 -0700", "Mon, 2 Jan 2006 15:04 -0700", "Mon, 2 Jan 2006 15:04:05 -0700 MST",
	"Mon 2 Jan 2006 15:04:05 -0700", "2006-01-02 15:04:05 -0700", "2 Jan 2006 15:04:05 MST",
	"Mon, 2 Jan 2006 15:04:05", "2 Jan 2006 15:04:05", "Mon, 2 Jan 2006 15:04 MST",
}

// Date parses the Date field with net/mail, then leniently (comments and
// white space around colons removed, more layouts). A date nothing
// understands is the zero time, with a warning.
func (d *Decoder) Date(raw string) time.Time {
	raw = strings.TrimSpace(raw)
	if raw == "" {
		return time.Time{}
	}
	if t, err := mail.ParseDate(raw); err == nil {
		return fixZone(t)
	}
	clean := strings.Join(strings.Fields(stripComments(raw)), " ")
	clean = strings.ReplaceAll(strings.ReplaceAll(clean, " :", ":"), ": ", ":")
	clean = strings.Replace(clean, ",", ", ", 1)
	clean = strings.Join(strings.Fields(clean), " ")
	for _, layout := range lenientDateLayouts {
		if t, err := time.Parse(layout, clean); err == nil {
			return fixZone(t)
		}
	}
	d.warnf("date %q not understood", truncateForWarning([]byte(raw)))
	return time.Time{}
}

// fixZone gives the obsolete zone names their RFC 5322 offsets.
func fixZone(t time.Time) time.Time {
	name, off := t.Zone()
	if h, ok := obsZones[strings.ToUpper(name)]; ok && off != h*3600 {
		y, mo, d := t.Date()
		hh, mm, ss := t.Clock()
		return time.Date(y, mo, d, hh, mm, ss, t.Nanosecond(), time.FixedZone(name, h*3600))
	}
	return t
}
