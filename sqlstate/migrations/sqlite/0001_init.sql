-- Version 1: cursors, processed keys, threads, failure counts, leases.
-- {{T}} is the table prefix. Lease expiry is in Unix milliseconds of the
-- process clock (SQLite is the single-machine dialect).
CREATE TABLE {{T}}cursors (
	conn        TEXT PRIMARY KEY NOT NULL,
	cursor_text TEXT NOT NULL
);
CREATE TABLE {{T}}done (
	conn    TEXT NOT NULL,
	msg_key TEXT NOT NULL,
	ticket  TEXT NOT NULL,
	PRIMARY KEY (conn, msg_key)
) WITHOUT ROWID;
CREATE TABLE {{T}}threads (
	message_id TEXT PRIMARY KEY NOT NULL,
	ticket     TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE {{T}}failures (
	conn     TEXT NOT NULL,
	msg_key  TEXT NOT NULL,
	attempts INTEGER NOT NULL,
	PRIMARY KEY (conn, msg_key)
) WITHOUT ROWID;
CREATE TABLE {{T}}leases (
	conn       TEXT PRIMARY KEY NOT NULL,
	holder     TEXT NOT NULL,
	token      INTEGER NOT NULL,
	expires_ms INTEGER NOT NULL
) WITHOUT ROWID;
