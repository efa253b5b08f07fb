// Command mail2ticket syncs mailboxes into a JSON-lines ticket file.
//
// Connections and mappings come from a JSON file in the shape of the admin
// form (see example-config.json). The password is never read from that
// file: it is asked on the terminal without echo, or read from the
// MAILSYNC_PASSWORD environment variable, or from standard input with
// -password-stdin. State (cursors, processed messages) persists, so a
// re-run only fetches what is new and never duplicates a ticket: by default
// in the bbolt file "state_file" (default "mailsync-state.db"), or, with
// "state", in SQL through sqlstate:
//
//	"state": "sqlite:mailsync.db"                   // a SQLite file; relative to the config's folder
//	"state": "postgres://mail2ticket@db.example/helpdesk" // PostgreSQL; the password may come from PGPASSWORD
//
// The state holds cursors and processed keys, never a password or token.
// A SQL state is a lease holder: a sync of a connection never runs beside
// another one of the same connection (-serve or another process).
//
// Tickets go to a jsonlsink file, which also takes follow-ups: a reply to
// a ticket (In-Reply-To/References, or "[Ticket#id]" in the subject from
// someone who took part in it) is added to that ticket instead of opening
// a new one, and every line records the mail's classification (normal,
// auto_reply, bounce, bulk, loop). Quarantined raw mail is always written
// to "<tickets_file>.files/"; attachments only with "save_files": true,
// which a "delete" or "move" post_action requires (the tool refuses to
// start otherwise: it must not remove from the server what it did not keep).
//
// The exit code is 0 only when every connection synced and no message
// failed (e.g. its post-action); otherwise the last line says which.
//
//	go run ./examples/mail2ticket -config mail2ticket.json            # sync every enabled connection
//	go run ./examples/mail2ticket -config mail2ticket.json -check     # test the connections
//	go run ./examples/mail2ticket -config mail2ticket.json -connection Suporte
//	go run ./examples/mail2ticket -config mail2ticket.json -dry-run   # preview: what each new mail would become
//	go run ./examples/mail2ticket -config mail2ticket.json -connection Suporte -replay tickets.jsonl.files/
//	go run ./examples/mail2ticket -config mail2ticket.json -serve -interval 5m # run until stopped
//
// # Serve
//
// With -serve the tool runs until SIGINT or SIGTERM, syncing each enabled
// OAuth connection (Microsoft Graph, Gmail API, or IMAP/POP3 with an
// "oauth" block) every -interval (default 5m, ± 10%) on the fleet runner
// (package fleet, on River). A password connection is never scheduled —
// its password is typed at sync time and never stored — and is listed as
// skipped; sync it with a one-off run. The fleet's jobs (which hold only
// the connection's name), the connections' health and the state share one
// database: the SQLite file of "state" or, without it, "<config name>.db"
// next to the config (-fleet-db overrides it; the bbolt state_file is then
// not used, and mail it already saw is recognised by the tickets file's
// idempotency keys), or the PostgreSQL database of a "state" URL.
//
// Every sync prints one line ("✓ name: synced, …" or "✗ name: sync
// failed …"), and every -status-interval (default 1m) and at shutdown
// each connection's health: last success, consecutive failures, whether it
// needs the admin, degraded, messages synced, and the last error (scrubbed
// of the connection's secrets). A connection whose credentials are refused
// (ErrAuth, a revoked grant) or whose configuration is wrong is tried once
// and waits for the admin; restarting -serve schedules it again. Each sync
// reads the config file again, so the admin's edits and a refresh token
// rotated by the previous sync (written back as in one-off runs) take
// effect at the next sync. Up to -workers (default 4) connections sync at
// once; they share one jsonlsink Sink, which serialises its writes with a
// mutex (it is safe for concurrent use), and the config rewrites are
// serialised too.
//
// A connection's "rules" and "blocked" route its mail among the ticket
// types it is connected with and filter it (see mailsync.Routing). With
// -dry-run nothing is stored, acknowledged or recorded: the tool prints, per
// new message, the ticket type, the rules that matched and the title it
// would get. -replay feeds quarantined raw mail (.eml files, or a folder
// of them) back through the same rules, e.g. after a rule was fixed; the
// idempotency key comes from the mail itself, so a replay never makes a
// second ticket.
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"text/tabwriter"
	"time"

	"golang.org/x/term"

	"github.com/mailsync/mailsync"
	"github.com/mailsync/mailsync/jsonlsink"
)

func main() {
	if err := run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "mail2ticket:", err)
		os.Exit(1)
	}
}

