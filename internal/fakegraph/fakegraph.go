// Package fakegraph is an in-memory Microsoft Graph mail API on an
// httptest TLS server, for the graph provider's tests. It follows the
// documented v1.0 shapes of the calls the provider makes:
//
//	GET    /v1.0/users/{u}/mailFolders/{f}/messages/delta()   (also mailFolders('{f}'), delta without ())
//	GET    /v1.0/users/{u}/mailFolders/{f}
//	GET    /v1.0/users/{u}/mailFolders?$filter=displayName eq '{name}'
//	GET    /v1.0/users/{u}/mailFolders/{f}/childFolders?$filter=…
//	POST   /v1.0/users/{u}/mailFolders                        {"displayName": …}
//	GET    /v1.0/users/{u}/messages/{id}/$value
//	PATCH  /v1.0/users/{u}/messages/{id}                      {"isRead": true}
//	POST   /v1.0/users/{u}/messages/{id}/move                 {"destinationId": …}
//	DELETE /v1.0/users/{u}/messages/{id}
//
// Delta rounds page with @odata.nextLink ($skiptoken) and end with an
// @odata.deltaLink ($deltatoken); later rounds return created/updated
// messages and "@removed" entries; an expired token answers 410 with
// SyncStateNotFound (ExpireDeltaTokens expires them all at once,
// ExpireSkipTokenAfter the skip token of a round in progress). Message ids are immutable only when the request says
// Prefer: IdType="ImmutableId" (otherwise the id changes when the message
// moves, as on the real service). Request bodies may be gzip-compressed
// (Content-Encoding: gzip). Every request needs a bearer token the fake
// issued (401 InvalidAuthenticationToken otherwise); tests can expire
// tokens, inject 429/503 throttling and count requests. It also keeps
// change-notification subscriptions (POST/PATCH/DELETE /v1.0/subscriptions)
// and delivers change and lifecycle notifications to their URLs (see
// subscriptions.go).
package fakegraph

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/mail"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// DefaultPageSize is the delta page size without a Prefer: odata.maxpagesize header.
const DefaultPageSize = 10

// MaxPageSize caps odata.maxpagesize.
const MaxPageSize = 1000

// Server is the fake. Its methods are safe for concurrent use.
type Server struct {
	*httptest.Server
	// User is the mailbox's user principal name; requests for another user get 404.
	User string

	mu       sync.Mutex
	folders  map[string]*Folder // by id
	messages map[string]*message
	events   []event
	seq      int
	minToken int // delta tokens below it are expired
	tokens   map[string]bool
	throttle []throttleRule
	echo     []throttleRule // answer with an error that repeats the Authorization header
	echoN    int            // echoes sent, picks the encoding
	// throttleBodies, when set, answers the first attempt of each request
	// that carries a body (PATCH, POST) 429 with this Retry-After.
	throttleBodies *string
	throttledOnce  map[string]bool // method+path+body already throttled
	// skipExpiry: after this many more pages with a nextLink, the skip
	// (and delta) tokens issued so far expire; skipEvery re-arms it.
	skipExpiry, skipEvery int
	// budget: at most budgetN API requests admitted per budgetWindow (0: no limit).
	budgetN        int
	budgetWindow   time.Duration
	admitted       []time.Time // admission times within the window, oldest first
	budgetRejected int
	requests       []Request
	nextID         int
	start          time.Time
	idp            idp
	hooks          webhooks // subscriptions (subscriptions.go)
}

// idp is the fake's token endpoint state.
type idp struct {
	clientID, clientSecret string
	refresh                map[string]bool
	rotate                 bool
	expiresIn              int
	fail                   string // "", "invalid_grant", "invalid_client", "500"
	issued                 int
	requests               int
}

// Folder is a mail folder.
type Folder struct {
	ID          string
	DisplayName string
	WellKnown   string // e.g. "inbox", "" for a user folder
	ParentID    string
}

type message struct {
	id       string // immutable id
	folderID string
	isRead   bool
	raw      []byte
	received time.Time
	moves    int // changes the mutable id
}

type event struct {
	seq      int
	folderID string
	msgID    string
	removed  bool
}

// Request is one request the fake received.
type Request struct {
	Method  string
	Path    string // the escaped path, as sent
	Query   url.Values
	Header  http.Header
	Body    []byte // decoded (gunzipped) body
	Gzipped bool
	Status  int
}

type throttleRule struct {
	status     int
	retryAfter string
	count      int
}

