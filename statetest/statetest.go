// Package statetest is the conformance suite for mailsync.State
// implementations: the rules every State keeps, run against a fresh State
// per test. A host that brings its own database runs it in its tests:
//
//	func TestMyState(t *testing.T) {
//		statetest.Run(t, func(t *testing.T) mailsync.State { return openMyState(t) })
//	}
//
// When the State implements mailsync.FailureCounter, its rules are tested
// too; RunLeases tests the optional mailsync.Leaser (one holder at a time,
// growing fencing tokens, fenced writes refused after the lease is lost).
package statetest

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mailsync/mailsync"
)

// Maker returns a fresh, empty State for one test (and arranges its
// cleanup with t.Cleanup).
type Maker func(t *testing.T) mailsync.State

// Run runs every rule as a subtest.
func Run(t *testing.T, newState Maker) {
	t.Helper()
	tests := []struct {
		name string
		fn   func(*testing.T, mailsync.State)
	}{
		{"EmptyState", testEmpty},
		{"CursorPerConnection", testCursor},
		{"ProcessedKeysInOrder", testProcessed},
		{"RecordIsCumulative", testCumulative},
		{"PruneKeepsPresentOnly", testPrune},
		{"ThreadsSharedAcrossConnections", testThreadsShared},
		{"ThreadsFirstOwnerKeepsID", testThreadsFirstOwner},
		{"EmptyConnectionStoresOnlyThreads", testEmptyConnection},
		{"BoundedKeys", testBoundedKeys},
		{"ConcurrentConnections", testConcurrent},
		{"FailureCounter", testFailureCounter},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, newState(t)) })
	}
}

var ctx = context.Background()

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func processed(t *testing.T, s mailsync.State, conn string, keys ...string) string {
	t.Helper()
	got, err := s.Processed(ctx, conn, keys)
	must(t, err)
	if len(got) != len(keys) {
		t.Fatalf("Processed returned %d answers for %d keys", len(got), len(keys))
	}
	var b strings.Builder
	for _, p := range got {
		if p {
			b.WriteByte('1')
		} else {
			b.WriteByte('0')
		}
	}
	return b.String()
}

func testEmpty(t *testing.T, s mailsync.State) {
	c, err := s.Cursor(ctx, "conn")
	must(t, err)
	if c != "" {
		t.Fatalf("cursor of an unknown connection = %q, want \"\"", c)
	}
	if p := processed(t, s, "conn", "a", "b"); p != "00" {
		t.Fatalf("processed in an empty state: %s", p)
	}
	th, err := s.Threads(ctx, []string{"x@y"})
	must(t, err)
	if len(th) != 0 {
		t.Fatalf("threads in an empty state: %v", th)
	}
	must(t, s.Prune(ctx, "conn", nil)) // pruning nothing works
}

func testCursor(t *testing.T, s mailsync.State) {
	c1, c2 := mailsync.Cursor("v1:100"), mailsync.Cursor("other")
	must(t, s.Record(ctx, "a", mailsync.Record{Cursor: &c1}))
	must(t, s.Record(ctx, "b", mailsync.Record{Cursor: &c2}))
	for conn, want := range map[string]mailsync.Cursor{"a": c1, "b": c2, "c": ""} {
		got, err := s.Cursor(ctx, conn)
		must(t, err)
		if got != want {
			t.Errorf("cursor of %s = %q, want %q", conn, got, want)
		}
	}
	// A Record without a cursor keeps it.
	must(t, s.Record(ctx, "a", mailsync.Record{Done: map[string]string{"k": "T1"}}))
	if got, _ := s.Cursor(ctx, "a"); got != c1 {
		t.Errorf("cursor changed by a Record without one: %q", got)
	}
	// A large cursor (a Graph delta link, a Gmail history id list) is kept whole.
	big := mailsync.Cursor(strings.Repeat("d", 64<<10))
	must(t, s.Record(ctx, "a", mailsync.Record{Cursor: &big}))
	if got, _ := s.Cursor(ctx, "a"); got != big {
		t.Errorf("64 KiB cursor not kept whole (%d bytes back)", len(got))
	}
}

func testProcessed(t *testing.T, s mailsync.State) {
	must(t, s.Record(ctx, "a", mailsync.Record{Done: map[string]string{"k2": "T2", "k4": ""}}))
	if p := processed(t, s, "a", "k1", "k2", "k3", "k4"); p != "0101" {
		t.Fatalf("processed = %s, want 0101 (a quarantined message, ticket \"\", counts as done)", p)
	}
	if p := processed(t, s, "b", "k2"); p != "0" {
		t.Fatalf("processed keys leak across connections: %s", p)
	}
}