type cli struct {
	configPath    string
	only          string
	check         bool
	passwordStdin bool
	verbose       bool
	dryRun        bool
	replay        string
	stdin         io.Reader
	stdout        io.Writer
	stderr        io.Writer
	passwords     map[string]mailsync.Secret

	serve          bool
	interval       time.Duration
	statusInterval time.Duration
	workers        int
	fleetDB        string
}

func run(args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return runContext(ctx, args, stdin, stdout, stderr)
}

// runContext is run until ctx ends (SIGINT or SIGTERM in run).
func runContext(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("mail2ticket", flag.ContinueOnError)
	fs.SetOutput(stderr)
	// One lock for both outputs: in -serve several syncs, the status
	// printer and the logger write at once, maybe to the same writer.
	var outMu sync.Mutex
	stdout, stderr = &lockedWriter{mu: &outMu, w: stdout}, &lockedWriter{mu: &outMu, w: stderr}
	c := &cli{stdin: stdin, stdout: stdout, stderr: stderr, passwords: map[string]mailsync.Secret{}}
	fs.StringVar(&c.configPath, "config", "mail2ticket.json", "the JSON configuration file")
	fs.StringVar(&c.only, "connection", "", "sync only the connection with this name")
	fs.BoolVar(&c.check, "check", false, "test the connections (log in, open the folder) instead of syncing")
	fs.BoolVar(&c.passwordStdin, "password-stdin", false, "read the password from the first line of standard input")
	fs.BoolVar(&c.verbose, "v", false, "verbose logging")
	fs.BoolVar(&c.dryRun, "dry-run", false, "preview: list what each new message would become, store and change nothing")
	fs.StringVar(&c.replay, "replay", "", "feed quarantined raw mail (an .eml file or a folder of them) back through -connection's rules")
	fs.BoolVar(&c.serve, "serve", false, "run until stopped, syncing the OAuth connections every -interval on the fleet (River); password connections are skipped")
	fs.DurationVar(&c.interval, "interval", 5*time.Minute, "with -serve: the time between two syncs of a connection")
	fs.DurationVar(&c.statusInterval, "status-interval", time.Minute, "with -serve: how often to print each connection's health")
	fs.IntVar(&c.workers, "workers", 4, "with -serve: how many connections sync at once")
	fs.StringVar(&c.fleetDB, "fleet-db", "", "with -serve and the bbolt state_file: the SQLite file of the fleet's jobs, health and state (default: the config's name with .db, next to it)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q (flags only; see -h)", fs.Arg(0))
	}
	if c.serve && (c.check || c.dryRun || c.replay != "") {
		return errors.New("-serve does not go with -check, -dry-run or -replay")
	}
	cfg, err := loadConfig(c.configPath)
	if err != nil {
		return err
	}
	level := slog.LevelWarn
	if c.verbose {
		level = slog.LevelDebug
	}
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))

	var conns []connectionConfig
	for _, cc := range cfg.Connections {
		if c.only == "" || cc.Name == c.only {
			conns = append(conns, cc)
		}
	}
	if len(conns) == 0 {
		return fmt.Errorf("no connection to run (check -connection and %s)", c.configPath)
	}
	if c.check {
		failed := 0
		for _, cc := range conns {
			if err := c.checkOne(ctx, cfg, cc, logger); err != nil {
				failed++
				fmt.Fprintf(stdout, "✗ %s: %v\n", cc.Name, err)
			}
		}
		if failed > 0 {
			return fmt.Errorf("%d of %d connections failed the check", failed, len(conns))
		}
		return nil
	}

	if c.serve {
		return c.serveFleet(ctx, cfg, conns, logger)
	}
	state, closeState, err := openState(ctx, cfg)
	if err != nil {
		return err
	}
	defer closeState()
	if !c.dryRun {
		unlock, err := lockTickets(cfg.TicketsFile)
		if err != nil {
			return err
		}
		defer unlock()
	}
	sink, err := jsonlsink.Open(cfg.TicketsFile, cfg.SaveFiles)
	if err != nil {
		return err
	}
	defer sink.Close()
	if c.replay != "" {
		if len(conns) != 1 {
			return errors.New("-replay needs -connection NAME (the connection whose rules and mapping apply)")
		}
		return c.replayFiles(ctx, cfg, conns[0], state, sink, logger)
	}

	var failedConns, failedMsgs []string
	for _, cc := range conns {
		if !cc.Enabled {
			fmt.Fprintf(stdout, "- %s: disabled, skipped\n", cc.Name)
			continue
		}
		rep, err := c.syncOne(ctx, cfg, cc, state, sink, logger)
		if err != nil {
			failedConns = append(failedConns, cc.Name)
		}
		if rep != nil && rep.Failed > 0 {
			failedMsgs = append(failedMsgs, fmt.Sprintf("%s (%d)", cc.Name, rep.Failed))
		}
		if errors.Is(err, context.Canceled) {
			break
		}
	}
	fmt.Fprintf(stdout, "%s now holds %d tickets and %d follow-ups\n", cfg.TicketsFile, sink.Tickets(), sink.FollowUps())
	var problems []string
	if len(failedConns) > 0 {
		problems = append(problems, fmt.Sprintf("%d connection(s) failed: %s", len(failedConns), strings.Join(failedConns, ", ")))
	}
	if len(failedMsgs) > 0 {
		problems = append(problems, fmt.Sprintf("messages failed (left for the next run) in: %s", strings.Join(failedMsgs, ", ")))
	}
	if len(problems) > 0 {
		return errors.New(strings.Join(problems, "; "))
	}
	return nil
}

