package imap_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2/imapclient"
	"golang.org/x/oauth2"

	"github.com/mailsync/mailsync"
	"github.com/mailsync/mailsync/connectortest"
	mimap "github.com/mailsync/mailsync/imap"
	"github.com/mailsync/mailsync/internal/cutproxy"
)

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func newConnector(t *testing.T, conn mailsync.Connection, opts mimap.Options) *mimap.Connector {
	t.Helper()
	c, err := mimap.New(conn, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// inspectMem lists a memserver folder with a second client.
func inspectMem(t *testing.T, m *memServer, folder string) []connectortest.MailboxMessage {
	t.Helper()
	var c *imapclient.Client
	var err error
	if m.CAPool != nil { // a TLS server refuses LOGIN in clear
		c, err = imapclient.DialTLS(m.TLSAddr, &imapclient.Options{TLSConfig: &tls.Config{RootCAs: m.CAPool}})
	} else {
		c, err = imapclient.DialInsecure(m.Addr, nil)
	}
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Login(testUser, testPassword).Wait(); err != nil {
		t.Fatal(err)
	}
	msgs, err := inspectFolder(c, folder)
	if err != nil {
		t.Fatal(err)
	}
	return msgs
}

func messageIDs(msgs []connectortest.MailboxMessage) []string {
	var ids []string
	for _, m := range msgs {
		ids = append(ids, m.MessageID)
	}
	slices.Sort(ids)
	return ids
}

func TestListFetchMarkRead(t *testing.T) {
	ctx := testCtx(t)
	m := startMem(t, memOptions{insecureAuth: true})
	var raws [][]byte
	for i := 1; i <= 3; i++ {
		raws = append(raws, mail(i, strings.Repeat("body ", i*100)))
		m.deliver(t, "INBOX", raws[i-1])
	}
	c := newConnector(t, connection(t, m.Addr), plainOpts())

	l, err := c.List(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	if len(l.Messages) != 3 || l.Complete || len(l.Notes) != 0 {
		t.Fatalf("listing = %+v", l)
	}
	for i, r := range l.Messages {
		if r.Key != fmt.Sprintf("1:%d", i+1) || r.Size != int64(len(raws[i])) {
			t.Errorf("ref %d = %+v, want key 1:%d size %d", i, r, i+1, len(raws[i]))
		}
	}
	if l.Cursor != "v1:1:3" {
		t.Errorf("cursor = %q, want v1:1:3", l.Cursor)
	}

	got, err := drain(ctx, c, l.Messages)
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range l.Messages {
		if !bytes.Equal(got[r.Key], raws[i]) {
			t.Errorf("body of %s differs: %d bytes, want %d", r.Key, len(got[r.Key]), len(raws[i]))
		}
	}
	for _, mm := range inspectMem(t, m, "INBOX") {
		if mm.Seen {
			t.Errorf("%s is \\Seen after Fetch; BODY.PEEK must not set it", mm.MessageID)
		}
	}

	if err := c.Ack(ctx, l.Messages[:2], mailsync.PostAction{Kind: mailsync.MarkRead}); err != nil {
		t.Fatal(err)
	}
	if err := c.Ack(ctx, l.Messages[:2], mailsync.PostAction{Kind: mailsync.MarkRead}); err != nil {
		t.Fatalf("repeated ack: %v", err)
	}
	seen := map[string]bool{}
	for _, mm := range inspectMem(t, m, "INBOX") {
		seen[mm.MessageID] = mm.Seen
	}
	if !seen["msg-1@example.org"] || !seen["msg-2@example.org"] || seen["msg-3@example.org"] {
		t.Errorf("seen flags = %v, want 1 and 2 only", seen)
	}

	// Nothing new, then one new message.
	l2, err := c.List(ctx, l.Cursor)
	if err != nil || len(l2.Messages) != 0 || l2.Cursor != l.Cursor {
		t.Fatalf("second list = %+v, %v; want nothing new and the same cursor", l2, err)
	}
	m.deliver(t, "INBOX", mail(4, "new"))
	l3, err := c.List(ctx, l.Cursor)
	if err != nil || len(l3.Messages) != 1 || l3.Messages[0].Key != "1:4" || l3.Cursor != "v1:1:4" {
		t.Fatalf("third list = %+v, %v; want 1:4 only", l3, err)
	}
}

// A List with nothing new costs the same commands on 10 and 10,000
// messages, also when messages above the cursor arrived and were expunged
// (then "UID FETCH n:*" returns the highest older message, which must be
// filtered out).
func TestNothingNewCostsConstantCommands(t *testing.T) {
	ctx := testCtx(t)
	run := func(n int) (quiet, afterExpunge []string) {
		m := startMem(t, memOptions{insecureAuth: true})
		var buf bytes.Buffer
		for i := 1; i <= n; i++ {
			buf.Reset()
			buf.Write(mail(i, "short body"))
			m.deliver(t, "INBOX", buf.Bytes())
		}
		log := &commandLog{}
		opts := plainOpts()
		opts.DialContext = log.dial
		first := newConnector(t, connection(t, m.Addr), opts)
		l, err := first.List(ctx, "")
		if err != nil || len(l.Messages) != n {
			t.Fatalf("n=%d: full list: %d messages, %v", n, len(l.Messages), err)
		}
		first.Close()

		listAgain := func() []string {
			log.reset()
			c := newConnector(t, connection(t, m.Addr), opts)
			l2, err := c.List(ctx, l.Cursor)
			if err != nil {
				t.Fatal(err)
			}
			if len(l2.Messages) != 0 || l2.Cursor != l.Cursor {
				t.Fatalf("n=%d: nothing new expected, got %d messages, cursor %q (was %q)", n, len(l2.Messages), l2.Cursor, l.Cursor)
			}
			c.Close()
			return log.names()
		}
		quiet = listAgain()

		// A message arrives and is expunged before the next sync.
		m.deliver(t, "INBOX", mail(n+1, "gone soon"))
		c := newConnector(t, connection(t, m.Addr), plainOpts())
		gone := mailsync.MessageRef{Key: fmt.Sprintf("1:%d", n+1)}
		if err := c.Ack(ctx, []mailsync.MessageRef{gone}, mailsync.PostAction{Kind: mailsync.Delete}); err != nil {
			t.Fatal(err)
		}
		c.Close()
		return quiet, listAgain()
	}
	q10, e10 := run(10)
	q10k, e10k := run(10_000)
	t.Logf("nothing new: %v; after an expunged arrival: %v", q10, e10)
	if !slices.Equal(q10, q10k) || !slices.Equal(e10, e10k) {
		t.Fatalf("commands differ:\n10:     %v / %v\n10,000: %v / %v", q10, e10, q10k, e10k)
	}
	if slices.Contains(q10, "UID FETCH") || !slices.Contains(q10, "SELECT") {
		t.Errorf("nothing new should be answered by SELECT's UIDNEXT alone: %v", q10)
	}
	if fetches := countOf(e10, "UID FETCH"); fetches != 1 {
		t.Errorf("after an expunged arrival: %d UID FETCH, want 1: %v", fetches, e10)
	}
}

func countOf(s []string, v string) int {
	n := 0
	for _, x := range s {
		if x == v {
			n++
		}
	}
	return n
}

func TestFetchOrderAndGoneRefs(t *testing.T) { bothReadAhead(t, testFetchOrderAndGoneRefs) }

func testFetchOrderAndGoneRefs(t *testing.T) {
	ctx := testCtx(t)
	m := startMem(t, memOptions{insecureAuth: true})
	for i := 1; i <= 5; i++ {
		m.deliver(t, "INBOX", mail(i, "x"))
	}
	c := newConnector(t, connection(t, m.Addr), plainOpts())
	if _, err := c.List(ctx, ""); err != nil {
		t.Fatal(err)
	}
	refs := []mailsync.MessageRef{{Key: "1:4"}, {Key: "1:2"}, {Key: "1:99"}, {Key: "7:1"}, {Key: "1:3"}, {Key: "1:5"}}
	var order, gone []string
	err := c.Fetch(ctx, refs, func(r mailsync.MessageRef, body io.Reader) error {
		if body == nil {
			gone = append(gone, r.Key)
			return nil
		}
		b, err := io.ReadAll(body)
		if err != nil {
			return err
		}
		if want := fmt.Sprintf("<msg-%s@example.org>", strings.TrimPrefix(r.Key, "1:")); !bytes.Contains(b, []byte(want)) {
			return fmt.Errorf("%s: body is not %s", r.Key, want)
		}
		order = append(order, r.Key)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"1:4", "1:2", "1:3", "1:5"}; !slices.Equal(order, want) {
		t.Fatalf("delivered %v, want %v (order kept)", order, want)
	}
	slices.Sort(gone)
	if want := []string{"1:99", "7:1"}; !slices.Equal(gone, want) {
		t.Fatalf("reported gone %v, want %v (expunged, and from an old UIDVALIDITY)", gone, want)
	}
}

func TestFetchCallbackErrorAndExpiredReader(t *testing.T) {
	bothReadAhead(t, testFetchCallbackErrorAndExpiredReader)
}

func testFetchCallbackErrorAndExpiredReader(t *testing.T) {
	ctx := testCtx(t)
	m := startMem(t, memOptions{insecureAuth: true})
	for i := 1; i <= 4; i++ {
		m.deliver(t, "INBOX", mail(i, strings.Repeat("y", 50_000)))
	}
	log := &commandLog{}
	opts := plainOpts()
	opts.DialContext = log.dial
	c := newConnector(t, connection(t, m.Addr), opts)
	l, err := c.List(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	errSink := errors.New("sink is full")
	var kept io.Reader
	calls := 0
	err = c.Fetch(ctx, l.Messages, func(r mailsync.MessageRef, body io.Reader) error {
		calls++
		kept = body
		if calls == 2 {
			return fmt.Errorf("storing %s: %w", r.Key, errSink)
		}
		return nil
	})
	if !errors.Is(err, errSink) || calls != 2 {
		t.Fatalf("Fetch = %v after %d calls; want the callback's error after 2", err, calls)
	}
	if _, err := kept.Read(make([]byte, 10)); err == nil {
		t.Error("the reader still works after the callback returned")
	}
	// The connection was drained, not dropped: the next Fetch reuses it.
	got, err := drain(ctx, c, l.Messages)
	if err != nil || len(got) != 4 {
		t.Fatalf("fetch after the error: %d messages, %v", len(got), err)
	}
	if logins := countOf(log.names(), "LOGIN"); logins != 1 {
		t.Errorf("%d logins, want 1 (no reconnect after a callback error)", logins)
	}
}

func TestMove(t *testing.T) {
	for _, noMove := range []bool{false, true} {
		t.Run(fmt.Sprintf("noMove=%v", noMove), func(t *testing.T) {
			ctx := testCtx(t)
			m := startMem(t, memOptions{insecureAuth: true, noMove: noMove})
			for i := 1; i <= 4; i++ {
				m.deliver(t, "INBOX", mail(i, "move me"))
			}
			log := &commandLog{}
			opts := plainOpts()
			opts.DialContext = log.dial
			c := newConnector(t, connection(t, m.Addr), opts)
			l, err := c.List(ctx, "")
			if err != nil {
				t.Fatal(err)
			}
			move := mailsync.PostAction{Kind: mailsync.MoveToFolder, Folder: "Processed"}
			if err := c.Ack(ctx, l.Messages[:3], move); err != nil {
				t.Fatal(err)
			}
			if err := c.Ack(ctx, l.Messages[:3], move); err != nil { // repeated after a crash
				t.Fatalf("repeated move: %v", err)
			}
			if got := messageIDs(inspectMem(t, m, "Processed")); !slices.Equal(got, []string{"msg-1@example.org", "msg-2@example.org", "msg-3@example.org"}) {
				t.Errorf("Processed holds %v", got)
			}
			if got := messageIDs(inspectMem(t, m, "INBOX")); !slices.Equal(got, []string{"msg-4@example.org"}) {
				t.Errorf("INBOX holds %v", got)
			}
			cmds := log.names()
			if slices.Contains(cmds, "EXPUNGE") {
				t.Errorf("a plain EXPUNGE was sent: %v", cmds)
			}
			if noMove {
				if slices.Contains(cmds, "UID MOVE") || !slices.Contains(cmds, "UID COPY") || !slices.Contains(cmds, "UID EXPUNGE") {
					t.Errorf("without MOVE want UID COPY + UID EXPUNGE: %v", cmds)
				}
			} else if !slices.Contains(cmds, "UID MOVE") || slices.Contains(cmds, "UID COPY") {
				t.Errorf("with MOVE want UID MOVE only: %v", cmds)
			}
			if !slices.Contains(cmds, "CREATE") {
				t.Errorf("the missing folder was not created on TRYCREATE: %v", cmds)
			}
		})
	}
}

func TestCopyFailureDeletesNothing(t *testing.T) {
	ctx := testCtx(t)
	m := startMem(t, memOptions{insecureAuth: true, noMove: true})
	for i := 1; i <= 3; i++ {
		m.deliver(t, "INBOX", mail(i, "keep me"))
	}
	m.deliver(t, "Processed", mail(100, "already there"))
	m.failCopy.Store(true)
	log := &commandLog{}
	opts := plainOpts()
	opts.DialContext = log.dial
	c := newConnector(t, connection(t, m.Addr), opts)
	l, err := c.List(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	err = c.Ack(ctx, l.Messages, mailsync.PostAction{Kind: mailsync.MoveToFolder, Folder: "Processed"})
	if err == nil || !strings.Contains(err.Error(), "nothing was deleted") || !strings.Contains(err.Error(), "OVERQUOTA") {
		t.Fatalf("Ack = %v; want a COPY failure saying nothing was deleted", err)
	}
	if got := inspectMem(t, m, "INBOX"); len(got) != 3 {
		t.Fatalf("INBOX has %d messages not flagged deleted, want 3", len(got))
	}
	for _, cmd := range log.names() {
		if cmd == "UID STORE" || strings.Contains(cmd, "EXPUNGE") {
			t.Fatalf("%s sent after a failed COPY: %v", cmd, log.names())
		}
	}
}

func TestDeleteAndUnsupported(t *testing.T) {
	ctx := testCtx(t)
	t.Run("delete", func(t *testing.T) {
		m := startMem(t, memOptions{insecureAuth: true})
		for i := 1; i <= 3; i++ {
			m.deliver(t, "INBOX", mail(i, "delete me"))
		}
		c := newConnector(t, connection(t, m.Addr), plainOpts())
		l, err := c.List(ctx, "")
		if err != nil {
			t.Fatal(err)
		}
		del := mailsync.PostAction{Kind: mailsync.Delete}
		if err := c.Ack(ctx, l.Messages[1:2], del); err != nil {
			t.Fatal(err)
		}
		if err := c.Ack(ctx, l.Messages[1:2], del); err != nil {
			t.Fatalf("repeated delete: %v", err)
		}
		if got := messageIDs(inspectMem(t, m, "INBOX")); !slices.Equal(got, []string{"msg-1@example.org", "msg-3@example.org"}) {
			t.Fatalf("INBOX holds %v", got)
		}
	})
	t.Run("noUIDPLUS", func(t *testing.T) {
		m := startMem(t, memOptions{insecureAuth: true, noUIDPlus: true, noMove: true})
		m.deliver(t, "INBOX", mail(1, "stay"))
		log := &commandLog{}
		opts := plainOpts()
		opts.DialContext = log.dial
		c := newConnector(t, connection(t, m.Addr), opts)
		l, err := c.List(ctx, "")
		if err != nil {
			t.Fatal(err)
		}
		for _, a := range []mailsync.PostAction{{Kind: mailsync.Delete}, {Kind: mailsync.MoveToFolder, Folder: "Done"}} {
			if err := c.Ack(ctx, l.Messages, a); !errors.Is(err, mailsync.ErrUnsupported) {
				t.Errorf("%s without UIDPLUS: %v; want ErrUnsupported", a.Kind, err)
			}
		}
		for _, cmd := range log.names() {
			if cmd == "UID STORE" || cmd == "UID COPY" || strings.Contains(cmd, "EXPUNGE") {
				t.Errorf("%s sent although the action is refused", cmd)
			}
		}
		if got := inspectMem(t, m, "INBOX"); len(got) != 1 {
			t.Errorf("INBOX has %d messages, want 1", len(got))
		}
	})
	t.Run("invalid", func(t *testing.T) {
		m := startMem(t, memOptions{insecureAuth: true})
		c := newConnector(t, connection(t, m.Addr), plainOpts())
		refs := []mailsync.MessageRef{{Key: "1:1"}}
		if err := c.Ack(ctx, refs, mailsync.PostAction{Kind: mailsync.MoveToFolder, Folder: "inbox"}); !errors.Is(err, mailsync.ErrInvalidConfig) {
			t.Errorf("move to the source folder: %v", err)
		}
		if err := c.Ack(ctx, refs, mailsync.PostAction{Kind: "archive"}); !errors.Is(err, mailsync.ErrInvalidConfig) {
			t.Errorf("unknown action: %v", err)
		}
	})
}

func TestUIDValidityChange(t *testing.T) {
	ctx := testCtx(t)
	m := startMem(t, memOptions{insecureAuth: true})
	m.deliver(t, "Support", mail(1, "one"))
	m.deliver(t, "Support", mail(2, "two"))
	opts := plainOpts()
	opts.Folder = "Support"
	c := newConnector(t, connection(t, m.Addr), opts)
	l, err := c.List(ctx, "")
	if err != nil || len(l.Messages) != 2 {
		t.Fatalf("list = %+v, %v", l, err)
	}
	oldUV := strings.Split(l.Messages[0].Key, ":")[0]

	// The folder is recreated: same mail, new UIDVALIDITY.
	if err := m.User.Delete("Support"); err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 3; i++ {
		m.deliver(t, "Support", mail(i, "again"))
	}
	l2, err := c.List(ctx, l.Cursor)
	if err != nil {
		t.Fatal(err)
	}
	if len(l2.Notes) != 1 || !strings.Contains(l2.Notes[0], "UIDVALIDITY") {
		t.Errorf("notes = %q; want one about UIDVALIDITY", l2.Notes)
	}
	if len(l2.Messages) != 3 {
		t.Fatalf("re-listed %d messages, want all 3", len(l2.Messages))
	}
	for _, r := range l2.Messages {
		if strings.HasPrefix(r.Key, oldUV+":") {
			t.Errorf("key %s still uses the old UIDVALIDITY %s", r.Key, oldUV)
		}
	}
	// Refs of the old UIDVALIDITY name nothing any more: reported gone.
	gone := 0
	err = c.Fetch(ctx, l.Messages, func(_ mailsync.MessageRef, body io.Reader) error {
		if body != nil {
			return errors.New("a stale ref was delivered")
		}
		gone++
		return nil
	})
	if err != nil || gone != len(l.Messages) {
		t.Errorf("fetch of stale refs: %d reported gone, %v; want %d, nil", gone, err, len(l.Messages))
	}
	if err := c.Ack(ctx, l.Messages, mailsync.PostAction{Kind: mailsync.Delete}); err != nil {
		t.Errorf("ack of stale refs: %v", err)
	}
	if got := inspectMem(t, m, "Support"); len(got) != 3 {
		t.Errorf("stale delete touched the new folder: %d messages left", len(got))
	}
}

// A connection cut in the middle of a FETCH: the connector reports
// ErrConnection, the next call reconnects, and a retry loop like the
// engine's gets every message exactly once.
func TestCutMidFetchReconnects(t *testing.T) { bothReadAhead(t, testCutMidFetchReconnects) }

func testCutMidFetchReconnects(t *testing.T) {
	ctx := testCtx(t)
	m := startMem(t, memOptions{insecureAuth: true})
	want := map[string][32]byte{}
	for i := 1; i <= 12; i++ {
		raw := mail(i, strings.Repeat(fmt.Sprintf("line %d of a long message\r\n", i), 3000)) // ~80 kB
		m.deliver(t, "INBOX", raw)
		want[fmt.Sprintf("1:%d", i)] = sha256.Sum256(raw)
	}
	proxy := cutproxy.Start(t, m.Addr)
	c := newConnector(t, connection(t, proxy.Addr), plainOpts())
	l, err := c.List(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	// The listing connection stays open; cut it after 300 kB more, in
	// the middle of the first batch. Reconnects are cut too, later.
	proxy.CutAll()
	proxy.CutAfter(300_000)
	proxy.CutAfter(500_000)

	done := map[string]int{}
	remaining := l.Messages
	failures := 0
	for attempt := 0; len(remaining) > 0; attempt++ {
		if attempt > 10 {
			t.Fatalf("no progress after %d attempts", attempt)
		}
		err := c.Fetch(ctx, remaining, func(r mailsync.MessageRef, body io.Reader) error {
			h := sha256.New()
			if _, err := io.Copy(h, body); err != nil {
				return err
			}
			var sum [32]byte
			copy(sum[:], h.Sum(nil))
			if sum != want[r.Key] {
				return fmt.Errorf("%s: body differs", r.Key)
			}
			done[r.Key]++
			return nil
		})
		if err != nil {
			if !errors.Is(err, mailsync.ErrConnection) {
				t.Fatalf("attempt %d: %v; want an error wrapping ErrConnection", attempt, err)
			}
			failures++
		}
		var next []mailsync.MessageRef
		for _, r := range remaining {
			if done[r.Key] == 0 {
				next = append(next, r)
			}
		}
		remaining = next
	}
	if failures < 2 {
		t.Errorf("%d failed attempts, want 2 (two cuts)", failures)
	}
	for k := range want {
		if done[k] != 1 {
			t.Errorf("%s delivered %d times, want 1", k, done[k])
		}
	}
	if proxy.Conns() < 3 {
		t.Errorf("%d connections, want at least 3 (reconnects)", proxy.Conns())
	}
}

func TestUIDAfterBodyLiteral(t *testing.T) { bothReadAhead(t, testUIDAfterBodyLiteral) }

func testUIDAfterBodyLiteral(t *testing.T) {
	ctx := testCtx(t)
	f := startFake(t, &fakeServer{uidAfterBody: true, msgs: [][]byte{mail(1, "a"), mail(2, "b"), mail(3, "c")}})
	c := newConnector(t, connection(t, f.Addr), plainOpts())
	l, err := c.List(ctx, "")
	if err != nil || len(l.Messages) != 3 {
		t.Fatalf("list = %+v, %v", l, err)
	}
	got, err := drain(ctx, c, l.Messages)
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range l.Messages {
		if !bytes.Equal(got[r.Key], f.msgs[i]) {
			t.Errorf("%s: got %q", r.Key, got[r.Key])
		}
	}
	t.Logf("commands: %v", f.sent())
}

func TestStalledServerTimesOut(t *testing.T) {
	ctx := testCtx(t)
	f := startFake(t, &fakeServer{stallCommand: "UID FETCH", msgs: [][]byte{mail(1, "a")}})
	opts := plainOpts()
	opts.CommandTimeout = 300 * time.Millisecond
	c := newConnector(t, connection(t, f.Addr), opts)
	start := time.Now()
	_, err := c.List(ctx, "")
	if !errors.Is(err, mailsync.ErrConnection) || !strings.Contains(err.Error(), "no data from the server") {
		t.Fatalf("List = %v; want a stall error wrapping ErrConnection", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("took %s for a 300ms command timeout", d)
	}
}

// Close says LOGOUT and closes without waiting for the server's answer: a
// server that never answers LOGOUT costs nothing (it cost the 3-second
// bound before), and one that answers costs no round trip.
func TestCloseDoesNotWaitForLogout(t *testing.T) {
	ctx := testCtx(t)
	f := startFake(t, &fakeServer{stallCommand: "LOGOUT", msgs: [][]byte{mail(1, "a")}})
	c := newConnector(t, connection(t, f.Addr), plainOpts())
	if _, err := c.List(ctx, ""); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	c.Close()
	if d := time.Since(start); d > time.Second {
		t.Errorf("Close took %s against a server that never answers LOGOUT", d)
	}
	// The server reads it after Close returned.
	var got []string
	for end := time.Now().Add(5 * time.Second); time.Now().Before(end); time.Sleep(5 * time.Millisecond) {
		if got = f.sent(); len(got) > 0 && got[len(got)-1] == "LOGOUT" {
			return
		}
	}
	t.Errorf("commands %v, want LOGOUT last", got)
}

func TestCancelMidFetchReturnsPromptly(t *testing.T) {
	bothReadAhead(t, testCancelMidFetchReturnsPromptly)
}

func testCancelMidFetchReturnsPromptly(t *testing.T) {
	ctx := testCtx(t)
	f := startFake(t, &fakeServer{stallFetchAfter: 100, msgs: [][]byte{mail(1, strings.Repeat("z", 10_000))}})
	c := newConnector(t, connection(t, f.Addr), plainOpts())
	l, err := c.List(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	fctx, cancel := context.WithCancel(ctx)
	var cancelledAt time.Time
	read := 0
	err = c.Fetch(fctx, l.Messages, func(r mailsync.MessageRef, body io.Reader) error {
		buf := make([]byte, 10)
		for {
			n, err := body.Read(buf)
			read += n
			if err != nil {
				return err
			}
			if read >= 100 && cancelledAt.IsZero() {
				cancelledAt = time.Now()
				cancel()
			}
		}
	})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Fetch = %v; want context.Canceled", err)
	}
	if d := time.Since(cancelledAt); d > time.Second {
		t.Errorf("Fetch returned %s after cancel", d)
	}
	// The connector recovers with a fresh connection.
	if _, err := c.List(ctx, ""); err != nil {
		t.Errorf("list after cancel: %v", err)
	}
}

func TestSecurityAndAuthErrors(t *testing.T) {
	ctx := testCtx(t)
	m := startMem(t, memOptions{tls: true})
	tlsOpts := func() mimap.Options {
		return mimap.Options{Password: testPassword, Security: mimap.ImplicitTLS, RootCAs: m.CAPool}
	}
	startTLSOpts := func() mimap.Options {
		return mimap.Options{Password: testPassword, Security: mimap.StartTLS, RootCAs: m.CAPool}
	}
	list := func(addr string, opts mimap.Options) error {
		c, err := mimap.New(connection(t, addr), opts)
		if err != nil {
			return err
		}
		defer c.Close()
		_, err = c.List(ctx, "")
		return err
	}

	if err := list(m.TLSAddr, tlsOpts()); err != nil {
		t.Errorf("implicit TLS with the CA: %v", err)
	}
	if err := list(m.Addr, startTLSOpts()); err != nil {
		t.Errorf("STARTTLS with the CA: %v", err)
	}

	cases := []struct {
		name     string
		addr     string
		opts     func() mimap.Options
		sentinel error
		text     string
	}{
		{"untrusted implicit", m.TLSAddr, func() mimap.Options { o := tlsOpts(); o.RootCAs = nil; return o }, mailsync.ErrTLS, "not trusted"},
		{"untrusted starttls", m.Addr, func() mimap.Options { o := startTLSOpts(); o.RootCAs = nil; return o }, mailsync.ErrTLS, "not trusted"},
		{"wrong host name", m.TLSAddr, func() mimap.Options {
			o := tlsOpts()
			o.TLSConfig = &tls.Config{ServerName: "mail.example.net"}
			return o
		}, mailsync.ErrTLS, "not valid for"},
		{"tls on plain port", m.Addr, tlsOpts, mailsync.ErrTLS, "does not speak TLS"},
		{"wrong password", m.TLSAddr, func() mimap.Options { o := tlsOpts(); o.Password = "wrong password"; return o }, mailsync.ErrAuth, "rejected LOGIN"},
		{"plaintext not opted in", m.Addr, func() mimap.Options { return mimap.Options{Password: testPassword, Security: mimap.Plaintext} }, mailsync.ErrPlaintextRefused, "AllowPlaintextLogin"},
		{"server refuses plaintext login", m.Addr, plainOpts, mailsync.ErrPlaintextRefused, "LOGINDISABLED"},
		{"missing folder", m.TLSAddr, func() mimap.Options { o := tlsOpts(); o.Folder = "Nope"; return o }, mailsync.ErrFolderNotFound, `"Nope"`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := list(tc.addr, tc.opts())
			if !errors.Is(err, tc.sentinel) || !strings.Contains(err.Error(), tc.text) {
				t.Fatalf("got %v; want %v mentioning %q", err, tc.sentinel, tc.text)
			}
			for _, secret := range []string{testPassword, "wrong password"} {
				if strings.Contains(err.Error(), secret) {
					t.Fatalf("error text contains a password: %v", err)
				}
			}
		})
	}
}

func TestDialErrors(t *testing.T) {
	ctx := testCtx(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closedAddr := ln.Addr().String()
	ln.Close()
	list := func(conn mailsync.Connection) error {
		c, err := mimap.New(conn, mimap.Options{Password: testPassword})
		if err != nil {
			return err
		}
		_, err = c.List(ctx, "")
		return err
	}
	err = list(connection(t, closedAddr))
	if !errors.Is(err, mailsync.ErrConnection) || !strings.Contains(err.Error(), "refused") {
		t.Errorf("closed port: %v", err)
	}
	conn := connection(t, "127.0.0.1:993")
	conn.Server = "no-such-host.invalid"
	err = list(conn)
	if !errors.Is(err, mailsync.ErrConnection) || !(strings.Contains(err.Error(), "resolve") || strings.Contains(err.Error(), "DNS")) {
		t.Errorf("unknown host: %v", err)
	}
}

func TestOAuthMechanisms(t *testing.T) {
	ctx := testCtx(t)
	m := startMem(t, memOptions{tls: true, oauth: true})
	for _, mech := range []string{"", "XOAUTH2", "OAUTHBEARER"} {
		for _, token := range []string{goodToken, "ya29.revoked-token"} {
			t.Run(mech+"/"+token, func(t *testing.T) {
				opts := mimap.Options{
					TokenSource:   oauth2.StaticTokenSource(&oauth2.Token{AccessToken: token}),
					SASLMechanism: mech, Security: mimap.ImplicitTLS, RootCAs: m.CAPool,
				}
				c := newConnector(t, connection(t, m.TLSAddr), opts)
				start := time.Now()
				_, err := c.List(ctx, "")
				if token == goodToken {
					if err != nil {
						t.Fatal(err)
					}
					return
				}
				if !errors.Is(err, mailsync.ErrAuth) || !strings.Contains(err.Error(), "token was rejected") {
					t.Fatalf("bad token: %v; want ErrAuth", err)
				}
				if strings.Contains(err.Error(), token) {
					t.Fatalf("error contains the token: %v", err)
				}
				if d := time.Since(start); d > 5*time.Second {
					t.Fatalf("bad token took %s (hung exchange?)", d)
				}
			})
		}
	}
	t.Run("token source error", func(t *testing.T) {
		ts := oauth2.ReuseTokenSource(nil, failingSource{&oauth2.RetrieveError{ErrorCode: "invalid_grant", ErrorDescription: "refresh token revoked"}})
		c := newConnector(t, connection(t, m.TLSAddr), mimap.Options{TokenSource: ts, RootCAs: m.CAPool, Security: mimap.ImplicitTLS})
		if _, err := c.List(ctx, ""); !errors.Is(err, mailsync.ErrConsentRequired) {
			t.Fatalf("invalid_grant: %v; want ErrConsentRequired", err)
		}
	})
}

type failingSource struct{ err error }

func (f failingSource) Token() (*oauth2.Token, error) { return nil, f.err }

func TestCheck(t *testing.T) {
	ctx := testCtx(t)
	m := startMem(t, memOptions{tls: true, noMove: true})
	for i := 1; i <= 2; i++ {
		m.deliver(t, "INBOX", mail(i, "x"))
	}
	m.deliver(t, "Archive", mail(9, "x"))
	opts := mimap.Options{Password: testPassword, RootCAs: m.CAPool}
	res, err := mimap.Check(ctx, connection(t, m.TLSAddr), opts)
	if err != nil {
		t.Fatal(err)
	}
	if res.Messages != 2 || res.Folder != "INBOX" || res.Auth != "LOGIN" || res.Security != mimap.ImplicitTLS ||
		res.CanMove || !res.CanExpungeUIDs || !slices.Contains(res.Capabilities, "UIDPLUS") || res.UIDValidity == 0 {
		t.Errorf("check = %+v", res)
	}
	if got := inspectMem(t, m, "INBOX"); len(got) != 2 || got[0].Seen {
		t.Errorf("check changed the folder: %+v", got)
	}
	opts.Folder = "Tickets"
	_, err = mimap.Check(ctx, connection(t, m.TLSAddr), opts)
	if !errors.Is(err, mailsync.ErrFolderNotFound) || !strings.Contains(err.Error(), `"Archive"`) || !strings.Contains(err.Error(), `"INBOX"`) {
		t.Errorf("missing folder: %v; want ErrFolderNotFound listing the folders", err)
	}
}

func TestNewValidates(t *testing.T) {
	m := connection(t, "127.0.0.1:993")
	ts := oauth2.StaticTokenSource(&oauth2.Token{AccessToken: "t"})
	cases := map[string]struct {
		conn  mailsync.Connection
		opts  mimap.Options
		field string
	}{
		"no credentials":   {m, mimap.Options{}, "credentials"},
		"both credentials": {m, mimap.Options{Password: "p", TokenSource: ts}, "credentials"},
		"bad mechanism":    {m, mimap.Options{TokenSource: ts, SASLMechanism: "PLAIN"}, "sasl_mechanism"},
		"pop3":             {func() mailsync.Connection { c := m; c.Protocol = mailsync.POP3; return c }(), mimap.Options{Password: "p"}, "protocol"},
		"no server":        {func() mailsync.Connection { c := m; c.Server = ""; return c }(), mimap.Options{Password: "p"}, "server"},
		"bad folder":       {m, mimap.Options{Password: "p", Folder: "a\r\nb"}, "folder"},
	}
	for name, tc := range cases {
		_, err := mimap.New(tc.conn, tc.opts)
		var ce *mailsync.ConfigError
		if !errors.As(err, &ce) || !ce.Field(tc.field) {
			t.Errorf("%s: %v; want a ConfigError on %s", name, err, tc.field)
		}
	}
}

// No password or token in String, %v, errors or debug logs.
func TestSecretsNeverPrinted(t *testing.T) {
	ctx := testCtx(t)
	m := startMem(t, memOptions{tls: true, oauth: true})
	m.deliver(t, "INBOX", mail(1, "x"))
	var logs bytes.Buffer
	logger := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	for _, opts := range []mimap.Options{
		{Password: testPassword, RootCAs: m.CAPool, Logger: logger},
		{Password: "wrong-" + testPassword, RootCAs: m.CAPool, Logger: logger},
		{TokenSource: oauth2.StaticTokenSource(&oauth2.Token{AccessToken: goodToken}), RootCAs: m.CAPool, Logger: logger},
		{TokenSource: oauth2.StaticTokenSource(&oauth2.Token{AccessToken: "bad-" + goodToken}), RootCAs: m.CAPool, Logger: logger},
	} {
		c := newConnector(t, connection(t, m.TLSAddr), opts)
		var out strings.Builder
		fmt.Fprintf(&out, "%v %+v %#v %s", c, c, c, c)
		l, err := c.List(ctx, "")
		if err != nil {
			out.WriteString(err.Error())
		} else if _, err := drain(ctx, c, l.Messages); err != nil {
			t.Fatal(err)
		}
		if _, err := mimap.Check(ctx, connection(t, m.TLSAddr), opts); err != nil {
			out.WriteString(err.Error())
		}
		out.Write(logs.Bytes())
		for _, secret := range []string{testPassword, goodToken} {
			if strings.Contains(out.String(), secret) {
				t.Fatalf("a secret was printed:\n%s", out.String())
			}
		}
	}
	if !strings.Contains(logs.String(), "imap connected") {
		t.Errorf("expected debug logs, got %q", logs.String())
	}
}

// The hand-made STARTTLS refuses what could hide a downgrade or an
// injection, and a server without STARTTLS.
func TestStartTLSDefenses(t *testing.T) {
	ctx := testCtx(t)
	cases := []struct {
		name, greeting, answer string
		sentinel               error
		text                   string
	}{
		{"preauth", "* PREAUTH [CAPABILITY IMAP4rev1] welcome\r\n", "", mailsync.ErrTLS, "PREAUTH"},
		{"no starttls", "* OK ready\r\n", "S1 BAD unknown command\r\n", mailsync.ErrTLS, "refused STARTTLS"},
		{"injection", "* OK ready\r\n", "S1 OK begin TLS\r\n* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN] injected\r\n", mailsync.ErrTLS, "unexpected bytes"},
		{"bye", "* BYE too many connections\r\n", "", mailsync.ErrConnection, "too many connections"},
		{"not imap", "220 smtp.example.com ESMTP\r\n", "", mailsync.ErrConnection, "unexpected greeting"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			go func() {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				defer c.Close()
				c.Write([]byte(tc.greeting))
				if tc.answer != "" {
					buf := make([]byte, 64)
					c.Read(buf) // S1 STARTTLS
					c.Write([]byte(tc.answer))
				}
				io.Copy(io.Discard, c)
			}()
			c := newConnector(t, connection(t, ln.Addr().String()), mimap.Options{Password: testPassword, Security: mimap.StartTLS})
			_, err = c.List(ctx, "")
			if !errors.Is(err, tc.sentinel) || !strings.Contains(err.Error(), tc.text) {
				t.Fatalf("got %v; want %v mentioning %q", err, tc.sentinel, tc.text)
			}
		})
	}
}

// testReadAhead is Options.ReadAhead for plainOpts; bothReadAhead runs a
// test with read-ahead (the default) and without.
var testReadAhead int64

func bothReadAhead(t *testing.T, f func(t *testing.T)) {
	for _, ra := range []int64{0, -1} {
		t.Run(fmt.Sprintf("ReadAhead=%d", ra), func(t *testing.T) {
			testReadAhead = ra
			defer func() { testReadAhead = 0 }()
			f(t)
		})
	}
}

// Server answers that mean "later" or "busy" map to the retryable errors.
func TestTemporaryServerAnswers(t *testing.T) {
	ctx := testCtx(t)
	cases := []struct {
		name, cmd, reply string
		sentinel         error
	}{
		{"login unavailable", "LOGIN", "%[1]s NO [UNAVAILABLE] Backend down\r\n", mailsync.ErrConnection},
		{"login limit", "LOGIN", "%[1]s NO [LIMIT] Too many connections for this user\r\n", mailsync.ErrThrottled},
		{"select in use", "SELECT", "%[1]s NO [INUSE] Mailbox is locked by another session\r\n", mailsync.ErrMailboxBusy},
		{"fetch throttled", "UID FETCH", "%[1]s NO [THROTTLED] Slow down\r\n", mailsync.ErrThrottled},
		{"select missing", "SELECT", "%[1]s NO [NONEXISTENT] Mailbox doesn't exist: INBOX\r\n", mailsync.ErrFolderNotFound},
		{"bye on login", "LOGIN", "* BYE Server shutting down\r\n", mailsync.ErrConnection},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := startFake(t, &fakeServer{msgs: [][]byte{mail(1, "x")}, replies: map[string]string{tc.cmd: tc.reply}})
			c := newConnector(t, connection(t, f.Addr), plainOpts())
			_, err := c.List(ctx, "")
			if !errors.Is(err, tc.sentinel) {
				t.Fatalf("got %v; want %v", err, tc.sentinel)
			}
			var te *mailsync.ThrottledError
			if errors.As(err, &te) && te.RetryAfter <= 0 {
				t.Errorf("ThrottledError without a delay: %v", te)
			}
		})
	}
}

// Garbage from the server fails the call with an error, never a panic or
// a hang, and the next call starts afresh.
func TestHostileServerAnswers(t *testing.T) {
	ctx := testCtx(t)
	garbage := map[string]string{
		"binary noise":        "\x00\xff\xfe garbage \x01\x02\r\n",
		"bad literal size":    "* 1 FETCH (UID 1 BODY[] {99999999999999999999}\r\n",
		"literal then close":  "* 1 FETCH (UID 1 BODY[] {5000}\r\nonly a few bytes",
		"unknown tag":         "Z999 OK what\r\n",
		"unterminated list":   "* 1 FETCH (UID 1 RFC822.SIZE 10 (((((\r\n",
		"continuation":        "+ send more\r\n",
		"negative size":       "* 1 FETCH (UID 1 RFC822.SIZE -5)\r\n%[1]s OK done\r\n",
		"uid zero":            "* 1 FETCH (UID 0 BODY[] {3}\r\nabc)\r\n%[1]s OK done\r\n",
		"dynamic search":      "* SEARCH 1:*\r\n%[1]s OK done\r\n",
		"truncated response":  "* 1 FET",
		"huge line":           strings.Repeat("A", 200_000) + "\r\n",
		"fetch for other uid": "* 1 FETCH (UID 77 BODY[] {3}\r\nabc)\r\n%[1]s OK done\r\n",
	}
	for name, reply := range garbage {
		t.Run(name, func(t *testing.T) {
			f := startFake(t, &fakeServer{msgs: [][]byte{mail(1, "x")}, replies: map[string]string{"UID FETCH 1 ": reply, "UID SEARCH": reply, "SEARCH": reply}})
			opts := plainOpts()
			opts.CommandTimeout = 2 * time.Second
			c := newConnector(t, connection(t, f.Addr), opts)
			if _, err := c.List(ctx, ""); err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			got, err := drain(ctx, c, []mailsync.MessageRef{{Key: "42:1", Size: -1}})
			t.Logf("fetch: %d messages, %v", len(got), err)
			if d := time.Since(start); d > 10*time.Second {
				t.Fatalf("took %s", d)
			}
			if err != nil && !errors.Is(err, mailsync.ErrConnection) {
				t.Errorf("error does not wrap ErrConnection: %v", err)
			}
			if b, ok := got["42:1"]; ok {
				t.Errorf("delivered %q from a garbage answer", b)
			}
			if _, err := c.List(ctx, ""); err != nil {
				t.Errorf("the next call did not recover: %v", err)
			}
		})
	}
}
