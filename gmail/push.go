package gmail

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	gmailapi "google.golang.org/api/gmail/v1"

	"github.com/mailsync/mailsync"
)

// Push tells the host when watched Gmail mailboxes change, through Gmail
// push notifications: users.watch publishes to a Cloud Pub/Sub topic, and
// a push subscription of that topic delivers to Handler. It never fetches
// mail: a notification only calls PushOptions.OnChange with the
// connection's name, after which the host runs its usual cursor-based sync
// (e.g. the fleet's Trigger). A lost or duplicated notification costs
// latency, never mail: keep the periodic sync as the backstop.
//
//   - Watch calls users.watch on the connection's labels (their ids,
//     labelFilterBehavior "include") with PushOptions.Topic, and Run
//     renews every watch every RenewEvery (default daily, as Google
//     advises; watches expire after 7 days), earlier if the expiration
//     Gmail returned comes sooner. A failed renewal is retried with
//     back-off. Stop calls users.stop.
//   - Handler serves the Pub/Sub push deliveries. It refuses, with 401, a
//     request without a valid OIDC bearer token (signature, expiry,
//     audience, checked by PushOptions.Verifier) and, with 403, a valid
//     token that is not the push subscription's: issuer other than
//     Google's, another audience, another service account or an
//     unverified e-mail. An authenticated delivery is always acknowledged
//     (204), even when it is malformed or for a mailbox not watched,
//     since Pub/Sub redelivers anything else until the message expires.
//   - A delivery whose historyId the connection's cursor (PushOptions.Cursor)
//     already reached is ignored; without Cursor, one whose historyId is
//     at or below the last one that called OnChange for that connection.
//     A redelivered message (same messageId) is ignored.
//
// Pub/Sub setup (done once by the administrator): a topic, with
// gmail-api-push@system.gserviceaccount.com granted the Pub/Sub Publisher
// role on it; a push subscription to the URL serving Handler, with
// authentication enabled, a service account (PushOptions.ServiceAccount)
// and an audience (PushOptions.Audience, by default the push URL). The
// subscription must deliver wrapped messages (Pub/Sub's default, not
// "no wrapper"), since the body carries messageId for deduplication.
//
// A Push is safe for concurrent use.
type Push struct {
	opts PushOptions
	log  *slog.Logger
	wake chan struct{}

	mu      sync.Mutex
	watches map[string]*watch // by connection name
	seenIDs map[string]bool   // messageIds handled recently
	seenQ   []string          // seenIDs in arrival order
}

// PushOptions configure NewPush.
type PushOptions struct {
	// Topic is the Pub/Sub topic users.watch publishes to,
	// "projects/{project}/topics/{topic}" (the project must be the OAuth
	// client's). Required.
	Topic string
	// Audience is the aud claim the push subscription puts in its OIDC
	// tokens (Pub/Sub's default is the push endpoint's URL). Required.
	Audience string
	// ServiceAccount is the e-mail of the service account the push
	// subscription signs its tokens as. Required: without it, a push
	// subscription anyone creates in their own project could call
	// Handler with a Google-signed token for the same audience.
	ServiceAccount string
	// Verifier checks the tokens' signature, expiry and audience. Default:
	// Google's certificates through google.golang.org/api/idtoken (see
	// NewGoogleVerifier).
	Verifier Verifier
	// OnChange is called with the connection's name
	// (mailsync.Connection.Name) when its mailbox may have changed.
	// Required. It runs in Handler's request: return quickly (hand the
	// work to a queue, e.g. the fleet's Trigger).
	OnChange func(connection string)
	// Connections, when set, names the connections that read the mailbox
	// email (lower case) when this Push watches none of them — another
	// process of the host holds their watch (a fleet's push lease) — so
	// that a delivery reaching this process still calls OnChange for
	// them. Without it, such a delivery is acknowledged and dropped. Their
	// deliveries are deduplicated by messageId and, with Cursor, skipped
	// when the cursor already reached the historyId.
	Connections func(ctx context.Context, email string) []string
	// Cursor, when set, returns the connection's stored cursor; a
	// delivery whose historyId the cursor already reached is ignored. An
	// error or a cursor that is not a Gmail one calls OnChange.
	Cursor func(ctx context.Context, connection string) (mailsync.Cursor, error)
	// RenewEvery is how often users.watch is called again; default
	// DefaultPushRenewEvery, at most MaxPushRenewEvery.
	RenewEvery time.Duration
	// RetryEvery is the wait after a failed users.watch renewal; it
	// doubles with each consecutive failure up to RenewEvery. Default
	// DefaultPushRetryEvery.
	RetryEvery time.Duration
	// Logger receives debug and warning logs; never a token. Default:
	// discard.
	Logger *slog.Logger
}

