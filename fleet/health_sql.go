package fleet

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Dialect is the SQL dialect of a database/sql handle.
type Dialect string

// The dialects SQLHealth speaks.
const (
	// Postgres is PostgreSQL, e.g. through github.com/jackc/pgx/v5/stdlib.
	Postgres Dialect = "postgres"
	// SQLite is SQLite 3.35 or later, e.g. through modernc.org/sqlite.
	SQLite Dialect = "sqlite"
)

// SQLHealth is a HealthStore in one table of a PostgreSQL or SQLite
// database, shared by every process of a fleet. The table is named
// prefix + "fleet_health" and created by Migrate:
//
//	connection           text primary key
//	first_attempt        bigint  -- times are Unix milliseconds, 0 = never
//	last_attempt         bigint
//	last_success         bigint
//	caught_up_at         bigint
//	consecutive_failures integer
//	last_error_kind      text
//	last_error           text    -- scrubbed, at most MaxErrorLen bytes
//	last_error_at        bigint
//	messages_synced      bigint
//	quarantined          bigint
//	oldest_unprocessed   bigint  -- milliseconds
//	degraded             integer -- 0 or 1
//	needs_admin          integer -- 0 or 1
//	updated              bigint
//
// Times are integers so that both dialects store and compare them the same
// way; in PostgreSQL, to_timestamp(last_attempt / 1000.0) shows one.
type SQLHealth struct {
	db      *sql.DB
	dialect Dialect
	table   string
}

var prefixRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// NewSQLHealth returns a HealthStore in db's table prefix+"fleet_health".
// prefix (e.g. "mailsync_") must be empty or a plain SQL identifier: letters,
// digits and underscores, not starting with a digit.
func NewSQLHealth(db *sql.DB, dialect Dialect, prefix string) (*SQLHealth, error) {
	if db == nil {
		return nil, errors.New("mailsync/fleet: NewSQLHealth: nil db")
	}
	if dialect != Postgres && dialect != SQLite {
		return nil, fmt.Errorf("mailsync/fleet: NewSQLHealth: unknown dialect %q", dialect)
	}
	if prefix != "" && !prefixRE.MatchString(prefix) {
		return nil, fmt.Errorf("mailsync/fleet: NewSQLHealth: table prefix %q is not a plain identifier", prefix)
	}
	return &SQLHealth{db: db, dialect: dialect, table: prefix + "fleet_health"}, nil
}

// Table returns the table's name.
func (s *SQLHealth) Table() string { return s.table }

// Migrate creates the table if it does not exist.
func (s *SQLHealth) Migrate(ctx context.Context) error {
	ddl := `CREATE TABLE IF NOT EXISTS ` + s.table + ` (
	connection text PRIMARY KEY,
	first_attempt bigint NOT NULL DEFAULT 0,
	last_attempt bigint NOT NULL DEFAULT 0,
	last_success bigint NOT NULL DEFAULT 0,
	caught_up_at bigint NOT NULL DEFAULT 0,
	consecutive_failures integer NOT NULL DEFAULT 0,
	last_error_kind text NOT NULL DEFAULT '',
	last_error text NOT NULL DEFAULT '',
	last_error_at bigint NOT NULL DEFAULT 0,
	messages_synced bigint NOT NULL DEFAULT 0,
	quarantined bigint NOT NULL DEFAULT 0,
	oldest_unprocessed bigint NOT NULL DEFAULT 0,
	degraded integer NOT NULL DEFAULT 0,
	needs_admin integer NOT NULL DEFAULT 0,
	updated bigint NOT NULL DEFAULT 0
)`
	if _, err := s.db.ExecContext(ctx, ddl); err != nil {
		return fmt.Errorf("mailsync/fleet: creating %s: %w", s.table, err)
	}
	return nil
}

const healthColumns = `connection, first_attempt, last_attempt, last_success, caught_up_at, consecutive_failures,
	last_error_kind, last_error, last_error_at, messages_synced, quarantined, oldest_unprocessed, degraded, needs_admin, updated`

