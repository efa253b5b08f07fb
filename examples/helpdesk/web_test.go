package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mailsync/mailsync"
	"github.com/mailsync/mailsync/fleet"
	"github.com/mailsync/mailsync/internal/pgtest"
)

// OAuth secrets typed into the form in the tests; none may be stored or
// shown in clear.
const (
	testClientSecret = "cs~Graph-Client-Secret-4711"
	testRefreshToken = "rt.0AX-Refresh-Token-9f8e7d6c"
)

// TestConnectionForm saves the connection form: a validation error from
// Connection.Validate is shown next to its field, a valid form is stored,
// the OAuth secrets are sealed, never rendered back, and kept when the
// admin leaves them empty.
func TestConnectionForm(t *testing.T) {
	h := newHarness(t, "")

	// Invalid: a port in the server name, no ticket type.
	status, _, body := h.post("/connections/save", url.Values{"enabled": {"on"}, "name": {"Vendas"}, "user": {"vendas@empresa.pt"},
		"server": {"mail.empresa.pt:993"}, "port": {"993"}, "protocol": {"imap"}, "auth": {"password"}})
	if status != http.StatusUnprocessableEntity {
		t.Fatalf("invalid form: status %d", status)
	}
	mustContain(t, "invalid form", body,
		`id="err-server">não pode incluir a porta: use o campo Porta</p>`,
		`id="err-connected_with">escolha pelo menos um tipo de ticket</p>`,
		`value="mail.empresa.pt:993"`)
	if strings.Contains(body, `id="err-user"`) {
		t.Error("a valid field is marked invalid")
	}
	// English labels and the library's own message.
	h.get("/connections?lang=en")
	_, _, body = h.post("/connections/save", url.Values{"enabled": {"on"}, "name": {"Vendas"}, "user": {"vendas@empresa.pt"},
		"server": {"mail.empresa.pt"}, "port": {"99999"}, "protocol": {"imap"}, "auth": {"password"}, "connected_with": {"incident"}})
	mustContain(t, "english", body, `id="err-port">99999 is out of range 1-65535</p>`, "Server Name / IP", "Connected with")
	h.get("/connections?lang=pt")

	// OAuth with no protocol is the Graph/Gmail API connector, valid for
	// the library but not built into this example: refused at save.
	status, _, body = h.post("/connections/save", url.Values{"enabled": {"on"}, "name": {"Vendas"}, "user": {"vendas@empresa.pt"},
		"protocol": {""}, "auth": {"gmail_api"}, "gmail_client_id": {"id"}, "gmail_client_secret": {"s"}, "gmail_refresh_token": {"r"},
		"connected_with": {"request"}})
	if status != http.StatusUnprocessableEntity {
		t.Fatalf("OAuth API form: status %d, want 422", status)
	}
	mustContain(t, "OAuth API", body, `id="err-protocol">as APIs Microsoft Graph e Gmail não estão incluídas neste exemplo`)

	// Valid.
	status, final, body := h.post("/connections/save", url.Values{"enabled": {"on"}, "name": {"Vendas"}, "user": {"vendas@empresa.pt"},
		"server": {"mail.empresa.pt"}, "port": {"995"}, "protocol": {"pop3"}, "auth": {"password"}, "connected_with": {"request"}})
	if status != 200 || final != "/connections" {
		t.Fatalf("valid form: %d %s\n%s", status, final, clip(body))
	}
	mustContain(t, "list", body, "Ligação guardada.", "vendas@empresa.pt", "mail.empresa.pt:995")
	// The "new" form never overwrites an existing connection.
	status, _, body = h.post("/connections/save", url.Values{"enabled": {"on"}, "name": {"Suporte"}, "user": {"x@empresa.pt"},
		"server": {"mail.empresa.pt"}, "protocol": {"pop3"}, "auth": {"password"}, "connected_with": {"request"}})
	if status != http.StatusUnprocessableEntity {
		t.Errorf("new connection named like an existing one: %d", status)
	}
	mustContain(t, "duplicate name", body, `id="err-name">já existe uma ligação com este nome</p>`)
	if c, _ := h.app.st.Connection(context.Background(), "Suporte"); c.Conn.User != seedUser {
		t.Errorf("the demo connection was overwritten: %v", c.Conn)
	}
	got, err := h.app.st.ConnectionWithSecrets(context.Background(), "Vendas")
	if err != nil || got.Protocol != mailsync.POP3 || got.Port != 995 || got.ConnectedWith[0] != "request" || got.OAuth != nil {
		t.Fatalf("stored %+v, %v", got, err)
	}

	// An OAuth (Microsoft, IMAP XOAUTH2) connection: missing tenant shown at its field.
	oauthForm := url.Values{"enabled": {"on"}, "name": {"Office"}, "user": {"office@empresa.pt"}, "server": {"outlook.office365.com"},
		"protocol": {"imap"}, "auth": {"microsoft_graph"}, "graph_client_id": {"app-123"}, "graph_client_secret": {testClientSecret},
		"graph_refresh_token": {testRefreshToken}, "graph_scopes": {"https://outlook.office.com/IMAP.AccessAsUser.All offline_access"},
		// Saved, the connection is scheduled at once: its token requests go
		// to a closed loopback port, never to Microsoft.
		"graph_token_url": {"http://127.0.0.1:9/token"},
		"connected_with":  {"incident", "request"}}
	status, _, body = h.post("/connections/save", oauthForm)
	if status != http.StatusUnprocessableEntity {
		t.Fatalf("oauth without tenant: %d", status)
	}
	mustContain(t, "oauth", body, `id="err-graph_tenant_id">é obrigatório para o Microsoft Graph</p>`)
	oauthForm.Set("graph_tenant_id", "contoso.onmicrosoft.com")
	if status, final, body = h.post("/connections/save", oauthForm); final != "/connections" {
		t.Fatalf("oauth form: %d %s\n%s", status, final, clip(body))
	}
	got, err = h.app.st.ConnectionWithSecrets(context.Background(), "Office")
	if err != nil || got.OAuth == nil || got.OAuth.ClientSecret.Reveal() != testClientSecret || got.OAuth.RefreshToken.Reveal() != testRefreshToken {
		t.Fatalf("stored oauth: %v %v", got, err)
	}
	// The edit page shows "set", never the secret; saving it untouched keeps them.
	_, body = h.get("/connections/Office/edit")
	mustContain(t, "edit", body, "definido — deixe vazio para manter", `value="contoso.onmicrosoft.com"`)
	edit := url.Values{}
	for k, v := range oauthForm {
		edit[k] = v
	}
	edit.Set("original", "Office")
	edit.Del("graph_client_secret")
	edit.Del("graph_refresh_token")
	edit.Set("graph_tenant_id", "fabrikam.onmicrosoft.com")
	if _, final, body = h.post("/connections/save", edit); final != "/connections" {
		t.Fatalf("edit without secrets: %s\n%s", final, clip(body))
	}
	got, _ = h.app.st.ConnectionWithSecrets(context.Background(), "Office")
	if got.OAuth.TenantID != "fabrikam.onmicrosoft.com" || got.OAuth.ClientSecret.Reveal() != testClientSecret || got.OAuth.RefreshToken.Reveal() != testRefreshToken {
		t.Errorf("an untouched secret was lost: %v", got)
	}
	// A rotated refresh token is stored sealed, under the same row.
	if err := h.app.st.SetRefreshToken(context.Background(), "Office", "rt-rotated-5150"); err != nil {
		t.Fatal(err)
	}
	got, _ = h.app.st.ConnectionWithSecrets(context.Background(), "Office")
	if got.OAuth.RefreshToken.Reveal() != "rt-rotated-5150" {
		t.Errorf("rotated token: %v", got.OAuth.RefreshToken.Reveal() == "")
	}
	// Disabling changes only the switch.
	if _, final, _ = h.post("/connections/save", url.Values{"original": {"Office"}}); final != "/connections" {
		t.Fatalf("disable: %s", final)
	}
	got, _ = h.app.st.ConnectionWithSecrets(context.Background(), "Office")
	if got.Enabled || got.OAuth.TenantID != "fabrikam.onmicrosoft.com" {
		t.Errorf("disable changed more than the switch: %v", got)
	}
	h.assertNoSecret(testClientSecret, testRefreshToken, "rt-rotated-5150")
}

