package graph_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/mailsync/mailsync"
	"github.com/mailsync/mailsync/graph"
	"github.com/mailsync/mailsync/internal/fakegraph"
)

// A move into a folder deleted since the connector resolved it creates
// the folder again and moves the message there; it is never reported
// done with the message left in the Inbox.
func TestMoveIntoDeletedFolderRecreatesIt(t *testing.T) {
	e := newEnv(t, false)
	ids := e.deliver(3, "g")
	c := e.connector()
	ctx := context.Background()
	l, err := c.List(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	folderOf := func(id string) string {
		for _, m := range e.fake.Messages() {
			if m.ID == id {
				return m.Folder
			}
		}
		return "(gone)"
	}
	move := mailsync.PostAction{Kind: mailsync.MoveToFolder, Folder: "Processed"}
	if err := c.Ack(ctx, l.Messages[:1], move); err != nil {
		t.Fatal(err)
	}
	if !e.fake.DeleteFolder("Processed") {
		t.Fatal("no folder Processed")
	}
	if err := c.Ack(ctx, l.Messages[1:2], move); err != nil {
		t.Fatalf("move after the folder was deleted: %v", err)
	}
	if f := folderOf(ids[1]); f != "Processed" {
		t.Fatalf("message reported moved is in %q", f)
	}
	if f := e.fake.FolderByName("Processed"); f == nil {
		t.Fatal("folder not created again")
	}

	// The folder vanishes again right after it is created: a typed
	// error, the message stays where it is.
	e.fake.DeleteFolder("Processed")
	c2 := e.connector(func(o *graph.Options) {
		o.HTTPClient = &http.Client{Transport: deleteAfterCreate{base: e.fake.Client().Transport, fake: e.fake, name: "Processed"}}
	})
	err = c2.Ack(ctx, l.Messages[2:3], move)
	var ge *graph.Error
	if !errors.Is(err, mailsync.ErrFolderNotFound) || !errors.As(err, &ge) {
		t.Fatalf("move into a folder that keeps vanishing: %v, want ErrFolderNotFound", err)
	}
	if f := folderOf(ids[2]); f != "Inbox" {
		t.Fatalf("untouched message is in %q", f)
	}
}

// deleteAfterCreate deletes a folder right after Graph created it.
type deleteAfterCreate struct {
	base http.RoundTripper
	fake *fakegraph.Server
	name string
}

func (d deleteAfterCreate) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := d.base.RoundTrip(r)
	if err == nil && r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/mailFolders") && resp.StatusCode == http.StatusCreated {
		d.fake.DeleteFolder(d.name)
	}
	return resp, err
}
