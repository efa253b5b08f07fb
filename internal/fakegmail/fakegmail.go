// Package fakegmail is an in-memory fake of the Gmail API v1 for tests,
// served by net/http/httptest on loopback.
//
// It follows the documented behaviour of the calls the gmail provider
// makes, as described by the API reference and the discovery document:
//
//   - users.getProfile, with the mailbox's current historyId.
//   - users.messages.list: newest first, labelIds (a message must carry
//     all of them), includeSpamTrash (SPAM and TRASH are left out by
//     default), maxResults (default 100, at most 500) and nextPageToken.
//   - users.messages.get with format=raw (the RFC 5322 bytes as base64url,
//     padded by default; see RawEncoding) or format=minimal.
//   - users.messages.modify, batchModify (at most 1,000 ids; unknown ids
//     are ignored), trash, untrash, delete and batchDelete (which, as
//     documented, does not care whether the messages exist).
//   - users.history.list: records after startHistoryId, oldest first,
//     filtered by historyTypes and labelId, paged with nextPageToken; the
//     response's historyId is the mailbox's current one. History ids
//     increase with gaps. A startHistoryId older than the retained history
//     (see ExpireHistory) or newer than the mailbox answers HTTP 404.
//   - users.labels.list, get and create (409 for an existing name, 400 for
//     a reserved one).
//   - The batch endpoint POST /batch/gmail/v1: multipart/mixed of
//     application/http parts (at most 100), answered part by part in order
//     with Content-ID "response-" + the request part's id.
//   - Query parameters as the discovery document lists them: each
//     method's own plus the system parameters (alt, prettyPrint, fields,
//     quotaUser, $.xgafv …) that google.golang.org/api/gmail/v1 sends
//     (alt=json&prettyPrint=false on every call). Any other parameter is
//     refused with 400 INVALID_ARGUMENT "Unknown name … Cannot bind query
//     parameter", as Google's front end does. JSON answers are indented
//     unless prettyPrint=false, as Google's are. Only alt=json is served,
//     and fields (partial responses) is accepted but not applied.
//   - Bearer tokens: a missing, unknown or expired token answers 401 with
//     Google's error body and WWW-Authenticate header.
//   - users.watch ({topicName, labelIds, labelFilterBehavior} →
//     {historyId, expiration}: expiration in epoch milliseconds, as a
//     string; WatchExpiry after the call, default 7 days) and users.stop
//     (204, no body). topicName must be projects/{project}/topics/{topic};
//     label ids must exist. Server.Watch returns the current watch, if any
//     (Stats.ByOp counts the calls). The fake publishes nothing to Pub/Sub:
//     tests build push deliveries themselves.
//   - Errors use Google's JSON error shape ({"error": {"code", "message",
//     "errors": [{"domain", "reason", "message"}], "status"}}).
//
// Faults (429, 403 rate limits, 5xx) can be injected per operation, inside
// batches too, and Stats counts the HTTP requests the server received.
package fakegmail

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"net/textproto"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// RawEncoding selects how format=raw encodes the message.
type RawEncoding int

const (
	// Padded is base64url with "=" padding.
	Padded RawEncoding = iota
	// Unpadded is base64url without padding.
	Unpadded
	// EscapedPadding is padded base64url whose "=" are JSON-escaped as
	// \u003d, as some Google JSON encoders write them.
	EscapedPadding
)

// Options configure a Server. The zero value is usable.
type Options struct {
	// Email is the mailbox's address; default "support@example.com".
	Email string
	// Token is a bearer token accepted without expiry; default "test-token".
	Token string
	// RawEncoding is the format=raw encoding; default Padded.
	RawEncoding RawEncoding
	// MaxBatch is the largest batch accepted; default 100.
	MaxBatch int
	// StrictBatchModify makes batchModify answer 404 when an id is unknown
	// (the real API ignores unknown ids; this exercises a client fallback).
	StrictBatchModify bool
	// ReverseBatch answers batch parts in reverse order (the documentation
	// does not promise an order, only Content-IDs).
	ReverseBatch bool
	// Now is the clock; default time.Now.
	Now func() time.Time
	// WatchExpiry is how long a users.watch lasts; default 7 days, as
	// Gmail's.
	WatchExpiry time.Duration
}

// Watch is the mailbox's push notification watch, as the last users.watch
// call set it.
type Watch struct {
	TopicName           string
	LabelIDs            []string
	LabelFilterBehavior string
	Expiration          time.Time
}

// System label ids (equal to their names).
var systemLabels = []string{
	"INBOX", "SPAM", "TRASH", "UNREAD", "STARRED", "IMPORTANT", "SENT", "DRAFT", "CHAT",
	"CATEGORY_PERSONAL", "CATEGORY_SOCIAL", "CATEGORY_PROMOTIONS", "CATEGORY_UPDATES", "CATEGORY_FORUMS",
}

// Fault is an error the server answers instead of handling a call.
type Fault struct {
	// Op is the operation: "users.getProfile", "messages.list",
	// "messages.get", "messages.modify", "messages.batchModify",
	// "messages.trash", "messages.untrash", "messages.delete",
	// "messages.batchDelete", "history.list", "labels.list",
	// "labels.get", "labels.create", "batch" (the outer batch request), or
	// "*" for any.
	Op string
	// Status is the HTTP status, e.g. 429, 403, 500, 503.
	Status int
	// Reason is the error reason, e.g. "rateLimitExceeded",
	// "userRateLimitExceeded"; default derived from Status.
	Reason string
	// RetryAfter, when set, is sent as the Retry-After header.
	RetryAfter string
	// Times is how many calls fail; default 1.
	Times int
	// After is how many matching calls succeed before the first failure.
	After int
	// RetryIn, for a 429, puts Gmail's "Retry after <time>" in the
	// message, RetryIn from now; otherwise the message is the generic
	// "Resource has been exhausted (e.g. check quota).".
	RetryIn time.Duration
	// EchoAuth makes the error message repeat the request's
	// Authorization header, in one of the encodings of EchoForms (the
	// next one on each failure), as a careless server or proxy might.
	EchoAuth bool
}

