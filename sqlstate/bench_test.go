package sqlstate_test

import (
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/mailsync/mailsync"
	"github.com/mailsync/mailsync/internal/pgtest"
	"github.com/mailsync/mailsync/sqlstate"
)

// benchStates runs fn on a fresh SQLite and a fresh PostgreSQL state.
func benchStates(b *testing.B, fn func(b *testing.B, s *sqlstate.State)) {
	b.Run("SQLite", func(b *testing.B) {
		s, err := sqlstate.OpenSQLite(ctx, filepath.Join(b.TempDir(), "bench.db"))
		if err != nil {
			b.Fatal(err)
		}
		defer s.Close()
		fn(b, s)
	})
	b.Run("Postgres", func(b *testing.B) {
		s, err := sqlstate.OpenPostgres(ctx, pgtest.NewDatabase(b), sqlstate.Options{})
		if err != nil {
			b.Fatal(err)
		}
		defer s.Close()
		fn(b, s)
	})
}

const mailbox = 100_000

// mailboxKeys are the keys of a 100k-message mailbox, in StateKey form
// like IMAP's "UIDVALIDITY:UID" keys.
func mailboxKeys() []string {
	keys := make([]string, mailbox)
	for i := range keys {
		keys[i] = fmt.Sprintf("1700000000:%d", i+1)
	}
	return keys
}

// record stores keys as done, 10 000 per Record.
func record(b testing.TB, s *sqlstate.State, keys []string) {
	for len(keys) > 0 {
		n := min(len(keys), 10_000)
		done := make(map[string]string, n)
		for _, k := range keys[:n] {
			done[k] = "T-" + k
		}
		if err := s.Record(ctx, "bench", mailsync.Record{Done: done}); err != nil {
			b.Fatal(err)
		}
		keys = keys[n:]
	}
}

// BenchmarkPrune100k: a mailbox of 100 000 processed keys of which 1 000
// left the mailbox; one Prune with the 99 000 present keys.
func BenchmarkPrune100k(b *testing.B) {
	benchStates(b, func(b *testing.B, s *sqlstate.State) {
		keys := mailboxKeys()
		record(b, s, keys)
		gone, present := keys[:1000], keys[1000:]
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			if err := s.Prune(ctx, "bench", present); err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			p, err := s.Processed(ctx, "bench", []string{gone[0], present[0]})
			if err != nil || p[0] || !p[1] {
				b.Fatalf("after Prune: %v %v", p, err)
			}
			record(b, s, gone)
			b.StartTimer()
		}
	})
}

// BenchmarkProcessed100k: one Processed call with the 100 000 keys of a
// complete listing (POP3), all of them done.
func BenchmarkProcessed100k(b *testing.B) {
	benchStates(b, func(b *testing.B, s *sqlstate.State) {
		keys := mailboxKeys()
		record(b, s, keys)
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			p, err := s.Processed(ctx, "bench", keys)
			if err != nil || !p[0] || !p[mailbox-1] {
				b.Fatal(p[0], err)
			}
		}
	})
}

// BenchmarkRecord: one Record of a typical batch (20 done keys, 20
// threads, a cursor) with a fence, as Sync writes it.
func BenchmarkRecord(b *testing.B) {
	benchStates(b, func(b *testing.B, s *sqlstate.State) {
		lease, err := s.AcquireLease(ctx, "bench", "bench", time.Hour)
		if err != nil {
			b.Fatal(err)
		}
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			done, threads := map[string]string{}, map[string]string{}
			for j := 0; j < 20; j++ {
				done[fmt.Sprintf("k%d-%d", i, j)] = "T"
				threads[fmt.Sprintf("m%d-%d@x", i, j)] = "T"
			}
			c := mailsync.Cursor(fmt.Sprint(i))
			if err := s.Record(ctx, "bench", mailsync.Record{Done: done, Threads: threads, Cursor: &c, Fence: &lease}); err != nil {
				b.Fatal(err)
			}
		}
	})
}
