package dovecottest

import (
	"bufio"
	"crypto/tls"
	"encoding/base64"
	"fmt"
	"net"
	"os"
	"strings"
	"testing"
	"time"
)

func TestMain(m *testing.M) {
	code := m.Run()
	StopAll()
	os.Exit(code)
}

// conn is a minimal line-based client for raw protocol checks.
type conn struct {
	t  *testing.T
	c  net.Conn
	br *bufio.Reader
}

func dialTLS(t *testing.T, s *Server, addr string) *conn {
	t.Helper()
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, &tls.Config{RootCAs: s.CAPool, ServerName: "localhost"})
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	return &conn{t: t, c: c, br: bufio.NewReader(c)}
}

func dialPlain(t *testing.T, addr string) *conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	return &conn{t: t, c: c, br: bufio.NewReader(c)}
}

func (c *conn) line() string {
	c.t.Helper()
	l, err := c.br.ReadString('\n')
	if err != nil {
		c.t.Fatalf("read: %v (got %q)", err, l)
	}
	return strings.TrimRight(l, "\r\n")
}

func (c *conn) send(s string) {
	c.t.Helper()
	if _, err := fmt.Fprintf(c.c, "%s\r\n", s); err != nil {
		c.t.Fatalf("write: %v", err)
	}
}

// imapCmd sends a tagged command and returns the untagged lines and the
// tagged completion line.
func (c *conn) imapCmd(tag, cmd string) (untagged []string, done string) {
	c.t.Helper()
	c.send(tag + " " + cmd)
	for {
		l := c.line()
		if strings.HasPrefix(l, tag+" ") {
			return untagged, l
		}
		untagged = append(untagged, l)
	}
}

const testMsg = "From: a@example.com\r\nTo: b@example.com\r\nSubject: hello\r\nMessage-ID: <%s>\r\nDate: Thu, 26 Nov 2026 10:00:00 +0000\r\n\r\nbody %s\r\n"

func msg(id string) []byte { return []byte(fmt.Sprintf(testMsg, id, id)) }

func TestIMAPSLoginSelect(t *testing.T) {
	s := Shared(t, Options{})
	user := s.AddUser(t, t.Name(), "pw-imap")
	if user != "testimapsloginselect" {
		t.Fatalf("login = %q", user)
	}
	s.Deliver(t, user, "INBOX", msg("one@example.com"))

	c := dialTLS(t, s, s.IMAPSAddr)
	if l := c.line(); !strings.HasPrefix(l, "* OK") {
		t.Fatalf("greeting %q", l)
	}
	if _, done := c.imapCmd("a", "LOGIN "+user+" pw-imap"); !strings.HasPrefix(done, "a OK") {
		t.Fatalf("LOGIN: %q", done)
	}
	un, done := c.imapCmd("b", "SELECT INBOX")
	if !strings.HasPrefix(done, "b OK") {
		t.Fatalf("SELECT: %q", done)
	}
	if !contains(un, "* 1 EXISTS") {
		t.Fatalf("SELECT untagged %q, want * 1 EXISTS", un)
	}
	un, done = c.imapCmd("c", "UID FETCH 1:* (FLAGS BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])")
	if !strings.HasPrefix(done, "c OK") || !strings.Contains(strings.Join(un, "\n"), "<one@example.com>") {
		t.Fatalf("FETCH: %q %q", un, done)
	}
	// Mark it read and check the Maildir flag.
	if _, done = c.imapCmd("d", `UID STORE 1 +FLAGS (\Seen)`); !strings.HasPrefix(done, "d OK") {
		t.Fatalf("STORE: %q", done)
	}
	ms := s.Messages(t, user, "")
	if len(ms) != 1 || !ms[0].Seen || ms[0].Deleted || ms[0].MessageID != "one@example.com" {
		t.Fatalf("Messages = %+v", ms)
	}
	// MOVE is advertised by default and moves into a Maildir++ folder.
	if _, done = c.imapCmd("e", "CREATE Processed"); !strings.HasPrefix(done, "e OK") {
		t.Fatalf("CREATE: %q", done)
	}
	if _, done = c.imapCmd("g", "UID MOVE 1 Processed"); !strings.HasPrefix(done, "g OK") {
		t.Fatalf("MOVE: %q", done)
	}
	if ms := s.Messages(t, user, "INBOX"); len(ms) != 0 {
		t.Fatalf("INBOX after MOVE = %+v", ms)
	}
	ms = s.Messages(t, user, "Processed")
	if len(ms) != 1 || ms[0].MessageID != "one@example.com" || !ms[0].Seen || ms[0].Folder != "Processed" {
		t.Fatalf("Processed after MOVE = %+v", ms)
	}
}

