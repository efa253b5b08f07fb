package imap

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"strings"
	"sync/atomic"

	"github.com/mailsync/mailsync"
)

// startTLS runs the greeting and STARTTLS exchange by hand on the raw
// connection and returns the TLS connection. Doing it here, rather than
// with imapclient.NewStartTLS, refuses PREAUTH (RFC 9051 7.1.4) and
// plaintext injected after the OK, and leaves us the plaintext-level
// connection go-imap talks through (see clientConn).
func (s *session) startTLS(ctx context.Context) (*tls.Conn, error) {
	addr := s.cfg.addr
	r := bufio.NewReaderSize(s.raw, 4096)
	greeting, err := readLine(r)
	if err != nil {
		return nil, fmt.Errorf("imap: no greeting from %s: %v: %w", addr, err, mailsync.ErrConnection)
	}
	switch {
	case hasPrefixFold(greeting, "* OK"):
	case hasPrefixFold(greeting, "* PREAUTH"):
		return nil, fmt.Errorf("imap: %s sent PREAUTH before STARTTLS, which could hide a downgrade: %w", addr, mailsync.ErrTLS)
	case hasPrefixFold(greeting, "* BYE"):
		return nil, fmt.Errorf("imap: %s refused the session: %s: %w", addr, printable(greeting), mailsync.ErrConnection)
	default:
		return nil, fmt.Errorf("imap: %s sent an unexpected greeting %s (not an IMAP server?): %w", addr, printable(greeting), mailsync.ErrConnection)
	}
	if _, err := s.raw.Write([]byte("S1 STARTTLS\r\n")); err != nil {
		return nil, fmt.Errorf("imap: sending STARTTLS to %s: %v: %w", addr, err, mailsync.ErrConnection)
	}
	for {
		line, err := readLine(r)
		if err != nil {
			return nil, fmt.Errorf("imap: no answer to STARTTLS from %s: %v: %w", addr, err, mailsync.ErrConnection)
		}
		if strings.HasPrefix(line, "* ") {
			continue // untagged data, e.g. CAPABILITY
		}
		rest, ok := strings.CutPrefix(line, "S1 ")
		if !ok {
			return nil, fmt.Errorf("imap: unexpected answer to STARTTLS from %s: %s: %w", addr, printable(line), mailsync.ErrConnection)
		}
		if !hasPrefixFold(rest, "OK") {
			return nil, fmt.Errorf("imap: %s refused STARTTLS (%s); it may not offer it: use implicit TLS (port 993): %w", addr, printable(rest), mailsync.ErrTLS)
		}
		break
	}
	if r.Buffered() > 0 {
		// Bytes after the OK and before our ClientHello were not sent by a
		// TLS server: someone is injecting commands (CVE-2011-0411 style).
		return nil, fmt.Errorf("imap: %s sent %d unexpected bytes after accepting STARTTLS: %w", addr, r.Buffered(), mailsync.ErrTLS)
	}
	tc, err := s.cfg.handshake(ctx, s.raw)
	if err != nil {
		return nil, tlsError(s.cfg, err)
	}
	return tc, nil
}

// readLine reads one CRLF-terminated line of at most 4 KiB.
func readLine(r *bufio.Reader) (string, error) {
	b, err := r.ReadSlice('\n')
	if err != nil {
		if err == bufio.ErrBufferFull {
			return "", fmt.Errorf("line longer than %d bytes", r.Size())
		}
		return "", err
	}
	return strings.TrimRight(string(b), "\r\n"), nil
}

func hasPrefixFold(s, prefix string) bool {
	return len(s) >= len(prefix) && strings.EqualFold(s[:len(prefix)], prefix)
}

// printable quotes server text for an error message, shortened.
func printable(s string) string {
	if len(s) > 200 {
		s = s[:200] + "…"
	}
	return fmt.Sprintf("%q", s)
}

// clientConn is the connection go-imap reads and writes, above TLS.
//
// It can replay a greeting already consumed (after a hand-made STARTTLS),
// and it fixes one go-imap bug: an empty SASL continuation response is
// sent as "=" (only valid for an initial response, RFC 4959), which
// Dovecot rejects as invalid base64 instead of finishing the XOAUTH2
// failure exchange. While armed, a write of exactly "=\r\n" goes out as
// the empty line RFC 9051 section 6.2.2 prescribes.
type clientConn struct {
	net.Conn
	prefix    []byte      // read before the connection; only go-imap's reader reads
	emptySASL atomic.Bool // the next "=\r\n" is an empty SASL response
	guard     *guard      // bounds what the server sends; see guard.go
}

func (c *clientConn) Read(p []byte) (int, error) {
	var n int
	var err error
	if len(c.prefix) > 0 {
		n = copy(p, c.prefix)
		c.prefix = c.prefix[n:]
	} else {
		n, err = c.Conn.Read(p)
	}
	if n > 0 && c.guard != nil {
		if gerr := c.guard.scan(p[:n]); gerr != nil {
			return 0, gerr
		}
	}
	return n, err
}

func (c *clientConn) Write(p []byte) (int, error) {
	if c.guard != nil {
		c.guard.wrote()
	}
	if c.emptySASL.Load() && bytes.Equal(p, []byte("=\r\n")) {
		c.emptySASL.Store(false)
		if _, err := c.Conn.Write(p[1:]); err != nil {
			return 0, err
		}
		return len(p), nil
	}
	return c.Conn.Write(p)
}
