package imap

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"golang.org/x/oauth2"

	"github.com/mailsync/mailsync"
	"github.com/mailsync/mailsync/internal/sasl"
)

// session is one logged-in IMAP connection.
type session struct {
	cfg    *config
	raw    *meteredConn
	client *imapclient.Client
	caps   imap.CapSet
	auth   string // "LOGIN", "XOAUTH2" or "OAUTHBEARER"

	selected   bool   // selName is selected (read-write)
	selName    string // the configured folder name last selected or examined
	selMailbox string // the server's name of that folder
	delim      rune   // the server's hierarchy separator, once known
	delimKnown bool
	ns         *imap.NamespaceData // the server's namespaces, once known (nil: none)
	nsKnown    bool
	sel        imap.SelectData

	conn          *clientConn         // what go-imap reads and writes
	guard         *guard              // bounds responses; tracks commands
	tls           tls.ConnectionState // zero without TLS
	strayBodies   atomic.Int64        // message bodies the client could not route
	literalFailed atomic.Bool         // a body literal returned a read error

	mu     sync.Mutex
	killed error // why we closed the connection (context, stall)
	broken bool  // the connection is unusable
}

// meteredConn records when bytes last moved, for stall detection.
type meteredConn struct {
	net.Conn
	last   atomic.Int64 // unix nanoseconds
	paused atomic.Int32 // > 0 while the caller's callback runs
}

func (m *meteredConn) touch() { m.last.Store(time.Now().UnixNano()) }

func (m *meteredConn) Read(p []byte) (int, error) {
	n, err := m.Conn.Read(p)
	if n > 0 {
		m.touch()
	}
	return n, err
}

func (m *meteredConn) Write(p []byte) (int, error) {
	n, err := m.Conn.Write(p)
	if n > 0 {
		m.touch()
	}
	return n, err
}

// watch closes the connection when ctx ends, when no byte has moved for
// stall while not paused, or when one command has been in progress for
// longer than stall in total (time in the caller's callback not counted;
// message bodies delivered to it extend the bound by a second per
// minBodyRate bytes), so a server that trickles bytes cannot keep a
// command alive. The returned stop must be called when the operation ends.
func (s *session) watch(ctx context.Context, stall time.Duration) (stop func()) {
	s.raw.touch()
	// The total bound may be overshot by up to two ticks.
	tick := stall / 16
	tick = min(max(tick, 5*time.Millisecond), 500*time.Millisecond)
	w := &watcher{s: s, stall: stall, tick: tick, last: time.Now()}
	// Timers and context.AfterFunc rather than a goroutine: most
	// operations end before the first tick, and then nothing ran aside.
	w.mu.Lock()
	w.timer = time.AfterFunc(tick, w.check)
	w.stopCtx = context.AfterFunc(ctx, func() { w.end(ctx.Err()) })
	w.mu.Unlock()
	return w.stop
}

// watcher is the state of one watch.
type watcher struct {
	s           *session
	stall, tick time.Duration

	mu       sync.Mutex // held by every check, end and stop
	stopped  bool       // stop was called or the connection killed
	timer    *time.Timer
	stopCtx  func() bool
	last     time.Time     // of the previous tick
	seq      uint64        // the command being timed
	busy     time.Duration // its time so far, callbacks excluded
	bodyBase int64         // guard.bodyBytes when it started
}

// stop ends the watch; no kill starts after it returned.
func (w *watcher) stop() {
	w.mu.Lock()
	w.stopped = true
	w.mu.Unlock()
	w.timer.Stop()
	w.stopCtx()
}

// end kills the connection for reason, unless the watch stopped.
func (w *watcher) end(reason error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.stopped {
		return
	}
	w.stopped = true
	w.timer.Stop()
	w.s.kill(reason)
}

// check runs every tick.
func (w *watcher) check() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.stopped {
		return
	}
	if reason := w.verdict(time.Now()); reason != nil {
		w.stopped = true
		w.s.kill(reason)
		return
	}
	w.timer.Reset(w.tick)
}

