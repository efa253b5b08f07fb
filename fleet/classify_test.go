package fleet

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/mailsync/mailsync"
)

func TestClassify(t *testing.T) {
	for _, c := range []struct {
		err    error
		kind   ErrorKind
		action Action
	}{
		{nil, KindNone, ActionNext},
		{fmt.Errorf("x: %w", mailsync.ErrBusy), KindBusy, ActionNext},
		{fmt.Errorf("x: %w", mailsync.ErrAuth), KindAuth, ActionStop},
		{fmt.Errorf("x: %w", mailsync.ErrConsentRequired), KindConsentRequired, ActionStop},
		{mailsync.NewConfigError(mailsync.Problem{Field: "user", Message: "is required"}), KindInvalidConfig, ActionStop},
		{fmt.Errorf("x: %w", mailsync.ErrDisabled), KindInvalidConfig, ActionStop},
		{fmt.Errorf("x: %w", ErrPasswordRequired), KindPasswordRequired, ActionStop},
		{fmt.Errorf("x: %w", ErrUnknownConnection), KindUnknownConnection, ActionStop},
		{&mailsync.ThrottledError{RetryAfter: time.Minute}, KindThrottled, ActionRetryAfter},
		{&mailsync.ThrottledError{}, KindThrottled, ActionBackoff},
		{fmt.Errorf("%w: %w", mailsync.ErrServerLimit, mailsync.ErrConnection), KindServerLimit, ActionBackoff},
		{fmt.Errorf("x: %w", mailsync.ErrConnection), KindConnection, ActionBackoff},
		{fmt.Errorf("x: %w", mailsync.ErrTLS), KindTLS, ActionBackoff},
		{context.DeadlineExceeded, KindTimeout, ActionBackoff},
		{context.Canceled, KindCanceled, ActionNext},
		{errors.New("disk full"), KindOther, ActionBackoff},
	} {
		k, a := Classify(c.err)
		if k != c.kind || a != c.action {
			t.Errorf("Classify(%v) = %q, %d; want %q, %d", c.err, k, a, c.kind, c.action)
		}
	}
}

func TestBackoff(t *testing.T) {
	for _, c := range []struct {
		failures int
		want     time.Duration
	}{{1, time.Second}, {2, 2 * time.Second}, {3, 4 * time.Second}, {4, 8 * time.Second}, {5, 10 * time.Second}, {60, 10 * time.Second}} {
		for range 20 {
			got := Backoff(time.Second, 10*time.Second, c.failures)
			if got > c.want || got < c.want*9/10 {
				t.Errorf("Backoff(1s, 10s, %d) = %s, want in [%s, %s]", c.failures, got, c.want*9/10, c.want)
			}
		}
	}
}
