package pop3

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"time"

	gopop3 "github.com/knadh/go-pop3"
	"golang.org/x/oauth2"

	"github.com/mailsync/mailsync"
)

// retrBufferSize is the read buffer of the streaming RETR reader.
const retrBufferSize = 64 << 10

// session is one authenticated POP3 session. It is not safe for concurrent
// use; the Connector serialises calls.
type session struct {
	cfg  *config
	raw  net.Conn      // the TCP connection, closed to abort a blocked call
	wire *wire         // what go-pop3 and the RETR reader use
	pc   *gopop3.Conn  // go-pop3's connection, for line commands
	br   *bufio.Reader // our reader, for streaming RETR answers
	tls  *tls.ConnectionState
	mech string // "USER/PASS" or "XOAUTH2"
	dead bool

	// keys maps UIDL to message number in this session; nil until mapped.
	keys map[string]int
}

// wire is the connection handed to go-pop3. Every Read and Write pushes
// the deadline CommandTimeout ahead (an idle timeout), and the first reads
// replay the greeting that was consumed before go-pop3 took over (go-pop3
// insists on reading a greeting, and after STLS there is none).
type wire struct {
	net.Conn
	idle   time.Duration
	replay []byte
}

func (w *wire) Read(p []byte) (int, error) {
	if len(w.replay) > 0 {
		n := copy(p, w.replay)
		w.replay = w.replay[n:]
		return n, nil
	}
	if err := w.Conn.SetReadDeadline(time.Now().Add(w.idle)); err != nil {
		return 0, err
	}
	return w.Conn.Read(p)
}

func (w *wire) Write(p []byte) (int, error) {
	if err := w.Conn.SetWriteDeadline(time.Now().Add(w.idle)); err != nil {
		return 0, err
	}
	return w.Conn.Write(p)
}

// handoff is the go-pop3 Dialer that returns an already set-up connection.
type handoff struct{ c net.Conn }

func (h handoff) Dial(string, string) (net.Conn, error) { return h.c, nil }

// open dials, secures and logs in. Every failure is typed: ErrConnection,
// ErrTLS, ErrAuth, ErrMailboxBusy, or ctx's error.
func open(ctx context.Context, cfg *config) (*session, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("pop3: connect: %w", context.Cause(ctx))
	}
	dctx, cancel := context.WithTimeout(ctx, cfg.dialTO)
	defer cancel()
	var d net.Dialer
	raw, err := d.DialContext(dctx, "tcp", cfg.addr)
	if err != nil {
		return nil, wrapTransport(ctx, "connect to "+cfg.addr, err)
	}
	s, err := setup(ctx, dctx, cfg, raw)
	if err != nil {
		raw.Close()
		return nil, err
	}
	if err := s.login(ctx); err != nil {
		s.kill()
		return nil, err
	}
	cfg.log.Debug("pop3 session open", slog.String("addr", cfg.addr), slog.String("security", cfg.security.String()),
		slog.String("auth", s.mech))
	return s, nil
}

