package sqlstate

import "strings"

// queries are the statements of one dialect, with the table prefix
// applied.
type queries struct {
	cursor, processed, countDone, allDone, threads       string
	addThreads, addDone, resetFailures, setCursor, fence string
	pruneDone, pruneFailures, countFailure               string
	acquire, holder, renew, release                      string
	acquireCursor                                        string // acquire, returning the cursor too
}

// tablePrefix is what goes before a table's own name: the (quoted)
// schema, a dot, and the prefix.
func tablePrefix(o Options) string {
	if o.Schema != "" {
		return `"` + o.Schema + `".` + o.Prefix
	}
	return o.Prefix
}

// Lists of keys reach a statement as one JSON text parameter: an array of
// strings (keys) or an object (key to ticket). PostgreSQL takes the
// parameter as text and casts it, so any driver that sends strings works.
var postgresQueries = queries{
	cursor:        `SELECT cursor_text FROM {{T}}cursors WHERE conn = $1`,
	processed:     `SELECT msg_key FROM {{T}}done WHERE conn = $1 AND msg_key IN (SELECT value FROM json_array_elements_text($2::text::json))`,
	countDone:     `SELECT count(*) FROM {{T}}done WHERE conn = $1`,
	allDone:       `SELECT msg_key FROM {{T}}done WHERE conn = $1`,
	threads:       `SELECT message_id, ticket FROM {{T}}threads WHERE message_id IN (SELECT value FROM json_array_elements_text($1::text::json))`,
	addThreads:    `INSERT INTO {{T}}threads (message_id, ticket) SELECT key, value FROM json_each_text($1::text::json) ON CONFLICT (message_id) DO NOTHING`,
	addDone:       `INSERT INTO {{T}}done (conn, msg_key, ticket) SELECT $1::text, key, value FROM json_each_text($2::text::json) ON CONFLICT (conn, msg_key) DO UPDATE SET ticket = excluded.ticket`,
	resetFailures: `DELETE FROM {{T}}failures WHERE conn = $1 AND msg_key IN (SELECT key FROM json_each_text($2::text::json))`,
	setCursor:     `INSERT INTO {{T}}cursors (conn, cursor_text) VALUES ($1, $2) ON CONFLICT (conn) DO UPDATE SET cursor_text = excluded.cursor_text`,
	// FOR SHARE holds the lease row until commit: AcquireLease's upsert
	// waits for this transaction, so the lease cannot change hands between
	// the check and the write.
	fence:         `SELECT token = $2::bigint AND expires > now() FROM {{T}}leases WHERE conn = $1 FOR SHARE`,
	pruneDone:     `DELETE FROM {{T}}done d WHERE d.conn = $1 AND NOT EXISTS (SELECT 1 FROM json_array_elements_text($2::text::json) p WHERE p.value = d.msg_key)`,
	pruneFailures: `DELETE FROM {{T}}failures f WHERE f.conn = $1 AND NOT EXISTS (SELECT 1 FROM json_array_elements_text($2::text::json) p WHERE p.value = f.msg_key)`,
	countFailure:  `INSERT INTO {{T}}failures AS f (conn, msg_key, attempts) VALUES ($1, $2, 1) ON CONFLICT (conn, msg_key) DO UPDATE SET attempts = f.attempts + 1 RETURNING attempts`,
	acquire: `INSERT INTO {{T}}leases AS l (conn, holder, token, expires) VALUES ($1, $2, 1, now() + make_interval(secs => $3::float8))
		ON CONFLICT (conn) DO UPDATE SET holder = excluded.holder, token = l.token + 1, expires = excluded.expires WHERE l.expires <= now()
		RETURNING token, expires`,
	holder:  `SELECT holder, expires FROM {{T}}leases WHERE conn = $1`,
	renew:   `UPDATE {{T}}leases SET expires = now() + make_interval(secs => $3::float8) WHERE conn = $1 AND token = $2::bigint AND expires > now() RETURNING holder, expires`,
	release: `UPDATE {{T}}leases SET expires = to_timestamp(0) WHERE conn = $1 AND token = $2::bigint`,
}

