package fleet

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"sync"
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
//
// Two more tables, also created by Migrate, hold the push state
// (Health.Push, PushHealthStore), prefix + "fleet_push":
//
//	connection        text primary key
//	kind              text    -- "", "idle", "graph", "gmail"
//	active            integer -- 0 or 1
//	holder            text    -- the process holding the push
//	since             bigint
//	expires           bigint
//	last_notification bigint
//	last_error        text    -- scrubbed, at most MaxErrorLen bytes
//	last_error_at     bigint
//	updated           bigint
//
// and the marks of Trigger (TriggerStore), prefix + "fleet_trigger":
//
//	connection text primary key
//	run        text    -- the sync job's run last marked or ended
//	ended      integer -- 0 or 1
//	marked     integer -- 1: a Trigger came during the run
type SQLHealth struct {
	db       *sql.DB
	dialect  Dialect
	table    string
	push     string
	triggers string

	// The statements of every sync, built once (with $n placeholders on
	// PostgreSQL) rather than on every call.
	qInsert, qSelectForUpdate, qUpdate, qSwap, qGet, qMarkRun, qEndRun string
	qHealthTouch, qPushInsert, qPushSelect, qPushUpdate                string
	qSwapRead                                                          string // PostgreSQL only

	// known is, per connection, the row this store last wrote
	// (PostgreSQL only; see Update).
	knownMu sync.Mutex
	known   map[string]Health
}

// maxKnown bounds SQLHealth.known; beyond it, an entry is dropped for
// every one added.
const maxKnown = 1 << 16

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
	s := &SQLHealth{db: db, dialect: dialect, table: prefix + "fleet_health", push: prefix + "fleet_push", triggers: prefix + "fleet_trigger"}
	s.qInsert = s.q(`INSERT INTO ` + s.table + ` (connection) VALUES (?) ON CONFLICT (connection) DO NOTHING`)
	s.qGet = s.q(s.pushSelect() + ` WHERE h.connection = ?`)
	s.qSelectForUpdate = s.qGet
	if dialect == Postgres {
		s.qSelectForUpdate += ` FOR UPDATE OF h`
	}
	// The columns Update writes, in healthArgs's order.
	written := []string{"first_attempt", "last_attempt", "last_success", "caught_up_at", "consecutive_failures",
		"last_error_kind", "last_error", "last_error_at", "messages_synced", "quarantined", "oldest_unprocessed",
		"degraded", "needs_admin", "updated"}
	update := `UPDATE ` + s.table + ` SET ` + strings.Join(written, " = ?, ") + ` = ? WHERE connection = ?`
	s.qUpdate = s.q(update)
	// qSwap is qUpdate that only writes a row still holding the values it
	// was read with: a compare-and-set on every column Update writes.
	swap := update + ` AND ` + strings.Join(written, " = ? AND ") + ` = ?`
	s.qSwap = s.q(swap)
	if dialect == Postgres {
		// qSwap in a data-modifying WITH, answering whether it wrote and,
		// in the same statement, the row as it was (the snapshot both
		// parts see), with the push state beside it.
		s.qSwapRead = s.q(`WITH swapped AS (` + swap + ` RETURNING 1) ` +
			strings.Replace(s.pushSelect(), `SELECT `, `SELECT EXISTS (SELECT 1 FROM swapped), `, 1) + ` WHERE h.connection = ?`)
		s.known = map[string]Health{}
	}
	s.qHealthTouch = s.q(`UPDATE ` + s.table + ` SET updated = updated WHERE connection = ?`)
	s.qPushInsert = s.q(`INSERT INTO ` + s.push + ` (connection) VALUES (?) ON CONFLICT (connection) DO NOTHING`)
	s.qPushSelect = s.q(`SELECT ` + pushColumns + ` FROM ` + s.push + ` WHERE connection = ?`)
	s.qPushUpdate = s.q(`UPDATE ` + s.push + ` SET kind = ?, active = ?, holder = ?, since = ?, expires = ?,
	last_notification = ?, last_error = ?, last_error_at = ?, updated = ? WHERE connection = ?`)
	if dialect == Postgres {
		s.qPushSelect += ` FOR UPDATE`
	}
	s.qMarkRun = s.q(`INSERT INTO ` + s.triggers + ` AS t (connection, run, ended, marked) VALUES (?, ?, 0, 1)
	ON CONFLICT (connection) DO UPDATE SET run = excluded.run, ended = 0, marked = 1
	WHERE t.run <> excluded.run OR t.ended = 0`)
	s.qEndRun = s.q(`INSERT INTO ` + s.triggers + ` AS t (connection, run, ended, marked) VALUES (?, ?, 1, 0)
	ON CONFLICT (connection) DO UPDATE SET marked = CASE WHEN t.run = excluded.run THEN t.marked ELSE 0 END,
	run = excluded.run, ended = 1
	RETURNING marked`)
	return s, nil
}

