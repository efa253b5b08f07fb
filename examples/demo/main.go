// Command demo shows mailsync end to end with no set-up: it starts an
// in-process IMAP server (go-imap's in-memory server, over TLS on loopback)
// seeded with a few realistic mails, syncs them into an in-memory ticket sink
// with a sample mapping, prints the tickets (a reply threaded onto its
// ticket, an out-of-office auto-reply recognised), then syncs again to show
// that nothing is duplicated.
//
//	go run ./examples/demo
package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/mailsync/mailsync"
	"github.com/mailsync/mailsync/imap"
	"github.com/mailsync/mailsync/internal/demoimap"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

func run() error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	const user, password = "suporte@empresa.pt", "demo-password"
	srv, err := demoimap.Start(user, password, demoimap.Options{})
	if err != nil {
		return err
	}
	defer srv.Close()
	for _, m := range sampleMails {
		if err := srv.Deliver([]byte(m)); err != nil {
			return err
		}
	}

	host, port, _ := strings.Cut(srv.Addr, ":")
	portNum, _ := strconv.Atoi(port)
	// The connection as the admin form stores it: no password in it.
	conn := mailsync.Connection{
		Name: "Suporte", Enabled: true, User: user, Server: host, Port: portNum,
		Protocol: mailsync.IMAP, ConnectedWith: []string{"incident"},
	}
	mapping := mailsync.Mapping{TicketType: "incident", Fields: []mailsync.FieldMapping{
		{Ticket: "requester", Source: mailsync.FieldFrom},
		{Ticket: "title", Source: mailsync.FieldSubject, Default: "(sem assunto)", MaxLength: 80},
		{Ticket: "description", Source: mailsync.FieldBodyText},
		{Ticket: "attachments", Source: mailsync.FieldAttachments},
		{Ticket: "channel", Const: "e-mail"},
	}}
	sink := mailsync.NewMemorySink()
	state := mailsync.NewMemoryState()
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))

	syncOnce := func() (*mailsync.Report, error) {
		// The password is handed over at sync time, as the admin types it.
		c, err := imap.New(conn, imap.Options{Password: password, RootCAs: srv.RootCAs, Logger: logger})
		if err != nil {
			return nil, err
		}
		defer c.Close()
		return mailsync.Sync(ctx, c, mapping, sink, mailsync.WithState(state), mailsync.WithLogger(logger),
			mailsync.WithPostAction(mailsync.PostAction{Kind: mailsync.MarkRead}))
	}

	fmt.Printf("mailsync demo: in-process IMAP server at %s (TLS), %d mails in INBOX\n\n", srv.Addr, len(sampleMails))
	rep, err := syncOnce()
	if err != nil {
		return err
	}
	printTickets(sink)
	printReport("first sync", rep)
	for _, o := range rep.Messages {
		if o.Status == mailsync.StatusFollowUp {
			fmt.Printf("  %s threaded onto ticket %s by the %q rule\n", o.MessageID, o.TicketID, o.Rule)
		}
	}

	rep, err = syncOnce()
	if err != nil {
		return err
	}
	printReport("second sync", rep)
	if rep.Created != 0 {
		return fmt.Errorf("the second sync created %d tickets", rep.Created)
	}
	fmt.Printf("\n%d tickets in the sink: nothing was duplicated.\n", len(sink.Tickets()))
	return nil
}

func printTickets(sink *mailsync.MemorySink) {
	w := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(w, "TICKET\tREQUESTER\tTITLE\tATTACHMENTS\tNOTES")
	for _, t := range sink.Tickets() {
		var notes []string
		if c := t.Classification; c.Automatic() {
			notes = append(notes, fmt.Sprintf("%s: %s — no auto-acknowledgement", c.Kind, strings.Join(c.Reasons, ", ")))
		}
		for _, f := range t.FollowUps {
			notes = append(notes, fmt.Sprintf("follow-up (%s rule) from %s: %q", f.Rule, f.From.Address, f.Fields["title"]))
		}
		var atts []string
		for _, a := range t.Attachments {
			atts = append(atts, fmt.Sprintf("%s (%s, %d B)", a.Filename, a.ContentType, a.Size))
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\n", t.ID, t.Fields["requester"], t.Fields["title"], strings.Join(atts, ", "), strings.Join(notes, "; "))
	}
	w.Flush()
	if ts := sink.Tickets(); len(ts) > 0 {
		fmt.Printf("\nDescription of %s:\n  %s\n", ts[0].ID, strings.ReplaceAll(strings.TrimSpace(ts[0].Fields["description"]), "\n", "\n  "))
	}
}

func printReport(what string, r *mailsync.Report) {
	fmt.Printf("\n%s: seen %d, created %d, follow-ups %d, already done %d, quarantined %d, failed %d (%s)\n",
		what, r.Seen, r.Created, r.FollowUps, r.AlreadyDone, r.Quarantined, r.Failed, r.Duration.Round(time.Millisecond))
}
