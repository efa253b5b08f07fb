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
	"strconv"
	"strings"
	"time"

	gopop3 "github.com/knadh/go-pop3"
	"golang.org/x/oauth2"

	"github.com/mailsync/mailsync"
	"github.com/mailsync/mailsync/internal/redact"
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

	// scrub knows every secret this session sent (the password, each
	// access token and SASL response) and removes them from server text.
	scrub *redact.Scrubber

	// keys maps UIDL to message number in this session; nil until mapped.
	keys map[string]int
}

// Limits on what a server may send, so that a hostile or broken server
// cannot exhaust memory or keep a command running for ever.
const (
	// maxLineLen bounds every line of an answer that is not a message body
	// (RFC 2449 §4 allows 512 octets).
	maxLineLen = 8 << 10
	// maxLineAnswer bounds the bytes of a single-line answer.
	maxLineAnswer = 64 << 10
	// maxCapaLines bounds the CAPA answer.
	maxCapaLines = 1000
	// maxNotes bounds the notes about skipped UIDL entries.
	maxNotes = 20
	// minRate is the slowest transfer a command is allowed beyond
	// CommandTimeout: a command may spend CommandTimeout plus the time its
	// bytes take at minRate waiting for the server, in all.
	minRate = 32 << 10 // bytes per second
	// maxDrain is how much of a message the session reads and discards
	// when the caller stopped reading early, to keep the session; beyond
	// it, closing the connection is cheaper.
	maxDrain = 4 << 20
)

// listingBytes bounds a UIDL or LIST answer of at most lines lines: each
// is a message number, a space and a unique-id of at most 70 characters.
func listingBytes(lines int) int64 { return int64(lines)*96 + 4096 }

// wire is the connection handed to go-pop3. Every Read and Write pushes
// the deadline CommandTimeout ahead (an idle timeout), and the first reads
// replay the greeting that was consumed before go-pop3 took over (go-pop3
// insists on reading a greeting, and after StartTLS there is none).
//
// It also enforces the limits of the command in progress (see begin): the
// length of a line, the size of the answer and the total time spent
// waiting for it, CommandTimeout plus the time its bytes take at minRate.
// A broken limit fails every later Read with an error wrapping
// mailsync.ErrConnection and ErrServerLimit.
type wire struct {
	net.Conn
	idle   time.Duration
	replay []byte

	maxLine  int           // longest line; 0: no limit (message bodies)
	maxBytes int64         // largest answer; 0: no limit
	n        int64         // bytes read since begin
	line     int           // bytes since the last LF
	waited   time.Duration // time spent blocked in Read since begin
	err      error         // the broken limit, sticky
}

// begin starts the limits of a new command.
func (w *wire) begin(maxLine int, maxBytes int64) {
	w.maxLine, w.maxBytes, w.n, w.line, w.waited = maxLine, maxBytes, 0, 0, 0
}

