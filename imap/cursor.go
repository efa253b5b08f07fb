package imap

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/emersion/go-imap/v2"

	"github.com/mailsync/mailsync"
)

// position is a decoded cursor: the folder's UIDVALIDITY and the highest
// UID listed under it.
type position struct {
	uidValidity uint32
	uid         imap.UID
}

// encode returns the cursor "v1:<uidvalidity>:<uid>".
func (p position) encode() mailsync.Cursor {
	return mailsync.Cursor(fmt.Sprintf("v1:%d:%d", p.uidValidity, p.uid))
}

// parseCursor decodes a cursor made by encode. ok is false for anything
// else (the caller then lists everything).
func parseCursor(c mailsync.Cursor) (p position, ok bool) {
	parts := strings.Split(string(c), ":")
	if len(parts) != 3 || parts[0] != "v1" {
		return position{}, false
	}
	uv, err1 := strconv.ParseUint(parts[1], 10, 32)
	uid, err2 := strconv.ParseUint(parts[2], 10, 32)
	if err1 != nil || err2 != nil {
		return position{}, false
	}
	return position{uidValidity: uint32(uv), uid: imap.UID(uid)}, true
}

// messageKey returns the MessageRef key "<uidvalidity>:<uid>".
func messageKey(uidValidity uint32, uid imap.UID) string {
	return fmt.Sprintf("%d:%d", uidValidity, uid)
}

// parseKey decodes a key made by messageKey.
func parseKey(key string) (uidValidity uint32, uid imap.UID, ok bool) {
	a, b, found := strings.Cut(key, ":")
	if !found {
		return 0, 0, false
	}
	uv, err1 := strconv.ParseUint(a, 10, 32)
	u, err2 := strconv.ParseUint(b, 10, 32)
	if err1 != nil || err2 != nil || u == 0 {
		return 0, 0, false
	}
	return uint32(uv), imap.UID(u), true
}