func contains(lines []string, want string) bool {
	for _, l := range lines {
		if l == want {
			return true
		}
	}
	return false
}

func TestPOP3S(t *testing.T) {
	s := Shared(t, Options{})
	user := s.AddUser(t, t.Name(), "pw-pop")
	s.Deliver(t, user, "", msg("p1@example.com"))
	s.Deliver(t, user, "", msg("p2@example.com"))

	c := dialTLS(t, s, s.POP3SAddr)
	if l := c.line(); !strings.HasPrefix(l, "+OK") {
		t.Fatalf("greeting %q", l)
	}
	c.send("USER " + user)
	if l := c.line(); !strings.HasPrefix(l, "+OK") {
		t.Fatalf("USER: %q", l)
	}
	c.send("PASS pw-pop")
	if l := c.line(); !strings.HasPrefix(l, "+OK") {
		t.Fatalf("PASS: %q", l)
	}
	c.send("STAT")
	l := c.line()
	want := fmt.Sprintf("+OK 2 %d", len(msg("p1@example.com"))+len(msg("p2@example.com")))
	if l != want {
		t.Fatalf("STAT = %q, want %q", l, want)
	}
	c.send("QUIT")
	c.line()
}

func TestWrongPasswordFast(t *testing.T) {
	s := Shared(t, Options{})
	user := s.AddUser(t, t.Name(), "right")
	c := dialTLS(t, s, s.IMAPSAddr)
	c.line()
	for i := 0; i < 3; i++ {
		start := time.Now()
		_, done := c.imapCmd("a", "LOGIN "+user+" wrong")
		if el := time.Since(start); el > time.Second {
			t.Errorf("failed LOGIN took %v", el)
		}
		if !strings.HasPrefix(done, "a NO") {
			t.Fatalf("wrong password: %q", done)
		}
	}
	// No auth penalty for the next, correct login.
	start := time.Now()
	if _, done := c.imapCmd("b", "LOGIN "+user+" right"); !strings.HasPrefix(done, "b OK") {
		t.Fatalf("LOGIN: %q", done)
	}
	if el := time.Since(start); el > time.Second {
		t.Errorf("correct LOGIN after failures took %v", el)
	}
}

