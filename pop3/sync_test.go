package pop3_test

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/mailsync/mailsync"
	"github.com/mailsync/mailsync/internal/cutproxy"
	"github.com/mailsync/mailsync/internal/dovecottest"
	"github.com/mailsync/mailsync/pop3"
)

// TestDovecotSyncResumesAfterCuts runs mailsync.Sync through a proxy that
// cuts the first connections in the middle of RETR answers: the sync
// resumes by itself, and every message becomes exactly one ticket (0 lost,
// 0 duplicated), with both post-actions.
func TestDovecotSyncResumesAfterCuts(t *testing.T) {
	for _, action := range []mailsync.ActionKind{mailsync.LeaveUntouched, mailsync.Delete} {
		t.Run(map[bool]string{true: "leave", false: "delete"}[action == mailsync.LeaveUntouched], func(t *testing.T) {
			srv := dovecottest.Shared(t, dovecottest.Options{})
			user := srv.AddUser(t, t.Name(), "pw")
			const n = 20
			var want []string
			for i := 0; i < n; i++ {
				id := fmt.Sprintf("resume%d", i)
				srv.Deliver(t, user, "", testMessage(id, 60_000+i*1000))
				want = append(want, id+"@example.com")
			}
			p := cutproxy.Start(t, srv.POP3SAddr)
			// The first three sessions die in the middle of a message.
			for _, at := range []int64{150_000, 100_000, 120_000} {
				p.CutAfter(at)
			}
			conn := connection(t, user, p.Addr)
			sink := mailsync.NewMemorySink()
			state := mailsync.NewMemoryState()
			run := func() *mailsync.Report {
				c, err := pop3.New(conn, pop3.Options{Password: "pw", RootCAs: srv.CAPool})
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
				rep, err := mailsync.Sync(ctxT(t), c, mailsync.DefaultMapping("incident"), sink,
					mailsync.WithState(state), mailsync.WithRetry(10, 10*time.Millisecond),
					mailsync.WithPostAction(mailsync.PostAction{Kind: action}), mailsync.WithBatchSize(7))
				if err != nil {
					t.Fatalf("Sync: %v", err)
				}
				return rep
			}
			rep := run()
			if p.Cuts() != 3 {
				t.Fatalf("the proxy cut %d connections, want 3", p.Cuts())
			}
			if rep.Created != n || rep.Failed != 0 {
				t.Fatalf("created %d failed %d, want %d and 0 (notes %v)", rep.Created, rep.Failed, n, rep.Notes)
			}
			var got []string
			for _, tk := range sink.Tickets() {
				got = append(got, tk.Fields["email_message_id"])
			}
			slices.Sort(got)
			slices.Sort(want)
			if !slices.Equal(got, want) {
				t.Fatalf("tickets for\n%q\nwant\n%q", got, want)
			}
			left := srv.Messages(t, user, "")
			if action == mailsync.Delete && len(left) != 0 {
				t.Fatalf("%d messages left after syncing with delete", len(left))
			}
			if action == mailsync.LeaveUntouched && len(left) != n {
				t.Fatalf("%d messages left, want %d", len(left), n)
			}
			// A second run has nothing to do and creates nothing.
			rep = run()
			if rep.Created != 0 || len(sink.Tickets()) != n {
				t.Fatalf("second run created %d; %d tickets", rep.Created, len(sink.Tickets()))
			}
		})
	}
}