// Defaults and limits of PushOptions.
const (
	// DefaultPushRenewEvery: Google recommends calling watch daily.
	DefaultPushRenewEvery = 24 * time.Hour
	// MaxPushRenewEvery: a watch lasts 7 days; renew well before.
	MaxPushRenewEvery     = 6 * 24 * time.Hour
	DefaultPushRetryEvery = time.Minute
	// maxPushBody bounds a push request's body (a Gmail notification is
	// a few hundred bytes).
	maxPushBody = 64 << 10
	// seenLimit is how many messageIds are remembered for deduplication.
	seenLimit = 4096
	// minRenewEvery bounds how soon a watch is renewed, whatever
	// expiration Gmail returns (one in the past must not make Run call
	// users.watch in a loop).
	minRenewEvery = time.Second
)

// watch is one watched connection.
type watch struct {
	name   string
	email  string   // the mailbox's address, lower case
	labels []string // label ids
	call   sync.Mutex
	c      *Connector

	// guarded by Push.mu
	historyID  uint64 // last users.watch answer
	expiration time.Time
	renewed    time.Time
	due        time.Time // next renewal
	failures   int
	lastErr    error
	notified   uint64 // historyId of the last OnChange
}

// WatchStatus describes one watched connection, for monitoring.
type WatchStatus struct {
	// Connection is the connection's name.
	Connection string
	// Email is the mailbox's address (as notifications carry it).
	Email string
	// LabelIDs are the label ids watched.
	LabelIDs []string
	// HistoryID is the mailbox's history id at the last users.watch.
	HistoryID uint64
	// Expiration is when Gmail stops notifying unless renewed.
	Expiration time.Time
	// Renewed is when users.watch last succeeded; NextRenewal when Run
	// calls it next.
	Renewed, NextRenewal time.Time
	// Err is the last renewal's error, nil after a success.
	Err error
}

