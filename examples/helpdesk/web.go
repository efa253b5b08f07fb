package main

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"embed"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"mime"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/mailsync/mailsync"
	"github.com/mailsync/mailsync/fleet"
	"github.com/mailsync/mailsync/internal/redact"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// ---- security: headers, session, CSRF ----

const (
	sessionCookie = "hd_session"
	langCookie    = "hd_lang"
	csrfField     = "csrf_token"
)

// contentSecurityPolicy allows scripts from this origin only (no inline
// script), images from this origin (inline parts are served by
// /attachments/) and data: URLs. Styles may be inline: mail HTML carries
// style attributes, which the library's sanitiser keeps within bounds.
const contentSecurityPolicy = "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; " +
	"connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

type ctxKey int

const sessionKey ctxKey = 0

// secure wraps every handler: security headers, a session cookie (random,
// HttpOnly, SameSite=Strict), and the CSRF check of every POST: the form
// (or the X-CSRF-Token header) must carry the token derived from the
// session, else 403.
func (a *App) secure(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !a.cfg.AllowRemote && !loopbackHost(r.Host) {
			// A page on another site can point its own host name at
			// 127.0.0.1 (DNS rebinding) and read these pages as same-origin;
			// a loopback-only backend answers loopback host names only.
			http.Error(w, "421 misdirected request: this backend answers localhost only", http.StatusMisdirectedRequest)
			return
		}
		h := w.Header()
		h.Set("Content-Security-Policy", contentSecurityPolicy)
		h.Set("X-Frame-Options", "DENY")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Cache-Control", "no-store")
		sid := ""
		if c, err := r.Cookie(sessionCookie); err == nil && len(c.Value) == 64 {
			sid = c.Value
		}
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			r.Body = http.MaxBytesReader(w, r.Body, 1<<20)
			token := r.Header.Get("X-CSRF-Token")
			if token == "" {
				token = r.PostFormValue(csrfField)
			}
			if sid == "" || !hmac.Equal([]byte(token), []byte(a.csrfToken(sid))) {
				a.log.Warn("refused a request without a valid CSRF token", "method", r.Method, "path", r.URL.Path)
				http.Error(w, "403 forbidden: missing or invalid CSRF token (reload the page)", http.StatusForbidden)
				return
			}
		}
		if sid == "" {
			b := make([]byte, 32)
			rand.Read(b)
			sid = hex.EncodeToString(b)
			http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: sid, Path: "/", HttpOnly: true, SameSite: http.SameSiteStrictMode})
		}
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), sessionKey, sid)))
	})
}

func loopbackHost(hostport string) bool {
	host, _, err := net.SplitHostPort(hostport)
	if err != nil {
		host = hostport
	}
	return mailsync.IsLoopbackHost(host)
}

// csrfToken is the session's CSRF token: an HMAC of the session id, so the
// server keeps no session table.
func (a *App) csrfToken(sid string) string {
	m := hmac.New(sha256.New, a.csrfKey)
	m.Write([]byte(sid))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// ---- pages ----

// page is what every template gets.
type page struct {
	Lang, CSRF, Flash, Nav, Path string
	Data                         any
}

// T returns a label in the page's language.
func (p page) T(key string) string { return translate(p.Lang, key) }

func (a *App) lang(w http.ResponseWriter, r *http.Request) string {
	if l := r.URL.Query().Get("lang"); l == "pt" || l == "en" {
		http.SetCookie(w, &http.Cookie{Name: langCookie, Value: l, Path: "/", SameSite: http.SameSiteLaxMode, MaxAge: 365 * 86400})
		return l
	}
	if c, err := r.Cookie(langCookie); err == nil && (c.Value == "pt" || c.Value == "en") {
		return c.Value
	}
	return a.cfg.Lang
}

func (a *App) newPage(w http.ResponseWriter, r *http.Request, nav string, data any) page {
	sid, _ := r.Context().Value(sessionKey).(string)
	return page{Lang: a.lang(w, r), CSRF: a.csrfToken(sid), Flash: r.URL.Query().Get("flash"), Nav: nav, Path: r.URL.Path, Data: data}
}

func (a *App) parseTemplates() error {
	funcs := template.FuncMap{
		"pathEscape": url.PathEscape,
		"ticketType": func(types []TicketType, id, lang string) string {
			for _, t := range types {
				if t.ID == id {
					return t.Name(lang)
				}
			}
			return id
		},
		// safeMailHTML marks the mail's HTML body as safe: it is the
		// library's sanitised HTML (Message.HTML: no script, no event
		// handlers, remote images blocked, styles bounded), with cid:
		// references rewritten by Message.InlineHTML; the CSP forbids
		// scripts on top of that.
		"safeMailHTML": func(s string) template.HTML { return template.HTML(s) },
		"kb":           func(n int64) string { return fmt.Sprintf("%.1f KB", float64(n)/1024) },
		"when": func(s string) string {
			if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
				return t.Local().Format("2006-01-02 15:04:05")
			}
			return s
		},
		"dict": func(kv ...any) map[string]any {
			m := map[string]any{}
			for i := 0; i+1 < len(kv); i += 2 {
				m[kv[i].(string)] = kv[i+1]
			}
			return m
		},
	}
	layout, err := template.New("layout.html").Funcs(funcs).ParseFS(templateFS, "templates/layout.html")
	if err != nil {
		return err
	}
	pages, err := fs.Glob(templateFS, "templates/*.html")
	if err != nil {
		return err
	}
	a.tmpl = map[string]*template.Template{}
	for _, p := range pages {
		name := strings.TrimSuffix(strings.TrimPrefix(p, "templates/"), ".html")
		if name == "layout" {
			continue
		}
		t, err := template.Must(layout.Clone()).ParseFS(templateFS, p)
		if err != nil {
			return err
		}
		a.tmpl[name] = t
	}
	return nil
}

