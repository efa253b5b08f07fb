package imap_test

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime/metrics"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/mailsync/mailsync"
	"github.com/mailsync/mailsync/connectortest"
	mimap "github.com/mailsync/mailsync/imap"
	"github.com/mailsync/mailsync/internal/cutproxy"
	"github.com/mailsync/mailsync/internal/dovecottest"
)

func TestMain(m *testing.M) {
	code := m.Run()
	dovecottest.StopAll()
	os.Exit(code)
}

const dovecotPassword = "s3cret-pw"

// dovecotHarness runs the conformance suite on a real Dovecot, one fresh
// user (mailbox) per test.
type dovecotHarness struct {
	t    testing.TB
	srv  *dovecottest.Server
	user string
	conn mailsync.Connection
	opts mimap.Options
	// moveFolder is the IMAP name of connectortest.MoveFolder on this
	// server ("INBOX.Processed" with a Courier namespace); "" means the same.
	moveFolder string
}

// ServerMoveFolder implements connectortest.MoveFolderNamer.
func (h *dovecotHarness) ServerMoveFolder() string { return h.moveFolder }

// newDovecot returns a fresh user on the shared server for o, connected over
// implicit TLS or STARTTLS.
func newDovecot(t testing.TB, o dovecottest.Options, security mimap.Security) *dovecotHarness {
	srv := dovecottest.Shared(t, o)
	user := srv.AddUser(t, t.Name(), dovecotPassword)
	addr := srv.IMAPSAddr
	if security != mimap.ImplicitTLS {
		addr = srv.IMAPAddr
	}
	conn := connection(t, addr)
	conn.User = user
	h := &dovecotHarness{t: t, srv: srv, user: user, conn: conn,
		opts: mimap.Options{Password: dovecotPassword, Security: security, RootCAs: srv.CAPool}}
	if o.CourierNamespace {
		// The Maildir++ folder ".Processed" is the IMAP mailbox
		// "INBOX.Processed": the only place the server lets it be.
		h.moveFolder = "INBOX." + connectortest.MoveFolder
	}
	return h
}

func (h *dovecotHarness) MakeConnector(ctx context.Context) (mailsync.Connector, error) {
	return mimap.New(h.conn, h.opts)
}

func (h *dovecotHarness) Deliver(ctx context.Context, raw []byte) error {
	h.srv.Deliver(h.t, h.user, "INBOX", raw)
	return nil
}

func (h *dovecotHarness) Inspect(ctx context.Context) ([]connectortest.MailboxMessage, error) {
	var out []connectortest.MailboxMessage
	for _, folder := range []string{"INBOX", connectortest.MoveFolder} {
		for _, m := range h.srv.Messages(h.t, h.user, folder) {
			if m.Deleted {
				continue
			}
			f := connectortest.SourceFolder
			if folder != "INBOX" {
				f = connectortest.ServerMoveFolder(h)
			}
			out = append(out, connectortest.MailboxMessage{MessageID: m.MessageID, Folder: f, Seen: m.Seen})
		}
	}
	return out, nil
}

func (h *dovecotHarness) PostActions() []mailsync.ActionKind {
	return []mailsync.ActionKind{mailsync.MarkRead, mailsync.MoveToFolder, mailsync.Delete}
}

func (h *dovecotHarness) Close() {}

func TestConformanceDovecotIMAPS(t *testing.T) {
	connectortest.Run(t, func(ctx context.Context, t *testing.T) (connectortest.Harness, error) {
		return newDovecot(t, dovecottest.Options{}, mimap.ImplicitTLS), nil
	})
}

func TestConformanceDovecotSTARTTLS(t *testing.T) {
	connectortest.Run(t, func(ctx context.Context, t *testing.T) (connectortest.Harness, error) {
		return newDovecot(t, dovecottest.Options{}, mimap.StartTLS), nil
	})
}

func TestConformanceDovecotWithoutMove(t *testing.T) {
	connectortest.Run(t, func(ctx context.Context, t *testing.T) (connectortest.Harness, error) {
		return newDovecot(t, dovecottest.Options{DisableMove: true}, mimap.ImplicitTLS), nil
	})
}

func (h *dovecotHarness) connector(t *testing.T) *mimap.Connector {
	return newConnector(t, h.conn, h.opts)
}

