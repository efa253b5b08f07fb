package pop3

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/mailsync/mailsync"
)

// CheckResult is what Check found out about a working configuration.
type CheckResult struct {
	// Addr is the host:port connected to.
	Addr string
	// Security is the mode used (never SecurityAuto).
	Security Security
	// TLSVersion is e.g. "TLS 1.3", empty for Plaintext.
	TLSVersion string
	// Auth is the login method: "USER/PASS" or "XOAUTH2".
	Auth string
	// Messages and Bytes are the maildrop's size (STAT).
	Messages int
	Bytes    int64
	// Capabilities are the server's CAPA answer after login, if it has one.
	Capabilities []string
}

// String summarises the result for an admin screen or a log line.
func (r *CheckResult) String() string {
	s := fmt.Sprintf("pop3 %s (%s", r.Addr, r.Security)
	if r.TLSVersion != "" {
		s += ", " + r.TLSVersion
	}
	return s + fmt.Sprintf(", %s): %d messages, %d bytes", r.Auth, r.Messages, r.Bytes)
}

// Check tests conn and opts as the admin form's "test connection" button
// does: it connects, secures the connection, logs in, reads the maildrop
// size and checks that the server supports UIDL, then logs out without
// changing anything. Its errors are typed like the Connector's: see New,
// plus mailsync.ErrConnection, ErrTLS, ErrAuth, ErrMailboxBusy, and
// ErrUnsupported for a server without UIDL.
func Check(ctx context.Context, conn mailsync.Connection, opts Options) (*CheckResult, error) {
	cfg, err := newConfig(conn, opts)
	if err != nil {
		return nil, err
	}
	s, err := open(ctx, cfg)
	if err != nil {
		return nil, err
	}
	defer s.kill()
	res := &CheckResult{Addr: cfg.addr, Security: cfg.security, Auth: s.mech}
	if s.tls != nil {
		res.TLSVersion = tls.VersionName(s.tls.Version)
	}
	var capa []string
	err = s.multi(ctx, "CAPA", maxCapaLines, maxCapaLines*128, func(line []byte) error {
		if l := strings.TrimSpace(string(line)); l != "" {
			capa = append(capa, s.sanitize(l))
		}
		return nil
	})
	var se *serverError
	if err != nil && !errors.As(err, &se) { // -ERR: a server without CAPA
		return nil, err
	}
	res.Capabilities = capa
	stat, err := s.cmd(ctx, "STAT")
	if err != nil {
		return nil, checkCmdError(err)
	}
	f := strings.Fields(stat)
	if len(f) < 2 {
		return nil, fmt.Errorf("pop3: STAT: malformed answer %q", s.sanitize(stat))
	}
	if res.Messages, err = strconv.Atoi(f[0]); err != nil || res.Messages < 0 {
		return nil, fmt.Errorf("pop3: STAT: malformed answer %q", s.sanitize(stat))
	}
	if res.Bytes, err = strconv.ParseInt(f[1], 10, 64); err != nil {
		return nil, fmt.Errorf("pop3: STAT: malformed answer %q", s.sanitize(stat))
	}
	if !hasCapa(capa, "UIDL") {
		// No CAPA, or a server that does not list UIDL: ask for it.
		if res.Messages > 0 {
			_, err = s.cmd(ctx, "UIDL", 1)
		} else {
			err = s.multi(ctx, "UIDL", 16, maxLineAnswer, func([]byte) error { return nil })
		}
		if errors.As(err, &se) {
			return nil, fmt.Errorf("pop3: %w: the server has no UIDL, needed for stable message keys: %w", mailsync.ErrUnsupported, se)
		}
		if err != nil {
			return nil, err
		}
	}
	if err := s.quit(ctx); err != nil {
		return nil, checkCmdError(err)
	}
	return res, nil
}

func checkCmdError(err error) error {
	var se *serverError
	if errors.As(err, &se) {
		return classifyCommand(se)
	}
	return err
}

func hasCapa(capa []string, name string) bool {
	for _, c := range capa {
		if f := strings.Fields(c); len(f) > 0 && strings.EqualFold(f[0], name) {
			return true
		}
	}
	return false
}

// Check implements mailsync.Checker with the package's Check on the
// connector's configuration (a separate connection).
func (c *Connector) Check(ctx context.Context) (*mailsync.CheckResult, error) {
	start := time.Now()
	r, err := Check(ctx, c.cfg.conn, c.cfg.opts)
	if err != nil {
		return nil, err
	}
	return &mailsync.CheckResult{Provider: "pop3", Server: r.Addr, Security: r.Security.String(), TLSVersion: r.TLSVersion,
		Auth: r.Auth, Folders: []mailsync.FolderStatus{{Name: "INBOX", Messages: r.Messages, Unread: -1}},
		Capabilities: r.Capabilities, Elapsed: time.Since(start), Details: r}, nil
}