func (a *App) render(w http.ResponseWriter, status int, name string, p page) {
	var buf bytes.Buffer
	if err := a.tmpl[name].ExecuteTemplate(&buf, "layout.html", p); err != nil {
		a.log.Error("template", "page", name, "err", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	w.Write(buf.Bytes())
}

func (a *App) fail(w http.ResponseWriter, err error) {
	if errors.Is(err, ErrNotFound) {
		http.NotFound(w, nil)
		return
	}
	a.log.Error("request failed", "err", err)
	http.Error(w, "internal error", http.StatusInternalServerError)
}

// Handler returns the backend's HTTP handler.
func (a *App) Handler() http.Handler {
	mux := http.NewServeMux()
	static, _ := fs.Sub(staticFS, "static")
	mux.Handle("GET /static/", http.StripPrefix("/static/", http.FileServerFS(static)))
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) { http.Redirect(w, r, "/tickets", http.StatusSeeOther) })
	mux.HandleFunc("GET /tickets", a.tickets)
	mux.HandleFunc("GET /tickets/{id}", a.ticket)
	mux.HandleFunc("GET /attachments/{id}", a.attachment)
	mux.HandleFunc("GET /connections", a.connections)
	mux.HandleFunc("GET /connections/new", a.connectionForm)
	mux.HandleFunc("GET /connections/{name}/edit", a.connectionForm)
	mux.HandleFunc("POST /connections/save", a.saveConnection)
	mux.HandleFunc("GET /connections/{name}/sync", a.syncForm)
	mux.HandleFunc("POST /connections/{name}/sync", a.startSync)
	mux.HandleFunc("POST /connections/{name}/test", a.testConnection)
	mux.HandleFunc("GET /runs/{id}", a.runPage)
	mux.HandleFunc("GET /runs/{id}/status", a.runStatus)
	mux.HandleFunc("GET /mappings", a.mappings)
	mux.HandleFunc("GET /mappings/{type}", a.mappingPage)
	mux.HandleFunc("POST /mappings/{type}", a.saveMapping)
	mux.HandleFunc("GET /quarantine", a.quarantine)
	mux.HandleFunc("GET /quarantine/{id}/raw", a.quarantineRaw)
	mux.HandleFunc("POST /quarantine/{id}/replay", a.replay)
	return a.secure(mux)
}

func pathID(r *http.Request, name string) (int64, error) {
	id, err := strconv.ParseInt(r.PathValue(name), 10, 64)
	if err != nil {
		return 0, ErrNotFound
	}
	return id, nil
}

// ---- tickets ----

func (a *App) tickets(w http.ResponseWriter, r *http.Request) {
	ts, err := a.st.Tickets(r.Context())
	if err != nil {
		a.fail(w, err)
		return
	}
	types, _ := a.st.TicketTypes(r.Context())
	a.render(w, 200, "tickets", a.newPage(w, r, "tickets", map[string]any{"Tickets": ts, "Types": types}))
}