// setup secures raw (implicit TLS or STLS), reads the greeting and hands
// the connection to go-pop3. dctx bounds the whole setup.
func setup(ctx, dctx context.Context, cfg *config, raw net.Conn) (*session, error) {
	stop := context.AfterFunc(dctx, func() { raw.Close() })
	fail := func(op string, err error) error {
		stop()
		if dctx.Err() != nil && ctx.Err() == nil {
			err = fmt.Errorf("dial timeout %s: %w", cfg.dialTO, os.ErrDeadlineExceeded)
		}
		return wrapTransport(ctx, op, err)
	}
	var c net.Conn = raw
	var state *tls.ConnectionState
	if cfg.security == ImplicitTLS {
		tc := tls.Client(raw, cfg.tls)
		if err := tc.HandshakeContext(dctx); err != nil {
			return nil, fail("TLS handshake", err)
		}
		st := tc.ConnectionState()
		state, c = &st, tc
	}
	gr := bufio.NewReaderSize(c, 4096)
	greeting, err := readLine(gr)
	if err != nil {
		return nil, fail("greeting", err)
	}
	if !bytes.HasPrefix(greeting, []byte("+OK")) {
		return nil, fmt.Errorf("pop3: %w: server refused the connection: %q", mailsync.ErrConnection, sanitize(string(greeting)))
	}
	replay := append(append([]byte{}, greeting...), '\r', '\n')
	if cfg.security == STLS {
		if _, err := io.WriteString(c, "STLS\r\n"); err != nil {
			return nil, fail("STLS", err)
		}
		line, err := readLine(gr)
		if err != nil {
			return nil, fail("STLS", err)
		}
		if !bytes.HasPrefix(line, []byte("+OK")) {
			return nil, fmt.Errorf("pop3: %w: server refused STLS: %q", mailsync.ErrTLS, sanitize(string(line)))
		}
		if gr.Buffered() > 0 {
			// Bytes sent before the handshake would be taken as if they
			// came over TLS (a command injection attack): refuse.
			return nil, fmt.Errorf("pop3: %w: server sent data after accepting STLS", mailsync.ErrTLS)
		}
		tc := tls.Client(raw, cfg.tls)
		if err := tc.HandshakeContext(dctx); err != nil {
			return nil, fail("TLS handshake after STLS", err)
		}
		st := tc.ConnectionState()
		state, c = &st, tc
	} else if n := gr.Buffered(); n > 0 {
		extra, _ := gr.Peek(n)
		replay = append(replay, extra...)
	}
	w := &wire{Conn: c, idle: cfg.cmdTO, replay: replay}
	pc, err := gopop3.New(gopop3.Opt{Host: cfg.conn.Server, Port: 1, Dialer: handoff{w}}).NewConn()
	if err != nil {
		return nil, fail("greeting", err)
	}
	if !stop() {
		return nil, fail("connect", net.ErrClosed)
	}
	return &session{cfg: cfg, raw: raw, wire: w, pc: pc, br: bufio.NewReaderSize(w, retrBufferSize), tls: state}, nil
}

// readLine reads one CRLF-terminated line of at most the reader's buffer.
func readLine(r *bufio.Reader) ([]byte, error) {
	line, err := r.ReadSlice('\n')
	if err == bufio.ErrBufferFull {
		return nil, fmt.Errorf("%w: response line too long", mailsync.ErrConnection)
	}
	if err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	return bytes.TrimRight(line, "\r\n"), nil
}

// do runs f, a go-pop3 call, with ctx able to abort it by closing the
// connection. Transport failures end the session and come back typed; -ERR
// answers come back as *serverError.
func (s *session) do(ctx context.Context, verb string, f func() error) error {
	if s.dead {
		return fmt.Errorf("pop3: %s: %w: %w", verb, mailsync.ErrConnection, errBroken)
	}
	if ctx.Err() != nil {
		return fmt.Errorf("pop3: %s: %w", verb, context.Cause(ctx))
	}
	stop := context.AfterFunc(ctx, func() { s.raw.Close() })
	err := f()
	if !stop() {
		s.dead = true
		return fmt.Errorf("pop3: %s: %w", verb, context.Cause(ctx))
	}
	if err == nil {
		return nil
	}
	if isTransport(err) {
		s.kill()
		return wrapTransport(ctx, verb, err)
	}
	return &serverError{cmd: verb, text: sanitize(strings.TrimPrefix(err.Error(), "unknown response: "), s.cfg.password.Reveal())}
}

// cmd sends a single-line command through go-pop3.
func (s *session) cmd(ctx context.Context, verb string, args ...any) (string, error) {
	var out string
	err := s.do(ctx, verb, func() error {
		b, err := s.pc.Cmd(verb, false, args...)
		if b != nil {
			out = b.String()
		}
		return err
	})
	return out, err
}

// login authenticates with XOAUTH2 or USER/PASS.
func (s *session) login(ctx context.Context) error {
	cfg := s.cfg
	if cfg.tokens != nil {
		s.mech = "XOAUTH2"
		return s.loginXOAUTH2(ctx)
	}
	s.mech = "USER/PASS"
	if _, err := s.cmd(ctx, "USER", cfg.conn.User); err != nil {
		return loginError(err)
	}
	if _, err := s.cmd(ctx, "PASS", cfg.password.Reveal()); err != nil {
		return loginError(err)
	}
	return nil
}

func loginError(err error) error {
	var se *serverError
	if errors.As(err, &se) {
		return fmt.Errorf("pop3: login: %w", classifyLogin(se))
	}
	return err
}

