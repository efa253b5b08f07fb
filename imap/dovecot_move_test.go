package imap_test

import (
	"slices"
	"testing"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/mailsync/mailsync"
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