func (a *App) ticket(w http.ResponseWriter, r *http.Request) {
	id, err := pathID(r, "id")
	if err != nil {
		a.fail(w, err)
		return
	}
	ctx := r.Context()
	t, err := a.st.Ticket(ctx, id)
	if err != nil {
		a.fail(w, err)
		return
	}
	fus, err := a.st.FollowUps(ctx, id)
	if err != nil {
		a.fail(w, err)
		return
	}
	atts, err := a.st.Attachments(ctx, id)
	if err != nil {
		a.fail(w, err)
		return
	}
	var own []AttachmentRow
	for _, at := range atts {
		if at.FollowUpID == 0 {
			own = append(own, at)
			continue
		}
		for i := range fus {
			if fus[i].ID == at.FollowUpID {
				fus[i].Attachments = append(fus[i].Attachments, at)
			}
		}
	}
	types, _ := a.st.TicketTypes(ctx)
	a.render(w, 200, "ticket", a.newPage(w, r, "tickets", map[string]any{"Ticket": t, "FollowUps": fus, "Attachments": own, "Types": types}))
}

// inlineTypes are served inline; any other attachment is a download, so a
// mail's HTML or SVG attachment never runs in this origin.
var inlineTypes = map[string]bool{"image/png": true, "image/jpeg": true, "image/gif": true, "image/webp": true}

func (a *App) attachment(w http.ResponseWriter, r *http.Request) {
	id, err := pathID(r, "id")
	if err != nil {
		a.fail(w, err)
		return
	}
	at, data, err := a.st.Attachment(r.Context(), id)
	if err != nil {
		a.fail(w, err)
		return
	}
	ct := strings.ToLower(at.ContentType)
	disp := "attachment"
	if inlineTypes[ct] {
		disp = "inline"
	} else {
		ct = "application/octet-stream"
	}
	name := at.Filename
	if name == "" {
		name = "attachment-" + strconv.FormatInt(at.ID, 10)
	}
	w.Header().Set("Content-Type", ct)
	w.Header().Set("Content-Disposition", mime.FormatMediaType(disp, map[string]string{"filename": name}))
	w.Header().Set("Content-Security-Policy", "sandbox; default-src 'none'")
	w.Header().Set("Cache-Control", "private, max-age=3600")
	w.Write(data)
}

// ---- connections ----

type connListItem struct {
	Row         ConnectionRow
	Health      fleet.Health
	HasHealth   bool
	NeedsTyping bool
}

func (a *App) connections(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	rows, err := a.st.Connections(ctx)
	if err != nil {
		a.fail(w, err)
		return
	}
	var items []connListItem
	for _, row := range rows {
		it := connListItem{Row: row, NeedsTyping: row.Conn.OAuth == nil}
		// The fleet keeps every connection's health, background syncs and
		// SyncNow alike, in a table of the same database.
		if h, ok, err := a.fleet.Health().Get(ctx, row.Conn.Name); err == nil && ok {
			it.Health, it.HasHealth = h, true
		}
		items = append(items, it)
	}
	types, _ := a.st.TicketTypes(ctx)
	a.render(w, 200, "connections", a.newPage(w, r, "connections", map[string]any{"Items": items, "Types": types}))
}

// connForm is the connection form's state: the values shown and the
// problems, keyed by input name. Secrets are never part of it: only
// whether one is stored.
type connForm struct {
	IsNew                              bool
	Name, User, Server, Port, Protocol string
	Auth                               string // "password", "microsoft_graph", "gmail_api"
	Enabled                            bool
	Graph, Gmail                       oauthForm
	With                               map[string]bool
	Errors                             map[string]string
	Types                              []TicketType
}

type oauthForm struct {
	ClientID, TenantID, TokenURL, Scopes string
	SecretSet, TokenSet                  bool
}

func formFromRow(row ConnectionRow) connForm {
	c := row.Conn
	f := connForm{Name: c.Name, User: c.User, Server: c.Server, Protocol: string(c.Protocol), Enabled: c.Enabled, Auth: "password", With: map[string]bool{}}
	if c.Port != 0 {
		f.Port = strconv.Itoa(c.Port)
	}
	for _, t := range c.ConnectedWith {
		f.With[t] = true
	}
	if o := c.OAuth; o != nil {
		f.Auth = string(o.Provider)
		of := oauthForm{ClientID: o.ClientID, TenantID: o.TenantID, TokenURL: o.TokenURL, Scopes: strings.Join(o.Scopes, " "), SecretSet: row.ClientSecretSet, TokenSet: row.RefreshTokenSet}
		if o.Provider == mailsync.GmailAPI {
			f.Gmail = of
		} else {
			f.Graph = of
		}
	}
	return f
}

