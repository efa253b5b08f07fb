// Command helpdesk is a small ticketing backend that embeds mailsync the way
// a real one (GlobalSuite-style) does: the admin's e-mail connection form,
// the e-mail → ticket mapping per ticket type, a sync that asks for the
// password at that moment, the tickets with their follow-ups, attachments
// and inline images, and a quarantine with replay.
//
//	go run ./examples/helpdesk            # then open the printed URL
//
// With no set-up it keeps everything in one SQLite file in -data
// (mailsync's state via sqlstate, River's jobs via riversqlite, and the
// host's own tables), and starts an in-process IMAP server seeded with
// realistic mail, with a connection to it already configured: its password
// is printed on the console. With -postgres URL (or
// MAILSYNC_HELPDESK_POSTGRES) everything lives in PostgreSQL and River uses
// riverpgxv5, so several instances share the work.
//
// Where to look (each file's doc comments explain the why):
//
//   - main.go: flags and wiring (database, sqlstate, fleet, HTTP server)
//   - store.go: the host's tables (no password column)
//   - sink.go: the mailsync.FollowUpSink (INSERT … ON CONFLICT DO NOTHING)
//   - resolver.go: the fleet.Resolver (connection id → connector, mapping, sink)
//   - secrets.go: OAuth secrets encrypted at rest (AES-256-GCM)
//   - web.go, templates/, static/: the admin pages, CSRF, security headers
//   - i18n.go: Portuguese and English labels
//   - seed.go: the demo mailbox (internal/demoimap, shared with examples/demo)
package main

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"html/template"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/riverdriver/riversqlite"
	_ "modernc.org/sqlite" // database/sql driver "sqlite" (pure Go)

	"github.com/mailsync/mailsync"
	"github.com/mailsync/mailsync/fleet"
	"github.com/mailsync/mailsync/internal/demoimap"
	"github.com/mailsync/mailsync/sqlstate"
)

// Config is the backend's configuration (the flags).
type Config struct {
	Addr        string // listen address; loopback unless AllowRemote
	AllowRemote bool
	DataDir     string // SQLite file and key file
	Postgres    string // PostgreSQL URL; empty: SQLite in DataDir
	Lang        string // "pt" or "en"
	NoSeed      bool   // no demo mailbox
	Interval    time.Duration
	Logger      *slog.Logger

	// seedTokenCheck, set by tests, makes the demo server accept XOAUTH2
	// tokens it approves.
	seedTokenCheck func(user, token string) bool
}

// App is the running backend.
type App struct {
	cfg      Config
	ctx      context.Context // ends at Close: background syncs started by a page
	cancel   context.CancelFunc
	log      *slog.Logger
	st       *Store
	state    *sqlstate.State
	sink     *Sink
	resolver *Resolver
	fleet    *fleet.Fleet
	csrfKey  []byte
	tmpl     map[string]*template.Template

	seed *demoimap.Server
	// SeedPassword is the demo mailbox's password, made at start-up and
	// printed on the console so a user can type it in the sync dialog. It
	// is not stored anywhere.
	SeedPassword string

	runsMu   sync.Mutex
	runs     map[string]*syncRun
	runOrder []string

	closers []func()
}

func defaultDataDir() string {
	if d, err := os.UserCacheDir(); err == nil {
		return filepath.Join(d, "mailsync-helpdesk")
	}
	return "helpdesk-data"
}