// verdict is why the connection must be killed at now, or nil.
func (w *watcher) verdict(now time.Time) error {
	s := w.s
	elapsed := now.Sub(w.last)
	w.last = now
	if s.raw.paused.Load() > 0 {
		s.raw.touch()
		return nil
	}
	if idle := now.Sub(time.Unix(0, s.raw.last.Load())); idle > w.stall {
		return fmt.Errorf("no data from the server for %s", idle.Round(time.Millisecond))
	}
	if !s.guard.cmdActive.Load() {
		w.busy = 0
		return nil
	}
	if cur := s.guard.cmdSeq.Load(); cur != w.seq {
		// A new command: count from here (it began within the last
		// tick), so a silent server is reported as a stall, which the
		// idle time shows first.
		w.seq, w.busy, w.bodyBase = cur, 0, s.guard.bodyBytes.Load()
		return nil
	}
	w.busy += elapsed
	earned := time.Duration(float64(s.guard.bodyBytes.Load()-w.bodyBase) / minBodyRate * float64(time.Second))
	if w.busy > w.stall+earned {
		return fmt.Errorf("%w: the server did not complete a command within %s (it kept sending too slowly)", mailsync.ErrServerLimit, (w.stall + earned).Round(time.Millisecond))
	}
	return nil
}

// kill closes the TCP connection, which makes every pending go-imap call
// return; reason is reported instead of the resulting I/O error.
func (s *session) kill(reason error) {
	s.mu.Lock()
	if s.killed == nil {
		s.killed = reason
	}
	s.broken = true
	s.mu.Unlock()
	s.raw.Conn.Close()
}

func (s *session) killReason() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.killed
}

func (s *session) markBroken() {
	s.mu.Lock()
	s.broken = true
	s.mu.Unlock()
}

// usable reports whether the connection can take another command.
func (s *session) usable() bool {
	s.mu.Lock()
	broken := s.broken
	s.mu.Unlock()
	if broken {
		return false
	}
	select {
	case <-s.client.Closed():
		return false
	default:
		return s.client.State() == imap.ConnStateAuthenticated || s.client.State() == imap.ConnStateSelected
	}
}

// close says LOGOUT and closes, without waiting for the server's answer
// (BYE and OK, which tell nothing the connector needs): RFC 9051 lets the
// client close once it sent LOGOUT, and a round trip less per session is
// a wake-up less per mailbox and cycle. The write is bounded by a short
// timeout.
func (s *session) close() {
	if s.usable() {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		stop := s.watch(ctx, 3*time.Second)
		s.client.Logout()
		stop()
		cancel()
	}
	s.shutdown()
}

// shutdown closes the connection and waits for go-imap's reader to end,
// but not forever: should it be stuck (it waits for a handed-out literal
// to be consumed), it is abandoned rather than hanging the caller.
func (s *session) shutdown() {
	s.raw.Conn.Close()
	select {
	case <-s.client.Closed(): // the reader saw the close already
	default:
		t := time.NewTimer(5 * time.Second)
		defer t.Stop()
		select {
		case <-s.client.Closed():
		case <-t.C:
			s.cfg.log.Error("imap: the client did not shut down within 5s; abandoning it")
			return
		}
	}
	s.client.Close() // returns at once: its reader has ended
}

// check classifies an error returned by go-imap for operation op. Server
// refusals (NO, BAD) keep the connection; anything else breaks it and
// wraps mailsync.ErrConnection (or the context's error when ctx ended).
func (s *session) check(ctx context.Context, op string, err error) error {
	if err == nil {
		return nil
	}
	if ctxErr := ctx.Err(); ctxErr != nil {
		s.markBroken()
		return fmt.Errorf("imap: %s: %w", op, ctxErr)
	}
	if reason := s.killReason(); reason != nil {
		return fmt.Errorf("imap: %s on %s: %w: %w", op, s.cfg.addr, reason, mailsync.ErrConnection)
	}
	var ie *imap.Error
	if errors.As(err, &ie) {
		return s.cfg.responseError(op, ie)
	}
	s.markBroken()
	return fmt.Errorf("imap: %s on %s: connection lost: %s: %w", op, s.cfg.addr, s.cfg.redactText(err.Error()), mailsync.ErrConnection)
}