func (a *App) connectionForm(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	f := connForm{IsNew: true, Enabled: true, Protocol: "imap", Auth: "password", With: map[string]bool{}}
	if name := r.PathValue("name"); name != "" {
		row, err := a.st.Connection(ctx, name)
		if err != nil {
			a.fail(w, err)
			return
		}
		f = formFromRow(row)
	}
	f.Types, _ = a.st.TicketTypes(ctx)
	a.render(w, 200, "connection", a.newPage(w, r, "connections", &f))
}

// problemInput names the form input a mailsync.Problem is about: the
// library names fields by their JSON path ("oauth.client_id",
// "connected_with[0]"); the form has one OAuth section per provider.
func problemInput(field, auth string) string {
	prefix := "graph_"
	if auth == string(mailsync.GmailAPI) {
		prefix = "gmail_"
	}
	if i := strings.IndexByte(field, '['); i >= 0 {
		field = field[:i]
	}
	switch {
	case field == "oauth.provider":
		return "auth"
	case strings.HasPrefix(field, "oauth."):
		return prefix + strings.TrimPrefix(field, "oauth.")
	}
	return field
}

// saveConnection turns the form into a mailsync.Connection, validates it
// with Connection.Validate (every problem at once, by field) plus the
// host's own checks, and stores it. OAuth connections are then scheduled
// on the fleet; password connections never are.
func (a *App) saveConnection(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	lang := a.lang(w, r)
	original := r.PostFormValue("original")
	f := connForm{IsNew: original == "", Errors: map[string]string{}, With: map[string]bool{}}
	f.Types, _ = a.st.TicketTypes(ctx)
	var existing ConnectionRow
	if !f.IsNew {
		var err error
		if existing, err = a.st.Connection(ctx, original); err != nil {
			a.fail(w, err)
			return
		}
	}
	f.Enabled = r.PostFormValue("enabled") == "on"
	if !f.Enabled {
		// The sections of a disabled connection are not editable (and the
		// browser does not send disabled inputs): only the switch changes.
		if f.IsNew {
			f.Errors["enabled"] = translate(lang, "conn.enabled.help")
			f.Auth, f.Protocol = "password", "imap"
			a.render(w, http.StatusUnprocessableEntity, "connection", a.newPage(w, r, "connections", &f))
			return
		}
		if err := a.st.SetEnabled(ctx, original, false); err != nil {
			a.fail(w, err)
			return
		}
		if _, err := a.fleet.Unschedule(ctx, original); err != nil {
			a.log.Warn("unschedule", "connection", original, "err", err)
		}
		a.log.Info("connection disabled", "connection", original)
		http.Redirect(w, r, "/connections?flash="+url.QueryEscape(translate(lang, "saved")), http.StatusSeeOther)
		return
	}

	f.Name, f.User, f.Server = strings.TrimSpace(r.PostFormValue("name")), strings.TrimSpace(r.PostFormValue("user")), strings.TrimSpace(r.PostFormValue("server"))
	f.Port, f.Protocol, f.Auth = strings.TrimSpace(r.PostFormValue("port")), r.PostFormValue("protocol"), r.PostFormValue("auth")
	c := mailsync.Connection{Name: f.Name, Enabled: true, User: f.User, Server: f.Server, Protocol: mailsync.Protocol(f.Protocol)}
	if f.Port != "" {
		p, err := strconv.Atoi(f.Port)
		if err != nil {
			f.Errors["port"] = map[string]string{"pt": "deve ser um número", "en": "must be a number"}[lang]
		}
		c.Port = p
	}
	r.ParseForm()
	known := map[string]bool{}
	for _, t := range f.Types {
		known[t.ID] = true
	}
	for _, t := range r.PostForm["connected_with"] {
		if !known[t] {
			f.Errors["connected_with"] = "unknown ticket type " + strconv.Quote(t)
			continue
		}
		f.With[t] = true
		c.ConnectedWith = append(c.ConnectedWith, t)
	}
	if !f.IsNew && f.Name != original {
		f.Errors["name"] = map[string]string{"pt": "o nome de uma ligação não pode ser alterado", "en": "a connection cannot be renamed"}[lang]
	}
	// forValidate carries a placeholder for a stored secret the admin left
	// untouched (the form never shows it), so Validate does not call it missing.
	forValidate := c
	readOAuth := func(prefix string, provider mailsync.OAuthProvider) *oauthForm {
		of := &oauthForm{ClientID: strings.TrimSpace(r.PostFormValue(prefix + "client_id")), TenantID: strings.TrimSpace(r.PostFormValue(prefix + "tenant_id")),
			TokenURL: strings.TrimSpace(r.PostFormValue(prefix + "token_url")), Scopes: r.PostFormValue(prefix + "scopes")}
		o := &mailsync.OAuth{Provider: provider, ClientID: of.ClientID, TenantID: of.TenantID, TokenURL: of.TokenURL,
			Scopes:       strings.FieldsFunc(of.Scopes, func(r rune) bool { return r == ' ' || r == ',' || r == '\n' || r == '\r' || r == '\t' }),
			ClientSecret: mailsync.Secret(r.PostFormValue(prefix + "client_secret")), RefreshToken: mailsync.Secret(r.PostFormValue(prefix + "refresh_token"))}
		c.OAuth = o
		v := *o
		if old := existing.Conn.OAuth; old != nil && old.Provider == provider {
			of.SecretSet, of.TokenSet = existing.ClientSecretSet, existing.RefreshTokenSet
			if v.ClientSecret == "" && existing.ClientSecretSet {
				v.ClientSecret = "unchanged"
			}
			if v.RefreshToken == "" && existing.RefreshTokenSet {
				v.RefreshToken = "unchanged"
			}
		}
		forValidate.OAuth = &v
		return of
	}
	switch f.Auth {
	case string(mailsync.MicrosoftGraph):
		f.Graph = *readOAuth("graph_", mailsync.MicrosoftGraph)
	case string(mailsync.GmailAPI):
		f.Gmail = *readOAuth("gmail_", mailsync.GmailAPI)
	default:
		f.Auth = "password"
	}
	if err := forValidate.Validate(); err != nil {
		var ce *mailsync.ConfigError
		if !errors.As(err, &ce) {
			a.fail(w, err)
			return
		}
		for _, p := range ce.Problems {
			in := problemInput(p.Field, f.Auth)
			if _, dup := f.Errors[in]; !dup {
				f.Errors[in] = translateProblem(lang, p)
			}
		}
	}
	if forValidate.OAuth != nil && forValidate.Protocol == "" && f.Errors["protocol"] == "" {
		// Valid for the library (the Graph or Gmail API connector), but
		// this example does not build those connectors in (see
		// resolver.go): say so now rather than at the first sync.
		f.Errors["protocol"] = translate(lang, "conn.protocol.api_not_built")
	}
	if len(f.Errors) > 0 {
		a.render(w, http.StatusUnprocessableEntity, "connection", a.newPage(w, r, "connections", &f))
		return
	}
	save := a.st.SaveConnection
	if f.IsNew {
		save = a.st.CreateConnection // never overwrite a connection from the "new" form
	}
	if err := save(ctx, c); errors.Is(err, ErrExists) {
		f.Errors["name"] = map[string]string{"pt": "já existe uma ligação com este nome", "en": "a connection with this name exists"}[lang]
		a.render(w, http.StatusUnprocessableEntity, "connection", a.newPage(w, r, "connections", &f))
		return
	} else if err != nil {
		a.fail(w, err)
		return
	}
	a.log.Info("connection saved", "connection", c) // Connection's LogValue has no secret
	if schedulable(c) == nil {
		// Schedule is idempotent; it also re-arms a connection that was
		// waiting for the admin (NeedsAdmin) after this fix.
		if _, err := a.fleet.Schedule(ctx, c.Name); err != nil {
			a.log.Warn("schedule", "connection", c.Name, "err", err)
		}
	} else if _, err := a.fleet.Unschedule(ctx, c.Name); err != nil {
		a.log.Warn("unschedule", "connection", c.Name, "err", err)
	}
	http.Redirect(w, r, "/connections?flash="+url.QueryEscape(translate(lang, "saved")), http.StatusSeeOther)
}

