// Command customprovider syncs a Maildir directory into tickets through the
// Maildir provider in ./maildir, the "write your own provider" example.
//
//	go run ./examples/customprovider                 # a sample Maildir made on the fly
//	go run ./examples/customprovider -maildir ~/Mail # your own Maildir (read only unless -post-action says otherwise)
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"text/tabwriter"

	"github.com/mailsync/mailsync"
	"github.com/mailsync/mailsync/connectortest"
	"github.com/mailsync/mailsync/examples/customprovider/maildir"
)

func main() {
	dir := flag.String("maildir", "", "the Maildir to read (default: a sample made in a temporary directory)")
	action := flag.String("post-action", "", `what to do with synced mail: "", "mark_read", "move" (to .Processed) or "delete"`)
	flag.Parse()
	if err := run(*dir, mailsync.ActionKind(*action)); err != nil {
		fmt.Fprintln(os.Stderr, "customprovider:", err)
		os.Exit(1)
	}
}

func run(dir string, action mailsync.ActionKind) error {
	if dir == "" {
		tmp, err := os.MkdirTemp("", "maildir-sample-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(tmp)
		dir = tmp
		for _, sub := range []string{"cur", "new", "tmp"} {
			if err := os.MkdirAll(filepath.Join(dir, sub), 0o700); err != nil {
				return err
			}
		}
		for i, subject := range []string{"VPN não liga", "Pedido de novo portátil", "Erro 500 no portal"} {
			raw := connectortest.NewMessage(fmt.Sprintf("sample-%d", i), subject)
			if err := os.WriteFile(filepath.Join(dir, "new", fmt.Sprintf("%d.sample", i)), raw, 0o600); err != nil {
				return err
			}
		}
	}
	conn := mailsync.Connection{Name: "maildir", Enabled: true, User: dir, Protocol: maildir.Protocol, ConnectedWith: []string{"incident"}}
	c, err := maildir.New(conn)
	if err != nil {
		return err
	}
	defer c.Close()
	pa := mailsync.PostAction{Kind: action}
	if action == mailsync.MoveToFolder {
		pa.Folder = "Processed"
	}
	sink := mailsync.NewMemorySink()
	rep, err := mailsync.Sync(context.Background(), c, mailsync.DefaultMapping("incident"), sink, mailsync.WithPostAction(pa))
	if err != nil {
		return err
	}
	w := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(w, "TICKET\tREQUESTER\tTITLE")
	for _, t := range sink.Tickets() {
		fmt.Fprintf(w, "%s\t%s\t%s\n", t.ID, t.Fields["requester"], t.Fields["title"])
	}
	w.Flush()
	fmt.Printf("\n%s: seen %d, created %d, quarantined %d, failed %d\n", dir, rep.Seen, rep.Created, rep.Quarantined, rep.Failed)
	return nil
}
