package browsertest

import (
	"bytes"
	"errors"
	"fmt"
	"html"
	"image/png"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// fakeTB records Skip/Fatal/Error calls and forwards the rest (Cleanup,
// Logf, …) to the real test. Skip and Fatal end the goroutine as the real
// ones do, so code that calls them must run in runFake.
type fakeTB struct {
	testing.TB
	mu              sync.Mutex
	skipped, failed bool
	errored         bool
	logs            []string
}

func (f *fakeTB) Helper() {}
func (f *fakeTB) note(s string) {
	f.mu.Lock()
	f.logs = append(f.logs, s)
	f.mu.Unlock()
}
func (f *fakeTB) Skip(args ...any) {
	f.skipped = true
	f.note(fmt.Sprint(args...))
	runtime.Goexit()
}
func (f *fakeTB) Fatal(args ...any) {
	f.failed = true
	f.note(fmt.Sprint(args...))
	runtime.Goexit()
}
func (f *fakeTB) Fatalf(format string, a ...any) { f.Fatal(fmt.Sprintf(format, a...)) }
func (f *fakeTB) Errorf(format string, a ...any) {
	f.errored = true
	f.note(fmt.Sprintf(format, a...))
}
func (f *fakeTB) text() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return strings.Join(f.logs, "\n")
}

func runFake(f *fakeTB, fn func(testing.TB)) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		fn(f)
	}()
	<-done
}

func TestMissingBrowser(t *testing.T) {
	t.Setenv(EnvChromium, "/nonexistent/chromium")
	for _, ci := range []string{"", "true"} {
		t.Setenv("CI", ci)
		f := &fakeTB{TB: t}
		runFake(f, func(tb testing.TB) { New(tb) })
		if ci == "true" && (!f.failed || f.skipped) || ci == "" && (!f.skipped || f.failed) {
			t.Errorf("CI=%q: skipped=%v failed=%v", ci, f.skipped, f.failed)
		}
		if msg := f.text(); !strings.Contains(msg, "MAILSYNC_CHROMIUM=/nonexistent/chromium") || !strings.Contains(msg, "install-test-deps.sh") {
			t.Errorf("CI=%q: message %q", ci, msg)
		}
	}
}