// New starts a fake for user with the well-known folders inbox,
// deleteditems, archive and sentitems.
func New(user string) *Server {
	s := &Server{
		User:     user,
		folders:  map[string]*Folder{},
		messages: map[string]*message{},
		tokens:   map[string]bool{},
		start:    time.Date(2026, 11, 1, 8, 0, 0, 0, time.UTC),
	}
	for _, wk := range []struct{ wk, name string }{{"inbox", "Inbox"}, {"deleteditems", "Deleted Items"}, {"archive", "Archive"}, {"sentitems", "Sent Items"}} {
		s.addFolder(wk.name, wk.wk, "root")
	}
	s.Server = httptest.NewTLSServer(http.HandlerFunc(s.serve))
	return s
}

// TokenPath is the path of the fake's OAuth token endpoint.
const TokenPath = "/contoso-tenant/oauth2/v2.0/token"

// TokenURL is the fake's token endpoint (Microsoft identity platform
// shape): refresh_token grants with client credentials in the body yield
// access tokens this server accepts.
func (s *Server) TokenURL() string { return s.URL + TokenPath }

// ConfigureOAuth sets the client credentials and the refresh token the
// token endpoint accepts; rotate makes it hand out (and require) a new
// refresh token on each refresh; expiresIn is the access tokens' lifetime
// in seconds.
func (s *Server) ConfigureOAuth(clientID, clientSecret, refreshToken string, rotate bool, expiresIn int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.idp = idp{clientID: clientID, clientSecret: clientSecret, refresh: map[string]bool{refreshToken: true}, rotate: rotate, expiresIn: expiresIn}
}

// FailTokens makes the token endpoint answer every refresh with mode:
// "invalid_grant", "invalid_client", "500", "echo" (400 invalid_grant
// whose error_description repeats the request body raw and URL-encoded
// and the client secret and refresh token in base64, as a careless
// endpoint might) or "" (normal).
func (s *Server) FailTokens(mode string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.idp.fail = mode
}

// TokenRequests counts the requests the token endpoint received.
func (s *Server) TokenRequests() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.idp.requests
}

func (s *Server) token(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil || r.Method != http.MethodPost {
		http.Error(w, "bad request", 400)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	p := &s.idp
	p.requests++
	oauthErr := func(status int, code, desc string) {
		w.Header().Set("Content-Type", "application/json; charset=utf-8")
		w.WriteHeader(status)
		json.NewEncoder(w).Encode(map[string]any{"error": code, "error_description": desc})
	}
	switch {
	case p.fail == "500":
		w.WriteHeader(500)
		return
	case p.fail == "echo":
		body := r.PostForm.Encode()
		oauthErr(400, "invalid_grant", "AADSTS900144: cannot process request '"+body+"' ("+url.QueryEscape(body)+") "+
			Echo(r.PostForm.Get("client_secret"))+" "+Echo(r.PostForm.Get("refresh_token")))
		return
	case p.fail == "invalid_client" || r.Header.Get("Authorization") != "" ||
		r.PostForm.Get("client_id") != p.clientID || r.PostForm.Get("client_secret") != p.clientSecret:
		oauthErr(401, "invalid_client", "AADSTS7000215: Invalid client secret provided.")
		return
	case p.fail == "invalid_grant" || r.PostForm.Get("grant_type") != "refresh_token" || !p.refresh[r.PostForm.Get("refresh_token")]:
		oauthErr(400, "invalid_grant", "AADSTS70008: The refresh token has expired due to inactivity.")
		return
	}
	p.issued++
	at := fmt.Sprintf("fake-access-%d", p.issued)
	s.tokens[at] = true
	resp := map[string]any{"token_type": "Bearer", "access_token": at, "expires_in": p.expiresIn, "scope": r.PostForm.Get("scope")}
	if p.rotate {
		nrt := fmt.Sprintf("fake-refresh-%d", p.issued)
		delete(p.refresh, r.PostForm.Get("refresh_token"))
		p.refresh[nrt] = true
		resp["refresh_token"] = nrt
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	json.NewEncoder(w).Encode(resp)
}

// BaseURL is the service root the provider is pointed at.
func (s *Server) BaseURL() string { return s.URL + "/v1.0" }

func (s *Server) addFolder(name, wellKnown, parent string) *Folder {
	s.nextID++
	f := &Folder{ID: fmt.Sprintf("AAMkFolder%04d=", s.nextID), DisplayName: name, WellKnown: wellKnown, ParentID: parent}
	s.folders[f.ID] = f
	return f
}

// IssueToken makes tok a valid access token.
func (s *Server) IssueToken(tok string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.tokens[tok] = true
}

// ExpireTokens makes every issued access token invalid (401 on use).
func (s *Server) ExpireTokens() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.tokens = map[string]bool{}
}

// ExpireDeltaTokens makes every delta and skip token issued so far stale:
// using one answers 410 Gone, SyncStateNotFound.
func (s *Server) ExpireDeltaTokens() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.seq++
	s.minToken = s.seq
}