func TestPlaintextRefused(t *testing.T) {
	s := Shared(t, Options{})
	user := s.AddUser(t, t.Name(), "pw")
	if s.IMAPNonLocalAddr == "" {
		t.Skip("127.0.0.2 not available")
	}
	// Loopback-to-same-IP counts as secured for Dovecot: plaintext works.
	lc := dialPlain(t, s.IMAPAddr)
	if l := lc.line(); strings.Contains(l, "LOGINDISABLED") {
		t.Fatalf("greeting on %s: %q", s.IMAPAddr, l)
	}
	c := dialPlain(t, s.IMAPNonLocalAddr)
	if l := c.line(); !strings.Contains(l, "STARTTLS") || !strings.Contains(l, "LOGINDISABLED") {
		t.Fatalf("greeting %q, want STARTTLS and LOGINDISABLED", l)
	}
	if _, done := c.imapCmd("a", "LOGIN "+user+" pw"); !strings.HasPrefix(done, "a NO") && !strings.HasPrefix(done, "a BAD") {
		t.Fatalf("plaintext LOGIN: %q", done)
	}
	// STARTTLS upgrades and then LOGIN works.
	if _, done := c.imapCmd("b", "STARTTLS"); !strings.HasPrefix(done, "b OK") {
		t.Fatalf("STARTTLS: %q", done)
	}
	tc := tls.Client(c.c, &tls.Config{RootCAs: s.CAPool, ServerName: "localhost"})
	if err := tc.Handshake(); err != nil {
		t.Fatalf("TLS handshake: %v", err)
	}
	c = &conn{t: t, c: tc, br: bufio.NewReader(tc)}
	if _, done := c.imapCmd("c", "LOGIN "+user+" pw"); !strings.HasPrefix(done, "c OK") {
		t.Fatalf("LOGIN after STARTTLS: %q", done)
	}
}

func TestPlaintextAllowed(t *testing.T) {
	s := Shared(t, Options{AllowPlaintextAuth: true})
	user := s.AddUser(t, t.Name(), "pw")
	s.Deliver(t, user, "", msg("x@example.com"))
	addr, popAddr := s.IMAPNonLocalAddr, s.POP3NonLocalAddr
	if addr == "" {
		addr, popAddr = s.IMAPAddr, s.POP3Addr
	}
	c := dialPlain(t, addr)
	if l := c.line(); strings.Contains(l, "LOGINDISABLED") {
		t.Fatalf("greeting %q", l)
	}
	if _, done := c.imapCmd("a", "LOGIN "+user+" pw"); !strings.HasPrefix(done, "a OK") {
		t.Fatalf("plaintext LOGIN: %q", done)
	}
	p := dialPlain(t, popAddr)
	p.line()
	p.send("USER " + user)
	p.line()
	p.send("PASS pw")
	if l := p.line(); !strings.HasPrefix(l, "+OK") {
		t.Fatalf("POP3 plaintext PASS: %q", l)
	}
	p.send("STAT")
	if l := p.line(); !strings.HasPrefix(l, "+OK 1 ") {
		t.Fatalf("STAT %q", l)
	}
}

// loginCaps logs in over IMAPS and returns the CAPABILITY response.
func loginCaps(t *testing.T, s *Server) []string {
	t.Helper()
	user := s.AddUser(t, t.Name(), "pw")
	c := dialTLS(t, s, s.IMAPSAddr)
	c.line()
	if _, done := c.imapCmd("a", "LOGIN "+user+" pw"); !strings.HasPrefix(done, "a OK") {
		t.Fatalf("LOGIN: %q", done)
	}
	un, done := c.imapCmd("b", "CAPABILITY")
	if !strings.HasPrefix(done, "b OK") || len(un) != 1 || !strings.HasPrefix(un[0], "* CAPABILITY ") {
		t.Fatalf("CAPABILITY: %q %q", un, done)
	}
	return strings.Fields(strings.TrimPrefix(un[0], "* CAPABILITY "))
}

func TestDisableMove(t *testing.T) {
	def := loginCaps(t, Shared(t, Options{}))
	noMove := loginCaps(t, Shared(t, Options{DisableMove: true}))
	var want []string
	sawMove := false
	for _, c := range def {
		if c == "MOVE" {
			sawMove = true
			continue
		}
		want = append(want, c)
	}
	if !sawMove {
		t.Fatalf("default capabilities lack MOVE: %q", def)
	}
	if strings.Join(noMove, " ") != strings.Join(want, " ") {
		t.Fatalf("DisableMove capabilities\n got %q\nwant %q (default minus MOVE)", noMove, want)
	}
}

