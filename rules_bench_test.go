package mailsync_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/mailsync/mailsync"
	"github.com/mailsync/mailsync/internal/benchmail"
	"github.com/mailsync/mailsync/internal/benchsink"
)

// benchRules makes n rules of the usual shapes (recipient and sender
// tests, subject words, a few regular expressions, a spam threshold) that
// match nothing in the benchmark mailbox, so every rule is evaluated for
// every message: the worst case.
func benchRules(n int) mailsync.Routing {
	r := mailsync.Routing{Mappings: []mailsync.Mapping{mailsync.DefaultMapping("billing")}}
	for i := 0; i < n; i++ {
		var c mailsync.Condition
		switch i % 5 {
		case 0:
			c = mailsync.Condition{Field: "recipient", Op: mailsync.OpIs, Value: fmt.Sprintf("alias%d@empresa.pt", i)}
		case 1:
			c = mailsync.Condition{Field: "from", Op: mailsync.OpDomain, Value: fmt.Sprintf("partner%d.example", i)}
		case 2:
			c = mailsync.Condition{Field: "subject", Op: mailsync.OpContains, Value: fmt.Sprintf("order-%d", i)}
		case 3:
			c = mailsync.Condition{Field: "subject", Op: mailsync.OpMatches, Value: fmt.Sprintf(`(?i)\binvoice\s+#%d\b`, i)}
		case 4:
			c = mailsync.Condition{Field: "spam.score", Op: mailsync.OpAbove, Value: fmt.Sprint(100 + i)}
		}
		r.Rules = append(r.Rules, mailsync.Rule{ID: fmt.Sprint("r", i), When: []mailsync.Condition{c}, TicketType: "billing"})
	}
	return r
}

// BenchmarkSyncRules syncs the 2,000-message benchmark mailbox (about
// 125 MB) from memory, without and with 200 rules:
//
//	go test -run '^$' -bench SyncRules -benchtime 3x .
func BenchmarkSyncRules(b *testing.B) {
	f := newFake(0)
	f.conn.ConnectedWith = []string{"incident", "billing"}
	if _, err := benchmail.Generate(2000, 125<<20, 1, func(i int, raw []byte) error {
		f.msgs = append(f.msgs, fakeMsg{key: fmt.Sprint(i), raw: raw})
		return nil
	}); err != nil {
		b.Fatal(err)
	}
	for _, n := range []int{0, 200} {
		b.Run(fmt.Sprintf("rules=%d", n), func(b *testing.B) {
			opts := []mailsync.Option{mailsync.WithTempDir(b.TempDir())}
			if n > 0 {
				opts = append(opts, mailsync.WithRouting(benchRules(n)))
			}
			for b.Loop() {
				sink := &benchsink.DiscardSink{}
				rep, err := mailsync.Sync(context.Background(), f, mapping, sink, opts...)
				if err != nil || rep.Created != 2000 {
					b.Fatalf("%v: %+v", err, rep.Created)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Milliseconds())/float64(b.N), "ms/sync")
		})
	}
}
