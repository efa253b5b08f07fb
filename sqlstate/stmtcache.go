package sqlstate

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"net/url"
	"reflect"

	"github.com/mailsync/mailsync"
)

// stmtCacheSize bounds the prepared statements a connection keeps: the
// state's, the fleet's health and River's statements are a few dozen.
const stmtCacheSize = 128

// OpenSQLiteDB opens the SQLite file at path (created if missing) with the
// connection settings of OpenSQLite — WAL journal, synchronous NORMAL, a
// 10 s busy timeout — and a cache of prepared statements on every
// connection: a statement run through ExecContext or QueryContext (the
// *sql.DB's, a *sql.Tx's or a *sql.Conn's) is parsed once per connection
// and reused, where modernc.org/sqlite alone parses it again on every call.
// SQLite re-prepares a cached statement by itself when the schema changes
// (a migration); the statements are finalized when their connection
// closes. An invalid path gives a *mailsync.ConfigError. The caller sets
// the pool's limits (SetMaxOpenConns); use it for River's riversqlite
// driver (one connection) on the state's file, so that River's statements
// are cached too. It is what OpenSQLite uses.
//
// A statement's context is checked before it runs, and a statement that
// began runs to its end: modernc.org/sqlite would interrupt it when its
// context ends, at the cost of a goroutine per statement (a third of what
// a fleet started per sync). The statements of the state, the fleet and
// River take microseconds to milliseconds; a wait for another
// connection's lock ends after the busy timeout; a transaction is still
// rolled back when its context ends (database/sql does that).
//
// The connections are modernc.org/sqlite's behind a wrapper: (*sql.Conn).Raw
// hands out the wrapper, not the driver's own connection.
func OpenSQLiteDB(path string) (*sql.DB, error) {
	dsn, err := sqliteDSN(path)
	if err != nil {
		return nil, err
	}
	return sql.OpenDB(&cachingConnector{dsn: dsn, drv: sqliteDriver()}), nil
}

// sqliteDriver is the driver modernc.org/sqlite registers as "sqlite"
// (the functions and hooks registered on it apply).
func sqliteDriver() driver.Driver {
	db, _ := sql.Open("sqlite", "") // connects to nothing
	defer db.Close()
	return db.Driver()
}

// sqliteDSN is the modernc.org/sqlite DSN of OpenSQLite for path.
func sqliteDSN(path string) (string, error) {
	if path == "" || path == ":memory:" || len(path) >= 5 && path[:5] == "file:" {
		return "", mailsync.NewConfigError(mailsync.Problem{Field: "sqlstate.path", Code: mailsync.CodeInvalid, Message: "must be a file path (not empty, :memory: or a file: URI)"})
	}
	q := url.Values{}
	q.Add("_pragma", "busy_timeout(10000)")
	q.Add("_pragma", "journal_mode(WAL)")
	q.Add("_pragma", "synchronous(NORMAL)")
	return "file:" + (&url.URL{Path: path}).EscapedPath() + "?" + q.Encode(), nil
}

// cachingConnector opens modernc.org/sqlite connections wrapped in a
// statement cache.
type cachingConnector struct {
	dsn string
	drv driver.Driver
}

func (c *cachingConnector) Connect(ctx context.Context) (driver.Conn, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	conn, err := c.drv.Open(c.dsn)
	if err != nil {
		return nil, err
	}
	return newCachingConn(conn)
}

func (c *cachingConnector) Driver() driver.Driver { return c.drv }

// innerConn is what modernc.org/sqlite's connection implements.
type innerConn interface {
	driver.Conn
	driver.ConnBeginTx
	driver.ConnPrepareContext
	driver.ExecerContext
	driver.QueryerContext
}

// cachingConn is a connection whose ExecContext and QueryContext run
// statements prepared once. database/sql uses a connection from one
// goroutine at a time; a statement whose rows are still open (a query run
// again inside the loop over its own rows) is run unprepared.
type cachingConn struct {
	innerConn
	stmts map[string]*cachedStmt

	// prepares counts the statements prepared for the cache (tests).
	prepares int
}

type cachedStmt struct {
	st interface {
		driver.Stmt
		driver.StmtExecContext
		driver.StmtQueryContext
	}
	busy bool // its rows are open
}

func newCachingConn(conn driver.Conn) (driver.Conn, error) {
	ic, ok := conn.(innerConn)
	if !ok {
		conn.Close()
		return nil, fmt.Errorf("sqlstate: the SQLite driver's connection (%T) lacks a context method", conn)
	}
	return &cachingConn{innerConn: ic, stmts: map[string]*cachedStmt{}}, nil
}

