package imap

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/mailsync/mailsync"
)

// Fetch streams the raw bytes of refs to fn, in order (each run of refs of
// one folder — the folder their key names — after selecting it), in batches of UID
// FETCH (UID BODY.PEEK[]) — PEEK, so the server does not set \Seen. The
// reader passed to fn streams the literal from the network, at most
// Options.ReadAhead bytes ahead of fn, and is valid only during fn.
// For refs no longer in the folder (expunged, or from an older
// UIDVALIDITY) fn is called with a nil reader, as mailsync.Connector
// specifies; stale keys are reported first, expunged ones after the batch
// that missed them. An error from fn stops the fetch and is returned as is; a
// broken connection is an error wrapping mailsync.ErrConnection and the
// next call reconnects.
func (c *Connector) Fetch(ctx context.Context, refs []mailsync.MessageRef, fn func(mailsync.MessageRef, io.Reader) error) error {
	if len(refs) == 0 {
		return nil
	}
	return c.do(ctx, "fetch", func(s *session) error {
		for _, run := range s.cfg.byFolder(refs) {
			if err := s.ensureSelected(ctx, run.folder); err != nil {
				return err
			}
			ts, gone := s.targets(run.refs)
			for _, r := range gone {
				if err := s.reportGone(r, fn); err != nil {
					return err
				}
			}
			for _, batch := range s.batches(ts) {
				if err := s.fetchBatch(ctx, batch, fn); err != nil {
					return err
				}
			}
		}
		return nil
	})
}

// batches splits ts into runs of strictly increasing UIDs (the server
// answers in UID order, so each run arrives in the caller's order), each at
// most BatchSize messages and BatchBytes announced bytes.
func (s *session) batches(ts []target) [][]target {
	var out [][]target
	var cur []target
	var bytes int64
	for _, t := range ts {
		size := max(t.ref.Size, 0)
		if len(cur) > 0 && (t.uid <= cur[len(cur)-1].uid || len(cur) >= s.cfg.opts.BatchSize || bytes+size > s.cfg.opts.BatchBytes) {
			out = append(out, cur)
			cur, bytes = nil, 0
		}
		cur = append(cur, t)
		bytes += size
	}
	if len(cur) > 0 {
		out = append(out, cur)
	}
	return out
}

var bodyPeek = []*imap.FetchItemBodySection{{Peek: true}}

// fetchBatch fetches one batch and calls fn for each message as its
// literal arrives. Requested messages the server did not deliver are looked
// up again afterwards (see fetchMissing).
func (s *session) fetchBatch(ctx context.Context, batch []target, fn func(mailsync.MessageRef, io.Reader) error) error {
	var set imap.UIDSet
	byUID := make(map[imap.UID]int, len(batch))
	for i, t := range batch {
		set.AddNum(t.uid)
		byUID[t.uid] = i
	}
	delivered := make([]bool, len(batch))
	// A response may carry the UID but no body (a server whose session
	// still shows a message another client expunged): only a body handed
	// to fn counts as delivered; the rest is looked up again below.
	handed := make(map[mailsync.MessageRef]bool, len(batch))
	userFn := fn
	fn = func(ref mailsync.MessageRef, r io.Reader) error {
		handed[ref] = true
		return userFn(ref, r)
	}
	// go-imap writes UID first in a UID FETCH and routes a response to
	// this command only once it has seen the UID.
	cmd := s.client.Fetch(set, &imap.FetchOptions{UID: true, BodySection: bodyPeek})
	claim := func(uid imap.UID) (*target, bool) {
		i, ok := byUID[uid]
		if !ok || delivered[i] {
			return nil, false
		}
		delivered[i] = true
		return &batch[i], true
	}
	var failed error
	if s.cfg.opts.ReadAhead > 0 {
		// The producer has closed (or abandoned) the command.
		if failed = s.fetchBatchAhead(ctx, cmd, claim, fn); failed != nil {
			s.abandon()
			return failed
		}
	} else {
		for failed == nil {
			msg := cmd.Next()
			if msg == nil {
				break
			}
			failed = s.deliver(ctx, msg, claim, fn)
		}
		if failed != nil && s.abandon() {
			return failed
		}
		// Close drains what is left of the batch (bounded by BatchBytes).
		if err := cmd.Close(); err != nil && failed == nil {
			failed = s.check(ctx, "fetch", err)
		}
		if failed != nil {
			return failed
		}
	}
	var missing []target
	for _, t := range batch {
		if !handed[t.ref] {
			missing = append(missing, t)
		}
	}
	if len(missing) > 0 {
		return s.fetchMissing(ctx, missing, userFn)
	}
	return nil
}

// deliver reads one FETCH response and hands its body to fn. claim maps the
// response's UID to the target it answers (false: not ours, or already
// delivered).
func (s *session) deliver(ctx context.Context, msg *imapclient.FetchMessageData, claim func(imap.UID) (*target, bool), fn func(mailsync.MessageRef, io.Reader) error) error {
	var t *target
	for {
		item := msg.Next()
		if item == nil {
			return nil
		}
		switch item := item.(type) {
		case imapclient.FetchItemDataUID:
			if t == nil {
				var ok bool
				if t, ok = claim(item.UID); !ok {
					return nil // the rest of the response is discarded
				}
			} else if t.uid != item.UID {
				return fmt.Errorf("imap: fetch: the server answered for UID %d where UID %d was expected", item.UID, t.uid)
			}
		case imapclient.FetchItemDataBodySection:
			if t == nil {
				var ok bool
				if t, ok = claim(0); !ok {
					continue
				}
			}
			var body io.Reader
			if item.Literal != nil {
				body = &literalReader{r: item.Literal, left: item.Literal.Size()}
			} else {
				s.cfg.log.Warn("imap: server returned NIL for a message body", slog.String("key", t.ref.Key))
				body = bytes.NewReader(nil)
			}
			if err := s.call(ctx, t.ref, body, fn); err != nil {
				return err
			}
		}
	}
}