// loginXOAUTH2 sends AUTH XOAUTH2 with the initial response on the same
// line (go-pop3 cannot answer a "+" challenge inline). A server that
// rejects the token may first send a "+ <base64 JSON>" challenge, which is
// answered with an empty line to get the final -ERR. When the server
// refuses a token and the source can invalidate it (oauthx.TokenSource),
// the token is dropped and the login is tried once more with a fresh one:
// a token can be revoked before it expires.
func (s *session) loginXOAUTH2(ctx context.Context) error {
	tok, err := s.token(ctx)
	if err != nil {
		return err
	}
	err = s.authXOAUTH2(ctx, tok)
	inv, ok := s.cfg.tokens.(interface{ Invalidate(*oauth2.Token) })
	if !ok || !errors.Is(err, mailsync.ErrAuth) || s.dead {
		return err
	}
	inv.Invalidate(tok)
	fresh, terr := s.token(ctx)
	if terr != nil || fresh.AccessToken == tok.AccessToken {
		return err
	}
	s.cfg.log.Debug("pop3: XOAUTH2 token refused; retrying with a fresh one")
	return s.authXOAUTH2(ctx, fresh)
}

// token gets an access token, with ctx when the source supports it.
func (s *session) token(ctx context.Context) (*oauth2.Token, error) {
	var (
		tok *oauth2.Token
		err error
	)
	if tc, ok := s.cfg.tokens.(interface {
		TokenContext(context.Context) (*oauth2.Token, error)
	}); ok {
		tok, err = tc.TokenContext(ctx)
	} else {
		tok, err = s.cfg.tokens.Token()
	}
	if err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("pop3: getting an OAuth access token: %w", context.Cause(ctx))
		}
		if isMailsyncSentinel(err) {
			return nil, fmt.Errorf("pop3: getting an OAuth access token: %w", err)
		}
		return nil, fmt.Errorf("pop3: getting an OAuth access token: %w: %w", mailsync.ErrAuth, err)
	}
	if tok == nil || tok.AccessToken == "" {
		return nil, fmt.Errorf("pop3: %w: the token source returned no access token", mailsync.ErrAuth)
	}
	if strings.ContainsAny(tok.AccessToken, "\r\n\x00\x01 ") {
		return nil, fmt.Errorf("pop3: %w: the access token contains spaces or control characters", mailsync.ErrAuth)
	}
	return tok, nil
}

func (s *session) authXOAUTH2(ctx context.Context, tok *oauth2.Token) error {
	ir := base64.StdEncoding.EncodeToString([]byte("user=" + s.cfg.conn.User + "\x01auth=Bearer " + tok.AccessToken + "\x01\x01"))
	_, err := s.cmd(ctx, "AUTH", "XOAUTH2", ir)
	var se *serverError
	if errors.As(err, &se) && strings.HasPrefix(se.text, "+") {
		// Error challenge: answer with an empty response, read the verdict.
		err = s.do(ctx, "AUTH", func() error {
			if err := s.pc.Send(""); err != nil {
				return err
			}
			_, err := s.pc.ReadOne()
			return err
		})
		if err == nil {
			return fmt.Errorf("pop3: %w: unexpected answer to the XOAUTH2 challenge", mailsync.ErrAuth)
		}
	}
	if errors.As(err, &se) {
		se.text = sanitize(se.text, tok.AccessToken, ir)
		return fmt.Errorf("pop3: XOAUTH2 login: %w", classifyLogin(se))
	}
	return err
}

func isMailsyncSentinel(err error) bool {
	for _, s := range []error{mailsync.ErrAuth, mailsync.ErrConsentRequired, mailsync.ErrTokenExpired,
		mailsync.ErrConnection, mailsync.ErrThrottled, mailsync.ErrInvalidConfig, mailsync.ErrTLS} {
		if errors.Is(err, s) {
			return true
		}
	}
	return false
}