// stmt returns query's cached statement, preparing it if needed, or nil
// when it cannot be used now: its rows are open, or the driver's statement
// lacks the context methods. (A script of several statements is cached
// too; modernc.org/sqlite parses its statements on every run.)
func (c *cachingConn) stmt(ctx context.Context, query string) (*cachedStmt, error) {
	if s, ok := c.stmts[query]; ok {
		if s.busy {
			return nil, nil
		}
		return s, nil
	}
	ds, err := c.innerConn.PrepareContext(ctx, query)
	if err != nil {
		return nil, err
	}
	st, ok := ds.(interface {
		driver.Stmt
		driver.StmtExecContext
		driver.StmtQueryContext
	})
	if !ok {
		ds.Close()
		return nil, nil
	}
	if len(c.stmts) >= stmtCacheSize {
		for q, old := range c.stmts {
			if !old.busy {
				old.st.Close()
				delete(c.stmts, q)
				break
			}
		}
	}
	c.prepares++
	s := &cachedStmt{st: st}
	c.stmts[query] = s
	return s, nil
}

// uninterrupted is ctx for modernc.org/sqlite without its end, which the
// driver would watch with a goroutine per statement; an ended ctx is an
// error at once. See OpenSQLiteDB.
func uninterrupted(ctx context.Context) (context.Context, error) {
	if ctx.Done() == nil {
		return ctx, nil
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return context.WithoutCancel(ctx), nil
}

func (c *cachingConn) ExecContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Result, error) {
	ctx, err := uninterrupted(ctx)
	if err != nil {
		return nil, err
	}
	s, err := c.stmt(ctx, query)
	if err != nil {
		return nil, err
	}
	if s == nil {
		return c.innerConn.ExecContext(ctx, query, args)
	}
	return s.st.ExecContext(ctx, args)
}

func (c *cachingConn) QueryContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Rows, error) {
	ctx, err := uninterrupted(ctx)
	if err != nil {
		return nil, err
	}
	s, err := c.stmt(ctx, query)
	if err != nil {
		return nil, err
	}
	if s == nil {
		return c.innerConn.QueryContext(ctx, query, args)
	}
	rows, err := s.st.QueryContext(ctx, args)
	if err != nil {
		return nil, err
	}
	s.busy = true
	return &cachedRows{Rows: rows, s: s}, nil
}

// BeginTx begins a transaction uninterrupted (see uninterrupted):
// database/sql still rolls it back when ctx ends.
func (c *cachingConn) BeginTx(ctx context.Context, opts driver.TxOptions) (driver.Tx, error) {
	ctx, err := uninterrupted(ctx)
	if err != nil {
		return nil, err
	}
	return c.innerConn.BeginTx(ctx, opts)
}

// Close finalizes the cached statements, then closes the connection.
func (c *cachingConn) Close() error {
	var errs []error
	for q, s := range c.stmts {
		errs = append(errs, s.st.Close())
		delete(c.stmts, q)
	}
	errs = append(errs, c.innerConn.Close())
	return errors.Join(errs...)
}

// The optional interfaces of modernc.org/sqlite's connection that
// database/sql looks for.

func (c *cachingConn) Ping(ctx context.Context) error {
	if p, ok := c.innerConn.(driver.Pinger); ok {
		return p.Ping(ctx)
	}
	return nil
}

func (c *cachingConn) ResetSession(ctx context.Context) error {
	if r, ok := c.innerConn.(driver.SessionResetter); ok {
		return r.ResetSession(ctx)
	}
	return nil
}

func (c *cachingConn) IsValid() bool {
	if v, ok := c.innerConn.(driver.Validator); ok {
		return v.IsValid()
	}
	return true
}

// cachedRows frees its statement for the next call when closed.
type cachedRows struct {
	driver.Rows
	s *cachedStmt
}

func (r *cachedRows) Close() error {
	err := r.Rows.Close()
	r.s.busy = false
	return err
}

// The optional row interfaces of modernc.org/sqlite's rows (column types).

func (r *cachedRows) ColumnTypeDatabaseTypeName(i int) string {
	if t, ok := r.Rows.(driver.RowsColumnTypeDatabaseTypeName); ok {
		return t.ColumnTypeDatabaseTypeName(i)
	}
	return ""
}

func (r *cachedRows) ColumnTypeLength(i int) (int64, bool) {
	if t, ok := r.Rows.(driver.RowsColumnTypeLength); ok {
		return t.ColumnTypeLength(i)
	}
	return 0, false
}

func (r *cachedRows) ColumnTypeNullable(i int) (nullable, ok bool) {
	if t, ok := r.Rows.(driver.RowsColumnTypeNullable); ok {
		return t.ColumnTypeNullable(i)
	}
	return false, false
}

func (r *cachedRows) ColumnTypePrecisionScale(i int) (precision, scale int64, ok bool) {
	if t, ok := r.Rows.(driver.RowsColumnTypePrecisionScale); ok {
		return t.ColumnTypePrecisionScale(i)
	}
	return 0, 0, false
}

func (r *cachedRows) ColumnTypeScanType(i int) reflect.Type {
	if t, ok := r.Rows.(driver.RowsColumnTypeScanType); ok {
		return t.ColumnTypeScanType(i)
	}
	return reflect.TypeFor[any]()
}