// Table returns the table's name.
func (s *SQLHealth) Table() string { return s.table }

// Migrate creates the tables that do not exist: the health table and,
// since push was added, the push and trigger tables beside it (an
// existing health table is left as it is, so a database made by an older
// version gains the two new tables and keeps its rows).
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
	push := `CREATE TABLE IF NOT EXISTS ` + s.push + ` (
	connection text PRIMARY KEY,
	kind text NOT NULL DEFAULT '',
	active integer NOT NULL DEFAULT 0,
	holder text NOT NULL DEFAULT '',
	since bigint NOT NULL DEFAULT 0,
	expires bigint NOT NULL DEFAULT 0,
	last_notification bigint NOT NULL DEFAULT 0,
	last_error text NOT NULL DEFAULT '',
	last_error_at bigint NOT NULL DEFAULT 0,
	updated bigint NOT NULL DEFAULT 0
)`
	if _, err := s.db.ExecContext(ctx, push); err != nil {
		return fmt.Errorf("mailsync/fleet: creating %s: %w", s.push, err)
	}
	trig := `CREATE TABLE IF NOT EXISTS ` + s.triggers + ` (
	connection text PRIMARY KEY,
	run text NOT NULL,
	ended integer NOT NULL DEFAULT 0,
	marked integer NOT NULL DEFAULT 0
)`
	if _, err := s.db.ExecContext(ctx, trig); err != nil {
		return fmt.Errorf("mailsync/fleet: creating %s: %w", s.triggers, err)
	}
	return nil
}

// PushTable returns the push table's name.
func (s *SQLHealth) PushTable() string { return s.push }

// TriggerTable returns the trigger marks table's name.
func (s *SQLHealth) TriggerTable() string { return s.triggers }

const pushColumns = `kind, active, holder, since, expires, last_notification, last_error, last_error_at, updated`

// pushSelect is the health columns and the push columns (COALESCEd, for a
// connection without a push row) of the health table h left-joined with the
// push table p.
func (s *SQLHealth) pushSelect() string {
	cols := strings.Split(strings.ReplaceAll(healthColumns, "\n\t", ""), ",")
	for i, c := range cols {
		cols[i] = "h." + strings.TrimSpace(c)
	}
	return `SELECT ` + strings.Join(cols, ", ") + `, COALESCE(p.kind, ''), COALESCE(p.active, 0), COALESCE(p.holder, ''),
	COALESCE(p.since, 0), COALESCE(p.expires, 0), COALESCE(p.last_notification, 0), COALESCE(p.last_error, ''),
	COALESCE(p.last_error_at, 0), COALESCE(p.updated, 0)
	FROM ` + s.table + ` h LEFT JOIN ` + s.push + ` p ON p.connection = h.connection`
}

// pushDest returns the scan destinations of the push columns, and a
// function that fills p from them.
func pushDest(p *PushHealth) ([]any, func()) {
	var (
		kind                             string
		active                           int64
		since, expires, last, errAt, upd int64
	)
	dest := []any{&kind, &active, &p.Holder, &since, &expires, &last, &p.LastError, &errAt, &upd}
	return dest, func() {
		p.Kind, p.Active = PushKind(kind), active != 0
		p.Since, p.Expires, p.LastNotification = fromMillis(since), fromMillis(expires), fromMillis(last)
		p.LastErrorAt, p.Updated = fromMillis(errAt), fromMillis(upd)
	}
}

// scanHealthPush scans a row of pushSelect, after the columns lead that
// come first.
func scanHealthPush(r rowScanner, lead ...any) (Health, error) {
	var h Health
	var p PushHealth
	pd, fill := pushDest(&p)
	hd, hfill := healthDest(&h)
	if err := r.Scan(append(append(lead, hd...), pd...)...); err != nil {
		return Health{}, err
	}
	hfill()
	fill()
	h.Push = p
	return h, nil
}

