package imap_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/emersion/go-imap/v2/imapserver"
	"github.com/emersion/go-imap/v2/imapserver/imapmemserver"
	gosasl "github.com/emersion/go-sasl"

	"github.com/mailsync/mailsync"
	"github.com/mailsync/mailsync/connectortest"
	mimap "github.com/mailsync/mailsync/imap"
)

const (
	testUser     = "alice@example.com"
	testPassword = "correct horse battery staple"
	goodToken    = "ya29.good-access-token"
)

// memOptions configure a go-imap in-memory server for a test.
type memOptions struct {
	// noMove and noUIDPlus remove those capabilities.
	noMove, noUIDPlus bool
	// tls serves implicit TLS on TLSAddr and STARTTLS on Addr.
	tls bool
	// insecureAuth allows LOGIN on the plain listener.
	insecureAuth bool
	// oauth offers XOAUTH2 and OAUTHBEARER, accepting goodToken.
	oauth bool
}

// memServer is a go-imap imapmemserver with a few test hooks.
type memServer struct {
	Addr    string // plain (STARTTLS when tls)
	TLSAddr string // implicit TLS, when tls
	CAPool  *x509.CertPool
	User    *imapmemserver.User

	failCopy atomic.Bool // COPY answers NO
	srv      *imapserver.Server
}

func startMem(t testing.TB, o memOptions) *memServer {
	t.Helper()
	m := &memServer{User: imapmemserver.NewUser(testUser, testPassword)}
	if err := m.User.Create("INBOX", nil); err != nil {
		t.Fatal(err)
	}
	caps := imap.CapSet{imap.CapIMAP4rev1: {}, imap.CapNamespace: {}}
	if !o.noMove {
		caps[imap.CapMove] = struct{}{}
	}
	if !o.noUIDPlus {
		caps[imap.CapUIDPlus] = struct{}{}
	}
	var tlsCfg *tls.Config
	if o.tls {
		tlsCfg, m.CAPool = selfSigned(t)
	}
	m.srv = imapserver.New(&imapserver.Options{
		NewSession: func(*imapserver.Conn) (imapserver.Session, *imapserver.GreetingData, error) {
			return &memSession{m: m, oauth: o.oauth}, nil, nil
		},
		Caps:         caps,
		TLSConfig:    tlsCfg,
		InsecureAuth: o.insecureAuth,
		Logger:       discardLogger{},
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	m.Addr = ln.Addr().String()
	go m.srv.Serve(ln)
	if o.tls {
		tln, err := tls.Listen("tcp", "127.0.0.1:0", tlsCfg)
		if err != nil {
			t.Fatal(err)
		}
		m.TLSAddr = tln.Addr().String()
		go m.srv.Serve(tln)
	}
	t.Cleanup(func() { m.srv.Close() })
	return m
}

type discardLogger struct{}

func (discardLogger) Printf(string, ...any) {}

// memSession wraps the memserver's session to add SASL and a failing COPY.
type memSession struct {
	*imapmemserver.UserSession
	m     *memServer
	oauth bool
}

func (s *memSession) Login(user, pass string) error {
	if err := s.m.User.Login(user, pass); err != nil {
		return err
	}
	s.UserSession = imapmemserver.NewUserSession(s.m.User)
	return nil
}

func (s *memSession) Copy(numSet imap.NumSet, dest string) (*imap.CopyData, error) {
	if s.m.failCopy.Load() {
		return nil, &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeOverQuota, Text: "Quota exceeded (test)"}
	}
	return s.UserSession.Copy(numSet, dest)
}

func (s *memSession) AuthenticateMechanisms() []string {
	if s.oauth {
		return []string{"PLAIN", "XOAUTH2", "OAUTHBEARER"}
	}
	return []string{"PLAIN"}
}

func (s *memSession) Authenticate(mech string) (gosasl.Server, error) {
	check := func(user, token string) bool {
		if user != testUser || token != goodToken {
			return false
		}
		s.UserSession = imapmemserver.NewUserSession(s.m.User)
		return true
	}
	switch mech {
	case "PLAIN":
		return gosasl.NewPlainServer(func(identity, user, pass string) error { return s.Login(user, pass) }), nil
	case "XOAUTH2":
		if s.oauth {
			return &xoauth2Server{check: check}, nil
		}
	case "OAUTHBEARER":
		if s.oauth {
			return gosasl.NewOAuthBearerServer(func(o gosasl.OAuthBearerOptions) *gosasl.OAuthBearerError {
				if !check(o.Username, o.Token) {
					return &gosasl.OAuthBearerError{Status: "invalid_token", Schemes: "bearer"}
				}
				return nil
			}), nil
		}
	}
	return nil, &imap.Error{Type: imap.StatusResponseTypeNo, Text: "unsupported mechanism"}
}

// xoauth2Server is the server side of XOAUTH2 as Gmail runs it: a bad token
// gets a JSON challenge, and only the client's empty answer ends the
// exchange with a failure.
type xoauth2Server struct {
	check   func(user, token string) bool
	pending bool
}

func (x *xoauth2Server) Next(resp []byte) ([]byte, bool, error) {
	if x.pending {
		if len(resp) != 0 {
			return nil, true, errors.New("XOAUTH2: expected an empty response after the error challenge")
		}
		return nil, true, imapserver.ErrAuthFailed
	}
	if resp == nil {
		return []byte{}, false, nil
	}
	var user, token string
	for _, f := range strings.Split(string(resp), "\x01") {
		if v, ok := strings.CutPrefix(f, "user="); ok {
			user = v
		}
		if v, ok := strings.CutPrefix(f, "auth=Bearer "); ok {
			token = v
		}
	}
	if x.check(user, token) {
		return nil, true, nil
	}
	x.pending = true
	return []byte(`{"status":"401","schemes":"bearer","scope":"https://mail.google.com/"}`), false, nil
}

// selfSigned makes a certificate for 127.0.0.1 and localhost.
func selfSigned(t testing.TB) (*tls.Config, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "localhost"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		DNSNames:              []string{"localhost"},
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}}, pool
}

