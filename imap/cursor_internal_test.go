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
