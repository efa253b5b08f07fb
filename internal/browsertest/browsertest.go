// Package browsertest drives a real headless Chromium for tests of web pages
// (the examples' web backends), through github.com/chromedp/chromedp.
//
// Each call of New starts a private browser: headless, GPU off, sandbox off
// when the tests run as root (Chromium refuses to start as root with its
// sandbox), a temporary profile (user-data-dir) that chromedp creates and
// removes. The browser lives until the test's Cleanup, and never longer
// than a hard deadline (60 s by default, WithTimeout): when the deadline
// passes, the browser is killed and every pending action fails, so a page
// that hangs fails the test instead of hanging CI.
//
//	func TestForm(t *testing.T) {
//		srv := httptest.NewServer(handler)
//		defer srv.Close()
//		b := browsertest.New(t)
//		b.Navigate(srv.URL + "/new")
//		b.Fill(browsertest.Name("subject"), "Printer on fire")
//		b.ClickAndWait("button[type=submit]")
//		if got := b.Text("h1"); got != "Ticket created" {
//			t.Errorf("h1 = %q", got)
//		}
//		b.AssertNoConsoleErrors()
//		b.SaveScreenshot("form-submitted")
//	}
//
// The helpers (Navigate, Fill, Click, ClickAndWait, Text, Screenshot …)
// fail the test with t.Fatal on error, so they must be called from the
// test's goroutine. For anything else use chromedp directly with
// Browser.Ctx:
//
//	v, err := chromedp.Run(b.Ctx, chromedp.Value(chromedp.CSS("#n")))
//
// Actions on Ctx have the whole deadline. The helpers that wait for an
// element also stop after the step timeout (15 s, WithStepTimeout), so a
// wrong selector fails in seconds with the selector in the message.
//
// # Console errors
//
// The browser's console is recorded from the first page on: console.* calls,
// uncaught exceptions and unhandled promise rejections, and the browser's own
// log (for example "Failed to load resource: … 404"). Messages returns all
// of them; ConsoleErrors the errors (console.error and failed
// console.assert calls, uncaught exceptions, error entries of the browser
// log); AssertNoConsoleErrors fails the test when there is one.
//
// # Environment
//
//   - MAILSYNC_CHROMIUM: the browser to run (a path or a name on PATH).
//     Default: the first of chromium, chromium-browser, google-chrome,
//     google-chrome-stable found on PATH.
//   - CI=true: a missing browser fails the test instead of skipping it.
//     scripts/install-test-deps.sh installs Debian's chromium.
//   - MAILSYNC_SCREENSHOTS=DIR: SaveScreenshot writes DIR/NAME.png; unset, it
//     does nothing. Saving the screenshots of a package's browser tests is
//     thus: MAILSYNC_SCREENSHOTS=$PWD/screenshots go test ./path/to/pkg/
//
// When a test fails, the tail of the browser's own output (stderr) is logged.
package browsertest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
)

// EnvChromium names the environment variable that chooses the browser.
const EnvChromium = "MAILSYNC_CHROMIUM"

// EnvScreenshots names the environment variable of SaveScreenshot's
// directory.
const EnvScreenshots = "MAILSYNC_SCREENSHOTS"

// DefaultTimeout is the hard deadline of a browser started by New.
const DefaultTimeout = 60 * time.Second

// DefaultStepTimeout bounds each helper that waits for an element.
const DefaultStepTimeout = 15 * time.Second

// candidates are the browser names tried on PATH, in order.
var candidates = []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable"}