func testCumulative(t *testing.T, s mailsync.State) {
	for i := 0; i < 5; i++ {
		must(t, s.Record(ctx, "a", mailsync.Record{Done: map[string]string{fmt.Sprint(i): "T"}}))
	}
	if p := processed(t, s, "a", "0", "1", "2", "3", "4"); p != "11111" {
		t.Fatalf("processed = %s: a Record replaced earlier ones", p)
	}
}

func testPrune(t *testing.T, s mailsync.State) {
	must(t, s.Record(ctx, "a", mailsync.Record{Done: map[string]string{"k1": "T", "k2": "T", "k3": "T"}}))
	must(t, s.Record(ctx, "b", mailsync.Record{Done: map[string]string{"k1": "T"}}))
	must(t, s.Prune(ctx, "a", []string{"k2", "k9"}))
	if p := processed(t, s, "a", "k1", "k2", "k3"); p != "010" {
		t.Fatalf("after Prune: %s, want 010", p)
	}
	if p := processed(t, s, "b", "k1"); p != "1" {
		t.Fatal("Prune of one connection touched another")
	}
}

func testThreadsShared(t *testing.T, s mailsync.State) {
	must(t, s.Record(ctx, "a", mailsync.Record{Threads: map[string]string{"m1@x": "T1"}}))
	must(t, s.Record(ctx, "b", mailsync.Record{Threads: map[string]string{"m2@x": "T2"}}))
	got, err := s.Threads(ctx, []string{"m1@x", "m2@x", "m3@x"})
	must(t, err)
	if len(got) != 2 || got["m1@x"] != "T1" || got["m2@x"] != "T2" {
		t.Fatalf("Threads = %v", got)
	}
}

func testThreadsFirstOwner(t *testing.T, s mailsync.State) {
	must(t, s.Record(ctx, "a", mailsync.Record{Threads: map[string]string{"m@x": "T1"}}))
	must(t, s.Record(ctx, "b", mailsync.Record{Threads: map[string]string{"m@x": "T2"}}))
	must(t, s.Record(ctx, "", mailsync.Record{Threads: map[string]string{"m@x": "T3"}}))
	got, err := s.Threads(ctx, []string{"m@x"})
	must(t, err)
	if got["m@x"] != "T1" {
		t.Fatalf("a later Record re-pointed the id to %q; the first ticket must keep it", got["m@x"])
	}
}

func testEmptyConnection(t *testing.T, s mailsync.State) {
	must(t, mailsync.RegisterOutgoing(ctx, s, "<notif@helpdesk>", "T9"))
	got, err := s.Threads(ctx, []string{"notif@helpdesk"})
	must(t, err)
	if got["notif@helpdesk"] != "T9" {
		t.Fatalf("RegisterOutgoing not found: %v", got)
	}
	c := mailsync.Cursor("x")
	must(t, s.Record(ctx, "", mailsync.Record{Done: map[string]string{"k": "T"}, Cursor: &c}))
	if p := processed(t, s, "", "k"); p != "0" {
		t.Fatal(`Record with connection "" stored processed keys; it must store only threads`)
	}
	if cur, _ := s.Cursor(ctx, ""); cur != "" {
		t.Fatal(`Record with connection "" stored a cursor; it must store only threads`)
	}
}

func testBoundedKeys(t *testing.T, s mailsync.State) {
	// Sync hands a State only StateKey forms: short keys, or a 72-byte hash.
	long := mailsync.StateKey(strings.Repeat("x", 40<<10) + "@evil.example")
	printable := mailsync.StateKey("INBOX/5:\u00e9\u4e2d/" + strings.Repeat("k", 150))
	must(t, s.Record(ctx, "a", mailsync.Record{Done: map[string]string{long: "T1", printable: "T2"}, Threads: map[string]string{long: "T1"}}))
	if p := processed(t, s, "a", long, printable); p != "11" {
		t.Fatalf("bounded keys not found back: %s", p)
	}
	got, err := s.Threads(ctx, []string{long})
	must(t, err)
	if got[long] != "T1" {
		t.Fatalf("bounded thread key not found back: %v", got)
	}
}