// Open wires the backend: database, mailsync state, host tables, fleet,
// demo mailbox. Close undoes it.
func Open(ctx context.Context, cfg Config) (a *App, err error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	if cfg.Lang != "en" {
		cfg.Lang = "pt"
	}
	if cfg.Interval <= 0 {
		cfg.Interval = 5 * time.Minute
	}
	a = &App{cfg: cfg, log: cfg.Logger, runs: map[string]*syncRun{}}
	a.ctx, a.cancel = context.WithCancel(context.Background())
	defer func() {
		if err != nil {
			a.Close()
		}
	}()
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, err
	}
	key, err := loadKey(cfg.DataDir)
	if err != nil {
		return nil, err
	}
	box, err := newSecretBox(key)
	if err != nil {
		return nil, err
	}
	a.csrfKey = box.derive("csrf")

	// 1. mailsync's state (cursors, processed keys, threads, leases) and,
	// in the same database, the host's tables and the fleet's health.
	dialect := fleet.SQLite
	if cfg.Postgres != "" {
		dialect = fleet.Postgres
		a.state, err = sqlstate.OpenPostgres(ctx, cfg.Postgres, sqlstate.Options{})
		if err != nil {
			return nil, errors.New("opening PostgreSQL failed (check -postgres)") // pgx may quote the URL, password included
		}
	} else {
		a.state, err = sqlstate.OpenSQLite(ctx, filepath.Join(cfg.DataDir, "helpdesk.db"))
		if err != nil {
			return nil, err
		}
	}
	a.closers = append(a.closers, func() { a.state.Close() })
	db := a.state.DB()
	a.st = NewStore(a.state, cfg.Postgres != "", box)
	if err := a.st.Migrate(ctx); err != nil {
		return nil, err
	}
	health, err := fleet.NewSQLHealth(db, dialect, sqlstate.DefaultPrefix)
	if err != nil {
		return nil, err
	}
	if err := health.Migrate(ctx); err != nil {
		return nil, err
	}

	// 2. The demo mailbox, and the trust it needs: the system roots plus
	// its self-signed certificate. A real host keeps the system roots (or
	// adds its company CA).
	rootCAs, err := x509.SystemCertPool()
	if err != nil {
		rootCAs = x509.NewCertPool()
	}
	if !cfg.NoSeed {
		a.SeedPassword = "demo-" + randomHex(6)
		if a.seed, err = demoimap.Start(seedUser, a.SeedPassword, demoimap.Options{CheckToken: cfg.seedTokenCheck}); err != nil {
			return nil, err
		}
		a.closers = append(a.closers, a.seed.Close)
		for _, m := range seedMails {
			if err := a.seed.Deliver([]byte(m)); err != nil {
				return nil, err
			}
		}
		rootCAs.AddCert(a.seed.Cert)
		host, port, _ := net.SplitHostPort(a.seed.Addr)
		p, _ := strconv.Atoi(port)
		if err := seed(ctx, a.st, host, p); err != nil {
			return nil, err
		}
	} else if err := seed(ctx, a.st, "", 0); err != nil {
		return nil, err
	}

	// 3. The sink and the resolver: the host's two integration points.
	a.sink = &Sink{st: a.st}
	a.resolver = &Resolver{st: a.st, sink: a.sink, rootCAs: rootCAs, logger: cfg.Logger}

	// 4. The fleet on River: background syncs of the OAuth connections,
	// and SyncNow for the typed-password ones, under the same lease.
	fcfg := fleet.Config{
		Resolver: a.resolver,
		State:    a.state,
		Health:   health,
		Interval: cfg.Interval,
		Workers:  4,
		Logger:   cfg.Logger,
		// Every process lists the same connections: the enabled OAuth ones.
		Connections: a.schedulableConnections,
		OnDegraded: func(_ context.Context, h fleet.Health) {
			a.log.Warn("mailbox degraded", "connection", h.Connection, "kind", h.LastErrorKind, "needs_admin", h.NeedsAdmin)
		},
		OnRecovered: func(_ context.Context, h fleet.Health) {
			a.log.Info("mailbox recovered", "connection", h.Connection)
		},
	}
	if cfg.Postgres != "" {
		pool, err := pgxpool.New(ctx, cfg.Postgres)
		if err != nil {
			return nil, errors.New("opening PostgreSQL for River failed (check -postgres)")
		}
		a.closers = append(a.closers, pool.Close)
		driver := riverpgxv5.New(pool)
		if err := fleet.Migrate(ctx, driver); err != nil {
			return nil, err
		}
		if a.fleet, err = fleet.New(driver, fcfg); err != nil {
			return nil, err
		}
	} else {
		// River's own connection to the same SQLite file (riversqlite
		// wants a single one), with sqlstate's settings and its cache of
		// prepared statements (modernc.org/sqlite alone parses River's
		// statements again on every call).
		rdb, err := sqlstate.OpenSQLiteDB(filepath.Join(cfg.DataDir, "helpdesk.db"))
		if err != nil {
			return nil, err
		}
		rdb.SetMaxOpenConns(1)
		a.closers = append(a.closers, func() { rdb.Close() })
		driver := riversqlite.New(rdb)
		if err := fleet.Migrate(ctx, driver); err != nil {
			return nil, err
		}
		fcfg.River = func(rc *river.Config) { rc.FetchPollInterval = time.Second }
		if a.fleet, err = fleet.New(driver, fcfg); err != nil {
			return nil, err
		}
	}
	// Start's context is the workers' lifetime (see fleet.Fleet.Start):
	// the app's, not Open's (which may be a start-up timeout).
	if err := a.fleet.Start(a.ctx); err != nil {
		return nil, err
	}
	a.closers = append(a.closers, func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		a.fleet.Stop(ctx)
	})
	ids, err := a.schedulableConnections(ctx)
	if err != nil {
		return nil, err
	}
	if len(ids) > 0 {
		if _, err := a.fleet.ScheduleMany(ctx, ids); err != nil {
			a.log.Warn("scheduling the OAuth connections", "err", err)
		}
	}
	if err := a.parseTemplates(); err != nil {
		return nil, err
	}
	return a, nil
}

