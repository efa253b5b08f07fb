// Package graph is the mailsync provider for Microsoft 365 / Exchange
// Online mailboxes through Microsoft Graph (msgraph-sdk-go).
//
// It reads one mail folder of the connection's user (conn.User: user
// principal name or object id), or several (Options.Folders), each with
// the delta query and its own delta link in the cursor:
//
//   - List follows every @odata.nextLink page and returns the
//     @odata.deltaLink as the cursor, so a sync with nothing new is one
//     request. Ids are immutable (Prefer: IdType="ImmutableId"): a
//     message keeps its key when it is moved. Pages are as large as
//     Options.PageSize (Prefer: odata.maxpagesize). "@removed" entries are
//     skipped. An expired delta link or skip token (410 Gone,
//     SyncStateNotFound), also one that expires in the middle of a first
//     full listing, restarts the delta from scratch once and says so in
//     Listing.Notes; keys do not change, so the engine creates no
//     duplicates. Should it expire again, List fails with an error
//     matching mailsync.ErrConnection (retry next run).
//   - Fetch streams /messages/{id}/$value (raw MIME) through the SDK's
//     request adapter with a native response handler: the message is never
//     held whole in memory (the SDK's Content().Get would return a []byte).
//   - Ack marks read (PATCH isRead), moves to a folder by display name
//     (created when missing) or deletes by moving to Deleted Items (see
//     Ack). A message already gone (404) counts as done.
//
// Request budget: Exchange Online accepts 10,000 requests per 10 minutes
// per app and mailbox. Requests are paced (Options.RequestBudget) so a
// first sync of tens of thousands of messages proceeds steadily within
// that budget instead of running into 429 storms: about 15 requests a
// second after a burst of 1,000, so a 20,000-message first sync with
// mark-read (about two requests per message) takes some 45 minutes.
//
// Throttling: 429/503/504 are retried by kiota's RetryHandler honouring
// Retry-After while the total wait of one call stays within
// Options.MaxRetryWait; beyond that the call returns a
// *mailsync.ThrottledError carrying the server's Retry-After.
//
// Authentication is an oauth2.TokenSource (by default oauthx.New on the
// connection's OAuth block) behind the SDK's BaseBearerTokenAuthenticationProvider.
// A 401 is retried once with a fresh token; a second 401 is mailsync.ErrAuth
// (and mailsync.ErrTokenExpired when Graph says the token expired).
//
// Build cost: msgraph-sdk-go is large (its models and users packages take
// minutes and gigabytes to compile from a cold cache). It is imported only
// here, so a host that imports the root, imap or pop3 packages never
// compiles it. This package uses only the users and models packages of the
// SDK (not the root GraphServiceClient, which pulls in every API area).
package graph

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"sync/atomic"
	"time"

	"github.com/mailsync/mailsync"
	"github.com/mailsync/mailsync/oauthx"
	abs "github.com/microsoft/kiota-abstractions-go"
	absauth "github.com/microsoft/kiota-abstractions-go/authentication"
	khttp "github.com/microsoft/kiota-http-go"
	"github.com/microsoftgraph/msgraph-sdk-go/models"
	"github.com/microsoftgraph/msgraph-sdk-go/users"
	"golang.org/x/oauth2"
)

// DefaultBaseURL is the Microsoft Graph v1.0 service root.
const DefaultBaseURL = "https://graph.microsoft.com/v1.0"