func TestOAuthXOAUTH2(t *testing.T) {
	s := Shared(t, Options{OAuth: true})
	user := s.AddUser(t, t.Name(), "password-not-for-oauth")
	other := s.AddUser(t, t.Name()+"-other", "pw2")
	s.AddToken(user, "good-token")

	xoauth := func(u, tok string) string {
		return base64.StdEncoding.EncodeToString([]byte("user=" + u + "\x01auth=Bearer " + tok + "\x01\x01"))
	}
	c := dialTLS(t, s, s.IMAPSAddr)
	if l := c.line(); !strings.Contains(l, "AUTH=XOAUTH2") || !strings.Contains(l, "AUTH=OAUTHBEARER") {
		t.Fatalf("greeting %q lacks OAuth mechanisms", l)
	}
	// A bad token: Dovecot sends a "+ <base64 JSON>" error challenge that
	// the client answers with an empty line.
	badLogin := func(tag, u, tok string) {
		t.Helper()
		c.send(tag + " AUTHENTICATE XOAUTH2 " + xoauth(u, tok))
		l := c.line()
		if strings.HasPrefix(l, "+ ") {
			c.send("")
			l = c.line()
		}
		if !strings.HasPrefix(l, tag+" NO") {
			t.Fatalf("bad token %q for %q: %q", tok, u, l)
		}
	}
	badLogin("a", user, "bad-token")
	badLogin("b", other, "good-token") // token of another user
	// A password is not a token: the password never reaches the endpoint.
	calls := s.IntrospectionCalls()
	if _, done := c.imapCmd("c", "LOGIN "+other+" pw2"); !strings.HasPrefix(done, "c OK") {
		t.Fatalf("password LOGIN on OAuth server: %q", done)
	}
	if n := s.IntrospectionCalls(); n != calls {
		t.Fatalf("password login made %d introspection calls", n-calls)
	}

	c2 := dialTLS(t, s, s.IMAPSAddr)
	c2.line()
	if _, done := c2.imapCmd("a", "AUTHENTICATE XOAUTH2 "+xoauth(user, "good-token")); !strings.HasPrefix(done, "a OK") {
		t.Fatalf("good token: %q", done)
	}
	if _, done := c2.imapCmd("b", "SELECT INBOX"); !strings.HasPrefix(done, "b OK") {
		t.Fatalf("SELECT: %q", done)
	}

	// POP3 with a revoked token fails.
	s.RevokeToken("good-token")
	p := dialTLS(t, s, s.POP3SAddr)
	p.line()
	p.send("AUTH XOAUTH2 " + xoauth(user, "good-token"))
	l := p.line()
	if strings.HasPrefix(l, "+ ") {
		p.send("")
		l = p.line()
	}
	if !strings.HasPrefix(l, "-ERR") {
		t.Fatalf("revoked token on POP3: %q", l)
	}
}

func TestRestart(t *testing.T) {
	s := Start(t, Options{})
	user := s.AddUser(t, "restart", "pw")
	s.Deliver(t, user, "", msg("r@example.com"))
	imaps := s.IMAPSAddr
	s.Restart(t)
	if s.IMAPSAddr != imaps {
		t.Fatalf("address changed: %s -> %s", imaps, s.IMAPSAddr)
	}
	c := dialTLS(t, s, s.IMAPSAddr)
	c.line()
	if _, done := c.imapCmd("a", "LOGIN "+user+" pw"); !strings.HasPrefix(done, "a OK") {
		t.Fatalf("LOGIN after restart: %q", done)
	}
	un, _ := c.imapCmd("b", "SELECT INBOX")
	if !contains(un, "* 1 EXISTS") {
		t.Fatalf("SELECT after restart: %q", un)
	}
	dir := s.Dir
	s.Stop()
	s.Stop()
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Fatalf("Dir %s still exists after Stop: %v", dir, err)
	}
	if _, err := net.DialTimeout("tcp", s.IMAPSAddr, time.Second); err == nil {
		t.Fatalf("still listening after Stop")
	}
}