// responseError maps a NO or BAD response to the mailsync error it means.
func (c *config) responseError(op string, ie *imap.Error) error {
	text := fmt.Sprintf("imap: %s on %s: server answered %s", op, c.addr, c.describe(ie))
	switch {
	case ie.Code == imap.ResponseCodeUnavailable:
		return fmt.Errorf("%s: %w", text, mailsync.ErrConnection)
	case ie.Code == imap.ResponseCodeInUse:
		return fmt.Errorf("%s: %w", text, mailsync.ErrMailboxBusy)
	case ie.Code == imap.ResponseCodeLimit || strings.EqualFold(string(ie.Code), "THROTTLED"):
		return &mailsync.ThrottledError{RetryAfter: time.Minute, Err: errors.New(text)}
	}
	return errors.New(text)
}

// describe prints a response without the "imap:" prefix of imap.Error,
// scrubbed of every secret the server may echo.
func (c *config) describe(ie *imap.Error) string { return c.redactText(describe(ie)) }

// describe prints a response without the "imap:" prefix of imap.Error.
// Server text: print it through config.describe.
func describe(ie *imap.Error) string {
	s := string(ie.Type)
	if ie.Code != "" {
		s += " [" + string(ie.Code) + "]"
	}
	if ie.Text != "" {
		s += " " + ie.Text
	}
	return s
}

// dial connects, secures and logs in.
func dial(ctx context.Context, cfg *config) (*session, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("imap: connect: %w", err)
	}
	log := cfg.log
	start := time.Now()
	dctx, cancel := context.WithTimeout(ctx, cfg.opts.DialTimeout)
	defer cancel()

	dialFn := cfg.opts.DialContext
	if dialFn == nil {
		d := &net.Dialer{}
		dialFn = d.DialContext
	}
	conn, err := dialFn(dctx, "tcp", cfg.addr)
	if err != nil {
		return nil, dialError(ctx, cfg, err)
	}
	s := &session{cfg: cfg, raw: &meteredConn{Conn: conn}}
	s.guard = newGuard(maxResponseBytes, s.kill)

	// Secure the connection and read the greeting under DialTimeout.
	stop := s.watch(dctx, cfg.opts.DialTimeout)
	err = s.open(dctx)
	stop()
	if err != nil {
		if s.client != nil {
			s.shutdown()
		} else {
			s.raw.Conn.Close()
		}
		if ctx.Err() != nil {
			return nil, fmt.Errorf("imap: connect to %s: %w", cfg.addr, ctx.Err())
		}
		if dctx.Err() != nil {
			return nil, fmt.Errorf("imap: connect to %s: no greeting or TLS handshake within %s: %w", cfg.addr, cfg.opts.DialTimeout, mailsync.ErrConnection)
		}
		return nil, err
	}

	stop = s.watch(ctx, cfg.opts.CommandTimeout)
	err = s.login(ctx)
	stop()
	if err != nil {
		s.shutdown()
		return nil, err
	}
	log.Debug("imap connected", slog.String("server", cfg.addr), slog.String("security", cfg.security.String()),
		slog.String("auth", s.auth), slog.Duration("elapsed", time.Since(start)))
	return s, nil
}

