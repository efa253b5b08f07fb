package graph

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/mailsync/mailsync"
	abs "github.com/microsoft/kiota-abstractions-go"
	"github.com/microsoftgraph/msgraph-sdk-go/models/odataerrors"
)

// Change notifications (push).
//
// A Subscriber keeps Microsoft Graph change-notification subscriptions
// (webhooks) on the mail folders a connection reads and turns every
// notification into a call of OnChange(connection, full), which a host
// wires to its trigger of that connection's ordinary, cursor-based sync
// (mailsync.Sync with the stored delta link). A notification carries no
// mail: it only makes the next sync happen sooner. A lost notification
// costs latency until the next scheduled poll, a duplicated one at most a
// redundant (cheap, one request per folder) sync; neither ever costs mail.
//
//	sub, _ := graph.NewSubscriber(graph.SubscriberOptions{
//		NotificationURL: "https://hooks.example.com/graph",
//		OnChange:        func(conn string, full bool) { fleet.Trigger(conn) },
//	})
//	http.Handle("/graph", sub.Handler())        // serve before Subscribe: Graph validates the URL
//	err := sub.Subscribe(ctx, conn, graph.Options{…}) // the connector's options
//	go sub.Run(ctx)                             // renews ahead of expiry
//
// Production requirement: Graph only delivers to an https URL reachable
// from the internet, with a certificate from a trusted CA, and it
// validates NotificationURL (and LifecycleURL) when a subscription is
// created: the Handler must answer already. Graph expects every
// notification POST to be answered within 3 seconds (the validation
// within 10), otherwise it retries and eventually drops notifications;
// the Handler answers 202 at once and calls OnChange on its own goroutine.
//
// Subscription requests (POST, PATCH, DELETE /subscriptions) go through
// the connector built by New from the same connection and Options: the
// same token source, request pacing, retry and error handling as the
// sync's requests (plain JSON through the SDK's request adapter; the
// SDK's subscriptions request builders would add another large package
// to compile). With application permissions Mail.Read suffices; with
// delegated permissions the subscription dies when the user's password
// changes (Graph then sends subscriptionRemoved, see below).

// Notifications in a fleet of processes.
//
// Graph posts a subscription's notifications to its notification URL,
// which a load balancer may hand to any process of the host's. Without
// SubscriberOptions.ClientStateKey a Subscriber's handler knows only the
// subscriptions (and their random clientState secrets) of its own
// process and discards the others' notifications. With a key shared by
// every process (a host secret, like a database password), nothing needs
// to be shared or stored besides it:
//
//   - the clientState of every subscription of a connection is derived,
//     HMAC-SHA256(key, purpose + connection name), base64url: 43
//     characters, within Graph's limit of 128;
//   - the notification URLs carry the connection name in the query
//     parameter ConnectionParam (Graph documents that the query of
//     notificationUrl is kept in every POST);
//   - any process's handler — a Subscriber's, or a receive-only Handler
//     (NewHandler) in a process that subscribes nothing — takes the
//     connection name from the URL (at most MaxConnectionIDLen bytes of
//     printable UTF-8; anything else is discarded), recomputes its
//     clientState, compares it in constant time with the notification's
//     and calls OnChange(connection, …) for a match.
//
// Lifecycle notifications that need the subscriber's action
// (subscriptionRemoved, reauthorizationRequired) may reach a process that
// does not hold the subscription. Such a handler calls OnChange(conn,
// true) at once (a sync picks up whatever the subscription missed) and
// the optional OnLifecycle hook; the subscribing process learns it by
// itself: with a key, Run renews every subscription at least every
// VerifyEvery (default DefaultVerifyEvery), and a renewal that finds the
// subscription gone creates it anew and asks for a sync, as Renew always
// did. The renewal (a PATCH of the expiry) also answers
// reauthorizationRequired. So a removed subscription is replaced within
// VerifyEvery, whichever process Graph's lifecycle notification reached,
// and mail is never lost meanwhile (the sync at the event, then the
// backstop poll).
//
// Rotating the key: a subscription keeps the clientState it was created
// with — Graph's renewal (PATCH /subscriptions/{id}) takes only
// expirationDateTime, and a subscription lives up to its lifetime (3 days
// by default, 10080 minutes at most) — so a handler must keep accepting
// the old key's clientStates until every subscription made under it is
// gone. PreviousClientStateKeys lists such keys, accepted for
// verification only; subscriptions are always made under ClientStateKey.
// A rotation without lost notifications, for a fleet restarted process by
// process:
//
//  1. give every process the new key as a previous key (current: old,
//     previous: new), so that every handler accepts what a process
//     already on step 2 subscribes;
//  2. swap them (current: new, previous: old): a restarted process
//     subscribes under the new key; a running Subscriber is told with
//     SetClientStateKeys, and its next Renew (Run: within CheckEvery)
//     replaces each subscription made under another key by a new one
//     under the current key, the new one made before the old one is
//     deleted, with no sync asked for since nothing was missed;
//  3. once every running holder's Renew has moved its subscriptions (one
//     CheckEvery after step 2; Subscriptions shows them), drop the old key
//     (current: new, no previous); notifications still arriving under it
//     are then discarded and logged.
//
// A process restarted with a new key does not know the subscriptions its
// predecessor made (they are not stored): they deliver until they expire
// (Lifetime), accepted while their key is among the previous ones. They
// duplicate the restarted process's own new subscriptions on the same
// folders, so dropping the old key before they expire costs only discard
// log lines, not notifications.
//
// What a notification must match. Graph's changeNotification carries
// subscriptionId, clientState, tenantId (the GUID of the tenant it comes
// from), resource and, for lifecycle notifications, lifecycleEvent. The
// handlers check:
//
//   - clientState, in constant time, as described above (a random secret
//     per subscription without a key; the connection's derived value
//     under the current or a previous key with one);
//   - without a key, that subscriptionId is one of this Subscriber's; with
//     one, that a subscription this Subscriber holds belongs to the
//     connection the URL names (a subscription it does not know may be
//     another process's, or its own predecessor's: accepted);
//   - tenantId, when the connection's tenant is known as a GUID: the
//     TenantID of the OAuth block of a connection the Subscriber holds, or
//     what ConnectionTenant returns. A tenant given by domain name or as
//     "common"/"organizations" cannot be compared and is not checked; a
//     notification without a tenantId (Graph documents it as always
//     present) is not refused for it.
//
// resource is not checked: Graph names the changed item, not the
// subscribed collection, and in its own form — a subscription on
// users/{upn}/mailFolders('inbox')/messages receives resources like
// Users/{user-guid}/Messages/{id} — so neither a prefix nor the user part
// matches the subscription's resource reliably. A notification that fails
// a check is discarded and logged (the first of each request; the others
// counted in one line), and the request still answered 202.