// mapKeys runs UIDL and records the key → number map of this session.
// It returns the messages in maildrop order and notes on skipped entries.
func (s *session) mapKeys(ctx context.Context) ([]gopop3.MessageID, []string, error) {
	var ids []gopop3.MessageID
	err := s.do(ctx, "UIDL", func() (err error) {
		ids, err = s.pc.Uidl(0)
		return err
	})
	var se *serverError
	if errors.As(err, &se) {
		return nil, nil, fmt.Errorf("pop3: UIDL: %w: the server has no UIDL, needed for stable message keys: %w", mailsync.ErrUnsupported, se)
	}
	if err != nil {
		return nil, nil, err
	}
	keys := make(map[string]int, len(ids))
	out := ids[:0]
	var notes []string
	for _, m := range ids {
		if !validUID(m.UID) {
			notes = append(notes, fmt.Sprintf("pop3: message %d has an invalid UIDL %q; skipped", m.ID, sanitize(m.UID)))
			continue
		}
		if _, dup := keys[m.UID]; dup {
			notes = append(notes, fmt.Sprintf("pop3: UIDL %q is listed twice; only the first message is used", sanitize(m.UID)))
			continue
		}
		keys[m.UID] = m.ID
		out = append(out, m)
	}
	s.keys = keys
	return out, notes, nil
}

// validUID checks RFC 1939's unique-id syntax: 1 to 70 of 0x21-0x7E.
func validUID(u string) bool {
	if len(u) == 0 || len(u) > 70 {
		return false
	}
	for i := 0; i < len(u); i++ {
		if u[i] < 0x21 || u[i] > 0x7e {
			return false
		}
	}
	return true
}

// sizes runs LIST and returns message number → size.
func (s *session) sizes(ctx context.Context) (map[int]int64, error) {
	var ids []gopop3.MessageID
	err := s.do(ctx, "LIST", func() (err error) {
		ids, err = s.pc.List(0)
		return err
	})
	if err != nil {
		return nil, err
	}
	out := make(map[int]int64, len(ids))
	for _, m := range ids {
		out[m.ID] = int64(m.Size)
	}
	return out, nil
}

// retr streams message num to fn. found is false when the server answered
// -ERR (the message is gone). A transport failure ends the session.
func (s *session) retr(ctx context.Context, num int, fn func(io.Reader) error) (found bool, err error) {
	if s.dead {
		return false, fmt.Errorf("pop3: RETR: %w: %w", mailsync.ErrConnection, errBroken)
	}
	if ctx.Err() != nil {
		return false, fmt.Errorf("pop3: RETR: %w", context.Cause(ctx))
	}
	stop := context.AfterFunc(ctx, func() { s.raw.Close() })
	defer func() {
		if !stop() {
			s.dead = true
		}
	}()
	transport := func(err error) (bool, error) {
		s.kill()
		return true, wrapTransport(ctx, fmt.Sprintf("RETR %d", num), err)
	}
	if _, err := fmt.Fprintf(s.wire, "RETR %d\r\n", num); err != nil {
		return transport(err)
	}
	status, err := readLine(s.br)
	if err != nil {
		return transport(err)
	}
	if !bytes.HasPrefix(status, []byte("+OK")) {
		se := &serverError{cmd: "RETR", text: sanitize(strings.TrimPrefix(string(status), "-ERR "))}
		if !bytes.HasPrefix(status, []byte("-ERR")) {
			s.kill()
			return true, fmt.Errorf("pop3: %w: protocol error: %w", mailsync.ErrConnection, se)
		}
		if err := classifyCommand(se); err != se {
			return true, fmt.Errorf("pop3: RETR %d: %w", num, err)
		}
		return false, se
	}
	dr := newDotReader(s.br)
	ferr := fn(dr)
	_, derr := io.Copy(io.Discard, dr) // keep the protocol in step
	dr.close()
	if rerr := dr.readErr(); rerr != nil {
		return transport(rerr)
	}
	if derr != nil {
		return transport(derr)
	}
	if s.br.Buffered() > 0 {
		// The server sent more than the answer: out of step, start over.
		s.cfg.log.Warn("pop3: unexpected data after RETR; closing the session")
		s.kill()
	}
	return true, ferr
}

// quit sends QUIT and closes the connection. It returns an error unless the
// server acknowledged the QUIT, which is when it applies deletions.
func (s *session) quit(ctx context.Context) error {
	if s.dead {
		return fmt.Errorf("pop3: QUIT: %w: %w", mailsync.ErrConnection, errBroken)
	}
	err := s.do(ctx, "QUIT", func() error { return s.pc.Quit() })
	s.kill()
	return err
}

// kill closes the connection without QUIT: pending deletions are dropped.
func (s *session) kill() {
	s.dead = true
	s.raw.Close()
}
