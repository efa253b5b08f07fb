package gmail

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"

	"github.com/mailsync/mailsync"
)

// maxIDs is the id limit of batchModify and batchDelete.
const maxIDs = 1000

// Ack applies action to refs:
//
//   - MarkRead removes the UNREAD label (messages.batchModify).
//   - MoveToFolder adds the label named action.Folder, creating it when
//     missing (labels.create), and removes the configured source labels
//     (messages.batchModify): Gmail's "move".
//   - Delete moves the messages to the trash (messages.trash, batched),
//     or, only with Options.PermanentDelete, deletes them for good
//     (messages.batchDelete).
//
// Every action is idempotent: repeating it changes nothing, and messages
// already gone are ignored. Up to 1,000 messages take one request for
// MarkRead, MoveToFolder and PermanentDelete; trashing takes one batch
// request per BatchSize messages.
func (c *Connector) Ack(ctx context.Context, refs []mailsync.MessageRef, action mailsync.PostAction) error {
	if err := c.check(ctx); err != nil {
		return err
	}
	if err := action.Validate(); err != nil {
		return err
	}
	ids := make([]string, 0, len(refs))
	seen := map[string]bool{}
	for _, r := range refs {
		if r.Key != "" && !seen[r.Key] {
			seen[r.Key] = true
			ids = append(ids, r.Key)
		}
	}
	if len(ids) == 0 {
		return nil
	}
	switch action.Kind {
	case mailsync.LeaveUntouched:
		return nil
	case mailsync.MarkRead:
		return c.modify(ctx, ids, nil, []string{"UNREAD"})
	case mailsync.MoveToFolder:
		target, err := c.targetLabel(ctx, action.Folder)
		if err != nil {
			return err
		}
		src, err := c.resolve(ctx, false)
		if err != nil {
			return err
		}
		var remove []string
		for _, l := range src {
			if l.ID != target {
				remove = append(remove, l.ID)
			}
		}
		err = c.modify(ctx, ids, []string{target}, remove)
		if err != nil && isInvalidLabel(err) {
			// The target label was deleted since we looked it up.
			c.forgetTarget(target)
			if target, err = c.targetLabel(ctx, action.Folder); err != nil {
				return err
			}
			err = c.modify(ctx, ids, []string{target}, remove)
		}
		return err
	case mailsync.Delete:
		if c.cfg.permDelete {
			return c.batchIDs(ctx, "messages.batchDelete", "messages/batchDelete", ids, nil, nil)
		}
		return c.trash(ctx, ids)
	}
	return fmt.Errorf("gmail: post-action %q: %w", action.Kind, mailsync.ErrUnsupported)
}

// modify changes labels with batchModify, 1,000 ids per request. Gmail
// ignores ids of messages that are gone; should it answer 404 instead,
// the messages are modified one by one in batches, skipping the gone ones.
func (c *Connector) modify(ctx context.Context, ids, add, remove []string) error {
	err := c.batchIDs(ctx, "messages.batchModify", "messages/batchModify", ids, add, remove)
	if !isNotFound(err) {
		return err
	}
	for _, l := range add {
		ok, lerr := c.labelExists(ctx, l)
		if lerr != nil {
			return lerr
		}
		if !ok {
			return fmt.Errorf("gmail: label %s: %w: %w", l, mailsync.ErrFolderNotFound, err)
		}
	}
	c.cfg.log.DebugContext(ctx, "gmail: batchModify answered 404; modifying one by one")
	body := map[string][]string{"addLabelIds": add, "removeLabelIds": remove}
	return c.each(ctx, "messages.modify", ids, "/modify", body)
}

func (c *Connector) batchIDs(ctx context.Context, op, rest string, ids, add, remove []string) error {
	for start := 0; start < len(ids); start += maxIDs {
		chunk := ids[start:min(start+maxIDs, len(ids))]
		body := map[string][]string{"ids": chunk}
		if add != nil {
			body["addLabelIds"] = add
		}
		if remove != nil {
			body["removeLabelIds"] = remove
		}
		if err := c.api.call(ctx, op, http.MethodPost, rest, nil, body, nil); err != nil {
			return err
		}
	}
	return nil
}

// trash moves ids to the trash with messages.trash calls in batches.
func (c *Connector) trash(ctx context.Context, ids []string) error {
	return c.each(ctx, "messages.trash", ids, "/trash", nil)
}

// each POSTs messages/{id}{suffix} for every id through the batch
// endpoint, ignoring 404 (gone) and retrying throttled calls.
func (c *Connector) each(ctx context.Context, op string, ids []string, suffix string, body any) error {
	var payload []byte
	if body != nil {
		b, err := jsonBytes(body)
		if err != nil {
			return err
		}
		payload = b
	}
	pending := ids
	stalls := 0
	for len(pending) > 0 {
		n := min(c.batchSize, len(pending))
		chunk := pending[:n]
		calls := make([]innerCall, n)
		for i, id := range chunk {
			calls[i] = innerCall{method: http.MethodPost, target: c.api.userPath("messages/" + url.PathEscape(id) + suffix), body: payload}
		}
		if payload == nil {
			for i := range calls {
				calls[i].body = []byte{}
			}
		}
		okIdx, retry, err := c.runBatch(ctx, op, calls)
		if err != nil {
			return err
		}
		var rest []string
		for i, id := range chunk {
			if !okIdx[i] {
				rest = append(rest, id)
			}
		}
		pending = append(rest, pending[n:]...)
		if len(rest) == 0 {
			stalls = 0
			continue
		}
		if retry == nil {
			// Answers missing from the batch: ask again.
			retry = &APIError{Op: op, Code: http.StatusBadGateway, Message: "batch answer incomplete", kind: mailsync.ErrConnection}
		}
		if c.batchSize > 1 {
			c.batchSize = max(1, c.batchSize/2)
		}
		if err := c.api.backoff(ctx, retry, stalls); err != nil {
			return err
		}
		stalls++
	}
	return nil
}

// runBatch sends calls in one batch and reports which succeeded (2xx or
// 404). A throttled or 5xx call leaves its entry false and is returned
// for back-off; any other failure is returned as the error.
func (c *Connector) runBatch(ctx context.Context, op string, calls []innerCall) ([]bool, *APIError, error) {
	ok := make([]bool, len(calls))
	br, err := c.api.batch(ctx, op, calls)
	if err != nil {
		return nil, nil, err
	}
	defer br.close()
	var retry *APIError
	for {
		idx, part, err := br.next()
		if err == io.EOF {
			return ok, retry, nil
		}
		if err != nil {
			return nil, nil, err
		}
		if idx < 0 {
			continue
		}
		if part.StatusCode/100 == 2 || part.StatusCode == http.StatusNotFound {
			ok[idx] = true
			continue
		}
		b, _ := io.ReadAll(io.LimitReader(part.Body, 64<<10))
		ae := parseAPIError(op, part.StatusCode, part.Header, b, time.Now())
		if !ae.retryable() {
			return nil, nil, ae
		}
		if retry == nil || ae.retryAfter > retry.retryAfter {
			retry = ae
		}
	}
}