// EchoForms are the ways a careless server echoes v: raw, URL-encoded
// (query and path forms, lower-case hex), JSON-quoted, and inside longer
// base64 blobs (standard and URL alphabets) at each byte alignment, as
// SASL and HTTP Basic carry it.
func EchoForms(v string) []string {
	j, _ := json.Marshal(v)
	out := []string{v, url.QueryEscape(v), url.PathEscape(v), strings.ToLower(url.QueryEscape(v)), string(j)}
	for pre := 0; pre < 3; pre++ {
		blob := []byte(strings.Repeat("p", pre) + "user=x\x01auth=" + v + "\x01\x01")
		out = append(out, base64.StdEncoding.EncodeToString(blob), base64.RawURLEncoding.EncodeToString(blob))
	}
	return out
}

// Stats counts what the server received.
type Stats struct {
	// Requests is the number of HTTP requests (a batch counts once).
	Requests int
	// Calls is the number of API calls, batched ones included.
	Calls int
	// ByOp counts API calls per operation.
	ByOp map[string]int
	// BatchRequests is the number of batch requests.
	BatchRequests int
}

// Message is a message as the fake stores it.
type Message struct {
	ID           string
	ThreadID     string
	LabelIDs     []string
	Raw          []byte
	InternalDate time.Time
	HistoryID    uint64
}

type message struct {
	Message
	labels map[string]bool
}

type labelInfo struct {
	ID, Name, Type string
}

type historyMsg struct {
	ID       string   `json:"id"`
	ThreadID string   `json:"threadId"`
	LabelIDs []string `json:"labelIds,omitempty"`
}

type change struct {
	kind     string // messageAdded, messageDeleted, labelAdded, labelRemoved
	msg      historyMsg
	labelIDs []string // labels added or removed
	before   []string // the message's labels before the change
}

type record struct {
	id     uint64
	change change
}

// Server is a fake Gmail API. Its methods are safe for concurrent use.
type Server struct {
	// URL is the API root to pass as the client's endpoint, with a
	// trailing slash.
	URL string

	srv  *httptest.Server
	mux  *http.ServeMux
	opts Options

	mu          sync.Mutex
	tokens      map[string]time.Time // zero time: no expiry
	msgs        map[string]*message
	labels      map[string]*labelInfo
	labelSeq    int
	history     []record
	historyID   uint64
	minHistory  uint64 // oldest acceptable startHistoryId
	msgSeq      uint64
	faults      []*Fault
	echoN       int // echoing faults answered, picks the encoding
	stats       Stats
	unavailable bool
	watch       *Watch // nil: none, or stopped
}

// New starts a fake Gmail API on loopback. Close it when done.
func New(opts Options) *Server {
	if opts.Email == "" {
		opts.Email = "support@example.com"
	}
	if opts.Token == "" {
		opts.Token = "test-token"
	}
	if opts.MaxBatch == 0 {
		opts.MaxBatch = 100
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.WatchExpiry == 0 {
		opts.WatchExpiry = 7 * 24 * time.Hour
	}
	s := &Server{
		opts:      opts,
		tokens:    map[string]time.Time{opts.Token: {}},
		msgs:      map[string]*message{},
		labels:    map[string]*labelInfo{},
		historyID: 4100,
		msgSeq:    0x18c9a1b2c3d40000,
		stats:     Stats{ByOp: map[string]int{}},
	}
	s.minHistory = s.historyID
	for _, id := range systemLabels {
		s.labels[id] = &labelInfo{ID: id, Name: id, Type: "system"}
	}
	s.routes()
	s.srv = httptest.NewServer(http.HandlerFunc(s.serveHTTP))
	s.URL = s.srv.URL + "/"
	return s
}

// Close shuts the server down.
func (s *Server) Close() { s.srv.Close() }

// Client returns an HTTP client for the server.
func (s *Server) Client() *http.Client { return s.srv.Client() }

// Email is the mailbox's address.
func (s *Server) Email() string { return s.opts.Email }

// Token is the bearer token accepted by default.
func (s *Server) Token() string { return s.opts.Token }

// AddToken accepts token until expiry (the zero time: forever).
func (s *Server) AddToken(token string, expiry time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.tokens[token] = expiry
}

// RevokeToken stops accepting token.
func (s *Server) RevokeToken(token string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.tokens, token)
}

// InjectFault makes the next f.Times calls of f.Op fail.
func (s *Server) InjectFault(f Fault) {
	if f.Times == 0 {
		f.Times = 1
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults = append(s.faults, &f)
}

// SetUnavailable makes every request fail by closing the connection
// without an answer, until called with false.
func (s *Server) SetUnavailable(down bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.unavailable = down
}

// Stats returns the counters.
func (s *Server) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.stats
	st.ByOp = map[string]int{}
	for k, v := range s.stats.ByOp {
		st.ByOp[k] = v
	}
	return st
}

// ResetStats zeroes the counters.
func (s *Server) ResetStats() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stats = Stats{ByOp: map[string]int{}}
}

// HistoryID is the mailbox's current history id.
func (s *Server) HistoryID() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.historyID
}