// ConnectionParam is the query parameter of the notification URLs that
// names the connection when SubscriberOptions.ClientStateKey is set.
const ConnectionParam = "mailsync_connection"

// MaxConnectionIDLen is the longest connection name (in bytes) that a
// Subscriber with a ClientStateKey subscribes and that its handler, or a
// receive-only Handler, accepts from a notification URL.
const MaxConnectionIDLen = 256

// maxClientStateLen is Graph's limit on a subscription's clientState.
const maxClientStateLen = 128

// MinClientStateKeyLen is the shortest ClientStateKey accepted (32 bytes:
// e.g. 32 random bytes, or 43 characters of their base64).
const MinClientStateKeyLen = 32

// DefaultVerifyEvery is how often, with a ClientStateKey, Run renews
// every subscription, whatever its expiry, to find those Graph removed
// while its lifecycle notification went to another process.
const DefaultVerifyEvery = 15 * time.Minute

// clientStatePurpose separates the derived clientState from any other use
// of the key.
const clientStatePurpose = "mailsync/graph clientState v1\x00"

// deriveClientState returns the clientState of every subscription of the
// connection conn under key: HMAC-SHA256, base64url without padding.
func deriveClientState(key mailsync.Secret, conn string) string {
	m := hmac.New(sha256.New, []byte(key.Reveal()))
	io.WriteString(m, clientStatePurpose)
	io.WriteString(m, conn)
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// validConnectionID reports whether conn may name a connection in a
// notification URL: 1 to MaxConnectionIDLen bytes of printable UTF-8
// (no control or format characters).
func validConnectionID(conn string) bool { return connectionIDCode(conn) == "" }

// connectionIDCode says why conn may not name a connection in a
// notification URL: the Problem code, or "" when it may.
func connectionIDCode(conn string) mailsync.ProblemCode {
	switch {
	case conn == "":
		return mailsync.CodeRequired
	case len(conn) > MaxConnectionIDLen:
		return mailsync.CodeTooLong
	case !utf8.ValidString(conn):
		return mailsync.CodeInvalid
	}
	for _, r := range conn {
		if !unicode.IsPrint(r) {
			return mailsync.CodeForbiddenCharacters
		}
	}
	return ""
}

// withConnection returns the URL raw (checked already) with conn added to
// its query, the rest of it as given.
func withConnection(raw, conn string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return raw
	}
	if u.RawQuery != "" {
		u.RawQuery += "&"
	}
	u.RawQuery += ConnectionParam + "=" + url.QueryEscape(conn)
	return u.String()
}

// connectionOf returns the connection named in a notification's URL, and
// whether there is exactly one, valid, such name.
func connectionOf(u *url.URL) (string, bool) {
	if len(u.RawQuery) > 4*MaxConnectionIDLen+1024 {
		return "", false
	}
	v, ok := u.Query()[ConnectionParam]
	if !ok || len(v) != 1 || !validConnectionID(v[0]) {
		return "", false
	}
	return v[0], true
}

// MaxMessageSubscriptionLifetime is the longest lifetime Graph grants a
// subscription on Outlook messages: 10080 minutes (under 7 days).
const MaxMessageSubscriptionLifetime = 10080 * time.Minute

// Default subscription timing.
const (
	DefaultSubscriptionLifetime = 72 * time.Hour // well under the 7-day maximum
	DefaultRenewBefore          = 24 * time.Hour // renew when less than a day remains
	DefaultCoalesce             = 5 * time.Second
)

// SubscriberOptions configure NewSubscriber.
type SubscriberOptions struct {
	// NotificationURL is where Graph posts change notifications: the
	// public https URL at which the host serves Handler. Required.
	NotificationURL string
	// LifecycleURL is where Graph posts lifecycle notifications
	// (reauthorizationRequired, subscriptionRemoved, missed). Default
	// NotificationURL; Handler serves both.
	LifecycleURL string
	// ClientState is the shared secret Graph echoes in every
	// notification; notifications without it are discarded. Default: a
	// random value per subscription, or the value derived from
	// ClientStateKey. At most 128 characters; not with ClientStateKey.
	ClientState mailsync.Secret
	// ClientStateKey, when set, derives each connection's clientState
	// from this host secret and puts the connection's name in the
	// notification URLs (ConnectionParam), so that the handler of every
	// process given the same key — a Subscriber's or a receive-only
	// Handler — accepts the notifications of every process's
	// subscriptions (see "Notifications in a fleet of processes"). At
	// least MinClientStateKeyLen bytes; never logged. Without it, a
	// handler accepts only its own Subscriber's notifications.
	ClientStateKey mailsync.Secret
	// PreviousClientStateKeys are further keys whose derived clientStates
	// the handler accepts, for verification only: Subscribe and Renew use
	// ClientStateKey alone. They let the fleet change its key without
	// losing notifications (see "Rotating the key"). Each at least
	// MinClientStateKeyLen bytes, none equal to ClientStateKey or to
	// another; only with ClientStateKey; never logged.
	PreviousClientStateKeys []mailsync.Secret
	// ConnectionTenant, when set, returns the directory (tenant) id of the
	// connection conn, or "" when unknown, for a connection this process
	// does not hold (the tenant of one it holds is its OAuth block's
	// TenantID): see Handler on the tenantId check. It runs on the
	// request's goroutine, after the notification's clientState was
	// verified, and must be quick (Graph waits at most 3 seconds for the
	// answer).
	ConnectionTenant func(conn string) string
	// OnLifecycle, when set, is called (on its own goroutine) when a
	// subscriptionRemoved or reauthorizationRequired notification arrives
	// for a subscription this process does not hold (OnChange(conn, true)
	// is called too): a host that can reach the subscribing process may
	// make it act at once (e.g. Subscribe again); otherwise that process's
	// Run finds the subscription gone within VerifyEvery.
	OnLifecycle func(ctx context.Context, conn, event string)
	// VerifyEvery: with a ClientStateKey, Run also renews every
	// subscription not renewed for this long, whatever its expiry, which
	// recreates the subscriptions Graph removed meanwhile. Default
	// DefaultVerifyEvery with a ClientStateKey, none without; negative:
	// never.
	VerifyEvery time.Duration
	// Lifetime is the subscriptions' lifetime at creation and renewal.
	// Default DefaultSubscriptionLifetime; at most
	// MaxMessageSubscriptionLifetime.
	Lifetime time.Duration
	// RenewBefore: Renew renews a subscription when less than this
	// remains. Default DefaultRenewBefore, or a third of Lifetime when
	// that is shorter.
	RenewBefore time.Duration
	// CheckEvery is how often Run calls Renew. Default RenewBefore/4,
	// at most an hour (and at most VerifyEvery).
	CheckEvery time.Duration
	// Coalesce is the window within which notifications of one
	// connection lead to one OnChange call: the first calls it at once,
	// later ones within the window are merged into one call at the
	// window's end (so a change is never left without a sync after it);
	// an exact duplicate (same subscription, change and message) within
	// the window is dropped. Default DefaultCoalesce.
	Coalesce time.Duration
	// OnChange is called, on its own goroutine, when a connection should
	// sync: conn is the connection's name. full is set after a lifecycle
	// event that may have lost notifications (missed, subscriptionRemoved,
	// an expired subscription): the delta link in the cursor already
	// catches up with everything, so full is informational unless the host
	// keeps state beyond the cursor. Required.
	OnChange func(conn string, full bool)
	// Logger receives records of subscriptions and discarded
	// notifications (never a token or client state). Default: discard.
	Logger *slog.Logger
}