// literal adapts bytes to imap.LiteralReader.
type literal struct{ *bytes.Reader }

func (l literal) Size() int64 { return l.Reader.Size() }

// deliver appends raw to folder (creating it).
func (m *memServer) deliver(t testing.TB, folder string, raw []byte) {
	t.Helper()
	if err := m.User.Create(folder, nil); err != nil {
		var ie *imap.Error
		if !errors.As(err, &ie) || ie.Code != imap.ResponseCodeAlreadyExists {
			t.Fatal(err)
		}
	}
	if _, err := m.User.Append(folder, literal{bytes.NewReader(raw)}, &imap.AppendOptions{}); err != nil {
		t.Fatal(err)
	}
}

// inspectFolder lists folder's messages not flagged \Deleted.
func inspectFolder(c *imapclient.Client, folder string) ([]connectortest.MailboxMessage, error) {
	sel, err := c.Select(folder, &imap.SelectOptions{ReadOnly: true}).Wait()
	if err != nil {
		var ie *imap.Error
		if errors.As(err, &ie) { // no such folder: nothing in it
			return nil, nil
		}
		return nil, err
	}
	if sel.NumMessages == 0 {
		return nil, nil
	}
	bufs, err := c.Fetch(imap.SeqSet{{Start: 1, Stop: 0}}, &imap.FetchOptions{Envelope: true, Flags: true}).Collect()
	if err != nil {
		return nil, err
	}
	var out []connectortest.MailboxMessage
	for _, b := range bufs {
		var seen, deleted bool
		for _, f := range b.Flags {
			seen = seen || f == imap.FlagSeen
			deleted = deleted || f == imap.FlagDeleted
		}
		if deleted {
			continue
		}
		mm := connectortest.MailboxMessage{Seen: seen}
		if b.Envelope != nil {
			mm.MessageID = b.Envelope.MessageID
		}
		out = append(out, mm)
	}
	return out, nil
}

// connection is an IMAP Connection for addr.
func connection(t testing.TB, addr string) mailsync.Connection {
	t.Helper()
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	p, _ := strconv.Atoi(port)
	return mailsync.Connection{
		Name: "support", Enabled: true, User: testUser, Server: host, Port: p,
		Protocol: mailsync.IMAP, ConnectedWith: []string{"incident"},
	}
}

// mail makes a small realistic message.
func mail(i int, body string) []byte {
	return []byte(fmt.Sprintf("From: Customer %d <customer%d@example.org>\r\nTo: support@example.com\r\nSubject: Ticket request %d\r\nDate: Thu, 26 Nov 2026 10:%02d:00 +0000\r\nMessage-ID: <msg-%d@example.org>\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n%s\r\n",
		i, i, i, i%60, i, body))
}

// commandLog counts the IMAP commands a connector sends, via
// Options.DialContext.
type commandLog struct {
	mu   sync.Mutex
	cmds []string
}

func (l *commandLog) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	return &countingConn{Conn: c, log: l}, nil
}

func (l *commandLog) reset() {
	l.mu.Lock()
	l.cmds = nil
	l.mu.Unlock()
}

// names returns the commands sent, without tags and arguments (UID
// commands keep their second word).
func (l *commandLog) names() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.cmds...)
}

type countingConn struct {
	net.Conn
	log     *commandLog
	partial []byte
}

func (c *countingConn) Write(p []byte) (int, error) {
	c.partial = append(c.partial, p...)
	for {
		i := bytes.Index(c.partial, []byte("\r\n"))
		if i < 0 {
			break
		}
		line := string(c.partial[:i])
		c.partial = c.partial[i+2:]
		f := strings.Fields(line)
		if len(f) >= 2 && len(f[0]) > 1 && f[0][0] == 'T' && isDigits(f[0][1:]) {
			name := strings.ToUpper(f[1])
			if name == "UID" && len(f) >= 3 {
				name += " " + strings.ToUpper(f[2])
			}
			c.log.mu.Lock()
			c.log.cmds = append(c.log.cmds, name)
			c.log.mu.Unlock()
		}
	}
	return c.Conn.Write(p)
}

func isDigits(s string) bool {
	for _, r := range s {
		if r < '0' || r > '9' {
			return false
		}
	}
	return s != ""
}

// drain reads every message of refs through c and returns their bodies by key.
func drain(ctx context.Context, c mailsync.Connector, refs []mailsync.MessageRef) (map[string][]byte, error) {
	got := map[string][]byte{}
	err := c.Fetch(ctx, refs, func(r mailsync.MessageRef, body io.Reader) error {
		if body == nil { // gone
			return nil
		}
		b, err := io.ReadAll(body)
		if err != nil {
			return err
		}
		if _, dup := got[r.Key]; dup {
			return fmt.Errorf("message %s delivered twice", r.Key)
		}
		got[r.Key] = b
		return nil
	})
	return got, err
}

// plainOpts are options for the memserver's plain listener.
func plainOpts() mimap.Options {
	return mimap.Options{Password: testPassword, Security: mimap.Plaintext, AllowPlaintextLogin: true, ReadAhead: testReadAhead}
}