// UpdatePush implements PushHealthStore in one transaction; it also makes
// the connection's health row, so List shows a connection pushed but
// never synced.
func (s *SQLHealth) UpdatePush(ctx context.Context, connection string, fn func(*PushHealth)) error {
	return s.updatePush(ctx, connection, fn, true)
}

// updateExistingPush implements existingPushUpdater: UpdatePush of a
// connection that has a health row, and nothing otherwise.
func (s *SQLHealth) updateExistingPush(ctx context.Context, connection string, fn func(*PushHealth)) error {
	return s.updatePush(ctx, connection, fn, false)
}

// updatePush is UpdatePush; without create it leaves a connection without
// a health row (never seen, or deleted) alone.
func (s *SQLHealth) updatePush(ctx context.Context, connection string, fn func(*PushHealth), create bool) error {
	return s.inTx(ctx, "push health", func(tx *sql.Tx) error {
		if create {
			if _, err := tx.ExecContext(ctx, s.qInsert, connection); err != nil {
				return err
			}
		} else {
			// A write first, as the insert above: it takes SQLite's write
			// lock at once (a read first would fail to upgrade when another
			// connection wrote meanwhile) and locks the row in PostgreSQL
			// against Delete; it changes nothing.
			res, err := tx.ExecContext(ctx, s.qHealthTouch, connection)
			if err != nil {
				return err
			}
			if n, err := res.RowsAffected(); err != nil || n == 0 {
				return err // no health row: nothing to record
			}
		}
		if _, err := tx.ExecContext(ctx, s.qPushInsert, connection); err != nil {
			return err
		}
		var p PushHealth
		dest, fill := pushDest(&p)
		if err := tx.QueryRowContext(ctx, s.qPushSelect, connection).Scan(dest...); err != nil {
			return err
		}
		fill()
		fn(&p)
		p.LastError = truncateUTF8(p.LastError, MaxErrorLen)
		_, err := tx.ExecContext(ctx, s.qPushUpdate,
			string(p.Kind), boolInt(p.Active), p.Holder, millis(p.Since), millis(p.Expires), millis(p.LastNotification),
			p.LastError, millis(p.LastErrorAt), millis(p.Updated), connection)
		return err
	})
}

// inTx runs fn in a transaction, committed when fn returns nil and rolled
// back otherwise; an error names what.
func (s *SQLHealth) inTx(ctx context.Context, what string, fn func(tx *sql.Tx) error) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err == nil {
		if err = fn(tx); err == nil {
			err = tx.Commit()
		} else {
			_ = tx.Rollback()
		}
	}
	if err != nil {
		return fmt.Errorf("mailsync/fleet: %s: %w", what, err)
	}
	return nil
}