// TestCSRF: every POST needs the session's token; without it, 403 and
// nothing changes.
func TestCSRF(t *testing.T) {
	h := newHarness(t, "")
	form := url.Values{"enabled": {"on"}, "name": {"X"}, "user": {"x@empresa.pt"}, "server": {"mail.empresa.pt"},
		"protocol": {"imap"}, "auth": {"password"}, "connected_with": {"incident"}}
	for _, tc := range []struct {
		name  string
		token string
		jar   bool
	}{{"no token", "", true}, {"wrong token", "forged", true}, {"no session cookie", h.csrf(), false}} {
		f := url.Values{}
		for k, v := range form {
			f[k] = v
		}
		if tc.token != "" {
			f.Set(csrfField, tc.token)
		}
		client := h.client
		if !tc.jar {
			client = &http.Client{}
		}
		for _, path := range []string{"/connections/save", "/connections/Suporte/sync", "/quarantine/1/replay", "/mappings/incident"} {
			resp, err := client.PostForm(h.srv.URL+path, f)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusForbidden {
				t.Errorf("%s: POST %s: status %d, want 403", tc.name, path, resp.StatusCode)
			}
		}
	}
	if _, err := h.app.st.Connection(context.Background(), "X"); err != ErrNotFound {
		t.Errorf("a forged POST saved a connection: %v", err)
	}
	// The same form with the token works.
	if _, final, _ := h.post("/connections/save", form); final != "/connections" {
		t.Errorf("with the token: %s", final)
	}
}