// q rewrites ? placeholders to $n for PostgreSQL.
func (s *SQLHealth) q(query string) string {
	if s.dialect != Postgres {
		return query
	}
	var b strings.Builder
	n := 0
	for _, r := range query {
		if r == '?' {
			n++
			b.WriteString("$" + strconv.Itoa(n))
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}

type rowScanner interface{ Scan(dest ...any) error }

func scanHealth(r rowScanner) (Health, error) {
	var (
		h                                        Health
		first, last, success, caught, errAt, upd int64
		oldest                                   int64
		degraded, admin                          int64
		kind                                     string
	)
	err := r.Scan(&h.Connection, &first, &last, &success, &caught, &h.ConsecutiveFailures,
		&kind, &h.LastError, &errAt, &h.MessagesSynced, &h.Quarantined, &oldest, &degraded, &admin, &upd)
	if err != nil {
		return Health{}, err
	}
	h.FirstAttempt, h.LastAttempt, h.LastSuccess = fromMillis(first), fromMillis(last), fromMillis(success)
	h.CaughtUpAt, h.LastErrorAt, h.Updated = fromMillis(caught), fromMillis(errAt), fromMillis(upd)
	h.LastErrorKind = ErrorKind(kind)
	h.OldestUnprocessed = time.Duration(oldest) * time.Millisecond
	h.Degraded, h.NeedsAdmin = degraded != 0, admin != 0
	return h, nil
}

func millis(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMilli()
}

func fromMillis(ms int64) time.Time {
	if ms == 0 {
		return time.Time{}
	}
	return time.UnixMilli(ms)
}

func boolInt(b bool) int64 {
	if b {
		return 1
	}
	return 0
}

// Update implements HealthStore in one transaction: it inserts the row if
// missing (taking the write lock in SQLite), locks it (FOR UPDATE in
// PostgreSQL), applies fn and writes it back.
func (s *SQLHealth) Update(ctx context.Context, connection string, fn func(*Health)) (before, after Health, err error) {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return Health{}, Health{}, fmt.Errorf("mailsync/fleet: health: %w", err)
	}
	defer func() {
		if err != nil {
			_ = tx.Rollback()
		}
	}()
	if _, err = tx.ExecContext(ctx, s.q(`INSERT INTO `+s.table+` (connection) VALUES (?) ON CONFLICT (connection) DO NOTHING`), connection); err != nil {
		return Health{}, Health{}, fmt.Errorf("mailsync/fleet: health: %w", err)
	}
	sel := `SELECT ` + healthColumns + ` FROM ` + s.table + ` WHERE connection = ?`
	if s.dialect == Postgres {
		sel += ` FOR UPDATE`
	}
	before, err = scanHealth(tx.QueryRowContext(ctx, s.q(sel), connection))
	if err != nil {
		return Health{}, Health{}, fmt.Errorf("mailsync/fleet: health: %w", err)
	}
	after = before
	fn(&after)
	after.Connection = connection
	if len(after.LastError) > MaxErrorLen {
		after.LastError = truncateUTF8(after.LastError, MaxErrorLen)
	}
	_, err = tx.ExecContext(ctx, s.q(`UPDATE `+s.table+` SET first_attempt = ?, last_attempt = ?, last_success = ?,
	caught_up_at = ?, consecutive_failures = ?, last_error_kind = ?, last_error = ?, last_error_at = ?,
	messages_synced = ?, quarantined = ?, oldest_unprocessed = ?, degraded = ?, needs_admin = ?, updated = ?
	WHERE connection = ?`),
		millis(after.FirstAttempt), millis(after.LastAttempt), millis(after.LastSuccess), millis(after.CaughtUpAt),
		after.ConsecutiveFailures, string(after.LastErrorKind), after.LastError, millis(after.LastErrorAt),
		after.MessagesSynced, after.Quarantined, after.OldestUnprocessed.Milliseconds(),
		boolInt(after.Degraded), boolInt(after.NeedsAdmin), millis(after.Updated), connection)
	if err != nil {
		return Health{}, Health{}, fmt.Errorf("mailsync/fleet: health: %w", err)
	}
	if err = tx.Commit(); err != nil {
		return Health{}, Health{}, fmt.Errorf("mailsync/fleet: health: %w", err)
	}
	return before, after, nil
}

// Get implements HealthStore.
func (s *SQLHealth) Get(ctx context.Context, connection string) (Health, bool, error) {
	h, err := scanHealth(s.db.QueryRowContext(ctx, s.q(`SELECT `+healthColumns+` FROM `+s.table+` WHERE connection = ?`), connection))
	if errors.Is(err, sql.ErrNoRows) {
		return Health{}, false, nil
	}
	if err != nil {
		return Health{}, false, fmt.Errorf("mailsync/fleet: health: %w", err)
	}
	return h, true, nil
}

// List implements HealthStore.
func (s *SQLHealth) List(ctx context.Context) ([]Health, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT `+healthColumns+` FROM `+s.table+` ORDER BY connection`)
	if err != nil {
		return nil, fmt.Errorf("mailsync/fleet: health: %w", err)
	}
	defer rows.Close()
	var out []Health
	for rows.Next() {
		h, err := scanHealth(rows)
		if err != nil {
			return nil, fmt.Errorf("mailsync/fleet: health: %w", err)
		}
		out = append(out, h)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("mailsync/fleet: health: %w", err)
	}
	return out, nil
}

// Delete implements HealthStore.
func (s *SQLHealth) Delete(ctx context.Context, connection string) error {
	if _, err := s.db.ExecContext(ctx, s.q(`DELETE FROM `+s.table+` WHERE connection = ?`), connection); err != nil {
		return fmt.Errorf("mailsync/fleet: health: %w", err)
	}
	return nil
}

// truncateUTF8 cuts s to at most n bytes without splitting a rune.
func truncateUTF8(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && n < len(s) && s[n]&0xC0 == 0x80 {
		n--
	}
	return s[:n]
}
