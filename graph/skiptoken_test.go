package graph_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/mailsync/mailsync"
	"github.com/mailsync/mailsync/graph"
)

// A skip token that expires in the middle of a first full listing
// (SyncStateNotFound on a nextLink) restarts the listing from scratch
// with a note; a sync through it creates every ticket once.
func TestSkipTokenExpiringDuringFirstListingRestartsIt(t *testing.T) {
	e := newEnv(t, false)
	ids := e.deliver(25, "s")
	small := func(o *graph.Options) { o.PageSize = 10 }
	e.fake.ExpireSkipTokenAfter(1, false) // the nextLink of page 1 expires
	l, err := e.connector(small).List(context.Background(), "")
	if err != nil {
		t.Fatalf("list: %v", err)
	}
	if len(l.Messages) != 25 || strings.Join(keys(l), ",") != strings.Join(ids, ",") {
		t.Fatalf("listed %d messages %q, want the 25 in order", len(l.Messages), keys(l))
	}
	if len(l.Notes) != 1 || !strings.Contains(l.Notes[0], "skip token expired") {
		t.Fatalf("notes %q", l.Notes)
	}
	var statuses []int
	for _, r := range graphRequests(e.fake) {
		if strings.Contains(r.Path, "delta") {
			statuses = append(statuses, r.Status)
		}
	}
	if len(statuses) != 5 || statuses[1] != http.StatusGone {
		t.Fatalf("delta statuses %v, want 200 410 200 200 200", statuses)
	}

	// Through the engine: every message becomes one ticket.
	e.fake.ExpireSkipTokenAfter(2, false)
	sink := mailsync.NewMemorySink()
	rep, err := mailsync.Sync(context.Background(), e.connector(small), mailsync.DefaultMapping("incident"), sink)
	if err != nil || rep.Created != 25 || len(sink.Tickets()) != 25 {
		t.Fatalf("sync: %+v %v", rep, err)
	}

	// Expiring on every page: a retryable, classified error, not a loop.
	e.fake.ExpireSkipTokenAfter(1, true)
	_, err = e.connector(small).List(context.Background(), "")
	var ge *graph.Error
	if err == nil || !errors.As(err, &ge) || !mailsync.Temporary(err) {
		t.Fatalf("skip tokens that keep expiring: %v, want a temporary *graph.Error", err)
	}
}