// Options tune New. The zero value is usable.
type Options struct {
	// Folder is the folder to read: a well-known name (inbox, archive,
	// junkemail, …), a display name of a top-level folder, or a path of
	// display names separated by "/". Default "inbox". Set Folder or
	// Folders, not both.
	Folder string
	// Folders are the folders to read, named like Folder, e.g. {"inbox",
	// "Support"}. Each has its own delta link in the cursor, so new mail in
	// one lists only that. Only the listed folders are read: junkemail and
	// every other folder are never read unless named here. Keys are the
	// messages' immutable ids, unique in the mailbox, whichever folder
	// lists them; each listed message's MessageRef.Folder is its folder's
	// name as written here, which routing rules can test ("folder").
	Folders []string
	// BaseURL is the service root. Default DefaultBaseURL; national clouds
	// (https://graph.microsoft.us/v1.0, …) and tests change it. It must be https.
	BaseURL string
	// TokenSource supplies access tokens. Default: oauthx.New on the
	// connection's OAuth block with the OAuth options.
	TokenSource oauth2.TokenSource
	// OAuth configures the default token source; set OAuth.OnRefreshToken
	// so rotated refresh tokens are stored.
	OAuth oauthx.Options
	// HTTPClient's Transport carries the Graph requests under the SDK's
	// middleware (its other fields are not used). Default: a transport
	// with connect, TLS and response-header timeouts.
	HTTPClient *http.Client
	// PageSize is the delta page size asked for (Prefer:
	// odata.maxpagesize). Default 1000.
	PageSize int
	// MaxRetryWait is the longest time one call waits in total for
	// Retry-After on 429/503 before giving up with *mailsync.ThrottledError.
	// Default 30 s, mailsync.Sync's longest wait: past it the engine ends
	// the sync and the host schedules the next (see mailsync.Connector on
	// who retries).
	MaxRetryWait time.Duration
	// MaxRetries is how often the SDK resends one request on 429/503/504.
	// Default 2: Sync retries whole operations itself.
	MaxRetries int
	// RequestBudget is how many requests the mailbox accepts from the app
	// within BudgetWindow (Graph: 10,000 per 10 minutes per app per
	// mailbox). Requests are paced to stay within it: a burst of a tenth,
	// then 90 % of the budget spread evenly over the window, shared by the
	// process's connectors of the same mailbox. Default
	// DefaultRequestBudget; negative: no pacing.
	RequestBudget int
	// BudgetWindow is the window of RequestBudget. Default DefaultBudgetWindow.
	BudgetWindow time.Duration
	// Logger receives debug and warning records (never a token). Default: discard.
	Logger *slog.Logger
}

// wellKnown are Graph's well-known folder names, usable in place of an id.
var wellKnown = map[string]bool{
	"archive": true, "clutter": true, "conflicts": true, "conversationhistory": true, "deleteditems": true,
	"drafts": true, "inbox": true, "junkemail": true, "localfailures": true, "msgfolderroot": true,
	"outbox": true, "recoverableitemsdeletions": true, "scheduled": true, "searchfolders": true,
	"sentitems": true, "serverfailures": true, "syncissues": true,
}

// Connector reads a Microsoft 365 mailbox folder. It implements
// mailsync.Connector. Use it from one goroutine at a time.
type Connector struct {
	conn    mailsync.Connection
	opts    Options
	log     *slog.Logger
	base    *url.URL
	adapter *khttp.NetHttpRequestAdapter
	tokens  *tokenProvider
	trans   http.RoundTripper
	scrub   *scrubber

	sources   []string          // the folders read, as configured (at least one)
	sourceIDs map[string]string // resolved source folders: name -> id or well-known name
	folders   map[string]string // move destinations: display name -> id
	closed    atomic.Bool
}

var _ mailsync.Connector = (*Connector)(nil)