func TestName(t *testing.T) {
	for in, want := range map[string]string{
		"subject": `[name="subject"]`,
		"tags[]":  `[name="tags[]"]`,
		`say"hi\`: `[name="say\"hi\\"]`,
		"a\nb":    `[name="a\a b"]`,
		"ünïcødé": `[name="ünïcødé"]`,
	} {
		if got := Name(in); got != want {
			t.Errorf("Name(%q) = %s, want %s", in, got, want)
		}
	}
}

func TestTailBuffer(t *testing.T) {
	w := &tailBuffer{max: 10}
	fmt.Fprint(w, "line one\nline two\nend")
	if got := w.String(); got != "end" {
		t.Errorf("tail = %q, want the last whole line", got)
	}
	w = &tailBuffer{max: 1 << 10}
	fmt.Fprint(w, "[1:2:1129/115743.156418:ERROR:dbus/bus.cc:405] Failed to connect to the bus\nreal trouble\n")
	if got := w.tail(); got != "real trouble" {
		t.Errorf("tail = %q, want the noise dropped", got)
	}
}

func TestIsError(t *testing.T) {
	for _, c := range []struct {
		m    Message
		want bool
	}{
		{Message{Kind: "console", Level: "log"}, false},
		{Message{Kind: "console", Level: "warning"}, false},
		{Message{Kind: "console", Level: "error"}, true},
		{Message{Kind: "console", Level: "assert"}, true},
		{Message{Kind: "exception", Level: "error"}, true},
		{Message{Kind: "log", Level: "warning", Source: "security"}, false},
		{Message{Kind: "log", Level: "error", Source: "network", URL: "http://127.0.0.1:1/app.js"}, true},
		{Message{Kind: "log", Level: "error", Source: "network", URL: "http://127.0.0.1:1/favicon.ico"}, false},
		{Message{Kind: "log", Level: "error", Source: "network", URL: "http://127.0.0.1:1/static/favicon.ico"}, true},
	} {
		if got := c.m.IsError(); got != c.want {
			t.Errorf("%+v.IsError() = %v", c.m, got)
		}
	}
}

// formPage is a ticket form; the server records what it receives.
const formPage = `<!doctype html>
<html><head><title>New ticket</title></head><body>
<form method="post" action="/tickets">
<input name="subject">
<textarea name="body"></textarea>
<select name="prio"><option>low</option><option>high</option></select>
<input name='say"hi'>
<button type="button" id="preview">Preview</button>
<button type="submit" id="send">Send</button>
</form>
<p id="out"></p>
<script>
const subject = document.querySelector("[name=subject]");
let inputs = 0;
subject.addEventListener("input", () => inputs++);
document.getElementById("preview").addEventListener("click", () => {
	document.getElementById("out").textContent = "preview (" + inputs + " input event): " + subject.value;
});
console.log("form ready", 42);
</script>
</body></html>`

func formServer(t *testing.T) (*httptest.Server, func() map[string]string) {
	var mu sync.Mutex
	got := map[string]string{}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, formPage)
	})
	mux.HandleFunc("POST /tickets", func(w http.ResponseWriter, r *http.Request) {
		if err := r.ParseForm(); err != nil {
			http.Error(w, err.Error(), 400)
			return
		}
		mu.Lock()
		for k := range r.PostForm {
			got[k] = r.PostForm.Get(k)
		}
		mu.Unlock()
		http.Redirect(w, r, "/tickets/1", http.StatusSeeOther)
	})
	mux.HandleFunc("GET /tickets/1", func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		subject := got["subject"]
		mu.Unlock()
		fmt.Fprintf(w, `<!doctype html><title>Ticket 1</title><h1>Ticket created</h1><p id="subject">%s</p>`, html.EscapeString(subject))
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv, func() map[string]string {
		mu.Lock()
		defer mu.Unlock()
		return got
	}
}

func TestFormSubmit(t *testing.T) {
	t.Parallel()
	srv, received := formServer(t)
	b := New(t)
	if resp := b.Navigate(srv.URL + "/"); resp.Status != 200 {
		t.Fatalf("GET /: status %d", resp.Status)
	}
	const subject = `Printer "on fire" — ünïcødé <b>`
	b.Fill(Name("subject"), subject)
	b.Fill(Name("body"), "line 1\nline 2")
	b.Fill(Name("prio"), "high")
	b.Fill(Name(`say"hi`), "hello")
	b.Click("#preview") // no navigation: the page's script answers
	if got, want := b.Text("#out"), "preview (1 input event): "+subject; got != want {
		t.Errorf("#out = %q, want %q", got, want)
	}
	resp := b.ClickAndWait("#send")
	if resp.Status != 200 || !strings.HasSuffix(resp.URL, "/tickets/1") {
		t.Errorf("after submit: status %d url %s, want 200 …/tickets/1", resp.Status, resp.URL)
	}
	if loc := b.Location(); loc != srv.URL+"/tickets/1" {
		t.Errorf("location %s", loc)
	}
	if h1 := b.Text("h1"); h1 != "Ticket created" {
		t.Errorf("h1 = %q", h1)
	}
	if s := b.Text("#subject"); s != subject {
		t.Errorf("#subject = %q, want %q", s, subject)
	}
	want := map[string]string{"subject": subject, "body": "line 1\r\nline 2", "prio": "high", `say"hi`: "hello"}
	got := received()
	for k, v := range want {
		if got[k] != v {
			t.Errorf("server got %s=%q, want %q", k, got[k], v)
		}
	}
	b.AssertNoConsoleErrors()
	var logged bool
	for _, m := range b.Messages() {
		if m.Kind == "console" && m.Level == "log" && m.Text == "form ready 42" {
			logged = true
		}
	}
	if !logged {
		t.Errorf("console.log not recorded: %v", b.Messages())
	}
}

const errorPage = `<!doctype html><html><body><p>broken</p>
<script src="/missing.js"></script>
<script>console.error("bad thing", 3); console.warn("just a warning");</script>
<script>console.assert(1 === 2, "math is broken");</script>
<script>Promise.reject(new Error("nobody catches me"));</script>
<script>throw new TypeError("boom");</script>
</body></html>`

func TestConsoleErrors(t *testing.T) {
	t.Parallel()
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, errorPage) })
	mux.HandleFunc("GET /clean", func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "<p>ok</p>") })
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)

	f := &fakeTB{TB: t}
	b := New(f)
	b.Navigate(srv.URL + "/clean")
	b.AssertNoConsoleErrors()
	if f.errored {
		t.Fatalf("clean page reported: %s", f.text())
	}

	b.Navigate(srv.URL + "/")
	errs := b.ConsoleErrors()
	var all []string
	for _, m := range errs {
		all = append(all, m.String())
	}
	joined := strings.Join(all, "\n")
	for _, want := range []string{
		"exception error: Uncaught TypeError: boom",
		"exception error: Uncaught (in promise) Error: nobody catches me",
		"console error: bad thing 3",
		"console assert: math is broken",
		"log error: Failed to load resource: the server responded with a status of 404",
	} {
		if !strings.Contains(joined, want) {
			t.Errorf("console errors lack %q; got:\n%s", want, joined)
		}
	}
	if strings.Contains(joined, "just a warning") {
		t.Errorf("a warning counted as an error:\n%s", joined)
	}
	for _, m := range errs {
		if m.Kind == "exception" && !strings.HasPrefix(m.URL, srv.URL) {
			t.Errorf("exception without the page's URL: %+v", m)
		}
	}

	b.AssertNoConsoleErrors()
	if !f.errored || !strings.Contains(f.text(), "console error(s)") || !strings.Contains(f.text(), "Uncaught TypeError: boom") {
		t.Errorf("AssertNoConsoleErrors did not fail the test: errored=%v %q", f.errored, f.text())
	}
}

