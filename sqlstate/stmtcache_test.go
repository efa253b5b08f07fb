package sqlstate

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"path/filepath"
	"runtime/metrics"
	"testing"

	"github.com/mailsync/mailsync"
)

// rawConn returns the cachingConn behind one connection of db.
func rawConn(t *testing.T, ctx context.Context, db *sql.DB) (*sql.Conn, *cachingConn) {
	t.Helper()
	conn, err := db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var cc *cachingConn
	if err := conn.Raw(func(c any) error {
		var ok bool
		cc, ok = c.(*cachingConn)
		if !ok {
			return fmt.Errorf("the connection is a %T, not a *cachingConn", c)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return conn, cc
}

func openCachedDB(t *testing.T) *sql.DB {
	t.Helper()
	db, err := OpenSQLiteDB(filepath.Join(t.TempDir(), "c.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// A statement run again on a connection is prepared once, whether it runs
// on the *sql.DB, in a *sql.Tx or on a *sql.Conn.
func TestSQLiteDBPreparesOnce(t *testing.T) {
	ctx := context.Background()
	db := openCachedDB(t)
	db.SetMaxOpenConns(1)
	if _, err := db.ExecContext(ctx, `CREATE TABLE t (k text PRIMARY KEY, v integer)`); err != nil {
		t.Fatal(err)
	}
	for i := range 50 {
		if _, err := db.ExecContext(ctx, `INSERT INTO t (k, v) VALUES (?1, ?2)`, fmt.Sprint("k", i), i); err != nil {
			t.Fatal(err)
		}
		tx, err := db.BeginTx(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		var v int
		if err := tx.QueryRowContext(ctx, `SELECT v FROM t WHERE k = ?1`, fmt.Sprint("k", i)).Scan(&v); err != nil || v != i {
			t.Fatalf("row %d: %d, %v", i, v, err)
		}
		if err := tx.Commit(); err != nil {
			t.Fatal(err)
		}
	}
	conn, cc := rawConn(t, ctx, db)
	defer conn.Close()
	before := cc.prepares
	for i := range 50 {
		var v int
		if err := conn.QueryRowContext(ctx, `SELECT v FROM t WHERE k = ?1`, fmt.Sprint("k", i)).Scan(&v); err != nil || v != i {
			t.Fatalf("row %d: %d, %v", i, v, err)
		}
	}
	// CREATE, INSERT, SELECT (BEGIN and COMMIT go through the driver's Tx).
	if before > 3 || cc.prepares != before {
		t.Errorf("prepared %d statements for 3 distinct ones, then %d more for 50 runs of a cached one", before, cc.prepares-before)
	}
}

// SQLite prepares a cached statement again by itself when the schema
// changes (a migration on this connection or another).
func TestSQLiteDBStatementsAfterMigration(t *testing.T) {
	ctx := context.Background()
	db := openCachedDB(t)
	db.SetMaxOpenConns(2)
	if _, err := db.ExecContext(ctx, `CREATE TABLE t (a integer); INSERT INTO t VALUES (1)`); err != nil {
		t.Fatal(err)
	}
	cols := func() []string {
		rows, err := db.QueryContext(ctx, `SELECT * FROM t`)
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		c, err := rows.Columns()
		if err != nil {
			t.Fatal(err)
		}
		for rows.Next() {
		}
		return c
	}
	if c := cols(); len(c) != 1 {
		t.Fatalf("columns %v", c)
	}
	// The migration on another connection of the pool.
	conn, _ := rawConn(t, ctx, db)
	if _, err := conn.ExecContext(ctx, `ALTER TABLE t ADD COLUMN b text NOT NULL DEFAULT 'x'`); err != nil {
		t.Fatal(err)
	}
	conn.Close()
	for range 3 {
		if c := cols(); len(c) != 2 || c[1] != "b" {
			t.Fatalf("after the migration: columns %v", c)
		}
	}
	if _, err := db.ExecContext(ctx, `DROP TABLE t; CREATE TABLE t (z text)`); err != nil {
		t.Fatal(err)
	}
	if c := cols(); len(c) != 1 || c[0] != "z" {
		t.Fatalf("after re-creating the table: columns %v", c)
	}
}

// A query run again while its own rows are still open (on the same
// connection, in a transaction) runs unprepared and both give their rows.
func TestSQLiteDBNestedSameQuery(t *testing.T) {
	ctx := context.Background()
	db := openCachedDB(t)
	if _, err := db.ExecContext(ctx, `CREATE TABLE t (v integer); INSERT INTO t VALUES (1), (2), (3)`); err != nil {
		t.Fatal(err)
	}
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	const q = `SELECT v FROM t WHERE v >= ?1 ORDER BY v`
	rows, err := tx.QueryContext(ctx, q, 1)
	if err != nil {
		t.Fatal(err)
	}
	var outer, inner []int
	for rows.Next() {
		var v int
		if err := rows.Scan(&v); err != nil {
			t.Fatal(err)
		}
		outer = append(outer, v)
		var w int
		if err := tx.QueryRowContext(ctx, q, v).Scan(&w); err != nil {
			t.Fatal(err)
		}
		inner = append(inner, w)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	rows.Close()
	if fmt.Sprint(outer) != "[1 2 3]" || fmt.Sprint(inner) != "[1 2 3]" {
		t.Fatalf("outer %v, inner %v", outer, inner)
	}
	// And the cached statement works again once the rows are closed.
	var n int
	if err := tx.QueryRowContext(ctx, q, 2).Scan(&n); err != nil || n != 2 {
		t.Fatalf("%d, %v", n, err)
	}
}

// Closing the database finalizes every cached statement; a connection
// dropped as bad is replaced by one that prepares its own.
func TestSQLiteDBCloseAndReconnect(t *testing.T) {
	ctx := context.Background()
	db, err := OpenSQLiteDB(filepath.Join(t.TempDir(), "c.db"))
	if err != nil {
		t.Fatal(err)
	}
	db.SetMaxOpenConns(1)
	if _, err := db.ExecContext(ctx, `CREATE TABLE t (v integer); INSERT INTO t VALUES (7)`); err != nil {
		t.Fatal(err)
	}
	conn, cc := rawConn(t, ctx, db)
	var v int
	if err := conn.QueryRowContext(ctx, `SELECT v FROM t`).Scan(&v); err != nil || v != 7 {
		t.Fatalf("%d, %v", v, err)
	}
	if len(cc.stmts) == 0 {
		t.Fatal("nothing cached")
	}
	// Drop the connection, as sqlstate's inTx does after a failed ROLLBACK.
	_ = conn.Raw(func(any) error { return driver.ErrBadConn })
	conn.Close()
	if len(cc.stmts) != 0 {
		t.Errorf("%d statements still cached on a closed connection", len(cc.stmts))
	}
	conn2, cc2 := rawConn(t, ctx, db)
	if cc2 == cc {
		t.Fatal("the bad connection was reused")
	}
	if err := conn2.QueryRowContext(ctx, `SELECT v FROM t`).Scan(&v); err != nil || v != 7 {
		t.Fatalf("on the new connection: %d, %v", v, err)
	}
	if cc2.prepares != 1 {
		t.Errorf("the new connection prepared %d statements, want 1", cc2.prepares)
	}
	conn2.Close()
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if len(cc2.stmts) != 0 {
		t.Errorf("%d statements still cached after Close", len(cc2.stmts))
	}
}

// The cache keeps at most stmtCacheSize statements per connection.
func TestSQLiteDBCacheBound(t *testing.T) {
	ctx := context.Background()
	db := openCachedDB(t)
	db.SetMaxOpenConns(1)
	for i := range stmtCacheSize + 20 {
		var v int
		if err := db.QueryRowContext(ctx, fmt.Sprintf(`SELECT %d`, i)).Scan(&v); err != nil || v != i {
			t.Fatalf("%d: %d, %v", i, v, err)
		}
	}
	conn, cc := rawConn(t, ctx, db)
	defer conn.Close()
	if len(cc.stmts) > stmtCacheSize {
		t.Errorf("%d statements cached, limit %d", len(cc.stmts), stmtCacheSize)
	}
}

// A statement that fails (a constraint) leaves its cached statement
// usable, and an invalid path is a ConfigError.
func TestSQLiteDBErrors(t *testing.T) {
	ctx := context.Background()
	db := openCachedDB(t)
	db.SetMaxOpenConns(1)
	if _, err := db.ExecContext(ctx, `CREATE TABLE t (k integer PRIMARY KEY)`); err != nil {
		t.Fatal(err)
	}
	const ins = `INSERT INTO t (k) VALUES (?1)`
	if _, err := db.ExecContext(ctx, ins, 1); err != nil {
		t.Fatal(err)
	}
	if _, err := db.ExecContext(ctx, ins, 1); err == nil {
		t.Fatal("duplicate key accepted")
	}
	if _, err := db.ExecContext(ctx, ins, 2); err != nil {
		t.Fatalf("the cached statement after a failure: %v", err)
	}
	var n int
	if err := db.QueryRowContext(ctx, `SELECT count(*) FROM t`).Scan(&n); err != nil || n != 2 {
		t.Fatalf("%d rows, %v", n, err)
	}
	for _, p := range []string{"", ":memory:", "file:x.db"} {
		_, err := OpenSQLiteDB(p)
		var ce *mailsync.ConfigError
		if !errors.As(err, &ce) {
			t.Errorf("OpenSQLiteDB(%q): %v, want a ConfigError", p, err)
		}
	}
}

// Statements with a cancellable context start no goroutine in the driver
// (modernc.org/sqlite starts one per statement to interrupt it), and a
// context that ended before the statement still stops it: the end is
// checked first. A transaction still rolls back when its context ends.
func TestSQLiteDBStatementsStartNoGoroutine(t *testing.T) {
	db := openCachedDB(t)
	db.SetMaxOpenConns(1)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if _, err := db.ExecContext(ctx, `CREATE TABLE t (v INTEGER)`); err != nil {
		t.Fatal(err)
	}
	if _, err := db.ExecContext(ctx, `INSERT INTO t VALUES (1)`); err != nil { // prepared and cached
		t.Fatal(err)
	}
	const n = 50
	before := goroutinesStarted()
	for range n {
		if _, err := db.ExecContext(ctx, `INSERT INTO t VALUES (1)`); err != nil {
			t.Fatal(err)
		}
	}
	if started := goroutinesStarted() - before; started > n/10 {
		t.Errorf("%d statements started %d goroutines, want (about) none", n, started)
	}

	done, stop := context.WithCancel(context.Background())
	stop()
	if _, err := db.ExecContext(done, `INSERT INTO t VALUES (2)`); !errors.Is(err, context.Canceled) {
		t.Errorf("a statement on an ended context: %v, want context.Canceled", err)
	}

	txCtx, txCancel := context.WithCancel(context.Background())
	tx, err := db.BeginTx(txCtx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.ExecContext(txCtx, `INSERT INTO t VALUES (3)`); err != nil {
		t.Fatal(err)
	}
	txCancel()
	if err := tx.Commit(); !errors.Is(err, sql.ErrTxDone) && !errors.Is(err, context.Canceled) {
		t.Errorf("commit after the context ended: %v, want the transaction rolled back", err)
	}
	var twos, threes int
	if err := db.QueryRow(`SELECT count(*) FILTER (WHERE v = 2), count(*) FILTER (WHERE v = 3) FROM t`).Scan(&twos, &threes); err != nil {
		t.Fatal(err)
	}
	if twos != 0 || threes != 0 {
		t.Errorf("%d rows of the canceled statement and %d of the canceled transaction stored, want none", twos, threes)
	}
}

// goroutinesStarted is the number of goroutines the process started so far.
func goroutinesStarted() uint64 {
	s := []metrics.Sample{{Name: "/sched/goroutines-created:goroutines"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}
