package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mailsync/mailsync/internal/pgtest"
	"github.com/mailsync/mailsync/internal/redact"
	"github.com/mailsync/mailsync/internal/secretscan"
)

func TestMain(m *testing.M) {
	code := m.Run()
	pgtest.StopAll()
	os.Exit(code)
}

// logBuffer captures every log line of the app (level debug).
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// harness is one running backend with an HTTP client that keeps cookies
// and remembers every page it was served, for the secret scan.
type harness struct {
	t      *testing.T
	app    *App
	srv    *httptest.Server
	client *http.Client
	logs   *logBuffer
	dir    string

	mu    sync.Mutex
	pages []string
}

func newHarness(t *testing.T, postgres string, opts ...func(*Config)) *harness {
	t.Helper()
	logs := &logBuffer{}
	h := &harness{t: t, logs: logs, dir: t.TempDir()}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cfg := Config{DataDir: h.dir, Postgres: postgres, Lang: "pt",
		Logger: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))}
	for _, o := range opts {
		o(&cfg)
	}
	app, err := Open(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	h.app = app
	h.srv = httptest.NewServer(h.recording(app.Handler()))
	jar, _ := cookiejar.New(nil)
	h.client = &http.Client{Jar: jar, Timeout: 30 * time.Second}
	t.Cleanup(func() {
		h.srv.Close()
		app.Close()
	})
	return h
}

// recording keeps every response the server sends (to the Go client or
// to the browser), headers included, for the secret scan.
func (h *harness) recording(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec := httptest.NewRecorder()
		next.ServeHTTP(rec, r)
		var hdr bytes.Buffer
		rec.Header().Write(&hdr)
		h.mu.Lock()
		h.pages = append(h.pages, r.Method+" "+r.URL.String()+"\n"+hdr.String()+"\n"+rec.Body.String())
		h.mu.Unlock()
		for k, v := range rec.Header() {
			w.Header()[k] = v
		}
		w.WriteHeader(rec.Code)
		w.Write(rec.Body.Bytes())
	})
}

func (h *harness) record(resp *http.Response) string {
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		h.t.Fatal(err)
	}
	return string(body)
}

func (h *harness) get(path string) (int, string) {
	h.t.Helper()
	resp, err := h.client.Get(h.srv.URL + path)
	if err != nil {
		h.t.Fatal(err)
	}
	return resp.StatusCode, h.record(resp)
}

var csrfRE = regexp.MustCompile(`name="csrf_token" value="([^"]+)"`)

// csrf returns the session's CSRF token, as a page carries it.
func (h *harness) csrf() string {
	h.t.Helper()
	_, body := h.get("/connections")
	m := csrfRE.FindStringSubmatch(body)
	if m == nil {
		h.t.Fatal("no CSRF token on /connections")
	}
	return m[1]
}

// post sends a form (with the CSRF token unless form has one) and follows
// redirects; it returns the status, the final path and the body.
func (h *harness) post(path string, form url.Values) (int, string, string) {
	h.t.Helper()
	if form == nil {
		form = url.Values{}
	}
	if _, ok := form[csrfField]; !ok {
		form.Set(csrfField, h.csrf())
	}
	resp, err := h.client.PostForm(h.srv.URL+path, form)
	if err != nil {
		h.t.Fatal(err)
	}
	final := resp.Request.URL.Path
	return resp.StatusCode, final, h.record(resp)
}

// waitRun polls a sync's status until it is finished.
func (h *harness) waitRun(runPath string) runStatus {
	h.t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := h.client.Get(h.srv.URL + runPath + "/status")
		if err != nil {
			h.t.Fatal(err)
		}
		body := h.record(resp)
		var st runStatus
		if err := json.Unmarshal([]byte(body), &st); err != nil {
			h.t.Fatalf("status %q: %v", body, err)
		}
		if st.Finished {
			h.get(runPath) // the report page, scanned too
			return st
		}
		time.Sleep(100 * time.Millisecond)
	}
	h.t.Fatal("the sync did not finish in 60 s")
	return runStatus{}
}

// tables lists every table of the app's database: the host's, mailsync's
// (sqlstate, health) and River's.
func (h *harness) tables() []string {
	h.t.Helper()
	q := `SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name`
	if h.app.st.pg {
		q = `SELECT table_name FROM information_schema.tables WHERE table_schema NOT IN ('pg_catalog', 'information_schema') AND table_type = 'BASE TABLE' ORDER BY 1`
	}
	rows, err := h.app.st.db.Query(q)
	if err != nil {
		h.t.Fatal(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var n string
		rows.Scan(&n)
		out = append(out, n)
	}
	return out
}

// findLeaks scans every row of every table, every log line and every
// response served so far for each secret, in every encoding redact knows,
// and returns where it found one (by source: "database", "log", "page").
func (h *harness) findLeaks(secrets ...string) map[string][]string {
	h.t.Helper()
	found := map[string][]string{}
	tables := h.tables()
	counts, leaks, err := secretscan.Rows(context.Background(), h.app.st.db, tables, secrets...)
	if err != nil {
		h.t.Fatal(err)
	}
	for _, l := range leaks {
		found["database"] = append(found["database"], l.String())
	}
	total := 0
	for _, n := range counts {
		total += n
	}
	for _, want := range []string{"hd_connections", "hd_tickets", "river_job"} {
		if counts[want] == 0 && !slices.Contains(tables, want) {
			h.t.Errorf("table %s was not scanned (tables: %v)", want, tables)
		}
	}
	var forms []string
	for _, s := range secrets {
		forms = append(forms, redact.Forms(s)...)
	}
	logs := h.logs.String()
	h.mu.Lock()
	pages := append([]string(nil), h.pages...)
	h.mu.Unlock()
	for _, f := range forms {
		if strings.Contains(logs, f) {
			found["log"] = append(found["log"], fmt.Sprintf("form %q", f))
		}
		for _, p := range pages {
			if strings.Contains(p, f) {
				found["page"] = append(found["page"], fmt.Sprintf("%s: form %q", strings.SplitN(p, "\n", 2)[0], f))
			}
		}
	}
	h.t.Logf("secret scan: %d tables, %d rows, %d log bytes, %d responses", len(tables), total, len(logs), len(pages))
	if total == 0 || len(pages) == 0 || logs == "" {
		h.t.Error("the scan read nothing")
	}
	return found
}

// assertNoSecret fails the test when findLeaks finds any secret.
func (h *harness) assertNoSecret(secrets ...string) {
	h.t.Helper()
	for src, ls := range h.findLeaks(secrets...) {
		for _, l := range ls {
			h.t.Errorf("%s holds a secret: %s", src, l)
		}
	}
}

func mustContain(t *testing.T, what, body string, subs ...string) {
	t.Helper()
	for _, s := range subs {
		if !strings.Contains(body, s) {
			t.Errorf("%s: %q not found in:\n%s", what, s, clip(body))
		}
	}
}

func clip(s string) string {
	if len(s) > 3000 {
		return s[:3000] + fmt.Sprintf("… (%d bytes)", len(s))
	}
	return s
}
