package gmail

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"golang.org/x/oauth2"

	"github.com/mailsync/mailsync"
	"github.com/mailsync/mailsync/oauthx"
)

// DefaultEndpoint is the Gmail API's root URL.
const DefaultEndpoint = "https://gmail.googleapis.com/"

// Defaults of Options.
const (
	DefaultBatchSize = 50  // Google advises against batches larger than 50
	MaxBatchSize     = 100 // the batch endpoint's limit
	DefaultPageSize  = 500 // messages.list and history.list maximum
	// DefaultMaxRetries bounds the retries of one API call. Sync retries
	// whole operations (see mailsync.Connector); the connector retries only
	// what Sync cannot at a finer grain — one throttled call among the
	// per-message calls of an Ack, the throttled parts of a batch — so it
	// keeps these few.
	DefaultMaxRetries = 2
	DefaultRetryBase  = time.Second
	DefaultMaxWait    = 30 * time.Second // mailsync.Sync's longest wait
)

// Options configure New and Check. The zero value reads INBOX with the
// token source built from the connection's OAuth block.
type Options struct {
	// TokenSource yields the OAuth 2.0 access tokens (what
	// google.golang.org/api's option.WithTokenSource would take; the
	// provider adds the tokens itself, see the package doc). When nil and the
	// connection has an OAuth block, New builds one with oauthx from it,
	// configured by OAuth. A source with an Invalidate(*oauth2.Token)
	// method (oauthx's has one) is told when the API rejects a token, so
	// the next request refreshes it. A host that syncs often should keep
	// one token source per connection and pass it to every New, so that
	// each sync does not start with a refresh.
	TokenSource oauth2.TokenSource
	// OAuth configures the oauthx token source New builds when TokenSource
	// is nil; set OAuth.OnRefreshToken to store rotated refresh tokens.
	OAuth oauthx.Options
	// HTTPClient sends the API requests. Its Transport carries them under
	// the provider's own, which adds the access token and counts the
	// requests; the resulting client goes to gmail/v1 with
	// option.WithHTTPClient and serves the batch and raw requests too.
	// Its transport must not add authentication when TokenSource or the
	// OAuth block is used; with neither, it must authenticate the
	// requests itself. Default: http.DefaultTransport's settings with a
	// 60 s response-header timeout and no overall timeout (messages
	// stream).
	HTTPClient *http.Client
	// Endpoint is the API root URL (given to gmail/v1 with
	// option.WithEndpoint, and the root of the batch endpoint), default
	// DefaultEndpoint. Plain http is refused unless the host is loopback
	// (tests), since the access token travels in a header.
	Endpoint string
	// UserID is the mailbox: "me" (the default: the token's user) or an
	// e-mail address, as with domain-wide delegation.
	UserID string
	// Labels are the labels read, by name ("INBOX", "Support/Tier 1") or
	// id ("Label_12"); default INBOX. A message is listed when it carries
	// any of them. System labels are matched case-insensitively.
	Labels []string
	// PermanentDelete makes the Delete post-action delete messages for
	// good (messages.batchDelete, which needs the https://mail.google.com/
	// scope) instead of moving them to the trash (messages.trash, the
	// default; Gmail empties the trash after 30 days). Set it only when
	// the admin explicitly asks for permanent deletion.
	PermanentDelete bool
	// BatchSize is how many calls one batch request carries, 1 to 100;
	// default 50. It shrinks by itself while the API throttles.
	BatchSize int
	// PageSize is the page size of messages.list and history.list, 1 to
	// 500; default 500.
	PageSize int
	// MaxRetries is how often a throttled (429, 403 rate limit) or failed
	// (5xx) call is retried before the error is returned; default 5. Use
	// a negative value for no retries.
	MaxRetries int
	// RetryBase is the first back-off delay, doubled on each retry (with
	// jitter); default 1 s. A Retry-After from the server wins.
	RetryBase time.Duration
	// MaxWait is the longest single wait. A server asking for longer gets
	// a *mailsync.ThrottledError at once, so the engine can reschedule;
	// default 1 min.
	MaxWait time.Duration
	// Logger receives debug and warning logs; default discards. It never
	// sees a token or message content.
	Logger *slog.Logger
}