// Watch returns the current watch (users.watch, not yet stopped or
// expired), if any.
func (s *Server) Watch() (Watch, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.watch == nil || !s.opts.Now().Before(s.watch.Expiration) {
		return Watch{}, false
	}
	w := *s.watch
	w.LabelIDs = slices.Clone(w.LabelIDs)
	return w, true
}

// ExpireHistory drops every history record: a startHistoryId older than
// the current history id then answers 404, as when Gmail no longer
// retains it.
func (s *Server) ExpireHistory() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.history = nil
	s.minHistory = s.historyID
}

// nextHistory advances the history id with a gap, as Gmail's ids "increase
// chronologically but are not contiguous". Called with mu held.
func (s *Server) nextHistory() uint64 {
	s.historyID += 1 + s.historyID%5
	return s.historyID
}

func (s *Server) addRecord(c change) uint64 {
	id := s.nextHistory()
	s.history = append(s.history, record{id: id, change: c})
	return id
}

// Deliver adds a message with the given label ids (default INBOX and
// UNREAD) and returns its id.
func (s *Server) Deliver(raw []byte, labelIDs ...string) string {
	if len(labelIDs) == 0 {
		labelIDs = []string{"INBOX", "UNREAD"}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.msgSeq += 0x1d3 + s.msgSeq%7
	id := strconv.FormatUint(s.msgSeq, 16)
	m := &message{Message: Message{ID: id, ThreadID: id, Raw: slices.Clone(raw), InternalDate: s.opts.Now()}, labels: map[string]bool{}}
	for _, l := range labelIDs {
		m.labels[l] = true
	}
	m.LabelIDs = sortedKeys(m.labels)
	s.msgs[id] = m
	m.HistoryID = s.addRecord(change{kind: "messageAdded", msg: m.historyMsg()})
	return id
}

// Message returns a copy of the message with id.
func (s *Server) Message(id string) (Message, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	m, ok := s.msgs[id]
	if !ok {
		return Message{}, false
	}
	c := m.Message
	c.LabelIDs = sortedKeys(m.labels)
	return c, true
}

// Messages returns copies of all messages, oldest first.
func (s *Server) Messages() []Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Message
	for _, m := range s.sortedMessages(false) {
		c := m.Message
		c.LabelIDs = sortedKeys(m.labels)
		out = append(out, c)
	}
	return out
}

// LabelID returns the id of the label named name.
func (s *Server) LabelID(name string) (string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	l := s.labelByName(name)
	if l == nil {
		return "", false
	}
	return l.ID, true
}

// CreateLabel creates a user label and returns its id.
func (s *Server) CreateLabel(name string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if l := s.labelByName(name); l != nil {
		return l.ID
	}
	return s.createLabel(name).ID
}

// DeleteLabel deletes a user label and removes it from its messages.
func (s *Server) DeleteLabel(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.labels, id)
	for _, m := range s.msgs {
		delete(m.labels, id)
	}
}

// ModifyLabels adds and removes labels of message id, recording history.
func (s *Server) ModifyLabels(id string, add, remove []string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	m, ok := s.msgs[id]
	if !ok {
		return false
	}
	s.modify(m, add, remove)
	return true
}

// DeleteMessage deletes message id permanently.
func (s *Server) DeleteMessage(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.deleteMsg(id)
}

func (s *Server) createLabel(name string) *labelInfo {
	s.labelSeq++
	l := &labelInfo{ID: fmt.Sprintf("Label_%d", 5000+s.labelSeq), Name: name, Type: "user"}
	s.labels[l.ID] = l
	return l
}

func (s *Server) labelByName(name string) *labelInfo {
	for _, l := range s.labels {
		if strings.EqualFold(l.Name, name) {
			return l
		}
	}
	return nil
}

func (m *message) historyMsg() historyMsg {
	return historyMsg{ID: m.ID, ThreadID: m.ThreadID, LabelIDs: sortedKeys(m.labels)}
}

func (s *Server) modify(m *message, add, remove []string) {
	before := sortedKeys(m.labels)
	var added, removed []string
	for _, l := range add {
		if !m.labels[l] {
			m.labels[l] = true
			added = append(added, l)
		}
	}
	for _, l := range remove {
		if m.labels[l] && !slices.Contains(add, l) {
			delete(m.labels, l)
			removed = append(removed, l)
		}
	}
	if len(added) > 0 {
		m.HistoryID = s.addRecord(change{kind: "labelAdded", msg: m.historyMsg(), labelIDs: added, before: before})
	}
	if len(removed) > 0 {
		m.HistoryID = s.addRecord(change{kind: "labelRemoved", msg: m.historyMsg(), labelIDs: removed, before: before})
	}
}

func (s *Server) deleteMsg(id string) bool {
	m, ok := s.msgs[id]
	if !ok {
		return false
	}
	delete(s.msgs, id)
	s.addRecord(change{kind: "messageDeleted", msg: historyMsg{ID: m.ID, ThreadID: m.ThreadID}, before: sortedKeys(m.labels)})
	return true
}

// sortedMessages returns the messages newest first (desc) or oldest first.
func (s *Server) sortedMessages(desc bool) []*message {
	out := make([]*message, 0, len(s.msgs))
	for _, m := range s.msgs {
		out = append(out, m)
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		less := a.InternalDate.Before(b.InternalDate) || a.InternalDate.Equal(b.InternalDate) && hexLess(a.ID, b.ID)
		if desc {
			return !less
		}
		return less
	})
	return out
}