// lockedWriter serialises writes to w under mu.
type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// counts formats a report's numbers.
func counts(rep *mailsync.Report) string {
	s := fmt.Sprintf("seen %d, created %d, follow-ups %d, already done %d, quarantined %d, failed %d",
		rep.Seen, rep.Created, rep.FollowUps, rep.AlreadyDone, rep.Quarantined, rep.Failed)
	if rep.Dropped > 0 {
		s += fmt.Sprintf(", dropped %d", rep.Dropped)
	}
	if rep.Gone > 0 {
		s += fmt.Sprintf(", gone %d", rep.Gone)
	}
	return s
}

// printReport prints one connection's outcome: "✓" only when the sync ran
// to the end and no message failed; a sync that could not run shows only
// the failure, one that stopped part-way also what it did before.
func (c *cli) printReport(name string, rep *mailsync.Report, err error) {
	switch {
	case err != nil:
		fmt.Fprintf(c.stdout, "✗ %s: %v\n", name, err)
		if rep != nil && (rep.Seen > 0 || len(rep.Messages) > 0) {
			fmt.Fprintf(c.stdout, "  before it stopped: %s\n", counts(rep))
		}
	case rep.Failed > 0:
		fmt.Fprintf(c.stdout, "✗ %s: %d message(s) failed: %s in %s\n", name, rep.Failed, counts(rep), rep.Duration.Round(time.Millisecond))
	default:
		fmt.Fprintf(c.stdout, "✓ %s: %s in %s\n", name, counts(rep), rep.Duration.Round(time.Millisecond))
	}
	if rep == nil {
		return
	}
	for _, n := range rep.Notes {
		fmt.Fprintf(c.stdout, "  note: %s\n", n)
	}
	for _, o := range rep.Messages {
		if o.Status == mailsync.StatusFailed || o.Status == mailsync.StatusQuarantined {
			fmt.Fprintf(c.stdout, "  %s %s: %v\n", o.Status, o.Key, o.Err)
		}
	}
}

// syncOne syncs one connection and prints its outcome. The report is nil
// when the sync could not start.
func (c *cli) syncOne(ctx context.Context, cfg *fileConfig, cc connectionConfig, state mailsync.State, sink mailsync.Sink, logger *slog.Logger) (*mailsync.Report, error) {
	rep, err := c.syncConn(ctx, cfg, cc, state, sink, logger)
	c.printReport(cc.Name, rep, err)
	return rep, err
}

func (c *cli) syncConn(ctx context.Context, cfg *fileConfig, cc connectionConfig, state mailsync.State, sink mailsync.Sink, logger *slog.Logger) (*mailsync.Report, error) {
	ticketType := cc.TicketType
	if ticketType == "" && len(cc.ConnectedWith) > 0 {
		ticketType = cc.ConnectedWith[0]
	}
	m, ok := cfg.mapping(ticketType)
	if !ok {
		return nil, fmt.Errorf("no mapping for ticket type %q", ticketType)
	}
	conn, err := c.connector(ctx, cfg, cc, logger)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	last := time.Now()
	opts := []mailsync.Option{mailsync.WithState(state), mailsync.WithLogger(logger), mailsync.WithPostAction(cc.PostAction),
		mailsync.WithProgress(func(p mailsync.Progress) {
			if time.Since(last) > 2*time.Second || p.Done == p.Total && p.Total > 100 {
				last = time.Now()
				fmt.Fprintf(c.stderr, "  %s: %d/%d messages\n", cc.Name, p.Done, p.Total)
			}
		})}
	if r := cfg.routing(cc, m); r != nil {
		opts = append(opts, mailsync.WithRouting(*r))
	}
	if c.dryRun {
		opts = append(opts, mailsync.WithDryRun())
	}
	rep, err := mailsync.Sync(ctx, conn, m, sink, opts...)
	if c.dryRun && rep != nil {
		c.printPreview(rep)
	}
	return rep, err
}