// String describes the options without the token source, which may hold
// a token.
func (o Options) String() string {
	ts := "none"
	if o.TokenSource != nil {
		ts = "set"
	}
	return fmt.Sprintf("gmail.Options{endpoint=%q user=%q labels=%q permanent_delete=%v batch=%d page=%d token_source=%s}",
		o.Endpoint, o.UserID, o.Labels, o.PermanentDelete, o.BatchSize, o.PageSize, ts)
}

// Format implements fmt.Formatter so that every verb prints String.
func (o Options) Format(f fmt.State, verb rune) { io.WriteString(f, o.String()) }

// LogValue implements slog.LogValuer without the token source.
func (o Options) LogValue() slog.Value { return slog.StringValue(o.String()) }

// config is the validated, defaulted form of a Connection and Options.
type config struct {
	conn       mailsync.Connection
	opts       Options // as given, for Connector.Check
	root       *url.URL
	user       string
	labels     []string
	permDelete bool
	batchSize  int
	pageSize   int
	retries    int
	retryBase  time.Duration
	maxWait    time.Duration
	hc         *http.Client
	ownClient  bool
	ts         oauth2.TokenSource
	log        *slog.Logger
	scrub      *scrubber // the secrets to remove from server text
}

func newConfig(ctx context.Context, conn mailsync.Connection, opts Options) (*config, error) {
	var probs []mailsync.Problem
	add := func(field string, code mailsync.ProblemCode, msg string) {
		probs = append(probs, mailsync.Problem{Field: field, Code: code, Message: msg})
	}
	if strings.TrimSpace(conn.Name) == "" {
		add("name", mailsync.CodeRequired, "is required")
	}
	if conn.Protocol != "" {
		add("protocol", mailsync.CodeConflict, fmt.Sprintf("is %q; a Gmail API connection has no protocol", conn.Protocol))
	}
	if conn.OAuth != nil && conn.OAuth.Provider != mailsync.GmailAPI {
		add("oauth.provider", mailsync.CodeConflict, fmt.Sprintf("is %q, the gmail provider needs %q", conn.OAuth.Provider, mailsync.GmailAPI))
	}
	endpoint := opts.Endpoint
	if endpoint == "" {
		endpoint = DefaultEndpoint
	}
	root, err := url.Parse(endpoint)
	var plaintext bool
	switch {
	case err != nil || root.Host == "" || (root.Scheme != "https" && root.Scheme != "http"):
		add("endpoint", mailsync.CodeInvalid, "is not an absolute http(s) URL")
	case root.Scheme == "http" && !mailsync.IsLoopbackHost(root.Hostname()):
		plaintext = true
	}
	if root != nil && !strings.HasSuffix(root.Path, "/") {
		root.Path += "/"
	}
	user := opts.UserID
	if user == "" {
		user = "me"
	}
	if strings.ContainsAny(user, "/?#\r\n ") {
		add("user_id", mailsync.CodeInvalid, "must be \"me\" or an e-mail address")
	}
	labels := opts.Labels
	if len(labels) == 0 {
		labels = []string{"INBOX"}
	}
	seen := map[string]bool{}
	var uniq []string
	for i, l := range labels {
		l = strings.TrimSpace(l)
		if l == "" {
			add(fmt.Sprintf("labels[%d]", i), mailsync.CodeRequired, "is empty")
			continue
		}
		if id, ok := systemLabel(l); ok {
			l = id
		}
		if !seen[l] {
			seen[l] = true
			uniq = append(uniq, l)
		}
	}
	batch := opts.BatchSize
	if batch == 0 {
		batch = DefaultBatchSize
	}
	if batch < 1 || batch > MaxBatchSize {
		probs = append(probs, mailsync.Problem{Field: "batch_size", Code: mailsync.CodeOutOfRange, Limit: MaxBatchSize,
			Message: fmt.Sprintf("%d is out of range 1-%d", opts.BatchSize, MaxBatchSize)})
	}
	page := opts.PageSize
	if page == 0 {
		page = DefaultPageSize
	}
	if page < 1 || page > 500 {
		probs = append(probs, mailsync.Problem{Field: "page_size", Code: mailsync.CodeOutOfRange, Limit: 500,
			Message: fmt.Sprintf("%d is out of range 1-500", opts.PageSize)})
	}
	if opts.RetryBase < 0 || opts.MaxWait < 0 {
		add("retry", mailsync.CodeNegative, "delays must not be negative")
	}
	if opts.TokenSource == nil && conn.OAuth == nil && opts.HTTPClient == nil {
		add("oauth", mailsync.CodeRequired, "is required (or Options.TokenSource, or an authenticating Options.HTTPClient)")
	}
	if len(probs) > 0 {
		return nil, mailsync.NewConfigError(probs...)
	}
	if plaintext {
		return nil, fmt.Errorf("gmail: %s: endpoint %s: %w (use https)", conn.Name, root.Redacted(), mailsync.ErrPlaintextRefused)
	}
	c := &config{
		opts:       opts,
		conn:       conn,
		root:       root,
		user:       user,
		labels:     uniq,
		permDelete: opts.PermanentDelete,
		batchSize:  batch,
		pageSize:   page,
		retries:    opts.MaxRetries,
		retryBase:  opts.RetryBase,
		maxWait:    opts.MaxWait,
		hc:         opts.HTTPClient,
		ts:         opts.TokenSource,
		log:        opts.Logger,
	}
	if c.retries == 0 {
		c.retries = DefaultMaxRetries
	} else if c.retries < 0 {
		c.retries = 0
	}
	if c.retryBase == 0 {
		c.retryBase = DefaultRetryBase
	}
	if c.maxWait == 0 {
		c.maxWait = DefaultMaxWait
	}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	c.log = c.log.With(slog.String("connection", conn.Name), slog.String("provider", "gmail"))
	if c.hc == nil {
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.ResponseHeaderTimeout = 60 * time.Second
		c.hc = &http.Client{Transport: t}
		c.ownClient = true
	}
	c.scrub = newScrubber()
	if conn.OAuth != nil {
		c.scrub.add(conn.OAuth.ClientSecret.Reveal(), conn.OAuth.RefreshToken.Reveal())
	}
	if c.ts == nil && conn.OAuth != nil {
		oo := opts.OAuth
		if store := oo.OnRefreshToken; store != nil {
			oo.OnRefreshToken = func(ctx context.Context, rt mailsync.Secret) error {
				c.scrub.add(rt.Reveal())
				return store(ctx, rt)
			}
		}
		ts, err := oauthx.New(ctx, conn.OAuth, oo)
		if err != nil {
			return nil, err
		}
		c.ts = ts
	}
	return c, nil
}