// TestSecurityHeaders: CSP without inline script, no framing, and a
// session cookie the page's script cannot read.
func TestSecurityHeaders(t *testing.T) {
	h := newHarness(t, "")
	resp, err := h.client.Get(h.srv.URL + "/connections/new")
	if err != nil {
		t.Fatal(err)
	}
	body := h.record(resp)
	if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'self';") || strings.Contains(csp, "unsafe-inline';") && strings.Contains(csp, "script-src 'self' 'unsafe-inline'") {
		t.Errorf("CSP %q", csp)
	}
	if resp.Header.Get("X-Frame-Options") != "DENY" {
		t.Error("X-Frame-Options")
	}
	if regexp.MustCompile(`<script>|<script [^>]*>[^<]`).MatchString(body) || strings.Contains(body, " onclick=") {
		t.Error("inline script on the page")
	}
	for _, c := range resp.Cookies() {
		if c.Name == sessionCookie && (!c.HttpOnly || c.SameSite != http.SameSiteStrictMode) {
			t.Errorf("session cookie %+v", c)
		}
	}
	// Secret inputs are never autocompleted or filled.
	mustContain(t, "form", body, `name="graph_client_secret" type="password" value="" autocomplete="new-password"`)
	_, body = h.get("/connections")
	mustContain(t, "dialog", body, `type="password" id="sync-password" name="password" autocomplete="new-password"`)
}

// TestDNSRebinding: a loopback backend answers loopback host names only.
func TestDNSRebinding(t *testing.T) {
	h := newHarness(t, "")
	for host, want := range map[string]int{"attacker.example": http.StatusMisdirectedRequest, "attacker.example:80": http.StatusMisdirectedRequest,
		"localhost:8080": 200, "127.0.0.1": 200, "[::1]:8080": 200} {
		req, _ := http.NewRequest("GET", h.srv.URL+"/connections", nil)
		req.Host = host
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("Host %s: %d, want %d", host, resp.StatusCode, want)
		}
	}
}