// New returns a connector for conn, which must have a Microsoft Graph
// OAuth block. It makes no request: the first List authenticates.
func New(conn mailsync.Connection, opts Options) (*Connector, error) {
	if err := conn.Validate(); err != nil {
		return nil, err
	}
	if conn.OAuth == nil || conn.OAuth.Provider != mailsync.MicrosoftGraph {
		code := mailsync.CodeConflict // another provider's OAuth block
		if conn.OAuth == nil {
			code = mailsync.CodeRequired
		}
		return nil, mailsync.NewConfigError(mailsync.Problem{Field: "oauth.provider", Code: code, Message: "must be " + string(mailsync.MicrosoftGraph) + " for the graph provider"})
	}
	if opts.BaseURL == "" {
		opts.BaseURL = DefaultBaseURL
	}
	base, err := url.Parse(strings.TrimSuffix(opts.BaseURL, "/"))
	switch {
	case err != nil || base.Host == "":
		return nil, mailsync.NewConfigError(mailsync.Problem{Field: "graph base URL", Code: mailsync.CodeInvalid, Message: "must be an absolute https URL"})
	case base.Scheme != "https":
		return nil, mailsync.NewConfigError(mailsync.Problem{Field: "graph base URL", Code: mailsync.CodeInsecure, Message: "must be an absolute https URL"})
	}
	sources, err := sourceFolders(opts)
	if err != nil {
		return nil, err
	}
	if opts.PageSize <= 0 {
		opts.PageSize = 1000
	}
	if opts.MaxRetryWait <= 0 {
		opts.MaxRetryWait = 30 * time.Second
	}
	if opts.MaxRetries <= 0 {
		opts.MaxRetries = 2
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With(slog.String("connection", conn.Name), slog.String("provider", "graph"))
	scrub := newScrubber(conn.OAuth.ClientSecret.Reveal(), conn.OAuth.RefreshToken.Reveal())
	ts := opts.TokenSource
	if ts == nil {
		oo := opts.OAuth
		if oo.Logger == nil {
			oo.Logger = log
		}
		if store := oo.OnRefreshToken; store != nil {
			oo.OnRefreshToken = func(ctx context.Context, rt mailsync.Secret) error {
				scrub.Add(rt.Reveal())
				return store(ctx, rt)
			}
		}
		if ts, err = oauthx.New(context.Background(), conn.OAuth, oo); err != nil {
			return nil, err
		}
	}
	tp, err := newTokenProvider(ts, base, scrub)
	if err != nil {
		return nil, err
	}
	var trans http.RoundTripper
	if opts.HTTPClient != nil && opts.HTTPClient.Transport != nil {
		trans = opts.HTTPClient.Transport
	} else {
		trans = defaultTransport()
	}
	if opts.RequestBudget == 0 {
		opts.RequestBudget = DefaultRequestBudget
	}
	if opts.BudgetWindow <= 0 {
		opts.BudgetWindow = DefaultBudgetWindow
	}
	wire := trans
	if opts.RequestBudget > 0 {
		wire = &pacedTransport{base: trans, pacer: mailboxPacer(base.Host, conn.User, opts.RequestBudget, opts.BudgetWindow)}
	}
	ad, err := newAdapter(absauth.NewBaseBearerTokenAuthenticationProvider(tp), wire, &opts, scrub)
	if err != nil {
		return nil, err
	}
	return &Connector{conn: conn, opts: opts, log: log, base: base, adapter: ad, tokens: tp, trans: trans, scrub: scrub, folders: map[string]string{},
		sources: sources, sourceIDs: map[string]string{}}, nil
}

// Connection implements mailsync.Connector.
func (c *Connector) Connection() mailsync.Connection { return c.conn }

func (c *Connector) user() *users.UserItemRequestBuilder {
	return users.NewUsersRequestBuilderInternal(map[string]string{}, c.adapter).ByUserId(c.conn.User)
}

func (c *Connector) headers() *abs.RequestHeaders {
	h := abs.NewRequestHeaders()
	h.Add("Prefer", `IdType="ImmutableId"`)
	return h
}

var errClosed = errors.New("graph: connector is closed")

// call runs fn, retrying once with a fresh token after a 401.
func (c *Connector) call(ctx context.Context, fn func(context.Context) error) error {
	if c.closed.Load() {
		return errClosed
	}
	err := fn(ctx)
	if statusOf(err) == http.StatusUnauthorized && ctx.Err() == nil && c.tokens.invalidate() {
		c.log.DebugContext(ctx, "graph: 401, retrying with a fresh token")
		err = fn(ctx)
	}
	return err
}

// cursorFolderTag binds a cursor to the folder option it was made for.
const cursorFolderTag = "mailsync-folder="

// List implements mailsync.Connector with the delta query, folder after
// folder in the order of Options.Folders. A nothing-new sync costs one
// request per folder.
func (c *Connector) List(ctx context.Context, cursor mailsync.Cursor) (_ *mailsync.Listing, err error) {
	defer func() { err = c.scrub.Error(err) }()
	var notes []string
	links := map[string]string{}
	if cursor != "" {
		got, legacyFolder, ok := c.parseCursors(string(cursor))
		switch {
		case !ok:
			notes = append(notes, "the stored Graph delta link is not usable; listed the whole folder again")
		case legacyFolder != "" && len(c.sources) == 1 && legacyFolder != c.sources[0]:
			notes = append(notes, fmt.Sprintf("the folder changed from %q to %q; listed the whole folder", legacyFolder, c.sources[0]))
		default:
			links = got
			for _, f := range c.sources {
				if links[f] == "" && len(c.sources) > 1 {
					notes = append(notes, fmt.Sprintf("no delta link for folder %q in the cursor (a folder added to the list); listed the whole folder", f))
				}
			}
		}
	}
	out := &mailsync.Listing{Notes: notes}
	next := map[string]string{}
	seen := map[string]bool{}
	for _, folder := range c.sources {
		lst, delta, err := c.listFolder(ctx, folder, links[folder])
		if err != nil {
			return nil, err
		}
		next[folder] = delta
		out.Notes = append(out.Notes, lst.Notes...)
		for _, m := range lst.Messages {
			// An immutable id is unique in the mailbox: a message moved
			// between two folders read during one List is listed once.
			if !seen[m.Key] {
				seen[m.Key] = true
				out.Messages = append(out.Messages, m)
			}
		}
	}
	out.Cursor = c.encodeCursors(next)
	return out, nil
}

// listFolder runs the delta of one folder from link ("" for a full
// listing) and returns its new delta link.
func (c *Connector) listFolder(ctx context.Context, folder, link string) (*mailsync.Listing, string, error) {
	var notes []string
	lst, delta, err := c.delta(ctx, folder, link)
	if err != nil && isSyncStateGone(err) {
		// The delta link, or the skip token of a later page (also in a
		// first full listing of a large folder), expired: list the whole
		// folder again. Keys do not change, so nothing is duplicated.
		if link != "" {
			c.log.WarnContext(ctx, "graph: delta link or skip token expired, restarting the delta", "connection", c.conn.Name, "folder", folder)
			notes = append(notes, c.inFolder("the Graph delta link or a page's skip token expired (sync state not found); listed the whole folder again", folder))
		} else {
			c.log.WarnContext(ctx, "graph: skip token expired during a full listing, restarting it", "connection", c.conn.Name, "folder", folder)
			notes = append(notes, c.inFolder("a Graph skip token expired during the full listing (sync state not found); listed the whole folder again from the start", folder))
		}
		lst, delta, err = c.delta(ctx, folder, "")
		if err != nil && isSyncStateGone(err) {
			// Expired twice in one run: try again next run.
			status, code, msg, _, _ := apiError(err)
			return nil, "", &Error{Op: "list", StatusCode: status, Code: code,
				Message: "a skip token expired again while the folder was listed anew (" + msg + ")", Kind: mailsync.ErrConnection}
		}
	}
	if err != nil {
		return nil, "", err
	}
	lst.Notes = append(notes, lst.Notes...)
	return lst, delta, nil
}

// inFolder appends the folder's name to a note when several are read.
func (c *Connector) inFolder(note, folder string) string {
	if len(c.sources) == 1 {
		return note
	}
	return fmt.Sprintf("%s (folder %q)", note, folder)
}

func (c *Connector) parseCursor(s string) (link, folder string, ok bool) {
	i := strings.LastIndex(s, "#"+cursorFolderTag)
	if i < 0 {
		return "", "", false
	}
	link, tag := s[:i], s[i+1+len(cursorFolderTag):]
	folder, err := url.QueryUnescape(tag)
	if err != nil {
		return "", "", false
	}
	u, err := url.Parse(link)
	if err != nil || u.Scheme != "https" || !strings.EqualFold(hostPort(u), hostPort(c.base)) || !strings.Contains(u.Path, "/messages/") {
		return "", "", false
	}
	return link, folder, true
}

// resolveSource finds the id of a folder to read (well-known names are
// used as they are).
func (c *Connector) resolveSource(ctx context.Context, folder string) (string, error) {
	if id := c.sourceIDs[folder]; id != "" {
		return id, nil
	}
	id, err := c.resolveFolder(ctx, folder, false)
	if err != nil {
		return "", err
	}
	c.sourceIDs[folder] = id
	return id, nil
}

// resolveFolder maps a well-known name, display name or path of display
// names to a folder id, creating the last folder when create is set.
func (c *Connector) resolveFolder(ctx context.Context, name string, create bool) (string, error) {
	if wellKnown[strings.ToLower(name)] {
		return strings.ToLower(name), nil
	}
	parent := ""
	for _, part := range strings.Split(strings.Trim(name, "/"), "/") {
		if part == "" {
			continue
		}
		id, err := c.findChild(ctx, parent, part)
		if err != nil {
			return "", err
		}
		if id == "" && create {
			id, err = c.createFolder(ctx, parent, part)
			if err != nil {
				return "", err
			}
		}
		if id == "" {
			return "", &Error{Op: "resolve folder " + name, StatusCode: http.StatusNotFound, Code: "ErrorItemNotFound",
				Message: fmt.Sprintf("no folder named %q", part), Kind: mailsync.ErrFolderNotFound}
		}
		parent = id
	}
	if parent == "" {
		return "", mailsync.NewConfigError(mailsync.Problem{Field: "folder", Code: mailsync.CodeRequired, Message: "is empty"})
	}
	return parent, nil
}

func odataQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

func (c *Connector) findChild(ctx context.Context, parent, name string) (string, error) {
	filter := "displayName eq " + odataQuote(name)
	var vals []models.MailFolderable
	err := c.call(ctx, func(ctx context.Context) error {
		var resp models.MailFolderCollectionResponseable
		var err error
		if parent == "" {
			resp, err = c.user().MailFolders().Get(ctx, &users.ItemMailFoldersRequestBuilderGetRequestConfiguration{
				Headers: c.headers(), QueryParameters: &users.ItemMailFoldersRequestBuilderGetQueryParameters{Filter: &filter, Select: []string{"id", "displayName"}}})
		} else {
			resp, err = c.user().MailFolders().ByMailFolderId(parent).ChildFolders().Get(ctx, &users.ItemMailFoldersItemChildFoldersRequestBuilderGetRequestConfiguration{
				Headers: c.headers(), QueryParameters: &users.ItemMailFoldersItemChildFoldersRequestBuilderGetQueryParameters{Filter: &filter, Select: []string{"id", "displayName"}}})
		}
		if err == nil && resp != nil {
			vals = resp.GetValue()
		}
		return err
	})
	if err != nil {
		return "", mapError(ctx, "find folder "+name, err, mailsync.ErrFolderNotFound)
	}
	for _, f := range vals {
		if f != nil && f.GetId() != nil && f.GetDisplayName() != nil && strings.EqualFold(*f.GetDisplayName(), name) {
			return *f.GetId(), nil
		}
	}
	return "", nil
}

func (c *Connector) createFolder(ctx context.Context, parent, name string) (string, error) {
	body := models.NewMailFolder()
	body.SetDisplayName(&name)
	var created models.MailFolderable
	err := c.call(ctx, func(ctx context.Context) error {
		var err error
		if parent == "" {
			created, err = c.user().MailFolders().Post(ctx, body, &users.ItemMailFoldersRequestBuilderPostRequestConfiguration{Headers: c.headers()})
		} else {
			created, err = c.user().MailFolders().ByMailFolderId(parent).ChildFolders().Post(ctx, body,
				&users.ItemMailFoldersItemChildFoldersRequestBuilderPostRequestConfiguration{Headers: c.headers()})
		}
		return err
	})
	if statusOf(err) == http.StatusConflict {
		// Created meanwhile by someone else.
		return c.findChild(ctx, parent, name)
	}
	if err != nil {
		return "", mapError(ctx, "create folder "+name, err, mailsync.ErrFolderNotFound)
	}
	if created == nil || created.GetId() == nil {
		return "", &Error{Op: "create folder " + name, Message: "no id in the response"}
	}
	c.log.InfoContext(ctx, "graph: created folder", "folder", name)
	return *created.GetId(), nil
}

// delta runs one delta round of folder from link ("" for a full listing)
// and returns the listing (without cursor) and the new delta link.
func (c *Connector) delta(ctx context.Context, folder, link string) (*mailsync.Listing, string, error) {
	type item struct {
		key      string
		received time.Time
		pos      int
	}
	var items []item
	index := map[string]int{}
	removed := map[string]bool{}
	h := c.headers()
	h.Add("Prefer", fmt.Sprintf("odata.maxpagesize=%d", c.opts.PageSize))
	pages := 0
	var delta, folderID string
	if link == "" {
		var err error
		if folderID, err = c.resolveSource(ctx, folder); err != nil {
			return nil, "", err
		}
	}
	for {
		if pages > 100000 {
			return nil, "", &Error{Op: "list", Message: "too many delta pages", Kind: mailsync.ErrConnection}
		}
		var resp users.ItemMailFoldersItemMessagesDeltaGetResponseable
		err := c.call(ctx, func(ctx context.Context) error {
			var err error
			if link == "" {
				resp, err = c.user().MailFolders().ByMailFolderId(folderID).Messages().Delta().GetAsDeltaGetResponse(ctx,
					&users.ItemMailFoldersItemMessagesDeltaRequestBuilderGetRequestConfiguration{Headers: h,
						QueryParameters: &users.ItemMailFoldersItemMessagesDeltaRequestBuilderGetQueryParameters{Select: []string{"id", "receivedDateTime"}}})
			} else {
				resp, err = users.NewItemMailFoldersItemMessagesDeltaRequestBuilder(link, c.adapter).GetAsDeltaGetResponse(ctx,
					&users.ItemMailFoldersItemMessagesDeltaRequestBuilderGetRequestConfiguration{Headers: h})
			}
			return err
		})
		if err != nil {
			if isSyncStateGone(err) && (link != "" || pages > 0) {
				return nil, "", err // an expired delta link or skip token: the caller restarts
			}
			return nil, "", mapError(ctx, "list", err, mailsync.ErrFolderNotFound)
		}
		pages++
		if resp == nil {
			return nil, "", &Error{Op: "list", Message: "empty delta response", Kind: mailsync.ErrConnection}
		}
		for _, m := range resp.GetValue() {
			if m == nil || m.GetId() == nil || *m.GetId() == "" {
				continue
			}
			id := *m.GetId()
			if _, gone := m.GetAdditionalData()["@removed"]; gone {
				removed[id] = true
				continue
			}
			delete(removed, id)
			if _, dup := index[id]; dup {
				continue
			}
			var rcv time.Time
			if t := m.GetReceivedDateTime(); t != nil {
				rcv = *t
			}
			index[id] = len(items)
			items = append(items, item{key: id, received: rcv, pos: len(items)})
		}
		if next := resp.GetOdataNextLink(); next != nil && *next != "" {
			if !c.sameService(*next) {
				return nil, "", &Error{Op: "list", Message: "nextLink points outside the Graph service root", Kind: mailsync.ErrConnection}
			}
			link = *next
			continue
		}
		if dl := resp.GetOdataDeltaLink(); dl != nil && *dl != "" {
			delta = *dl
		}
		break
	}
	if delta == "" {
		return nil, "", &Error{Op: "list", Message: "delta round ended without @odata.deltaLink", Kind: mailsync.ErrConnection}
	}
	// Oldest first: the delta query has no order guarantee.
	sort.SliceStable(items, func(i, j int) bool {
		a, b := items[i], items[j]
		if a.received.Equal(b.received) {
			return a.pos < b.pos
		}
		if a.received.IsZero() || b.received.IsZero() {
			return b.received.IsZero() && !a.received.IsZero()
		}
		return a.received.Before(b.received)
	})
	lst := &mailsync.Listing{}
	for _, it := range items {
		if !removed[it.key] {
			lst.Messages = append(lst.Messages, mailsync.MessageRef{Key: it.key, Size: -1, Folder: folder})
		}
	}
	c.log.DebugContext(ctx, "graph: delta listed", "connection", c.conn.Name, "folder", folder, "messages", len(lst.Messages), "pages", pages)
	return lst, delta, nil
}

func (c *Connector) sameService(link string) bool {
	u, err := url.Parse(link)
	return err == nil && u.Scheme == "https" && strings.EqualFold(hostPort(u), hostPort(c.base))
}

// fnError carries the error of Fetch's callback through the SDK untouched.
type fnError struct{ err error }

func (e *fnError) Error() string { return e.err.Error() }
func (e *fnError) Unwrap() error { return e.err }

// Fetch implements mailsync.Connector: GET /messages/{id}/$value, streamed.
func (c *Connector) Fetch(ctx context.Context, refs []mailsync.MessageRef, fn func(mailsync.MessageRef, io.Reader) error) (err error) {
	defer func() { err = c.scrub.Error(err) }()
	for _, ref := range refs {
		if err := ctx.Err(); err != nil {
			return err
		}
		called := false
		err := c.call(ctx, func(ctx context.Context) error {
			opt := abs.NewRequestHandlerOption()
			opt.SetResponseHandler(func(response any, _ abs.ErrorMappings) (any, error) {
				resp, ok := response.(*http.Response)
				if !ok || resp == nil {
					return nil, &Error{Op: "fetch", Message: "no response", Kind: mailsync.ErrConnection}
				}
				defer resp.Body.Close()
				if resp.StatusCode >= 300 {
					return nil, newStatusError(resp, c.scrub)
				}
				called = true
				body := &ctxReader{ctx: ctx, r: resp.Body}
				if err := fn(ref, body); err != nil {
					return nil, &fnError{err}
				}
				if body.err != nil {
					// fn swallowed a broken download; the message is incomplete.
					return nil, body.err
				}
				io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
				return nil, nil
			})
			_, err := c.user().Messages().ByMessageId(ref.Key).Content().Get(ctx,
				&users.ItemMessagesItemValueContentRequestBuilderGetRequestConfiguration{Headers: c.headers(), Options: []abs.RequestOption{opt}})
			return err
		})
		var fe *fnError
		switch {
		case err == nil:
		case errors.As(err, &fe):
			return fe.err
		case !called && statusOf(err) == http.StatusNotFound:
			c.log.DebugContext(ctx, "graph: message gone before fetch", "key", ref.Key)
			if err := fn(ref, nil); err != nil { // tell Sync it is gone
				return err
			}
		default:
			return mapError(ctx, "fetch "+ref.Key, err, nil)
		}
	}
	return nil
}

// ctxReader stops a body read when ctx is done and remembers read errors.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
	err error
}