// schedulableConnections lists the enabled OAuth connections: the only
// ones the fleet syncs without a person present.
func (a *App) schedulableConnections(ctx context.Context) ([]string, error) {
	rows, err := a.st.Connections(ctx)
	if err != nil {
		return nil, err
	}
	var ids []string
	for _, r := range rows {
		if schedulable(r.Conn) == nil {
			ids = append(ids, r.Conn.Name)
		}
	}
	return ids, nil
}

// Close stops the fleet and the demo server and closes the databases.
func (a *App) Close() {
	a.cancel()
	for i := len(a.closers) - 1; i >= 0; i-- {
		a.closers[i]()
	}
	a.closers = nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// checkAddr refuses a listen address that is not loopback unless
// allowRemote: the admin pages have no login of their own.
func checkAddr(addr string, allowRemote bool) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("-addr %q: %w", addr, err)
	}
	if allowRemote || (host != "" && mailsync.IsLoopbackHost(host)) {
		return nil
	}
	return fmt.Errorf("-addr %q is not a loopback address: this example has no login, so it listens on 127.0.0.1 unless -allow-remote", addr)
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "helpdesk:", err)
		os.Exit(1)
	}
}

// run parses the flags, opens the backend, prints the listening line and
// serves until ctx ends.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("helpdesk", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cfg Config
	fs.StringVar(&cfg.Addr, "addr", "127.0.0.1:8080", "listen address (loopback only unless -allow-remote)")
	fs.BoolVar(&cfg.AllowRemote, "allow-remote", false, "allow a non-loopback -addr (the pages have no login: put it behind your own)")
	fs.StringVar(&cfg.DataDir, "data", defaultDataDir(), "directory of the SQLite database and the key file")
	fs.StringVar(&cfg.Postgres, "postgres", os.Getenv("MAILSYNC_HELPDESK_POSTGRES"), "PostgreSQL URL (default $MAILSYNC_HELPDESK_POSTGRES); empty: SQLite in -data")
	fs.StringVar(&cfg.Lang, "lang", "pt", "default language of the pages: pt or en (?lang=en switches per browser)")
	fs.BoolVar(&cfg.NoSeed, "no-seed", false, "do not start the demo mailbox")
	fs.DurationVar(&cfg.Interval, "interval", 5*time.Minute, "time between background syncs of OAuth connections")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if cfg.Lang != "pt" && cfg.Lang != "en" {
		return fmt.Errorf("-lang %q: pt or en", cfg.Lang)
	}
	if err := checkAddr(cfg.Addr, cfg.AllowRemote); err != nil {
		return err
	}
	cfg.Logger = slog.New(slog.NewTextHandler(stderr, nil))
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return err
	}
	defer ln.Close()
	a, err := Open(ctx, cfg)
	if err != nil {
		return err
	}
	defer a.Close()
	srv := &http.Server{Handler: a.Handler(), ReadHeaderTimeout: 10 * time.Second}
	fmt.Fprintf(stdout, "helpdesk: listening on http://%s\n", ln.Addr())
	if a.seed != nil {
		fmt.Fprintf(stdout, "helpdesk: demo mailbox %s at %s (connection %q), password: %s\n", seedUser, a.seed.Addr, seedConnection, a.SeedPassword)
	}
	where := "SQLite in " + cfg.DataDir
	if cfg.Postgres != "" {
		where = "PostgreSQL"
	}
	fmt.Fprintf(stdout, "helpdesk: data in %s\n", where)
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return srv.Shutdown(sctx)
}