// TestNoSeed: without the demo mailbox no demo connection is made.
func TestNoSeed(t *testing.T) {
	h := newHarness(t, "", func(c *Config) { c.NoSeed = true })
	rows, err := h.app.st.Connections(context.Background())
	if err != nil || len(rows) != 0 {
		t.Errorf("connections %v, %v", rows, err)
	}
	if types, _ := h.app.st.TicketTypes(context.Background()); len(types) != 2 {
		t.Errorf("ticket types %v", types)
	}
}

func TestRefuseRemoteBind(t *testing.T) {
	for addr, ok := range map[string]bool{"127.0.0.1:0": true, "localhost:8080": true, "[::1]:0": true, "0.0.0.0:8080": false, ":8080": false, "192.0.2.1:80": false} {
		if err := checkAddr(addr, false); (err == nil) != ok {
			t.Errorf("%s: %v", addr, err)
		}
	}
	if err := checkAddr("0.0.0.0:8080", true); err != nil {
		t.Error(err)
	}
}

// TestListeningLine starts the command as a user does and reads its first line.
func TestListeningLine(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"-addr", "127.0.0.1:0", "-data", t.TempDir()}, pw, io.Discard)
		pw.Close()
	}()
	line := make(chan string, 1)
	go func() {
		b := make([]byte, 200)
		n, _ := pr.Read(b)
		line <- string(b[:n])
		io.Copy(io.Discard, pr)
	}()
	var l string
	select {
	case l = <-line:
	case <-time.After(time.Minute):
		t.Fatal("no listening line in a minute")
	}
	m := regexp.MustCompile(`^helpdesk: listening on (http://127\.0\.0\.1:(\d+))\n`).FindStringSubmatch(l)
	if m == nil || m[2] == "0" {
		t.Fatalf("first line %q", l)
	}
	resp, err := http.Get(m[1] + "/tickets")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("GET /tickets: %v %v", resp, err)
	}
	resp.Body.Close()
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if err := run(context.Background(), []string{"-addr", "0.0.0.0:0"}, io.Discard, io.Discard); err == nil || !strings.Contains(err.Error(), "-allow-remote") {
		t.Errorf("non-loopback bind: %v", err)
	}
}

// TestTestConnection: the "test connection" button runs the library's
// Checker with the typed password.
func TestTestConnection(t *testing.T) {
	h := newHarness(t, "")
	_, _, body := h.post("/connections/Suporte/test", url.Values{"password": {h.app.SeedPassword}})
	mustContain(t, "check ok", body, `id="check-state" class="good"`, "imap 127.0.0.1:", "implicit-tls", `&#34;INBOX&#34; 6 messages`)
	_, _, body = h.post("/connections/Suporte/test", url.Values{"password": {"wrong-" + h.app.SeedPassword}})
	mustContain(t, "check failed", body, `id="check-state" class="error"`, "(auth)")
	h.assertNoSecret(h.app.SeedPassword, "wrong-"+h.app.SeedPassword)
}

// TestSyncEndToEnd syncs the seeded mailbox with the password typed in
// the dialog, on SQLite.
func TestSyncEndToEnd(t *testing.T) { syncEndToEnd(t, newHarness(t, "")) }

// TestSyncEndToEndPostgres is the same on PostgreSQL and riverpgxv5.
func TestSyncEndToEndPostgres(t *testing.T) { syncEndToEnd(t, newHarness(t, pgtest.NewDatabase(t))) }

var ticketLinkRE = regexp.MustCompile(`<a href="/tickets/(\d+)" class="ticket-title">([^<]*)</a>`)