// ExpireSkipTokenAfter makes the skip token of a paged delta round expire
// after pages more pages that end in an @odata.nextLink have been served:
// following that nextLink answers 410 Gone, SyncStateNotFound, as Graph
// does when the sync state behind a skip token is gone (for example
// during a long first listing of a large mailbox). With repeat it
// happens again every pages pages; pages <= 0 turns it off.
func (s *Server) ExpireSkipTokenAfter(pages int, repeat bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.skipExpiry, s.skipEvery = max(pages, 0), 0
	if repeat {
		s.skipEvery = s.skipExpiry
	}
}

// SetMailboxBudget makes the fake enforce Exchange Online's per-app,
// per-mailbox request limit (10,000 requests per 10 minutes on the real
// service): once limit authenticated API requests were admitted within
// the last window, every further request is answered 429
// ApplicationThrottled with a Retry-After of the seconds until the
// oldest one leaves the window. Answered-429 requests are not admitted.
// limit <= 0 turns it off.
func (s *Server) SetMailboxBudget(limit int, window time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.budgetN, s.budgetWindow, s.admitted, s.budgetRejected = limit, window, nil, 0
}

// BudgetStats returns how many requests SetMailboxBudget's limit refused
// (429) and how many were admitted within the current window.
func (s *Server) BudgetStats() (rejected, inWindow int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.trimBudgetLocked(time.Now())
	return s.budgetRejected, len(s.admitted)
}

func (s *Server) trimBudgetLocked(now time.Time) {
	i := 0
	for i < len(s.admitted) && !s.admitted[i].After(now.Add(-s.budgetWindow)) {
		i++
	}
	s.admitted = s.admitted[i:]
}

// Throttle answers the next count requests with status (429 or 503) and
// the Retry-After header value retryAfter ("" for none).
func (s *Server) Throttle(status, count int, retryAfter string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.throttle = append(s.throttle, throttleRule{status: status, retryAfter: retryAfter, count: count})
}

// EchoErrors answers the next count authenticated API requests with
// status and a Graph error whose message repeats the request's
// Authorization header in one of the encodings of EchoForms (the next
// one on each request, so a message stays short and a run of requests
// covers them all), as a careless service or proxy might.
func (s *Server) EchoErrors(status, count int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.echo = append(s.echo, throttleRule{status: status, count: count})
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

// Echo is all of EchoForms(v), separated by spaces.
func Echo(v string) string { return strings.Join(EchoForms(v), " ") }

// ThrottleBodies makes the fake answer the first attempt of every
// request that carries a body (mark-read PATCH, move and folder-create
// POST) 429 TooManyRequests with Retry-After: retryAfter; the same
// request sent again (same method, path and decoded body) is served.
// A retry whose body does not decode (for example plain JSON sent with
// Content-Encoding: gzip) gets 400, as Graph answers. off turns it off.
func (s *Server) ThrottleBodies(on bool, retryAfter string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !on {
		s.throttleBodies = nil
		return
	}
	s.throttleBodies = &retryAfter
	s.throttledOnce = map[string]bool{}
}

// Requests returns the requests received so far.
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Request(nil), s.requests...)
}

// ResetRequests forgets the recorded requests.
func (s *Server) ResetRequests() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.requests = nil
}

// FolderByName returns the folder with that display name or well-known name.
func (s *Server) FolderByName(name string) *Folder {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.folderByNameLocked(name)
}

func (s *Server) folderByNameLocked(name string) *Folder {
	for _, f := range s.folders {
		if strings.EqualFold(f.WellKnown, name) || strings.EqualFold(f.DisplayName, name) {
			c := *f
			return &c
		}
	}
	return nil
}

// AddFolder creates a top-level user folder.
func (s *Server) AddFolder(name string) *Folder {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := *s.addFolder(name, "", "root")
	return &c
}