func (r *ctxReader) Read(p []byte) (int, error) {
	if err := r.ctx.Err(); err != nil {
		return 0, err
	}
	n, err := r.r.Read(p)
	if err != nil && err != io.EOF {
		r.err = &Error{Op: "fetch", Kind: mailsync.ErrConnection, Err: err}
		if r.ctx.Err() != nil {
			r.err = r.ctx.Err()
		}
		return n, r.err
	}
	return n, err
}

// Ack implements mailsync.Connector.
//
//   - MarkRead: PATCH /messages/{id} {"isRead": true}.
//   - MoveToFolder: POST /messages/{id}/move to the folder named
//     action.Folder (well-known name, display name or path of display
//     names), created at the top level when missing.
//   - Delete: moves the message to Deleted Items (well-known folder
//     deleteditems), which is what DELETE /messages/{id} does the first
//     time; unlike DELETE, repeating it (after a crash) does not purge
//     the message from Deleted Items.
//
// A message that is no longer there (404) counts as done; so does a
// message already in the destination. A 404 on a move whose destination
// folder is gone (deleted since it was resolved) drops the cached id,
// resolves (or creates) the folder again and retries; should it be gone
// again, Ack fails with an error matching mailsync.ErrFolderNotFound. A
// move never counts as done with the message left where it was.
func (c *Connector) Ack(ctx context.Context, refs []mailsync.MessageRef, action mailsync.PostAction) (err error) {
	defer func() { err = c.scrub.Error(err) }()
	if err := action.Validate(); err != nil {
		return err
	}
	var dest string
	switch action.Kind {
	case mailsync.LeaveUntouched:
		return nil
	case mailsync.MarkRead:
	case mailsync.MoveToFolder:
		id, ok := c.folders[action.Folder]
		if !ok {
			var err error
			if id, err = c.resolveFolder(ctx, action.Folder, true); err != nil {
				return err
			}
			c.folders[action.Folder] = id
		}
		dest = id
	case mailsync.Delete:
		dest = "deleteditems"
	default:
		return fmt.Errorf("graph: post-action %q: %w", action.Kind, mailsync.ErrUnsupported)
	}
	refolded := false // the destination was resolved again after a 404
	for i := 0; i < len(refs); i++ {
		ref := refs[i]
		if err := ctx.Err(); err != nil {
			return err
		}
		err := c.call(ctx, func(ctx context.Context) error {
			msg := c.user().Messages().ByMessageId(ref.Key)
			if action.Kind == mailsync.MarkRead {
				body := models.NewMessage()
				read := true
				body.SetIsRead(&read)
				_, err := msg.Patch(ctx, body, &users.ItemMessagesMessageItemRequestBuilderPatchRequestConfiguration{Headers: c.headers()})
				return err
			}
			body := users.NewItemMessagesItemMovePostRequestBody()
			body.SetDestinationId(&dest)
			_, err := msg.Move().Post(ctx, body, &users.ItemMessagesItemMoveRequestBuilderPostRequestConfiguration{Headers: c.headers()})
			return err
		})
		if statusOf(err) == http.StatusNotFound {
			// Graph answers ErrorItemNotFound both for a gone message and
			// for a gone destination: ask which one it is.
			if action.Kind == mailsync.MoveToFolder && !wellKnown[strings.ToLower(dest)] {
				exists, ferr := c.folderExists(ctx, dest)
				if ferr != nil {
					return ferr
				}
				if !exists {
					delete(c.folders, action.Folder)
					_, code, msg, _, _ := apiError(err)
					if refolded {
						return &Error{Op: "ack move " + ref.Key, StatusCode: http.StatusNotFound, Code: code,
							Message: fmt.Sprintf("destination folder %q vanished again after it was resolved anew (%s)", action.Folder, msg), Kind: mailsync.ErrFolderNotFound}
					}
					c.log.WarnContext(ctx, "graph: move destination is gone; resolving it again", "folder", action.Folder)
					id, rerr := c.resolveFolder(ctx, action.Folder, true)
					if rerr != nil {
						return rerr
					}
					c.folders[action.Folder] = id
					dest = id
					refolded = true
					i-- // move this message again
					continue
				}
			}
			c.log.DebugContext(ctx, "graph: message gone before ack", "key", ref.Key, "action", string(action.Kind))
			continue
		}
		if err != nil {
			return mapError(ctx, "ack "+string(action.Kind)+" "+ref.Key, err, nil)
		}
	}
	return nil
}

