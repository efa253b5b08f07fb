package pop3_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/mailsync/mailsync"
	"github.com/mailsync/mailsync/internal/cutproxy"
	"github.com/mailsync/mailsync/internal/dovecottest"
	"github.com/mailsync/mailsync/pop3"
)

// testMessage is a message with a unique Message-ID, a body of about
// bodySize bytes and lines that start with dots (to exercise byte-stuffing).
func testMessage(id string, bodySize int) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "From: Alice <alice@example.com>\r\nTo: help@example.com\r\nSubject: ticket %s\r\nMessage-ID: <%s@example.com>\r\nDate: Thu, 26 Nov 2026 10:00:00 +0000\r\n\r\n", id, id)
	b.WriteString(".starts with a dot\r\n..two dots\r\n.\r\nx\r\n")
	for i := 0; b.Len() < bodySize; i++ {
		fmt.Fprintf(&b, "line %d of %s: the quick brown fox jumps over the lazy dog\r\n", i, id)
	}
	return b.Bytes()
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// fetchAll lists and fetches everything, returning key → SHA-256 of the body.
func fetchAll(t *testing.T, c *pop3.Connector) (*mailsync.Listing, map[string][32]byte) {
	t.Helper()
	ctx := ctxT(t)
	l, err := c.List(ctx, "")
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	got := map[string][32]byte{}
	err = c.Fetch(ctx, l.Messages, func(ref mailsync.MessageRef, r io.Reader) error {
		b, err := io.ReadAll(r)
		if err != nil {
			return err
		}
		if int64(len(b)) != ref.Size {
			t.Errorf("%s: got %d bytes, LIST said %d", ref.Key, len(b), ref.Size)
		}
		got[ref.Key] = sha256.Sum256(b)
		return nil
	})
	if err != nil {
		t.Fatalf("Fetch: %v", err)
	}
	return l, got
}

// TestDovecotRoundTrip checks every mode against Dovecot: the bytes fetched
// are the bytes delivered, dot-stuffed lines included, in delivery order,
// and Delete removes exactly the acknowledged messages.
func TestDovecotRoundTrip(t *testing.T) {
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			h := newDovecotHarness(t, m)
			want := map[[32]byte]string{}
			var order []string
			for i, size := range []int{0, 100, 5000, 300_000} {
				id := fmt.Sprintf("rt%d", i)
				raw := testMessage(id, size)
				h.srv.Deliver(t, h.user, "", raw)
				want[sha256.Sum256(raw)] = id
				order = append(order, id)
			}
			c, err := pop3.New(h.conn, h.opts)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			l, got := fetchAll(t, c)
			if !l.Complete || len(l.Messages) != 4 || len(got) != 4 {
				t.Fatalf("listing %+v, fetched %d", l, len(got))
			}
			for i, ref := range l.Messages {
				if id := want[got[ref.Key]]; id != order[i] {
					t.Errorf("message %d (%s): content is %q, want %q", i, ref.Key, id, order[i])
				}
			}
			ctx := ctxT(t)
			if err := c.Ack(ctx, l.Messages[:2], mailsync.PostAction{Kind: mailsync.Delete}); err != nil {
				t.Fatalf("Ack delete: %v", err)
			}
			// Repeating the ack is harmless: the messages are gone.
			if err := c.Ack(ctx, l.Messages[:2], mailsync.PostAction{Kind: mailsync.Delete}); err != nil {
				t.Fatalf("repeated Ack delete: %v", err)
			}
			left := h.srv.Messages(t, h.user, "")
			if len(left) != 2 || left[0].MessageID != "rt2@example.com" || left[1].MessageID != "rt3@example.com" {
				t.Fatalf("after deleting the first two, the maildrop has %+v", left)
			}
			l2, err := c.List(ctx, "")
			if err != nil {
				t.Fatal(err)
			}
			if len(l2.Messages) != 2 || l2.Messages[0] != l.Messages[2] || l2.Messages[1] != l.Messages[3] {
				t.Fatalf("keys not stable after delete: before %v, after %v", l.Messages, l2.Messages)
			}
			for _, k := range []mailsync.ActionKind{mailsync.MarkRead, mailsync.MoveToFolder} {
				err := c.Ack(ctx, l2.Messages, mailsync.PostAction{Kind: k, Folder: map[bool]string{true: "Done"}[k == mailsync.MoveToFolder]})
				if !errors.Is(err, mailsync.ErrUnsupported) {
					t.Errorf("Ack %s: %v, want ErrUnsupported", k, err)
				}
			}
			res, err := pop3.Check(ctx, h.conn, h.opts)
			if err != nil {
				t.Fatalf("Check: %v", err)
			}
			if res.Messages != 2 || res.Security != m.security || res.Auth != "USER/PASS" || (m.security != pop3.Plaintext) != (res.TLSVersion != "") {
				t.Errorf("Check = %+v", res)
			}
		})
	}
}