// Subscriber keeps Graph subscriptions on connections' mail folders and
// serves their notifications (see the package documentation's section on
// change notifications). Its methods are safe for concurrent use.
type Subscriber struct {
	opts SubscriberOptions
	log  *slog.Logger

	ctx    context.Context // cancelled by Close
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu    sync.Mutex
	keys  []mailsync.Secret        // with a ClientStateKey: the current key, then the previous ones
	subs  map[string]*subscription // by subscription id
	conns map[string]*subscribed   // by connection name
	fire  map[string]*coalescer    // by connection name
}

type subscribed struct {
	c    *Connector
	opMu sync.Mutex // serialises renewals and recreations of the connection
}

type subscription struct {
	id       string
	conn     string
	folder   string // as configured
	resource string
	state    mailsync.Secret
	expires  time.Time
	renewed  time.Time // created or last renewed
}

type coalescer struct {
	last    time.Time
	timer   *time.Timer
	pending bool
	full    bool
	seen    map[string]time.Time // dedupe keys -> when
}

// SubscriptionInfo describes one subscription a Subscriber keeps.
type SubscriptionInfo struct {
	ID         string
	Connection string
	Folder     string
	Resource   string
	Expires    time.Time
}

// NewSubscriber checks opts and returns a Subscriber. It makes no request.
func NewSubscriber(opts SubscriberOptions) (*Subscriber, error) {
	return newSubscriber(opts, false)
}

// newSubscriber: receiveOnly is NewHandler's, without URLs.
func newSubscriber(opts SubscriberOptions, receiveOnly bool) (*Subscriber, error) {
	var probs []mailsync.Problem
	for _, u := range []struct{ field, v string }{{"notification URL", opts.NotificationURL}, {"lifecycle URL", opts.LifecycleURL}} {
		if receiveOnly || (u.v == "" && u.field == "lifecycle URL") {
			continue
		}
		p, err := url.Parse(u.v)
		switch {
		case u.v == "":
			probs = append(probs, mailsync.Problem{Field: u.field, Code: mailsync.CodeRequired, Message: "is required"})
		case err != nil || p.Host == "":
			probs = append(probs, mailsync.Problem{Field: u.field, Code: mailsync.CodeInvalid, Message: "must be an absolute https URL"})
		case p.Scheme != "https" && p.Scheme != "http":
			probs = append(probs, mailsync.Problem{Field: u.field, Code: mailsync.CodeInsecure, Message: "must be an absolute https URL"})
		case opts.ClientStateKey != "" && p.Query().Has(ConnectionParam):
			probs = append(probs, mailsync.Problem{Field: u.field, Code: mailsync.CodeConflict, Message: "must not have the query parameter " + ConnectionParam + " (the Subscriber adds it)"})
		}
	}
	probs = append(probs, keyProblems(opts.ClientStateKey, opts.PreviousClientStateKeys)...)
	if opts.ClientStateKey != "" && opts.ClientState != "" {
		probs = append(probs, mailsync.Problem{Field: "client state", Code: mailsync.CodeConflict, Message: "must not be set with a client state key"})
	}
	if receiveOnly && opts.ClientStateKey == "" {
		probs = append(probs, mailsync.Problem{Field: "client state key", Code: mailsync.CodeRequired, Message: "is required"})
	}
	if opts.OnChange == nil {
		probs = append(probs, mailsync.Problem{Field: "OnChange", Code: mailsync.CodeRequired, Message: "is required"})
	}
	if len(opts.ClientState.Reveal()) > maxClientStateLen {
		probs = append(probs, mailsync.Problem{Field: "client state", Code: mailsync.CodeTooLong, Limit: maxClientStateLen,
			Message: fmt.Sprintf("must be at most %d characters", maxClientStateLen)})
	}
	if opts.Lifetime <= 0 {
		opts.Lifetime = DefaultSubscriptionLifetime
	}
	if opts.Lifetime > MaxMessageSubscriptionLifetime {
		probs = append(probs, mailsync.Problem{Field: "subscription lifetime", Code: mailsync.CodeOutOfRange,
			Limit: int(MaxMessageSubscriptionLifetime / time.Second), Message: "must be at most 10080 minutes"})
	}
	if len(probs) > 0 {
		return nil, mailsync.NewConfigError(probs...)
	}
	if opts.LifecycleURL == "" {
		opts.LifecycleURL = opts.NotificationURL
	}
	if opts.RenewBefore <= 0 {
		opts.RenewBefore = min(DefaultRenewBefore, opts.Lifetime/3)
	}
	if opts.RenewBefore >= opts.Lifetime {
		opts.RenewBefore = opts.Lifetime / 3
	}
	switch {
	case opts.ClientStateKey == "" || opts.VerifyEvery < 0:
		opts.VerifyEvery = 0
	case opts.VerifyEvery == 0:
		opts.VerifyEvery = DefaultVerifyEvery
	}
	if opts.CheckEvery <= 0 {
		opts.CheckEvery = min(opts.RenewBefore/4, time.Hour)
		if opts.VerifyEvery > 0 {
			opts.CheckEvery = min(opts.CheckEvery, opts.VerifyEvery)
		}
	}
	if opts.Coalesce <= 0 {
		opts.Coalesce = DefaultCoalesce
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Subscriber{opts: opts, log: log.With(slog.String("provider", "graph")), ctx: ctx, cancel: cancel,
		subs: map[string]*subscription{}, conns: map[string]*subscribed{}, fire: map[string]*coalescer{}}
	if opts.ClientStateKey != "" {
		s.keys = append([]mailsync.Secret{opts.ClientStateKey}, opts.PreviousClientStateKeys...)
	}
	s.opts.PreviousClientStateKeys = nil // s.keys holds them
	return s, nil
}

// keyProblems checks a ClientStateKey and the previous keys accepted
// beside it. The problems never quote a key.
func keyProblems(current mailsync.Secret, previous []mailsync.Secret) []mailsync.Problem {
	var probs []mailsync.Problem
	short := fmt.Sprintf("must be at least %d bytes", MinClientStateKeyLen)
	if current != "" && len(current.Reveal()) < MinClientStateKeyLen {
		probs = append(probs, mailsync.Problem{Field: "client state key", Code: mailsync.CodeInvalid, Message: short})
	}
	if len(previous) > 0 && current == "" {
		probs = append(probs, mailsync.Problem{Field: "previous client state keys", Code: mailsync.CodeConflict,
			Message: "are accepted only beside a client state key (the current one)"})
	}
	same := func(a, b mailsync.Secret) bool {
		return subtle.ConstantTimeCompare([]byte(a.Reveal()), []byte(b.Reveal())) == 1
	}
	for i, k := range previous {
		field := fmt.Sprintf("previous client state keys[%d]", i)
		switch {
		case len(k.Reveal()) < MinClientStateKeyLen:
			probs = append(probs, mailsync.Problem{Field: field, Code: mailsync.CodeInvalid, Message: short})
		case current != "" && same(k, current):
			probs = append(probs, mailsync.Problem{Field: field, Code: mailsync.CodeDuplicate, Message: "must differ from the client state key"})
		default:
			for j := range i {
				if same(k, previous[j]) {
					probs = append(probs, mailsync.Problem{Field: field, Code: mailsync.CodeDuplicate,
						Message: fmt.Sprintf("repeats previous client state keys[%d]", j)})
					break
				}
			}
		}
	}
	return probs
}

// SetClientStateKeys changes the keys of a Subscriber made with a
// ClientStateKey, while it runs: current becomes ClientStateKey (new
// subscriptions, and the renewals, use it), previous the keys accepted
// for verification only (PreviousClientStateKeys). The next Renew (Run:
// within CheckEvery) moves every subscription made under another key to
// current: Graph's renewal (PATCH) changes only the expiry, so such a
// subscription is created anew under current and the old one deleted
// after, without a gap and without a sync (both deliver meanwhile; the
// handler accepts both while the old key is among previous). The keys are
// checked as NewSubscriber checks them (a *mailsync.ConfigError, which
// never quotes a key); a Subscriber made without a key cannot be given
// one, since its subscriptions' URLs name no connection.
func (s *Subscriber) SetClientStateKeys(current mailsync.Secret, previous ...mailsync.Secret) error {
	if s.opts.ClientStateKey == "" {
		return mailsync.NewConfigError(mailsync.Problem{Field: "client state key", Code: mailsync.CodeConflict,
			Message: "cannot be set on a Subscriber or Handler made without one"})
	}
	probs := keyProblems(current, previous)
	if current == "" {
		probs = append(probs, mailsync.Problem{Field: "client state key", Code: mailsync.CodeRequired, Message: "is required"})
	}
	if len(probs) > 0 {
		return mailsync.NewConfigError(probs...)
	}
	keys := append([]mailsync.Secret{current}, previous...)
	s.mu.Lock()
	s.keys = keys
	s.mu.Unlock()
	return nil
}

// currentKey returns the key new subscriptions are made with ("" without
// a ClientStateKey).
func (s *Subscriber) currentKey() mailsync.Secret {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.keys) == 0 {
		return ""
	}
	return s.keys[0]
}

