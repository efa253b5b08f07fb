package sqlstate_test

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/stdlib"

	"github.com/mailsync/mailsync"
	"github.com/mailsync/mailsync/connectortest"
	"github.com/mailsync/mailsync/internal/secretscan"
	"github.com/mailsync/mailsync/sqlstate"
)

// Credentials of the test connection. None of them may reach a table.
const (
	clientSecret = "cs~Sup3r$ecret/Value+xyz"
	refreshToken = "1//rt-Refresh-TOKEN_abcdef0123"
	password     = `pw-P@ss:w0rd "quoted" \ 42`
)

// memConnector is a mailbox in memory whose configuration carries OAuth
// secrets and which holds a password, as a provider would.
type memConnector struct {
	conn     mailsync.Connection
	password mailsync.Secret
	msgs     map[string][]byte
	order    []string
}

func newMemConnector(n int) *memConnector {
	c := &memConnector{
		conn: mailsync.Connection{Name: "support@example.com", Enabled: true, User: "support@example.com",
			Protocol: "x-mem", ConnectedWith: []string{"incident"},
			OAuth: &mailsync.OAuth{Provider: mailsync.GmailAPI, ClientID: "client-id.apps.example",
				ClientSecret: clientSecret, RefreshToken: refreshToken}},
		password: password,
		msgs:     map[string][]byte{},
	}
	for i := 0; i < n; i++ {
		key := fmt.Sprintf("INBOX/%d", i)
		c.msgs[key] = connectortest.NewMessage(fmt.Sprintf("m%d", i), fmt.Sprintf("subject %d", i))
		c.order = append(c.order, key)
	}
	return c
}

func (c *memConnector) remove(key string) {
	delete(c.msgs, key)
	for i, k := range c.order {
		if k == key {
			c.order = append(c.order[:i], c.order[i+1:]...)
			return
		}
	}
}

func (c *memConnector) Connection() mailsync.Connection { return c.conn }
func (c *memConnector) Close() error                    { return nil }
func (c *memConnector) List(_ context.Context, cursor mailsync.Cursor) (*mailsync.Listing, error) {
	l := &mailsync.Listing{Cursor: mailsync.Cursor(fmt.Sprint("n=", len(c.order))), Complete: true}
	for _, k := range c.order {
		l.Messages = append(l.Messages, mailsync.MessageRef{Key: k, Size: int64(len(c.msgs[k]))})
	}
	return l, nil
}
func (c *memConnector) Fetch(_ context.Context, refs []mailsync.MessageRef, fn func(mailsync.MessageRef, io.Reader) error) error {
	if c.password.Reveal() != password {
		return mailsync.ErrAuth
	}
	for _, r := range refs {
		raw, ok := c.msgs[r.Key]
		if !ok {
			if err := fn(r, nil); err != nil {
				return err
			}
			continue
		}
		if err := fn(r, bytes.NewReader(raw)); err != nil {
			return err
		}
	}
	return nil
}
func (c *memConnector) Ack(context.Context, []mailsync.MessageRef, mailsync.PostAction) error {
	return nil
}

