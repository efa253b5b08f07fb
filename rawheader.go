package mailsync

import (
	"bufio"
	"bytes"
	"io"
	"strings"

	"github.com/mailsync/mailsync/internal/mime"
)

// maxRawHeaderScan bounds how much of a raw message rawMessageID reads.
const maxRawHeaderScan = 64 << 10

// maxRawMessageID is the longest Message-ID rawMessageID returns: an RFC
// 5322 line at most; a longer one is dropped, not cut.
const maxRawMessageID = 998

// rawMessageID finds the Message-ID in the raw header of a message the
// parser gave up on (Quarantined.Source.MessageID), so a host can show
// which mail it is. It is tolerant and bounded: it reads at most the first
// 64 KiB, stops at the first empty line, unfolds continuation lines, takes
// the first id of the first Message-ID field, and returns "" rather than
// fail — on a read error, no such field, or an id longer than 998 bytes or
// with control characters. Invalid UTF-8 is replaced.
func rawMessageID(r io.Reader) string {
	if r == nil {
		return ""
	}
	br := bufio.NewReaderSize(io.LimitReader(r, maxRawHeaderScan), 4096)
	var field []byte // the Message-ID field being read, unfolded
	in := false      // the current field is Message-ID
	for {
		line, err := br.ReadSlice('\n')
		if err == bufio.ErrBufferFull {
			// A line longer than the buffer: read it whole, still bounded
			// by the LimitReader.
			rest, _ := br.ReadBytes('\n')
			line = append(append([]byte(nil), line...), rest...)
			err = nil
		}
		trimmed := bytes.TrimRight(line, "\r\n")
		if len(trimmed) == 0 && (len(line) > 0 || err != nil) {
			break // end of the header (or of the input)
		}
		if trimmed[0] == ' ' || trimmed[0] == '\t' {
			if in {
				field = append(field, ' ')
				field = append(field, bytes.TrimSpace(trimmed)...)
			}
		} else {
			if in {
				break // the Message-ID field ended
			}
			name, value, ok := bytes.Cut(trimmed, []byte(":"))
			if ok && strings.EqualFold(string(bytes.TrimSpace(name)), "Message-Id") {
				in = true
				field = append(field[:0], bytes.TrimSpace(value)...)
			}
		}
		if err != nil {
			break
		}
	}
	if !in {
		return ""
	}
	ids := mime.MsgIDs(strings.ToValidUTF8(string(field), "\uFFFD"))
	if len(ids) == 0 {
		return ""
	}
	id := ids[0]
	if len(id) > maxRawMessageID || !printable(id) {
		return ""
	}
	return id
}