// ---- sync and test ----

// syncRun is one sync started from the connections page; the page polls
// its status.
type syncRun struct {
	ID, Connection string
	Started        time.Time

	mu          sync.Mutex
	Done, Total int
	Finished    bool
	Report      *mailsync.Report
	Err         string
	Outcomes    []outcomeView
}

// outcomeView is one message of a sync's report: what became of it and
// why (thread rule, routing rules, classification), as the admin sees it.
type outcomeView struct {
	MessageID, Status, TicketID, TicketType, Thread, Kind, Rules, Reason string
}

type runStatus struct {
	Done        int    `json:"done"`
	Total       int    `json:"total"`
	Finished    bool   `json:"finished"`
	Created     int    `json:"created"`
	FollowUps   int    `json:"follow_ups"`
	Quarantined int    `json:"quarantined"`
	Failed      int    `json:"failed"`
	Error       string `json:"error,omitempty"`
}

func (s *syncRun) status() runStatus {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := runStatus{Done: s.Done, Total: s.Total, Finished: s.Finished, Error: s.Err}
	if s.Report != nil {
		st.Created, st.FollowUps, st.Quarantined, st.Failed = s.Report.Created, s.Report.FollowUps, s.Report.Quarantined, s.Report.Failed
	}
	return st
}

