package mailsync

import (
	"log/slog"
	"time"
)

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
	leaseHolder string
	leaseTTL    time.Duration
	routing     *Routing
	dryRun      bool
}

// WithRouting sets the mappings of the connection's other ticket types, the
// rules that choose among them, and the blocked senders (see Routing). The
// mapping given to Sync stays the default.
func WithRouting(r Routing) Option { return func(o *options) { o.routing = &r } }

// WithDryRun makes a preview: Sync lists, per message, what would happen —
// the ticket type, the rules that matched, the mapped fields
// (Outcome.Fields) and the classification — without creating anything in
// the sink (it may still ask TicketInfo), acknowledging, moving the cursor
// or recording anything in the State. Report.DryRun is true. Providers
// fetch without changing the mail (IMAP BODY.PEEK), except POP3 servers
// that mark mail read on RETR.
func WithDryRun() Option { return func(o *options) { o.dryRun = true } }

// WithState sets where cursors and processed keys persist (default: a fresh
// MemoryState, so every Sync starts from scratch — pass a durable one).
func WithState(s State) Option { return func(o *options) { o.state = s } }

// WithLogger sets the logger (default: discard). Sync's records carry the
// key "connection"; the providers' carry "connection" and "provider" (imap,
// pop3, graph, gmail), so one filter finds a mailbox across both.
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.logger = l } }

// WithPostAction sets what happens to a message once its ticket is stored
// (default LeaveUntouched).
func WithPostAction(a PostAction) Option { return func(o *options) { o.action = a } }

// WithLimits sets the per-message limits (default DefaultLimits).
func WithLimits(l Limits) Option { return func(o *options) { o.parser.Limits = l } }

// WithRemoteImages lets remote images (http and https src, srcset,
// background) load in Message.HTML. By default they are blocked (kept in
// data-remote-* attributes and listed in Message.RemoteContent), so a
// tracking pixel does not fire when an agent opens the ticket.
func WithRemoteImages(allow bool) Option {
	return func(o *options) { o.parser.AllowRemoteImages = allow }
}

// WithSMIME sets how S/MIME mail is verified and decrypted (see SMIME):
// the trust roots, and the callback that hands over a decryption key for
// one message. Without it signed mail is still opened (not verified) and
// encrypted mail is quarantined with ErrEncrypted.
func WithSMIME(s SMIME) Option { return func(o *options) { o.parser.SMIME = s } }

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