func (h *dovecotHarness) ids(folder string) []string {
	var ids []string
	for _, m := range h.srv.Messages(h.t, h.user, folder) {
		if !m.Deleted {
			ids = append(ids, m.MessageID)
		}
	}
	slices.Sort(ids)
	return ids
}

func TestDovecotMoveWithAndWithoutMOVE(t *testing.T) {
	for _, disable := range []bool{false, true} {
		t.Run(fmt.Sprintf("DisableMove=%v", disable), func(t *testing.T) {
			ctx := testCtx(t)
			h := newDovecot(t, dovecottest.Options{DisableMove: disable}, mimap.ImplicitTLS)
			for i := 1; i <= 3; i++ {
				h.srv.Deliver(t, h.user, "INBOX", mail(i, "to move"))
			}
			// Dovecot trusts plaintext logins from 127.0.0.1: speak in clear
			// so the command log can read the commands.
			log := &commandLog{}
			h.conn = connection(t, h.srv.IMAPAddr)
			h.conn.User = h.user
			h.opts = mimap.Options{Password: dovecotPassword, Security: mimap.Plaintext, AllowPlaintextLogin: true, DialContext: log.dial}
			c := h.connector(t)
			l, err := c.List(ctx, "")
			if err != nil {
				t.Fatal(err)
			}
			move := mailsync.PostAction{Kind: mailsync.MoveToFolder, Folder: "Done/2026"}
			for range 2 { // the second time is a harmless repeat
				if err := c.Ack(ctx, l.Messages[:2], move); err != nil {
					t.Fatal(err)
				}
			}
			if got := h.ids("Done/2026"); !slices.Equal(got, []string{"msg-1@example.org", "msg-2@example.org"}) {
				t.Errorf("Done/2026 holds %v", got)
			}
			if got := h.ids("INBOX"); !slices.Equal(got, []string{"msg-3@example.org"}) {
				t.Errorf("INBOX holds %v", got)
			}
			cmds := log.names()
			if slices.Contains(cmds, "EXPUNGE") {
				t.Errorf("plain EXPUNGE sent: %v", cmds)
			}
			if disable != slices.Contains(cmds, "UID COPY") || disable == slices.Contains(cmds, "UID MOVE") {
				t.Errorf("DisableMove=%v but commands were %v", disable, cmds)
			}
		})
	}
}