// Subscribe creates a subscription (changeType "created") on every folder
// conn reads (opts.Folder or opts.Folders, as for New), replacing the
// subscriptions an earlier Subscribe of the same connection made. Graph
// validates the notification URLs during the call, so Handler must be
// served already. Errors match the mailsync sentinels as New's and List's
// do; a failed handshake is a *Error with Code "ValidationError".
func (s *Subscriber) Subscribe(ctx context.Context, conn mailsync.Connection, opts Options) error {
	if s.ctx.Err() != nil {
		return errors.New("graph: subscriber is closed")
	}
	if code := connectionIDCode(conn.Name); s.opts.ClientStateKey != "" && code != "" {
		p := mailsync.Problem{Field: "name", Code: code,
			Message: fmt.Sprintf("must be 1 to %d bytes of printable UTF-8 to go into the notification URL", MaxConnectionIDLen)}
		if code == mailsync.CodeTooLong {
			p.Limit = MaxConnectionIDLen
		}
		return mailsync.NewConfigError(p)
	}
	c, err := New(conn, opts)
	if err != nil {
		return err
	}
	if err := s.Unsubscribe(ctx, conn.Name); err != nil {
		s.log.WarnContext(ctx, "graph: removing the earlier subscriptions failed", "connection", conn.Name, "error", err)
	}
	sc := &subscribed{c: c}
	sc.opMu.Lock()
	defer sc.opMu.Unlock()
	s.mu.Lock()
	s.conns[conn.Name] = sc
	s.mu.Unlock()
	var made []*subscription
	for _, folder := range c.sources {
		id, err := c.resolveSource(ctx, folder)
		if err == nil {
			var sub *subscription
			sub, err = s.create(ctx, c, folder, id)
			if err == nil {
				made = append(made, sub)
				continue
			}
		}
		// Undo the folders subscribed so far: all or nothing.
		for _, sub := range made {
			s.delete(ctx, c, sub)
		}
		s.mu.Lock()
		delete(s.conns, conn.Name)
		s.mu.Unlock()
		c.Close()
		return c.scrub.Error(err)
	}
	return nil
}