func hexLess(a, b string) bool {
	if len(a) != len(b) {
		return len(a) < len(b)
	}
	return a < b
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// ---- HTTP ----

type apiError struct {
	code    int
	status  string
	reason  string
	domain  string
	message string
	header  http.Header
	echo    bool // append the request's Authorization header (Fault.EchoAuth)
}

func errNotFound() *apiError {
	return &apiError{code: 404, status: "NOT_FOUND", reason: "notFound", message: "Requested entity was not found."}
}

func errInvalid(msg string) *apiError {
	return &apiError{code: 400, status: "INVALID_ARGUMENT", reason: "invalidArgument", message: msg}
}

func (e *apiError) write(w http.ResponseWriter, r *http.Request) {
	domain := e.domain
	if domain == "" {
		domain = "global"
	}
	body := map[string]any{"error": map[string]any{
		"code":    e.code,
		"message": e.message,
		"errors":  []map[string]string{{"message": e.message, "domain": domain, "reason": e.reason}},
		"status":  e.status,
	}}
	for k, v := range e.header {
		w.Header()[k] = v
	}
	writeJSON(w, r, e.code, body)
}

// pretty reports whether the answer to r is pretty-printed: Google APIs
// indent their JSON unless the request says prettyPrint=false (the
// generated Go clients always do).
func pretty(r *http.Request) bool {
	v, err := strconv.ParseBool(r.URL.Query().Get("prettyPrint"))
	return err != nil || v
}

// writeJSON writes v (or, if v is a []byte, that JSON) as the answer to r.
func writeJSON(w http.ResponseWriter, r *http.Request, code int, v any) {
	b, ok := v.([]byte)
	if !ok {
		var err error
		if b, err = json.Marshal(v); err != nil {
			http.Error(w, err.Error(), 500)
			return
		}
	}
	if pretty(r) {
		var buf bytes.Buffer
		if json.Indent(&buf, b, "", "  ") == nil {
			b = buf.Bytes()
		}
	}
	w.Header().Set("Content-Type", "application/json; charset=UTF-8")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(code)
	w.Write(b)
}

func faultError(f *Fault) *apiError {
	e := &apiError{code: f.Status, reason: f.Reason, header: http.Header{}}
	switch {
	case f.Status == 429:
		e.status, e.domain = "RESOURCE_EXHAUSTED", "usageLimits"
		if e.reason == "" {
			e.reason = "rateLimitExceeded"
		}
		e.message = "Resource has been exhausted (e.g. check quota)."
		if f.RetryIn > 0 {
			e.message = "User-rate limit exceeded.  Retry after " + time.Now().UTC().Add(f.RetryIn).Format("2006-01-02T15:04:05.000Z")
		}
	case f.Status == 403:
		e.status, e.domain = "PERMISSION_DENIED", "usageLimits"
		if e.reason == "" {
			e.reason = "userRateLimitExceeded"
		}
		e.message = "User Rate Limit Exceeded"
		if e.reason == "insufficientPermissions" {
			e.domain, e.message = "global", "Insufficient Permission"
		}
	case f.Status >= 500:
		e.status, e.reason, e.message = "UNAVAILABLE", "backendError", "Backend Error"
		if f.Reason != "" {
			e.reason = f.Reason
		}
	default:
		e.status, e.message = "FAILED_PRECONDITION", "injected fault"
		if e.reason == "" {
			e.reason = "failedPrecondition"
		}
	}
	if f.RetryAfter != "" {
		e.header.Set("Retry-After", f.RetryAfter)
	}
	e.echo = f.EchoAuth
	return e
}

// echoAuth appends r's Authorization header to an echoing fault's
// message. Called with mu held.
func (s *Server) echoAuth(e *apiError, r *http.Request) {
	if e == nil || !e.echo {
		return
	}
	forms := EchoForms(r.Header.Get("Authorization"))
	e.message += " (request with " + forms[s.echoN%len(forms)] + ")"
	s.echoN++
}

// takeFault returns an injected fault for op, if any. Called with mu held.
func (s *Server) takeFault(op string) *apiError {
	for i, f := range s.faults {
		if f.Op == op || f.Op == "*" {
			if f.After > 0 {
				f.After--
				return nil
			}
			f.Times--
			if f.Times <= 0 {
				s.faults = slices.Delete(s.faults, i, i+1)
			}
			return faultError(f)
		}
	}
	return nil
}

type handler func(r *http.Request, user string) (any, *apiError)

// systemParam reports whether name is one of the query parameters every
// method takes (the discovery document's top-level "parameters").
func systemParam(name string) bool {
	switch name {
	case "$.xgafv", "access_token", "alt", "callback", "fields", "key", "oauth_token",
		"prettyPrint", "quotaUser", "uploadType", "upload_protocol":
		return true
	}
	return false
}

// checkQuery refuses, as Google's front end does, a query parameter the
// method does not have and system parameters with values the fake does
// not serve.
func checkQuery(q url.Values, params []string) *apiError {
	for name := range q {
		if !systemParam(name) && !slices.Contains(params, name) {
			return errInvalid(fmt.Sprintf("Invalid JSON payload received. Unknown name %q: Cannot bind query parameter. Field %q could not be found in request message.", name, name))
		}
	}
	if alt := q.Get("alt"); alt != "" && alt != "json" {
		return errInvalid(fmt.Sprintf("the fake serves alt=json only, not alt=%s", alt))
	}
	if v := q.Get("prettyPrint"); v != "" {
		if _, err := strconv.ParseBool(v); err != nil {
			return errInvalid(fmt.Sprintf("Invalid value at 'pretty_print' (TYPE_BOOL), %q", v))
		}
	}
	if v := q.Get("$.xgafv"); v != "" && v != "1" && v != "2" {
		return errInvalid(fmt.Sprintf("Invalid value at 'xgafv', %q", v))
	}
	return nil
}

func (s *Server) routes() {
	s.mux = http.NewServeMux()
	// h registers fn for pattern; params are the method's query parameters.
	h := func(pattern, op string, fn handler, params ...string) {
		s.mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
			if e := checkQuery(r.URL.Query(), params); e != nil {
				e.write(w, r)
				return
			}
			s.mu.Lock()
			s.stats.Calls++
			s.stats.ByOp[op]++
			if e := s.takeFault(op); e != nil {
				s.echoAuth(e, r)
				s.mu.Unlock()
				e.write(w, r)
				return
			}
			s.mu.Unlock()
			user := r.PathValue("user")
			if user != "me" && !strings.EqualFold(user, s.opts.Email) {
				(&apiError{code: 403, status: "PERMISSION_DENIED", reason: "forbidden", message: "Delegation denied for " + s.opts.Email}).write(w, r)
				return
			}
			v, e := fn(r, user)
			if e != nil {
				e.write(w, r)
				return
			}
			if v == nil {
				w.WriteHeader(http.StatusNoContent)
				return
			}
			writeJSON(w, r, 200, v)
		})
	}
	p := "/gmail/v1/users/{user}"
	h("GET "+p+"/profile", "users.getProfile", s.getProfile)
	h("GET "+p+"/messages", "messages.list", s.listMessages, "includeSpamTrash", "labelIds", "maxResults", "pageToken", "q")
	h("GET "+p+"/messages/{id}", "messages.get", s.getMessage, "format", "metadataHeaders")
	h("POST "+p+"/messages/{id}/modify", "messages.modify", s.modifyMessage)
	h("POST "+p+"/messages/{id}/trash", "messages.trash", s.trashMessage)
	h("POST "+p+"/messages/{id}/untrash", "messages.untrash", s.untrashMessage)
	h("DELETE "+p+"/messages/{id}", "messages.delete", s.deleteMessage)
	h("POST "+p+"/messages/batchModify", "messages.batchModify", s.batchModify)
	h("POST "+p+"/messages/batchDelete", "messages.batchDelete", s.batchDelete)
	h("GET "+p+"/history", "history.list", s.listHistory, "historyTypes", "labelId", "maxResults", "pageToken", "startHistoryId")
	h("GET "+p+"/labels", "labels.list", s.listLabels)
	h("GET "+p+"/labels/{id}", "labels.get", s.getLabel)
	h("POST "+p+"/labels", "labels.create", s.createLabelCall)
	h("POST "+p+"/watch", "users.watch", s.watchCall)
	h("POST "+p+"/stop", "users.stop", s.stopCall)
}