// AddWellKnownFolder creates a top-level folder with a well-known name
// (e.g. "Junk Email", "junkemail"), which requests may use in place of its id.
func (s *Server) AddWellKnownFolder(name, wellKnown string) *Folder {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := *s.addFolder(name, wellKnown, "root")
	return &c
}

// AddChildFolder creates a folder named name inside the folder with the
// display or well-known name parent; nil when there is no such parent.
func (s *Server) AddChildFolder(parent, name string) *Folder {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.folderByNameLocked(parent)
	if p == nil {
		return nil
	}
	c := *s.addFolder(name, "", p.ID)
	return &c
}

// DeleteFolder deletes the user folder with that display name, as a user
// deleting it in Outlook would: its messages go to Deleted Items (with
// new mutable ids) and its id answers 404 ErrorItemNotFound from then on.
// It reports whether there was such a folder.
func (s *Server) DeleteFolder(name string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	var f *Folder
	for _, x := range s.folders {
		if x.WellKnown == "" && strings.EqualFold(x.DisplayName, name) {
			f = x
			break
		}
	}
	if f == nil {
		return false
	}
	trash := s.folderByNameLocked("deleteditems")
	for _, m := range s.sortedLocked(f.ID) {
		s.moveLocked(m, s.folders[trash.ID])
	}
	delete(s.folders, f.ID)
	return true
}

// Deliver puts raw into the folder with that name (well-known or display
// name) and returns the message's immutable id.
func (s *Server) Deliver(folder string, raw []byte) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f := s.folderByNameLocked(folder)
	if f == nil {
		return "", fmt.Errorf("fakegraph: no folder %q", folder)
	}
	s.nextID++
	m := &message{
		id:       fmt.Sprintf("AAkALgAAAAAAHYQDEapmEc2byACqAC-EWg0A%06d", s.nextID),
		folderID: f.ID,
		raw:      append([]byte(nil), raw...),
		received: s.start.Add(time.Duration(s.nextID) * time.Second),
	}
	s.messages[m.id] = m
	s.event(f.ID, m.id, false)
	return m.id, nil
}

// Touch records a change of the message (as a flag change would), so it
// appears in the next delta round again.
func (s *Server) Touch(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if m := s.messages[id]; m != nil {
		s.event(m.folderID, m.id, false)
	}
}

// Remove deletes a message outright (as another client purging it would).
func (s *Server) Remove(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if m := s.messages[id]; m != nil {
		s.event(m.folderID, m.id, true)
		delete(s.messages, id)
	}
}

// MessageInfo is what Messages reports of one message.
type MessageInfo struct {
	ID        string
	Folder    string // display name
	IsRead    bool
	MessageID string // Message-ID header without angle brackets
}

// Messages lists all messages, oldest first.
func (s *Server) Messages() []MessageInfo {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []MessageInfo
	for _, m := range s.sortedLocked("") {
		out = append(out, MessageInfo{ID: m.id, Folder: s.folders[m.folderID].DisplayName, IsRead: m.isRead, MessageID: headerMessageID(m.raw)})
	}
	return out
}

func headerMessageID(raw []byte) string {
	msg, err := mail.ReadMessage(bufio.NewReader(bytes.NewReader(raw)))
	if err != nil {
		return ""
	}
	return strings.Trim(strings.TrimSpace(msg.Header.Get("Message-Id")), "<>")
}

func (s *Server) sortedLocked(folderID string) []*message {
	var ms []*message
	for _, m := range s.messages {
		if folderID == "" || m.folderID == folderID {
			ms = append(ms, m)
		}
	}
	sort.Slice(ms, func(i, j int) bool { return ms[i].received.Before(ms[j].received) })
	return ms
}

func (s *Server) event(folderID, msgID string, removed bool) {
	if len(s.hooks.subs) > 0 {
		s.notifyLocked(folderID, msgID, s.changeKind(folderID, msgID, removed))
	}
	s.seq++
	s.events = append(s.events, event{seq: s.seq, folderID: folderID, msgID: msgID, removed: removed})
}