// reportGone tells fn that ref is no longer in the folder.
func (s *session) reportGone(ref mailsync.MessageRef, fn func(mailsync.MessageRef, io.Reader) error) error {
	s.raw.paused.Add(1)
	defer s.raw.paused.Add(-1)
	return fn(ref, nil)
}

// literalReader turns a literal that ends early (the server closed the
// connection cleanly in the middle) into io.ErrUnexpectedEOF: go-imap
// reports io.EOF, and a truncated message must never pass for a whole one.
type literalReader struct {
	r    io.Reader
	left int64
}

func (l *literalReader) Read(p []byte) (int, error) {
	n, err := l.r.Read(p)
	l.left -= int64(n)
	if err == io.EOF && l.left > 0 {
		err = io.ErrUnexpectedEOF
	}
	return n, err
}

// call runs fn on one message body and sorts out whose error it is.
func (s *session) call(ctx context.Context, ref mailsync.MessageRef, body io.Reader, fn func(mailsync.MessageRef, io.Reader) error) error {
	br := &bodyReader{r: body, m: s.raw, g: s.guard}
	s.raw.paused.Add(1)
	err := fn(ref, br)
	s.raw.paused.Add(-1)
	br.done = true
	if br.err != nil {
		s.literalFailed.Store(true)
		// The literal could not be read: the connection broke (or ctx
		// closed it), whatever fn made of it.
		return s.check(ctx, "fetch "+ref.Key, br.err)
	}
	return err
}

// fetchMissing deals with requested messages a batch did not deliver.
// Usually they were expunged meanwhile and are skipped. But a server that
// sends the UID after the body literal makes go-imap drop the response, so
// the ones still present are fetched one by one by sequence number, which
// go-imap routes without the UID: SEARCH UID <uid> gives the number, and
// no EXPUNGE may arrive between that SEARCH and the FETCH (RFC 3501 7.4.1).
func (s *session) fetchMissing(ctx context.Context, missing []target, fn func(mailsync.MessageRef, io.Reader) error) error {
	var set imap.UIDSet
	for _, t := range missing {
		set.AddNum(t.uid)
	}
	data, err := s.client.UIDSearch(&imap.SearchCriteria{UID: []imap.UIDSet{set}}, nil).Wait()
	if err != nil {
		return s.check(ctx, "search missing", err)
	}
	present, _ := data.All.(imap.UIDSet)
	if len(present) == 0 { // all expunged meanwhile
		for _, t := range missing {
			if err := s.reportGone(t.ref, fn); err != nil {
				return err
			}
		}
		return nil
	}
	s.cfg.log.Warn("imap: the server did not deliver messages that still exist (UID after the body?); fetching them one by one",
		slog.Int("count", len(missing)), slog.Int64("unrouted_bodies", s.strayBodies.Load()))
	for i := range missing {
		t := &missing[i]
		if !present.Contains(t.uid) {
			if err := s.reportGone(t.ref, fn); err != nil {
				return err
			}
			continue
		}
		sd, err := s.client.Search(&imap.SearchCriteria{UID: []imap.UIDSet{imap.UIDSetNum(t.uid)}}, nil).Wait()
		if err != nil {
			return s.check(ctx, "search", err)
		}
		seqs, _ := sd.All.(imap.SeqSet)
		nums, ok := seqs.Nums()
		if ok && len(nums) == 0 {
			if err := s.reportGone(t.ref, fn); err != nil { // expunged meanwhile
				return err
			}
			continue
		}
		if !ok || len(nums) != 1 {
			continue // a nonsensical answer: leave it for the next sync
		}
		cmd := s.client.Fetch(imap.SeqSetNum(nums[0]), &imap.FetchOptions{UID: true, BodySection: bodyPeek})
		var failed error
		claimed := false
		for failed == nil {
			msg := cmd.Next()
			if msg == nil {
				break
			}
			failed = s.deliver(ctx, msg, func(uid imap.UID) (*target, bool) {
				if claimed || (uid != 0 && uid != t.uid) {
					return nil, false
				}
				claimed = true
				return t, true
			}, fn)
		}
		if failed != nil && s.abandon() {
			return failed
		}
		if err := cmd.Close(); err != nil && failed == nil {
			failed = s.check(ctx, "fetch", err)
		}
		if failed != nil {
			return failed
		}
	}
	return nil
}

// abandon reports whether a message literal failed to read (the
// connection broke under it); the connection is then closed and the
// pending command left alone. go-imap's decoder has already moved on, and
// draining the command would read the failed literal a second time, which
// races with the decoder. When no literal failed, the command must be
// drained instead (Close): the decoder waits for the literal it handed out
// to be consumed, even on a closed connection.
func (s *session) abandon() bool {
	if !s.literalFailed.Swap(false) {
		return false
	}
	s.markBroken()
	s.raw.Conn.Close()
	return true
}