func (a *App) syncForm(w http.ResponseWriter, r *http.Request) {
	row, err := a.st.Connection(r.Context(), r.PathValue("name"))
	if err != nil {
		a.fail(w, err)
		return
	}
	a.render(w, 200, "syncform", a.newPage(w, r, "connections", row))
}

// startSync runs fleet.SyncNow in this process with the password typed in
// the dialog. The password goes to the Resolver, which hands it to the
// connector, which sends it to the mail server: it is in no table (the
// fleet's job row holds only the id, and SyncNow inserts none), no log
// line, no page, and the error text is scrubbed of it.
func (a *App) startSync(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	row, err := a.st.Connection(r.Context(), name)
	if err != nil {
		a.fail(w, err)
		return
	}
	password := r.PostFormValue("password")
	if row.Conn.OAuth == nil && password == "" {
		http.Redirect(w, r, "/connections/"+url.PathEscape(name)+"/sync", http.StatusSeeOther)
		return
	}
	run := &syncRun{ID: randomID(), Connection: name, Started: time.Now()}
	a.addRun(run)
	go func() {
		ctx, cancel := context.WithTimeout(a.ctx, 10*time.Minute)
		defer cancel()
		progress := mailsync.WithProgress(func(p mailsync.Progress) {
			run.mu.Lock()
			run.Done, run.Total = p.Done, p.Total
			run.mu.Unlock()
		})
		rep, err := a.fleet.SyncNow(ctx, name, mailsync.Secret(password), progress)
		run.mu.Lock()
		defer run.mu.Unlock()
		run.Finished, run.Report = true, rep
		scrub := redact.New(password)
		if rep != nil {
			for _, o := range rep.Messages {
				v := outcomeView{MessageID: o.MessageID, Status: string(o.Status), TicketID: o.TicketID, TicketType: o.TicketType,
					Thread: string(o.Rule), Kind: string(o.Kind), Rules: strings.Join(o.Rules, ", "), Reason: o.Reason}
				if o.Err != nil {
					v.Reason = scrub.Scrub(o.Err.Error())
				}
				run.Outcomes = append(run.Outcomes, v)
			}
		}
		if err != nil {
			// Error texts from a server are scrubbed by the library; the
			// typed password is scrubbed here once more, in every encoding.
			run.Err = scrub.Scrub(err.Error())
			a.log.Warn("sync failed", "connection", name, "err", run.Err)
			return
		}
		a.log.Info("sync finished", "connection", name, "created", rep.Created, "follow_ups", rep.FollowUps,
			"quarantined", rep.Quarantined, "failed", rep.Failed)
	}()
	http.Redirect(w, r, "/runs/"+run.ID, http.StatusSeeOther)
}

func randomID() string {
	b := make([]byte, 12)
	rand.Read(b)
	return hex.EncodeToString(b)
}

func (a *App) addRun(run *syncRun) {
	a.runsMu.Lock()
	defer a.runsMu.Unlock()
	a.runs[run.ID] = run
	a.runOrder = append(a.runOrder, run.ID)
	for len(a.runOrder) > 100 {
		delete(a.runs, a.runOrder[0])
		a.runOrder = a.runOrder[1:]
	}
}

func (a *App) getRun(id string) (*syncRun, error) {
	a.runsMu.Lock()
	defer a.runsMu.Unlock()
	run, ok := a.runs[id]
	if !ok {
		return nil, ErrNotFound
	}
	return run, nil
}

func (a *App) runPage(w http.ResponseWriter, r *http.Request) {
	run, err := a.getRun(r.PathValue("id"))
	if err != nil {
		a.fail(w, err)
		return
	}
	a.render(w, 200, "run", a.newPage(w, r, "connections", map[string]any{"Run": run, "Status": run.status()}))
}