func testConcurrent(t *testing.T, s mailsync.State) {
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for c := 0; c < 4; c++ {
		wg.Add(1)
		go func(conn string) {
			defer wg.Done()
			for i := 0; i < 25; i++ {
				if err := s.Record(ctx, conn, mailsync.Record{Done: map[string]string{fmt.Sprint(i): "T"}, Threads: map[string]string{fmt.Sprintf("%s-%d@x", conn, i): "T"}}); err != nil {
					errs <- err
					return
				}
			}
		}(fmt.Sprint("c", c))
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	keys := make([]string, 25)
	for i := range keys {
		keys[i] = fmt.Sprint(i)
	}
	for c := 0; c < 4; c++ {
		if p := processed(t, s, fmt.Sprint("c", c), keys...); p != strings.Repeat("1", 25) {
			t.Fatalf("connection c%d lost records under concurrency: %s", c, p)
		}
	}
}

func testFailureCounter(t *testing.T, s mailsync.State) {
	fc, ok := s.(mailsync.FailureCounter)
	if !ok {
		t.Skip("the State does not implement mailsync.FailureCounter (optional)")
	}
	for want := 1; want <= 3; want++ {
		n, err := fc.CountFailure(ctx, "a", "k")
		must(t, err)
		if n != want {
			t.Fatalf("count %d, want %d", n, want)
		}
	}
	if n, _ := fc.CountFailure(ctx, "b", "k"); n != 1 {
		t.Fatalf("counts leak across connections: %d", n)
	}
	// Done resets the count.
	must(t, s.Record(ctx, "a", mailsync.Record{Done: map[string]string{"k": "T"}}))
	if n, _ := fc.CountFailure(ctx, "a", "k"); n != 1 {
		t.Fatalf("count after Done = %d, want 1 (reset)", n)
	}
	// Prune forgets counts of messages no longer present.
	if _, err := fc.CountFailure(ctx, "a", "gone"); err != nil {
		t.Fatal(err)
	}
	must(t, s.Prune(ctx, "a", []string{"k"}))
	if n, _ := fc.CountFailure(ctx, "a", "gone"); n != 1 {
		t.Fatalf("count after Prune = %d, want 1 (forgotten)", n)
	}
}

// RunLeases runs the rules of the optional Leaser interface. The TTLs are
// short real durations (hundreds of milliseconds), so a State that measures
// time on a database server must keep its clock close to the test's.
func RunLeases(t *testing.T, newState Maker) {
	t.Helper()
	tests := []struct {
		name string
		fn   func(*testing.T, mailsync.Leaser, mailsync.State)
	}{
		{"OneHolderAtATime", testLeaseExclusive},
		{"ExpiredLeaseIsTakenWithLargerToken", testLeaseExpiry},
		{"RenewKeepsIt", testLeaseRenew},
		{"FencedRecordRefusedAfterLoss", testLeaseFence},
		{"ReleaseFreesIt", testLeaseRelease},
		{"CursorComesWithTheLease", testLeaseCursor},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := newState(t)
			l, ok := s.(mailsync.Leaser)
			if !ok {
				t.Skip("the State does not implement mailsync.Leaser (optional)")
			}
			tc.fn(t, l, s)
		})
	}
}

const shortTTL = 400 * time.Millisecond

func acquire(t *testing.T, l mailsync.Leaser, conn, holder string, ttl time.Duration) mailsync.Lease {
	t.Helper()
	lease, err := l.AcquireLease(ctx, conn, holder, ttl)
	if err != nil {
		t.Fatalf("AcquireLease(%s, %s): %v", conn, holder, err)
	}
	if lease.Connection != conn || lease.Holder != holder || lease.Token <= 0 || !lease.Expires.After(time.Now()) {
		t.Fatalf("lease %+v", lease)
	}
	return lease
}

func testLeaseExclusive(t *testing.T, l mailsync.Leaser, _ mailsync.State) {
	acquire(t, l, "a", "h1", time.Minute)
	if _, err := l.AcquireLease(ctx, "a", "h2", time.Minute); !errors.Is(err, mailsync.ErrBusy) {
		t.Fatalf("second holder: %v, want ErrBusy", err)
	}
	acquire(t, l, "b", "h2", time.Minute) // another connection is free
}

func testLeaseExpiry(t *testing.T, l mailsync.Leaser, _ mailsync.State) {
	first := acquire(t, l, "a", "h1", shortTTL)
	time.Sleep(shortTTL + 200*time.Millisecond)
	second := acquire(t, l, "a", "h2", time.Minute)
	if second.Token <= first.Token {
		t.Fatalf("token %d after %d: the fencing token must grow", second.Token, first.Token)
	}
	if _, err := l.RenewLease(ctx, first, time.Minute); !errors.Is(err, mailsync.ErrLeaseLost) {
		t.Fatalf("renewing a lost lease: %v, want ErrLeaseLost", err)
	}
}