// graphError writes a Graph error body.
func graphError(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("request-id", "fake-request-id")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]any{"error": map[string]any{"code": code, "message": msg,
		"innerError": map[string]string{"date": time.Now().UTC().Format("2006-01-02T15:04:05"), "request-id": "fake-request-id"}}})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json;odata.metadata=minimal;odata.streaming=true;IEEE754Compatible=false;charset=utf-8")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (r *statusRecorder) WriteHeader(code int) {
	if r.status == 0 {
		r.status = code
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *statusRecorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	return r.ResponseWriter.Write(b)
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == TokenPath {
		s.token(w, r)
		return
	}
	rec := &statusRecorder{ResponseWriter: w}
	req := Request{Method: r.Method, Path: r.URL.EscapedPath(), Query: r.URL.Query(), Header: r.Header.Clone()}
	body, gz, err := readBody(r)
	req.Body, req.Gzipped = body, gz
	defer func() {
		req.Status = rec.status
		s.mu.Lock()
		s.requests = append(s.requests, req)
		s.mu.Unlock()
	}()
	if err != nil {
		graphError(rec, 400, "BadRequest", "Unable to read the request body: "+err.Error())
		return
	}
	auth := r.Header.Get("Authorization")
	s.mu.Lock()
	ok := strings.HasPrefix(auth, "Bearer ") && s.tokens[strings.TrimPrefix(auth, "Bearer ")]
	var rule, echo *throttleRule
	if ok && len(s.echo) > 0 {
		echo = &throttleRule{}
		*echo = s.echo[0]
		s.echo[0].count--
		if s.echo[0].count <= 0 {
			s.echo = s.echo[1:]
		}
	}
	if ok && echo == nil && s.throttleBodies != nil && len(body) > 0 {
		key := r.Method + " " + r.URL.EscapedPath() + " " + string(body)
		if !s.throttledOnce[key] {
			s.throttledOnce[key] = true
			rule = &throttleRule{status: http.StatusTooManyRequests, retryAfter: *s.throttleBodies}
		}
	}
	if ok && echo == nil && rule == nil && s.budgetN > 0 {
		now := time.Now()
		s.trimBudgetLocked(now)
		if len(s.admitted) >= s.budgetN {
			wait := s.admitted[0].Add(s.budgetWindow).Sub(now)
			secs := int((wait + time.Second - 1) / time.Second)
			rule = &throttleRule{status: http.StatusTooManyRequests, retryAfter: strconv.Itoa(max(secs, 1))}
			s.budgetRejected++
		} else {
			s.admitted = append(s.admitted, now)
		}
	}
	if ok && echo == nil && rule == nil && len(s.throttle) > 0 {
		rule = &throttleRule{}
		*rule = s.throttle[0]
		s.throttle[0].count--
		if s.throttle[0].count <= 0 {
			s.throttle = s.throttle[1:]
		}
	}
	s.mu.Unlock()
	if !ok {
		rec.Header().Set("WWW-Authenticate", `Bearer realm="", authorization_uri="https://login.microsoftonline.com/common/oauth2/authorize", client_id="00000003-0000-0000-c000-000000000000"`)
		if auth == "" {
			graphError(rec, 401, "InvalidAuthenticationToken", "Access token is empty.")
		} else {
			graphError(rec, 401, "InvalidAuthenticationToken", "Lifetime validation failed, the token is expired.")
		}
		return
	}
	if echo != nil {
		code := "ErrorAccessDenied"
		if echo.status == http.StatusNotFound {
			code = "ErrorInvalidUser"
		}
		s.mu.Lock()
		forms := EchoForms(auth)
		form := forms[s.echoN%len(forms)]
		s.echoN++
		s.mu.Unlock()
		graphError(rec, echo.status, code, "Access is denied for the request with "+form+" (the request was refused)")
		return
	}
	if rule != nil {
		if rule.retryAfter != "" {
			rec.Header().Set("Retry-After", rule.retryAfter)
		}
		graphError(rec, rule.status, "TooManyRequests", "Application is over its MailboxConcurrency limit.")
		return
	}
	s.route(rec, r, body)
}

func readBody(r *http.Request) ([]byte, bool, error) {
	if r.Body == nil {
		return nil, false, nil
	}
	var rd io.Reader = io.LimitReader(r.Body, 10<<20)
	gz := strings.EqualFold(r.Header.Get("Content-Encoding"), "gzip")
	if gz {
		zr, err := gzip.NewReader(rd)
		if err != nil {
			return nil, true, err
		}
		defer zr.Close()
		rd = zr
	}
	b, err := io.ReadAll(rd)
	return b, gz, err
}

// segments splits an escaped path into unescaped segments, turning
// name('key') into name, key.
func segments(escaped string) []string {
	var out []string
	for _, p := range strings.Split(strings.Trim(escaped, "/"), "/") {
		u, err := url.PathUnescape(p)
		if err != nil {
			u = p
		}
		if i := strings.Index(u, "('"); i > 0 && strings.HasSuffix(u, "')") {
			out = append(out, u[:i], u[i+2:len(u)-2])
			continue
		}
		out = append(out, u)
	}
	return out
}