// Find returns the path of the browser New would start: $MAILSYNC_CHROMIUM
// when set, else the first candidate found on PATH.
func Find() (string, error) {
	if v := os.Getenv(EnvChromium); v != "" {
		p, err := exec.LookPath(v)
		if err != nil {
			return "", fmt.Errorf("%s=%s: %w", EnvChromium, v, err)
		}
		return p, nil
	}
	for _, name := range candidates {
		if p, err := exec.LookPath(name); err == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("no browser found on PATH (tried %s; set %s to choose one)", strings.Join(candidates, ", "), EnvChromium)
}

// Available reports why no browser can be started here (nil when one is
// found).
func Available() error {
	_, err := Find()
	return err
}

func skipOrFail(t testing.TB, err error) {
	t.Helper()
	msg := fmt.Sprintf("browsertest: %v; install Debian's chromium (scripts/install-test-deps.sh) to run this test", err)
	if os.Getenv("CI") == "true" {
		t.Fatal(msg + " (CI=true: the browser tests must run)")
	}
	t.Skip(msg)
}

// Option changes how New starts the browser.
type Option func(*config)

type config struct {
	timeout, step time.Duration
	width, height int
}

// WithTimeout sets the hard deadline of the browser, counted from New
// (default DefaultTimeout). When it passes the browser is killed and every
// action fails with an error wrapping context.DeadlineExceeded.
func WithTimeout(d time.Duration) Option { return func(c *config) { c.timeout = d } }

// WithStepTimeout sets how long each helper waits for its element or page
// (default DefaultStepTimeout), within the hard deadline.
func WithStepTimeout(d time.Duration) Option { return func(c *config) { c.step = d } }

// WithWindowSize sets the browser window's size in CSS pixels (default
// 1280×800); full-page screenshots are this wide.
func WithWindowSize(width, height int) Option {
	return func(c *config) { c.width, c.height = width, height }
}

// Browser is a running headless browser with one tab, owned by a test.
type Browser struct {
	// Ctx is the chromedp context of the tab, for chromedp.Run and
	// chromedp.Do. It ends at the hard deadline and at the test's Cleanup.
	Ctx context.Context
	// Path is the browser binary.
	Path string
	// Started is how long the browser took to start and open its tab.
	Started time.Duration

	t        testing.TB
	timeout  time.Duration
	step     time.Duration
	deadline time.Time
	out      *tailBuffer

	mu   sync.Mutex
	msgs []Message
}

// New starts a headless browser for the test and returns it; it is stopped
// (killed, its profile removed) at t.Cleanup. Without a browser New skips
// the test, or fails it under CI=true. It fails the test if the browser
// does not start.
func New(t testing.TB, opts ...Option) *Browser {
	t.Helper()
	cfg := config{timeout: DefaultTimeout, step: DefaultStepTimeout, width: 1280, height: 800}
	for _, o := range opts {
		o(&cfg)
	}
	path, err := Find()
	if err != nil {
		skipOrFail(t, err)
		return nil // t.Skip and t.Fatal do not return; a fake TB may
	}
	b := &Browser{Path: path, t: t, timeout: cfg.timeout, step: cfg.step, out: &tailBuffer{max: 16 << 10}}

	allocOpts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		chromedp.Headless,
		chromedp.DisableGPU,
		chromedp.WindowSize(cfg.width, cfg.height),
		chromedp.CombinedOutput(b.out),
	)
	if os.Geteuid() == 0 {
		allocOpts = append(allocOpts, chromedp.NoSandbox)
	}
	b.deadline = time.Now().Add(cfg.timeout)
	deadlineCtx, cancelDeadline := context.WithDeadline(context.Background(), b.deadline)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(deadlineCtx, allocOpts...)
	ctx, cancelCtx := chromedp.NewContext(allocCtx, chromedp.WithListener(b.record))
	b.Ctx = ctx
	t.Cleanup(func() {
		cancelCtx()   // closes the tab and waits for the browser to stop
		cancelAlloc() // waits until its profile directory is removed
		cancelDeadline()
		if t.Failed() {
			if tail := b.out.tail(); tail != "" {
				t.Logf("browsertest: tail of %s's output:\n%s", filepath.Base(path), tail)
			}
		}
	})

	start := time.Now()
	// The first Run starts the browser and opens the tab; the browser lives
	// as long as the context of this call, which is the deadline's.
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("browsertest: starting %s: %v", path, b.explain(err))
		return nil
	}
	b.Started = time.Since(start)
	t.Logf("browsertest: %s started in %v", filepath.Base(path), b.Started.Round(time.Millisecond))
	return b
}

// explain adds a hint to an error caused by a timeout.
func (b *Browser) explain(err error) error {
	switch {
	case !errors.Is(err, context.DeadlineExceeded):
		return err
	case !time.Now().Before(b.deadline):
		return fmt.Errorf("%w (the browser's hard deadline of %v passed; see browsertest.WithTimeout)", err, b.timeout)
	default:
		return fmt.Errorf("%w (step timeout of %v; see browsertest.WithStepTimeout)", err, b.step)
	}
}