// dialError explains a failed TCP connection.
func dialError(ctx context.Context, cfg *config, err error) error {
	if ctx.Err() != nil {
		return fmt.Errorf("imap: connect to %s: %w", cfg.addr, ctx.Err())
	}
	var dnsErr *net.DNSError
	var netErr net.Error
	switch {
	case errors.As(err, &dnsErr) && dnsErr.IsNotFound:
		return fmt.Errorf("imap: cannot resolve server name %q (DNS: no such host); check the server field: %w", cfg.conn.Server, mailsync.ErrConnection)
	case errors.As(err, &dnsErr):
		return fmt.Errorf("imap: DNS lookup of %q failed (%v): %w", cfg.conn.Server, dnsErr.Err, mailsync.ErrConnection)
	case errors.Is(err, syscall.ECONNREFUSED):
		return fmt.Errorf("imap: connection refused by %s: nothing listens there; check the server and port: %w", cfg.addr, mailsync.ErrConnection)
	case errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.ENETUNREACH):
		return fmt.Errorf("imap: %s is unreachable (no route to host): %w", cfg.addr, mailsync.ErrConnection)
	case errors.As(err, &netErr) && netErr.Timeout():
		return fmt.Errorf("imap: timed out connecting to %s after %s (firewall, or wrong server or port?): %w", cfg.addr, cfg.opts.DialTimeout, mailsync.ErrConnection)
	}
	return fmt.Errorf("imap: cannot connect to %s: %v: %w", cfg.addr, err, mailsync.ErrConnection)
}

// open secures the connection as configured and waits for the greeting.
func (s *session) open(ctx context.Context) error {
	cfg := s.cfg
	opts := &imapclient.Options{
		UnilateralDataHandler: &imapclient.UnilateralDataHandler{Fetch: s.strayFetch},
	}
	if h, ok := s.raw.Conn.(unilateralHook); ok { // a Watcher's connection (idle.go)
		h.hookUnilateral(opts.UnilateralDataHandler)
	}
	switch cfg.security {
	case ImplicitTLS:
		tc, err := cfg.handshake(ctx, s.raw)
		if err != nil {
			return tlsError(cfg, err)
		}
		s.tls = tc.ConnectionState()
		s.conn = &clientConn{Conn: tc, guard: s.guard}
	case StartTLS:
		tc, err := s.startTLS(ctx)
		if err != nil {
			return err
		}
		s.tls = tc.ConnectionState()
		// The greeting was read before STARTTLS; go-imap wants one.
		s.conn = &clientConn{Conn: tc, prefix: []byte("* OK STARTTLS completed\r\n"), guard: s.guard}
	case Plaintext:
		s.conn = &clientConn{Conn: s.raw, guard: s.guard}
	}
	s.client = imapclient.New(s.conn, opts)
	if err := s.client.WaitGreeting(); err != nil {
		var ie *imap.Error
		if errors.As(err, &ie) {
			return fmt.Errorf("imap: %s refused the session: %s: %w", cfg.addr, cfg.describe(ie), mailsync.ErrConnection)
		}
		if reason := s.killReason(); reason != nil {
			if errors.Is(reason, mailsync.ErrServerLimit) {
				return fmt.Errorf("imap: no greeting from %s: %w: %w", cfg.addr, reason, mailsync.ErrConnection)
			}
			err = reason
		}
		return fmt.Errorf("imap: no greeting from %s: %s: %w", cfg.addr, cfg.redactText(err.Error()), mailsync.ErrConnection)
	}
	return nil
}

