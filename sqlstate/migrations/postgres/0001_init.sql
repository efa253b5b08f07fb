-- Version 1: cursors, processed keys, threads, failure counts, leases.
-- {{T}} is the schema-qualified table prefix. Every text column is unbounded: keys are bounded by
-- mailsync.StateKey, cursors (a Graph delta link) may be large.
CREATE TABLE {{T}}cursors (
	conn        text PRIMARY KEY,
	cursor_text text NOT NULL
);
CREATE TABLE {{T}}done (
	conn    text NOT NULL,
	msg_key text NOT NULL,
	ticket  text NOT NULL,
	PRIMARY KEY (conn, msg_key)
);
CREATE TABLE {{T}}threads (
	message_id text PRIMARY KEY,
	ticket     text NOT NULL
);
CREATE TABLE {{T}}failures (
	conn     text NOT NULL,
	msg_key  text NOT NULL,
	attempts integer NOT NULL,
	PRIMARY KEY (conn, msg_key)
);
CREATE TABLE {{T}}leases (
	conn    text PRIMARY KEY,
	holder  text NOT NULL,
	token   bigint NOT NULL,
	expires timestamptz NOT NULL
);