func TestDovecotWrongPassword(t *testing.T) {
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			h := newDovecotHarness(t, m)
			h.opts.Password = "not-the-password"
			c, err := pop3.New(h.conn, h.opts)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			start := time.Now()
			_, err = c.List(ctxT(t), "")
			if !errors.Is(err, mailsync.ErrAuth) || mailsync.Temporary(err) {
				t.Fatalf("List with a wrong password: %v, want ErrAuth (not temporary)", err)
			}
			if strings.Contains(err.Error(), "not-the-password") {
				t.Fatalf("error shows the password: %v", err)
			}
			if d := time.Since(start); d > 5*time.Second {
				t.Errorf("took %s", d)
			}
			_, err = pop3.Check(ctxT(t), h.conn, h.opts)
			if !errors.Is(err, mailsync.ErrAuth) {
				t.Fatalf("Check: %v, want ErrAuth", err)
			}
		})
	}
}

// TestDovecotPlaintextServerRefuses: opting in to plaintext against a
// server that forbids plaintext logins (Dovecot seen from a "remote" IP) is
// an auth failure, not a hang; StartTLS on the same port works.
func TestDovecotPlaintextServerRefuses(t *testing.T) {
	srv := dovecottest.Shared(t, dovecottest.Options{})
	if srv.POP3NonLocalAddr == "" {
		t.Skip("127.0.0.2 not available")
	}
	user := srv.AddUser(t, t.Name(), "pw")
	conn := connection(t, user, srv.POP3NonLocalAddr)
	_, err := pop3.Check(ctxT(t), conn, pop3.Options{Password: "pw", Security: pop3.Plaintext, AllowPlaintextLogin: true})
	if !errors.Is(err, mailsync.ErrAuth) {
		t.Fatalf("plaintext: got %v, want ErrAuth", err)
	}
	t.Log(err)
	if _, err := pop3.Check(ctxT(t), conn, pop3.Options{Password: "pw", Security: pop3.StartTLS, RootCAs: srv.CAPool}); err != nil {
		t.Fatalf("STLS: %v", err)
	}
}

func TestPlaintextNeedsOptIn(t *testing.T) {
	conn := mailsync.Connection{Name: "p", Enabled: true, User: "u", Server: "127.0.0.1", Port: 110, Protocol: mailsync.POP3, ConnectedWith: []string{"t"}}
	_, err := pop3.New(conn, pop3.Options{Password: "pw", Security: pop3.Plaintext})
	if !errors.Is(err, mailsync.ErrPlaintextRefused) {
		t.Fatalf("New: %v, want ErrPlaintextRefused", err)
	}
	_, err = pop3.Check(context.Background(), conn, pop3.Options{Password: "pw", Security: pop3.Plaintext})
	if !errors.Is(err, mailsync.ErrPlaintextRefused) {
		t.Fatalf("Check: %v, want ErrPlaintextRefused", err)
	}
}

