package pop3_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/mailsync/mailsync"
	"github.com/mailsync/mailsync/pop3"
)

const loginDelayText = "[LOGIN-DELAY] Attempt to log in within the minimum login delay interval"

// A login refused with [LOGIN-DELAY] carries the server's delay in
// RetryAfter: from the CAPA value, or from the response code (issue 11
// item 7).
func TestLoginDelayRetryAfter(t *testing.T) {
	for _, tc := range []struct {
		name, capa, text string
		want             time.Duration
	}{
		{"CAPA value", "60", loginDelayText, 60 * time.Second},
		{"CAPA value with USER", "900 USER", loginDelayText, 900 * time.Second},
		{"response code argument", "", "[LOGIN-DELAY 120] Too soon", 120 * time.Second},
		{"no value anywhere", "", loginDelayText, pop3.DefaultLoginDelay},
		{"unparsable CAPA value", "soon", loginDelayText, pop3.DefaultLoginDelay},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newFake(t)
			s.set(func(k *fakeKnobs) { k.passErr, k.loginDelay = tc.text, tc.capa })
			_, err := pop3.Check(ctxT(t), s.connection(), fakeOpts(s))
			var te *mailsync.ThrottledError
			if !errors.As(err, &te) || !errors.Is(err, mailsync.ErrThrottled) {
				t.Fatalf("Check: %v, want a *mailsync.ThrottledError", err)
			}
			if te.RetryAfter != tc.want {
				t.Fatalf("RetryAfter %s, want %s (%v)", te.RetryAfter, tc.want, err)
			}
			if !strings.Contains(err.Error(), "LOGIN-DELAY") || !strings.Contains(err.Error(), "retry after "+tc.want.String()) {
				t.Errorf("error text %q should name the delay", err)
			}
		})
	}
}

// Inside the login delay a Connector does not log in again: it returns the
// throttled error with the time left, so that the engine's retries do not
// hammer the server and the host can schedule the next attempt. After the
// delay it logs in.
func TestLoginDelayNotRetriedInsideWindow(t *testing.T) {
	s := newFake(t)
	s.add("u1", []byte("a\r\n"))
	s.set(func(k *fakeKnobs) { k.passErr, k.loginDelay = loginDelayText, "1" })
	c := mustNew(t, s.connection(), fakeOpts(s))
	ctx := ctxT(t)
	_, err := c.List(ctx, "")
	var te *mailsync.ThrottledError
	if !errors.As(err, &te) || te.RetryAfter != time.Second {
		t.Fatalf("List: %v, want a ThrottledError with RetryAfter 1s", err)
	}
	for i := 0; i < 4; i++ {
		_, err = c.List(ctx, "")
		if !errors.As(err, &te) || te.RetryAfter <= 0 || te.RetryAfter > time.Second {
			t.Fatalf("List %d inside the delay: %v, want a ThrottledError with 0 < RetryAfter <= 1s", i+2, err)
		}
	}
	if n := strings.Count(strings.Join(s.seen(), " "), "PASS"); n != 1 {
		t.Fatalf("%d logins inside the login delay, want 1: %v", n, s.seen())
	}
	s.set(func(k *fakeKnobs) { k.passErr = "" })
	time.Sleep(te.RetryAfter + 50*time.Millisecond)
	l, err := c.List(ctx, "")
	if err != nil || len(l.Messages) != 1 {
		t.Fatalf("List after the delay: %+v, %v", l, err)
	}
}
