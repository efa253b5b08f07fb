package main

import (
	"bytes"
	"context"
	"path/filepath"
	"testing"

	"github.com/mailsync/mailsync"
	"github.com/mailsync/mailsync/sinktest"
	"github.com/mailsync/mailsync/sqlstate"
)

// TestSinkConformance runs the library's Sink conformance suite against
// the host's sink: idempotent on the key across a restart, quarantine
// idempotent, attachments read during the call, follow-ups and tickets in
// one key space.
func TestSinkConformance(t *testing.T) {
	sinktest.Run(t, func(t *testing.T) sinktest.Harness {
		path := filepath.Join(t.TempDir(), "helpdesk.db")
		box, err := newSecretBox(bytes.Repeat([]byte{7}, 32))
		if err != nil {
			t.Fatal(err)
		}
		open := func() mailsync.Sink {
			st, err := sqlstate.OpenSQLite(context.Background(), path)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { st.Close() })
			store := NewStore(st, false, box)
			if err := store.Migrate(context.Background()); err != nil {
				t.Fatal(err)
			}
			return &Sink{st: store}
		}
		return sinktest.Harness{Sink: open(), Reopen: open}
	})
}