func TestDovecotUntrustedCA(t *testing.T) {
	for _, m := range modes[:2] {
		t.Run(m.name, func(t *testing.T) {
			h := newDovecotHarness(t, m)
			h.opts.RootCAs = x509.NewCertPool() // trusts nothing
			c, err := pop3.New(h.conn, h.opts)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			_, err = c.List(ctxT(t), "")
			if !errors.Is(err, mailsync.ErrTLS) || errors.Is(err, mailsync.ErrConnection) {
				t.Fatalf("List: %v, want ErrTLS only", err)
			}
			// A wrong host name fails too, even with the right CA.
			h.opts.RootCAs = h.srv.CAPool
			h.opts.TLSConfig = &tls.Config{ServerName: "mail.example.org"}
			res, err := pop3.Check(ctxT(t), h.conn, h.opts)
			if !errors.Is(err, mailsync.ErrTLS) {
				t.Fatalf("Check against a certificate for another host: %v, %v; want ErrTLS", res, err)
			}
		})
	}
}

func TestCRLFInjectionRejected(t *testing.T) {
	conn := mailsync.Connection{Name: "p", Enabled: true, User: "u", Server: "127.0.0.1", Protocol: mailsync.POP3, ConnectedWith: []string{"t"}}
	for _, pw := range []string{"pw\r\nDELE 1", "pw\nQUIT", "pw\rx", "pw\x00"} {
		_, err := pop3.New(conn, pop3.Options{Password: mailsync.Secret(pw)})
		var ce *mailsync.ConfigError
		if !errors.As(err, &ce) || !ce.Field("password") || !errors.Is(err, mailsync.ErrInvalidConfig) {
			t.Errorf("password %q: %v, want a ConfigError on password", pw, err)
		} else if strings.Contains(err.Error(), "pw") {
			t.Errorf("error shows the password: %v", err)
		}
		if _, err := pop3.Check(context.Background(), conn, pop3.Options{Password: mailsync.Secret(pw)}); !errors.Is(err, mailsync.ErrInvalidConfig) {
			t.Errorf("Check with password %q: %v", pw, err)
		}
	}
	bad := conn
	bad.User = "u\r\nDELE 1"
	if _, err := pop3.New(bad, pop3.Options{Password: "pw"}); !errors.Is(err, mailsync.ErrInvalidConfig) {
		t.Errorf("user with CRLF: %v", err)
	}
}

