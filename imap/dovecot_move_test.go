package imap_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/mailsync/mailsync"
	"github.com/mailsync/mailsync/connectortest"
	mimap "github.com/mailsync/mailsync/imap"
	"github.com/mailsync/mailsync/internal/dovecottest"
)

// With UIDPLUS but no MOVE, a message another client had flagged \Deleted
// (without expunging it) must still be copied before it is expunged: only
// a COPY this connector saw succeed may lead to the expunge (issue 10
// item 8).
func TestDovecotMoveWithoutMOVEKeepsMessagesFlaggedDeletedElsewhere(t *testing.T) {
	ctx := testCtx(t)
	h := newDovecot(t, dovecottest.Options{DisableMove: true}, mimap.ImplicitTLS)
	for i := 1; i <= 3; i++ {
		h.srv.Deliver(t, h.user, "INBOX", mail(i, "to move"))
	}
	c := h.connector(t)
	l, err := c.List(ctx, "")
	if err != nil {
		t.Fatal(err)
	}

	// Another client flags message 1 \Deleted and leaves.
	other, err := imapclient.DialInsecure(h.srv.IMAPAddr, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := other.Login(h.user, dovecotPassword).Wait(); err != nil {
		t.Fatal(err)
	}
	if _, err := other.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	if err := other.Store(imap.UIDSetNum(1), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{imap.FlagDeleted}}, nil).Close(); err != nil {
		t.Fatal(err)
	}
	other.Logout().Wait()
	other.Close()

	move := mailsync.PostAction{Kind: mailsync.MoveToFolder, Folder: "Processed"}
	if err := c.Ack(ctx, l.Messages[:2], move); err != nil {
		t.Fatal(err)
	}
	var moved []string
	for _, m := range h.srv.Messages(t, h.user, "Processed") {
		moved = append(moved, m.MessageID) // the copy keeps the other client's \Deleted, as MOVE would
	}
	slices.Sort(moved)
	if want := []string{"msg-1@example.org", "msg-2@example.org"}; !slices.Equal(moved, want) {
		t.Errorf("Processed holds %v; want %v (a message flagged \\Deleted elsewhere was lost)", moved, want)
	}
	var inbox []string
	for _, m := range h.srv.Messages(t, h.user, "INBOX") {
		inbox = append(inbox, m.MessageID)
	}
	if want := []string{"msg-3@example.org"}; !slices.Equal(inbox, want) {
		t.Errorf("INBOX holds %v; want %v", inbox, want)
	}
}

// On a server whose personal namespace has a prefix (Courier, Cyrus:
// (("INBOX." "."))), the move folder is placed inside it and created,
// although the server's NO carries no TRYCREATE (issue 11 item 6).
func TestDovecotMoveIntoCourierNamespace(t *testing.T) {
	for _, disable := range []bool{false, true} {
		t.Run(fmt.Sprintf("DisableMove=%v", disable), func(t *testing.T) {
			ctx := testCtx(t)
			h := newDovecot(t, dovecottest.Options{CourierNamespace: true, DisableMove: disable}, mimap.ImplicitTLS)
			for i := 1; i <= 4; i++ {
				h.srv.Deliver(t, h.user, "INBOX", mail(i, "to move"))
			}
			c := h.connector(t)
			l, err := c.List(ctx, "")
			if err != nil {
				t.Fatal(err)
			}
			// folder as the admin wrote it -> Maildir++ folder (IMAP name
			// "INBOX." + it, with "." as separator)
			for i, tc := range []struct{ folder, maildir string }{
				{"Processed", "Processed"},
				{"Done/2026", "Done/2026"},
				{"INBOX.Archive", "Archive"}, // the admin wrote the prefix
			} {
				move := mailsync.PostAction{Kind: mailsync.MoveToFolder, Folder: tc.folder}
				for range 2 { // the second time is a harmless repeat
					if err := c.Ack(ctx, l.Messages[i:i+1], move); err != nil {
						t.Fatalf("move to %q: %v", tc.folder, err)
					}
				}
				want := []string{fmt.Sprintf("msg-%d@example.org", i+1)}
				if got := h.ids(tc.maildir); !slices.Equal(got, want) {
					t.Errorf("move to %q: INBOX.%s holds %v; want %v", tc.folder, tc.maildir, got, want)
				}
			}
			if got := h.ids("INBOX"); !slices.Equal(got, []string{"msg-4@example.org"}) {
				t.Errorf("INBOX holds %v", got)
			}
		})
	}
}

func TestConformanceDovecotCourierNamespace(t *testing.T) {
	connectortest.Run(t, func(ctx context.Context, t *testing.T) (connectortest.Harness, error) {
		return newDovecot(t, dovecottest.Options{CourierNamespace: true}, mimap.ImplicitTLS), nil
	})
}

// A folder that cannot be created under any name fails with
// ErrFolderNotFound naming every name tried, and deletes nothing.
func TestMoveErrorNamesTriedFolders(t *testing.T) {
	ctx := testCtx(t)
	f := startFake(t, &fakeServer{msgs: [][]byte{mail(1, "x")}, replies: map[string]string{
		"LOGIN":     "%[1]s OK [CAPABILITY IMAP4rev1 UIDPLUS NAMESPACE] logged in\r\n",
		"NAMESPACE": "* NAMESPACE ((\"INBOX.\" \".\")) NIL NIL\r\n%[1]s OK done\r\n",
		"UID COPY":  "%[1]s NO Mailbox does not exist\r\n",
		"CREATE":    "%[1]s NO Invalid mailbox name\r\n",
	}})
	c := newConnector(t, connection(t, f.Addr), plainOpts())
	l, err := c.List(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	err = c.Ack(ctx, l.Messages, mailsync.PostAction{Kind: mailsync.MoveToFolder, Folder: "Processed"})
	if !errors.Is(err, mailsync.ErrFolderNotFound) || !strings.Contains(err.Error(), `"INBOX.Processed", "Processed"`) {
		t.Fatalf("got %v; want ErrFolderNotFound naming both names tried", err)
	}
	for _, cmd := range f.sent() {
		if strings.Contains(cmd, "EXPUNGE") || strings.Contains(cmd, `\Deleted`) {
			t.Errorf("sent %q after a failed copy", cmd)
		}
	}
	t.Log(err)
}

// A source folder written without the namespace prefix is found inside it.
func TestDovecotReadFolderInCourierNamespace(t *testing.T) {
	ctx := testCtx(t)
	h := newDovecot(t, dovecottest.Options{CourierNamespace: true}, mimap.ImplicitTLS)
	h.srv.Deliver(t, h.user, "Support", mail(1, "in INBOX.Support"))
	for _, folder := range []string{"Support", "INBOX.Support", "INBOX/Support"} {
		h.opts.Folder = folder
		c := h.connector(t)
		l, err := c.List(ctx, "")
		if err != nil {
			t.Fatalf("folder %q: %v", folder, err)
		}
		got, err := drain(ctx, c, l.Messages)
		if err != nil || len(got) != 1 {
			t.Fatalf("folder %q: fetched %d messages, %v", folder, len(got), err)
		}
	}
	h.opts.Folder = "Nope"
	if _, err := h.connector(t).List(ctx, ""); !errors.Is(err, mailsync.ErrFolderNotFound) || !strings.Contains(err.Error(), `"INBOX.Nope"`) {
		t.Errorf("missing folder: %v", err)
	}
}