// stepCtx is Ctx bounded by the step timeout.
func (b *Browser) stepCtx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(b.Ctx, b.step)
}

func (b *Browser) fatalf(format string, args ...any) {
	b.t.Helper()
	b.t.Fatalf("browsertest: "+format, args...)
}

// Navigate loads url, waits for its load event and returns the HTTP
// response of the document (after redirects). It fails the test when the
// page does not load within the step timeout.
func (b *Browser) Navigate(urlstr string) *network.Response {
	b.t.Helper()
	ctx, cancel := b.stepCtx()
	defer cancel()
	resp, err := chromedp.Run(ctx, chromedp.NavigateResponse(urlstr))
	if err != nil {
		b.fatalf("navigate to %s: %v", urlstr, b.explain(err))
	}
	return resp
}

// Name returns a CSS selector for the elements whose name attribute is
// name, e.g. Name("subject") is [name="subject"].
func Name(name string) string {
	return `[name="` + cssEscape(name) + `"]`
}

// cssEscape escapes s for a double-quoted CSS string.
func cssEscape(s string) string {
	var sb strings.Builder
	for _, r := range s {
		switch {
		case r == '"' || r == '\\':
			sb.WriteByte('\\')
			sb.WriteRune(r)
		case r < 0x20 || r == 0x7f:
			fmt.Fprintf(&sb, "\\%x ", r)
		default:
			sb.WriteRune(r)
		}
	}
	return sb.String()
}

// fillJS sets the value of the first element matching a selector and fires
// the input and change events a user's typing would.
const fillJS = `(function (sel, v) {
	const el = document.querySelector(sel);
	if (!el) return false;
	el.focus();
	el.value = v;
	el.dispatchEvent(new Event("input", {bubbles: true}));
	el.dispatchEvent(new Event("change", {bubbles: true}));
	return true;
})(%s, %s)`

// Fill sets the value of the first form field (input, textarea, select)
// matching the CSS selector, waiting for it to appear, and fires its input
// and change events. Use Name for a field by name: b.Fill(Name("to"), "a@b").
func (b *Browser) Fill(selector, value string) {
	b.t.Helper()
	ctx, cancel := b.stepCtx()
	defer cancel()
	if err := chromedp.Do(ctx, chromedp.WaitReady(chromedp.CSS(selector))); err != nil {
		b.fatalf("fill %s: waiting for the field: %v", selector, b.explain(err))
	}
	sel, _ := json.Marshal(selector)
	val, _ := json.Marshal(value)
	ok, err := chromedp.Run(ctx, chromedp.Evaluate[bool](fmt.Sprintf(fillJS, sel, val)))
	if err != nil {
		b.fatalf("fill %s: %v", selector, b.explain(err))
	}
	if !ok {
		b.fatalf("fill %s: no such field", selector)
	}
}

// Click clicks the first visible element matching the CSS selector, waiting
// for it to appear. It does not wait for a navigation; see ClickAndWait.
func (b *Browser) Click(selector string) {
	b.t.Helper()
	ctx, cancel := b.stepCtx()
	defer cancel()
	if err := chromedp.Do(ctx, chromedp.Click(chromedp.CSS(selector))); err != nil {
		b.fatalf("click %s: %v", selector, b.explain(err))
	}
}

// ClickAndWait clicks the first visible element matching the CSS selector
// (a submit button, a link) and waits until the page it leads to has
// loaded. It returns the HTTP response of the new document, after
// redirects: a form POST answered with 303 returns the response of the
// GET that follows.
func (b *Browser) ClickAndWait(selector string) *network.Response {
	b.t.Helper()
	ctx, cancel := b.stepCtx()
	defer cancel()
	resp, err := chromedp.RunResponse(ctx, chromedp.Click(chromedp.CSS(selector)))
	if err != nil {
		b.fatalf("click %s and wait for the page: %v", selector, b.explain(err))
	}
	return resp
}

