package gmail

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"

	"github.com/mailsync/mailsync"
)

// Fetch streams the raw RFC 5322 bytes of refs, in order, to fn.
//
// Up to BatchSize messages travel in one batch request of
// messages.get format=raw calls (a single one goes without the batch
// envelope). Each answer is decoded while it streams (see newRawReader),
// so no message is held whole in memory. Messages no longer in the
// mailbox (HTTP 404) are skipped. When a call inside a batch is
// throttled or fails with a 5xx, the messages before it have been
// delivered; the rest are asked for again after a back-off, with a
// smaller batch. An error from fn stops the fetch and is returned as is.
func (c *Connector) Fetch(ctx context.Context, refs []mailsync.MessageRef, fn func(mailsync.MessageRef, io.Reader) error) (err error) {
	defer func() { err = c.cfg.scrub.err(err) }()
	if err := c.check(ctx); err != nil {
		return err
	}
	stalls := 0
	for i := 0; i < len(refs); {
		n := min(c.batchSize, len(refs)-i)
		var done int
		var retry *APIError
		var err error
		if n == 1 {
			done, err = c.fetchOne(ctx, refs[i], fn)
		} else {
			done, retry, err = c.fetchBatch(ctx, refs[i:i+n], fn)
		}
		i += done
		if err != nil {
			return err
		}
		if done > 0 {
			stalls = 0
		}
		switch {
		case retry != nil:
			if c.batchSize > 1 {
				c.batchSize = max(1, c.batchSize/2)
				c.cfg.log.WarnContext(ctx, "gmail: throttled inside a batch; smaller batches", "batch_size", c.batchSize, "reason", retry.Reason)
			}
			if err := c.api.backoff(ctx, retry, stalls); err != nil {
				return err
			}
			stalls++
		case done == 0 && i < len(refs):
			// The batch answer left our next message out.
			stalls++
			if stalls > c.cfg.retries+1 {
				return fmt.Errorf("gmail: messages.get (batch): the answers keep leaving out message %s: %w", refs[i].Key, mailsync.ErrConnection)
			}
			if err := sleep(ctx, c.api.delay(stalls-1, 0)); err != nil {
				return err
			}
		}
	}
	return nil
}

// rawTarget is the path and query of messages.get format=raw for key,
// with prettyPrint=false as the generated client sends it.
func (c *Connector) rawTarget(key string) (string, url.Values) {
	return c.api.userPath("messages/" + url.PathEscape(key)), url.Values{"format": {"raw"}, "prettyPrint": {"false"}}
}

// fetchOne fetches one message without the batch envelope.
func (c *Connector) fetchOne(ctx context.Context, ref mailsync.MessageRef, fn func(mailsync.MessageRef, io.Reader) error) (int, error) {
	path, q := c.rawTarget(ref.Key)
	resp, err := c.api.send(ctx, request{op: "messages.get", method: http.MethodGet, path: path, query: q})
	if isNotFound(err) {
		c.cfg.log.DebugContext(ctx, "gmail: message gone, skipped", "key", ref.Key)
		return 1, fn(ref, nil) // tell Sync it is gone, so the cursor may move on
	}
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if err := c.deliver(ref, resp.Body, fn); err != nil {
		return 0, err
	}
	return 1, nil
}

// outOfOrderBudget bounds the decoded bytes fetchBatch keeps in memory for
// answers that arrive before the one due (Google documents Content-IDs,
// not an order). An answer over the budget is dropped and asked for again.
const outOfOrderBudget = 16 << 20

// early is an answer that arrived before its turn.
type early struct {
	raw   []byte    // the decoded message, or nil
	gone  bool      // 404
	retry *APIError // throttled or 5xx
	err   error     // any other failure
	drop  bool      // over the budget: ask again
}

