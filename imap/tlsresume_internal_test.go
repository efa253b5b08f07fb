package imap

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"strconv"
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