// printPreview prints a dry run's outcome per message as a table.
func (c *cli) printPreview(rep *mailsync.Report) {
	tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "  KEY\tWOULD BE\tTICKET TYPE\tRULES\tKIND\tTITLE")
	for _, o := range rep.Messages {
		if o.Status == mailsync.StatusAlreadyDone {
			continue
		}
		what := string(o.Status)
		switch {
		case o.Blocked != "":
			what += " (blocked)"
		case o.Status == mailsync.StatusFollowUp:
			what += " on " + o.TicketID
		case o.RelatedTicketID != "":
			what += " (related " + o.RelatedTicketID + ")"
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\t%s\n", o.Key, what, o.TicketType, strings.Join(o.Rules, ","), o.Kind, oneLine(o.Fields["title"], 60))
	}
	tw.Flush()
}

func oneLine(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if r := []rune(s); len(r) > n {
		return string(r[:n-1]) + "…"
	}
	return s
}

// replayFiles feeds the .eml files at c.replay (a file or a folder, walked)
// through the connection's mapping and rules.
func (c *cli) replayFiles(ctx context.Context, cfg *fileConfig, cc connectionConfig, state mailsync.State, sink mailsync.Sink, logger *slog.Logger) error {
	ticketType := cc.TicketType
	if ticketType == "" && len(cc.ConnectedWith) > 0 {
		ticketType = cc.ConnectedWith[0]
	}
	m, ok := cfg.mapping(ticketType)
	if !ok {
		return fmt.Errorf("no mapping for ticket type %q", ticketType)
	}
	opts := []mailsync.Option{mailsync.WithState(state), mailsync.WithLogger(logger)}
	if r := cfg.routing(cc, m); r != nil {
		opts = append(opts, mailsync.WithRouting(*r))
	}
	if c.dryRun {
		opts = append(opts, mailsync.WithDryRun())
	}
	var failed int
	err := filepath.WalkDir(c.replay, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(strings.ToLower(path), ".eml") {
			return err
		}
		f, err := os.Open(path)
		if err != nil {
			return err
		}
		defer f.Close()
		o, err := mailsync.Replay(ctx, cc.Connection, "replay:"+filepath.ToSlash(path), f, m, sink, opts...)
		if err != nil || o.Status == mailsync.StatusFailed {
			failed++
			fmt.Fprintf(c.stdout, "✗ %s: %v %v\n", path, err, o.Err)
			return nil
		}
		detail := o.TicketID
		if o.Err != nil {
			detail = o.Err.Error()
		}
		mark := "✓"
		if o.Status == mailsync.StatusDuplicate {
			mark = "·"
		}
		fmt.Fprintf(c.stdout, "%s %s: %s %s %s\n", mark, path, o.Status, o.TicketType, detail)
		return nil
	})
	if err != nil {
		return err
	}
	if failed > 0 {
		return fmt.Errorf("%d replayed message(s) failed", failed)
	}
	return nil
}

// password returns the connection's password: MAILSYNC_PASSWORD, the first
// line of stdin with -password-stdin, or a prompt on the terminal.
func (c *cli) password(name, user string) (mailsync.Secret, error) {
	if p, ok := c.passwords[name]; ok {
		return p, nil
	}
	var p string
	switch {
	case os.Getenv("MAILSYNC_PASSWORD") != "":
		p = os.Getenv("MAILSYNC_PASSWORD")
	case c.passwordStdin:
		line, err := bufio.NewReader(c.stdin).ReadString('\n')
		if err != nil && line == "" {
			return "", fmt.Errorf("reading the password from stdin: %w", err)
		}
		p = strings.TrimRight(line, "\r\n")
	default:
		tty, err := os.OpenFile("/dev/tty", os.O_RDWR, 0)
		if err != nil {
			return "", errors.New("no terminal to ask the password on: set MAILSYNC_PASSWORD or use -password-stdin")
		}
		defer tty.Close()
		fmt.Fprintf(tty, "Password for %s (%s): ", user, name)
		b, err := term.ReadPassword(int(tty.Fd()))
		fmt.Fprintln(tty)
		if err != nil {
			return "", err
		}
		p = string(b)
	}
	if p == "" {
		return "", errors.New("empty password")
	}
	c.passwords[name] = mailsync.Secret(p)
	return mailsync.Secret(p), nil
}