// fetchBatch fetches refs in one batch request. It returns how many of
// refs, from the first, were delivered or skipped as gone; and, when it
// stopped at a throttled or failed call, that call's error to back off on.
func (c *Connector) fetchBatch(ctx context.Context, refs []mailsync.MessageRef, fn func(mailsync.MessageRef, io.Reader) error) (int, *APIError, error) {
	calls := make([]innerCall, len(refs))
	for i, r := range refs {
		path, q := c.rawTarget(r.Key)
		calls[i] = innerCall{method: http.MethodGet, target: path + "?" + q.Encode()}
	}
	br, err := c.api.batch(ctx, "messages.get", calls)
	if err != nil {
		return 0, nil, err
	}
	defer br.close()
	done := 0
	waiting := map[int]*early{}
	budget := outOfOrderBudget
	for done < len(refs) {
		// Answers that came early and are now due.
		if e, ok := waiting[done]; ok {
			delete(waiting, done)
			switch {
			case e.drop:
				return done, nil, nil
			case e.retry != nil:
				return done, e.retry, nil
			case e.err != nil:
				return done, nil, e.err
			case e.gone:
				if err := fn(refs[done], nil); err != nil { // tell Sync it is gone
					return done, nil, err
				}
			default:
				if err := fn(refs[done], bytes.NewReader(e.raw)); err != nil {
					return done, nil, err
				}
				budget += len(e.raw)
			}
			done++
			continue
		}
		idx, part, err := br.next()
		if err == io.EOF {
			break
		}
		if err != nil {
			if ctx.Err() != nil {
				return done, nil, ctx.Err()
			}
			return done, nil, err
		}
		if idx < done || waiting[idx] != nil {
			continue // not ours, or a duplicate
		}
		if idx > done {
			e := &early{}
			switch part.StatusCode {
			case http.StatusOK:
				e.raw, e.drop, e.err = c.readEarly(refs[idx], part.Body, budget)
				budget -= len(e.raw)
			case http.StatusNotFound:
				e.gone = true
			default:
				e.retry, e.err = c.partError(part)
			}
			waiting[idx] = e
			continue
		}
		switch part.StatusCode {
		case http.StatusOK:
			if err := c.deliver(refs[idx], part.Body, fn); err != nil {
				return done, nil, err
			}
		case http.StatusNotFound:
			c.cfg.log.DebugContext(ctx, "gmail: message gone, skipped", "key", refs[idx].Key)
			if err := fn(refs[idx], nil); err != nil {
				return done, nil, err
			}
		default:
			retry, err := c.partError(part)
			return done, retry, err
		}
		done++
	}
	return done, nil, nil
}

// partError reads a failed batch part: a retryable error to back off on,
// or the error to stop with.
func (c *Connector) partError(part *http.Response) (*APIError, error) {
	body, _ := io.ReadAll(io.LimitReader(part.Body, 64<<10))
	ae := parseAPIError("messages.get", part.StatusCode, part.Header, body, time.Now())
	c.cfg.scrub.apiError(ae)
	if ae.retryable() {
		return ae, nil
	}
	return nil, ae
}

// readEarly decodes an answer that came before its turn into memory, or
// reports drop when it is larger than budget.
func (c *Connector) readEarly(ref mailsync.MessageRef, body io.Reader, budget int) (raw []byte, drop bool, err error) {
	r, err := newRawReader(body, ref.Key)
	if err != nil {
		return nil, false, err
	}
	raw, err = io.ReadAll(io.LimitReader(r, int64(budget)+1))
	if err != nil {
		return nil, false, err
	}
	if len(raw) > budget {
		return nil, true, nil
	}
	return raw, false, nil
}

// deliver decodes one messages.get answer and hands it to fn.
func (c *Connector) deliver(ref mailsync.MessageRef, body io.Reader, fn func(mailsync.MessageRef, io.Reader) error) error {
	r, err := newRawReader(body, ref.Key)
	if err != nil {
		return err
	}
	return fn(ref, r)
}
