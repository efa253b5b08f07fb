package imap

import (
	"github.com/emersion/go-imap/v2"

	"testing"

	"github.com/mailsync/mailsync"
)

func TestCursorRoundTrip(t *testing.T) {
	p := position{uidValidity: 4294967295, uid: 123}
	c := p.encode()
	if c != "v1:4294967295:123" {
		t.Fatalf("encode = %q", c)
	}
	if got, ok := parseCursor(c); !ok || got != p {
		t.Fatalf("parse = %+v, %v", got, ok)
	}
	for _, bad := range []mailsync.Cursor{"", "v2:1:2", "v1:1", "v1:x:2", "v1:1:-2", "v1:4294967296:1", "v1:1:2:3"} {
		if _, ok := parseCursor(bad); ok {
			t.Errorf("parseCursor(%q) accepted", bad)
		}
	}
}

func TestKeys(t *testing.T) {
	if k := messageKey(7, 42); k != "7:42" {
		t.Fatalf("messageKey = %q", k)
	}
	if uv, uid, ok := parseKey("7:42"); !ok || uv != 7 || uid != 42 {
		t.Fatalf("parseKey = %d %d %v", uv, uid, ok)
	}
	for _, bad := range []string{"", "7", "7:0", "x:1", "7:1:2", "-1:3"} {
		if _, _, ok := parseKey(bad); ok {
			t.Errorf("parseKey(%q) accepted", bad)
		}
	}
}

func TestBatches(t *testing.T) {
	s := &session{cfg: &config{opts: Options{BatchSize: 3, BatchBytes: 1000}}}
	mk := func(uid uint32, size int64) target {
		return target{ref: mailsync.MessageRef{Key: messageKey(1, 0), Size: size}, uid: imap.UID(uid)}
	}
	ts := []target{mk(1, 10), mk(2, 10), mk(3, 10), mk(4, 10), mk(2, 10), mk(5, 900), mk(6, 200), mk(7, 5000), mk(8, -1)}
	var got [][]uint32
	for _, b := range s.batches(ts) {
		var uids []uint32
		for _, t := range b {
			uids = append(uids, uint32(t.uid))
		}
		got = append(got, uids)
	}
	want := [][]uint32{{1, 2, 3}, {4}, {2, 5}, {6}, {7}, {8}}
	if len(got) != len(want) {
		t.Fatalf("batches = %v, want %v", got, want)
	}
	for i := range want {
		if len(got[i]) != len(want[i]) {
			t.Fatalf("batches = %v, want %v", got, want)
		}
		for j := range want[i] {
			if got[i][j] != want[i][j] {
				t.Fatalf("batches = %v, want %v", got, want)
			}
		}
	}
}

func TestFolderCursors(t *testing.T) {
	folders := []string{"INBOX", "Support/Tier 1", "a=b;c%d"}
	set := cursorSet{"INBOX": {7, 42}, "a=b;c%d": {9, 1}}
	c := encodeCursors(folders, set)
	if c != "v2;INBOX=7:42;a%3Db%3Bc%25d=9:1" {
		t.Fatalf("encode = %q", c)
	}
	got, ok := parseCursors(c, "INBOX")
	if !ok || len(got) != 2 || got["INBOX"] != set["INBOX"] || got["a=b;c%d"] != set["a=b;c%d"] {
		t.Fatalf("parse = %v, %v", got, ok)
	}
	// One folder keeps v1; a v1 cursor is the primary folder's position.
	if c := encodeCursors([]string{"Support"}, cursorSet{"Support": {3, 4}}); c != "v1:3:4" {
		t.Fatalf("one folder: %q", c)
	}
	if got, ok := parseCursors("v1:3:4", "Support"); !ok || got["Support"] != (position{3, 4}) || len(got) != 1 {
		t.Fatalf("v1 = %v, %v", got, ok)
	}
	if got, ok := parseCursors("v2", "INBOX"); !ok || len(got) != 0 {
		t.Fatalf("empty v2 = %v, %v", got, ok)
	}
	for _, bad := range []mailsync.Cursor{"", "v2;", "v2x", "v2;INBOX", "v2;=1:2", "v2;INBOX=1", "v2;INBOX=1:x", "v2;%zz=1:2", "v3;INBOX=1:2"} {
		if _, ok := parseCursors(bad, "INBOX"); ok {
			t.Errorf("parseCursors(%q) accepted", bad)
		}
	}
}

func TestFolderKeys(t *testing.T) {
	if k := folderKey("INBOX", true, 7, 42); k != "7:42" {
		t.Fatalf("primary key = %q", k)
	}
	k := folderKey("Support/Tier 1", false, 7, 42)
	if k != "Support%2FTier%201/7:42" {
		t.Fatalf("key = %q", k)
	}
	if f, uv, uid, ok := parseFolderKey(k); !ok || f != "Support/Tier 1" || uv != 7 || uid != 42 {
		t.Fatalf("parseFolderKey = %q %d %d %v", f, uv, uid, ok)
	}
	if f, uv, uid, ok := parseFolderKey("7:42"); !ok || f != "" || uv != 7 || uid != 42 {
		t.Fatalf("parseFolderKey(primary) = %q %d %d %v", f, uv, uid, ok)
	}
	for _, bad := range []string{"/7:42", "%zz/7:42", "Support/7", "Support/", "a/b/7:0"} {
		if _, _, _, ok := parseFolderKey(bad); ok {
			t.Errorf("parseFolderKey(%q) accepted", bad)
		}
	}
}