func syncEndToEnd(t *testing.T, h *harness) {
	password := h.app.SeedPassword
	// No password: back to the password form, nothing runs.
	if _, final, _ := h.post("/connections/Suporte/sync", url.Values{}); final != "/connections/Suporte/sync" {
		t.Errorf("sync without password went to %s", final)
	}
	status, final, _ := h.post("/connections/Suporte/sync", url.Values{"password": {password}})
	if status != 200 || !strings.HasPrefix(final, "/runs/") {
		t.Fatalf("sync: %d %s", status, final)
	}
	st := h.waitRun(final)
	if st.Error != "" || st.Created != 4 || st.FollowUps != 1 || st.Quarantined != 1 || st.Failed != 0 {
		t.Fatalf("report %+v", st)
	}
	_, body := h.get(final)
	mustContain(t, "report", body, `id="report-created">4<`, `id="report-followups">1<`, `id="report-quarantined">1<`,
		"regras: faturas", "regra: references", "MIME nesting deeper than 8", "auto_reply")

	// The tickets.
	_, body = h.get("/tickets")
	titles := map[string]string{}
	for _, m := range ticketLinkRE.FindAllStringSubmatch(body, -1) {
		titles[m[2]] = m[1]
	}
	printer, portal, invoice := titles["Impressora do 2º andar não imprime"], titles["Erro ao aceder ao portal"], titles["Fatura em falta no sistema"]
	if len(titles) != 4 || printer == "" || portal == "" || invoice == "" {
		t.Fatalf("tickets %v", titles)
	}
	// The reply threaded onto its ticket.
	_, body = h.get("/tickets/" + printer)
	mustContain(t, "printer", body, "Seguimentos (1)", "joao.goncalves@cliente.pt", "regra: references", "Entretanto reiniciei a impressora")
	// The inline image: cid: rewritten to the stored part, served as a PNG.
	_, body = h.get("/tickets/" + portal)
	img := regexp.MustCompile(`<img src="(/attachments/\d+)"`).FindStringSubmatch(body)
	if img == nil || strings.Contains(body, "cid:") || strings.Contains(body, "alert(") {
		t.Fatalf("portal ticket body:\n%s", clip(body))
	}
	resp, err := h.client.Get(h.srv.URL + img[1])
	if err != nil {
		t.Fatal(err)
	}
	png := h.record(resp)
	if resp.Header.Get("Content-Type") != "image/png" || !strings.HasPrefix(png, "\x89PNG") {
		t.Errorf("inline image: %s %q", resp.Header.Get("Content-Type"), clip(png))
	}
	// The attachment, and the routing rule that made the invoice a request.
	_, body = h.get("/tickets/" + invoice)
	mustContain(t, "invoice", body, "fatura março.pdf", `id="ticket-type">Pedido<`)
	att := regexp.MustCompile(`<a href="(/attachments/\d+)">fatura março.pdf</a>`).FindStringSubmatch(body)
	if att == nil {
		t.Fatal("no attachment link")
	}
	resp, err = h.client.Get(h.srv.URL + att[1])
	if err != nil {
		t.Fatal(err)
	}
	pdf := h.record(resp)
	if !strings.HasPrefix(pdf, "%PDF") || !strings.HasPrefix(resp.Header.Get("Content-Disposition"), "attachment") {
		t.Errorf("pdf download: %q %q", resp.Header.Get("Content-Disposition"), clip(pdf))
	}
	// The auto-reply is classified.
	_, body = h.get("/tickets/" + titles["Ausência temporária: Erro ao aceder ao portal"])
	mustContain(t, "auto-reply", body, "kind-auto_reply", "Auto-Submitted")

	// The quarantined mail: listed, raw download, replay makes a ticket once.
	_, body = h.get("/quarantine")
	mustContain(t, "quarantine", body, "aninhado-42@parceiro.com.br", "MIME nesting deeper than 8")
	qid := regexp.MustCompile(`<tr data-id="(\d+)">`).FindStringSubmatch(body)[1]
	resp, err = h.client.Get(h.srv.URL + "/quarantine/" + qid + "/raw")
	if err != nil {
		t.Fatal(err)
	}
	raw := h.record(resp)
	if raw != seedMails[len(seedMails)-1] {
		t.Errorf("raw download differs from the mail (%d bytes)", len(raw))
	}
	_, _, body = h.post("/quarantine/"+qid+"/replay", nil)
	mustContain(t, "replay", body, "Reprocessado: created")
	_, _, body = h.post("/quarantine/"+qid+"/replay", nil)
	mustContain(t, "replay again", body, "Reprocessado: duplicate")
	_, body = h.get("/tickets")
	if n := len(ticketLinkRE.FindAllString(body, -1)); n != 5 {
		t.Errorf("%d tickets after the replays, want 5", n)
	}
	mustContain(t, "replayed ticket", body, "Fwd: Fwd: Fwd: pedido antigo")

	// A second sync: nothing new, nothing duplicated; the health is shown.
	_, final, _ = h.post("/connections/Suporte/sync", url.Values{"password": {password}})
	if st := h.waitRun(final); st.Created != 0 || st.FollowUps != 0 || st.Error != "" {
		t.Errorf("second sync %+v", st)
	}
	_, body = h.get("/connections")
	mustContain(t, "health", body, `<span class="badge good">OK</span>`)

	// A wrong password: the error is shown, scrubbed.
	wrong := "Wr0ng-" + password
	_, final, _ = h.post("/connections/Suporte/sync", url.Values{"password": {wrong}})
	if st := h.waitRun(final); st.Error == "" {
		t.Errorf("a wrong password synced: %+v", st)
	}
	// A mistyped password is a failure, shown with its kind, but nothing
	// for the admin: the person who typed it tries again.
	_, body = h.get("/connections")
	mustContain(t, "health after a wrong password", body, `<small class="error">auth: `)
	if strings.Contains(body, "requer o administrador") {
		t.Error("a mistyped password marks the connection as needing the admin")
	}
	if hh, _, err := h.app.fleet.Health().Get(context.Background(), "Suporte"); err != nil || hh.NeedsAdmin || hh.Degraded || hh.LastErrorKind != fleet.KindAuth {
		t.Errorf("health after a wrong password: %+v, %v", hh, err)
	}

	var ticketCount int
	h.app.st.db.QueryRow(`SELECT COUNT(*) FROM hd_tickets`).Scan(&ticketCount)
	if ticketCount != 5 {
		t.Errorf("%d tickets in the table", ticketCount)
	}
	// The scan is not blind: it finds what is there, in all three places.
	seen := h.findLeaks("Impressora do 2º andar", "connection=Suporte")
	for _, src := range []string{"database", "log", "page"} {
		if len(seen[src]) == 0 {
			t.Errorf("the scan of the %s finds nothing that is there", src)
		}
	}
	h.assertNoSecret(password, wrong)
}

