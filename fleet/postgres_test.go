package fleet

import (
	"context"
	"database/sql"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"
	_ "github.com/jackc/pgx/v5/stdlib"

	"github.com/mailsync/mailsync/internal/pgtest"
)

// postgresDB creates a fresh database for the test on this test binary's
// private PostgreSQL cluster (internal/pgtest) and returns its URL. Without
// the PostgreSQL binaries the test is skipped, or fails under CI=true.
func postgresDB(t testing.TB) string {
	t.Helper()
	return pgtest.NewDatabase(t)
}

func postgresPool(t testing.TB, dsn string) *pgxpool.Pool {
	t.Helper()
	pool, err := pgxpool.New(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return pool
}

func postgresHealth(t testing.TB, dsn string) *SQLHealth {
	t.Helper()
	db, err := sql.Open("pgx", dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return migratedHealth(t, db, Postgres)
}

// migratedHealth is a SQLHealth on db with its tables made.
func migratedHealth(t testing.TB, db *sql.DB, dialect Dialect) *SQLHealth {
	t.Helper()
	h, err := NewSQLHealth(db, dialect, "mailsync_")
	if err != nil {
		t.Fatal(err)
	}
	if err := h.Migrate(context.Background()); err != nil {
		t.Fatal(err)
	}
	return h
}

func TestPostgresHealthStore(t *testing.T) {
	dsn := postgresDB(t)
	testHealthStore(t, postgresHealth(t, dsn))
}