func TestDovecotAuthAndTLSErrors(t *testing.T) {
	ctx := testCtx(t)
	h := newDovecot(t, dovecottest.Options{}, mimap.ImplicitTLS)
	list := func(conn mailsync.Connection, opts mimap.Options) error {
		c, err := mimap.New(conn, opts)
		if err != nil {
			return err
		}
		defer c.Close()
		_, err = c.List(ctx, "")
		return err
	}
	start := time.Now()
	wrong := h.opts
	wrong.Password = "not-the-password"
	if err := list(h.conn, wrong); !errors.Is(err, mailsync.ErrAuth) || strings.Contains(err.Error(), "not-the-password") {
		t.Errorf("wrong password: %v", err)
	}
	if err := list(h.conn, h.opts); err != nil {
		t.Errorf("right password after a wrong one: %v", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("auth checks took %s", d)
	}
	untrusted := h.opts
	untrusted.RootCAs = nil
	if err := list(h.conn, untrusted); !errors.Is(err, mailsync.ErrTLS) {
		t.Errorf("untrusted certificate over IMAPS: %v", err)
	}
	plainConn := connection(t, h.srv.IMAPAddr)
	plainConn.User = h.user
	if err := list(plainConn, mimap.Options{Password: dovecotPassword, Security: mimap.StartTLS}); !errors.Is(err, mailsync.ErrTLS) {
		t.Errorf("untrusted certificate over STARTTLS: %v", err)
	}
	// Dovecot trusts loopback-to-same-address connections as secure; from
	// 127.0.0.2 it refuses LOGIN before TLS (LOGINDISABLED): we never send
	// it, and STARTTLS then works.
	if h.srv.IMAPNonLocalAddr != "" {
		nonLocal := connection(t, h.srv.IMAPNonLocalAddr)
		nonLocal.User = h.user
		opted := mimap.Options{Password: dovecotPassword, Security: mimap.Plaintext, AllowPlaintextLogin: true}
		if err := list(nonLocal, opted); !errors.Is(err, mailsync.ErrPlaintextRefused) || !strings.Contains(err.Error(), "LOGINDISABLED") {
			t.Errorf("plaintext login on a server that disables it: %v", err)
		}
		starttls := mimap.Options{Password: dovecotPassword, Security: mimap.StartTLS, RootCAs: h.srv.CAPool,
			TLSConfig: &tls.Config{ServerName: "localhost"}}
		if err := list(nonLocal, starttls); err != nil {
			t.Errorf("STARTTLS where plaintext login is disabled: %v", err)
		}
	} else {
		t.Log("127.0.0.2 not available: LOGINDISABLED case not tested")
	}
	if _, err := mimap.New(plainConn, mimap.Options{Password: dovecotPassword, Security: mimap.Plaintext}); !errors.Is(err, mailsync.ErrPlaintextRefused) {
		t.Errorf("plaintext without opt-in: %v", err)
	}
	missing := h.opts
	missing.Folder = "Tickets"
	if _, err := mimap.Check(ctx, h.conn, missing); !errors.Is(err, mailsync.ErrFolderNotFound) || !strings.Contains(err.Error(), `"INBOX"`) {
		t.Errorf("check of a missing folder: %v", err)
	}
}

func TestDovecotPlaintextOptIn(t *testing.T) {
	ctx := testCtx(t)
	srv := dovecottest.Shared(t, dovecottest.Options{AllowPlaintextAuth: true})
	user := srv.AddUser(t, t.Name(), dovecotPassword)
	srv.Deliver(t, user, "INBOX", mail(1, "clear"))
	conn := connection(t, srv.IMAPAddr)
	conn.User = user
	c := newConnector(t, conn, mimap.Options{Password: dovecotPassword, Security: mimap.Plaintext, AllowPlaintextLogin: true})
	l, err := c.List(ctx, "")
	if err != nil || len(l.Messages) != 1 {
		t.Fatalf("plaintext opt-in: %+v, %v", l, err)
	}
}

func TestDovecotOAuth(t *testing.T) {
	ctx := testCtx(t)
	for _, mech := range []string{"XOAUTH2", "OAUTHBEARER"} {
		for _, security := range []mimap.Security{mimap.ImplicitTLS, mimap.StartTLS} {
			t.Run(fmt.Sprintf("%s/%s", mech, security), func(t *testing.T) {
				h := newDovecot(t, dovecottest.Options{OAuth: true}, security)
				h.srv.Deliver(t, h.user, "INBOX", mail(1, "oauth"))
				token := "tok-" + strings.ReplaceAll(t.Name(), "/", "-")
				h.srv.AddToken(h.user, token)
				opts := h.opts
				opts.Password = ""
				opts.SASLMechanism = mech
				opts.TokenSource = oauth2.StaticTokenSource(&oauth2.Token{AccessToken: token})
				c := newConnector(t, h.conn, opts)
				l, err := c.List(ctx, "")
				if err != nil || len(l.Messages) != 1 {
					t.Fatalf("good token: %+v, %v", l, err)
				}
				if got, err := drain(ctx, c, l.Messages); err != nil || len(got) != 1 {
					t.Fatalf("fetch with token: %d, %v", len(got), err)
				}
				res, err := mimap.Check(ctx, h.conn, opts)
				if err != nil || res.Auth != mech {
					t.Fatalf("check: %+v, %v", res, err)
				}

				h.srv.RevokeToken(token)
				start := time.Now()
				bad := newConnector(t, h.conn, opts)
				_, err = bad.List(ctx, "")
				if !errors.Is(err, mailsync.ErrAuth) || strings.Contains(err.Error(), token) {
					t.Fatalf("revoked token: %v; want ErrAuth without the token", err)
				}
				// A correct failure exchange ends in NO [AUTHENTICATIONFAILED],
				// not BAD (e.g. "Invalid base64 data in continued response").
				if !strings.Contains(err.Error(), "NO [AUTHENTICATIONFAILED]") {
					t.Errorf("revoked token: %v; want the server's NO [AUTHENTICATIONFAILED]", err)
				}
				if d := time.Since(start); d > 5*time.Second {
					t.Fatalf("a rejected token took %s (hung SASL exchange?)", d)
				}
				t.Logf("rejected: %v", err)
			})
		}
	}
}

// UIDVALIDITY changes (the server lost its UID state): the listing says
// so, every key changes, and Sync creates no duplicate ticket.
func TestDovecotUIDValidityChange(t *testing.T) {
	ctx := testCtx(t)
	h := newDovecot(t, dovecottest.Options{}, mimap.ImplicitTLS)
	for i := 1; i <= 3; i++ {
		h.srv.Deliver(t, h.user, "INBOX", mail(i, "before"))
	}
	sink, created := countingSink()
	state := mailsync.NewMemoryState()
	sync := func() *mailsync.Report {
		rep, err := mailsync.Sync(ctx, h.connector(t), mailsync.DefaultMapping("incident"), sink, mailsync.WithState(state))
		if err != nil {
			t.Fatal(err)
		}
		return rep
	}
	if rep := sync(); rep.Created != 3 {
		t.Fatalf("first sync created %d", rep.Created)
	}
	cursor, _ := state.Cursor(ctx, h.conn.Name)
	h.srv.SetUIDValidity(t, h.user, "INBOX", 777)
	h.srv.Deliver(t, h.user, "INBOX", mail(4, "after"))

	l, err := h.connector(t).List(ctx, cursor)
	if err != nil {
		t.Fatal(err)
	}
	if len(l.Messages) != 4 || len(l.Notes) != 1 || !strings.Contains(l.Notes[0], "777") || !strings.HasPrefix(l.Messages[0].Key, "777:") {
		t.Fatalf("after the change: %d messages, notes %q, first key %q", len(l.Messages), l.Notes, l.Messages[0].Key)
	}
	rep := sync()
	if rep.Created != 1 || created.Load() != 4 {
		t.Fatalf("after the change: created %d (total %d); want 1 (4)", rep.Created, created.Load())
	}
	expectOneTicketEach(t, sink, []string{"msg-1@example.org", "msg-2@example.org", "msg-3@example.org", "msg-4@example.org"})
}

// TLS connections to Dovecot cut in the middle of FETCH, and Dovecot
// restarted between syncs: the sync resumes, 0 lost, 0 duplicated.
func TestDovecotResumeAcrossCutsAndRestart(t *testing.T) {
	ctx := testCtx(t)
	srv := dovecottest.Start(t, dovecottest.Options{})
	user := srv.AddUser(t, "cut", dovecotPassword)
	var ids []string
	for i := 1; i <= 40; i++ {
		srv.Deliver(t, user, "INBOX", mail(i, strings.Repeat(fmt.Sprintf("%d: the printer is on fire again\r\n", i), 2000)))
		ids = append(ids, fmt.Sprintf("msg-%d@example.org", i))
	}
	proxy := cutproxy.Start(t, srv.IMAPSAddr)
	proxy.CutAfter(500_000)
	proxy.CutAfter(1_200_000)
	conn := connection(t, proxy.Addr)
	conn.User = user
	opts := mimap.Options{Password: dovecotPassword, Security: mimap.ImplicitTLS, RootCAs: srv.CAPool}
	sink, created := countingSink()
	state := mailsync.NewMemoryState()
	move := mailsync.WithPostAction(mailsync.PostAction{Kind: mailsync.MarkRead})
	rep, err := mailsync.Sync(ctx, newConnector(t, conn, opts), mailsync.DefaultMapping("incident"), sink,
		mailsync.WithState(state), mailsync.WithRetry(5, 20*time.Millisecond), move)
	if err != nil {
		t.Fatal(err)
	}
	if proxy.Cuts() != 2 {
		t.Fatalf("%d cuts, want 2", proxy.Cuts())
	}
	if rep.Created != 40 || created.Load() != 40 {
		t.Fatalf("created %d (sink %d), want 40", rep.Created, created.Load())
	}
	expectOneTicketEach(t, sink, ids)
	for _, m := range srv.Messages(t, user, "INBOX") {
		if !m.Seen {
			t.Errorf("%s not marked read", m.MessageID)
		}
	}

	// The server restarts under a live connector: the next call reconnects.
	c := newConnector(t, conn, opts)
	cursor, _ := state.Cursor(ctx, conn.Name)
	if _, err := c.List(ctx, cursor); err != nil {
		t.Fatal(err)
	}
	srv.Deliver(t, user, "INBOX", mail(41, "after the restart"))
	srv.Restart(t)
	var l *mailsync.Listing
	for attempt := 0; attempt < 5; attempt++ {
		if l, err = c.List(ctx, cursor); err == nil || !errors.Is(err, mailsync.ErrConnection) {
			break
		}
	}
	if err != nil || len(l.Messages) != 1 {
		t.Fatalf("after restart: %+v, %v", l, err)
	}
	got, err := drain(ctx, c, l.Messages)
	if err != nil || !strings.Contains(string(got[l.Messages[0].Key]), "msg-41@") {
		t.Fatalf("fetch after restart: %v", err)
	}
}

// Fetch never sets \Seen (BODY.PEEK) on a real server.
func TestDovecotFetchLeavesUnseen(t *testing.T) {
	ctx := testCtx(t)
	h := newDovecot(t, dovecottest.Options{}, mimap.StartTLS)
	h.srv.Deliver(t, h.user, "INBOX", mail(1, "peek"))
	c := h.connector(t)
	l, err := c.List(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	if err := c.Fetch(ctx, l.Messages, func(r mailsync.MessageRef, body io.Reader) error {
		b, err := io.ReadAll(body)
		n += len(b)
		return err
	}); err != nil || n == 0 {
		t.Fatalf("fetch: %d bytes, %v", n, err)
	}
	c.Close()
	for _, m := range h.srv.Messages(t, h.user, "INBOX") {
		if m.Seen {
			t.Fatalf("%s is \\Seen after a fetch", m.MessageID)
		}
	}
}

// TestDovecotNoChangeSyncCommands: an incremental sync with nothing new
// costs LOGIN, SELECT and LOGOUT and nothing else on Dovecot (whose
// greeting and LOGIN answer carry the capabilities, so no CAPABILITY
// command): with the TCP connect, the TLS handshake and the greeting,
// about six round trips per mailbox and cycle. It guards the fleet's
// per-mailbox cost against an extra command.
func TestDovecotNoChangeSyncCommands(t *testing.T) {
	ctx := testCtx(t)
	h := newDovecot(t, dovecottest.Options{}, mimap.ImplicitTLS)
	h.srv.Deliver(t, h.user, "INBOX", mail(1, "already synced"))
	log := &commandLog{}
	h.conn = connection(t, h.srv.IMAPAddr)
	h.conn.User = h.user
	h.opts = mimap.Options{Password: dovecotPassword, Security: mimap.Plaintext, AllowPlaintextLogin: true, DialContext: log.dial}
	first := h.connector(t)
	l, err := first.List(ctx, "")
	if err != nil || len(l.Messages) != 1 {
		t.Fatalf("first List: %v, %v", l, err)
	}
	first.Close()
	log.reset()
	c := h.connector(t)
	l2, err := c.List(ctx, l.Cursor)
	if err != nil || len(l2.Messages) != 0 || l2.Cursor != l.Cursor {
		t.Fatalf("incremental List: %+v, %v", l2, err)
	}
	c.Close()
	if got, want := log.names(), []string{"LOGIN", "SELECT", "LOGOUT"}; !slices.Equal(got, want) {
		t.Errorf("commands of a no-change sync: %v, want %v", got, want)
	}
}

// TestDovecotNoChangeSyncGoroutines: a connector's session with nothing
// new starts one goroutine, go-imap's reader. The watch over each
// operation, the close and its bound run on timers and context.AfterFunc,
// not on goroutines of their own: every goroutine costs a trip through the
// scheduler and often a thread's wake-up, a measurable share of a fleet
// cycle's CPU (scripts/bench-fleet.sh prints goroutines per connection).
func TestDovecotNoChangeSyncGoroutines(t *testing.T) {
	ctx := testCtx(t)
	h := newDovecot(t, dovecottest.Options{}, mimap.ImplicitTLS)
	h.srv.Deliver(t, h.user, "INBOX", mail(1, "already synced"))
	first := h.connector(t)
	l, err := first.List(ctx, "")
	if err != nil || len(l.Messages) != 1 {
		t.Fatalf("first List: %v, %v", l, err)
	}
	first.Close()
	const sessions = 10
	before := goroutinesStarted()
	for range sessions {
		c := h.connector(t)
		l2, err := c.List(ctx, l.Cursor)
		if err != nil || len(l2.Messages) != 0 {
			t.Fatalf("incremental List: %+v, %v", l2, err)
		}
		c.Close()
	}
	if n := goroutinesStarted() - before; n > sessions+2 {
		t.Errorf("%d no-change sessions started %d goroutines, want at most one each (go-imap's reader)", sessions, n)
	}
}

// goroutinesStarted is the number of goroutines the process started so far.
func goroutinesStarted() uint64 {
	s := []metrics.Sample{{Name: "/sched/goroutines-created:goroutines"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}