// TestMappingPage edits a ticket type's mapping; an unknown e-mail field is refused.
func TestMappingPage(t *testing.T) {
	h := newHarness(t, "")
	_, body := h.get("/mappings/incident")
	mustContain(t, "mapping", body, `value="body.reply"`, `value="header:X-Priority"`, "Regras de encaminhamento")
	_, body = h.get("/mappings/request")
	mustContain(t, "rules", body, `<strong>faturas</strong> (Suporte)`, `subject contains "fatura"`)
	status, _, body := h.post("/mappings/incident", url.Values{"ticket_field": {"title", "body"}, "source": {"subject", "body.nope"},
		"const": {"", ""}, "default": {"", ""}, "max_length": {"", ""}})
	if status != http.StatusUnprocessableEntity {
		t.Fatalf("unknown source: %d", status)
	}
	mustContain(t, "error", body, `id="mapping-error"`, "body.nope")
	_, final, _ := h.post("/mappings/incident", url.Values{"ticket_field": {"title", "requester", "origem"}, "source": {"subject", "from.address", ""},
		"const": {"", "", "e-mail"}, "default": {"", "", ""}, "max_length": {"80", "", ""}})
	if final != "/mappings/incident" {
		t.Fatal(final)
	}
	m, _ := h.app.st.Mapping(context.Background(), "incident")
	if len(m.Fields) != 3 || m.Fields[0].MaxLength != 80 || m.Fields[2].Const != "e-mail" {
		t.Errorf("stored %+v", m)
	}
}