// NewPush checks opts and returns a Push. Problems come back as a
// *mailsync.ConfigError. It sends no request.
func NewPush(opts PushOptions) (*Push, error) {
	var probs []mailsync.Problem
	add := func(field string, code mailsync.ProblemCode, msg string) {
		probs = append(probs, mailsync.Problem{Field: field, Code: code, Message: msg})
	}
	if !validTopic(opts.Topic) {
		add("topic", mailsync.CodeInvalid, "must be projects/{project}/topics/{topic}")
	}
	if strings.TrimSpace(opts.Audience) == "" {
		add("audience", mailsync.CodeRequired, "is required")
	}
	if strings.TrimSpace(opts.ServiceAccount) == "" {
		add("service_account", mailsync.CodeRequired, "is required")
	}
	if opts.OnChange == nil {
		add("on_change", mailsync.CodeRequired, "is required")
	}
	if opts.RenewEvery < 0 || opts.RenewEvery > MaxPushRenewEvery {
		probs = append(probs, mailsync.Problem{Field: "renew_every", Code: mailsync.CodeOutOfRange, Limit: int(MaxPushRenewEvery / time.Second),
			Message: fmt.Sprintf("must be between 0 (default) and %v", MaxPushRenewEvery)})
	}
	if opts.RetryEvery < 0 {
		add("retry_every", mailsync.CodeNegative, "must not be negative")
	}
	if len(probs) > 0 {
		return nil, mailsync.NewConfigError(probs...)
	}
	if opts.RenewEvery == 0 {
		opts.RenewEvery = DefaultPushRenewEvery
	}
	if opts.RetryEvery == 0 {
		opts.RetryEvery = DefaultPushRetryEvery
	}
	if opts.Verifier == nil {
		opts.Verifier = NewGoogleVerifier(nil)
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Push{
		opts:    opts,
		log:     log.With(slog.String("provider", "gmail")),
		wake:    make(chan struct{}, 1),
		watches: map[string]*watch{},
		seenIDs: map[string]bool{},
	}, nil
}

// validTopic reports whether name is a Pub/Sub v1 topic name.
func validTopic(name string) bool {
	f := strings.Split(name, "/")
	return len(f) == 4 && f[0] == "projects" && f[1] != "" && f[2] == "topics" && f[3] != ""
}

// Watch starts (or, for a connection already watched, updates) the push
// notifications of conn's mailbox: it makes a Connector from conn and
// opts (kept for renewals and Stop, so give opts a TokenSource the host
// shares with its syncs), reads the mailbox's address (users.getProfile,
// unless opts.UserID is one), resolves the labels to ids and calls
// users.watch. Run renews it.
//
// An error before users.watch (configuration, profile, an unknown label)
// leaves the connection unwatched. When users.watch itself fails, the
// connection stays registered and Run retries with back-off (Status
// reports the error); call Stop to give up.
func (p *Push) Watch(ctx context.Context, conn mailsync.Connection, opts Options) (WatchStatus, error) {
	c, err := New(conn, opts)
	if err != nil {
		return WatchStatus{}, err
	}
	w, err := p.prepare(ctx, c)
	if err != nil {
		c.Close()
		return WatchStatus{}, err
	}
	p.mu.Lock()
	old := p.watches[w.name]
	if old != nil {
		w.notified = old.notified
	}
	p.watches[w.name] = w
	p.mu.Unlock()
	if old != nil {
		old.call.Lock()
		old.c.Close()
		old.call.Unlock()
	}
	err = p.renew(ctx, w)
	p.poke()
	if err != nil {
		// Run retries; the host may also Stop.
		return p.status(w), err
	}
	return p.status(w), nil
}

// prepare reads the address and the label ids of c's mailbox.
func (p *Push) prepare(ctx context.Context, c *Connector) (*watch, error) {
	email := c.cfg.user
	if !strings.Contains(email, "@") {
		prof, err := c.profile(ctx)
		if err != nil {
			return nil, c.cfg.scrub.err(err)
		}
		email = prof.EmailAddress
		if email == "" {
			return nil, fmt.Errorf("gmail: %s: users.getProfile gave no address: %w", c.cfg.conn.Name, mailsync.ErrConnection)
		}
	}
	labels, err := c.resolve(ctx, false)
	if err != nil {
		return nil, c.cfg.scrub.err(err)
	}
	ids := make([]string, 0, len(labels))
	for _, l := range labels {
		ids = append(ids, l.ID)
	}
	return &watch{name: c.cfg.conn.Name, email: strings.ToLower(email), labels: ids, c: c}, nil
}

// mailboxLabels returns the union of the label ids of the watches of
// email: one users.watch per mailbox serves all its connections.
// Called with p.mu held.
func (p *Push) mailboxLabels(email string) []string {
	var ids []string
	for _, w := range p.watches {
		if w.email == email {
			for _, id := range w.labels {
				if !slices.Contains(ids, id) {
					ids = append(ids, id)
				}
			}
		}
	}
	slices.Sort(ids)
	return ids
}

// renew calls users.watch for w and records the result.
func (p *Push) renew(ctx context.Context, w *watch) error {
	p.mu.Lock()
	labels := p.mailboxLabels(w.email)
	p.mu.Unlock()
	w.call.Lock()
	var res *gmailapi.WatchResponse
	err := w.c.api.do(ctx, "users.watch", func(ctx context.Context) (err error) {
		res, err = w.c.api.svc.Users.Watch(w.c.cfg.user, &gmailapi.WatchRequest{
			TopicName:           p.opts.Topic,
			LabelIds:            labels,
			LabelFilterBehavior: "include",
		}).Context(ctx).Do()
		return err
	})
	err = w.c.cfg.scrub.err(err)
	w.call.Unlock()
	now := time.Now()
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.watches[w.name] != w {
		return err // stopped or replaced meanwhile
	}
	if err != nil {
		w.failures++
		w.lastErr = err
		wait := p.opts.RetryEvery << min(w.failures-1, 20)
		if wait <= 0 || wait > p.opts.RenewEvery {
			wait = p.opts.RenewEvery
		}
		w.due = now.Add(wait)
		p.log.WarnContext(ctx, "gmail push: users.watch failed", "connection", w.name, "error", err, "retry_in", wait)
		return err
	}
	w.failures, w.lastErr = 0, nil
	w.historyID = res.HistoryId
	w.expiration = time.UnixMilli(res.Expiration)
	w.renewed = now
	next := p.opts.RenewEvery
	if life := w.expiration.Sub(now); res.Expiration > 0 && life*3/4 < next {
		// Gmail's expiration comes sooner than RenewEvery: renew at
		// three quarters of the watch's life.
		next = max(life*3/4, minRenewEvery)
	}
	w.due = now.Add(next)
	p.log.DebugContext(ctx, "gmail push: watching", "connection", w.name, "labels", labels, "expiration", w.expiration)
	return nil
}

// poke wakes Run to recompute its next renewal.
func (p *Push) poke() {
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// Run renews the watches until ctx ends, then returns ctx's error. Run
// it once per Push, on its own goroutine. The watches are not stopped
// when Run returns: they expire by themselves, or call Stop.
func (p *Push) Run(ctx context.Context) error {
	t := time.NewTimer(time.Hour)
	defer t.Stop()
	for {
		now := time.Now()
		var due []*watch
		next := now.Add(p.opts.RenewEvery)
		p.mu.Lock()
		for _, w := range p.watches {
			if !w.due.After(now) {
				due = append(due, w)
			} else if w.due.Before(next) {
				next = w.due
			}
		}
		p.mu.Unlock()
		for _, w := range due {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			p.renew(ctx, w) // logged; retried at w.due
		}
		if len(due) > 0 {
			continue
		}
		t.Reset(next.Sub(now))
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-p.wake:
		case <-t.C:
		}
		if !t.Stop() {
			select {
			case <-t.C:
			default:
			}
		}
	}
}

// Stop ends the push notifications of the connection named name: it
// calls users.stop (or, when another watched connection reads the same
// mailbox, users.watch with the labels that remain) and forgets the
// connection, even when that call fails (Gmail then stops by itself at
// the watch's expiration, and notifications for a mailbox not watched
// are ignored). Stopping a connection not watched does nothing.
func (p *Push) Stop(ctx context.Context, name string) error {
	p.mu.Lock()
	w := p.watches[name]
	delete(p.watches, name)
	var other *watch
	for _, o := range p.watches {
		if w != nil && o.email == w.email {
			other = o
			break
		}
	}
	p.mu.Unlock()
	if w == nil {
		return nil
	}
	p.poke()
	if other != nil {
		w.call.Lock()
		w.c.Close()
		w.call.Unlock()
		return p.renew(ctx, other)
	}
	w.call.Lock()
	defer w.call.Unlock()
	err := w.c.api.do(ctx, "users.stop", func(ctx context.Context) error {
		return w.c.api.svc.Users.Stop(w.c.cfg.user).Context(ctx).Do()
	})
	w.c.Close()
	if err != nil {
		return w.c.cfg.scrub.err(err)
	}
	p.log.DebugContext(ctx, "gmail push: stopped", "connection", name)
	return nil
}

// Status returns the state of the watch of the connection named name.
func (p *Push) Status(name string) (WatchStatus, bool) {
	p.mu.Lock()
	w := p.watches[name]
	p.mu.Unlock()
	if w == nil {
		return WatchStatus{}, false
	}
	return p.status(w), true
}

func (p *Push) status(w *watch) WatchStatus {
	p.mu.Lock()
	defer p.mu.Unlock()
	return WatchStatus{
		Connection: w.name, Email: w.email, LabelIDs: slices.Clone(w.labels),
		HistoryID: w.historyID, Expiration: w.expiration,
		Renewed: w.renewed, NextRenewal: w.due, Err: w.lastErr,
	}
}

// pushRequest is the body of a Pub/Sub push delivery.
type pushRequest struct {
	Message struct {
		Data        []byte            `json:"data"` // base64 (encoding/json decodes it)
		MessageID   string            `json:"messageId"`
		PublishTime string            `json:"publishTime"`
		Attributes  map[string]string `json:"attributes"`
	} `json:"message"`
	Subscription string `json:"subscription"`
}

// notification is Gmail's message data.
type notification struct {
	EmailAddress string      `json:"emailAddress"`
	HistoryID    json.Number `json:"historyId"` // a number, or a string holding one
}

// Handler returns the http.Handler for the push subscription's endpoint
// (see Push for what it accepts and answers).
func (p *Push) Handler() http.Handler { return http.HandlerFunc(p.serve) }

func (p *Push) serve(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	token, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	token = strings.TrimSpace(token)
	if !ok || token == "" {
		p.refuse(w, r, http.StatusUnauthorized, "no bearer token")
		return
	}
	claims, err := p.opts.Verifier.Verify(ctx, token, p.opts.Audience)
	if err != nil {
		p.refuse(w, r, http.StatusUnauthorized, strings.ReplaceAll(err.Error(), token, "[token]"))
		return
	}
	if why := p.checkClaims(claims); why != "" {
		p.refuse(w, r, http.StatusForbidden, why)
		return
	}
	// Authenticated: from here on the delivery is acknowledged, whatever
	// it holds, since Pub/Sub would redeliver it for days otherwise.
	defer w.WriteHeader(http.StatusNoContent)
	body, err := io.ReadAll(io.LimitReader(r.Body, maxPushBody+1))
	if err != nil {
		p.log.WarnContext(ctx, "gmail push: reading the delivery", "error", err)
		return
	}
	var req pushRequest
	var n notification
	if len(body) > maxPushBody {
		err = errors.New("body too large")
	} else if err = json.Unmarshal(body, &req); err == nil {
		err = json.Unmarshal(req.Message.Data, &n)
	}
	if err != nil {
		p.log.WarnContext(ctx, "gmail push: malformed delivery, acknowledged", "error", err)
		return
	}
	hid, err := strconv.ParseUint(string(n.HistoryID), 10, 64)
	if err != nil || hid == 0 || n.EmailAddress == "" {
		p.log.WarnContext(ctx, "gmail push: notification without address or history id, acknowledged", "message_id", req.Message.MessageID)
		return
	}
	p.notify(ctx, req.Message.MessageID, strings.ToLower(n.EmailAddress), hid)
}

// refuse answers an unauthenticated or unauthorized delivery.
func (p *Push) refuse(w http.ResponseWriter, r *http.Request, code int, why string) {
	p.log.WarnContext(r.Context(), "gmail push: refused a delivery", "status", code, "reason", why, "remote", r.RemoteAddr)
	if code == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
	}
	http.Error(w, http.StatusText(code), code)
}

