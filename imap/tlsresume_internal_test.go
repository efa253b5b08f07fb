package imap

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mailsync/mailsync"
	"github.com/mailsync/mailsync/internal/dovecottest"
)

// resumeServer is a Dovecot whose long-lived login process can resume TLS
// sessions (in Dovecot's default high-security mode every connection has a
// new login process and no session resumes), with one user.
func resumeServer(t *testing.T) (*dovecottest.Server, mailsync.Connection) {
	t.Helper()
	srv := dovecottest.Shared(t, dovecottest.Options{LoginHighPerformance: true})
	user := srv.AddUser(t, "TLSResume", "resume-password")
	conn := mailsync.Connection{Name: "resume", Enabled: true, User: user, Server: "127.0.0.1",
		Protocol: mailsync.IMAP, ConnectedWith: []string{"test"}}
	conn.Port = port(t, srv.IMAPSAddr)
	return srv, conn
}

// port is addr's port.
func port(t *testing.T, addr string) int {
	t.Helper()
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	n, err := strconv.Atoi(p)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// connectOnce connects a new Connector (List on an empty mailbox) and
// returns its TLS state.
func connectOnce(t *testing.T, conn mailsync.Connection, opts Options) (tls.ConnectionState, error) {
	t.Helper()
	c, err := New(conn, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := c.List(ctx, ""); err != nil {
		return tls.ConnectionState{}, err
	}
	return c.s.tls, nil
}

// TestTLSSessionResumedAcrossConnectors: a second Connector to the same
// server, with default options, resumes the TLS session of the first (the
// process-wide session cache), over implicit TLS and STARTTLS.
func TestTLSSessionResumedAcrossConnectors(t *testing.T) {
	srv, conn := resumeServer(t)
	for _, sec := range []Security{ImplicitTLS, StartTLS} {
		c := conn
		if sec == StartTLS {
			c.Port = port(t, srv.IMAPAddr)
		}
		opts := Options{Password: "resume-password", Security: sec, RootCAs: srv.CAPool}
		if _, err := connectOnce(t, c, opts); err != nil {
			t.Fatalf("%s: first connection: %v", sec, err)
		}
		st, err := connectOnce(t, c, opts)
		if err != nil {
			t.Fatalf("%s: second connection: %v", sec, err)
		}
		if !st.DidResume {
			t.Errorf("%s: the second connection did not resume the TLS session (version %s)", sec, tls.VersionName(st.Version))
		}
		if len(st.VerifiedChains) == 0 {
			t.Errorf("%s: the resumed session has no verified chain", sec)
		}
	}
}

// TestTLSSessionResumptionKeepsVerification: a session cached for the
// server name is not used by a connector that would not trust the
// server's certificate: it fails with ErrTLS as without a cache. A
// caller's VerifyPeerCertificate (which crypto/tls skips on resumed
// sessions) keeps being called on every connection, and
// SessionTicketsDisabled keeps resumption off.
func TestTLSSessionResumptionKeepsVerification(t *testing.T) {
	srv, conn := resumeServer(t)
	good := Options{Password: "resume-password", Security: ImplicitTLS, RootCAs: srv.CAPool}
	if _, err := connectOnce(t, conn, good); err != nil {
		t.Fatal(err)
	}
	if st, err := connectOnce(t, conn, good); err != nil || !st.DidResume {
		t.Fatalf("second connection: resumed %v, %v", st.DidResume, err)
	}

	// Roots that do not hold the server's CA, and the system roots.
	for name, roots := range map[string]*x509.CertPool{"other roots": x509.NewCertPool(), "system roots": nil} {
		bad := good
		bad.RootCAs = roots
		if _, err := connectOnce(t, conn, bad); !errors.Is(err, mailsync.ErrTLS) {
			t.Errorf("%s: err = %v, want ErrTLS (the cached session must not be resumed)", name, err)
		}
	}
	// crypto/tls dropped the cached session it could not verify: the next
	// trusting connector makes a full handshake, the one after resumes.
	if st, err := connectOnce(t, conn, good); err != nil || st.DidResume {
		t.Errorf("after the refused connections: resumed %v, %v; want a full handshake", st.DidResume, err)
	}
	if st, err := connectOnce(t, conn, good); err != nil || !st.DidResume {
		t.Errorf("then: resumed %v, %v; want a resumed session", st.DidResume, err)
	}

	var calls atomic.Int64
	custom := good
	custom.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12, VerifyPeerCertificate: func([][]byte, [][]*x509.Certificate) error {
		calls.Add(1)
		return nil
	}}
	for range 2 {
		if st, err := connectOnce(t, conn, custom); err != nil || st.DidResume {
			t.Fatalf("with VerifyPeerCertificate: resumed %v, %v", st.DidResume, err)
		}
	}
	if calls.Load() != 2 {
		t.Errorf("VerifyPeerCertificate called %d times over 2 connections, want 2", calls.Load())
	}

	off := good
	off.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12, SessionTicketsDisabled: true}
	if st, err := connectOnce(t, conn, off); err != nil || st.DidResume {
		t.Errorf("with SessionTicketsDisabled: resumed %v, %v", st.DidResume, err)
	}
}

