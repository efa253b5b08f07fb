package pop3

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/mailsync/mailsync"
	"github.com/mailsync/mailsync/internal/redact"
)

// serverError is a -ERR (or otherwise unexpected) answer of the server.
type serverError struct {
	cmd  string // the command verb, never its arguments
	text string // the server's text, sanitised
}

func (e *serverError) Error() string { return fmt.Sprintf("pop3: %s: server said %q", e.cmd, e.text) }

// code returns the RFC 2449/3206 response code, e.g. "IN-USE", or "".
func (e *serverError) code() string {
	c, _ := e.codeArg()
	return c
}

// codeArg returns the response code and what follows it inside the
// brackets, if anything: "[LOGIN-DELAY 120]" gives "LOGIN-DELAY", "120".
func (e *serverError) codeArg() (code, arg string) {
	t := e.text
	if !strings.HasPrefix(t, "[") {
		return "", ""
	}
	i := strings.IndexByte(t, ']')
	if i <= 0 {
		return "", ""
	}
	code, arg, _ = strings.Cut(strings.TrimSpace(t[1:i]), " ")
	return strings.ToUpper(code), strings.TrimSpace(arg)
}

// parseDelay reads the seconds of a LOGIN-DELAY value ("60", "900 USER").
func parseDelay(v string) (time.Duration, bool) {
	f := strings.Fields(v)
	if len(f) == 0 {
		return 0, false
	}
	n, err := strconv.Atoi(f[0])
	if err != nil || n <= 0 || n > 7*24*3600 {
		return 0, false
	}
	return time.Duration(n) * time.Second, true
}

// ErrServerLimit is wrapped (with mailsync.ErrConnection) by the error of
// a command whose answer broke a limit: a line too long, a UIDL, LIST or
// CAPA answer with too many lines or bytes, or an answer that took longer
// than Options.CommandTimeout plus the time its bytes take at a minimum
// rate. The session is closed; a later call reconnects. It is
// mailsync.ErrServerLimit, which Sync does not retry within a sync.
var ErrServerLimit = mailsync.ErrServerLimit

// limitError is a broken limit, as wire and multi report it.
func limitError(format string, args ...any) error {
	return fmt.Errorf("%w: %w: "+format, append([]any{mailsync.ErrConnection, ErrServerLimit}, args...)...)
}

// errBroken marks a session that can no longer be used.
var errBroken = errors.New("pop3: session closed")

// isTransport reports whether err came from the connection rather than from
// a server answer: those end the session.
func isTransport(err error) bool {
	if err == nil {
		return false
	}
	var se *serverError
	if errors.As(err, &se) {
		return false
	}
	var ne net.Error
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed) ||
		errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.EPIPE) || errors.As(err, &ne) ||
		isTLSError(err) || errors.Is(err, errBroken) || errors.Is(err, mailsync.ErrConnection)
}

// isTLSError reports whether err is a certificate or handshake failure.
func isTLSError(err error) bool {
	var (
		ua  x509.UnknownAuthorityError
		he  x509.HostnameError
		ci  x509.CertificateInvalidError
		cve *tls.CertificateVerificationError
		rhe tls.RecordHeaderError
		ae  tls.AlertError
	)
	return errors.As(err, &ua) || errors.As(err, &he) || errors.As(err, &ci) || errors.As(err, &cve) ||
		errors.As(err, &rhe) || errors.As(err, &ae)
}

// wrapTransport wraps a connection-level failure with the right sentinel:
// ctx's error when ctx ended, ErrTLS for TLS failures, ErrConnection
// otherwise.
func wrapTransport(ctx context.Context, op string, err error) error {
	if cerr := ctx.Err(); cerr != nil {
		return fmt.Errorf("pop3: %s: %w", op, context.Cause(ctx))
	}
	if errors.Is(err, mailsync.ErrConnection) || errors.Is(err, mailsync.ErrTLS) {
		return fmt.Errorf("pop3: %s: %w", op, err)
	}
	if isTLSError(err) {
		return fmt.Errorf("pop3: %s: %w: %w", op, mailsync.ErrTLS, err)
	}
	return fmt.Errorf("pop3: %s: %w: %w", op, mailsync.ErrConnection, err)
}

// classifyLogin maps a refused login to the mailsync sentinels: [IN-USE]
// is ErrMailboxBusy (retryable), [SYS/TEMP] ErrConnection (retryable),
// [LOGIN-DELAY] a ThrottledError and anything else, [AUTH] included,
// ErrAuth. The ThrottledError's RetryAfter is the code's argument when the
// server gave one ("[LOGIN-DELAY 120]"), otherwise delay(), which asks the
// server (see session.loginDelay).
func classifyLogin(se *serverError, delay func() time.Duration) error {
	switch c, arg := se.codeArg(); {
	case c == "IN-USE":
		return fmt.Errorf("%w: %w", mailsync.ErrMailboxBusy, se)
	case c == "SYS/TEMP":
		return fmt.Errorf("%w: %w", mailsync.ErrConnection, se)
	case c == "LOGIN-DELAY":
		d, ok := parseDelay(arg)
		if !ok {
			d = delay()
		}
		return &mailsync.ThrottledError{RetryAfter: d,
			Err: fmt.Errorf("pop3: login refused inside the server's LOGIN-DELAY; do not log in again for %s: %w", d, se)}
	}
	return fmt.Errorf("%w: %w", mailsync.ErrAuth, se)
}

// classifyCommand maps a -ERR answer to a command in the transaction state.
func classifyCommand(se *serverError) error {
	switch se.code() {
	case "IN-USE":
		return fmt.Errorf("%w: %w", mailsync.ErrMailboxBusy, se)
	case "SYS/TEMP":
		return fmt.Errorf("%w: %w", mailsync.ErrConnection, se)
	}
	return se
}

// sanitize makes server text safe for an error message, a note or a log
// line: every secret sc knows is removed in all the encodings a request
// could have carried it in (raw, URL, quoted, base64 at any alignment, see
// internal/redact), in case a server echoes a command; then the text is
// cut to printable ASCII, at most 200 bytes. Scrubbing comes first, so
// that neither the cut nor the replacement of other bytes can leave part
// of a secret behind. sc may be nil before any secret was sent.
func sanitize(text string, sc *redact.Scrubber) string {
	text = sc.Scrub(text)
	var b strings.Builder
	for _, r := range text {
		if b.Len() >= 200 {
			b.WriteString("…")
			break
		}
		if r < 0x20 || r == 0x7f || r > 0x7e {
			b.WriteByte('?')
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}

func joinHostPort(host string, port int) string { return net.JoinHostPort(host, strconv.Itoa(port)) }
