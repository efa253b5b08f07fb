package imap

import (
	"fmt"
	"net/url"
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

// Several folders (Options.Folders).
//
// Cursor: with one folder the cursor stays "v1:<uidvalidity>:<uid>". With
// several it is "v2" followed by one ";<folder>=<uidvalidity>:<uid>" per
// folder listed so far, the folder name as the admin wrote it, URL-query
// escaped: "v2;INBOX=1700000000:42;Support=1700000001:7". A v1 cursor is
// the position of the primary folder (the first of the list), so a
// deployment that goes from Folder to Folders, or adds folders after its
// first one, keeps its position; a v2 cursor read by a one-folder
// connector gives that folder its entry. A folder without an entry is
// listed from the start.
//
// Keys: the primary folder's keys stay "<uidvalidity>:<uid>", the keys
// every earlier version made, so the processed keys in a deployment's
// state still match. Keys of the other folders are qualified:
// "<folder>/<uidvalidity>:<uid>", the folder URL-path escaped (so it holds
// no "/"). Reordering the list therefore changes keys (moving a folder to
// or from first place); cursors are per folder name and do not change.

// cursorSet is a decoded cursor: the position of each folder, by the
// configured name.
type cursorSet map[string]position

// encodeCursors returns the cursor for folders (the configured list,
// primary first); folders without a position are left out.
func encodeCursors(folders []string, set cursorSet) mailsync.Cursor {
	if len(folders) == 1 {
		if p, ok := set[folders[0]]; ok {
			return p.encode()
		}
		return ""
	}
	var b strings.Builder
	b.WriteString("v2")
	for _, f := range folders {
		p, ok := set[f]
		if !ok {
			continue
		}
		fmt.Fprintf(&b, ";%s=%d:%d", url.QueryEscape(f), p.uidValidity, p.uid)
	}
	return mailsync.Cursor(b.String())
}

// parseCursors decodes a v1 cursor (the position of primary) or a v2
// cursor. ok is false for anything else.
func parseCursors(c mailsync.Cursor, primary string) (cursorSet, bool) {
	if p, ok := parseCursor(c); ok {
		return cursorSet{primary: p}, true
	}
	rest, found := strings.CutPrefix(string(c), "v2")
	if !found || (rest != "" && rest[0] != ';') {
		return nil, false
	}
	set := cursorSet{}
	if rest == "" {
		return set, true
	}
	for _, part := range strings.Split(rest[1:], ";") {
		name, pos, found := strings.Cut(part, "=")
		if !found {
			return nil, false
		}
		folder, err := url.QueryUnescape(name)
		if err != nil || folder == "" {
			return nil, false
		}
		p, ok := parseCursor(mailsync.Cursor("v1:" + pos))
		if !ok {
			return nil, false
		}
		set[folder] = p
	}
	return set, true
}

// folderKey returns the key of a message of folder: messageKey for the
// primary folder, "<escaped folder>/<uidvalidity>:<uid>" for the others.
func folderKey(folder string, primary bool, uidValidity uint32, uid imap.UID) string {
	if primary {
		return messageKey(uidValidity, uid)
	}
	return url.PathEscape(folder) + "/" + messageKey(uidValidity, uid)
}

// parseFolderKey decodes a key made by folderKey; folder is "" for the
// primary folder.
func parseFolderKey(key string) (folder string, uidValidity uint32, uid imap.UID, ok bool) {
	if i := strings.LastIndexByte(key, '/'); i >= 0 {
		f, err := url.PathUnescape(key[:i])
		if err != nil || f == "" {
			return "", 0, 0, false
		}
		folder, key = f, key[i+1:]
	}
	uidValidity, uid, ok = parseKey(key)
	if !ok {
		return "", 0, 0, false
	}
	return folder, uidValidity, uid, true
}
