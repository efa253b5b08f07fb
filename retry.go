package mailsync

import (
	"context"
	"errors"
	"time"
)

// retry calls f until it succeeds, fails permanently, or the attempts run out.
func (e *engine) retry(ctx context.Context, what string, f func() error) error {
	for attempt := 1; ; attempt++ {
		err := f()
		if err == nil || ctx.Err() != nil || !Temporary(err) || attempt >= e.o.maxAttempts {
			if err != nil && ctx.Err() != nil {
				return ctx.Err()
			}
			return err
		}
		e.log.Warn("mailsync: retrying", "op", what, "attempt", attempt, "err", err)
		if werr := e.wait(ctx, err, attempt); werr != nil {
			return werr
		}
	}
}

// wait sleeps before retry number attempt: the server's Retry-After when it
// gave one, otherwise exponential back-off.
func (e *engine) wait(ctx context.Context, err error, attempt int) error {
	d := e.o.backoff << (attempt - 1)
	var te *ThrottledError
	if errors.As(err, &te) && te.RetryAfter > 0 {
		d = te.RetryAfter
		if d > e.o.maxWait {
			return err // the server wants us gone for long: stop, the next run resumes
		}
	} else if d > e.o.maxWait || d <= 0 {
		d = e.o.maxWait
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