// Text returns the visible text (innerText) of the first element matching
// the CSS selector, waiting for it to appear.
func (b *Browser) Text(selector string) string {
	b.t.Helper()
	ctx, cancel := b.stepCtx()
	defer cancel()
	s, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(selector)))
	if err != nil {
		b.fatalf("text of %s: %v", selector, b.explain(err))
	}
	return s
}

// Location returns the URL of the current page.
func (b *Browser) Location() string {
	b.t.Helper()
	ctx, cancel := b.stepCtx()
	defer cancel()
	s, err := chromedp.Run(ctx, chromedp.Location())
	if err != nil {
		b.fatalf("location: %v", b.explain(err))
	}
	return s
}

// ScreenshotPNG returns a PNG of the whole page (beyond the viewport).
func (b *Browser) ScreenshotPNG() []byte {
	b.t.Helper()
	ctx, cancel := b.stepCtx()
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100)) // 100 = PNG
	if err != nil {
		b.fatalf("screenshot: %v", b.explain(err))
	}
	return png
}

// Screenshot writes a PNG of the whole page to path, creating its
// directory.
func (b *Browser) Screenshot(path string) {
	b.t.Helper()
	png := b.ScreenshotPNG()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		b.fatalf("screenshot: %v", err)
	}
	if err := os.WriteFile(path, png, 0o644); err != nil {
		b.fatalf("screenshot: %v", err)
	}
}

// SaveScreenshot writes a full-page PNG to $MAILSYNC_SCREENSHOTS/name.png
// and returns its path; without MAILSYNC_SCREENSHOTS it does nothing and
// returns "". Tests call it at the states worth looking at, so that
// MAILSYNC_SCREENSHOTS=DIR go test … collects them.
func (b *Browser) SaveScreenshot(name string) string {
	b.t.Helper()
	dir := os.Getenv(EnvScreenshots)
	if dir == "" {
		return ""
	}
	path := filepath.Join(dir, filepath.Base(name)+".png")
	b.Screenshot(path)
	b.t.Logf("browsertest: screenshot %s", path)
	return path
}

// Message is one entry of the page's console.
type Message struct {
	// Kind is "console" (a console.* call), "exception" (an uncaught
	// exception or unhandled rejection) or "log" (the browser's own log,
	// e.g. a failed resource load).
	Kind string
	// Level is the console method ("log", "error", "assert", …) for
	// "console", "error" for "exception", and the entry's level
	// ("verbose", "info", "warning", "error") for "log".
	Level string
	// Text is the message, as the DevTools console shows it (roughly).
	Text string
	// URL and Line locate the message's source when known (Line from 0).
	URL  string
	Line int64
	// Source is the part of the browser that wrote a "log" message, e.g.
	// "network", "javascript", "security".
	Source string
}

// IsError reports whether the message is an error: console.error, a failed
// console.assert, an uncaught exception, or an error of the browser's log.
// The one exception is the failed load of /favicon.ico: the browser asks
// every server for it on its own, whatever the page says, and a server
// without one is not a broken page.
func (m Message) IsError() bool {
	if m.Kind == "log" && m.Source == "network" && isFavicon(m.URL) {
		return false
	}
	return m.Kind == "exception" || m.Level == "error" || m.Kind == "console" && m.Level == "assert"
}

func isFavicon(u string) bool {
	p, err := url.Parse(u)
	return err == nil && p.Path == "/favicon.ico"
}

// String formats the message for a test log.
func (m Message) String() string {
	s := m.Kind + " " + m.Level + ": " + m.Text
	if m.URL != "" {
		s += " (" + m.URL + ":" + strconv.FormatInt(m.Line+1, 10) + ")"
	}
	return s
}