func (s *Server) authorized(r *http.Request) bool {
	auth := r.Header.Get("Authorization")
	tok, ok := strings.CutPrefix(auth, "Bearer ")
	if !ok {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	exp, ok := s.tokens[tok]
	return ok && (exp.IsZero() || s.opts.Now().Before(exp))
}

func (s *Server) serveHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.stats.Requests++
	down := s.unavailable
	s.mu.Unlock()
	if down {
		if hj, ok := w.(http.Hijacker); ok {
			if c, _, err := hj.Hijack(); err == nil {
				c.Close()
				return
			}
		}
		http.Error(w, "unavailable", http.StatusServiceUnavailable)
		return
	}
	if !s.authorized(r) {
		w.Header().Set("WWW-Authenticate", `Bearer realm="https://accounts.google.com/", error="invalid_token"`)
		(&apiError{code: 401, status: "UNAUTHENTICATED", reason: "authError",
			message: "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential."}).write(w, r)
		return
	}
	if r.Method == http.MethodPost && r.URL.Path == "/batch/gmail/v1" {
		s.serveBatch(w, r)
		return
	}
	s.mux.ServeHTTP(w, r)
}

func (s *Server) serveBatch(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.stats.BatchRequests++
	e := s.takeFault("batch")
	s.echoAuth(e, r)
	s.mu.Unlock()
	if e != nil {
		e.write(w, r)
		return
	}
	mt, params, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "multipart/mixed" || params["boundary"] == "" {
		errInvalid("Invalid batch request: Content-Type must be multipart/mixed with a boundary").write(w, r)
		return
	}
	type answer struct {
		id  string
		rec *httptest.ResponseRecorder
	}
	var answers []answer
	mr := multipart.NewReader(r.Body, params["boundary"])
	for {
		part, err := mr.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			errInvalid("Invalid batch request: "+err.Error()).write(w, r)
			return
		}
		if len(answers) >= s.opts.MaxBatch {
			errInvalid(fmt.Sprintf("Too many requests in batch (maximum %d)", s.opts.MaxBatch)).write(w, r)
			return
		}
		if ct := part.Header.Get("Content-Type"); ct != "application/http" {
			errInvalid("Invalid batch part Content-Type "+ct).write(w, r)
			return
		}
		inner, err := readInnerRequest(part)
		if err != nil {
			errInvalid("Invalid batch part: "+err.Error()).write(w, r)
			return
		}
		inner = inner.WithContext(r.Context())
		if inner.Header.Get("Authorization") == "" {
			inner.Header.Set("Authorization", r.Header.Get("Authorization")) // for Fault.EchoAuth
		}
		rec := httptest.NewRecorder()
		s.mux.ServeHTTP(rec, inner)
		answers = append(answers, answer{id: strings.Trim(part.Header.Get("Content-ID"), "<>"), rec: rec})
	}
	if s.opts.ReverseBatch {
		slices.Reverse(answers)
	}
	boundary := "batch_" + strconv.FormatInt(time.Now().UnixNano(), 36)
	w.Header().Set("Content-Type", "multipart/mixed; boundary="+boundary)
	w.WriteHeader(200)
	mw := multipart.NewWriter(w)
	mw.SetBoundary(boundary)
	for _, a := range answers {
		h := textproto.MIMEHeader{"Content-Type": {"application/http"}}
		if a.id != "" {
			h.Set("Content-ID", "<response-"+a.id+">")
		}
		pw, err := mw.CreatePart(h)
		if err != nil {
			return
		}
		res := a.rec.Result()
		fmt.Fprintf(pw, "HTTP/1.1 %d %s\r\n", res.StatusCode, http.StatusText(res.StatusCode))
		res.Header.Write(pw)
		io.WriteString(pw, "\r\n")
		io.Copy(pw, res.Body)
		io.WriteString(pw, "\r\n")
	}
	mw.Close()
}