// TestDovecotInUse runs two sessions on one maildrop with Dovecot's
// pop3_lock_session, which answers the second login -ERR [IN-USE].
func TestDovecotInUse(t *testing.T) {
	srv := dovecottest.Start(t, dovecottest.Options{})
	f, err := os.OpenFile(srv.ConfigFile, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	_, err = f.WriteString("pop3_lock_session = yes\n")
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	srv.Restart(t)
	user := srv.AddUser(t, "inuse", "pw")
	srv.Deliver(t, user, "", testMessage("inuse", 10))
	opts := pop3.Options{Password: "pw", RootCAs: srv.CAPool}
	first, err := pop3.New(connection(t, user, srv.POP3SAddr), opts)
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close()
	if _, err := first.List(ctxT(t), ""); err != nil {
		t.Fatal(err)
	}
	second, err := pop3.New(connection(t, user, srv.POP3SAddr), opts)
	if err != nil {
		t.Fatal(err)
	}
	defer second.Close()
	_, err = second.List(ctxT(t), "")
	if !errors.Is(err, mailsync.ErrMailboxBusy) || !mailsync.Temporary(err) || errors.Is(err, mailsync.ErrAuth) {
		t.Fatalf("second session: %v, want ErrMailboxBusy", err)
	}
	if _, err := pop3.Check(ctxT(t), connection(t, user, srv.POP3SAddr), opts); !errors.Is(err, mailsync.ErrMailboxBusy) {
		t.Fatalf("Check while locked: %v, want ErrMailboxBusy", err)
	}
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}
	// The lock goes with the first session's QUIT.
	deadline := time.Now().Add(5 * time.Second)
	for {
		l, err := second.List(ctxT(t), "")
		if err == nil {
			if len(l.Messages) != 1 {
				t.Fatalf("listing %+v", l)
			}
			break
		}
		if !errors.Is(err, mailsync.ErrMailboxBusy) || time.Now().After(deadline) {
			t.Fatalf("after the first session quit: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestDovecotXOAUTH2(t *testing.T) {
	for _, m := range []mode{
		{"POP3S", dovecottest.Options{OAuth: true}, pop3.ImplicitTLS, func(s *dovecottest.Server) string { return s.POP3SAddr }},
		{"STLS", dovecottest.Options{OAuth: true}, pop3.StartTLS, func(s *dovecottest.Server) string { return s.POP3Addr }},
	} {
		t.Run(m.name, func(t *testing.T) {
			srv := dovecottest.Shared(t, m.opts)
			user := srv.AddUser(t, t.Name(), "unused-password")
			srv.AddToken(user, "good-token-123")
			srv.Deliver(t, user, "", testMessage("oauth", 10))
			conn := connection(t, user, m.addr(srv))
			good := pop3.Options{TokenSource: oauth2.StaticTokenSource(&oauth2.Token{AccessToken: "good-token-123"}), Security: m.security, RootCAs: srv.CAPool}
			c, err := pop3.New(conn, good)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			l, got := fetchAll(t, c)
			if len(l.Messages) != 1 || len(got) != 1 {
				t.Fatalf("listing %+v", l)
			}
			res, err := pop3.Check(ctxT(t), conn, good)
			if err != nil || res.Auth != "XOAUTH2" {
				t.Fatalf("Check: %+v, %v", res, err)
			}

			bad := good
			bad.TokenSource = oauth2.StaticTokenSource(&oauth2.Token{AccessToken: "bad-token-456"})
			start := time.Now()
			_, err = pop3.Check(ctxT(t), conn, bad)
			if !errors.Is(err, mailsync.ErrAuth) {
				t.Fatalf("bad token: %v, want ErrAuth", err)
			}
			if strings.Contains(err.Error(), "bad-token-456") {
				t.Fatalf("error shows the token: %v", err)
			}
			if d := time.Since(start); d > 5*time.Second {
				t.Errorf("bad token took %s", d)
			}
		})
	}
}

// TestDovecotCutInRETR cuts the connection in the middle of a RETR: Fetch
// reports ErrConnection and the next call reconnects and goes on.
func TestDovecotCutInRETR(t *testing.T) {
	srv := dovecottest.Shared(t, dovecottest.Options{})
	user := srv.AddUser(t, t.Name(), "pw")
	for i := 0; i < 3; i++ {
		srv.Deliver(t, user, "", testMessage(fmt.Sprintf("cut%d", i), 200_000))
	}
	p := cutproxy.Start(t, srv.POP3SAddr)
	c, err := pop3.New(connection(t, user, p.Addr), pop3.Options{Password: "pw", RootCAs: srv.CAPool, Security: pop3.ImplicitTLS})
	if err != nil {
		t.Fatal(err)
	}
	c.Connection()
	defer c.Close()
	p.CutAfter(300_000) // in the middle of the second message
	ctx := ctxT(t)
	l, err := c.List(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	var done []string
	err = c.Fetch(ctx, l.Messages, func(ref mailsync.MessageRef, r io.Reader) error {
		if _, err := io.Copy(io.Discard, r); err != nil {
			return err
		}
		done = append(done, ref.Key)
		return nil
	})
	if !errors.Is(err, mailsync.ErrConnection) || !mailsync.Temporary(err) {
		t.Fatalf("Fetch across a cut: %v, want ErrConnection", err)
	}
	if len(done) != 1 {
		t.Fatalf("fetched %d messages before the cut, want 1", len(done))
	}
	// The next call reconnects and fetches the rest.
	err = c.Fetch(ctx, l.Messages[1:], func(ref mailsync.MessageRef, r io.Reader) error {
		n, err := io.Copy(io.Discard, r)
		if n != ref.Size {
			t.Errorf("%s: %d bytes, want %d", ref.Key, n, ref.Size)
		}
		done = append(done, ref.Key)
		return err
	})
	if err != nil || len(done) != 3 {
		t.Fatalf("Fetch after the cut: %v, %d done", err, len(done))
	}
	if p.Conns() != 2 || p.Cuts() != 1 {
		t.Errorf("proxy saw %d connections and %d cuts", p.Conns(), p.Cuts())
	}
}
