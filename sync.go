package mailsync

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"regexp"
	"strings"
	"time"
)

// Status is the outcome of one message in a sync.
type Status string

// The outcomes.
const (
	StatusCreated     Status = "created"      // a new ticket
	StatusDuplicate   Status = "duplicate"    // the sink already had the ticket (a re-run after a crash)
	StatusAlreadyDone Status = "already_done" // the state says it was done; not downloaded
	StatusQuarantined Status = "quarantined"  // handed to the sink raw, with the reason
	StatusFailed      Status = "failed"       // left for the next run
	StatusFollowUp    Status = "follow_up"    // added to an existing ticket (see Outcome.Rule)
	StatusDropped     Status = "dropped"      // routed to RouteDrop: no ticket, mail left untouched
	StatusGone        Status = "gone"         // listed, but deleted from the mailbox before it was fetched
)

// Outcome is what happened to one message.
type Outcome struct {
	Key       string `json:"key"`
	MessageID string `json:"message_id,omitempty"`
	Status    Status `json:"status"`
	TicketID  string `json:"ticket_id,omitempty"`
	// Rule is the threading rule that made it a follow-up.
	Rule ThreadRule `json:"rule,omitempty"`
	// Kind is the classification of the mail (auto-reply, bounce, …).
	Kind Kind `json:"kind,omitempty"`
	// RelatedTicketID is, for a new ticket, the ticket a reply pointed to
	// but could not join (closed and refused, gone, or the sender is not a
	// participant); Reason says which.
	RelatedTicketID string `json:"related_ticket_id,omitempty"`
	// Reason explains a decision that is not obvious from the status, e.g.
	// why a reply became a new ticket.
	Reason string `json:"reason,omitempty"`
	// Warnings are problems with this message that did not stop it, e.g.
	// side data (its thread entry) the State could not record.
	Warnings []string `json:"warnings,omitempty"`
	// Err says why a message was quarantined or failed.
	Err error `json:"-"`
}

// Report summarises a sync.
type Report struct {
	Connection  string        `json:"connection"`
	Provider    string        `json:"provider"`
	Started     time.Time     `json:"started"`
	Duration    time.Duration `json:"duration"`
	ListTime    time.Duration `json:"list_time"`
	Seen        int           `json:"seen"`         // messages listed
	Created     int           `json:"created"`      // new tickets
	AlreadyDone int           `json:"already_done"` // skipped by state, or duplicates the sink already had
	FollowUps   int           `json:"follow_ups"`   // added to existing tickets
	Dropped     int           `json:"dropped"`      // routed to RouteDrop
	Gone        int           `json:"gone"`         // deleted before they could be fetched
	Quarantined int           `json:"quarantined"`
	Failed      int           `json:"failed"`
	// Cursor is the cursor stored at the end ("" if unchanged because something failed).
	Cursor   Cursor    `json:"-"`
	Notes    []string  `json:"notes,omitempty"`
	Messages []Outcome `json:"messages,omitempty"`
}

func (r *Report) add(o Outcome) {
	switch o.Status {
	case StatusCreated:
		r.Created++
	case StatusDuplicate, StatusAlreadyDone:
		r.AlreadyDone++
	case StatusFollowUp:
		r.FollowUps++
	case StatusDropped:
		r.Dropped++
	case StatusGone:
		r.Gone++
	case StatusQuarantined:
		r.Quarantined++
	case StatusFailed:
		r.Failed++
	}
	r.Messages = append(r.Messages, o)
}

// Progress is reported during long syncs.
type Progress struct {
	Done, Total int
}

// Option configures Sync.
type Option func(*options)

type options struct {
	state       State
	logger      *slog.Logger
	action      PostAction
	parser      Parser
	batchSize   int
	maxAttempts int
	backoff     time.Duration
	maxWait     time.Duration
	progress    func(Progress)
	provider    string
	threading   Threading
	limiter     *SenderLimiter
	classify    ClassifyOptions
	sinkFailMax int
}

// WithState sets where cursors and processed keys persist (default: a fresh
// MemoryState, so every Sync starts from scratch — pass a durable one).
func WithState(s State) Option { return func(o *options) { o.state = s } }

// WithLogger sets the logger (default: discard).
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.logger = l } }

// WithPostAction sets what happens to a message once its ticket is stored
// (default LeaveUntouched).
func WithPostAction(a PostAction) Option { return func(o *options) { o.action = a } }