// readInnerRequest parses one application/http part: a request line (the
// HTTP version is optional, as in Google's examples), headers, body.
func readInnerRequest(r io.Reader) (*http.Request, error) {
	br := bufio.NewReader(r)
	line, err := br.ReadString('\n')
	if err != nil && line == "" {
		return nil, fmt.Errorf("empty request")
	}
	f := strings.Fields(line)
	if len(f) < 2 {
		return nil, fmt.Errorf("bad request line %q", strings.TrimSpace(line))
	}
	tp := textproto.NewReader(br)
	hdr, err := tp.ReadMIMEHeader()
	if err != nil && err != io.EOF {
		return nil, err
	}
	body, _ := io.ReadAll(br)
	body = bytes.TrimRight(body, "\r\n")
	req, err := http.NewRequest(f[0], f[1], bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header = http.Header(hdr)
	req.RequestURI = f[1]
	return req, nil
}

// ---- operations ----

func (s *Server) getProfile(r *http.Request, _ string) (any, *apiError) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return map[string]any{
		"emailAddress":  s.opts.Email,
		"messagesTotal": len(s.msgs),
		"threadsTotal":  len(s.msgs),
		"historyId":     strconv.FormatUint(s.historyID, 10),
	}, nil
}

func pageParams(q url.Values) (offset, max int, e *apiError) {
	max = 100
	if v := q.Get("maxResults"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return 0, 0, errInvalid("Invalid maxResults")
		}
		if n > 0 {
			max = min(n, 500)
		}
	}
	if tok := q.Get("pageToken"); tok != "" {
		n, err := strconv.Atoi(strings.TrimPrefix(tok, "p"))
		if err != nil || !strings.HasPrefix(tok, "p") || n < 0 {
			return 0, 0, errInvalid("Invalid pageToken")
		}
		offset = n
	}
	return offset, max, nil
}

