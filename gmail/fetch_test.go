package gmail_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/api/googleapi"

	"github.com/mailsync/mailsync"
	"github.com/mailsync/mailsync/connectortest"
	"github.com/mailsync/mailsync/gmail"
	"github.com/mailsync/mailsync/internal/fakegmail"
)

func TestFetchRawEncodings(t *testing.T) {
	raw, _ := connectortest.NewLargeMessage("enc", 70001) // length not a multiple of 3
	for name, enc := range map[string]fakegmail.RawEncoding{"padded": fakegmail.Padded, "unpadded": fakegmail.Unpadded, "escaped": fakegmail.EscapedPadding} {
		e := newEnv(t, fakegmail.Options{RawEncoding: enc})
		ids := []string{e.fake.Deliver(raw), e.fake.Deliver(msg("small"))}
		for _, batch := range []int{1, 50} {
			c := e.connector(func(o *gmail.Options) { o.BatchSize = batch })
			order, got := fetchAll(t, c, refsOf(ids))
			if !slices.Equal(order, ids) || !bytes.Equal(got[ids[0]], raw) || !bytes.Equal(got[ids[1]], msg("small")) {
				t.Fatalf("%s, batch %d: order %q, sizes %d %d", name, batch, order, len(got[ids[0]]), len(got[ids[1]]))
			}
		}
	}
}

func TestFetchBatchingOrderAndGone(t *testing.T) {
	for _, reverse := range []bool{false, true} {
		e := newEnv(t, fakegmail.Options{ReverseBatch: reverse})
		ids := e.deliver("m", 120)
		gone := []string{ids[0], ids[57], ids[119]}
		for _, id := range gone {
			e.fake.DeleteMessage(id)
		}
		c := e.connector()
		e.fake.ResetStats()
		order, got := fetchAll(t, c, refsOf(ids))
		var want []string
		for _, id := range ids {
			if !slices.Contains(gone, id) {
				want = append(want, id)
			}
		}
		if !slices.Equal(order, want) {
			t.Fatalf("reverse %v: delivered %d in order %v, want %d", reverse, len(order), order[:min(5, len(order))], len(want))
		}
		for _, id := range want {
			m, _ := e.fake.Message(id)
			if !bytes.Equal(got[id], m.Raw) {
				t.Fatalf("message %s differs", id)
			}
		}
		// 120 messages in batches of 50: 3 requests, even out of order.
		if st := e.fake.Stats(); st.Requests != 3 || st.BatchRequests != 3 || st.ByOp["messages.get"] != 120 {
			t.Errorf("reverse %v: %+v", reverse, st)
		}
		// The gone ones are reported to Sync, so its cursor can move on.
		if g := fetchGone(t, c, refsOf(ids)); !slices.Equal(g, gone) {
			t.Fatalf("reverse %v: reported gone %v, want %v", reverse, g, gone)
		}
	}
}

func TestFetchFnErrorStops(t *testing.T) {
	e := newEnv(t, fakegmail.Options{})
	ids := e.deliver("m", 10)
	c := e.connector()
	stop := errors.New("sink full")
	n := 0
	err := c.Fetch(context.Background(), refsOf(ids), func(r mailsync.MessageRef, rd io.Reader) error {
		n++
		if n == 3 {
			return stop
		}
		return nil
	})
	if err != stop || n != 3 {
		t.Fatalf("err %v after %d messages", err, n)
	}
	// The connector is still usable afterwards.
	order, _ := fetchAll(t, c, refsOf(ids[3:]))
	if !slices.Equal(order, ids[3:]) {
		t.Fatalf("after an fn error: %q", order)
	}
}

// fn may read only part of a message; the rest is skipped.
func TestFetchPartialRead(t *testing.T) {
	e := newEnv(t, fakegmail.Options{})
	big, _ := connectortest.NewLargeMessage("big", 300<<10)
	ids := []string{e.fake.Deliver(big), e.fake.Deliver(msg("after"))}
	c := e.connector()
	var second []byte
	err := c.Fetch(context.Background(), refsOf(ids), func(r mailsync.MessageRef, rd io.Reader) error {
		if r.Key == ids[0] {
			_, err := io.ReadFull(rd, make([]byte, 100))
			return err
		}
		var err error
		second, err = io.ReadAll(rd)
		return err
	})
	if err != nil || !bytes.Equal(second, msg("after")) {
		t.Fatalf("%v, %q", err, second)
	}
}

