package main

import (
	"bytes"
	"image"
	"image/color"
	"image/draw"
	"image/png"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/mailsync/mailsync/internal/browsertest"
)

// TestBrowser drives the admin pages in a real headless Chromium, as an
// admin does: the connection form with a validation error at its field,
// the enable switch, "test connection" and a sync with the password typed
// in the dialog, the tickets with a reply threaded onto its ticket and an
// inline image, a replay from the quarantine. Afterwards the password is
// in no table, log line or served response. The browser has a hard
// deadline (browsertest.WithTimeout); under CI=true a missing Chromium
// fails the test.
//
// The screenshots of the main pages are saved by the same test (the
// committed ones in screenshots/ were made so):
//
//	MAILSYNC_SCREENSHOTS=$PWD/examples/helpdesk/screenshots go test -count=1 -run TestBrowser ./examples/helpdesk/
func TestBrowser(t *testing.T) {
	h := newHarness(t, "")
	b := browsertest.New(t, browsertest.WithTimeout(3*time.Minute), browsertest.WithWindowSize(1100, 800))
	base := h.srv.URL
	password := h.app.SeedPassword

	// The form: a port in the server name and no ticket type.
	b.Navigate(base + "/connections/new?lang=pt")
	b.Fill("#name", "Vendas")
	b.Fill("#user", "vendas@empresa.pt")
	b.Fill("#server", "mail.empresa.pt:995")
	b.Fill("#port", "995")
	b.Fill("#protocol", "pop3")
	b.ClickAndWait("#save")
	if got := b.Text("#err-server"); !strings.Contains(got, "não pode incluir a porta") {
		t.Errorf("error at the server field: %q", got)
	}
	if !eval(t, b, `document.getElementById("err-server").closest(".field").querySelector("#server") !== null`) {
		t.Error("the server error is not next to its field")
	}
	if got := b.Text("#err-connected_with"); !strings.Contains(got, "tipo de ticket") {
		t.Errorf("error at connected with: %q", got)
	}
	shot(t, b, "connection-form-error")
	b.Fill("#server", "mail.empresa.pt")
	b.Click(`input[name="connected_with"][value="request"]`)
	b.ClickAndWait("#save")
	if !strings.HasSuffix(b.Location(), "/connections?flash=Liga%C3%A7%C3%A3o+guardada.") {
		t.Errorf("after save: %s", b.Location())
	}
	if got := b.Text("#connections"); !strings.Contains(got, "mail.empresa.pt:995") {
		t.Errorf("the list lacks the new connection: %q", got)
	}

	// The enable switch: the sections are editable only when enabled.
	b.Navigate(base + "/connections/Vendas/edit")
	b.Click("#enabled")
	if !eval(t, b, `document.getElementById("sections").disabled`) {
		t.Error("the sections stay editable when the connection is disabled")
	}
	b.Click("#enabled")
	// Choosing Microsoft Graph shows its block, with the seed's fields.
	b.Click(`input[name="auth"][value="microsoft_graph"]`)
	if !eval(t, b, `!document.getElementById("oauth-microsoft_graph").hidden && document.getElementById("oauth-gmail_api").hidden`) {
		t.Error("the OAuth blocks do not follow the choice")
	}
	if got := b.Text("#oauth-microsoft_graph"); !strings.Contains(got, "ID do Diretório (tenant)") || !strings.Contains(got, "URL do Endpoint de Token") {
		t.Errorf("Graph block: %q", got)
	}
	shot(t, b, "connection-form-oauth")

	// Test the connection, with the password typed in the dialog.
	b.Navigate(base + "/connections")
	b.Click(`a.sync[data-name="Suporte"]`)
	if !eval(t, b, `document.getElementById("sync-dialog").open`) {
		t.Fatal("the sync dialog did not open")
	}
	b.Fill("#sync-password", password)
	shot(t, b, "sync-dialog")
	b.ClickAndWait("#test-submit")
	if got := b.Text("#check-state"); got != "Ligação bem-sucedida" {
		t.Errorf("test connection: %q / %q", got, b.Text("main"))
	}

	// Sync with the typed password; the page shows progress, then the report.
	b.Navigate(base + "/connections")
	b.Click(`a.sync[data-name="Suporte"]`)
	b.Fill("#sync-password", password)
	b.ClickAndWait("#sync-submit")
	if err := chromedp.Do(b.Ctx, chromedp.WaitVisible(chromedp.CSS("#report"))); err != nil {
		t.Fatalf("no report: %v", err)
	}
	for sel, want := range map[string]string{"#report-created": "4", "#report-followups": "1", "#report-quarantined": "1", "#report-failed": "0"} {
		if got := b.Text(sel); got != want {
			t.Errorf("%s = %q, want %s", sel, got, want)
		}
	}
	shot(t, b, "sync-report")
	if eval(t, b, `document.getElementById("sync-password") !== null`) {
		t.Error("the report page carries a password field")
	}

	// The connections list shows the sync's health.
	b.Navigate(base + "/connections")
	if got := b.Text(`tr[data-connection="Suporte"] .health`); !strings.Contains(got, "OK") || !strings.Contains(got, "5 msg") {
		t.Errorf("health after the sync: %q", got)
	}
	shot(t, b, "connections")

	// The tickets; the reply is a follow-up of its ticket.
	b.Navigate(base + "/tickets")
	shot(t, b, "tickets")
	var href string
	var err error
	if href, err = chromedp.Run(b.Ctx, chromedp.Evaluate[string](`[...document.querySelectorAll("a.ticket-title")].find(a => a.textContent.startsWith("Impressora")).getAttribute("href")`)); err != nil {
		t.Fatal(err)
	}
	b.Navigate(base + href)
	if got := b.Text("#followups"); !strings.Contains(got, "Seguimentos (1)") || !strings.Contains(got, "Entretanto reiniciei a impressora") {
		t.Errorf("follow-ups: %q", got)
	}
	shot(t, b, "ticket-followup")
	b.Navigate(base + "/tickets")
	if href, err = chromedp.Run(b.Ctx, chromedp.Evaluate[string](`[...document.querySelectorAll("a.ticket-title")].find(a => a.textContent.startsWith("Erro ao aceder")).getAttribute("href")`)); err != nil {
		t.Fatal(err)
	}
	b.Navigate(base + href)
	if !eval(t, b, `(() => { const i = document.querySelector(".mail-html img"); return !!i && i.complete && i.naturalWidth > 0 && i.getAttribute("src").startsWith("/attachments/"); })()`) {
		t.Error("the inline image is not shown")
	}
	shot(t, b, "ticket-inline-image")

	// Replay the quarantined mail.
	b.Navigate(base + "/quarantine")
	if got := b.Text("#quarantine"); !strings.Contains(got, "MIME nesting deeper than 8") {
		t.Errorf("quarantine: %q", got)
	}
	b.ClickAndWait("button.replay")
	if got := b.Text(".replayed"); !strings.Contains(got, "created") {
		t.Errorf("replay: %q", got)
	}
	shot(t, b, "quarantine-replayed")
	b.Navigate(base + "/mappings/request")
	shot(t, b, "mapping")
	b.Navigate(base + "/tickets?lang=en")
	if got := b.Text("header nav"); !strings.Contains(got, "E-mail connections") {
		t.Errorf("English nav: %q", got)
	}
	b.Navigate(base + "/tickets?lang=pt")

	// The one error the browser logs is the expected 422 of the invalid form.
	for _, m := range b.ConsoleErrors() {
		if !strings.Contains(m.Text, "status of 422") || !strings.Contains(m.URL+m.Text, "/connections/save") {
			t.Errorf("console error: %s", m)
		}
	}
	h.assertNoSecret(password)
}

