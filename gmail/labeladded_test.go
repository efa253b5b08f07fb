package gmail_test

import (
	"context"
	"fmt"
	"slices"
	"testing"

	"github.com/mailsync/mailsync"
	"github.com/mailsync/mailsync/gmail"
	"github.com/mailsync/mailsync/internal/fakegmail"
)

// Mail that gains a watched label after it arrived (moved out of Spam,
// un-archived, labelled by hand) is new mail: history.list shows it only
// as a labelsAdded record. A flag change is not; a label added and
// removed again, or a message labelled and then deleted, within the
// window is cancelled; the provider's own mark-read brings nothing back.
func TestMailGainingAWatchedLabelIsListed(t *testing.T) {
	e := newEnv(t, fakegmail.Options{})
	support := e.fake.CreateLabel("Support")
	inbox := e.deliver("inbox", 1)                 // seen by the first listing
	spam := e.deliver("spam", 1, "SPAM", "UNREAD") // not watched yet
	archived := e.deliver("archived", 3, "UNREAD") // no INBOX: archived
	c := e.connector(func(o *gmail.Options) { o.Labels = []string{"INBOX", "Support"} })
	ctx := context.Background()
	l, err := c.List(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	if got := keys(l); !slices.Equal(got, inbox) {
		t.Fatalf("first listing %q, want %q", got, inbox)
	}
	cur := l.Cursor

	e.fake.ModifyLabels(inbox[0], nil, []string{"UNREAD"})            // the unread flag changes
	e.fake.ModifyLabels(spam[0], []string{"INBOX"}, []string{"SPAM"}) // Spam → Inbox
	e.fake.ModifyLabels(archived[0], []string{support}, nil)          // a user label added
	e.fake.ModifyLabels(archived[1], []string{"INBOX"}, nil)          // un-archived …
	e.fake.ModifyLabels(archived[1], nil, []string{"INBOX"})          // … and archived again
	e.fake.ModifyLabels(archived[2], []string{support}, nil)          // labelled …
	e.fake.DeleteMessage(archived[2])                                 // … and deleted

	l, err = c.List(ctx, cur)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{spam[0], archived[0]}
	if got := keys(l); !slices.Equal(got, want) {
		t.Fatalf("history listing %q, want exactly %q (Spam → Inbox, then the labelled one)", got, want)
	}

	// The same message gaining both watched labels is listed once.
	cur = l.Cursor
	both := e.deliver("both", 1, "UNREAD")
	e.fake.ModifyLabels(both[0], []string{support}, nil)
	e.fake.ModifyLabels(both[0], []string{"INBOX"}, nil)
	l, err = c.List(ctx, cur)
	if err != nil {
		t.Fatal(err)
	}
	if got := keys(l); !slices.Equal(got, both) {
		t.Fatalf("message labelled twice: %q, want %q", got, both)
	}

	// The provider's own mark-read (UNREAD removed) brings nothing back.
	cur = l.Cursor
	if err := c.Ack(ctx, l.Messages, mailsync.PostAction{Kind: mailsync.MarkRead}); err != nil {
		t.Fatal(err)
	}
	l, err = c.List(ctx, cur)
	if err != nil {
		t.Fatal(err)
	}
	if len(l.Messages) != 0 {
		t.Fatalf("after mark read: %q listed", keys(l))
	}
	if m, _ := e.fake.Message(both[0]); slices.Contains(m.LabelIDs, "UNREAD") {
		t.Fatal(fmt.Sprint("mark read left UNREAD: ", m.LabelIDs))
	}
}