func TestFetchThrottledInsideBatch(t *testing.T) {
	e := newEnv(t, fakegmail.Options{})
	ids := e.deliver("m", 60)
	c := e.connector()
	// Calls 11 to 14 of messages.get are throttled, once with a 403; the
	// 429 asks (in its message, as Gmail does) to retry in 300 ms.
	e.fake.InjectFault(fakegmail.Fault{Op: "messages.get", Status: 429, After: 10, Times: 3, RetryIn: 300 * time.Millisecond})
	e.fake.InjectFault(fakegmail.Fault{Op: "messages.get", Status: 403, Reason: "userRateLimitExceeded", After: 0, Times: 1})
	e.fake.ResetStats()
	start := time.Now()
	order, got := fetchAll(t, c, refsOf(ids))
	if d := time.Since(start); d < 250*time.Millisecond {
		t.Errorf("took %s: the retry time in the message was not honoured", d)
	}
	if !slices.Equal(order, ids) || len(got) != 60 {
		t.Fatalf("delivered %d, in order: %v", len(order), slices.Equal(order, ids))
	}
	st := e.fake.Stats()
	if st.BatchRequests < 3 || st.BatchRequests > 8 {
		t.Errorf("batch requests %d", st.BatchRequests)
	}
	t.Logf("60 messages with 4 throttled calls: %d batch requests, %d calls", st.BatchRequests, st.ByOp["messages.get"])
}

func TestThrottlingPersistsIsThrottledError(t *testing.T) {
	e := newEnv(t, fakegmail.Options{})
	ids := e.deliver("m", 3)
	c := e.connector(func(o *gmail.Options) { o.MaxRetries = 2 })
	e.fake.InjectFault(fakegmail.Fault{Op: "*", Status: 429, Times: 100})
	_, err := c.List(context.Background(), "")
	var te *mailsync.ThrottledError
	if !errors.As(err, &te) || !errors.Is(err, mailsync.ErrThrottled) || !mailsync.Temporary(err) {
		t.Fatalf("List: %v", err)
	}
	if st := e.fake.Stats(); st.Requests != 3 {
		t.Errorf("%d requests, want 1 + 2 retries", st.Requests)
	}
	// Inside batches as well.
	e.fake.ResetStats()
	err = c.Fetch(context.Background(), refsOf(ids), func(mailsync.MessageRef, io.Reader) error { return nil })
	if !errors.As(err, &te) {
		t.Fatalf("Fetch: %v", err)
	}
}

func TestRetryAfterHonoured(t *testing.T) {
	e := newEnv(t, fakegmail.Options{})
	c := e.connector(func(o *gmail.Options) { o.RetryBase = time.Microsecond })
	e.fake.InjectFault(fakegmail.Fault{Op: "users.getProfile", Status: 429, RetryAfter: "1"})
	start := time.Now()
	if _, err := c.List(context.Background(), ""); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d < 900*time.Millisecond {
		t.Fatalf("retried after %s, the server asked for 1 s", d)
	}
	// Longer than MaxWait: returned at once for the engine to reschedule.
	e.fake.InjectFault(fakegmail.Fault{Op: "users.getProfile", Status: 503, RetryAfter: "3600"})
	start = time.Now()
	_, err := c.List(context.Background(), "")
	if !errors.Is(err, mailsync.ErrConnection) || time.Since(start) > 5*time.Second {
		t.Fatalf("got %v after %s", err, time.Since(start))
	}
	e.fake.InjectFault(fakegmail.Fault{Op: "users.getProfile", Status: 429, RetryAfter: "3600"})
	_, err = c.List(context.Background(), "")
	var te *mailsync.ThrottledError
	if !errors.As(err, &te) || te.RetryAfter != time.Hour {
		t.Fatalf("got %v", err)
	}
}

func TestServerErrorsRetriedThenConnection(t *testing.T) {
	e := newEnv(t, fakegmail.Options{})
	e.deliver("m", 2)
	c := e.connector()
	e.fake.InjectFault(fakegmail.Fault{Op: "messages.list", Status: 500, Times: 2})
	if l, err := c.List(context.Background(), ""); err != nil || len(l.Messages) != 2 {
		t.Fatalf("after two 500s: %v", err)
	}
	e.fake.InjectFault(fakegmail.Fault{Op: "messages.list", Status: 503, Times: 50})
	_, err := c.List(context.Background(), "")
	if !errors.Is(err, mailsync.ErrConnection) {
		t.Fatalf("got %v", err)
	}
}

