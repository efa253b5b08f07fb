package main

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/riverdriver/riversqlite"
	_ "modernc.org/sqlite" // riversqlite's database/sql driver

	"github.com/mailsync/mailsync"
	"github.com/mailsync/mailsync/fleet"
	"github.com/mailsync/mailsync/jsonlsink"
	"github.com/mailsync/mailsync/sqlstate"
)

// schedulable tells why a configured connection may or may not be synced
// by -serve: only enabled OAuth connections (Graph, Gmail API, IMAP/POP3
// with XOAUTH2) are; a password connection needs its password typed at
// sync time, which a background process cannot do.
func schedulable(cc connectionConfig) error {
	switch {
	case !cc.Enabled:
		return fmt.Errorf("%w: disabled", fleet.ErrUnknownConnection)
	case cc.OAuth == nil:
		return fleet.ErrPasswordRequired
	}
	return nil
}

// serveFleet runs the fleet for the OAuth connections among conns until
// ctx ends, printing one line per sync and, every -status-interval and at
// shutdown, each connection's health.
func (c *cli) serveFleet(ctx context.Context, cfg *fileConfig, conns []connectionConfig, logger *slog.Logger) error {
	if c.interval <= 0 || c.statusInterval <= 0 || c.workers < 1 {
		return errors.New("-interval and -status-interval must be positive, -workers at least 1")
	}
	var ids []string
	for _, cc := range conns {
		switch err := schedulable(cc); {
		case err == nil:
			ids = append(ids, cc.Name)
		case errors.Is(err, fleet.ErrPasswordRequired):
			fmt.Fprintf(c.stdout, "- %s: skipped: a password connection is never scheduled (its password is typed at sync time and never stored); sync it with a one-off run of mail2ticket while -serve is stopped\n", cc.Name)
		default:
			fmt.Fprintf(c.stdout, "- %s: disabled, skipped\n", cc.Name)
		}
	}
	if len(ids) == 0 {
		return fmt.Errorf("no enabled OAuth connection to serve in %s", c.configPath)
	}

	store := cfg.store
	if store.kind != storeBolt && c.fleetDB != "" {
		return errors.New("-fleet-db is for a config without \"state\": the fleet uses the database of \"state\"")
	}
	if store.kind == storeBolt {
		path := c.fleetDB
		if path == "" {
			base := filepath.Base(c.configPath)
			path = filepath.Join(filepath.Dir(c.configPath), strings.TrimSuffix(base, filepath.Ext(base))+".db")
			if path == filepath.Clean(c.configPath) {
				path += ".db"
			}
		}
		store = stateSetting{kind: storeSQLite, path: path}
		if _, err := os.Stat(cfg.StateFile); err == nil {
			// One-off runs used bbolt: its cursors are not carried over, so
			// the first syncs list the mailboxes again; the tickets file
			// knows every idempotency key and makes no second ticket.
			fmt.Fprintf(c.stdout, "note: -serve keeps its state in %s, not in the bbolt state_file %s; set \"state\": \"sqlite:%s\" to share it with one-off runs (mail already ticketed is recognised by %s in any case)\n",
				path, cfg.StateFile, path, cfg.TicketsFile)
		}
	}
	scfg := *cfg
	scfg.store = store
	state, closeState, err := openState(ctx, &scfg)
	if err != nil {
		return err
	}
	defer closeState()
	db := state.(*sqlstate.State).DB()

	// The jsonlsink Sink is safe for concurrent use (one mutex around every
	// write), so the -workers connections share it; other processes are
	// kept off the file.
	unlock, err := lockTickets(cfg.TicketsFile)
	if err != nil {
		return err
	}
	defer unlock()
	sink, err := jsonlsink.Open(cfg.TicketsFile, cfg.SaveFiles)
	if err != nil {
		return err
	}
	defer sink.Close()

	health := &printingHealth{c: c}
	fcfg := fleet.Config{
		Resolver: &serveResolver{c: c, logger: logger, sink: sink, ids: ids},
		State:    state,
		Interval: c.interval,
		Workers:  c.workers,
		Logger:   logger,
		OnDegraded: func(_ context.Context, h fleet.Health) {
			fmt.Fprintf(c.stdout, "! %s: degraded: %s\n", h.Connection, healthLine(h, time.Now()))
		},
		OnRecovered: func(_ context.Context, h fleet.Health) {
			fmt.Fprintf(c.stdout, "✓ %s: recovered\n", h.Connection)
		},
		River: func(rc *river.Config) {
			// riversqlite polls for jobs (no LISTEN/NOTIFY): poll often
			// enough for short intervals.
			if p := c.interval / 4; p < time.Second {
				rc.FetchPollInterval = max(p, 20*time.Millisecond)
				rc.FetchCooldown = min(rc.FetchPollInterval, 10*time.Millisecond)
			}
		},
	}
	var f *fleet.Fleet
	var closeDriver func()
	switch store.kind {
	case storePostgres:
		pool, err := pgxpool.New(ctx, store.url)
		if err != nil {
			return errors.New("the PostgreSQL URL of \"state\" does not parse") // pgx may quote it, password included
		}
		closeDriver = pool.Close
		health.HealthStore, err = sqlHealth(ctx, db, fleet.Postgres)
		if err == nil {
			f, err = newFleet(ctx, riverpgxv5.New(pool), fcfg, health)
		}
		if err != nil {
			pool.Close()
			return err
		}
	default:
		// River's own connection (riversqlite wants one) on the same file
		// as the state and the health, with sqlstate's prepared-statement
		// cache.
		rdb, err := sqlstate.OpenSQLiteDB(store.path)
		if err != nil {
			return err
		}
		rdb.SetMaxOpenConns(1)
		closeDriver = func() { rdb.Close() }
		health.HealthStore, err = sqlHealth(ctx, db, fleet.SQLite)
		if err == nil {
			f, err = newFleet(ctx, riversqlite.New(rdb), fcfg, health)
		}
		if err != nil {
			rdb.Close()
			return err
		}
	}
	defer closeDriver()

	fmt.Fprintf(c.stdout, "serving %d connection(s) every %s on %s, tickets to %s\n", len(ids), c.interval, store, cfg.TicketsFile)
	if err := f.Start(ctx); err != nil {
		return err
	}
	// A connection that waited for the admin is scheduled again: starting
	// -serve is the admin's go-ahead after fixing the config.
	if _, err := f.ScheduleMany(ctx, ids); err != nil && ctx.Err() == nil {
		fmt.Fprintf(c.stdout, "✗ scheduling: %v\n", err)
	}

	tick := time.NewTicker(c.statusInterval)
	defer tick.Stop()
	for done := false; !done; {
		select {
		case <-ctx.Done():
			done = true
		case <-tick.C:
			c.printHealth(context.WithoutCancel(ctx), health, ids)
		}
	}
	fmt.Fprintln(c.stdout, "stopping: waiting for the running syncs")
	stopCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	stopErr := f.Stop(stopCtx)
	c.printHealth(stopCtx, health, ids)
	fmt.Fprintf(c.stdout, "%s now holds %d tickets and %d follow-ups\n", cfg.TicketsFile, sink.Tickets(), sink.FollowUps())
	return stopErr
}