func prefers(r *http.Request) (pageSize int, immutable bool) {
	pageSize = DefaultPageSize
	for _, v := range r.Header.Values("Prefer") {
		for _, p := range strings.Split(v, ",") {
			p = strings.TrimSpace(p)
			if strings.HasPrefix(p, "odata.maxpagesize=") {
				if n, err := strconv.Atoi(strings.TrimPrefix(p, "odata.maxpagesize=")); err == nil && n > 0 {
					pageSize = min(n, MaxPageSize)
				}
			}
			if strings.EqualFold(strings.ReplaceAll(p, " ", ""), `IdType="ImmutableId"`) {
				immutable = true
			}
		}
	}
	return pageSize, immutable
}

func (s *Server) route(w http.ResponseWriter, r *http.Request, body []byte) {
	seg := segments(r.URL.EscapedPath())
	if len(seg) >= 2 && seg[0] == "v1.0" && seg[1] == "subscriptions" {
		s.routeSubscriptions(w, r, seg[2:], body)
		return
	}
	if len(seg) < 3 || seg[0] != "v1.0" || seg[1] != "users" {
		graphError(w, 400, "BadRequest", "Resource not found for the segment '"+strings.Join(seg, "/")+"'.")
		return
	}
	if !strings.EqualFold(seg[2], s.User) {
		graphError(w, 404, "ErrorInvalidUser", "The requested user '"+seg[2]+"' is invalid.")
		return
	}
	rest := seg[3:]
	pageSize, immutable := prefers(r)
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case len(rest) == 1 && rest[0] == "mailFolders" && r.Method == http.MethodGet:
		s.listFolders(w, r, "root")
	case len(rest) == 1 && rest[0] == "mailFolders" && r.Method == http.MethodPost:
		s.createFolder(w, body, "root")
	case len(rest) == 2 && rest[0] == "mailFolders" && r.Method == http.MethodGet:
		f := s.folderLocked(rest[1])
		if f == nil {
			graphError(w, 404, "ErrorItemNotFound", "The specified object was not found in the store.")
			return
		}
		writeJSON(w, 200, s.folderJSON(f))
	case len(rest) == 3 && rest[0] == "mailFolders" && rest[2] == "childFolders":
		f := s.folderLocked(rest[1])
		if f == nil {
			graphError(w, 404, "ErrorItemNotFound", "The specified object was not found in the store.")
			return
		}
		if r.Method == http.MethodPost {
			s.createFolder(w, body, f.ID)
		} else {
			s.listFolders(w, r, f.ID)
		}
	case len(rest) == 4 && rest[0] == "mailFolders" && rest[2] == "messages" && (rest[3] == "delta()" || rest[3] == "delta" || rest[3] == "microsoft.graph.delta()") && r.Method == http.MethodGet:
		s.delta(w, r, rest[1], pageSize, immutable)
	case len(rest) >= 2 && rest[0] == "messages":
		m := s.messageLocked(rest[1])
		if m == nil {
			graphError(w, 404, "ErrorItemNotFound", "The specified object was not found in the store.")
			return
		}
		switch {
		case len(rest) == 3 && rest[2] == "$value" && r.Method == http.MethodGet:
			w.Header().Set("Content-Type", "text/plain")
			w.Header().Set("Content-Length", strconv.Itoa(len(m.raw)))
			w.WriteHeader(200)
			w.Write(m.raw)
		case len(rest) == 2 && r.Method == http.MethodPatch:
			var patch map[string]any
			if err := json.Unmarshal(body, &patch); err != nil {
				graphError(w, 400, "RequestBodyRead", "Invalid JSON: "+err.Error())
				return
			}
			if v, ok := patch["isRead"].(bool); ok && v != m.isRead {
				m.isRead = v
				s.event(m.folderID, m.id, false)
			}
			writeJSON(w, 200, s.messageJSON(m, immutable, true))
		case len(rest) == 3 && rest[2] == "move" && r.Method == http.MethodPost:
			var mv struct {
				DestinationID string `json:"destinationId"`
			}
			if err := json.Unmarshal(body, &mv); err != nil || mv.DestinationID == "" {
				graphError(w, 400, "ErrorInvalidRequest", "destinationId is required")
				return
			}
			dst := s.folderLocked(mv.DestinationID)
			if dst == nil {
				graphError(w, 404, "ErrorItemNotFound", "The specified folder was not found in the store.")
				return
			}
			s.moveLocked(m, dst)
			writeJSON(w, 201, s.messageJSON(m, immutable, true))
		case len(rest) == 2 && r.Method == http.MethodDelete:
			// Deleting moves to Deleted Items; deleting there removes it.
			dst := s.folderByNameLocked("deleteditems")
			if m.folderID == dst.ID {
				s.event(m.folderID, m.id, true)
				delete(s.messages, m.id)
			} else {
				s.moveLocked(m, dst)
			}
			w.WriteHeader(204)
		default:
			graphError(w, 405, "Request_BadRequest", "Unsupported method or path.")
		}
	default:
		graphError(w, 400, "BadRequest", "Resource not found for the segment '"+strings.Join(rest, "/")+"'.")
	}
}

