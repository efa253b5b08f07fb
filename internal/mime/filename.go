package mime

import (
	"fmt"
	"strings"
	"unicode"
)

// Attachment file names made safe to store under.

// maxFilenameBytes bounds an attachment's file name: 255 bytes of UTF-8, the
// limit of most file systems (NAME_MAX), so a sink that stores attachments
// under their names never meets ENAMETOOLONG.
const maxFilenameBytes = 255

// maxFilenameExt is the longest extension kept when a name is shortened.
const maxFilenameExt = 32

// AttachmentName sanitises a decoded file name (see cleanFilename) and
// warns when that changed it.
func (d *Decoder) AttachmentName(name string) string {
	clean, why := cleanFilename(name)
	if len(why) > 0 {
		d.warnf("attachment name %q changed to %q: %s", truncateForWarning([]byte(name)), truncateForWarning([]byte(clean)), strings.Join(why, ", "))
	}
	return clean
}

// cleanFilename makes a file name safe to store under: control characters
// and Unicode format characters (bidi overrides and isolates, zero-width
// characters, BOM, tag characters; category Cf) are removed, only the last
// path element is kept and a drive prefix ("C:") removed, so a sink that
// stores attachments cannot be sent elsewhere nor shown a name that reads
// differently from what it is ("invoice\u202Efdp.exe"), and the name is
// cut to 255 bytes of UTF-8 on a character boundary, keeping its extension.
// It returns the reasons for any change beyond trimming white space.
func cleanFilename(name string) (string, []string) {
	var why []string
	name = strings.ToValidUTF8(name, "\uFFFD")
	if strings.IndexFunc(name, InvisibleInName) >= 0 {
		name = strings.Map(func(r rune) rune {
			if InvisibleInName(r) {
				return -1
			}
			return r
		}, name)
		why = append(why, "control or format characters removed")
	}
	if i := strings.LastIndexAny(name, `/\`); i >= 0 {
		name = name[i+1:]
		why = append(why, "path removed")
	}
	if len(name) >= 2 && name[1] == ':' && ('a' <= name[0]|0x20 && name[0]|0x20 <= 'z') {
		name = name[2:]
		why = append(why, "drive removed")
	}
	name = strings.TrimSpace(name)
	if name == "." || name == ".." {
		return "", append(why, "no name left")
	}
	if len(name) > maxFilenameBytes {
		why = append(why, fmt.Sprintf("shortened to %d bytes", maxFilenameBytes))
		ext := ""
		if dot := strings.LastIndexByte(name, '.'); dot > 0 && len(name)-dot <= maxFilenameExt && !strings.ContainsAny(name[dot:], " \t") {
			ext = name[dot:]
		}
		name = truncateUTF8(name[:len(name)-len(ext)], maxFilenameBytes-len(ext)) + ext
	}
	return name, why
}

// InvisibleInName reports the characters a file name must not hold:
// controls (C0, DEL, C1), line and paragraph separators, and format
// characters (Cf: U+200B–U+200F, U+202A–U+202E, U+2066–U+2069, U+FEFF, …).
func InvisibleInName(r rune) bool {
	return r < 0x20 || (0x7f <= r && r <= 0x9f) || r == 0x2028 || r == 0x2029 || unicode.Is(unicode.Cf, r)
}