func (w *wire) Read(p []byte) (int, error) {
	if len(w.replay) > 0 {
		n := copy(p, w.replay)
		w.replay = w.replay[n:]
		return n, nil
	}
	if w.err != nil {
		return 0, w.err
	}
	budget := w.idle + time.Duration(w.n)*(time.Second/minRate)
	left := budget - w.waited
	if left <= 0 {
		w.err = limitError("the answer took longer than %s", budget.Round(time.Millisecond))
		return 0, w.err
	}
	d := min(w.idle, left)
	start := time.Now()
	if err := w.Conn.SetReadDeadline(start.Add(d)); err != nil {
		return 0, err
	}
	n, err := w.Conn.Read(p)
	w.waited += time.Since(start)
	if err != nil && d < w.idle && errors.Is(err, os.ErrDeadlineExceeded) {
		w.err = limitError("the answer took longer than %s", budget.Round(time.Millisecond))
		return 0, w.err
	}
	w.n += int64(n)
	if w.maxBytes > 0 && w.n > w.maxBytes {
		w.err = limitError("the answer is longer than %d bytes", w.maxBytes)
		return 0, w.err
	}
	if w.maxLine > 0 {
		for b := p[:n]; ; {
			i := bytes.IndexByte(b, '\n')
			if i < 0 {
				w.line += len(b)
				break
			}
			if w.line+i > w.maxLine {
				w.line += i
				break
			}
			w.line, b = 0, b[i+1:]
		}
		if w.line > w.maxLine {
			w.err = limitError("a line of the answer is longer than %d bytes", w.maxLine)
			return 0, w.err
		}
	}
	return n, err
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

// setup secures raw (implicit TLS or StartTLS), reads the greeting and hands
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
		return nil, fmt.Errorf("pop3: %w: server refused the connection: %q", mailsync.ErrConnection, sanitize(string(greeting), nil))
	}
	replay := append(append([]byte{}, greeting...), '\r', '\n')
	if cfg.security == StartTLS {
		if _, err := io.WriteString(c, "STLS\r\n"); err != nil {
			return nil, fail("STLS", err)
		}
		line, err := readLine(gr)
		if err != nil {
			return nil, fail("STLS", err)
		}
		if !bytes.HasPrefix(line, []byte("+OK")) {
			return nil, fmt.Errorf("pop3: %w: server refused StartTLS: %q", mailsync.ErrTLS, sanitize(string(line), nil))
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
	return &session{cfg: cfg, raw: raw, wire: w, pc: pc, br: bufio.NewReaderSize(w, retrBufferSize), tls: state,
		scrub: redact.New(cfg.password.Reveal())}, nil
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
	return s.doLimited(ctx, verb, maxLineAnswer, f)
}

// doLimited is do for an answer of at most maxBytes bytes.
func (s *session) doLimited(ctx context.Context, verb string, maxBytes int64, f func() error) error {
	if s.dead {
		return fmt.Errorf("pop3: %s: %w: %w", verb, mailsync.ErrConnection, errBroken)
	}
	if ctx.Err() != nil {
		return fmt.Errorf("pop3: %s: %w", verb, context.Cause(ctx))
	}
	stop := context.AfterFunc(ctx, func() { s.raw.Close() })
	s.wire.begin(maxLineLen, maxBytes)
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
	return &serverError{cmd: verb, text: s.sanitize(strings.TrimPrefix(err.Error(), "unknown response: "))}
}

// sanitize makes server text safe for an error message or a note.
func (s *session) sanitize(text string) string { return sanitize(text, s.scrub) }

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

// multi sends verb and reads its multi-line answer line by line (RFC
// 1939 §3), calling fn with each line, dot-unstuffed and without its CRLF;
// the slice is valid only during the call. An answer of more than
// maxLines lines or maxBytes bytes fails with ErrServerLimit and ends the
// session; so does an error from fn. A -ERR comes back as *serverError.
func (s *session) multi(ctx context.Context, verb string, maxLines int, maxBytes int64, fn func(line []byte) error) error {
	hint := ""
	if verb == "UIDL" || verb == "LIST" {
		hint = " (see Options.MaxMessages)"
	}
	return s.doLimited(ctx, verb, maxBytes, func() error {
		if _, err := io.WriteString(s.wire, verb+"\r\n"); err != nil {
			return err
		}
		status, err := readLine(s.br)
		if err != nil {
			return err
		}
		if !bytes.HasPrefix(status, []byte("+OK")) {
			return errors.New(strings.TrimPrefix(string(status), "-ERR "))
		}
		for n := 0; ; n++ {
			line, err := readLine(s.br)
			if err != nil {
				return err
			}
			if len(line) > 0 && line[0] == '.' {
				if len(line) == 1 {
					return nil
				}
				line = line[1:]
			}
			if n >= maxLines {
				return limitError("the answer to %s has more than %d lines%s", verb, maxLines, hint)
			}
			if err := fn(line); err != nil {
				return err
			}
		}
	})
}

// login authenticates with XOAUTH2 or USER/PASS. A login refused with
// [LOGIN-DELAY] comes back as a *mailsync.ThrottledError whose RetryAfter
// is the server's delay (see loginDelay).
func (s *session) login(ctx context.Context) error {
	cfg := s.cfg
	if cfg.tokens != nil {
		s.mech = "XOAUTH2"
		return s.loginXOAUTH2(ctx)
	}
	s.mech = "USER/PASS"
	if _, err := s.cmd(ctx, "USER", cfg.conn.User); err != nil {
		return s.loginError(ctx, "login", err)
	}
	if _, err := s.cmd(ctx, "PASS", cfg.password.Reveal()); err != nil {
		return s.loginError(ctx, "login", err)
	}
	return nil
}

// loginError classifies a refused login (see classifyLogin).
func (s *session) loginError(ctx context.Context, op string, err error) error {
	var se *serverError
	if errors.As(err, &se) {
		return fmt.Errorf("pop3: %s: %w", op, classifyLogin(se, func() time.Duration { return s.loginDelay(ctx) }))
	}
	return err
}

// loginDelay asks the server, after a login it refused with [LOGIN-DELAY]
// (still in the AUTHORIZATION state), for its LOGIN-DELAY capability (RFC
// 2449 §6.5: "LOGIN-DELAY <seconds> [USER]"). Without an answer it returns
// DefaultLoginDelay.
func (s *session) loginDelay(ctx context.Context) time.Duration {
	d := DefaultLoginDelay
	if s.dead {
		return d
	}
	err := s.multi(ctx, "CAPA", maxCapaLines, maxCapaLines*128, func(line []byte) error {
		if tag, v, _ := strings.Cut(string(line), " "); strings.EqualFold(tag, "LOGIN-DELAY") {
			if v, ok := parseDelay(v); ok {
				d = v
			}
		}
		return nil
	})
	if err != nil {
		s.cfg.log.Debug("pop3: CAPA after a LOGIN-DELAY refusal failed", slog.Any("error", err))
	}
	return d
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
	s.scrub.Add(tok.AccessToken, ir)
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
		return s.loginError(ctx, "XOAUTH2 login", se)
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
// A maildrop of more than Options.MaxMessages messages fails with
// ErrServerLimit.
func (s *session) mapKeys(ctx context.Context) ([]gopop3.MessageID, []string, error) {
	var (
		out     []gopop3.MessageID
		keys    = map[string]int{}
		notes   []string
		dropped int
	)
	note := func(format string, args ...any) {
		if len(notes) < maxNotes {
			notes = append(notes, fmt.Sprintf(format, args...))
		} else {
			dropped++
		}
	}
	max := s.cfg.maxMsgs
	err := s.multi(ctx, "UIDL", max, listingBytes(max), func(line []byte) error {
		f := bytes.Fields(line)
		num := 0
		if len(f) == 2 {
			num, _ = strconv.Atoi(string(f[0]))
		}
		switch {
		case num < 1:
			note("pop3: malformed UIDL line %q; skipped", s.sanitize(string(line)))
		case !validUID(string(f[1])):
			note("pop3: message %d has an invalid UIDL %q; skipped", num, s.sanitize(string(f[1])))
		case keys[string(f[1])] != 0:
			note("pop3: UIDL %q is listed twice; only the first message is used", s.sanitize(string(f[1])))
		default:
			uid := string(f[1])
			keys[uid] = num
			out = append(out, gopop3.MessageID{ID: num, UID: uid})
		}
		return nil
	})
	var se *serverError
	if errors.As(err, &se) {
		return nil, nil, fmt.Errorf("pop3: UIDL: %w: the server has no UIDL, needed for stable message keys: %w", mailsync.ErrUnsupported, se)
	}
	if err != nil {
		return nil, nil, err
	}
	if dropped > 0 {
		notes = append(notes, fmt.Sprintf("pop3: %d more UIDL entries skipped", dropped))
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

// sizes runs LIST and returns message number → size. Malformed lines
// are left out (their messages get size -1).
func (s *session) sizes(ctx context.Context) (map[int]int64, error) {
	out := map[int]int64{}
	max := s.cfg.maxMsgs
	err := s.multi(ctx, "LIST", max, listingBytes(max), func(line []byte) error {
		f := bytes.Fields(line)
		if len(f) < 2 {
			return nil
		}
		num, err1 := strconv.Atoi(string(f[0]))
		size, err2 := strconv.ParseInt(string(f[1]), 10, 64)
		if err1 == nil && err2 == nil && num > 0 && size >= 0 {
			out[num] = size
		}
		return nil
	})
	if err != nil {
		return nil, err
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
	// A message body has no line limit, and its size is the caller's to
	// bound (Limits.MaxMessageBytes); its time is bounded by the rate.
	s.wire.begin(0, 0)
	if _, err := fmt.Fprintf(s.wire, "RETR %d\r\n", num); err != nil {
		return transport(err)
	}
	status, err := readLine(s.br)
	if err != nil {
		return transport(err)
	}
	if !bytes.HasPrefix(status, []byte("+OK")) {
		se := &serverError{cmd: "RETR", text: s.sanitize(strings.TrimPrefix(string(status), "-ERR "))}
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
	// Keep the protocol in step: skip what fn did not read, up to maxDrain.
	_, derr := io.CopyN(io.Discard, dr, maxDrain)
	dr.close()
	if rerr := dr.readErr(); rerr != nil {
		return transport(rerr)
	}
	switch {
	case derr == nil:
		// More than maxDrain left: reconnecting is cheaper than reading it.
		s.cfg.log.Debug("pop3: message not read to its end; closing the session", slog.Int("message", num))
		s.kill()
		return true, ferr
	case derr != io.EOF:
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