// folderExists reports whether the folder with id still exists.
func (c *Connector) folderExists(ctx context.Context, id string) (bool, error) {
	err := c.call(ctx, func(ctx context.Context) error {
		_, err := c.user().MailFolders().ByMailFolderId(id).Get(ctx, &users.ItemMailFoldersMailFolderItemRequestBuilderGetRequestConfiguration{
			Headers: c.headers(), QueryParameters: &users.ItemMailFoldersMailFolderItemRequestBuilderGetQueryParameters{Select: []string{"id"}}})
		return err
	})
	if statusOf(err) == http.StatusNotFound {
		return false, nil
	}
	if err != nil {
		return false, mapError(ctx, "check folder "+id, err, mailsync.ErrFolderNotFound)
	}
	return true, nil
}

// Close implements mailsync.Connector. It releases idle connections.
func (c *Connector) Close() error {
	if c.closed.Swap(true) {
		return nil
	}
	if t, ok := c.trans.(interface{ CloseIdleConnections() }); ok {
		t.CloseIdleConnections()
	}
	return nil
}

// Check verifies a connection as the admin form's "test" button would: it
// gets an access token and reads the configured folders. The error matches
// mailsync.ErrConsentRequired, ErrAuth, ErrFolderNotFound, ErrInvalidConfig
// or ErrConnection.
func Check(ctx context.Context, conn mailsync.Connection, opts Options) (err error) {
	c, err := New(conn, opts)
	if err != nil {
		return err
	}
	defer c.Close()
	defer func() { err = c.scrub.Error(err) }()
	_, _, err = c.checkSources(ctx)
	return err
}