// record is the chromedp listener; it runs on the tab's read loop, in the
// order of the browser's messages, and must return fast.
func (b *Browser) record(ev any) {
	var m Message
	switch ev := ev.(type) {
	case *runtime.EventConsoleAPICalled:
		m = Message{Kind: "console", Level: string(ev.Type), Text: argsText(ev.Args)}
		if ev.Type == runtime.ConsoleAPICalledTypeAssert && m.Text == "" {
			m.Text = "Assertion failed"
		}
		if st := ev.StackTrace; st != nil && len(st.CallFrames) > 0 {
			m.URL, m.Line = st.CallFrames[0].URL, st.CallFrames[0].LineNumber
		}
	case *runtime.EventExceptionThrown:
		d := ev.ExceptionDetails
		if d == nil {
			return
		}
		m = Message{Kind: "exception", Level: "error", Text: d.Text, URL: d.URL, Line: d.LineNumber}
		if d.Exception != nil {
			// "Uncaught" + the error's description without its stack.
			desc, _, _ := strings.Cut(valueText(d.Exception), "\n    at ")
			m.Text = strings.TrimSpace(d.Text + " " + desc)
		}
	case *log.EventEntryAdded:
		e := ev.Entry
		if e == nil {
			return
		}
		m = Message{Kind: "log", Level: string(e.Level), Text: e.Text, URL: e.URL, Line: e.LineNumber, Source: string(e.Source)}
	default:
		return
	}
	b.mu.Lock()
	b.msgs = append(b.msgs, m)
	b.mu.Unlock()
}

// argsText joins the arguments of a console call.
func argsText(args []*runtime.RemoteObject) string {
	parts := make([]string, 0, len(args))
	for _, a := range args {
		parts = append(parts, valueText(a))
	}
	return strings.Join(parts, " ")
}

// valueText renders one value: a string as is, else its description or
// JSON value.
func valueText(o *runtime.RemoteObject) string {
	if o == nil {
		return ""
	}
	if o.Type == runtime.RemoteObjectTypeString {
		var s string
		if json.Unmarshal([]byte(o.Value), &s) == nil {
			return s
		}
	}
	switch {
	case o.Description != "":
		return o.Description
	case len(o.Value) > 0:
		return string(o.Value)
	case o.UnserializableValue != "":
		return string(o.UnserializableValue)
	}
	return string(o.Type)
}

// sync makes a round trip to the page, so that the console events the
// browser sent before it have been recorded.
func (b *Browser) sync() {
	ctx, cancel := b.stepCtx()
	defer cancel()
	_ = chromedp.Do(ctx, chromedp.Evaluate[chromedp.Void](`0`))
}

// Messages returns every console message recorded so far, in order.
func (b *Browser) Messages() []Message {
	b.sync()
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]Message(nil), b.msgs...)
}

// ConsoleErrors returns the recorded messages that are errors (see
// Message.IsError), in order.
func (b *Browser) ConsoleErrors() []Message {
	var errs []Message
	for _, m := range b.Messages() {
		if m.IsError() {
			errs = append(errs, m)
		}
	}
	return errs
}

// AssertNoConsoleErrors fails the test (t.Error: the test goes on) when the
// pages have logged an error or thrown an uncaught exception so far, listing
// them.
func (b *Browser) AssertNoConsoleErrors() {
	b.t.Helper()
	errs := b.ConsoleErrors()
	if len(errs) == 0 {
		return
	}
	var sb strings.Builder
	for _, m := range errs {
		sb.WriteString("\n\t" + m.String())
	}
	b.t.Errorf("browsertest: %d console error(s):%s", len(errs), sb.String())
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	buf []byte
}

func (w *tailBuffer) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf = append(w.buf, p...)
	if over := len(w.buf) - w.max; over > 0 {
		w.buf = append(w.buf[:0], w.buf[over:]...)
	}
	return len(p), nil
}

func (w *tailBuffer) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	if i := bytes.IndexByte(w.buf, '\n'); len(w.buf) >= w.max && i >= 0 {
		return string(w.buf[i+1:]) // drop the partial first line
	}
	return string(w.buf)
}

// noise are parts of the lines Chromium always prints here: it finds no
// D-Bus (no desktop session), and it logs the closed DevTools pipe when it
// is killed at the end of a test.
var noise = []string{"ERROR:dbus/", "Connection terminated while reading from pipe"}

// tail returns the kept output without the noise lines.
func (w *tailBuffer) tail() string {
	var keep []string
	for _, line := range strings.Split(w.String(), "\n") {
		if strings.TrimSpace(line) == "" || slices.ContainsFunc(noise, func(n string) bool { return strings.Contains(line, n) }) {
			continue
		}
		keep = append(keep, line)
	}
	return strings.Join(keep, "\n")
}