// tlsError explains a failed TLS handshake.
func tlsError(cfg *config, err error) error {
	var unknown x509.UnknownAuthorityError
	var host x509.HostnameError
	var invalid x509.CertificateInvalidError
	var record tls.RecordHeaderError
	var alert tls.AlertError
	switch {
	case errors.As(err, &unknown):
		return fmt.Errorf("imap: the certificate of %s is not trusted (signed by an unknown authority; self-signed? pass its CA in Options.RootCAs): %w", cfg.addr, mailsync.ErrTLS)
	case errors.As(err, &host):
		return fmt.Errorf("imap: the certificate of %s is not valid for %q (%v): %w", cfg.addr, host.Host, err, mailsync.ErrTLS)
	case errors.As(err, &invalid):
		return fmt.Errorf("imap: the certificate of %s is invalid (%v): %w", cfg.addr, err, mailsync.ErrTLS)
	case errors.As(err, &record):
		return fmt.Errorf("imap: %s does not speak TLS on this port (plain IMAP? use STARTTLS or port 993): %w", cfg.addr, mailsync.ErrTLS)
	case errors.As(err, &alert):
		return fmt.Errorf("imap: TLS handshake with %s failed: the server sent alert %v: %w", cfg.addr, err, mailsync.ErrTLS)
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, syscall.ECONNRESET), errors.Is(err, net.ErrClosed):
		return fmt.Errorf("imap: %s closed the connection during the TLS handshake: %v: %w", cfg.addr, err, mailsync.ErrConnection)
	}
	return fmt.Errorf("imap: TLS handshake with %s failed: %v: %w", cfg.addr, err, mailsync.ErrTLS)
}

// login authenticates with the password or the OAuth token.
func (s *session) login(ctx context.Context) error {
	cfg := s.cfg
	caps := s.client.Caps()
	if caps == nil {
		return s.check(ctx, "login", errors.New("no capability list from the server"))
	}
	user := cfg.conn.User
	var err error
	var saslClient sasl.Client
	if cfg.mech == "" {
		s.auth = "LOGIN"
		if caps.Has(imap.CapLoginDisabled) {
			if cfg.security == Plaintext {
				return fmt.Errorf("imap: %s refuses LOGIN without TLS (LOGINDISABLED); use STARTTLS or implicit TLS: %w", cfg.addr, mailsync.ErrPlaintextRefused)
			}
			return fmt.Errorf("imap: %s disables LOGIN (LOGINDISABLED; it offers %s): %w", cfg.addr, mechanisms(caps), mailsync.ErrAuth)
		}
		err = s.client.Login(user, cfg.opts.Password.Reveal()).Wait()
	} else {
		s.auth = cfg.mech
		if !caps.Has(imap.AuthCap(cfg.mech)) {
			return fmt.Errorf("imap: %s does not offer AUTH=%s (it offers %s): %w", cfg.addr, cfg.mech, mechanisms(caps), mailsync.ErrAuth)
		}
		token, terr := fetchToken(ctx, cfg.opts.TokenSource)
		if terr != nil {
			return terr
		}
		if cfg.mech == sasl.XOAuth2 {
			saslClient = sasl.NewXOAuth2Client(user, token)
		} else {
			saslClient = sasl.NewOAuthBearerClient(user, token, cfg.conn.Server, cfg.port)
		}
		// A server may echo the token or the whole SASL response (raw or
		// base64) in its answer: scrub them from every error from now on.
		cfg.rememberSecrets(token)
		if _, ir, err := saslClient.Start(); err == nil && len(ir) > 0 {
			cfg.rememberSecrets(string(ir), base64.StdEncoding.EncodeToString(ir))
		}
		err = s.client.Authenticate(emptyAware{saslClient, s.conn})
	}
	if err != nil {
		var ie *imap.Error
		if !errors.As(err, &ie) || ctx.Err() != nil || s.killReason() != nil {
			return s.check(ctx, "login", err)
		}
		switch ie.Code {
		case imap.ResponseCodeUnavailable, imap.ResponseCodeInUse, imap.ResponseCodeLimit:
			return cfg.responseError("login", ie)
		case imap.ResponseCodePrivacyRequired:
			return fmt.Errorf("imap: %s requires TLS for login (%s): %w", cfg.addr, cfg.describe(ie), mailsync.ErrPlaintextRefused)
		}
		detail := ""
		if saslClient != nil {
			detail = " (the access token was rejected"
			if se := saslClient.ServerError(); se != nil {
				detail += ": status " + cfg.redactText(se.Status)
			}
			detail += ")"
		}
		return fmt.Errorf("imap: %s rejected %s login for %q%s: %s: %w", cfg.addr, s.auth, user, detail, cfg.describe(ie), mailsync.ErrAuth)
	}
	s.caps = s.client.Caps()
	if s.caps == nil {
		return s.check(ctx, "login", errors.New("no capability list after login"))
	}
	return nil
}