// TestSealedSecrets: a sealed value opens only with its key and in its own row and column.
func TestSealedSecrets(t *testing.T) {
	dir := t.TempDir()
	k1, err := loadKey(dir)
	if err != nil {
		t.Fatal(err)
	}
	k2, _ := loadKey(dir)
	if !bytes.Equal(k1, k2) {
		t.Fatal("the key file is not reused")
	}
	box, _ := newSecretBox(k1)
	v, _ := box.seal("s3cret", "a/b")
	if strings.Contains(v, "s3cret") {
		t.Fatal("not sealed")
	}
	if s, err := box.open(v, "a/b"); err != nil || s.Reveal() != "s3cret" {
		t.Fatal(s, err)
	}
	if _, err := box.open(v, "a/c"); err == nil {
		t.Error("opened in another context")
	}
	other, _ := newSecretBox(bytes.Repeat([]byte{1}, 32))
	if _, err := other.open(v, "a/b"); err == nil {
		t.Error("opened with another key")
	}
	t.Setenv(keyEnv, strings.Repeat("ab", 32))
	k3, err := loadKey(dir)
	if err != nil || k3[0] != 0xab {
		t.Errorf("env key: %v", err)
	}
	_ = strconv.Itoa
}

// TestTwoInstancesPostgres: two backends on one PostgreSQL database share
// the work: a sync typed into either shows on both, and two syncs of the
// same connection started at once on the two instances make each ticket
// once (the lease lets one run; the other waits its turn or reports busy).
func TestTwoInstancesPostgres(t *testing.T) {
	dsn := pgtest.NewDatabase(t)
	a := newHarness(t, dsn)
	b := newHarness(t, dsn, func(c *Config) { c.NoSeed = true })
	b.app.resolver.rootCAs.AddCert(a.app.seed.Cert) // b reaches a's demo mailbox
	password := a.app.SeedPassword

	_, runA, _ := a.post("/connections/Suporte/sync", url.Values{"password": {password}})
	_, runB, _ := b.post("/connections/Suporte/sync", url.Values{"password": {password}})
	stA, stB := a.waitRun(runA), b.waitRun(runB)
	busy := 0
	for _, st := range []runStatus{stA, stB} {
		if st.Error != "" {
			if !strings.Contains(st.Error, "busy") && !strings.Contains(st.Error, "another") {
				t.Errorf("sync error %q", st.Error)
			}
			busy++
		}
	}
	if stA.Created+stB.Created != 4 || stA.FollowUps+stB.FollowUps != 1 {
		t.Errorf("created %d+%d, follow-ups %d+%d (busy %d)", stA.Created, stB.Created, stA.FollowUps, stB.FollowUps, busy)
	}
	_, bodyA := a.get("/tickets")
	_, bodyB := b.get("/tickets")
	if na, nb := len(ticketLinkRE.FindAllString(bodyA, -1)), len(ticketLinkRE.FindAllString(bodyB, -1)); na != 4 || nb != 4 {
		t.Errorf("tickets seen by a: %d, by b: %d", na, nb)
	}
	t.Logf("a: %+v; b: %+v", stA, stB)
	a.assertNoSecret(password)
	b.assertNoSecret(password)
}

// TestStoreConcurrentWrites: the host's read-then-write transactions run
// beside other writers of the same SQLite file (River, a sync) without
// failing with SQLITE_BUSY (a deferred transaction fails when it upgrades
// its read lock after another connection wrote; BEGIN IMMEDIATE waits).
func TestStoreConcurrentWrites(t *testing.T) {
	h := newHarness(t, "", func(c *Config) { c.NoSeed = true })
	ctx := context.Background()
	var wg sync.WaitGroup
	errs := make(chan error, 200)
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 25; i++ {
				c := mailsync.Connection{Name: fmt.Sprintf("c%d", i%5), Enabled: true, User: "u@empresa.pt", Server: "mail.empresa.pt",
					Protocol: mailsync.IMAP, ConnectedWith: []string{"incident"}}
				if err := h.app.st.SaveConnection(ctx, c); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}