// systemLabel returns the id of the system label named name
// (case-insensitive), if it is one.
func systemLabel(name string) (string, bool) {
	switch u := strings.ToUpper(name); u {
	case "INBOX", "SPAM", "TRASH", "UNREAD", "STARRED", "IMPORTANT", "SENT", "DRAFT", "CHAT",
		"CATEGORY_PERSONAL", "CATEGORY_SOCIAL", "CATEGORY_PROMOTIONS", "CATEGORY_UPDATES", "CATEGORY_FORUMS":
		return u, true
	}
	return "", false
}

// The OAuth scopes of the Gmail API this provider uses.
const (
	// ScopeReadonly reads messages, labels and history.
	ScopeReadonly = "https://www.googleapis.com/auth/gmail.readonly"
	// ScopeModify adds changing labels (mark read, move) and trashing;
	// it includes reading.
	ScopeModify = "https://www.googleapis.com/auth/gmail.modify"
	// ScopeFullAccess is needed only for Options.PermanentDelete.
	ScopeFullAccess = "https://mail.google.com/"
)

// Scopes returns the OAuth scope a connection needs for action with the
// default options: gmail.readonly when the mail is left untouched,
// gmail.modify when the post-action writes (mark read, move, trash).
// Creating the move target label is covered by gmail.modify too.
func Scopes(action mailsync.PostAction) []string {
	return Options{}.Scopes(action)
}

// Scopes is the package-level Scopes with these options: a Delete with
// PermanentDelete needs https://mail.google.com/.
func (o Options) Scopes(action mailsync.PostAction) []string {
	switch action.Kind {
	case mailsync.LeaveUntouched:
		return []string{ScopeReadonly}
	case mailsync.Delete:
		if o.PermanentDelete {
			return []string{ScopeFullAccess}
		}
	}
	return []string{ScopeModify}
}
