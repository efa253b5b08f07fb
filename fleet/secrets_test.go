package fleet

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/mailsync/mailsync"
	"github.com/mailsync/mailsync/internal/redact"
	"github.com/mailsync/mailsync/internal/secretscan"
)

// TestJobRowsHoldNoSecret reads every row and column of River's tables
// after scheduled syncs, failures (whose messages quote the secrets) and a
// cancellation, and looks for the credentials in every encoding.
func TestJobRowsHoldNoSecret(t *testing.T) {
	db := openSQLite(t)
	const password = mailsync.Secret("Pa55-word-of-the-mailbox")
	const refresh = mailsync.Secret("1//refresh-token-of-the-grant")
	echo := func(kind error) error {
		// A server that echoes what it was sent.
		return fmt.Errorf("NO [AUTHENTICATIONFAILED] LOGIN support %s (refresh %s): %w", password.Reveal(), refresh.Reveal(), kind)
	}
	flaky := newMailbox("flaky", 1)
	flaky.setListErr(func(n int) error {
		if n == 1 {
			return echo(mailsync.ErrConnection)
		}
		return nil
	})
	revoked := newMailbox("revoked", 1)
	revoked.setListErr(func(int) error { return echo(mailsync.ErrConsentRequired) })
	r := newResolver(flaky, revoked)
	r.secrets = []mailsync.Secret{password, refresh}
	f := newFleet(t, db, Config{Resolver: r, Interval: 100 * time.Millisecond, Backoff: 50 * time.Millisecond})
	ctx := context.Background()
	for _, id := range []string{"flaky", "revoked"} {
		if _, err := f.Schedule(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, 10*time.Second, "syncs", func() bool { return len(flaky.calls()) >= 3 && len(revoked.calls()) == 1 })
	eventually(t, 10*time.Second, "the revoked job to be cancelled", func() bool {
		j := jobsOf(t, f, "revoked")
		return len(j) == 1 && j[0].State == "cancelled"
	})

	// The args are the connection id, nothing else.
	for _, id := range []string{"flaky", "revoked"} {
		for _, j := range jobsOf(t, f, id) {
			var args map[string]any
			if err := json.Unmarshal(j.EncodedArgs, &args); err != nil {
				t.Fatal(err)
			}
			if len(args) != 1 || args["connection"] != id {
				t.Errorf("job %d args = %s, want only the connection id", j.ID, j.EncodedArgs)
			}
		}
	}

	tables := []string{}
	rows, err := db.Query(`SELECT name FROM sqlite_master WHERE type = 'table'`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			t.Fatal(err)
		}
		tables = append(tables, n)
	}
	rows.Close()
	counts, leaks, err := secretscan.Rows(context.Background(), db, tables, password.Reveal(), refresh.Reveal())
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range leaks {
		t.Error(l)
	}
	scanned := 0
	for _, n := range counts {
		scanned += n
	}
	if scanned == 0 {
		t.Fatal("no rows scanned")
	}

	// Health keeps the message, scrubbed.
	for _, id := range []string{"flaky", "revoked"} {
		h := healthOf(t, f, id)
		if !strings.Contains(h.LastError, "[REDACTED]") || !strings.Contains(h.LastError, "AUTHENTICATIONFAILED") {
			t.Errorf("%s: LastError = %q, want it scrubbed", id, h.LastError)
		}
		for _, n := range append(redact.Forms(password.Reveal()), redact.Forms(refresh.Reveal())...) {
			if strings.Contains(h.LastError, n) {
				t.Errorf("%s: LastError holds a secret: %q", id, h.LastError)
			}
		}
	}
}
