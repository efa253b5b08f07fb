package fleet

import (
	"context"
	"database/sql"
	"fmt"
	"math/rand/v2"
	"net/url"
	"os"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	_ "github.com/jackc/pgx/v5/stdlib"
	"github.com/riverqueue/river/riverdriver"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
)

// postgresEnv names a PostgreSQL URL (a role that may CREATE DATABASE) for
// the PostgreSQL tests, e.g. postgres://mailsync@127.0.0.1:5432/postgres.
// Without it they are skipped: they are to move onto internal/pgtest (a
// private cluster per test binary) once it is merged.
const postgresEnv = "MAILSYNC_FLEET_POSTGRES_URL"

// postgresDB creates a fresh database for the test and returns its URL.
func postgresDB(t testing.TB) string {
	t.Helper()
	admin := os.Getenv(postgresEnv)
	if admin == "" {
		t.Skipf("%s is not set", postgresEnv)
	}
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, admin)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	name := fmt.Sprintf("fleet_test_%d", rand.Int64())
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c, err := pgx.Connect(context.Background(), admin)
		if err == nil {
			_, _ = c.Exec(context.Background(), "DROP DATABASE "+name+" WITH (FORCE)")
			c.Close(context.Background())
		}
	})
	u, err := url.Parse(admin)
	if err != nil {
		t.Fatal(err)
	}
	u.Path = "/" + name
	return u.String()
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
	h, err := NewSQLHealth(db, Postgres, "mailsync_")
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

func TestTwoProcessesPostgres(t *testing.T) {
	dsn := postgresDB(t)
	p1, p2 := postgresPool(t, dsn), postgresPool(t, dsn)
	if err := Migrate(context.Background(), riverpgxv5.New(p1)); err != nil {
		t.Fatal(err)
	}
	testTwoProcesses(t, [2]riverdriver.Driver[pgx.Tx]{riverpgxv5.New(p1), riverpgxv5.New(p2)}, postgresHealth(t, dsn), 20)
}