// googleIssuers are the iss values of Google-signed OIDC tokens.
var googleIssuers = []string{"https://accounts.google.com", "accounts.google.com"}

// checkClaims checks what the push subscription's tokens must say,
// whatever the Verifier checked; it returns why not, or "".
func (p *Push) checkClaims(c *TokenClaims) string {
	now := time.Now()
	switch {
	case c == nil:
		return "no claims"
	case !slices.Contains(googleIssuers, c.Issuer):
		return fmt.Sprintf("issuer %q is not Google's", c.Issuer)
	case c.Audience != p.opts.Audience:
		return fmt.Sprintf("audience %q is not the configured one", c.Audience)
	case !strings.EqualFold(c.Email, p.opts.ServiceAccount):
		return fmt.Sprintf("service account %q is not the configured one", c.Email)
	case !c.EmailVerified:
		return "email not verified"
	case !now.Before(c.Expires.Add(clockSkew)):
		return "token expired"
	}
	return ""
}

// notify calls OnChange for the connections of email, unless the
// delivery was handled already or their cursor is at or past hid.
func (p *Push) notify(ctx context.Context, messageID, email string, hid uint64) {
	p.mu.Lock()
	if messageID != "" {
		if p.seenIDs[messageID] {
			p.mu.Unlock()
			p.log.DebugContext(ctx, "gmail push: redelivered message ignored", "message_id", messageID)
			return
		}
		p.seenIDs[messageID] = true
		p.seenQ = append(p.seenQ, messageID)
		if len(p.seenQ) > seenLimit {
			delete(p.seenIDs, p.seenQ[0])
			p.seenQ = p.seenQ[1:]
		}
	}
	var names []string
	for _, w := range p.watches {
		if w.email == email {
			names = append(names, w.name)
		}
	}
	p.mu.Unlock()
	elsewhere := false
	if len(names) == 0 && p.opts.Connections != nil {
		names, elsewhere = slices.Clone(p.opts.Connections(ctx, email)), true
	}
	slices.Sort(names)
	if len(names) == 0 {
		p.log.DebugContext(ctx, "gmail push: notification for a mailbox not watched", "message_id", messageID)
	}
	for _, name := range names {
		if p.current(ctx, name, hid, elsewhere) {
			p.log.DebugContext(ctx, "gmail push: already synced", "connection", name, "history_id", hid)
			continue
		}
		p.log.DebugContext(ctx, "gmail push: change", "connection", name, "history_id", hid)
		p.opts.OnChange(name)
	}
}

// current reports whether the connection named name has seen history id
// hid already: its cursor is at or past it (PushOptions.Cursor), or,
// without Cursor, an OnChange for it or a later id was made. Otherwise
// it records hid as notified. elsewhere: the connection is watched by
// another process (PushOptions.Connections), so only the cursor tells.
func (p *Push) current(ctx context.Context, name string, hid uint64, elsewhere bool) bool {
	if p.opts.Cursor != nil {
		cur, err := p.opts.Cursor(ctx, name)
		if err != nil {
			p.log.WarnContext(ctx, "gmail push: reading the cursor", "connection", name, "error", err)
			return false
		}
		pc, err := parseCursor(string(cur))
		return err == nil && pc.history >= hid
	}
	if elsewhere {
		return false
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	w := p.watches[name]
	if w == nil {
		return true // stopped meanwhile
	}
	if w.notified >= hid {
		return true
	}
	w.notified = hid
	return false
}