// WithLimits sets the per-message limits (default DefaultLimits).
func WithLimits(l Limits) Option { return func(o *options) { o.parser.Limits = l } }

// WithTempDir sets where large messages and attachments are spooled.
func WithTempDir(dir string) Option { return func(o *options) { o.parser.TempDir = dir } }

// WithBatchSize sets how many messages one Fetch asks for (default 50).
func WithBatchSize(n int) Option { return func(o *options) { o.batchSize = n } }

// WithRetry sets how often a failing connector call is tried (default 5)
// and the first back-off delay (default 500 ms, doubling, at most 30 s).
func WithRetry(attempts int, backoff time.Duration) Option {
	return func(o *options) { o.maxAttempts, o.backoff = attempts, backoff }
}

// WithProgress sets a callback called after every message, one call at a
// time, from the goroutine that processes messages.
func WithProgress(f func(Progress)) Option { return func(o *options) { o.progress = f } }

// WithThreading configures how replies find their ticket (default: the
// references rule, then the subject rule). Threading needs a FollowUpSink.
func WithThreading(t Threading) Option { return func(o *options) { o.threading = t } }

// WithSenderLimit stops mail loops: each sender opens at most l's number
// of tickets per window; more of its mail is held as follow-ups on its
// latest ticket, or quarantined. Keep one limiter across syncs.
func WithSenderLimit(l *SenderLimiter) Option { return func(o *options) { o.limiter = l } }

// WithClassify sets the connection's own addresses (besides its User) and
// the host's loop header for Classify.
func WithClassify(c ClassifyOptions) Option { return func(o *options) { o.classify = c } }

// WithSinkFailureLimit sets after how many syncs in which the sink refused
// to store a message's ticket the message is quarantined instead (default
// 3; the count needs a State that implements FailureCounter, as MemoryState
// and boltstate do). One message the sink cannot store, e.g. for a file name
// its storage rejects, then stops holding the cursor back for good.
func WithSinkFailureLimit(n int) Option { return func(o *options) { o.sinkFailMax = n } }

// WithProviderName sets the provider name recorded in Ticket.Source (default
// the connection's protocol or OAuth provider).
func WithProviderName(name string) Option { return func(o *options) { o.provider = name } }

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

	if err := validateSync(conn, m, o.action, o.threading); err != nil {
		return rep, err
	}
	e := &engine{c: c, conn: conn, m: m, sink: sink, o: o, rep: rep, log: o.logger.With("connection", conn.Name), threads: map[string]string{}}
	pattern := o.threading.SubjectPattern
	if pattern == "" {
		pattern = DefaultSubjectPattern
	}
	e.subjectRE = regexp.MustCompile(pattern) // validated above
	e.classify = o.classify
	if strings.Contains(conn.User, "@") {
		e.classify.OwnAddresses = append([]string{conn.User}, o.classify.OwnAddresses...)
	}
	return rep, e.run(ctx)
}

func providerName(c Connection) string {
	if c.OAuth != nil && c.Protocol == "" {
		return string(c.OAuth.Provider)
	}
	return string(c.Protocol)
}