// emptyAware arms clientConn's fix for go-imap's encoding of an empty SASL
// response when the mechanism answers with one.
type emptyAware struct {
	sasl.Client
	conn *clientConn
}

func (e emptyAware) Next(challenge []byte) ([]byte, error) {
	resp, err := e.Client.Next(challenge)
	if err == nil && len(resp) == 0 {
		e.conn.emptySASL.Store(true)
	}
	return resp, err
}

func mechanisms(caps imap.CapSet) string {
	m := caps.AuthMechanisms()
	if len(m) == 0 {
		return "no SASL mechanism"
	}
	return "AUTH=" + strings.Join(m, " AUTH=")
}

// fetchToken gets an access token; the token source has no context, so it
// runs aside and ctx still cancels the wait.
func fetchToken(ctx context.Context, ts oauth2.TokenSource) (string, error) {
	type result struct {
		tok *oauth2.Token
		err error
	}
	ch := make(chan result, 1)
	go func() {
		defer func() {
			if v := recover(); v != nil {
				ch <- result{err: fmt.Errorf("token source panicked: %v", v)}
			}
		}()
		tok, err := ts.Token()
		ch <- result{tok, err}
	}()
	var r result
	select {
	case <-ctx.Done():
		return "", fmt.Errorf("imap: getting an access token: %w", ctx.Err())
	case r = <-ch:
	}
	if r.err != nil {
		return "", tokenError(r.err)
	}
	if r.tok == nil || r.tok.AccessToken == "" {
		return "", fmt.Errorf("imap: the token source returned no access token: %w", mailsync.ErrAuth)
	}
	return r.tok.AccessToken, nil
}

// tokenError classifies a token source failure without printing secrets.
func tokenError(err error) error {
	for _, sentinel := range []error{mailsync.ErrConsentRequired, mailsync.ErrTokenExpired, mailsync.ErrAuth, mailsync.ErrConnection, mailsync.ErrThrottled} {
		if errors.Is(err, sentinel) {
			return fmt.Errorf("imap: getting an access token: %w", err)
		}
	}
	var re *oauth2.RetrieveError
	if errors.As(err, &re) {
		status := 0
		if re.Response != nil {
			status = re.Response.StatusCode
		}
		desc := fmt.Sprintf("token endpoint answered HTTP %d %s", status, re.ErrorCode)
		if re.ErrorDescription != "" {
			desc += ": " + re.ErrorDescription
		}
		switch {
		case re.ErrorCode == "invalid_grant":
			return fmt.Errorf("imap: %s: %w", desc, mailsync.ErrConsentRequired)
		case status == 429:
			return &mailsync.ThrottledError{RetryAfter: time.Minute, Err: errors.New("imap: " + desc)}
		case status >= 500:
			return fmt.Errorf("imap: %s: %w", desc, mailsync.ErrConnection)
		}
		return fmt.Errorf("imap: %s: %w", desc, mailsync.ErrAuth)
	}
	var netErr net.Error
	if errors.As(err, &netErr) {
		return fmt.Errorf("imap: getting an access token: %v: %w", err, mailsync.ErrConnection)
	}
	return fmt.Errorf("imap: getting an access token: %v: %w", err, mailsync.ErrAuth)
}

// strayFetch drains FETCH responses go-imap could not route to a command:
// flag updates from other clients, and message bodies sent before their
// UID (fetchMissing recovers those).
func (s *session) strayFetch(msg *imapclient.FetchMessageData) {
	body := false
	for item := msg.Next(); item != nil; item = msg.Next() {
		if b, ok := item.(imapclient.FetchItemDataBodySection); ok && b.Literal != nil {
			body = true
			io.Copy(io.Discard, b.Literal)
		}
	}
	if body {
		s.strayBodies.Add(1)
	}
}