// create makes one subscription on folder (id or well-known name folderID).
func (s *Subscriber) create(ctx context.Context, c *Connector, folder, folderID string) (*subscription, error) {
	state := s.opts.ClientState
	notifyURL, lifecycleURL := s.opts.NotificationURL, s.opts.LifecycleURL
	if key := s.currentKey(); key != "" {
		c.scrub.Add(key.Reveal())
		state = mailsync.Secret(deriveClientState(key, c.conn.Name))
		notifyURL, lifecycleURL = withConnection(notifyURL, c.conn.Name), withConnection(lifecycleURL, c.conn.Name)
	}
	if state == "" {
		b := make([]byte, 32)
		if _, err := rand.Read(b); err != nil {
			return nil, err
		}
		state = mailsync.Secret(base64.RawURLEncoding.EncodeToString(b))
	}
	c.scrub.Add(state.Reveal())
	resource := "users/" + c.conn.User + "/mailFolders('" + strings.ReplaceAll(folderID, "'", "''") + "')/messages"
	exp := time.Now().Add(s.opts.Lifetime).UTC()
	body := map[string]any{"changeType": "created", "notificationUrl": notifyURL,
		"lifecycleNotificationUrl": lifecycleURL, "resource": resource,
		"expirationDateTime": exp.Format(time.RFC3339Nano), "clientState": state.Reveal()}
	var out struct {
		ID         string    `json:"id"`
		Expiration time.Time `json:"expirationDateTime"`
	}
	if err := s.send(ctx, c, http.MethodPost, "/subscriptions", body, &out); err != nil {
		return nil, mapError(ctx, "subscribe "+folder, err, mailsync.ErrFolderNotFound)
	}
	if out.ID == "" {
		return nil, &Error{Op: "subscribe " + folder, Message: "no subscription id in the response", Kind: mailsync.ErrConnection}
	}
	if out.Expiration.IsZero() {
		out.Expiration = exp
	}
	sub := &subscription{id: out.ID, conn: c.conn.Name, folder: folder, resource: resource, state: state, expires: out.Expiration, renewed: time.Now()}
	s.mu.Lock()
	s.subs[sub.id] = sub
	s.mu.Unlock()
	s.log.InfoContext(ctx, "graph: subscribed", "connection", c.conn.Name, "folder", folder, "subscription", sub.id, "expires", sub.expires)
	return sub, nil
}

// delete removes one subscription at Graph (a 404 counts as done) and here.
func (s *Subscriber) delete(ctx context.Context, c *Connector, sub *subscription) error {
	s.mu.Lock()
	delete(s.subs, sub.id)
	s.mu.Unlock()
	err := s.send(ctx, c, http.MethodDelete, "/subscriptions/"+url.PathEscape(sub.id), nil, nil)
	if err != nil && statusOf(err) != http.StatusNotFound {
		return mapError(ctx, "unsubscribe "+sub.folder, err, nil)
	}
	return nil
}

// send makes one JSON request to the service root through the
// connector's request adapter (token, pacing, retries, 401 retry) and
// decodes the answer into out (when not nil).
func (s *Subscriber) send(ctx context.Context, c *Connector, method, path string, in, out any) error {
	u, err := url.Parse(c.base.String() + path)
	if err != nil {
		return err
	}
	var payload []byte
	if in != nil {
		if payload, err = json.Marshal(in); err != nil {
			return err
		}
	}
	var got []byte
	err = c.call(ctx, func(ctx context.Context) error {
		ri := abs.NewRequestInformation()
		ri.Method = map[string]abs.HttpMethod{http.MethodPost: abs.POST, http.MethodPatch: abs.PATCH, http.MethodDelete: abs.DELETE, http.MethodGet: abs.GET}[method]
		ri.SetUri(*u)
		ri.Headers.TryAdd("Accept", "application/json")
		if payload != nil {
			ri.SetStreamContentAndContentType(payload, "application/json")
		}
		res, err := c.adapter.SendPrimitive(ctx, ri, "[]byte", abs.ErrorMappings{"XXX": odataerrors.CreateODataErrorFromDiscriminatorValue})
		if b, ok := res.([]byte); ok {
			got = b
		}
		return err
	})
	if err != nil {
		return err
	}
	if out != nil && len(got) > 0 {
		if err := json.Unmarshal(got, out); err != nil {
			return &Error{Op: strings.ToLower(method) + " " + path, Message: "unreadable response", Kind: mailsync.ErrConnection, Err: err}
		}
	}
	return nil
}

// Unsubscribe deletes the connection's subscriptions at Graph and forgets
// them. A connection without subscriptions is no error.
func (s *Subscriber) Unsubscribe(ctx context.Context, conn string) error {
	s.mu.Lock()
	sc := s.conns[conn]
	delete(s.conns, conn)
	if f := s.fire[conn]; f != nil && f.timer != nil {
		f.timer.Stop()
	}
	delete(s.fire, conn)
	var subs []*subscription
	for _, sub := range s.subs {
		if sub.conn == conn {
			subs = append(subs, sub)
		}
	}
	s.mu.Unlock()
	if sc == nil {
		return nil
	}
	sc.opMu.Lock()
	defer sc.opMu.Unlock()
	var errs []error
	for _, sub := range subs {
		if err := s.delete(ctx, sc.c, sub); err != nil {
			errs = append(errs, err)
		}
	}
	sc.c.Close()
	return sc.c.scrub.Error(errors.Join(errs...))
}

// Subscriptions lists the subscriptions kept, in no particular order.
func (s *Subscriber) Subscriptions() []SubscriptionInfo {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []SubscriptionInfo
	for _, sub := range s.subs {
		out = append(out, SubscriptionInfo{ID: sub.id, Connection: sub.conn, Folder: sub.folder, Resource: sub.resource, Expires: sub.expires})
	}
	return out
}

