package mailsync

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sort"
	"strings"
	"time"
)

// Sync turns the new mail of connector c into tickets through sink.
//
// The contract: a message is acknowledged to the mailbox (the post-action)
// and recorded as done in the State only after the sink accepted its ticket;
// a re-run never creates a second ticket for one message (every ticket
// carries a stable idempotency key); a crash at any point loses nothing; one
// bad message never blocks the rest (it is quarantined, or left for the next
// run). Cancelling ctx stops cleanly and keeps what was done.
//
// The error is non-nil when the sync could not run or stopped early; the
// report then still says what was done. Messages that failed individually
// are in the report, not in the error.
func Sync(ctx context.Context, c Connector, m Mapping, sink Sink, opts ...Option) (*Report, error) {
	o := options{maxAttempts: 5, backoff: 500 * time.Millisecond, maxWait: 30 * time.Second, batchSize: 50, sinkFailMax: 3}
	for _, opt := range opts {
		opt(&o)
	}
	if o.logger == nil {
		o.logger = slog.New(slog.DiscardHandler)
	}
	if o.state == nil {
		o.state = NewMemoryState()
	}
	if o.batchSize <= 0 {
		o.batchSize = 50
	}
	if o.maxAttempts <= 0 {
		o.maxAttempts = 1
	}
	o.parser.Limits = o.parser.Limits.withDefaults()
	o.parser.bufs = newBufferPool()
	conn := c.Connection()
	if o.provider == "" {
		o.provider = providerName(conn)
	}
	rep := &Report{Connection: conn.Name, Provider: o.provider, Started: time.Now()}
	defer func() { rep.Duration = time.Since(rep.Started) }()

	if err := validateSync(conn, m, o.action, o.threading, o.routing); err != nil {
		return rep, err
	}
	rep.DryRun = o.dryRun
	e := &engine{c: c, conn: conn, m: m, sink: sink, o: o, rep: rep, log: o.logger.With("connection", conn.Name)}
	e.th = newThreader(o.threading, conn.User, o.state, e.log)
	if o.routing != nil {
		e.router = newRouter(*o.routing, m)
	}
	e.classify = o.classify
	if strings.Contains(conn.User, "@") {
		e.classify.OwnAddresses = append([]string{conn.User}, o.classify.OwnAddresses...)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var lease *leaseKeeper
	if !o.dryRun { // a preview writes nothing, so it needs no lease
		var err error
		if lease, err = holdLease(ctx, o.state, conn.Name, o.leaseHolder, o.leaseTTL, cancel); err != nil {
			return rep, fmt.Errorf("mailsync: %s: %w", conn.Name, err)
		}
	}
	defer lease.release(ctx)
	e.lease = lease
	err := e.run(ctx)
	if lost := lease.err(); lost != nil {
		err = lost // the lease was lost: nothing after that was recorded
	}
	return rep, err
}

func providerName(c Connection) string {
	if c.OAuth != nil && c.Protocol == "" {
		return string(c.OAuth.Provider)
	}
	return string(c.Protocol)
}

func validateSync(conn Connection, m Mapping, a PostAction, t Threading, r *Routing) error {
	var problems []Problem
	checks := []error{conn.Validate(), m.Validate(), a.Validate(), t.Validate()}
	if r != nil {
		checks = append(checks, r.Validate(conn, m))
	}
	for _, err := range checks {
		var ce *ConfigError
		if errors.As(err, &ce) {
			problems = append(problems, ce.Problems...)
		}
	}
	if len(problems) > 0 {
		return &ConfigError{Problems: problems}
	}
	if !conn.Enabled {
		return fmt.Errorf("%w: %s", ErrDisabled, conn.Name)
	}
	if !conn.ServesTicketType(m.TicketType) {
		return fmt.Errorf("%w: %q is not in %q's connected_with %q", ErrNotConnectedWith, m.TicketType, conn.Name, conn.ConnectedWith)
	}
	return nil
}

type engine struct {
	c    Connector
	conn Connection
	m    Mapping
	sink Sink
	o    options
	rep  *Report
	log  *slog.Logger

	done, total int
	missing     int // listed but not delivered by Fetch

	classify ClassifyOptions
	th       *threader
	lease    *leaseKeeper // nil unless the State is a Leaser
	router   *router      // nil without WithRouting
}

func (e *engine) run(ctx context.Context) error {
	cursor, err := e.cursor(ctx)
	if err != nil {
		return fmt.Errorf("mailsync: reading state: %w", err)
	}
	listStart := time.Now()
	var listing *Listing
	err = e.retry(ctx, "list", func() error {
		var lerr error
		listing, lerr = e.c.List(ctx, cursor)
		return lerr
	})
	e.rep.ListTime = time.Since(listStart)
	if err != nil {
		return err
	}
	e.rep.Notes = append(e.rep.Notes, listing.Notes...)
	for _, n := range listing.Notes {
		e.log.Warn("mailsync: provider note", "note", n)
	}
	e.rep.Seen = len(listing.Messages)

	keys := make([]string, len(listing.Messages))
	for i, r := range listing.Messages {
		keys[i] = StateKey(r.Key)
	}
	processed, err := e.o.state.Processed(ctx, e.conn.Name, keys)
	if err != nil {
		return fmt.Errorf("mailsync: reading state: %w", err)
	}
	var todo []MessageRef
	for i, r := range listing.Messages {
		if processed[i] {
			e.rep.add(Outcome{Key: r.Key, Status: StatusAlreadyDone})
			continue
		}
		todo = append(todo, r)
	}
	if listing.Complete && !e.o.dryRun {
		if err := e.o.state.Prune(ctx, e.conn.Name, keys); err != nil {
			return fmt.Errorf("mailsync: pruning state: %w", err)
		}
	}
	e.total = len(todo)
	e.log.Debug("mailsync: listed", "seen", len(keys), "new", len(todo))

	for start := 0; start < len(todo); start += e.o.batchSize {
		end := min(start+e.o.batchSize, len(todo))
		if err := e.batch(ctx, todo[start:end]); err != nil {
			e.logSummary(err)
			return err
		}
	}
	if e.missing > 0 {
		e.rep.Notes = append(e.rep.Notes, fmt.Sprintf("%d listed messages were not delivered (gone from the mailbox?); the cursor stays for the next run", e.missing))
	}
	if e.rep.Failed == 0 && e.missing == 0 && listing.Cursor != cursor && !e.o.dryRun {
		cur := listing.Cursor
		if err := e.o.state.Record(context.WithoutCancel(ctx), e.conn.Name, Record{Cursor: &cur, Fence: e.lease.fence()}); err != nil {
			return fmt.Errorf("mailsync: saving cursor: %w", err)
		}
		e.rep.Cursor = cur
	}
	e.logSummary(nil)
	return nil
}

// cursor is the connection's stored cursor: the one read with the lease
// (CursorLeaser), else the State's.
func (e *engine) cursor(ctx context.Context) (Cursor, error) {
	if e.lease != nil && e.lease.hasCursor {
		return e.lease.cursor, nil
	}
	return e.o.state.Cursor(ctx, e.conn.Name)
}

func (e *engine) logSummary(err error) {
	attrs := []any{"seen", e.rep.Seen, "created", e.rep.Created, "already_done", e.rep.AlreadyDone,
		"quarantined", e.rep.Quarantined, "failed", e.rep.Failed, "duration", time.Since(e.rep.Started)}
	if err != nil {
		e.log.Error("mailsync: sync stopped", append(attrs, "err", err)...)
		return
	}
	e.log.Info("mailsync: sync done", attrs...)
}

// accepted is a message whose ticket or quarantine the sink holds, waiting
// for the post-action and the state record.
type accepted struct {
	ref      MessageRef
	outcome  Outcome
	postable bool // the sink holds the whole message, so the post-action may run
}

// batch fetches and processes refs, retrying temporary failures for the refs
// not yet handled, then acknowledges and records what the sink accepted.
func (e *engine) batch(ctx context.Context, refs []MessageRef) error {
	var acc []accepted
	var fetch []MessageRef
	var fatal error
	for _, r := range refs {
		if e.oversized(r.Size) {
			a, err := e.quarantineUnfetched(ctx, r)
			if err != nil { // ctx cancelled: keep what is done, fetch nothing
				fatal, fetch = err, nil
				break
			}
			if a != nil {
				acc = append(acc, *a)
			}
			continue
		}
		fetch = append(fetch, r)
	}
	handled := map[string]bool{}
	attempt := 0
	for len(fetch) > 0 {
		// Two stages: the fetch callback only spools and hashes each raw
		// message (so the connection keeps streaming), one worker parses
		// and hands it to the sink, in order. The sink is never called
		// concurrently.
		jobs := make(chan *spooled, 4)
		results := make(chan workResult, 1)
		stop := make(chan struct{}) // closed when the worker gave up
		go func() {
			var wr workResult
			for j := range jobs {
				if wr.err != nil {
					j.close()
					continue
				}
				a, err := e.process(ctx, j)
				j.close()
				if err != nil {
					wr.err = err
					close(stop)
					continue
				}
				if a != nil {
					wr.acc = append(wr.acc, *a)
				}
			}
			results <- wr
		}()
		err := e.c.Fetch(ctx, fetch, func(ref MessageRef, r io.Reader) error {
			if err := ctx.Err(); err != nil {
				return err
			}
			var j *spooled
			if r == nil { // the connector says the message is gone
				j = &spooled{ref: ref, gone: true}
			} else {
				var err error
				if j, err = e.spool(ctx, ref, r); err != nil {
					return err
				}
			}
			select {
			case jobs <- j:
				handled[ref.Key] = true
				return nil
			case <-stop:
				j.close()
				return errWorkerStopped
			}
		})
		close(jobs)
		wr := <-results
		acc = append(acc, wr.acc...)
		if wr.err != nil && (err == nil || errors.Is(err, errWorkerStopped)) {
			err = wr.err
		}
		var rest []MessageRef
		for _, r := range fetch {
			if !handled[r.Key] {
				rest = append(rest, r)
			}
		}
		if err == nil {
			// Refs the connector skipped are gone from the mailbox, or were
			// dropped: either way the cursor must not move past them now.
			e.missing += len(rest)
			break
		}
		attempt++
		if ctx.Err() != nil || !Temporary(err) || attempt >= e.o.maxAttempts {
			fatal = err
			if ctx.Err() != nil {
				fatal = ctx.Err()
			}
			break
		}
		if werr := e.wait(ctx, err, attempt); werr != nil {
			fatal = werr
			break
		}
		e.log.Warn("mailsync: fetch failed, retrying", "attempt", attempt, "remaining", len(rest), "err", err)
		fetch = rest
	}
	if err := e.settle(ctx, refs, acc); err != nil && fatal == nil {
		fatal = err
	}
	return fatal
}

// settle runs the post-action on the messages the sink holds, records them
// as done, and adds every outcome of the batch to the report once, in
// mailbox order (the order of refs). It runs even when ctx was cancelled,
// so that finished work is kept.
func (e *engine) settle(ctx context.Context, refs []MessageRef, acc []accepted) error {
	if len(acc) == 0 {
		return nil
	}
	pos := make(map[string]int, len(refs))
	for i, r := range refs {
		pos[r.Key] = i
	}
	sort.SliceStable(acc, func(i, k int) bool { return pos[acc[i].ref.Key] < pos[acc[k].ref.Key] })
	if e.o.dryRun { // a preview: no post-action, no record
		for _, a := range acc {
			e.rep.add(a.outcome)
		}
		return nil
	}
	bg := context.WithoutCancel(ctx)
	rec := Record{Done: map[string]string{}, Threads: map[string]string{}, Fence: e.lease.fence()}
	var post []MessageRef
	for _, a := range acc {
		if a.postable && a.outcome.Status != StatusFailed && e.o.action.Kind != LeaveUntouched {
			post = append(post, a.ref)
		}
	}
	ackFailed := map[string]error{}
	if len(post) > 0 {
		if ctx.Err() != nil {
			for _, r := range post {
				ackFailed[r.Key] = ctx.Err()
			}
		} else if err := e.retry(ctx, "ack", func() error { return e.c.Ack(ctx, post, e.o.action) }); err != nil {
			e.log.Warn("mailsync: post-action failed; the messages stay for the next run", "action", e.o.action.Kind, "count", len(post), "err", err)
			for _, r := range post {
				ackFailed[r.Key] = err
			}
		}
	}
	outcomes := make([]Outcome, len(acc))
	for i, a := range acc {
		o := a.outcome
		if k := StateKey(o.MessageID); o.MessageID != "" && o.TicketID != "" && rec.Threads[k] == "" {
			rec.Threads[k] = o.TicketID // the ticket exists, acknowledged or not; the first owner keeps the id
		}
		if err, bad := ackFailed[a.ref.Key]; bad {
			o.Status, o.Err = StatusFailed, fmt.Errorf("post-action %s: %w", e.o.action.Kind, err)
		} else if o.Status != StatusFailed {
			rec.Done[StateKey(a.ref.Key)] = o.TicketID
		}
		outcomes[i] = o
	}
	var err error
	if len(rec.Done) > 0 || len(rec.Threads) > 0 {
		if err = e.o.state.Record(bg, e.conn.Name, rec); err != nil {
			err = e.recordEach(bg, outcomes, err)
		}
	}
	for _, o := range outcomes {
		e.rep.add(o)
	}
	return err
}

// recordEach records the outcomes one message at a time after the batch's
// Record failed, so that one message's data cannot stop the mailbox: a
// message whose thread entry cannot be stored is recorded as done without
// it, with a warning. Only when not even that works for any message (the
// State is down) does the sync stop.
func (e *engine) recordEach(ctx context.Context, outcomes []Outcome, batchErr error) error {
	if errors.Is(batchErr, ErrLeaseLost) {
		return fmt.Errorf("mailsync: saving state: %w", batchErr) // fenced: nothing may be written
	}
	e.log.Warn("mailsync: saving the batch failed; saving message by message", "err", batchErr)
	var stored, failed int
	var lastErr error
	for i := range outcomes {
		o := &outcomes[i]
		if o.Status == StatusFailed {
			continue
		}
		rec := Record{Done: map[string]string{StateKey(o.Key): o.TicketID}, Fence: e.lease.fence()}
		if o.MessageID != "" && o.TicketID != "" {
			rec.Threads = map[string]string{StateKey(o.MessageID): o.TicketID}
		}
		err := e.o.state.Record(ctx, e.conn.Name, rec)
		if err != nil && rec.Threads != nil {
			rec.Threads = nil
			if err = e.o.state.Record(ctx, e.conn.Name, rec); err == nil {
				o.Warnings = append(o.Warnings, "its thread entry could not be saved: replies to it will not find its ticket by Message-ID")
				e.log.Warn("mailsync: thread entry not saved", "key", o.Key, "ticket", o.TicketID)
			}
		}
		if err != nil {
			// The sink holds it: a re-run finds it again and the sink reports a duplicate.
			failed, lastErr = failed+1, err
			o.Warnings = append(o.Warnings, "not recorded as done in the state: "+err.Error())
			continue
		}
		stored++
	}
	if stored == 0 && failed > 0 {
		return fmt.Errorf("mailsync: saving state: %w", lastErr)
	}
	return nil
}

type workResult struct {
	acc []accepted
	err error
}

// errWorkerStopped aborts a fetch once the worker stopped on an error.
var errWorkerStopped = errors.New("mailsync: processing stopped")

func (e *engine) tick() {
	e.done++
	if e.o.progress != nil {
		e.o.progress(Progress{Done: e.done, Total: e.total})
	}
}