// helloSizes records the size of the first write (the TLS ClientHello) of
// every connection.
type helloSizes struct {
	mu    sync.Mutex
	sizes []int
}

func (h *helloSizes) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	h.mu.Lock()
	h.sizes = append(h.sizes, 0)
	i := len(h.sizes) - 1
	h.mu.Unlock()
	return &firstWrite{Conn: c, record: func(n int) { h.mu.Lock(); h.sizes[i] = n; h.mu.Unlock() }}, nil
}

func (h *helloSizes) last() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.sizes[len(h.sizes)-1]
}

type firstWrite struct {
	net.Conn
	once   sync.Once
	record func(int)
}

func (c *firstWrite) Write(p []byte) (int, error) {
	c.once.Do(func() { c.record(len(p)) })
	return c.Conn.Write(p)
}

// hybridHello is more than a ClientHello without the X25519MLKEM768 key
// share (1,216 bytes) can be.
const hybridHello = 1100

// TestTLSClassicalOfferAfterX25519: a server that answers the default
// offer (hybrid X25519MLKEM768 + X25519 key shares) with X25519 — Dovecot
// on OpenSSL 3.0 — gets ClientHellos without the ML-KEM share for an
// hour, resumed as before; a caller's CurvePreferences are kept; after the
// hour the hybrid is offered again; a server choosing the hybrid is
// forgotten.
func TestTLSClassicalOfferAfterX25519(t *testing.T) {
	srv, conn := resumeServer(t)
	hello := &helloSizes{}
	opts := Options{Password: "resume-password", Security: ImplicitTLS, RootCAs: srv.CAPool, DialContext: hello.dial}
	addr := net.JoinHostPort(conn.Server, strconv.Itoa(conn.Port))
	classical.Lock()
	delete(classical.until, addr)
	classical.Unlock()
	t.Cleanup(func() {
		classical.Lock()
		classical.now = time.Now
		delete(classical.until, addr)
		classical.Unlock()
	})

	st, err := connectOnce(t, conn, opts)
	if err != nil {
		t.Fatal(err)
	}
	if n := hello.last(); n < hybridHello || st.CurveID != tls.X25519 || st.Version != tls.VersionTLS13 {
		t.Fatalf("first connection: ClientHello %d bytes, group %s, %s; want the hybrid offered and X25519 chosen over TLS 1.3", n, st.CurveID, tls.VersionName(st.Version))
	}
	if !classicalOffer(addr) {
		t.Fatal("the server's choice of X25519 was not remembered")
	}
	st, err = connectOnce(t, conn, opts)
	if err != nil {
		t.Fatal(err)
	}
	if n := hello.last(); n >= hybridHello || st.CurveID != tls.X25519 || !st.DidResume {
		t.Errorf("second connection: ClientHello %d bytes, group %s, resumed %v; want no ML-KEM share, X25519, resumed", n, st.CurveID, st.DidResume)
	}

	own := opts
	own.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12, CurvePreferences: []tls.CurveID{tls.X25519MLKEM768, tls.X25519}}
	if _, err := connectOnce(t, conn, own); err != nil {
		t.Fatal(err)
	}
	if n := hello.last(); n < hybridHello {
		t.Errorf("with the caller's CurvePreferences: ClientHello %d bytes, want the hybrid share offered", n)
	}

	classical.Lock()
	classical.now = func() time.Time { return time.Now().Add(classicalTTL + time.Minute) }
	classical.Unlock()
	if _, err := connectOnce(t, conn, opts); err != nil {
		t.Fatal(err)
	}
	if n := hello.last(); n < hybridHello {
		t.Errorf("after classicalTTL: ClientHello %d bytes, want the hybrid offered again", n)
	}
	if !classicalOffer(addr) {
		t.Error("not remembered again after the hour")
	}

	learnGroup(addr, &tls.Config{}, tls.ConnectionState{Version: tls.VersionTLS13, CurveID: tls.X25519MLKEM768})
	if classicalOffer(addr) {
		t.Error("a server that chose X25519MLKEM768 still gets the classical offer")
	}
}