func (s *Server) listMessages(r *http.Request, _ string) (any, *apiError) {
	q := r.URL.Query()
	if q.Get("q") != "" {
		return nil, errInvalid("the fake does not support q")
	}
	offset, max, e := pageParams(q)
	if e != nil {
		return nil, e
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	want := q["labelIds"]
	for _, l := range want {
		if s.labels[l] == nil {
			return nil, errInvalid("Invalid label: " + l)
		}
	}
	spamTrash := q.Get("includeSpamTrash") == "true"
	type ref struct {
		ID       string `json:"id"`
		ThreadID string `json:"threadId"`
	}
	var all []ref
	for _, m := range s.sortedMessages(true) {
		if !spamTrash && (m.labels["SPAM"] || m.labels["TRASH"]) {
			continue
		}
		ok := true
		for _, l := range want {
			ok = ok && m.labels[l]
		}
		if ok {
			all = append(all, ref{m.ID, m.ThreadID})
		}
	}
	out := map[string]any{"resultSizeEstimate": len(all)}
	if offset < len(all) {
		end := min(offset+max, len(all))
		out["messages"] = all[offset:end]
		if end < len(all) {
			out["nextPageToken"] = "p" + strconv.Itoa(end)
		}
	}
	return out, nil
}

// rawMessage is a messages.get response, fields in Gmail's order.
type rawMessage struct {
	ID           string   `json:"id"`
	ThreadID     string   `json:"threadId"`
	LabelIDs     []string `json:"labelIds,omitempty"`
	Snippet      string   `json:"snippet"`
	SizeEstimate int      `json:"sizeEstimate"`
	HistoryID    string   `json:"historyId"`
	InternalDate string   `json:"internalDate"`
}

func (s *Server) getMessage(r *http.Request, _ string) (any, *apiError) {
	format := r.URL.Query().Get("format")
	if format == "" {
		format = "full"
	}
	if format != "raw" && format != "minimal" {
		return nil, errInvalid("the fake supports format=raw and format=minimal only")
	}
	s.mu.Lock()
	m, ok := s.msgs[r.PathValue("id")]
	if !ok {
		s.mu.Unlock()
		return nil, errNotFound()
	}
	resp := rawMessage{
		ID: m.ID, ThreadID: m.ThreadID, LabelIDs: sortedKeys(m.labels),
		Snippet: snippet(m.Raw), SizeEstimate: len(m.Raw),
		HistoryID:    strconv.FormatUint(m.HistoryID, 10),
		InternalDate: strconv.FormatInt(m.InternalDate.UnixMilli(), 10),
	}
	raw := m.Raw
	enc := s.opts.RawEncoding
	s.mu.Unlock()
	b, err := json.Marshal(resp)
	if err != nil {
		return nil, &apiError{code: 500, status: "INTERNAL", reason: "backendError", message: err.Error()}
	}
	if format != "raw" {
		return b, nil
	}
	// Splice "raw" in after sizeEstimate, where Gmail puts it, without
	// running the large string through encoding/json.
	at := bytes.Index(b, []byte(`,"historyId"`))
	var e64 *base64.Encoding
	if enc == Unpadded {
		e64 = base64.RawURLEncoding
	} else {
		e64 = base64.URLEncoding
	}
	out := make([]byte, 0, len(b)+e64.EncodedLen(len(raw))+16)
	out = append(out, b[:at]...)
	out = append(out, `,"raw":"`...)
	out = e64.AppendEncode(out, raw)
	if enc == EscapedPadding {
		tail := len(out) - len(bytes.TrimRight(out, "="))
		out = out[:len(out)-tail]
		for ; tail > 0; tail-- {
			out = append(out, `\u003d`...)
		}
	}
	out = append(out, '"')
	out = append(out, b[at:]...)
	return out, nil
}

func snippet(raw []byte) string {
	_, body, ok := bytes.Cut(raw, []byte("\r\n\r\n"))
	if !ok {
		return ""
	}
	s := strings.Join(strings.Fields(string(body)), " ")
	if len(s) > 100 {
		s = s[:100]
	}
	return s
}

type modifyBody struct {
	IDs            []string `json:"ids"`
	AddLabelIDs    []string `json:"addLabelIds"`
	RemoveLabelIDs []string `json:"removeLabelIds"`
}

func decodeBody(r *http.Request, v any) *apiError {
	if err := json.NewDecoder(r.Body).Decode(v); err != nil {
		return errInvalid("Invalid JSON payload received. " + err.Error())
	}
	return nil
}

func (s *Server) checkLabels(ids []string) *apiError {
	for _, l := range ids {
		if s.labels[l] == nil {
			return errInvalid("Invalid label: " + l)
		}
	}
	return nil
}

func (s *Server) modifyMessage(r *http.Request, _ string) (any, *apiError) {
	var b modifyBody
	if e := decodeBody(r, &b); e != nil {
		return nil, e
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if e := s.checkLabels(append(slices.Clone(b.AddLabelIDs), b.RemoveLabelIDs...)); e != nil {
		return nil, e
	}
	m, ok := s.msgs[r.PathValue("id")]
	if !ok {
		return nil, errNotFound()
	}
	s.modify(m, b.AddLabelIDs, b.RemoveLabelIDs)
	return m.minimal(), nil
}

func (m *message) minimal() map[string]any {
	return map[string]any{"id": m.ID, "threadId": m.ThreadID, "labelIds": sortedKeys(m.labels)}
}

func (s *Server) batchModify(r *http.Request, _ string) (any, *apiError) {
	var b modifyBody
	if e := decodeBody(r, &b); e != nil {
		return nil, e
	}
	if len(b.IDs) > 1000 {
		return nil, errInvalid("Number of ids cannot exceed 1000")
	}
	if len(b.IDs) == 0 {
		return nil, errInvalid("No ids specified")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if e := s.checkLabels(append(slices.Clone(b.AddLabelIDs), b.RemoveLabelIDs...)); e != nil {
		return nil, e
	}
	if s.opts.StrictBatchModify {
		for _, id := range b.IDs {
			if s.msgs[id] == nil {
				return nil, errNotFound()
			}
		}
	}
	for _, id := range b.IDs {
		if m := s.msgs[id]; m != nil {
			s.modify(m, b.AddLabelIDs, b.RemoveLabelIDs)
		}
	}
	return nil, nil
}

func (s *Server) trashMessage(r *http.Request, _ string) (any, *apiError) {
	s.mu.Lock()
	defer s.mu.Unlock()
	m, ok := s.msgs[r.PathValue("id")]
	if !ok {
		return nil, errNotFound()
	}
	s.modify(m, []string{"TRASH"}, []string{"INBOX"})
	return m.minimal(), nil
}

func (s *Server) untrashMessage(r *http.Request, _ string) (any, *apiError) {
	s.mu.Lock()
	defer s.mu.Unlock()
	m, ok := s.msgs[r.PathValue("id")]
	if !ok {
		return nil, errNotFound()
	}
	s.modify(m, nil, []string{"TRASH"})
	return m.minimal(), nil
}

func (s *Server) deleteMessage(r *http.Request, _ string) (any, *apiError) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.deleteMsg(r.PathValue("id")) {
		return nil, errNotFound()
	}
	return nil, nil
}

func (s *Server) batchDelete(r *http.Request, _ string) (any, *apiError) {
	var b modifyBody
	if e := decodeBody(r, &b); e != nil {
		return nil, e
	}
	if len(b.IDs) > 1000 {
		return nil, errInvalid("Number of ids cannot exceed 1000")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, id := range b.IDs {
		s.deleteMsg(id)
	}
	return nil, nil
}

func (s *Server) listHistory(r *http.Request, _ string) (any, *apiError) {
	q := r.URL.Query()
	startStr := q.Get("startHistoryId")
	if startStr == "" {
		return nil, errInvalid("Required parameter: startHistoryId")
	}
	start, err := strconv.ParseUint(startStr, 10, 64)
	if err != nil {
		return nil, errInvalid("Invalid startHistoryId")
	}
	offset, max, e := pageParams(q)
	if e != nil {
		return nil, e
	}
	types := q["historyTypes"]
	for _, t := range types {
		switch t {
		case "messageAdded", "messageDeleted", "labelAdded", "labelRemoved":
		default:
			return nil, errInvalid("Invalid value at 'history_types': " + t)
		}
	}
	labelID := q.Get("labelId")
	s.mu.Lock()
	defer s.mu.Unlock()
	if start < s.minHistory || start > s.historyID {
		return nil, errNotFound()
	}
	if labelID != "" && s.labels[labelID] == nil {
		return nil, errNotFound()
	}
	type labelChange struct {
		Message  historyMsg `json:"message"`
		LabelIDs []string   `json:"labelIds"`
	}
	type msgChange struct {
		Message historyMsg `json:"message"`
	}
	type hist struct {
		ID              string        `json:"id"`
		Messages        []historyMsg  `json:"messages"`
		MessagesAdded   []msgChange   `json:"messagesAdded,omitempty"`
		MessagesDeleted []msgChange   `json:"messagesDeleted,omitempty"`
		LabelsAdded     []labelChange `json:"labelsAdded,omitempty"`
		LabelsRemoved   []labelChange `json:"labelsRemoved,omitempty"`
	}
	var all []hist
	for _, rec := range s.history {
		c := rec.change
		if rec.id <= start || (len(types) > 0 && !slices.Contains(types, c.kind)) {
			continue
		}
		if labelID != "" && !slices.Contains(c.msg.LabelIDs, labelID) && !slices.Contains(c.before, labelID) {
			continue
		}
		h := hist{ID: strconv.FormatUint(rec.id, 10), Messages: []historyMsg{{ID: c.msg.ID, ThreadID: c.msg.ThreadID}}}
		switch c.kind {
		case "messageAdded":
			h.MessagesAdded = []msgChange{{c.msg}}
		case "messageDeleted":
			h.MessagesDeleted = []msgChange{{c.msg}}
		case "labelAdded":
			h.LabelsAdded = []labelChange{{c.msg, c.labelIDs}}
		case "labelRemoved":
			h.LabelsRemoved = []labelChange{{c.msg, c.labelIDs}}
		}
		all = append(all, h)
	}
	out := map[string]any{"historyId": strconv.FormatUint(s.historyID, 10)}
	if offset < len(all) {
		end := min(offset+max, len(all))
		out["history"] = all[offset:end]
		if end < len(all) {
			out["nextPageToken"] = "p" + strconv.Itoa(end)
		}
	}
	return out, nil
}

func (s *Server) labelJSON(l *labelInfo) map[string]any {
	total, unread := 0, 0
	for _, m := range s.msgs {
		if m.labels[l.ID] {
			total++
			if m.labels["UNREAD"] {
				unread++
			}
		}
	}
	out := map[string]any{"id": l.ID, "name": l.Name, "type": l.Type,
		"messagesTotal": total, "messagesUnread": unread, "threadsTotal": total, "threadsUnread": unread}
	if l.Type == "user" {
		out["messageListVisibility"] = "show"
		out["labelListVisibility"] = "labelShow"
	}
	return out
}

func (s *Server) listLabels(r *http.Request, _ string) (any, *apiError) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var ls []map[string]any
	ids := make([]string, 0, len(s.labels))
	for id := range s.labels {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		l := s.labels[id]
		ls = append(ls, map[string]any{"id": l.ID, "name": l.Name, "type": l.Type})
	}
	return map[string]any{"labels": ls}, nil
}

func (s *Server) getLabel(r *http.Request, _ string) (any, *apiError) {
	s.mu.Lock()
	defer s.mu.Unlock()
	l := s.labels[r.PathValue("id")]
	if l == nil {
		return nil, errNotFound()
	}
	return s.labelJSON(l), nil
}

func (s *Server) createLabelCall(r *http.Request, _ string) (any, *apiError) {
	var b struct {
		Name string `json:"name"`
	}
	if e := decodeBody(r, &b); e != nil {
		return nil, e
	}
	name := strings.TrimSpace(b.Name)
	if name == "" {
		return nil, errInvalid("Invalid label name")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, id := range systemLabels {
		if strings.EqualFold(id, name) {
			return nil, errInvalid("Invalid label name")
		}
	}
	if s.labelByName(name) != nil {
		return nil, &apiError{code: 409, status: "ALREADY_EXISTS", reason: "duplicate", message: "Label name exists or conflicts"}
	}
	return s.labelJSON(s.createLabel(name)), nil
}

type watchBody struct {
	TopicName           string   `json:"topicName"`
	LabelIDs            []string `json:"labelIds"`
	LabelFilterBehavior string   `json:"labelFilterBehavior"`
	LabelFilterAction   string   `json:"labelFilterAction"`
}

// validTopic reports whether name is a Pub/Sub v1 topic name,
// projects/{project}/topics/{topic}.
func validTopic(name string) bool {
	f := strings.Split(name, "/")
	return len(f) == 4 && f[0] == "projects" && f[1] != "" && f[2] == "topics" && f[3] != ""
}

func (s *Server) watchCall(r *http.Request, _ string) (any, *apiError) {
	var b watchBody
	if e := decodeBody(r, &b); e != nil {
		return nil, e
	}
	if !validTopic(b.TopicName) {
		return nil, errInvalid("Invalid topicName does not match projects/SOME-PROJECT/topics/*")
	}
	behavior := b.LabelFilterBehavior
	if behavior == "" {
		behavior = b.LabelFilterAction
	}
	switch strings.ToLower(behavior) {
	case "", "include", "exclude":
	default:
		return nil, errInvalid(fmt.Sprintf("Invalid value at 'label_filter_behavior', %q", behavior))
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if e := s.checkLabels(b.LabelIDs); e != nil {
		return nil, e
	}
	exp := s.opts.Now().Add(s.opts.WatchExpiry)
	s.watch = &Watch{TopicName: b.TopicName, LabelIDs: slices.Clone(b.LabelIDs), LabelFilterBehavior: behavior, Expiration: exp}
	return map[string]any{
		"historyId":  strconv.FormatUint(s.historyID, 10),
		"expiration": strconv.FormatInt(exp.UnixMilli(), 10),
	}, nil
}

func (s *Server) stopCall(r *http.Request, _ string) (any, *apiError) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.watch = nil
	return nil, nil
}