// A join of a table with json_each must stay an IN (SELECT ...) on
// SQLite: SQLite materialises the subquery once, while a plain JOIN may
// rescan json_each for every row (quadratic; it hung on 100k keys).
//
// SQLite runs every writing statement inside BEGIN IMMEDIATE (see
// State.inTx); lease times are Unix milliseconds passed by the process.
var sqliteQueries = queries{
	cursor:        `SELECT cursor_text FROM {{T}}cursors WHERE conn = ?1`,
	processed:     `SELECT msg_key FROM {{T}}done WHERE conn = ?1 AND msg_key IN (SELECT value FROM json_each(?2))`,
	countDone:     `SELECT count(*) FROM {{T}}done WHERE conn = ?1`,
	allDone:       `SELECT msg_key FROM {{T}}done WHERE conn = ?1`,
	threads:       `SELECT message_id, ticket FROM {{T}}threads WHERE message_id IN (SELECT value FROM json_each(?1))`,
	addThreads:    `INSERT INTO {{T}}threads (message_id, ticket) SELECT key, value FROM json_each(?1) WHERE true ON CONFLICT (message_id) DO NOTHING`,
	addDone:       `INSERT INTO {{T}}done (conn, msg_key, ticket) SELECT ?1, key, value FROM json_each(?2) WHERE true ON CONFLICT (conn, msg_key) DO UPDATE SET ticket = excluded.ticket`,
	resetFailures: `DELETE FROM {{T}}failures WHERE conn = ?1 AND msg_key IN (SELECT key FROM json_each(?2))`,
	setCursor:     `INSERT INTO {{T}}cursors (conn, cursor_text) VALUES (?1, ?2) ON CONFLICT (conn) DO UPDATE SET cursor_text = excluded.cursor_text`,
	fence:         `SELECT token = ?2 AND expires_ms > ?3 FROM {{T}}leases WHERE conn = ?1`,
	pruneDone:     `DELETE FROM {{T}}done WHERE conn = ?1 AND msg_key NOT IN (SELECT value FROM json_each(?2))`,
	pruneFailures: `DELETE FROM {{T}}failures WHERE conn = ?1 AND msg_key NOT IN (SELECT value FROM json_each(?2))`,
	countFailure:  `INSERT INTO {{T}}failures AS f (conn, msg_key, attempts) VALUES (?1, ?2, 1) ON CONFLICT (conn, msg_key) DO UPDATE SET attempts = f.attempts + 1 RETURNING attempts`,
	acquire: `INSERT INTO {{T}}leases AS l (conn, holder, token, expires_ms) VALUES (?1, ?2, 1, ?3)
		ON CONFLICT (conn) DO UPDATE SET holder = excluded.holder, token = l.token + 1, expires_ms = excluded.expires_ms WHERE l.expires_ms <= ?4
		RETURNING token, expires_ms`,
	holder:  `SELECT holder, expires_ms FROM {{T}}leases WHERE conn = ?1`,
	renew:   `UPDATE {{T}}leases SET expires_ms = ?3 WHERE conn = ?1 AND token = ?2 AND expires_ms > ?4 RETURNING holder, expires_ms`,
	release: `UPDATE {{T}}leases SET expires_ms = 0 WHERE conn = ?1 AND token = ?2`,
}

func newQueries(o Options) queries {
	q := sqliteQueries
	if o.Dialect == Postgres {
		q = postgresQueries
	}
	// The cursor comes in the same statement: the cursor query (on the
	// same first parameter, the connection) as a scalar subquery in
	// RETURNING, which both dialects allow; NULL when there is none.
	q.acquireCursor = q.acquire + `, (` + q.cursor + `)`
	r := strings.NewReplacer("{{T}}", tablePrefix(o))
	for _, p := range []*string{&q.cursor, &q.processed, &q.countDone, &q.allDone, &q.threads, &q.addThreads, &q.addDone, &q.resetFailures,
		&q.setCursor, &q.fence, &q.pruneDone, &q.pruneFailures, &q.countFailure, &q.acquire, &q.holder, &q.renew, &q.release, &q.acquireCursor} {
		*p = r.Replace(*p)
	}
	return q
}
