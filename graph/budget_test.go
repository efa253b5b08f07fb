package graph_test

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/mailsync/mailsync"
	"github.com/mailsync/mailsync/graph"
)

// firstSync delivers n messages, sets the fake's mailbox budget and runs
// a first sync with mark-read through a connector with budget (0: none).
// It returns the report, the wall time, the Graph requests and the 429s
// the budget caused.
func firstSync(t *testing.T, n, limit int, window time.Duration, pace bool) (*mailsync.Report, time.Duration, int, int) {
	t.Helper()
	e := newEnv(t, false)
	e.deliver(n, "budget")
	e.fake.SetMailboxBudget(limit, window)
	c := e.connector(func(o *graph.Options) {
		o.RequestBudget, o.BudgetWindow = -1, 0
		if pace {
			o.RequestBudget, o.BudgetWindow = limit, window
		}
		o.MaxRetryWait = 2 * window
	})
	start := time.Now()
	rep, err := mailsync.Sync(context.Background(), c, mailsync.DefaultMapping("incident"), mailsync.NewMemorySink(),
		mailsync.WithPostAction(mailsync.PostAction{Kind: mailsync.MarkRead}))
	wall := time.Since(start)
	if err != nil {
		t.Fatalf("sync: %v", err)
	}
	rejected, _ := e.fake.BudgetStats()
	return rep, wall, len(graphRequests(e.fake)), rejected
}

// With the mailbox budget enforced (scaled: 100 requests per 2 s), an
// unpaced first sync runs into 429s; the paced one sees none and takes
// about as long as the budget allows.
func TestFirstSyncStaysWithinMailboxBudget(t *testing.T) {
	const n, limit, window = 150, 100, 2 * time.Second
	rep, wall, reqs, rejected := firstSync(t, n, limit, window, true)
	t.Logf("paced: %d messages, %d requests (%.2f per message), %d answered 429, %s", n, reqs, float64(reqs)/n, rejected, wall.Round(time.Millisecond))
	if rep.Created != n || rep.Failed != 0 {
		t.Fatalf("paced sync: %+v", rep)
	}
	if rejected != 0 {
		t.Fatalf("paced sync ran into the budget %d times", rejected)
	}
	// A tenth of the budget at once, then 90 % of budget/window.
	minWall := time.Duration(float64(reqs-limit/10) / (0.9 * limit / window.Seconds()) * float64(time.Second))
	if wall < minWall*9/10 {
		t.Fatalf("%d requests in %s: faster than the pace (%s)", reqs, wall, minWall)
	}

	_, uwall, ureqs, urejected := firstSync(t, n, limit, window, false)
	t.Logf("unpaced: %d requests, %d answered 429, %s", ureqs, urejected, uwall.Round(time.Millisecond))
	if urejected == 0 {
		t.Fatalf("the unpaced sync (%d requests in %s) never hit the budget: the test shows nothing", ureqs, uwall)
	}
}

// TestMeasureFirstSync20000 measures a 20,000-message first sync against
// Graph's real budget (10,000 requests per 10 minutes) with the clock
// scaled by MAILSYNC_BUDGET_SCALE (default 20: a 30 s window), so the
// wall time at the real pace is the measured one times the scale
// (MAILSYNC_MEASURE=unpaced measures without pacing, for comparison):
//
//	MAILSYNC_MEASURE=1 go test -run TestMeasureFirstSync20000 -v -timeout 30m ./graph/
func TestMeasureFirstSync20000(t *testing.T) {
	if os.Getenv("MAILSYNC_MEASURE") == "" {
		t.Skip("set MAILSYNC_MEASURE=1 to measure")
	}
	scale := 20.0
	if v, err := strconv.ParseFloat(os.Getenv("MAILSYNC_BUDGET_SCALE"), 64); err == nil && v > 0 {
		scale = v
	}
	const n = 20000
	window := time.Duration(float64(graph.DefaultBudgetWindow) / scale)
	paced := os.Getenv("MAILSYNC_MEASURE") != "unpaced"
	rep, wall, reqs, rejected := firstSync(t, n, graph.DefaultRequestBudget, window, paced)
	msg := fmt.Sprintf("20,000-message first sync with mark-read (paced %v), budget %d per %s (real window / %.0f): created %d, failed %d, %d requests (%.3f per message), %d answered 429, wall %s; at real time %s",
		paced, graph.DefaultRequestBudget, window, scale, rep.Created, rep.Failed, reqs, float64(reqs)/n, rejected, wall.Round(time.Millisecond),
		time.Duration(float64(wall)*scale).Round(time.Second))
	t.Log(msg)
	if paced && (rep.Created != n || rejected != 0) {
		t.Fatal(msg)
	}
}