// A page whose server sends half of it and then never finishes.
func hangingServer(t *testing.T) *httptest.Server {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, "<!doctype html><html><body><p>loading")
		w.(http.Flusher).Flush()
		select {
		case <-r.Context().Done():
		case <-release:
		}
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(release) }) // runs before srv.Close
	return srv
}

func TestDeadline(t *testing.T) {
	t.Parallel()
	srv := hangingServer(t)
	const deadline = 3 * time.Second
	f := &fakeTB{TB: t}
	var b *Browser
	var start time.Time
	runFake(f, func(tb testing.TB) {
		b = New(tb, WithTimeout(deadline))
		start = time.Now()
		b.Navigate(srv.URL) // the step timeout (15 s) is longer than the deadline
	})
	elapsed := time.Since(start)
	if b == nil {
		t.Fatalf("the browser did not start: %s", f.text())
	}
	if !f.failed {
		t.Fatal("navigating to a page that never loads did not fail")
	}
	if msg := f.text(); !strings.Contains(msg, "hard deadline of 3s") || !strings.Contains(msg, srv.URL) {
		t.Errorf("message %q", msg)
	}
	if elapsed > deadline+5*time.Second {
		t.Errorf("failed after %v, deadline %v", elapsed, deadline)
	}
	// The deadline ends the browser, also for direct chromedp calls.
	if _, err := chromedp.Run(b.Ctx, chromedp.Title()); err == nil {
		t.Error("the browser still answers after its deadline")
	}
}

func TestStepTimeout(t *testing.T) {
	t.Parallel()
	srv := hangingServer(t)
	f := &fakeTB{TB: t}
	b := New(f, WithStepTimeout(time.Second))
	start := time.Now()
	runFake(f, func(testing.TB) { b.Navigate(srv.URL) })
	if elapsed := time.Since(start); !f.failed || elapsed > 6*time.Second {
		t.Fatalf("Navigate of a hanging page: failed=%v after %v", f.failed, elapsed)
	}
	if msg := f.text(); !strings.Contains(msg, "step timeout of 1s") {
		t.Errorf("message %q", msg)
	}
	f.failed, f.logs = false, nil
	runFake(f, func(testing.TB) { b.Text("#no-such-element") })
	if !f.failed || !strings.Contains(f.text(), "#no-such-element") {
		t.Errorf("Text of a missing element: failed=%v %q", f.failed, f.text())
	}
	// A step timeout leaves the browser usable.
	if _, err := chromedp.Run(b.Ctx, chromedp.Navigate("data:text/html,<h1>still here</h1>")); err != nil {
		t.Fatalf("browser unusable after a step timeout: %v", err)
	}
	if got := b.Text("h1"); got != "still here" {
		t.Errorf("h1 = %q", got)
	}
}