// MarkRun implements TriggerStore with one upsert: it marks run unless the
// row says run has ended. The upsert and EndRun's are serialised by the
// row's lock (PostgreSQL) or the database's (SQLite): a mark lands before
// the run's end, and EndRun sees it, or after, and MarkRun reports
// RunEnded.
func (s *SQLHealth) MarkRun(ctx context.Context, connection, run string) (RunMark, error) {
	res, err := s.db.ExecContext(ctx, s.qMarkRun, connection, run)
	if err != nil {
		return RunMarked, fmt.Errorf("mailsync/fleet: trigger marks: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return RunMarked, fmt.Errorf("mailsync/fleet: trigger marks: %w", err)
	}
	if n == 0 {
		return RunEnded, nil
	}
	return RunMarked, nil
}

// EndRun implements TriggerStore with one upsert that records the end of
// run and returns its mark (a mark of another run does not count).
func (s *SQLHealth) EndRun(ctx context.Context, connection, run string) (bool, error) {
	var marked int64
	err := s.db.QueryRowContext(ctx, s.qEndRun, connection, run).Scan(&marked)
	if err != nil {
		return false, fmt.Errorf("mailsync/fleet: trigger marks: %w", err)
	}
	return marked != 0, nil
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

// healthDest returns the scan destinations of healthColumns, and a
// function that fills h from them.
func healthDest(h *Health) ([]any, func()) {
	var (
		first, last, success, caught, errAt, upd int64
		oldest                                   int64
		degraded, admin                          int64
		kind                                     string
	)
	dest := []any{&h.Connection, &first, &last, &success, &caught, &h.ConsecutiveFailures,
		&kind, &h.LastError, &errAt, &h.MessagesSynced, &h.Quarantined, &oldest, &degraded, &admin, &upd}
	return dest, func() {
		h.FirstAttempt, h.LastAttempt, h.LastSuccess = fromMillis(first), fromMillis(last), fromMillis(success)
		h.CaughtUpAt, h.LastErrorAt, h.Updated = fromMillis(caught), fromMillis(errAt), fromMillis(upd)
		h.LastErrorKind = ErrorKind(kind)
		h.OldestUnprocessed = time.Duration(oldest) * time.Millisecond
		h.Degraded, h.NeedsAdmin = degraded != 0, admin != 0
	}
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

// Update implements HealthStore. It first reads the row and writes fn's
// result back with a compare-and-set UPDATE that only matches the row as
// it was read: two statements and no transaction, which succeeds unless
// another process changed the row in between. Otherwise, and for a
// connection without a row, it runs one transaction that inserts the row
// if missing (taking the write lock in SQLite), locks it (FOR UPDATE in
// PostgreSQL), applies fn again and writes it back. before and after
// carry the push state (Health.Push), which fn cannot change (UpdatePush
// does).
//
// On PostgreSQL, where every statement is a round trip, it remembers the
// row it last wrote for each connection and first writes fn's result
// with the compare-and-set against that row, in one statement that also
// returns the row as it was: one round trip when no other process wrote
// the row since, and when one did, the returned row takes the read's place
// (two round trips, as without the memory).
func (s *SQLHealth) Update(ctx context.Context, connection string, fn func(*Health)) (before, after Health, err error) {
	var done bool
	if k, ok := s.knownRow(connection); ok {
		before, after, done, err = s.swapKnown(ctx, connection, k, fn)
	} else {
		before, after, done, err = s.swap(ctx, connection, fn)
	}
	if err == nil && !done {
		before, after, err = s.updateLocked(ctx, connection, fn)
		done = err == nil
	}
	if done {
		s.remember(connection, after)
	} else {
		s.forget(connection)
	}
	return before, after, err
}

// knownRow is the row remembered for connection, if any.
func (s *SQLHealth) knownRow(connection string) (Health, bool) {
	if s.known == nil {
		return Health{}, false
	}
	s.knownMu.Lock()
	defer s.knownMu.Unlock()
	h, ok := s.known[connection]
	return h, ok
}

// remember keeps h as connection's row (PostgreSQL only).
func (s *SQLHealth) remember(connection string, h Health) {
	if s.known == nil {
		return
	}
	s.knownMu.Lock()
	defer s.knownMu.Unlock()
	if _, ok := s.known[connection]; !ok && len(s.known) >= maxKnown {
		for c := range s.known { // drop one, the map's pick
			delete(s.known, c)
			break
		}
	}
	s.known[connection] = h
}

// forget drops connection's remembered row.
func (s *SQLHealth) forget(connection string) {
	if s.known == nil {
		return
	}
	s.knownMu.Lock()
	defer s.knownMu.Unlock()
	delete(s.known, connection)
}

// swapKnown is swap with the remembered row k in place of the read: one
// statement writes fn's result if the row still holds k and returns the
// row as it was. If another process wrote the row since, it applies fn to
// the returned row and swaps once more. done is false when there is no
// row or the second swap failed too.
func (s *SQLHealth) swapKnown(ctx context.Context, connection string, k Health, fn func(*Health)) (before, after Health, done bool, err error) {
	after = s.apply(k, connection, fn)
	args := append(healthArgs(after), connection)
	args = append(args, healthArgs(k)...)
	args = append(args, connection)
	var swapped bool
	h, err := scanHealthPush(s.db.QueryRowContext(ctx, s.qSwapRead, args...), &swapped)
	if errors.Is(err, sql.ErrNoRows) {
		return Health{}, Health{}, false, nil
	}
	if err != nil {
		return Health{}, Health{}, false, fmt.Errorf("mailsync/fleet: health: %w", err)
	}
	if swapped {
		after.Push = h.Push
		return h, after, true, nil
	}
	return s.swapRead(ctx, connection, h, fn)
}

// swap is Update's optimistic path: it reads the row without a lock,
// applies fn and writes the result only if the row still holds what was
// read. done is false when there is no row or the row changed meanwhile.
func (s *SQLHealth) swap(ctx context.Context, connection string, fn func(*Health)) (before, after Health, done bool, err error) {
	before, err = scanHealthPush(s.db.QueryRowContext(ctx, s.qGet, connection))
	if errors.Is(err, sql.ErrNoRows) {
		return Health{}, Health{}, false, nil
	}
	if err != nil {
		return Health{}, Health{}, false, fmt.Errorf("mailsync/fleet: health: %w", err)
	}
	return s.swapRead(ctx, connection, before, fn)
}

// swapRead writes fn applied to before, the row as read, if the row still
// holds it.
func (s *SQLHealth) swapRead(ctx context.Context, connection string, before Health, fn func(*Health)) (_, after Health, done bool, err error) {
	after = s.apply(before, connection, fn)
	args := append(healthArgs(after), connection)
	args = append(args, healthArgs(before)...)
	res, err := s.db.ExecContext(ctx, s.qSwap, args...)
	if err != nil {
		return Health{}, Health{}, false, fmt.Errorf("mailsync/fleet: health: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return Health{}, Health{}, false, fmt.Errorf("mailsync/fleet: health: %w", err)
	}
	return before, after, n == 1, nil
}

// apply returns fn applied to a copy of before, with the fields fn may not
// change restored.
func (s *SQLHealth) apply(before Health, connection string, fn func(*Health)) Health {
	after := before
	fn(&after)
	after.Connection = connection
	after.Push = before.Push // UpdatePush's
	if len(after.LastError) > MaxErrorLen {
		after.LastError = truncateUTF8(after.LastError, MaxErrorLen)
	}
	return after
}

// healthArgs are h's values of the columns Update writes, in qUpdate's
// order, as stored.
func healthArgs(h Health) []any {
	return []any{millis(h.FirstAttempt), millis(h.LastAttempt), millis(h.LastSuccess), millis(h.CaughtUpAt),
		h.ConsecutiveFailures, string(h.LastErrorKind), h.LastError, millis(h.LastErrorAt),
		h.MessagesSynced, h.Quarantined, h.OldestUnprocessed.Milliseconds(),
		boolInt(h.Degraded), boolInt(h.NeedsAdmin), millis(h.Updated)}
}

// updateLocked is Update in one transaction that holds the row's lock.
func (s *SQLHealth) updateLocked(ctx context.Context, connection string, fn func(*Health)) (before, after Health, err error) {
	err = s.inTx(ctx, "health", func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, s.qInsert, connection); err != nil {
			return err
		}
		b, err := scanHealthPush(tx.QueryRowContext(ctx, s.qSelectForUpdate, connection))
		if err != nil {
			return err
		}
		a := s.apply(b, connection, fn)
		if _, err := tx.ExecContext(ctx, s.qUpdate, append(healthArgs(a), connection)...); err != nil {
			return err
		}
		before, after = b, a
		return nil
	})
	if err != nil {
		return Health{}, Health{}, err
	}
	return before, after, nil
}

// Get implements HealthStore.
func (s *SQLHealth) Get(ctx context.Context, connection string) (Health, bool, error) {
	h, err := scanHealthPush(s.db.QueryRowContext(ctx, s.qGet, connection))
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
	rows, err := s.db.QueryContext(ctx, s.pushSelect()+` ORDER BY h.connection`)
	if err != nil {
		return nil, fmt.Errorf("mailsync/fleet: health: %w", err)
	}
	defer rows.Close()
	var out []Health
	for rows.Next() {
		h, err := scanHealthPush(rows)
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

// Delete implements HealthStore: it forgets the connection's health, push
// state and trigger mark.
func (s *SQLHealth) Delete(ctx context.Context, connection string) error {
	defer s.forget(connection)
	return s.inTx(ctx, "health", func(tx *sql.Tx) error {
		for _, t := range []string{s.table, s.push, s.triggers} {
			if _, err := tx.ExecContext(ctx, s.q(`DELETE FROM `+t+` WHERE connection = ?`), connection); err != nil {
				return err
			}
		}
		return nil
	})
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