func (s *Server) moveLocked(m *message, dst *Folder) {
	if m.folderID == dst.ID {
		return
	}
	s.event(m.folderID, m.id, true)
	m.folderID = dst.ID
	m.moves++
	s.event(dst.ID, m.id, false)
}

// folderLocked finds a folder by id or well-known name.
func (s *Server) folderLocked(key string) *Folder {
	if f := s.folders[key]; f != nil {
		return f
	}
	for _, f := range s.folders {
		if f.WellKnown != "" && strings.EqualFold(f.WellKnown, key) {
			return f
		}
	}
	return nil
}

// messageLocked finds a message by immutable or (current) mutable id.
func (s *Server) messageLocked(id string) *message {
	if m := s.messages[id]; m != nil {
		return m
	}
	for _, m := range s.messages {
		if mutableID(m) == id {
			return m
		}
	}
	return nil
}

// mutableID is the id a client sees without ImmutableId: it changes on a move.
func mutableID(m *message) string { return fmt.Sprintf("%s-m%d", m.id, m.moves) }

func (s *Server) folderJSON(f *Folder) map[string]any {
	total, unread, children := 0, 0, 0
	for _, c := range s.folders {
		if c.ParentID == f.ID {
			children++
		}
	}
	for _, m := range s.messages {
		if m.folderID == f.ID {
			total++
			if !m.isRead {
				unread++
			}
		}
	}
	return map[string]any{"id": f.ID, "displayName": f.DisplayName, "parentFolderId": f.ParentID,
		"childFolderCount": children, "unreadItemCount": unread, "totalItemCount": total, "isHidden": false}
}

func (s *Server) messageJSON(m *message, immutable, full bool) map[string]any {
	id := m.id
	if !immutable {
		id = mutableID(m)
	}
	out := map[string]any{"@odata.type": "#microsoft.graph.message", "@odata.etag": fmt.Sprintf(`W/"CQAAABYAAAA%d"`, s.seq),
		"id": id, "receivedDateTime": m.received.Format(time.RFC3339)}
	if full {
		out["isRead"] = m.isRead
		out["parentFolderId"] = m.folderID
		out["subject"] = ""
	}
	return out
}

func (s *Server) listFolders(w http.ResponseWriter, r *http.Request, parent string) {
	filter := r.URL.Query().Get("$filter")
	var name string
	if filter != "" {
		const pre = "displayName eq '"
		if !strings.HasPrefix(filter, pre) || !strings.HasSuffix(filter, "'") {
			graphError(w, 400, "ErrorInvalidUrlQueryFilter", "The query filter contains one or more invalid nodes.")
			return
		}
		name = strings.ReplaceAll(filter[len(pre):len(filter)-1], "''", "'")
	}
	var vals []map[string]any
	var ids []string
	for id := range s.folders {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		f := s.folders[id]
		if f.ParentID == parent && (filter == "" || f.DisplayName == name) {
			vals = append(vals, s.folderJSON(f))
		}
	}
	writeJSON(w, 200, map[string]any{"@odata.context": "https://graph.microsoft.com/v1.0/$metadata#users('" + s.User + "')/mailFolders", "value": vals})
}

func (s *Server) createFolder(w http.ResponseWriter, body []byte, parent string) {
	var in struct {
		DisplayName string `json:"displayName"`
	}
	if err := json.Unmarshal(body, &in); err != nil || in.DisplayName == "" {
		graphError(w, 400, "ErrorInvalidRequest", "displayName is required")
		return
	}
	for _, f := range s.folders {
		if f.ParentID == parent && strings.EqualFold(f.DisplayName, in.DisplayName) {
			graphError(w, 409, "ErrorFolderExists", "A folder with the specified name already exists.")
			return
		}
	}
	f := s.addFolder(in.DisplayName, "", parent)
	writeJSON(w, 201, s.folderJSON(f))
}

