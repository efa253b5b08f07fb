// Package demoimap is the in-process IMAP server the examples sync from:
// go-imap's in-memory server on a loopback port, with implicit TLS and a
// certificate made at start-up, so an example connects exactly as to a real
// server (certificate verified, no plaintext login), with no network and no
// set-up. It is for demos and tests only.
package demoimap

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"io"
	"log"
	"math/big"
	"net"
	"strings"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
	"github.com/emersion/go-imap/v2/imapserver/imapmemserver"
	"github.com/emersion/go-sasl"
)

// Server is a running demo server with one user and an INBOX.
type Server struct {
	// Addr is the server's loopback address (host:port), implicit TLS.
	Addr string
	// RootCAs trusts the server's self-signed certificate.
	RootCAs *x509.CertPool
	// Cert is that certificate, for a host that adds it to its own pool.
	Cert *x509.Certificate

	user *imapmemserver.User
	srv  *imapserver.Server
	ln   net.Listener
}

// Options are the server's optional behaviours.
type Options struct {
	// CheckToken, when set, makes the server accept SASL XOAUTH2 (IMAP's
	// OAuth login) for a bearer token it approves, besides the password.
	CheckToken func(user, token string) bool
}

// Start starts the server with user and password and an empty INBOX.
func Start(user, password string, opts Options) (*Server, error) {
	cert, pool, err := selfSignedCert()
	if err != nil {
		return nil, err
	}
	mem := imapmemserver.New()
	u := imapmemserver.NewUser(user, password)
	if err := u.Create("INBOX", nil); err != nil {
		return nil, err
	}
	mem.AddUser(u)
	srv := imapserver.New(&imapserver.Options{
		NewSession: func(*imapserver.Conn) (imapserver.Session, *imapserver.GreetingData, error) {
			if opts.CheckToken != nil {
				return &xoauth2Session{SessionIMAP4rev2: mem.NewSession().(imapserver.SessionIMAP4rev2), check: opts.CheckToken, password: password}, nil, nil
			}
			return mem.NewSession(), nil, nil
		},
		Caps:   imap.CapSet{imap.CapIMAP4rev1: {}, imap.CapIMAP4rev2: {}, imap.CapUIDPlus: {}, imap.CapMove: {}},
		Logger: log.New(io.Discard, "", 0),
	})
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}})
	if err != nil {
		return nil, err
	}
	go srv.Serve(ln)
	return &Server{Addr: ln.Addr().String(), RootCAs: pool, Cert: cert.Leaf, user: u, srv: srv, ln: ln}, nil
}

// Deliver appends a raw message to the INBOX.
func (s *Server) Deliver(raw []byte) error {
	_, err := s.user.Append("INBOX", literal{bytes.NewReader(raw)}, &imap.AppendOptions{Time: time.Now()})
	return err
}

// Close stops the server.
func (s *Server) Close() { s.srv.Close(); s.ln.Close() }

type literal struct{ *bytes.Reader }

// Size is the literal's length, as imap.LiteralReader needs.
func (l literal) Size() int64 { return l.Reader.Size() }

// selfSignedCert makes a certificate for 127.0.0.1 and localhost and a pool
// that trusts it.
func selfSignedCert() (tls.Certificate, *x509.CertPool, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "mailsync demo"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		DNSNames:              []string{"localhost"},
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, pool, nil
}

// xoauth2Session adds SASL XOAUTH2 to the in-memory server's session: a
// valid bearer token logs the user in.
type xoauth2Session struct {
	imapserver.SessionIMAP4rev2 // the in-memory session (IMAP4rev2, as advertised)
	check                       func(user, token string) bool
	password                    string
}

// AuthenticateMechanisms implements imapserver.SessionSASL.
func (s *xoauth2Session) AuthenticateMechanisms() []string { return []string{"XOAUTH2"} }

// Authenticate implements imapserver.SessionSASL.
func (s *xoauth2Session) Authenticate(mech string) (sasl.Server, error) {
	if mech != "XOAUTH2" {
		return nil, errors.New("unsupported mechanism")
	}
	return &xoauth2Server{s: s}, nil
}

type xoauth2Server struct{ s *xoauth2Session }

// Next takes the XOAUTH2 initial response: "user=U\x01auth=Bearer T\x01\x01".
func (x *xoauth2Server) Next(resp []byte) ([]byte, bool, error) {
	if resp == nil {
		return []byte{}, false, nil
	}
	var user, token string
	for _, kv := range strings.Split(string(resp), "\x01") {
		if v, ok := strings.CutPrefix(kv, "user="); ok {
			user = v
		}
		if v, ok := strings.CutPrefix(kv, "auth=Bearer "); ok {
			token = v
		}
	}
	if user == "" || token == "" || !x.s.check(user, token) {
		return nil, false, &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeAuthenticationFailed, Text: "invalid token"}
	}
	if err := x.s.SessionIMAP4rev2.Login(user, x.s.password); err != nil {
		return nil, false, err
	}
	return nil, true, nil
}
