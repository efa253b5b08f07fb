package fleet_test

import (
	"context"
	"database/sql"
	"log"
	"log/slog"
	"time"

	"github.com/riverqueue/river/riverdriver/riversqlite"
	_ "modernc.org/sqlite"

	"github.com/mailsync/mailsync"
	"github.com/mailsync/mailsync/fleet"
)

// A host's worker process on the embedded SQLite default. resolver builds a
// connector from the host's own store; state is the host's durable
// mailsync.State (sqlstate, boltstate, …).
func Example() {
	ctx := context.Background()
	var (
		resolver fleet.Resolver // the host's: connection id → connector, mapping, sink
		state    mailsync.State // the host's durable State, ideally a Leaser
	)
	db, err := sql.Open("sqlite", "file:mailsync.db?_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)")
	if err != nil {
		log.Fatal(err)
	}
	db.SetMaxOpenConns(1) // riversqlite's advice
	driver := riversqlite.New(db)
	if err := fleet.Migrate(ctx, driver); err != nil {
		log.Fatal(err)
	}
	health, err := fleet.NewSQLHealth(db, fleet.SQLite, "mailsync_")
	if err != nil {
		log.Fatal(err)
	}
	if err := health.Migrate(ctx); err != nil {
		log.Fatal(err)
	}
	f, err := fleet.New(driver, fleet.Config{
		Resolver: resolver,
		State:    state,
		Health:   health,
		Interval: 5 * time.Minute,
		OnDegraded: func(ctx context.Context, h fleet.Health) {
			slog.Warn("mailbox degraded", "connection", h.Connection, "kind", h.LastErrorKind, "needs_admin", h.NeedsAdmin)
		},
		OnRecovered: func(ctx context.Context, h fleet.Health) {
			slog.Info("mailbox recovered", "connection", h.Connection)
		},
	})
	if err != nil {
		log.Fatal(err)
	}
	// Start's ctx is the workers' lifetime (here the process's): a context
	// with a timeout would stop them silently when it expires.
	if err := f.Start(ctx); err != nil {
		log.Fatal(err)
	}
	defer f.Stop(context.Background())
	// Every OAuth or stored-credential connection; never a typed-password one.
	if _, err := f.ScheduleMany(ctx, []string{"support-inbox", "sales-inbox"}); err != nil {
		log.Print(err)
	}
	// A person typed the POP3 password in the admin page: sync it here.
	rep, err := f.SyncNow(ctx, "legacy-pop3", mailsync.Secret("typed in the form"))
	if err != nil {
		log.Print(err)
	} else {
		log.Printf("created %d tickets", rep.Created)
	}
}