func testLeaseRenew(t *testing.T, l mailsync.Leaser, _ mailsync.State) {
	lease := acquire(t, l, "a", "h1", shortTTL)
	for i := 0; i < 4; i++ {
		time.Sleep(shortTTL / 2)
		var err error
		if lease, err = l.RenewLease(ctx, lease, shortTTL); err != nil {
			t.Fatalf("renew %d: %v", i, err)
		}
	}
	if _, err := l.AcquireLease(ctx, "a", "h2", time.Minute); !errors.Is(err, mailsync.ErrBusy) {
		t.Fatalf("a renewed lease was taken: %v", err)
	}
}

func testLeaseFence(t *testing.T, l mailsync.Leaser, s mailsync.State) {
	old := acquire(t, l, "a", "h1", shortTTL)
	must(t, s.Record(ctx, "a", mailsync.Record{Done: map[string]string{"k1": "T"}, Fence: &old}))
	// h1 pauses (GC, partition) past its TTL; h2 takes over.
	time.Sleep(shortTTL + 200*time.Millisecond)
	if err := s.Record(ctx, "a", mailsync.Record{Done: map[string]string{"k2": "T"}, Fence: &old}); !errors.Is(err, mailsync.ErrLeaseLost) {
		t.Fatalf("write with an expired lease: %v, want ErrLeaseLost", err)
	}
	cur := acquire(t, l, "a", "h2", time.Minute)
	c := mailsync.Cursor("stale")
	if err := s.Record(ctx, "a", mailsync.Record{Done: map[string]string{"k3": "T"}, Cursor: &c, Fence: &old}); !errors.Is(err, mailsync.ErrLeaseLost) {
		t.Fatalf("write with a superseded lease: %v, want ErrLeaseLost", err)
	}
	if p := processed(t, s, "a", "k1", "k2", "k3"); p != "100" {
		t.Fatalf("processed %s: a fenced write left something behind", p)
	}
	if got, _ := s.Cursor(ctx, "a"); got != "" {
		t.Fatalf("a fenced write stored the cursor %q", got)
	}
	must(t, s.Record(ctx, "a", mailsync.Record{Done: map[string]string{"k4": "T"}, Fence: &cur}))
}

func testLeaseRelease(t *testing.T, l mailsync.Leaser, _ mailsync.State) {
	lease := acquire(t, l, "a", "h1", time.Minute)
	must(t, l.ReleaseLease(ctx, lease))
	next := acquire(t, l, "a", "h2", time.Minute)
	if next.Token <= lease.Token {
		t.Fatalf("token %d after release of %d", next.Token, lease.Token)
	}
	// Releasing a lease that was lost does not free the new holder's.
	must(t, l.ReleaseLease(ctx, lease))
	if _, err := l.AcquireLease(ctx, "a", "h3", time.Minute); !errors.Is(err, mailsync.ErrBusy) {
		t.Fatalf("a stale release freed the current lease: %v", err)
	}
}

// testLeaseCursor checks the optional mailsync.CursorLeaser: the cursor
// returned with a lease is the stored one ("" when none), for this
// connection only, and a busy connection still gives ErrBusy.
func testLeaseCursor(t *testing.T, l mailsync.Leaser, s mailsync.State) {
	cl, ok := l.(mailsync.CursorLeaser)
	if !ok {
		t.Skip("the State does not implement mailsync.CursorLeaser (optional)")
	}
	lease, cur, err := cl.AcquireLeaseCursor(ctx, "a", "h1", time.Minute)
	if err != nil || cur != "" || lease.Token <= 0 || lease.Holder != "h1" || !lease.Expires.After(time.Now()) {
		t.Fatalf("first lease %+v, cursor %q, %v; want a lease and no cursor", lease, cur, err)
	}
	c := mailsync.Cursor("uidvalidity=7;uid=42")
	must(t, s.Record(ctx, "a", mailsync.Record{Cursor: &c, Fence: &lease}))
	other := mailsync.Cursor("other")
	must(t, s.Record(ctx, "b", mailsync.Record{Cursor: &other}))
	if _, _, err := cl.AcquireLeaseCursor(ctx, "a", "h2", time.Minute); !errors.Is(err, mailsync.ErrBusy) {
		t.Fatalf("a held lease: %v, want ErrBusy", err)
	}
	must(t, l.ReleaseLease(ctx, lease))
	next, cur, err := cl.AcquireLeaseCursor(ctx, "a", "h2", time.Minute)
	if err != nil || cur != c || next.Token <= lease.Token {
		t.Fatalf("after release: lease %+v, cursor %q, %v; want token > %d and cursor %q", next, cur, err, lease.Token, c)
	}
	if stored, _ := s.Cursor(ctx, "a"); stored != cur {
		t.Fatalf("Cursor %q, the lease's %q", stored, cur)
	}
}