// shot saves a screenshot of the page as $MAILSYNC_SCREENSHOTS/name.png
// (nothing without it), reduced to a 256-colour palette to keep the
// committed files small.
func shot(t *testing.T, b *browsertest.Browser, name string) {
	t.Helper()
	dir := os.Getenv(browsertest.EnvScreenshots)
	if dir == "" {
		return
	}
	src, err := png.Decode(bytes.NewReader(b.ScreenshotPNG()))
	if err != nil {
		t.Fatal(err)
	}
	pal := image.NewPaletted(src.Bounds(), topColors(src, 256))
	draw.Draw(pal, pal.Rect, src, src.Bounds().Min, draw.Src)
	var buf bytes.Buffer
	if err := (&png.Encoder{CompressionLevel: png.BestCompression}).Encode(&buf, pal); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, name+".png")
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot %s (%d KB)", path, buf.Len()/1024)
}

// topColors returns the n most frequent colours of img: a page is mostly
// flat colours, so they make a palette that keeps it looking as it does.
func topColors(img image.Image, n int) color.Palette {
	count := map[color.RGBA]int{}
	b := img.Bounds()
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			count[color.RGBAModel.Convert(img.At(x, y)).(color.RGBA)]++
		}
	}
	cs := make([]color.RGBA, 0, len(count))
	for c := range count {
		cs = append(cs, c)
	}
	sort.Slice(cs, func(i, j int) bool { return count[cs[i]] > count[cs[j]] })
	var p color.Palette
	for i := 0; i < len(cs) && i < n; i++ {
		p = append(p, cs[i])
	}
	return p
}

// eval evaluates a boolean JavaScript expression in the page.
func eval(t *testing.T, b *browsertest.Browser, expr string) bool {
	t.Helper()
	ok, err := chromedp.Run(b.Ctx, chromedp.Evaluate[bool](expr))
	if err != nil {
		t.Fatalf("evaluate %s: %v", expr, err)
	}
	return ok
}
