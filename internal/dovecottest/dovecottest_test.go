package dovecottest

import (
	"bufio"
	"crypto/tls"
	"encoding/base64"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
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
	if !strings.HasPrefix(user, "testimapsloginselect") { // "-2"… under -count
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
		// Dovecot answers a failure after ~0.5 s; its penalty would be
		// 2 s, then 4, 8, 15. Below 1.8 s tells them apart under load.
		if el := time.Since(start); el > 1800*time.Millisecond {
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
	if el := time.Since(start); el > 1800*time.Millisecond {
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
	if _, err := os.Stat(dir); os.Getenv("DOVECOTTEST_KEEP") == "" && !os.IsNotExist(err) {
		t.Fatalf("Dir %s still exists after Stop: %v", dir, err)
	}
	if _, err := net.DialTimeout("tcp", s.IMAPSAddr, time.Second); err == nil {
		t.Fatalf("still listening after Stop")
	}
}

func TestAddUserNames(t *testing.T) {
	s := Shared(t, Options{})
	a := s.AddUser(t, "Test/Some Name", "pw-a")
	b := s.AddUser(t, "Test/Some Name", "pw-b")
	// Under -count=N earlier runs took "test-some-name" and some suffixes.
	if !regexp.MustCompile(`^test-some-name(-\d+)?$`).MatchString(a) || !regexp.MustCompile(`^test-some-name-\d+$`).MatchString(b) || a == b {
		t.Fatalf("logins %q, %q", a, b)
	}
	for in, want := range map[string]string{
		"../Ünïcode: x@Example.COM": "n-code--x@example.com",
		"///":                       "user",
		probeUser:                   "user",
		"TestX/sub_test#01":         "testx-sub_test-01",
		strings.Repeat("a", 100):    strings.Repeat("a", 80),
		"alice+tag@example.org":     "alice+tag@example.org",
	} {
		if got := sanitizeUser(in); got != want {
			t.Errorf("sanitizeUser(%q) = %q, want %q", in, got, want)
		}
	}
	for login, pw := range map[string]string{a: "pw-a", b: "pw-b"} {
		c := dialTLS(t, s, s.IMAPSAddr)
		c.line()
		if _, done := c.imapCmd("a", "LOGIN "+login+" "+pw); !strings.HasPrefix(done, "a OK") {
			t.Fatalf("LOGIN %s: %q", login, done)
		}
		// The other user's password does not work.
		c2 := dialTLS(t, s, s.IMAPSAddr)
		c2.line()
		other := "pw-a"
		if pw == "pw-a" {
			other = "pw-b"
		}
		if _, done := c2.imapCmd("a", "LOGIN "+login+" "+other); !strings.HasPrefix(done, "a NO") {
			t.Fatalf("LOGIN %s with the other password: %q", login, done)
		}
	}
}

func TestDeliverFoldersOrderFlags(t *testing.T) {
	s := Shared(t, Options{})
	user := s.AddUser(t, t.Name(), "pw")
	for i := 1; i <= 3; i++ {
		s.Deliver(t, user, "INBOX", msg(fmt.Sprintf("m%d@example.com", i)))
	}
	s.Deliver(t, user, "Processed", msg("moved@example.com"))
	s.Deliver(t, user, "Archive/2026", msg("deep@example.com"))

	c := dialTLS(t, s, s.IMAPSAddr)
	c.line()
	if _, done := c.imapCmd("a", "LOGIN "+user+" pw"); !strings.HasPrefix(done, "a OK") {
		t.Fatalf("LOGIN: %q", done)
	}
	un, _ := c.imapCmd("b", `LIST "" "*"`)
	list := strings.Join(un, "\n")
	for _, want := range []string{`"." Processed`, `"." Archive.2026`, `"." INBOX`} {
		if !strings.Contains(list, want) {
			t.Errorf("LIST lacks %s:\n%s", want, list)
		}
	}
	if un, _ = c.imapCmd("c", "STATUS Processed (MESSAGES)"); !contains(un, "* STATUS Processed (MESSAGES 1)") {
		t.Errorf("STATUS Processed: %q", un)
	}
	c.imapCmd("d", "SELECT INBOX")
	un, _ = c.imapCmd("e", "UID FETCH 1:* (BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])")
	ids := regexp.MustCompile(`<(m\d)@example\.com>`).FindAllStringSubmatch(strings.Join(un, "\n"), -1)
	var order []string
	for _, m := range ids {
		order = append(order, m[1])
	}
	if strings.Join(order, ",") != "m1,m2,m3" {
		t.Fatalf("IMAP UID order %q, want m1,m2,m3", order)
	}
	// Flag changes and expunges show in Messages.
	c.imapCmd("f", `UID STORE 1 +FLAGS (\Seen)`)
	c.imapCmd("g", `UID STORE 2 +FLAGS (\Deleted)`)
	ms := s.Messages(t, user, "INBOX")
	if len(ms) != 3 {
		t.Fatalf("Messages = %+v", ms)
	}
	for i, m := range ms {
		wantID := fmt.Sprintf("m%d@example.com", i+1)
		if m.MessageID != wantID || m.Seen != (i == 0) || m.Deleted != (i == 1) || m.Folder != "INBOX" {
			t.Errorf("Messages[%d] = %+v", i, m)
		}
	}
	if _, done := c.imapCmd("h", "EXPUNGE"); !strings.HasPrefix(done, "h OK") {
		t.Fatalf("EXPUNGE: %q", done)
	}
	if ms = s.Messages(t, user, ""); len(ms) != 2 || ms[0].MessageID != "m1@example.com" || ms[1].MessageID != "m3@example.com" {
		t.Fatalf("after EXPUNGE: %+v", ms)
	}
	if ms = s.Messages(t, user, "Archive/2026"); len(ms) != 1 || ms[0].MessageID != "deep@example.com" {
		t.Fatalf("Archive/2026: %+v", ms)
	}
	if ms = s.Messages(t, user, "NoSuchFolder"); len(ms) != 0 {
		t.Fatalf("NoSuchFolder: %+v", ms)
	}

	// UIDVALIDITY changes, UIDs stay.
	c.imapCmd("i", "CLOSE")
	s.SetUIDValidity(t, user, "", 4242)
	if un, _ = c.imapCmd("j", "SELECT INBOX"); !contains(un, "* OK [UIDVALIDITY 4242] UIDs valid") {
		t.Fatalf("SELECT after SetUIDValidity: %q", un)
	}
	s.SetUIDValidity(t, user, "Archive/2026", 77)
	if out := s.Doveadm(t, "mailbox", "status", "-u", user, "uidvalidity messages", "Archive.2026"); !strings.Contains(out, "uidvalidity=77") || !strings.Contains(out, "messages=1") {
		t.Fatalf("doveadm mailbox status: %q", out)
	}
}

func TestSharedStoppedIsReplaced(t *testing.T) {
	opts := Options{AllowPlaintextAuth: true, DisableMove: true} // used by no other test
	s1 := Shared(t, opts)
	if s2 := Shared(t, opts); s2 != s1 {
		t.Fatal("Shared returned a second server for equal Options")
	}
	s1.Stop()
	s3 := Shared(t, opts)
	if s3 == s1 || s3.Dir == s1.Dir {
		t.Fatal("Shared returned the stopped server")
	}
	user := s3.AddUser(t, t.Name(), "pw")
	c := dialTLS(t, s3, s3.IMAPSAddr)
	c.line()
	if _, done := c.imapCmd("a", "LOGIN "+user+" pw"); !strings.HasPrefix(done, "a OK") {
		t.Fatalf("LOGIN on the replacement: %q", done)
	}
}

func TestPOP3STLSRequired(t *testing.T) {
	s := Shared(t, Options{})
	if s.POP3NonLocalAddr == "" {
		t.Skip("127.0.0.2 not available")
	}
	user := s.AddUser(t, t.Name(), "pw")
	s.Deliver(t, user, "", msg("stls@example.com"))
	c := dialPlain(t, s.POP3NonLocalAddr)
	c.line()
	c.send("CAPA")
	var capa []string
	for l := c.line(); l != "."; l = c.line() {
		capa = append(capa, l)
	}
	if !contains(capa, "STLS") {
		t.Fatalf("CAPA %q lacks STLS", capa)
	}
	c.send("USER " + user)
	if l := c.line(); !strings.HasPrefix(l, "-ERR") {
		t.Fatalf("USER before STLS: %q", l)
	}
	c.send("STLS")
	if l := c.line(); !strings.HasPrefix(l, "+OK") {
		t.Fatalf("STLS: %q", l)
	}
	tc := tls.Client(c.c, &tls.Config{RootCAs: s.CAPool, ServerName: "localhost"})
	if err := tc.Handshake(); err != nil {
		t.Fatalf("TLS handshake: %v", err)
	}
	c = &conn{t: t, c: tc, br: bufio.NewReader(tc)}
	c.send("USER " + user)
	c.line()
	c.send("PASS pw")
	if l := c.line(); !strings.HasPrefix(l, "+OK") {
		t.Fatalf("PASS after STLS: %q", l)
	}
	c.send("UIDL")
	if l := c.line(); !strings.HasPrefix(l, "+OK") {
		t.Fatalf("UIDL: %q", l)
	}
	n := 0
	for l := c.line(); l != "."; l = c.line() {
		n++
	}
	if n != 1 {
		t.Fatalf("UIDL listed %d messages", n)
	}
	// RETR must not mark the message read (pop3_no_flag_updates).
	c.send("RETR 1")
	for l := c.line(); l != "."; l = c.line() {
	}
	c.send("QUIT")
	c.line()
	if ms := s.Messages(t, user, ""); len(ms) != 1 || ms[0].Seen {
		t.Fatalf("after RETR+QUIT: %+v", ms)
	}
}

func TestOAuthBearer(t *testing.T) {
	s := Shared(t, Options{OAuth: true})
	user := s.AddUser(t, t.Name(), "pw-oauthbearer")
	s.AddToken(user, "bearer-token-1")
	host, port, _ := net.SplitHostPort(s.IMAPSAddr)
	payload := func(tok string) string {
		return base64.StdEncoding.EncodeToString([]byte("n,a=" + user + ",\x01host=" + host + "\x01port=" + port + "\x01auth=Bearer " + tok + "\x01\x01"))
	}
	c := dialTLS(t, s, s.IMAPSAddr)
	c.line()
	c.send("a AUTHENTICATE OAUTHBEARER " + payload("wrong"))
	l := c.line()
	if strings.HasPrefix(l, "+ ") {
		// RFC 7628: the client answers the error challenge with 0x01.
		c.send(base64.StdEncoding.EncodeToString([]byte{1}))
		l = c.line()
	}
	if !strings.HasPrefix(l, "a NO") {
		t.Fatalf("bad OAUTHBEARER token: %q", l)
	}
	if _, done := c.imapCmd("b", "AUTHENTICATE OAUTHBEARER "+payload("bearer-token-1")); !strings.HasPrefix(done, "b OK") {
		t.Fatalf("good OAUTHBEARER token: %q", done)
	}
	// POP3 takes XOAUTH2 on one line.
	p := dialTLS(t, s, s.POP3SAddr)
	p.line()
	p.send("AUTH XOAUTH2 " + base64.StdEncoding.EncodeToString([]byte("user="+user+"\x01auth=Bearer bearer-token-1\x01\x01")))
	if l := p.line(); !strings.HasPrefix(l, "+OK") {
		t.Fatalf("POP3 XOAUTH2: %q", l)
	}
	if s.IntrospectionCalls() == 0 {
		t.Fatal("no introspection calls recorded")
	}
}

// fakeTB records Skip/Fatal/Log calls; Skip and Fatal end the goroutine as
// the real ones do.
type fakeTB struct {
	testing.TB
	skipped, failed bool
	logs            []string
}

func (f *fakeTB) Helper() {}
func (f *fakeTB) Skip(args ...any) {
	f.skipped = true
	f.logs = append(f.logs, fmt.Sprint(args...))
	runtime.Goexit()
}
func (f *fakeTB) Fatal(args ...any) {
	f.failed = true
	f.logs = append(f.logs, fmt.Sprint(args...))
	runtime.Goexit()
}
func (f *fakeTB) Fatalf(format string, a ...any) { f.Fatal(fmt.Sprintf(format, a...)) }
func (f *fakeTB) Logf(format string, args ...any) {
	f.logs = append(f.logs, fmt.Sprintf(format, args...))
}
func (f *fakeTB) Cleanup(func()) {}

func runFake(f *fakeTB, fn func(testing.TB)) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		fn(f)
	}()
	<-done
}

func TestMissingBinary(t *testing.T) {
	t.Setenv("DOVECOTTEST_DOVECOT", "/nonexistent/dovecot")
	for _, ci := range []string{"", "true"} {
		t.Setenv("CI", ci)
		for name, start := range map[string]func(testing.TB){
			"Start":  func(tb testing.TB) { Start(tb, Options{}) },
			"Shared": func(tb testing.TB) { Shared(tb, Options{}) },
		} {
			f := &fakeTB{TB: t}
			runFake(f, start)
			if ci == "true" && (!f.failed || f.skipped) || ci == "" && (!f.skipped || f.failed) {
				t.Errorf("%s with CI=%q: skipped=%v failed=%v", name, ci, f.skipped, f.failed)
			}
			if len(f.logs) == 0 || !strings.Contains(f.logs[0], "DOVECOTTEST_DOVECOT=/nonexistent/dovecot") || !strings.Contains(f.logs[0], "install-test-deps.sh") {
				t.Errorf("%s message %q", name, f.logs)
			}
		}
	}
}

func TestLogTailRedacts(t *testing.T) {
	s := Shared(t, Options{OAuth: true})
	user := s.AddUser(t, t.Name(), "hunter2-secret")
	s.AddToken(user, "tok-secret-123")
	s.RevokeToken("tok-secret-123")
	offset := fileSize(s.LogFile)
	// Make Dovecot log something, then plant the secrets in the log as a
	// misconfigured server might.
	c := dialTLS(t, s, s.IMAPSAddr)
	c.line()
	c.imapCmd("a", "LOGIN "+user+" wrong-password")
	f, err := os.OpenFile(s.LogFile, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(f, "test: pass=hunter2-secret token=tok-secret-123\n")
	f.Close()
	tb := &fakeTB{TB: t}
	s.logTail(tb, offset)
	out := strings.Join(tb.logs, "\n")
	if !strings.Contains(out, "Password mismatch") || !strings.Contains(out, "pass=[redacted] token=[redacted]") {
		t.Fatalf("log tail:\n%s", out)
	}
	if strings.Contains(out, "hunter2-secret") || strings.Contains(out, "tok-secret-123") {
		t.Fatalf("secret in log tail:\n%s", out)
	}
}

func TestSharedParallel(t *testing.T) {
	logins := make(chan string, 4)
	t.Run("group", func(t *testing.T) {
		for i := 0; i < 4; i++ {
			t.Run(fmt.Sprint(i), func(t *testing.T) {
				t.Parallel()
				s := Shared(t, Options{})
				user := s.AddUser(t, "parallel", "pw")
				logins <- user
				for j := 0; j < 5; j++ {
					s.Deliver(t, user, "", msg(fmt.Sprintf("%s-%d@example.com", user, j)))
				}
				ms := s.Messages(t, user, "")
				if len(ms) != 5 {
					t.Fatalf("%s has %d messages", user, len(ms))
				}
				for j, m := range ms {
					if want := fmt.Sprintf("%s-%d@example.com", user, j); m.MessageID != want {
						t.Errorf("message %d = %q, want %q", j, m.MessageID, want)
					}
				}
				c := dialTLS(t, s, s.IMAPSAddr)
				c.line()
				if _, done := c.imapCmd("a", "LOGIN "+user+" pw"); !strings.HasPrefix(done, "a OK") {
					t.Fatalf("LOGIN: %q", done)
				}
				if un, _ := c.imapCmd("b", "SELECT INBOX"); !contains(un, "* 5 EXISTS") {
					t.Fatalf("SELECT: %q", un)
				}
			})
		}
	})
	close(logins)
	seen := map[string]bool{}
	for l := range logins {
		if seen[l] {
			t.Errorf("login %q handed out twice", l)
		}
		seen[l] = true
	}
	if len(seen) != 4 {
		t.Errorf("got logins %v", seen)
	}
}

// TestCAFileWithMbsync checks CAFile (and the ECDSA certificate) with an
// OpenSSL-based client: isync's mbsync pulls the INBOX into a Maildir.
func TestCAFileWithMbsync(t *testing.T) {
	mbsync, err := exec.LookPath("mbsync")
	if err != nil {
		t.Skip("mbsync (isync) not installed")
	}
	s := Shared(t, Options{})
	user := s.AddUser(t, t.Name(), "pw-mbsync")
	for i := 0; i < 3; i++ {
		s.Deliver(t, user, "", msg(fmt.Sprintf("mbsync%d@example.com", i)))
	}
	dir := t.TempDir()
	_, port, _ := net.SplitHostPort(s.IMAPSAddr)
	// SSLType is isync 1.4's spelling (1.5 also accepts TLSType). SyncState *
	// keeps mbsync's state in dir instead of ~/.mbsync.
	rc := fmt.Sprintf("IMAPAccount a\nHost localhost\nPort %s\nUser %s\nPass pw-mbsync\nSSLType IMAPS\nCertificateFile %s\n\n"+
		"IMAPStore remote\nAccount a\n\nMaildirStore local\nPath %s/\nInbox %s/INBOX\n\n"+
		"Channel c\nFar :remote:INBOX\nNear :local:\nCreate Near\nSync Pull\nSyncState *\n",
		port, user, s.CAFile, dir, dir)
	rcPath := filepath.Join(dir, "mbsyncrc")
	if err := os.WriteFile(rcPath, []byte(rc), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(mbsync, "-c", rcPath, "-a").CombinedOutput()
	if err != nil {
		t.Fatalf("mbsync: %v\n%s", err, out)
	}
	var n int
	for _, sub := range []string{"new", "cur"} {
		des, _ := os.ReadDir(filepath.Join(dir, "INBOX", sub))
		n += len(des)
	}
	if n != 3 {
		t.Fatalf("mbsync pulled %d messages, want 3\n%s", n, out)
	}
}

// BenchmarkStartStop measures a full Start (certificate, config, readiness
// probe) and Stop. go test -run - -bench . ./internal/dovecottest
func BenchmarkStartStop(b *testing.B) {
	for i := 0; i < b.N; i++ {
		s := Start(b, Options{OAuth: true})
		s.Stop()
	}
}

// BenchmarkRestart measures Restart (stop, start on the same ports, ready).
func BenchmarkRestart(b *testing.B) {
	s := Start(b, Options{})
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		s.Restart(b)
	}
}

// BenchmarkFailedLogin measures how long a wrong password takes to be
// refused (Dovecot 2.3 flushes failures on a 500 ms timer).
func BenchmarkFailedLogin(b *testing.B) {
	s := Shared(b, Options{})
	user := s.AddUser(b, "bench-failed-login", "right")
	c, err := tls.Dial("tcp", s.IMAPSAddr, &tls.Config{RootCAs: s.CAPool, ServerName: "localhost"})
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	br := bufio.NewReader(c)
	br.ReadString('\n')
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		fmt.Fprintf(c, "a LOGIN %s wrong\r\n", user)
		l, err := br.ReadString('\n')
		if err != nil || !strings.HasPrefix(l, "a NO") {
			b.Fatalf("%q %v", l, err)
		}
	}
}

func TestCourierNamespace(t *testing.T) {
	s := Shared(t, Options{CourierNamespace: true})
	user := s.AddUser(t, t.Name(), "pw")
	s.Deliver(t, user, "INBOX", []byte("Message-ID: <ns-1@example.org>\r\nSubject: x\r\n\r\nbody\r\n"))
	c := dialTLS(t, s, s.IMAPSAddr)
	c.line()
	if _, done := c.imapCmd("a", "LOGIN "+user+" pw"); !strings.HasPrefix(done, "a OK") {
		t.Fatalf("LOGIN: %q", done)
	}
	un, done := c.imapCmd("b", "NAMESPACE")
	if !strings.HasPrefix(done, "b OK") || len(un) != 1 || !strings.HasPrefix(un[0], `* NAMESPACE (("INBOX." "."))`) {
		t.Fatalf("NAMESPACE: %q %q", un, done)
	}
	if _, done := c.imapCmd("c", "CREATE Processed"); strings.HasPrefix(done, "c OK") {
		t.Fatalf("CREATE outside the namespace succeeded: %q", done)
	}
	if _, done := c.imapCmd("d", "CREATE INBOX.Processed"); !strings.HasPrefix(done, "d OK") {
		t.Fatalf("CREATE INBOX.Processed: %q", done)
	}
	if _, done := c.imapCmd("e", "SELECT INBOX"); !strings.HasPrefix(done, "e OK") {
		t.Fatalf("SELECT INBOX: %q", done)
	}
	if _, done := c.imapCmd("f", "COPY 1 INBOX.Processed"); !strings.HasPrefix(done, "f OK") {
		t.Fatalf("COPY: %q", done)
	}
	// IMAP "INBOX.Processed" is the Maildir++ folder ".Processed".
	if m := s.Messages(t, user, "Processed"); len(m) != 1 || m[0].MessageID != "ns-1@example.org" {
		t.Fatalf("Messages(Processed) = %+v", m)
	}
}

// TestLoginProcessLimit opens more simultaneous IMAPS connections than
// Dovecot's default of 100 imap-login processes allows: each must get its
// greeting and keep it. With the default limit Dovecot answers the oldest
// waiting clients "* BYE Connection queue full" to make room.
func TestLoginProcessLimit(t *testing.T) {
	const n = 130
	s := Start(t, Options{LoginProcessLimit: n + 20})
	if b, err := os.ReadFile(s.ConfigFile); err != nil || !strings.Contains(string(b), "process_limit = 150") {
		t.Fatalf("config lacks process_limit = 150 (%v)", err)
	}
	type client struct {
		c  *tls.Conn
		br *bufio.Reader
	}
	conns := make([]client, 0, n)
	defer func() {
		for _, c := range conns {
			c.c.Close()
		}
	}()
	start := time.Now()
	for i := 0; i < n; i++ {
		c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", s.IMAPSAddr, &tls.Config{RootCAs: s.CAPool, ServerName: "localhost"})
		if err != nil {
			t.Fatalf("connection %d: %v", i+1, err)
		}
		cl := client{c, bufio.NewReader(c)}
		conns = append(conns, cl)
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		line, err := cl.br.ReadString('\n')
		if err != nil || !strings.HasPrefix(line, "* OK") {
			t.Fatalf("connection %d: greeting %q, %v", i+1, line, err)
		}
	}
	// Past the limit Dovecot drops the oldest waiting clients to make
	// room: every connection must still answer.
	for i, cl := range conns {
		cl.c.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := cl.c.Write([]byte("a NOOP\r\n")); err != nil {
			t.Fatalf("connection %d: NOOP: %v", i+1, err)
		}
		line, err := cl.br.ReadString('\n')
		if err != nil || !strings.HasPrefix(line, "a OK") {
			t.Fatalf("connection %d (of %d, opened in %s): NOOP answered %q, %v", i+1, n, time.Since(start).Round(time.Millisecond), line, err)
		}
	}
}

// TestLoginHighPerformanceResumesTLS: with long-lived login processes a
// second IMAPS connection resumes the TLS session of the first.
func TestLoginHighPerformanceResumesTLS(t *testing.T) {
	s := Start(t, Options{LoginHighPerformance: true})
	cfg := &tls.Config{RootCAs: s.CAPool, ServerName: "localhost", ClientSessionCache: tls.NewLRUClientSessionCache(4)}
	var resumed []bool
	for i := 0; i < 3; i++ {
		c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", s.IMAPSAddr, cfg)
		if err != nil {
			t.Fatal(err)
		}
		// TLS 1.3 tickets arrive after the handshake: read the greeting.
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if line, err := bufio.NewReader(c).ReadString('\n'); err != nil || !strings.HasPrefix(line, "* OK") {
			t.Fatalf("greeting %q, %v", line, err)
		}
		resumed = append(resumed, c.ConnectionState().DidResume)
		c.Close()
	}
	if resumed[0] || !resumed[1] || !resumed[2] {
		t.Fatalf("DidResume per connection = %v, want [false true true]", resumed)
	}
}

// TestExtraConfig: Options.ExtraConfig reaches dovecot.conf, and a service
// section repeated there is merged with the generated one (anvil keeps the
// generated listener and gets the new limit).
func TestExtraConfig(t *testing.T) {
	s := Start(t, Options{ExtraConfig: "service anvil {\n  client_limit = 1234\n}"})
	dovecot, _, err := findBinaries()
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(dovecot, "-c", s.ConfigFile, "-n").CombinedOutput()
	if err != nil {
		t.Fatalf("dovecot -n: %v\n%s", err, out)
	}
	conf := string(out)
	_, anvil, ok := strings.Cut(conf, "service anvil {")
	anvil, _, _ = strings.Cut(anvil, "\n}")
	if !ok {
		t.Fatalf("no service anvil in dovecot -n:\n%s", conf)
	}
	if strings.Count(conf, "service anvil {") != 1 || !strings.Contains(anvil, "client_limit = 1234") || !strings.Contains(anvil, "anvil-auth-penalty") {
		t.Fatalf("service anvil in dovecot -n:\n%s", anvil)
	}
}