func validateSync(conn Connection, m Mapping, a PostAction, t Threading) error {
	var problems []Problem
	for _, err := range []error{conn.Validate(), m.Validate(), a.Validate(), t.Validate()} {
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

	classify  ClassifyOptions
	subjectRE *regexp.Regexp
	threads   map[string]string // Message-ID → ticket id, made in this sync
}

func (e *engine) run(ctx context.Context) error {
	cursor, err := e.o.state.Cursor(ctx, e.conn.Name)
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
	if listing.Complete {
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
	if e.rep.Failed == 0 && e.missing == 0 && listing.Cursor != cursor {
		cur := listing.Cursor
		if err := e.o.state.Record(context.WithoutCancel(ctx), e.conn.Name, Record{Cursor: &cur}); err != nil {
			return fmt.Errorf("mailsync: saving cursor: %w", err)
		}
		e.rep.Cursor = cur
	}
	e.logSummary(nil)
	return nil
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
		if r.Size > e.o.parser.Limits.MaxMessageBytes {
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
	if err := e.settle(ctx, acc); err != nil && fatal == nil {
		fatal = err
	}
	return fatal
}

// settle runs the post-action on accepted messages and records them as done.
// It runs even when ctx was cancelled, so that finished work is kept.
func (e *engine) settle(ctx context.Context, acc []accepted) error {
	if len(acc) == 0 {
		return nil
	}
	bg := context.WithoutCancel(ctx)
	rec := Record{Done: map[string]string{}, Threads: map[string]string{}}
	var post []MessageRef
	for _, a := range acc {
		if a.postable && e.o.action.Kind != LeaveUntouched {
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
		} else {
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
	e.log.Warn("mailsync: saving the batch failed; saving message by message", "err", batchErr)
	var stored, failed int
	var lastErr error
	for i := range outcomes {
		o := &outcomes[i]
		if o.Status == StatusFailed {
			continue
		}
		rec := Record{Done: map[string]string{StateKey(o.Key): o.TicketID}}
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

// process turns one raw message into a ticket or a quarantined message.
// A nil *accepted with a nil error means the message failed and stays for
// the next run; an error stops the fetch (ctx cancelled).
// rawSpoolMemory is how much of one raw message stays in memory before it
// spools to a temporary file. At most six messages are in flight (one being
// read, four queued, one being processed), so this bounds memory at 6 MiB.
const rawSpoolMemory = 1 << 20

// spooled is one raw message read off the connection, waiting for the worker.
type spooled struct {
	ref   MessageRef
	gone  bool   // the connector reported it deleted
	raw   *spool // the bytes, up to the size limit
	n     int64  // bytes spooled
	total int64  // the whole size when it was over the limit, else n
	sum   []byte // SHA-256 of the raw bytes
}

func (j *spooled) close() {
	if j.raw != nil {
		j.raw.Close()
	}
}

type workResult struct {
	acc []accepted
	err error
}

// errWorkerStopped aborts a fetch once the worker stopped on an error.
var errWorkerStopped = errors.New("mailsync: processing stopped")

// spool reads one message off the connection into a spool, hashing it. A
// message over the size limit is drained (the connection must stay usable)
// and only its head kept.
func (e *engine) spool(ctx context.Context, ref MessageRef, r io.Reader) (*spooled, error) {
	raw := newSpool(e.o.parser.TempDir, rawSpoolMemory, e.o.parser.bufs)
	hash := sha256.New()
	limit := e.o.parser.Limits.MaxMessageBytes
	n, err := io.Copy(io.MultiWriter(raw, hash), io.LimitReader(r, limit+1))
	total := n
	if err == nil && n > limit {
		var rest int64
		rest, err = io.Copy(io.Discard, r)
		total += rest
	}
	if err != nil {
		raw.Close()
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, fmt.Errorf("%w: reading message %s: %w", ErrConnection, ref.Key, err)
	}
	return &spooled{ref: ref, raw: raw, n: n, total: total, sum: hash.Sum(nil)}, nil
}

// process turns one spooled message into a ticket, a follow-up or a
// quarantined message. A nil *accepted with a nil error means the message
// failed and stays for the next run; an error stops the sync (ctx cancelled).
func (e *engine) process(ctx context.Context, j *spooled) (*accepted, error) {
	defer e.tick()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	ref, raw, n := j.ref, j.raw, j.n
	if j.gone {
		return &accepted{ref: ref, outcome: Outcome{Key: ref.Key, Status: StatusGone}}, nil
	}
	limit := e.o.parser.Limits.MaxMessageBytes
	src := Source{Connection: e.conn.Name, Provider: e.o.provider, MessageKey: ref.Key, Received: time.Now().UTC()}
	if n > limit {
		q := &Quarantined{IdempotencyKey: keyForRef(e.conn.Name, ref.Key), Source: src, Raw: io.LimitReader(raw.Reader(), limit), Size: j.total, Truncated: true,
			Err: &MessageError{Key: ref.Key, Kind: ErrOversized, Reason: fmt.Sprintf("%d bytes, more than the limit of %d", j.total, limit)}}
		return e.quarantine(ctx, ref, q, false)
	}
	digest := hex.EncodeToString(j.sum)
	msg, perr := e.o.parser.Parse(raw.Reader())
	if perr != nil {
		q := &Quarantined{IdempotencyKey: keyForContent(e.conn.Name, "", digest), Source: src, Raw: raw.Reader(), Size: n,
			Err: &MessageError{Key: ref.Key, Kind: kindOf(perr), Reason: perr.Error(), Err: perr}}
		return e.quarantine(ctx, ref, q, true)
	}
	defer msg.Close()
	src.MessageID = msg.MessageID
	t := &Ticket{
		IdempotencyKey: keyForContent(e.conn.Name, msg.MessageID, digest),
		Type:           e.m.TicketType,
		Fields:         e.m.Apply(msg),
		Source:         src,
		Message:        msg,
		Classification: Classify(msg, e.classify),
	}
	if e.m.MapsAttachments() {
		t.Attachments = msg.Attachments
	}
	base := Outcome{Key: ref.Key, MessageID: msg.MessageID, Kind: t.Classification.Kind}
	switch e.m.route(t.Classification.Kind) {
	case RouteDrop:
		base.Status = StatusDropped
		return &accepted{ref: ref, outcome: base}, nil
	case RouteQuarantine:
		q := &Quarantined{IdempotencyKey: t.IdempotencyKey, Source: src, Raw: raw.Reader(), Size: n,
			Err: &MessageError{Key: ref.Key, Reason: fmt.Sprintf("routed to quarantine: %s (%s)", t.Classification.Kind, strings.Join(t.Classification.Reasons, "; "))}}
		return e.quarantine(ctx, ref, q, true)
	}
	o, err := e.deliver(ctx, t, base)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if times, ok := e.countSinkFailure(ctx, ref); ok && times >= e.o.sinkFailMax {
			e.log.Warn("mailsync: sink refused the message again; quarantining it", "key", ref.Key, "message_id", msg.MessageID, "times", times, "err", err)
			q := &Quarantined{IdempotencyKey: t.IdempotencyKey, Source: src, Raw: raw.Reader(), Size: n,
				Err: &MessageError{Key: ref.Key, Kind: ErrSink, Reason: fmt.Sprintf("the sink refused its ticket in %d syncs: %v", times, err), Err: err}}
			return e.quarantine(ctx, ref, q, true)
		}
		e.log.Warn("mailsync: sink refused the message; left for the next run", "key", ref.Key, "message_id", msg.MessageID, "err", err)
		base.Status, base.Err = StatusFailed, fmt.Errorf("%w: %w", ErrSink, err)
		e.rep.add(base)
		return nil, nil
	}
	if o.Status == StatusQuarantined {
		q := &Quarantined{IdempotencyKey: t.IdempotencyKey, Source: src, Raw: raw.Reader(), Size: n, Err: o.Err}
		return e.quarantine(ctx, ref, q, true)
	}
	if k := StateKey(msg.MessageID); msg.MessageID != "" && o.TicketID != "" && e.threads[k] == "" {
		e.threads[k] = o.TicketID // the first ticket to own an id keeps it
	}
	e.log.Debug("mailsync: delivered", "key", ref.Key, "message_id", msg.MessageID, "ticket", o.TicketID, "status", o.Status, "rule", o.Rule, "kind", o.Kind)
	return &accepted{ref: ref, postable: true, outcome: o}, nil
}

// deliver hands a parsed message to the sink: as a follow-up when a
// threading rule matches a ticket the sender may post on (or a bounce finds
// its ticket, or its sender is over the rate limit), otherwise as a new
// ticket. An outcome with StatusQuarantined means the caller must
// quarantine the message.
func (e *engine) deliver(ctx context.Context, t *Ticket, o Outcome) (Outcome, error) {
	fs, threading := e.sink.(FollowUpSink)
	if threading {
		m, err := e.findThread(ctx, fs, t)
		if err != nil {
			return o, err
		}
		if m != nil {
			return e.followUp(ctx, fs, t, o, *m)
		}
	}
	sender := t.Message.From.Address
	if e.o.limiter != nil && sender != "" {
		if ok, last := e.o.limiter.allow(sender); !ok {
			if threading && last != "" {
				info, err := fs.TicketInfo(ctx, last, t.Message.From)
				if err != nil {
					return o, err
				}
				return e.followUp(ctx, fs, t, o, threadMatch{ticketID: last, rule: RuleRateLimit, info: info})
			}
			o.Status = StatusQuarantined
			o.Err = &MessageError{Key: o.Key, Kind: ErrRateLimited, Reason: fmt.Sprintf("%s opened too many tickets recently", sender)}
			return o, nil
		}
	}
	return e.createTicket(ctx, t, o)
}

func (e *engine) createTicket(ctx context.Context, t *Ticket, o Outcome) (Outcome, error) {
	rc, err := e.sink.CreateTicket(ctx, t)
	if err != nil {
		return o, err
	}
	o.Status, o.TicketID = StatusCreated, rc.TicketID
	if rc.Duplicate {
		o.Status = StatusDuplicate
	}
	if sender := t.Message.From.Address; e.o.limiter != nil && sender != "" && !rc.Duplicate {
		e.o.limiter.opened(sender, rc.TicketID)
	}
	return o, nil
}

// threadMatch is an existing ticket a message may belong to.
type threadMatch struct {
	ticketID string
	rule     ThreadRule
	info     TicketInfo // what the sink said of the ticket and the sender
}

// participant reports whether the sender may post on the matched ticket.
// Bounces (from a mailer daemon, about the host's own notification) and a
// sender's own latest ticket under the rate limit need no check.
func (m threadMatch) participant() bool {
	return m.info.SenderAllowed || m.rule == RuleBounce || m.rule == RuleRateLimit
}

// followUp adds t to the matched ticket. The mail becomes a new ticket that
// names the matched one (RelatedTicketID) instead when the ticket is gone,
// the sink refuses the follow-up (e.g. closed), or the sender is not a
// participant and Threading.AllowNonParticipants is off.
func (e *engine) followUp(ctx context.Context, fs FollowUpSink, t *Ticket, o Outcome, m threadMatch) (Outcome, error) {
	var reason string
	switch {
	case !m.info.Exists:
		reason = fmt.Sprintf("ticket %s found by rule %s no longer exists", m.ticketID, m.rule)
	case !m.participant() && !e.o.threading.AllowNonParticipants:
		reason = fmt.Sprintf("the sender is not a participant of ticket %s (rule %s)", m.ticketID, m.rule)
		e.log.Warn("mailsync: reply from a sender not allowed on its ticket; made a new ticket", "ticket", m.ticketID, "rule", m.rule)
	default:
		nonParticipant := !m.participant()
		rc, err := fs.AddFollowUp(ctx, &FollowUp{Ticket: *t, TicketID: m.ticketID, Rule: m.rule, TicketClosed: m.info.Closed, NonParticipant: nonParticipant})
		switch {
		case err == nil:
			o.Status, o.TicketID, o.Rule = StatusFollowUp, rc.TicketID, m.rule
			if rc.Duplicate {
				o.Status = StatusDuplicate
			}
			if nonParticipant {
				o.Reason = fmt.Sprintf("the sender is not a participant of ticket %s; accepted (Threading.AllowNonParticipants)", m.ticketID)
			}
			return o, nil
		case !errors.Is(err, ErrFollowUpRefused):
			return o, err
		}
		reason = fmt.Sprintf("ticket %s refused the follow-up (rule %s): %v", m.ticketID, m.rule, err)
	}
	t.RelatedTicketID = m.ticketID
	o.RelatedTicketID, o.Reason = m.ticketID, reason
	return e.createTicket(ctx, t, o)
}

// findThread returns the ticket t belongs to, or nil. The rules are tried
// in order; the sink is asked about each candidate ticket once (TicketInfo),
// and the first one the sender may post on wins. When the sender may post
// on none, the first existing candidate is returned, so that the mail
// becomes a new ticket linked to it (or, with AllowNonParticipants, a
// flagged follow-up) — never a follow-up a stranger slipped into someone
// else's ticket.
func (e *engine) findThread(ctx context.Context, fs FollowUpSink, t *Ticket) (*threadMatch, error) {
	msg := t.Message
	var first *threadMatch
	asked := map[string]bool{}
	try := func(id string, rule ThreadRule) (*threadMatch, error) {
		if id == "" || asked[id] {
			return nil, nil
		}
		asked[id] = true
		info, err := fs.TicketInfo(ctx, id, msg.From)
		if err != nil {
			return nil, err
		}
		m := &threadMatch{ticketID: id, rule: rule, info: info}
		switch {
		case info.Exists && m.participant():
			return m, nil
		case first == nil && (info.Exists || rule == RuleReferences):
			// A reference to a ticket that is gone still links the new one.
			first = m
		}
		return nil, nil
	}
	if t.Classification.Kind == KindBounce && e.m.route(KindBounce) == RouteFollowUpOriginal && t.Classification.OriginalMessageID != "" {
		if m, err := try(e.lookupThread(ctx, []string{t.Classification.OriginalMessageID}), RuleBounce); m != nil || err != nil {
			return m, err
		}
	}
	for _, rule := range e.o.threading.rules() {
		var id string
		switch rule {
		case RuleReferences:
			id = e.lookupThread(ctx, append(append([]string(nil), msg.InReplyTo...), msg.References...))
		case RuleSubject:
			if sm := e.subjectRE.FindStringSubmatch(msg.Subject); sm != nil {
				id = sm[1]
			}
		case RulePlusAddress:
			id = e.plusAddressID(msg)
		}
		if m, err := try(id, rule); m != nil || err != nil {
			return m, err
		}
	}
	return first, nil
}

// lookupThread finds the ticket of the first known Message-ID: this sync's,
// the state's, or one the host's MessageIDSigner made.
func (e *engine) lookupThread(ctx context.Context, ids []string) string {
	if len(ids) == 0 {
		return ""
	}
	for _, id := range ids {
		if t, ok := e.threads[StateKey(id)]; ok {
			return t
		}
	}
	keys := make([]string, len(ids))
	for i, id := range ids {
		keys[i] = StateKey(id)
	}
	known, err := e.o.state.Threads(ctx, keys)
	if err != nil {
		e.log.Warn("mailsync: reading threads from state", "err", err)
	}
	for i, id := range ids {
		if t, ok := known[keys[i]]; ok {
			return t
		}
		if s := e.o.threading.Signer; s != nil {
			if t, ok := s.Verify(id); ok {
				return t
			}
		}
	}
	return ""
}

// plusAddressID finds "+<id>" on the connection's own address among the recipients.
func (e *engine) plusAddressID(msg *Message) string {
	local, domain, ok := strings.Cut(strings.ToLower(e.conn.User), "@")
	if !ok {
		return ""
	}
	var addrs []string
	for _, a := range append(append([]Address(nil), msg.To...), msg.Cc...) {
		addrs = append(addrs, a.Address)
	}
	addrs = append(addrs, msg.Header.Values("Delivered-To")...)
	addrs = append(addrs, msg.Header.Values("X-Original-To")...)
	for _, a := range addrs {
		l, d, ok := strings.Cut(strings.Trim(strings.TrimSpace(a), "<>"), "@")
		if !ok || !strings.EqualFold(d, domain) {
			continue
		}
		if base, id, ok := strings.Cut(l, "+"); ok && strings.EqualFold(base, local) && id != "" {
			return id // as written: ticket ids may be case-sensitive
		}
	}
	return ""
}

// countSinkFailure counts one more sync in which the sink refused ref, when
// the State can count (FailureCounter).
func (e *engine) countSinkFailure(ctx context.Context, ref MessageRef) (int, bool) {
	fc, ok := e.o.state.(FailureCounter)
	if !ok || e.o.sinkFailMax <= 0 {
		return 0, false
	}
	n, err := fc.CountFailure(context.WithoutCancel(ctx), e.conn.Name, StateKey(ref.Key))
	if err != nil {
		e.log.Warn("mailsync: counting a sink failure", "key", ref.Key, "err", err)
		return 0, false
	}
	return n, true
}

func (e *engine) quarantine(ctx context.Context, ref MessageRef, q *Quarantined, postable bool) (*accepted, error) {
	e.log.Warn("mailsync: quarantining message", "key", ref.Key, "reason", q.Err)
	if err := e.sink.Quarantine(ctx, q); err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		e.rep.add(Outcome{Key: ref.Key, Status: StatusFailed, Err: fmt.Errorf("%w: quarantine: %w", ErrSink, err)})
		return nil, nil
	}
	return &accepted{ref: ref, postable: postable, outcome: Outcome{Key: ref.Key, Status: StatusQuarantined, Err: q.Err}}, nil
}

// quarantineUnfetched quarantines a message whose announced size is over the
// limit without downloading it. The mail stays on the server untouched.
func (e *engine) quarantineUnfetched(ctx context.Context, ref MessageRef) (*accepted, error) {
	defer e.tick()
	limit := e.o.parser.Limits.MaxMessageBytes
	q := &Quarantined{IdempotencyKey: keyForRef(e.conn.Name, ref.Key), Size: ref.Size, Truncated: true,
		Source: Source{Connection: e.conn.Name, Provider: e.o.provider, MessageKey: ref.Key, Received: time.Now().UTC()},
		Err:    &MessageError{Key: ref.Key, Kind: ErrOversized, Reason: fmt.Sprintf("%d bytes, more than the limit of %d; not downloaded", ref.Size, limit)}}
	a, err := e.quarantine(ctx, ref, q, false)
	return a, err
}

func (e *engine) tick() {
	e.done++
	if e.o.progress != nil {
		e.o.progress(Progress{Done: e.done, Total: e.total})
	}
}

func kindOf(err error) error {
	if errors.Is(err, ErrOversized) {
		return ErrOversized
	}
	return ErrMalformed
}

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
		if d > 10*e.o.maxWait {
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