func (a *App) runStatus(w http.ResponseWriter, r *http.Request) {
	run, err := a.getRun(r.PathValue("id"))
	if err != nil {
		a.fail(w, err)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(run.status())
}

// testConnection is the form's "test connection" button: the library's
// Checker (connect, log in, look at the folders, change nothing), with
// the connector the Resolver builds for a sync.
func (a *App) testConnection(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	password := r.PostFormValue("password")
	ctx, cancel := context.WithTimeout(r.Context(), time.Minute)
	defer cancel()
	data := map[string]any{"Name": name}
	target, err := a.resolver.Resolve(ctx, name, mailsync.Secret(password))
	var res *mailsync.CheckResult
	if err == nil {
		defer target.Connector.Close()
		if ch, ok := target.Connector.(mailsync.Checker); ok {
			res, err = ch.Check(ctx)
		} else {
			err = fmt.Errorf("%w: this provider has no check", mailsync.ErrUnsupported)
		}
	}
	if err != nil {
		msg := redact.New(password).Scrub(err.Error())
		kind, _ := fleet.Classify(err)
		data["Error"], data["Kind"] = msg, string(kind)
		a.log.Info("connection test failed", "connection", name, "err", msg)
	} else {
		data["Result"] = res
		a.log.Info("connection test passed", "connection", name, "result", res.String())
	}
	a.render(w, 200, "check", a.newPage(w, r, "connections", data))
}

// ---- mappings ----

func (a *App) mappings(w http.ResponseWriter, r *http.Request) {
	types, err := a.st.TicketTypes(r.Context())
	if err != nil || len(types) == 0 {
		a.fail(w, errors.Join(err, ErrNotFound))
		return
	}
	http.Redirect(w, r, "/mappings/"+url.PathEscape(types[0].ID), http.StatusSeeOther)
}

// sourceFields are the e-mail fields a mapping can read (mapping.go), for
// the form's suggestions; "header:<Name>" reads any header.
var sourceFields = []string{mailsync.FieldFrom, mailsync.FieldFromAddress, mailsync.FieldFromName, mailsync.FieldTo, mailsync.FieldCc,
	mailsync.FieldReplyTo, mailsync.FieldSubject, mailsync.FieldBodyText, mailsync.FieldBodyHTML, mailsync.FieldBodyReply,
	mailsync.FieldBodyReplyHTML, mailsync.FieldBodyQuoted, mailsync.FieldBodySignature, mailsync.FieldDate, mailsync.FieldMessageID,
	mailsync.FieldInReplyTo, mailsync.FieldReferences, mailsync.FieldAttachments, mailsync.FieldInlineImages,
	mailsync.FieldInviteSummary, mailsync.FieldInviteStart, mailsync.FieldInviteEnd, mailsync.FieldInviteOrganizer,
	mailsync.FieldInviteLocation, "header:X-Priority"}

type ruleView struct {
	Connection string
	Rule       mailsync.Rule
}

func (a *App) mappingData(ctx context.Context, tt string, m mailsync.Mapping, errMsg string) (map[string]any, error) {
	types, err := a.st.TicketTypes(ctx)
	if err != nil {
		return nil, err
	}
	found := false
	for _, t := range types {
		found = found || t.ID == tt
	}
	if !found {
		return nil, ErrNotFound
	}
	rows := append([]mailsync.FieldMapping(nil), m.Fields...)
	for i := 0; i < 3; i++ {
		rows = append(rows, mailsync.FieldMapping{})
	}
	conns, err := a.st.Connections(ctx)
	if err != nil {
		return nil, err
	}
	var rules []ruleView
	for _, c := range conns {
		rs, err := a.st.Rules(ctx, c.Conn.Name)
		if err != nil {
			return nil, err
		}
		for _, r := range rs {
			if r.TicketType == tt {
				rules = append(rules, ruleView{c.Conn.Name, r})
			}
		}
	}
	return map[string]any{"Type": tt, "Types": types, "Rows": rows, "Sources": sourceFields, "Rules": rules, "Error": errMsg}, nil
}

func (a *App) mappingPage(w http.ResponseWriter, r *http.Request) {
	tt := r.PathValue("type")
	m, err := a.st.Mapping(r.Context(), tt)
	if err != nil {
		a.fail(w, err)
		return
	}
	data, err := a.mappingData(r.Context(), tt, m, "")
	if err != nil {
		a.fail(w, err)
		return
	}
	a.render(w, 200, "mapping", a.newPage(w, r, "mappings", data))
}

func (a *App) saveMapping(w http.ResponseWriter, r *http.Request) {
	tt := r.PathValue("type")
	r.ParseForm()
	m := mailsync.Mapping{TicketType: tt}
	f := r.PostForm
	for i, field := range f["ticket_field"] {
		field = strings.TrimSpace(field)
		if field == "" {
			continue
		}
		fm := mailsync.FieldMapping{Ticket: field}
		at := func(k string) string {
			if i < len(f[k]) {
				return strings.TrimSpace(f[k][i])
			}
			return ""
		}
		fm.Source, fm.Const, fm.Default = at("source"), at("const"), at("default")
		fm.MaxLength, _ = strconv.Atoi(at("max_length"))
		m.Fields = append(m.Fields, fm)
	}
	if err := m.Validate(); err != nil {
		data, derr := a.mappingData(r.Context(), tt, m, err.Error())
		if derr != nil {
			a.fail(w, derr)
			return
		}
		a.render(w, http.StatusUnprocessableEntity, "mapping", a.newPage(w, r, "mappings", data))
		return
	}
	if _, err := a.mappingData(r.Context(), tt, m, ""); err != nil {
		a.fail(w, err)
		return
	}
	if err := a.st.SetMapping(r.Context(), m); err != nil {
		a.fail(w, err)
		return
	}
	http.Redirect(w, r, "/mappings/"+url.PathEscape(tt)+"?flash="+url.QueryEscape(translate(a.lang(w, r), "mapping.saved")), http.StatusSeeOther)
}

// ---- quarantine ----

func (a *App) quarantine(w http.ResponseWriter, r *http.Request) {
	qs, err := a.st.QuarantineList(r.Context())
	if err != nil {
		a.fail(w, err)
		return
	}
	a.render(w, 200, "quarantine", a.newPage(w, r, "quarantine", qs))
}

func (a *App) quarantineRaw(w http.ResponseWriter, r *http.Request) {
	id, err := pathID(r, "id")
	if err != nil {
		a.fail(w, err)
		return
	}
	_, raw, err := a.st.QuarantinedRaw(r.Context(), id)
	if err != nil {
		a.fail(w, err)
		return
	}
	w.Header().Set("Content-Type", "message/rfc822")
	w.Header().Set("Content-Disposition", mime.FormatMediaType("attachment", map[string]string{"filename": fmt.Sprintf("quarantined-%d.eml", id)}))
	w.Write(raw)
}

// replay feeds a quarantined mail back through the engine with
// mailsync.Replay: same connection, mapping, routing and state (so a
// replayed reply threads), the library's default limits (the admin looked
// at the mail), and the same idempotency key — a second replay, or the
// same mail arriving again, makes no second ticket.
func (a *App) replay(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	id, err := pathID(r, "id")
	if err != nil {
		a.fail(w, err)
		return
	}
	q, raw, err := a.st.QuarantinedRaw(ctx, id)
	if err != nil {
		a.fail(w, err)
		return
	}
	row, err := a.st.Connection(ctx, q.Connection)
	if err != nil {
		a.fail(w, err)
		return
	}
	conn := row.Conn
	status, ticket := "failed", ""
	var routing mailsync.Routing
	for _, tt := range conn.ConnectedWith {
		m, err := a.st.Mapping(ctx, tt)
		if err != nil {
			a.fail(w, err)
			return
		}
		routing.Mappings = append(routing.Mappings, m)
	}
	if routing.Rules, err = a.st.Rules(ctx, conn.Name); err != nil {
		a.fail(w, err)
		return
	}
	if len(routing.Mappings) == 0 {
		status = "failed: the connection is connected with no ticket type"
	} else {
		out, err := mailsync.Replay(ctx, conn, q.MessageKey, bytes.NewReader(raw), routing.Mappings[0], a.sink,
			mailsync.WithState(a.state), mailsync.WithRouting(routing), mailsync.WithLimits(mailsync.DefaultLimits()), mailsync.WithLogger(a.log))
		status, ticket = string(out.Status), out.TicketID
		if err != nil {
			status += ": " + err.Error()
		}
		a.log.Info("replayed quarantined mail", "quarantine_id", id, "status", out.Status, "ticket", out.TicketID)
	}
	if err := a.st.SetReplayed(ctx, id, status, ticket); err != nil {
		a.fail(w, err)
		return
	}
	http.Redirect(w, r, "/quarantine", http.StatusSeeOther)
}