// sqlHealth makes the health table in db.
func sqlHealth(ctx context.Context, db *sql.DB, d fleet.Dialect) (*fleet.SQLHealth, error) {
	h, err := fleet.NewSQLHealth(db, d, sqlstate.DefaultPrefix)
	if err != nil {
		return nil, err
	}
	if err := h.Migrate(ctx); err != nil {
		return nil, err
	}
	return h, nil
}

// newFleet migrates River's tables and makes the fleet.
func newFleet[TTx any](ctx context.Context, driver riverdriver.Driver[TTx], cfg fleet.Config, health fleet.HealthStore) (*fleet.Fleet, error) {
	if err := fleet.Migrate(ctx, driver); err != nil {
		return nil, err
	}
	cfg.Health = health
	return fleet.New(driver, cfg)
}

// printHealth prints one health line per served connection.
func (c *cli) printHealth(ctx context.Context, store fleet.HealthStore, ids []string) {
	now := time.Now()
	for _, id := range ids {
		h, ok, err := store.Get(ctx, id)
		switch {
		case err != nil:
			fmt.Fprintf(c.stdout, "health %s: unknown: %v\n", id, err)
		case !ok:
			fmt.Fprintf(c.stdout, "health %s: not synced yet\n", id)
		default:
			fmt.Fprintf(c.stdout, "health %s: %s\n", id, healthLine(h, now))
		}
	}
}

// healthLine formats a connection's health.
func healthLine(h fleet.Health, now time.Time) string {
	last := "never"
	if !h.LastSuccess.IsZero() {
		last = fmt.Sprintf("%s (%s ago)", h.LastSuccess.Local().Format("2006-01-02 15:04:05"), now.Sub(h.LastSuccess).Round(time.Second))
	}
	yes := map[bool]string{true: "yes", false: "no"}
	s := fmt.Sprintf("last success %s, consecutive failures %d, needs admin %s, degraded %s, messages %d",
		last, h.ConsecutiveFailures, yes[h.NeedsAdmin], yes[h.Degraded], h.MessagesSynced)
	if h.ConsecutiveFailures > 0 {
		s += fmt.Sprintf(", last error (%s): %s", h.LastErrorKind, oneLine(h.LastError, 160))
	}
	return s
}