// delta serves one page of a delta round. Tokens: a round covers events
// with seq in (from, to]; $skiptoken=from.to.offset, $deltatoken=to.
func (s *Server) delta(w http.ResponseWriter, r *http.Request, folderKey string, pageSize int, immutable bool) {
	f := s.folderLocked(folderKey)
	if f == nil {
		graphError(w, 404, "ErrorItemNotFound", "The specified folder was not found in the store.")
		return
	}
	q := r.URL.Query()
	from, to, offset := 0, s.seq, 0
	stale := func() {
		graphError(w, 410, "SyncStateNotFound", "The sync state generation is not found. The delta token is expired and data must be synchronized again.")
	}
	if tok := q.Get("$deltatoken"); tok != "" {
		n, err := strconv.Atoi(tok)
		if err != nil || n > s.seq {
			graphError(w, 400, "SyncStateInvalid", "The sync state is invalid.")
			return
		}
		if n < s.minToken {
			stale()
			return
		}
		from = n
	} else if tok := q.Get("$skiptoken"); tok != "" {
		parts := strings.Split(tok, ".")
		if len(parts) != 3 {
			graphError(w, 400, "SyncStateInvalid", "The sync state is invalid.")
			return
		}
		a, err1 := strconv.Atoi(parts[0])
		b, err2 := strconv.Atoi(parts[1])
		c, err3 := strconv.Atoi(parts[2])
		if err1 != nil || err2 != nil || err3 != nil || b > s.seq {
			graphError(w, 400, "SyncStateInvalid", "The sync state is invalid.")
			return
		}
		if b < s.minToken || (a > 0 && a < s.minToken) {
			stale()
			return
		}
		from, to, offset = a, b, c
	}
	// The changes of the round, one entry per message, in event order.
	type entry struct {
		id      string
		removed bool
	}
	var order []string
	last := map[string]bool{} // id -> removed
	for _, e := range s.events {
		if e.seq <= from || e.seq > to || e.folderID != f.ID {
			continue
		}
		if _, seen := last[e.msgID]; !seen {
			order = append(order, e.msgID)
		}
		last[e.msgID] = e.removed
	}
	var entries []entry
	for _, id := range order {
		m := s.messages[id]
		removed := last[id] || m == nil || m.folderID != f.ID
		if removed && from == 0 {
			continue // an initial round lists what is there
		}
		entries = append(entries, entry{id: id, removed: removed})
	}
	end := min(offset+pageSize, len(entries))
	if offset > len(entries) {
		offset = len(entries)
	}
	var vals []map[string]any
	for _, e := range entries[offset:end] {
		m := s.messages[e.id]
		if e.removed {
			id := e.id
			if !immutable && m != nil {
				id = mutableID(m)
			}
			vals = append(vals, map[string]any{"@odata.type": "#microsoft.graph.message", "id": id, "@removed": map[string]string{"reason": "deleted"}})
			continue
		}
		vals = append(vals, s.messageJSON(m, immutable, false))
	}
	sel := ""
	if v := q.Get("$select"); v != "" {
		sel = "&%24select=" + url.QueryEscape(v)
	}
	base := fmt.Sprintf("%s/v1.0/users/%s/mailFolders('%s')/messages/delta()", s.URL, url.PathEscape(s.User), url.PathEscape(folderKey))
	resp := map[string]any{"@odata.context": "https://graph.microsoft.com/v1.0/$metadata#Collection(message)", "value": vals}
	if vals == nil {
		resp["value"] = []any{}
	}
	if end < len(entries) {
		resp["@odata.nextLink"] = fmt.Sprintf("%s?%%24skiptoken=%d.%d.%d%s", base, from, to, end, sel)
		if s.skipExpiry > 0 {
			s.skipExpiry--
			if s.skipExpiry == 0 {
				s.seq++
				s.minToken = s.seq // the token just handed out is stale
				s.skipExpiry = s.skipEvery
			}
		}
	} else {
		resp["@odata.deltaLink"] = fmt.Sprintf("%s?%%24deltatoken=%d%s", base, to, sel)
	}
	if pageSize != DefaultPageSize {
		w.Header().Set("Preference-Applied", "odata.maxpagesize="+strconv.Itoa(pageSize))
	}
	writeJSON(w, 200, resp)
}