func TestInsufficientScopeIsAuth(t *testing.T) {
	e := newEnv(t, fakegmail.Options{})
	ids := e.deliver("m", 1)
	c := e.connector()
	e.fake.InjectFault(fakegmail.Fault{Op: "messages.batchModify", Status: 403, Reason: "insufficientPermissions"})
	err := c.Ack(context.Background(), refsOf(ids), mailsync.PostAction{Kind: mailsync.MarkRead})
	if !errors.Is(err, mailsync.ErrAuth) || mailsync.Temporary(err) || !strings.Contains(err.Error(), "scope") {
		t.Fatalf("got %v", err)
	}
	// The generated client's error is kept.
	var ge *googleapi.Error
	if !errors.As(err, &ge) || ge.Code != 403 || len(ge.Errors) != 1 || ge.Errors[0].Reason != "insufficientPermissions" {
		t.Fatalf("googleapi.Error: %#v", ge)
	}
}

func TestConnectionErrors(t *testing.T) {
	e := newEnv(t, fakegmail.Options{})
	ids := e.deliver("m", 2)
	c := e.connector()
	e.fake.SetUnavailable(true)
	if _, err := c.List(context.Background(), ""); !errors.Is(err, mailsync.ErrConnection) {
		t.Fatalf("List: %v", err)
	}
	err := c.Fetch(context.Background(), refsOf(ids), func(mailsync.MessageRef, io.Reader) error { return nil })
	if !errors.Is(err, mailsync.ErrConnection) {
		t.Fatalf("Fetch: %v", err)
	}
	e.fake.SetUnavailable(false)
	// Nothing listens any more.
	e.fake.Close()
	if _, err := c.List(context.Background(), ""); !errors.Is(err, mailsync.ErrConnection) {
		t.Fatalf("closed server: %v", err)
	}
}

// Cancelling ctx in the middle of a large message stops the fetch at once.
func TestFetchCancel(t *testing.T) {
	e := newEnv(t, fakegmail.Options{})
	big, _ := connectortest.NewLargeMessage("big", 2<<20)
	ids := []string{e.fake.Deliver(big), e.fake.Deliver(msg("x"))}
	c := e.connector()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var cancelled time.Time
	var readErr error
	err := c.Fetch(ctx, refsOf(ids), func(r mailsync.MessageRef, rd io.Reader) error {
		if _, err := io.ReadFull(rd, make([]byte, 1000)); err != nil {
			return err
		}
		cancelled = time.Now()
		cancel()
		_, readErr = io.Copy(io.Discard, rd)
		return readErr
	})
	if !errors.Is(err, context.Canceled) || time.Since(cancelled) > 2*time.Second {
		t.Fatalf("got %v (read %v) %s after cancelling", err, readErr, time.Since(cancelled))
	}
	if _, err := c.List(ctx, ""); !errors.Is(err, context.Canceled) {
		t.Fatalf("List on a cancelled ctx: %v", err)
	}
}

func TestClosedConnector(t *testing.T) {
	e := newEnv(t, fakegmail.Options{})
	c := e.connector()
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatal("second Close:", err)
	}
	if _, err := c.List(context.Background(), ""); err == nil {
		t.Fatal("List after Close")
	}
}

// The batch answer's parts can be missing: the messages are asked for
// again; a server that keeps leaving one out ends in ErrConnection.
func TestBatchAnswerMissingParts(t *testing.T) {
	e := newEnv(t, fakegmail.Options{})
	ids := e.deliver("m", 4)
	drop := 2 // drop the first two answers of each batch
	hook := &trimTransport{base: e.fake.Client().Transport, drop: &drop}
	c := e.connector(func(o *gmail.Options) { o.HTTPClient = &http.Client{Transport: hook}; o.MaxRetries = 2 })
	err := c.Fetch(context.Background(), refsOf(ids), func(mailsync.MessageRef, io.Reader) error { return nil })
	if !errors.Is(err, mailsync.ErrConnection) {
		t.Fatalf("got %v", err)
	}
	drop = 0
	order, _ := fetchAll(t, c, refsOf(ids))
	if !slices.Equal(order, ids) {
		t.Fatal(order)
	}
}