// printingHealth is the fleet's HealthStore: it prints one line per
// finished sync (every sync the fleet records goes through Update).
type printingHealth struct {
	fleet.HealthStore
	c *cli
}

// Update implements fleet.HealthStore.
func (p *printingHealth) Update(ctx context.Context, connection string, fn func(*fleet.Health)) (fleet.Health, fleet.Health, error) {
	before, after, err := p.HealthStore.Update(ctx, connection, fn)
	if err != nil {
		return before, after, err
	}
	took := after.Updated.Sub(after.LastAttempt).Round(time.Millisecond)
	if after.ConsecutiveFailures == 0 {
		mark, rest := "✓", ""
		if after.CaughtUpAt.Before(after.LastAttempt) { // the fleet leaves CaughtUpAt when a message failed
			mark, rest = "!", "; some messages failed, left for the next sync"
		}
		fmt.Fprintf(p.c.stdout, "%s %s: synced, %d ticket(s) or follow-up(s), %d quarantined in %s%s\n", mark, connection,
			after.MessagesSynced-before.MessagesSynced, after.Quarantined-before.Quarantined, took, rest)
	} else {
		what := "failed"
		if after.NeedsAdmin {
			what = "failed, needs the admin (not retried until -serve restarts)"
		}
		fmt.Fprintf(p.c.stdout, "✗ %s: sync %s (%s, %d in a row): %s\n", connection, what, after.LastErrorKind, after.ConsecutiveFailures, after.LastError)
	}
	return before, after, err
}

// serveResolver builds each scheduled sync from the config file, read
// again every time: a rotated refresh token (written back by the previous
// sync) and the admin's edits take effect at the next sync.
type serveResolver struct {
	c      *cli
	logger *slog.Logger
	sink   mailsync.Sink
	ids    []string // the connections this process serves
}

func (r *serveResolver) lookup(id string) (*fileConfig, connectionConfig, error) {
	served := false
	for _, s := range r.ids {
		served = served || s == id
	}
	if !served {
		return nil, connectionConfig{}, fmt.Errorf("%w: %s is not served by this process", fleet.ErrUnknownConnection, id)
	}
	configMu.Lock()
	cfg, err := loadConfig(r.c.configPath)
	configMu.Unlock()
	if err != nil {
		return nil, connectionConfig{}, err // a ConfigError for an invalid file: the admin must fix it
	}
	for _, cc := range cfg.Connections {
		if cc.Name == id {
			if err := schedulable(cc); err != nil {
				return nil, cc, err
			}
			return cfg, cc, nil
		}
	}
	return nil, connectionConfig{}, fmt.Errorf("%w: %s is no longer in %s", fleet.ErrUnknownConnection, id, r.c.configPath)
}

// Schedulable implements fleet.Checker.
func (r *serveResolver) Schedulable(_ context.Context, id string) error {
	_, _, err := r.lookup(id)
	return err
}

// Resolve implements fleet.Resolver.
func (r *serveResolver) Resolve(ctx context.Context, id string, _ mailsync.Secret) (fleet.Target, error) {
	cfg, cc, err := r.lookup(id)
	if err != nil {
		return fleet.Target{}, err
	}
	ticketType := cc.TicketType
	if ticketType == "" && len(cc.ConnectedWith) > 0 {
		ticketType = cc.ConnectedWith[0]
	}
	m, ok := cfg.mapping(ticketType)
	if !ok {
		return fleet.Target{}, mailsync.NewConfigError(mailsync.Problem{Field: "ticket_type", Code: mailsync.CodeNotFound, Message: fmt.Sprintf("no mapping for ticket type %q", ticketType)})
	}
	conn, err := r.c.connector(ctx, cfg, cc, r.logger)
	if err != nil {
		return fleet.Target{}, err
	}
	opts := []mailsync.Option{mailsync.WithPostAction(cc.PostAction)}
	if rt := cfg.routing(cc, m); rt != nil {
		opts = append(opts, mailsync.WithRouting(*rt))
	}
	return fleet.Target{Connector: conn, Mapping: m, Sink: r.sink, Options: opts,
		Secrets: []mailsync.Secret{cc.OAuth.ClientSecret, cc.OAuth.RefreshToken}}, nil
}

var _ fleet.Checker = (*serveResolver)(nil)
