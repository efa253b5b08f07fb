package gmail

import (
	"context"
	"fmt"
	"sync"

	gmailapi "google.golang.org/api/gmail/v1"

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
//   - Delete moves the messages to the trash (messages.trash, one call per
//     message, ackParallel at a time), or, only with
//     Options.PermanentDelete, deletes them for good
//     (messages.batchDelete).
//
// Every action is idempotent: repeating it changes nothing, and messages
// already gone are ignored. Up to 1,000 messages take one request for
// MarkRead, MoveToFolder and PermanentDelete.
func (c *Connector) Ack(ctx context.Context, refs []mailsync.MessageRef, action mailsync.PostAction) (err error) {
	defer func() { err = c.cfg.scrub.err(err) }()
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
			return c.batchDelete(ctx, ids)
		}
		return c.trash(ctx, ids)
	}
	return fmt.Errorf("gmail: post-action %q: %w", action.Kind, mailsync.ErrUnsupported)
}

// modify changes labels with batchModify, 1,000 ids per request. Gmail
// ignores ids of messages that are gone; should it answer 404 instead,
// the messages are modified one by one (messages.modify), skipping the
// gone ones.
func (c *Connector) modify(ctx context.Context, ids, add, remove []string) error {
	var err error
	for start := 0; start < len(ids) && err == nil; start += maxIDs {
		chunk := ids[start:min(start+maxIDs, len(ids))]
		err = c.api.do(ctx, "messages.batchModify", func(ctx context.Context) error {
			return c.api.svc.Users.Messages.BatchModify(c.cfg.user, &gmailapi.BatchModifyMessagesRequest{
				Ids: chunk, AddLabelIds: add, RemoveLabelIds: remove,
			}).Context(ctx).Do()
		})
	}
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
	req := &gmailapi.ModifyMessageRequest{AddLabelIds: add, RemoveLabelIds: remove}
	return c.each(ctx, "messages.modify", ids, func(ctx context.Context, id string) error {
		_, err := c.api.svc.Users.Messages.Modify(c.cfg.user, id, req).Context(ctx).Do()
		return err
	})
}

// batchDelete deletes ids for good with messages.batchDelete, 1,000 ids
// per request. The API documents that it does not care whether the
// messages still exist, so repeating it is harmless.
func (c *Connector) batchDelete(ctx context.Context, ids []string) error {
	for start := 0; start < len(ids); start += maxIDs {
		chunk := ids[start:min(start+maxIDs, len(ids))]
		err := c.api.do(ctx, "messages.batchDelete", func(ctx context.Context) error {
			return c.api.svc.Users.Messages.BatchDelete(c.cfg.user, &gmailapi.BatchDeleteMessagesRequest{Ids: chunk}).Context(ctx).Do()
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// trash moves ids to the trash with messages.trash.
func (c *Connector) trash(ctx context.Context, ids []string) error {
	return c.each(ctx, "messages.trash", ids, func(ctx context.Context, id string) error {
		_, err := c.api.svc.Users.Messages.Trash(c.cfg.user, id).Context(ctx).Do()
		return err
	})
}

// ackParallel is how many per-message calls (messages.trash, and
// messages.modify in the batchModify fallback) are in flight at once.
// The Gmail API has no batchTrash, and the generated client cannot use
// the batch endpoint, so a few concurrent calls keep a large Ack from
// being thousands of sequential round trips while staying well under
// the per-user rate limit (250 quota units/s; a trash costs 5).
const ackParallel = 4

// each runs call for every id, ackParallel at a time, each call with
// do's retries and back-off. A 404 (the message is gone) counts as done.
// The first other error stops the rest and is returned.
func (c *Connector) each(ctx context.Context, op string, ids []string, call func(ctx context.Context, id string) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	sem := make(chan struct{}, ackParallel)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var first error
	fail := func(err error) {
		mu.Lock()
		defer mu.Unlock()
		if first == nil {
			first = err
			cancel()
		}
	}
	for _, id := range ids {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			err := c.api.do(ctx, op, func(ctx context.Context) error { return call(ctx, id) })
			if err != nil && !isNotFound(err) {
				fail(err)
			}
		}()
	}
	wg.Wait()
	mu.Lock()
	defer mu.Unlock()
	if first != nil {
		return first
	}
	return ctx.Err()
}