// Not parallel: it sets MAILSYNC_SCREENSHOTS.
func TestScreenshot(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, `<!doctype html><html><body style="margin:0;background:#ff0000">
<div style="height:2000px">tall</div><div style="height:100px;background:#0000ff"></div></body></html>`)
	}))
	t.Cleanup(srv.Close)
	b := New(t, WithWindowSize(800, 600))
	b.Navigate(srv.URL)

	path := filepath.Join(t.TempDir(), "sub", "page.png")
	b.Screenshot(path)
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(data, []byte("\x89PNG\r\n\x1a\n")) {
		t.Fatalf("not a PNG: % x", data[:min(8, len(data))])
	}
	img, err := png.Decode(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	bounds := img.Bounds()
	// Full page: 2100 CSS pixels tall although the window is 600 high.
	if bounds.Dx() != 800 || bounds.Dy() < 2100 {
		t.Errorf("screenshot %v, want 800 wide and at least 2100 high", bounds)
	}
	isRGB := func(x, y int, r8, g8, b8 uint32) bool {
		r, g, bl, _ := img.At(x, y).RGBA()
		return r>>8 == r8 && g>>8 == g8 && bl>>8 == b8
	}
	if !isRGB(400, 300, 0xff, 0, 0) || !isRGB(400, 2050, 0, 0, 0xff) {
		r1, g1, b1, _ := img.At(400, 300).RGBA()
		r2, g2, b2, _ := img.At(400, 2050).RGBA()
		t.Errorf("pixels: (400,300)=%d,%d,%d want red; (400,2050)=%d,%d,%d want blue", r1>>8, g1>>8, b1>>8, r2>>8, g2>>8, b2>>8)
	}

	// SaveScreenshot writes only when asked to.
	t.Setenv(EnvScreenshots, "")
	if p := b.SaveScreenshot("x"); p != "" {
		t.Errorf("SaveScreenshot without %s wrote %s", EnvScreenshots, p)
	}
	dir := t.TempDir()
	t.Setenv(EnvScreenshots, dir)
	if p := b.SaveScreenshot("tall-page"); p != filepath.Join(dir, "tall-page.png") {
		t.Errorf("SaveScreenshot path %q", p)
	}
	if data, err := os.ReadFile(filepath.Join(dir, "tall-page.png")); err != nil || !bytes.HasPrefix(data, []byte("\x89PNG")) {
		t.Errorf("saved screenshot: %v", err)
	}
}

// After the test, the browser and its processes are gone and the profile
// directory is removed.
func TestCleanup(t *testing.T) {
	var pid int
	var profile string
	t.Run("browser", func(t *testing.T) {
		b := New(t)
		pid = chromedp.FromContext(b.Ctx).Browser.Process().Pid
		cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if err != nil {
			t.Fatal(err)
		}
		for _, arg := range strings.Split(string(cmdline), "\x00") {
			if v, ok := strings.CutPrefix(arg, "--user-data-dir="); ok {
				profile = v
			}
			if os.Geteuid() == 0 && arg == "--no-sandbox" {
				t.Log("runs with --no-sandbox as root")
			}
		}
		if profile == "" {
			t.Fatalf("no --user-data-dir in %q", cmdline)
		}
		if _, err := os.Stat(profile); err != nil {
			t.Fatal(err)
		}
	})
	if pid == 0 {
		t.Fatal("no browser")
	}
	if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
		t.Errorf("browser pid %d still exists after the test (kill 0: %v)", pid, err)
	}
	if _, err := os.Stat(profile); !os.IsNotExist(err) {
		t.Errorf("profile %s not removed: %v", profile, err)
	}
}