// testSync runs mailsync.Sync with a sqlstate three times: a first run in
// which the sink refuses one message (its failure is counted), a second
// that stores it, and a third after a message left the mailbox (pruned).
// After every run it scans every row of every table of the state for the
// connection's secrets in all their encodings.
func testSync(t *testing.T, s *sqlstate.State) {
	c := newMemConnector(4)
	sink := mailsync.NewMemorySink()
	refuse := true
	sink.BeforeCreate = func(_ context.Context, tk *mailsync.Ticket) error {
		if refuse && tk.Message.Subject == "subject 2" {
			return errors.New("helpdesk database is down")
		}
		return nil
	}
	opts := []mailsync.Option{mailsync.WithState(s), mailsync.WithLease("app-1", time.Minute), mailsync.WithSinkFailureLimit(5)}
	mapping := mailsync.DefaultMapping("incident")

	rep, err := mailsync.Sync(ctx, c, mapping, sink, opts...)
	if err != nil && !errors.Is(err, mailsync.ErrSink) {
		t.Fatal(err)
	}
	if rep.Created != 3 || rep.Failed != 1 {
		t.Fatalf("first run: %+v", rep)
	}
	assertNoSecret(t, s, 1)

	refuse = false
	rep, err = mailsync.Sync(ctx, c, mapping, sink, opts...)
	if err != nil || rep.Created != 1 || rep.AlreadyDone != 3 {
		t.Fatalf("second run: %+v %v", rep, err)
	}
	assertNoSecret(t, s, 0)
	if cur, _ := s.Cursor(ctx, c.conn.Name); cur != "n=4" {
		t.Fatalf("cursor %q", cur)
	}

	c.remove("INBOX/0")
	rep, err = mailsync.Sync(ctx, c, mapping, sink, opts...)
	if err != nil || rep.Created != 0 || rep.AlreadyDone != 3 {
		t.Fatalf("third run: %+v %v", rep, err)
	}
	if p, _ := s.Processed(ctx, c.conn.Name, []string{"INBOX/0", "INBOX/1"}); fmt.Sprint(p) != "[false true]" {
		t.Fatalf("after the message left the mailbox, processed = %v; want it pruned", p)
	}
	th, err := s.Threads(ctx, []string{"m1@connectortest.invalid"})
	if err != nil || th["m1@connectortest.invalid"] == "" {
		t.Fatalf("threads %v %v", th, err)
	}
	assertNoSecret(t, s, 0)
	if len(sink.Tickets()) != 4 {
		t.Fatalf("%d tickets in the sink, want 4", len(sink.Tickets()))
	}
}

// assertNoSecret reads every row of every table of the state (those
// whose name starts with the default prefix) and fails if any column
// holds a secret in any of the encodings of redact.Forms. It also checks
// that the tables were not empty (the scan saw the data) and that the
// failure count table has wantFailures rows (a run with a failure stores
// no cursor).
func assertNoSecret(t *testing.T, s *sqlstate.State, wantFailures int) {
	t.Helper()
	tables := stateTables(t, s.DB())
	if len(tables) != 6 {
		t.Fatalf("tables %v, want 6", tables)
	}
	rowsPerTable, leaks, err := secretscan.Rows(ctx, s.DB(), tables, clientSecret, refreshToken, password)
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range leaks {
		t.Error(l)
	}
	nonEmpty := []string{"mailsync_done", "mailsync_threads", "mailsync_leases", "mailsync_schema_migrations"}
	if wantFailures == 0 { // the run that counted a failure kept the cursor where it was
		nonEmpty = append(nonEmpty, "mailsync_cursors")
	}
	for _, table := range nonEmpty {
		if rowsPerTable[table] == 0 {
			t.Errorf("table %s is empty: the scan proves nothing (rows: %v)", table, rowsPerTable)
		}
	}
	if rowsPerTable["mailsync_failures"] != wantFailures {
		t.Errorf("%d failure rows, want %d", rowsPerTable["mailsync_failures"], wantFailures)
	}
}

// stateTables lists the tables named mailsync_*.
func stateTables(t *testing.T, db *sql.DB) []string {
	t.Helper()
	q := `SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE 'mailsync\_%' ESCAPE '\' ORDER BY name`
	if _, ok := db.Driver().(*stdlib.Driver); ok {
		q = `SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema() AND table_name LIKE 'mailsync\_%' ORDER BY table_name`
	}
	rows, err := db.QueryContext(ctx, q)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			t.Fatal(err)
		}
		out = append(out, n)
	}
	return out
}

func TestSQLiteSyncStoresNoSecret(t *testing.T) { testSync(t, openSQLite(t)) }

func TestPostgresSyncStoresNoSecret(t *testing.T) {
	testSync(t, openPostgres(t, sqlstate.Options{}))
}