// checkSources resolves every folder read and reads its name and counts;
// ids are the folders' ids (as Graph returns them, also for a well-known
// name), by folder.
func (c *Connector) checkSources(ctx context.Context) ([]mailsync.FolderStatus, map[string]string, error) {
	var out []mailsync.FolderStatus
	ids := map[string]string{}
	for _, folder := range c.sources {
		id, err := c.resolveSource(ctx, folder)
		if err != nil {
			return nil, nil, err
		}
		st, realID, err := c.checkFolder(ctx, folder, id)
		if err != nil {
			return nil, nil, err
		}
		out = append(out, st)
		ids[folder] = realID
	}
	return out, ids, nil
}

// checkFolder reads a source folder's name, id and counts.
func (c *Connector) checkFolder(ctx context.Context, folder, id string) (mailsync.FolderStatus, string, error) {
	st := mailsync.FolderStatus{Name: folder, Messages: -1, Unread: -1}
	gotID := id
	err := mapError(ctx, "check folder "+folder, c.call(ctx, func(ctx context.Context) error {
		f, err := c.user().MailFolders().ByMailFolderId(id).Get(ctx, &users.ItemMailFoldersMailFolderItemRequestBuilderGetRequestConfiguration{
			Headers: c.headers(), QueryParameters: &users.ItemMailFoldersMailFolderItemRequestBuilderGetQueryParameters{Select: []string{"id", "displayName", "totalItemCount", "unreadItemCount"}}})
		if err == nil && f != nil {
			if n := f.GetDisplayName(); n != nil {
				st.Name = *n
			}
			if n := f.GetId(); n != nil {
				gotID = *n
			}
			if n := f.GetTotalItemCount(); n != nil {
				st.Messages = int(*n)
			}
			if n := f.GetUnreadItemCount(); n != nil {
				st.Unread = int(*n)
			}
		}
		return err
	}), mailsync.ErrFolderNotFound)
	return st, gotID, err
}

// Check implements mailsync.Checker: it gets an access token, reads the
// counts of every folder read (Folders) and lists the account's folders
// (Details is a *CheckResult with Mailboxes, well-known names marked),
// changing nothing. Reading junkemail is reported in Warnings.
func (c *Connector) Check(ctx context.Context) (_ *mailsync.CheckResult, err error) {
	start := time.Now()
	defer func() { err = c.scrub.Error(err) }()
	read, ids, err := c.checkSources(ctx)
	if err != nil {
		return nil, err
	}
	boxes, known, err := c.mailboxes(ctx)
	if err != nil {
		return nil, err
	}
	var warnings []string
	for i, folder := range c.sources {
		if id := ids[folder]; strings.EqualFold(id, "junkemail") || known[id] == "junkemail" {
			warnings = append(warnings, fmt.Sprintf("folder %q is the mailbox's Junk Email folder: its spam becomes tickets", read[i].Name))
		}
	}
	return &mailsync.CheckResult{Provider: "graph", Server: c.base.String(), Account: c.conn.User, Security: "https", Auth: "OAuth 2.0",
		Folders: read, Warnings: warnings, Elapsed: time.Since(start), Details: &CheckResult{Read: read, Mailboxes: boxes}}, nil
}