// Renew renews (PATCH expirationDateTime) every subscription with less
// than RenewBefore left, and, with VerifyEvery, every subscription not
// renewed for that long. With a ClientStateKey, a subscription made under
// another key than the current one (see SetClientStateKeys) is renewed by
// making it anew under the current key, then deleting it. A subscription
// Graph no longer knows (404) or that expired meanwhile is created anew
// and its connection gets
// OnChange(conn, true), since notifications may have been lost. It
// returns the errors of the renewals that failed (they are tried again
// on the next call).
func (s *Subscriber) Renew(ctx context.Context) error {
	now := time.Now()
	key := s.currentKey()
	s.mu.Lock()
	var due []*subscription
	for _, sub := range s.subs {
		if sub.expires.Sub(now) < s.opts.RenewBefore || (s.opts.VerifyEvery > 0 && now.Sub(sub.renewed) >= s.opts.VerifyEvery) ||
			underOldKey(sub, key) {
			due = append(due, sub)
		}
	}
	s.mu.Unlock()
	var errs []error
	for _, sub := range due {
		if err := s.renew(ctx, sub.id, false); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// renew extends subscription id, or recreates it when Graph no longer has
// it; recreated (or recreate) calls OnChange(conn, true).
func (s *Subscriber) renew(ctx context.Context, id string, recreate bool) error {
	s.mu.Lock()
	sub := s.subs[id]
	var sc *subscribed
	if sub != nil {
		sc = s.conns[sub.conn]
	}
	s.mu.Unlock()
	if sub == nil || sc == nil {
		return nil // unsubscribed or already replaced
	}
	sc.opMu.Lock()
	defer sc.opMu.Unlock()
	s.mu.Lock()
	current := s.subs[id] == sub
	s.mu.Unlock()
	if !current {
		return nil
	}
	c := sc.c
	if !recreate && time.Now().Before(sub.expires) && underOldKey(sub, s.currentKey()) {
		return s.rekey(ctx, c, sub)
	}
	if !recreate && time.Now().Before(sub.expires) {
		exp := time.Now().Add(s.opts.Lifetime).UTC()
		var out struct {
			Expiration time.Time `json:"expirationDateTime"`
		}
		err := s.send(ctx, c, http.MethodPatch, "/subscriptions/"+url.PathEscape(id), map[string]any{"expirationDateTime": exp.Format(time.RFC3339Nano)}, &out)
		if err == nil {
			if out.Expiration.IsZero() {
				out.Expiration = exp
			}
			s.mu.Lock()
			sub.expires, sub.renewed = out.Expiration, time.Now()
			s.mu.Unlock()
			s.log.DebugContext(ctx, "graph: subscription renewed", "connection", sub.conn, "folder", sub.folder, "subscription", id, "expires", out.Expiration)
			return nil
		}
		if statusOf(err) != http.StatusNotFound {
			return c.scrub.Error(mapError(ctx, "renew subscription of "+sub.folder, err, nil))
		}
		s.log.WarnContext(ctx, "graph: subscription gone at Graph; creating it anew", "connection", sub.conn, "folder", sub.folder, "subscription", id)
	}
	// Gone, expired or removed: a new one, and a sync for what was missed.
	s.delete(ctx, c, sub) // best effort; usually 404
	folderID, err := c.resolveSource(ctx, sub.folder)
	if err == nil {
		_, err = s.create(ctx, c, sub.folder, folderID)
	}
	s.notify(sub.conn, true, "")
	if err != nil {
		// Keep a placeholder so the next Renew tries again.
		s.mu.Lock()
		if s.conns[sub.conn] == sc {
			s.subs[id] = sub
			sub.expires = time.Time{}
		}
		s.mu.Unlock()
		return c.scrub.Error(err)
	}
	return nil
}

// underOldKey reports whether sub's clientState was derived under another
// key than key, the current one ("" without a ClientStateKey: never).
func underOldKey(sub *subscription, key mailsync.Secret) bool {
	return key != "" && sub.state.Reveal() != deriveClientState(key, sub.conn)
}

// rekey replaces the live subscription sub, made under a key that is no
// longer the current one, by a new one under the current key: Graph's
// renewal cannot change a clientState (PATCH /subscriptions/{id} takes
// only expirationDateTime). The new one is made first, so notifications
// never stop; no sync is asked for. On failure sub stays, and stays due.
// Called with the connection's opMu held.
func (s *Subscriber) rekey(ctx context.Context, c *Connector, sub *subscription) error {
	folderID, err := c.resolveSource(ctx, sub.folder)
	var made *subscription
	if err == nil {
		made, err = s.create(ctx, c, sub.folder, folderID)
	}
	if err != nil {
		return c.scrub.Error(fmt.Errorf("graph: moving subscription %s to the current client state key: %w", sub.id, err))
	}
	if err := s.delete(ctx, c, sub); err != nil {
		s.log.WarnContext(ctx, "graph: deleting a subscription under an old client state key failed; it expires by itself",
			"connection", sub.conn, "folder", sub.folder, "subscription", sub.id, "error", c.scrub.Error(err))
	}
	s.log.InfoContext(ctx, "graph: subscription moved to the current client state key", "connection", sub.conn,
		"folder", sub.folder, "old subscription", sub.id, "subscription", made.id)
	return nil
}

// Run calls Renew every CheckEvery (and once at once) until ctx is done
// or the Subscriber is closed; failures are logged and retried.
func (s *Subscriber) Run(ctx context.Context) error {
	t := time.NewTicker(s.opts.CheckEvery)
	defer t.Stop()
	for {
		if err := s.Renew(ctx); err != nil && ctx.Err() == nil {
			s.log.WarnContext(ctx, "graph: renewing subscriptions failed; retrying later", "error", err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-s.ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// Close stops the lifecycle work and pending OnChange timers and waits
// for running OnChange calls and renewals. It leaves the subscriptions at
// Graph (they expire; call Unsubscribe to delete them) and closes the
// connectors.
func (s *Subscriber) Close() error {
	s.cancel()
	s.mu.Lock()
	for _, f := range s.fire {
		if f.timer != nil {
			f.timer.Stop()
		}
	}
	conns := s.conns
	s.conns = map[string]*subscribed{}
	s.mu.Unlock()
	s.wg.Wait()
	for _, sc := range conns {
		sc.c.Close()
	}
	return nil
}

// notification is one entry of a changeNotificationCollection (or a
// lifecycle notification).
type notification struct {
	SubscriptionID string `json:"subscriptionId"`
	TenantID       string `json:"tenantId"`
	ClientState    string `json:"clientState"`
	ChangeType     string `json:"changeType"`
	Resource       string `json:"resource"`
	LifecycleEvent string `json:"lifecycleEvent"`
	ResourceData   struct {
		ID string `json:"id"`
	} `json:"resourceData"`
}

// Handler serves NotificationURL and LifecycleURL:
//
//   - a request with a validationToken query parameter (Graph's
//     handshake when a subscription is created) is answered 200 with the
//     token as text/plain;
//   - a POSTed notification collection is answered 202 at once. Without
//     a ClientStateKey, each notification whose subscription is unknown,
//     or whose clientState does not match that subscription's (compared
//     in constant time), is discarded and logged. With a ClientStateKey,
//     each notification whose URL names no valid connection
//     (ConnectionParam), whose clientState is not the one derived for
//     that connection under the current or a previous key (compared in
//     constant time), or whose subscription this Subscriber holds for
//     another connection, is discarded and logged; so are those of any
//     process's subscriptions accepted. Either way, a notification whose
//     tenantId differs from the connection's known tenant is discarded
//     and logged (see "What a notification must match"). The others lead
//     to OnChange, coalesced per connection (see
//     SubscriberOptions.Coalesce);
//   - lifecycle notifications: reauthorizationRequired renews the
//     subscription (recreating it if Graph no longer has it);
//     subscriptionRemoved creates it anew; missed calls
//     OnChange(conn, true). Both renewals run in the background. For a
//     subscription held by another process (ClientStateKey),
//     reauthorizationRequired and subscriptionRemoved call
//     OnChange(conn, true) and OnLifecycle; that process's Run renews or
//     recreates it (VerifyEvery).
//
// A body that is not a notification collection gets 400. Notifications
// with a wrong clientState still get 202, so a forger learns nothing.
func (s *Subscriber) Handler() http.Handler {
	return http.HandlerFunc(s.serveHTTP)
}

func (s *Subscriber) serveHTTP(w http.ResponseWriter, r *http.Request) {
	if tok, ok := r.URL.Query()["validationToken"]; ok {
		if len(tok) != 1 || len(tok[0]) > 4096 {
			http.Error(w, "bad validation token", http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		w.WriteHeader(http.StatusOK)
		io.WriteString(w, tok[0])
		return
	}
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	var coll struct {
		Value []notification `json:"value"`
	}
	b, err := io.ReadAll(io.LimitReader(r.Body, 4<<20))
	if err != nil || json.Unmarshal(b, &coll) != nil {
		http.Error(w, "not a notification collection", http.StatusBadRequest)
		return
	}
	conn, connOK := "", false
	if s.opts.ClientStateKey != "" {
		if conn, connOK = connectionOf(r.URL); !connOK && len(coll.Value) > 0 {
			s.log.WarnContext(r.Context(), "graph: notifications whose URL names no valid connection discarded", "notifications", len(coll.Value))
		}
	}
	var wants []string // the clientStates of the connection the URL names, under each key
	if connOK {
		s.mu.Lock()
		keys := s.keys
		s.mu.Unlock()
		for _, k := range keys {
			wants = append(wants, deriveClientState(k, conn))
		}
	}
	d := &discards{log: s.log}
	for _, n := range coll.Value {
		if s.opts.ClientStateKey != "" && !connOK {
			break
		}
		s.handle(r.Context(), n, conn, wants, d)
	}
	d.summary(r.Context())
	w.WriteHeader(http.StatusAccepted)
}

// discards logs the notifications of one request that are discarded: the
// first at its level, the others only counted in one line at the end, so
// that a request of thousands of forged notifications (anyone may POST to
// the notification URL) costs one or two log lines, not thousands.
type discards struct {
	log  *slog.Logger
	n    int
	last string
}

func (d *discards) note(ctx context.Context, level slog.Level, msg string, args ...any) {
	d.n++
	d.last = msg
	if d.n == 1 {
		d.log.Log(ctx, level, msg, args...)
	}
}

func (d *discards) summary(ctx context.Context) {
	if d.n > 1 {
		d.log.WarnContext(ctx, "graph: more notifications of the request discarded", "count", d.n-1, "last", d.last)
	}
}

// handle checks one notification and acts on it; conn is the connection
// its URL names and wants its clientStates under the current and previous
// keys (with a ClientStateKey: valid already); d logs what is discarded.
func (s *Subscriber) handle(ctx context.Context, n notification, conn string, wants []string, d *discards) {
	s.mu.Lock()
	sub := s.subs[n.SubscriptionID]
	s.mu.Unlock()
	if s.opts.ClientStateKey == "" {
		if sub == nil {
			d.note(ctx, slog.LevelDebug, "graph: notification for an unknown subscription discarded", "subscription", clip(n.SubscriptionID, 80))
			return
		}
		if subtle.ConstantTimeCompare([]byte(n.ClientState), []byte(sub.state.Reveal())) != 1 {
			d.note(ctx, slog.LevelWarn, "graph: notification with a wrong clientState discarded", "connection", sub.conn, "subscription", sub.id)
			return
		}
		conn = sub.conn
	} else {
		match := 0
		for _, want := range wants {
			match |= subtle.ConstantTimeCompare([]byte(n.ClientState), []byte(want))
		}
		if match != 1 {
			d.note(ctx, slog.LevelWarn, "graph: notification with a wrong clientState discarded", "connection", conn, "subscription", clip(n.SubscriptionID, 80))
			return
		}
		if sub != nil && sub.conn != conn {
			d.note(ctx, slog.LevelWarn, "graph: notification naming another connection than its subscription's discarded", "connection", conn, "subscription", sub.id)
			return
		}
	}
	if tenant := s.tenantOf(conn); tenant != "" && n.TenantID != "" && !strings.EqualFold(n.TenantID, tenant) {
		d.note(ctx, slog.LevelWarn, "graph: notification from another tenant than its connection's discarded", "connection", conn,
			"subscription", clip(n.SubscriptionID, 80), "tenant", clip(n.TenantID, 40))
		return
	}
	subID := clip(n.SubscriptionID, 80)
	switch n.LifecycleEvent {
	case "":
		s.notify(conn, false, subID+"\x00"+clip(n.ChangeType, 40)+"\x00"+clip(n.Resource, 512)+"\x00"+clip(n.ResourceData.ID, 512))
	case "missed":
		s.log.InfoContext(ctx, "graph: Graph missed notifications; syncing", "connection", conn, "subscription", subID)
		s.notify(conn, true, "")
	case "reauthorizationRequired", "subscriptionRemoved":
		s.log.InfoContext(ctx, "graph: lifecycle notification", "event", n.LifecycleEvent, "connection", conn, "subscription", subID,
			"held here", sub != nil)
		event := n.LifecycleEvent
		if sub == nil {
			// Another process's subscription: sync now; that process
			// renews or recreates it (OnLifecycle, or its Run).
			s.notify(conn, true, "")
			if s.opts.OnLifecycle != nil {
				s.background(func(ctx context.Context) {
					defer func() {
						if p := recover(); p != nil {
							s.log.Error("graph: OnLifecycle panicked", "connection", conn, "panic", fmt.Sprint(p))
						}
					}()
					s.opts.OnLifecycle(ctx, conn, event)
				})
			}
			return
		}
		recreate := event == "subscriptionRemoved"
		s.background(func(ctx context.Context) {
			if err := s.renew(ctx, sub.id, recreate); err != nil {
				s.log.WarnContext(ctx, "graph: handling a lifecycle notification failed; Renew retries", "event", event, "connection", sub.conn, "error", err)
			}
		})
	default:
		s.log.DebugContext(ctx, "graph: unknown lifecycle event ignored", "event", clip(n.LifecycleEvent, 40))
	}
}

// tenantOf returns the directory (tenant) id of the connection conn when
// it is known and a GUID, the only form a notification's tenantId takes:
// the TenantID of the OAuth block of a connection this process holds,
// otherwise ConnectionTenant's answer. A tenant given by domain name
// ("contoso.onmicrosoft.com") or "common"/"organizations"/"consumers"
// cannot be compared: "".
func (s *Subscriber) tenantOf(conn string) string {
	s.mu.Lock()
	sc := s.conns[conn]
	s.mu.Unlock()
	var t string
	switch {
	case sc != nil:
		if o := sc.c.conn.OAuth; o != nil {
			t = o.TenantID
		}
	case s.opts.ConnectionTenant != nil:
		t = s.opts.ConnectionTenant(conn)
	}
	if !isGUID(t) {
		return ""
	}
	return t
}

// isGUID reports whether v has the form of a GUID
// (xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx, hexadecimal digits).
func isGUID(v string) bool {
	if len(v) != 36 {
		return false
	}
	for i := 0; i < len(v); i++ {
		c := v[i]
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return false
			}
		default:
			if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
				return false
			}
		}
	}
	return true
}

// HandlerOptions configure NewHandler.
type HandlerOptions struct {
	// ClientStateKey is the key the subscribing processes' Subscribers
	// were given (SubscriberOptions.ClientStateKey). Required; never
	// logged.
	ClientStateKey mailsync.Secret
	// PreviousClientStateKeys are further keys accepted for verification,
	// as SubscriberOptions.PreviousClientStateKeys.
	PreviousClientStateKeys []mailsync.Secret
	// ConnectionTenant, when set, returns the directory (tenant) id of a
	// connection, or "" when unknown; a notification whose tenantId names
	// another is discarded. As SubscriberOptions.ConnectionTenant.
	ConnectionTenant func(conn string) string
	// OnChange is called, on its own goroutine, when a connection should
	// sync, as SubscriberOptions.OnChange. Required.
	OnChange func(conn string, full bool)
	// OnLifecycle, when set, is called on its own goroutine for a
	// subscriptionRemoved or reauthorizationRequired notification (after
	// OnChange(conn, true)), as SubscriberOptions.OnLifecycle.
	OnLifecycle func(ctx context.Context, conn, event string)
	// Coalesce is as SubscriberOptions.Coalesce. Default DefaultCoalesce.
	Coalesce time.Duration
	// Logger receives records of discarded notifications (never the key
	// or a client state). Default: discard.
	Logger *slog.Logger
}

// Handler is a receive-only notification handler: it serves the
// notification and lifecycle URLs of subscriptions that other processes'
// Subscribers created with the same ClientStateKey, for a process that
// subscribes nothing itself (see "Notifications in a fleet of
// processes"). It answers the validation handshake, checks each
// notification's connection (from the URL), clientState (under the
// current or a previous key) and, with ConnectionTenant, tenantId as a
// Subscriber's handler with a ClientStateKey does, and calls OnChange:
// for created notifications OnChange(conn, false), for missed ones
// OnChange(conn, true); for subscriptionRemoved and
// reauthorizationRequired OnChange(conn, true) and OnLifecycle (the
// subscribing process's Run renews or recreates the subscription). A
// mismatch is discarded and logged, and still answered 202.
type Handler struct {
	s *Subscriber
}

// NewHandler checks opts and returns a receive-only Handler.
func NewHandler(opts HandlerOptions) (*Handler, error) {
	s, err := newSubscriber(SubscriberOptions{ClientStateKey: opts.ClientStateKey, PreviousClientStateKeys: opts.PreviousClientStateKeys,
		ConnectionTenant: opts.ConnectionTenant, OnChange: opts.OnChange,
		OnLifecycle: opts.OnLifecycle, Coalesce: opts.Coalesce, Logger: opts.Logger}, true)
	if err != nil {
		return nil, err
	}
	return &Handler{s: s}, nil
}

// SetClientStateKeys changes the keys the Handler verifies with, while it
// runs: current and the previous ones, checked as NewHandler checks them
// (see Subscriber.SetClientStateKeys).
func (h *Handler) SetClientStateKeys(current mailsync.Secret, previous ...mailsync.Secret) error {
	return h.s.SetClientStateKeys(current, previous...)
}

// ServeHTTP implements http.Handler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) { h.s.serveHTTP(w, r) }

// Close stops pending OnChange timers and waits for running OnChange and
// OnLifecycle calls.
func (h *Handler) Close() error { return h.s.Close() }

// background runs fn on its own goroutine with a context that Close
// cancels.
func (s *Subscriber) background(fn func(context.Context)) {
	s.mu.Lock()
	if s.ctx.Err() != nil {
		s.mu.Unlock()
		return
	}
	s.wg.Add(1)
	s.mu.Unlock()
	go func() {
		defer s.wg.Done()
		ctx, cancel := context.WithTimeout(s.ctx, 2*time.Minute)
		defer cancel()
		fn(ctx)
	}()
}

// notify asks for a sync of conn, coalesced: at once when none was asked
// within the Coalesce window, otherwise once at the window's end. key,
// when set, identifies the change: a repeat within the window is dropped.
func (s *Subscriber) notify(conn string, full bool, key string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ctx.Err() != nil {
		return
	}
	now := time.Now()
	f := s.fire[conn]
	if f == nil {
		f = &coalescer{seen: map[string]time.Time{}}
		s.fire[conn] = f
	}
	for k, t := range f.seen {
		if now.Sub(t) >= s.opts.Coalesce {
			delete(f.seen, k)
		}
	}
	if key != "" {
		if _, dup := f.seen[key]; dup {
			return
		}
		f.seen[key] = now
	}
	if f.pending {
		f.full = f.full || full
		return
	}
	if wait := f.last.Add(s.opts.Coalesce).Sub(now); !f.last.IsZero() && wait > 0 {
		f.pending, f.full = true, full
		f.timer = time.AfterFunc(wait, func() {
			s.mu.Lock()
			if s.fire[conn] != f || !f.pending || s.ctx.Err() != nil {
				s.mu.Unlock()
				return
			}
			full := f.full
			f.pending, f.full, f.last = false, false, time.Now()
			s.wg.Add(1)
			s.mu.Unlock()
			go s.call(conn, full)
		})
		return
	}
	f.last = now
	s.wg.Add(1)
	go s.call(conn, full)
}

func (s *Subscriber) call(conn string, full bool) {
	defer s.wg.Done()
	defer func() {
		if p := recover(); p != nil {
			s.log.Error("graph: OnChange panicked", "connection", conn, "panic", fmt.Sprint(p))
		}
	}()
	s.opts.OnChange(conn, full)
}
