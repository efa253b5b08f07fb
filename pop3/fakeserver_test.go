package pop3_test

import (
	"bufio"
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"fmt"
	"io"
	"math/big"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/mailsync/mailsync"
)

// fakeServer is a small scripted POP3 server (RFC 1939, 2449, 2595, 5034)
// on loopback, for the protocol edge cases a real Dovecot will not produce
// on demand: stalls, a StartTLS injection, a server without UIDL, a failing
// QUIT, odd response codes. The real-server tests are in acceptance_test.go.
type fakeServer struct {
	Addr   string
	CAPool *x509.CertPool

	ln  net.Listener
	tls *tls.Config
	wg  sync.WaitGroup

	done chan struct{} // closed by Close: ends stalls

	mu       sync.Mutex
	user     string
	pass     string
	token    string
	msgs     []*fakeMsg
	commands []string // every command verb received, in order
	conns    []net.Conn
	knobs    fakeKnobs
}

// fakeKnobs script the server's misbehaviour; change them with set.
type fakeKnobs struct {
	greeting   string            // default "+OK fake POP3 ready"
	noUIDL     bool              // UIDL answers -ERR
	dupUIDL    bool              // every UIDL is "same"
	quitErr    string            // QUIT answers -ERR <quitErr> and applies nothing
	passErr    string            // PASS answers -ERR <passErr>
	stallOn    string            // stop answering at this command verb
	stallAfter int               // with stallOn "RETR": stop after this many body bytes
	stlsInject bool              // send a forged line right after +OK to STLS
	noSTLS     bool              // StartTLS answers -ERR
	challenge  bool              // a bad XOAUTH2 token first gets a "+ <base64>" challenge
	retrErr    map[string]string // uid → -ERR text for RETR
	// errEcho, when set and not "", makes PASS, AUTH (after the
	// challenge, if any), RETR and DELE answer "-ERR " + errEcho(verb,
	// argument), as servers that echo what they were sent do.
	errEcho func(verb, arg string) string
	// loginDelay, when not "", is announced in CAPA as "LOGIN-DELAY <loginDelay>".
	loginDelay string
	// retrMarksRead makes RETR set the message's read flag, as Courier does.
	retrMarksRead bool

	// hostileOn makes the answer to this verb hostile, as hostileMode says:
	//   "lines":       +OK, then valid lines without end, as fast as possible
	//   "line":        "+OK " and one line that never ends
	//   "trickle":     +OK, then one valid line every trickleEvery, forever
	//   "trickle-line": "+OK " and one byte every trickleEvery, never a CRLF
	// Whatever the mode, the server stops sending after hostileCap bytes
	// (default 128 MiB) and stalls, so that a client without limits fails
	// its test instead of eating the machine.
	hostileOn    string
	hostileMode  string
	trickleEvery time.Duration
	hostileCap   int64
}

// set changes the knobs; sessions read them under the same lock.
func (s *fakeServer) set(f func(k *fakeKnobs)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f(&s.knobs)
}

func (s *fakeServer) getKnobs() fakeKnobs {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.knobs
}

// stall blocks until the client goes away or the server closes.
func (s *fakeServer) stall(c net.Conn) {
	go func() {
		io.Copy(io.Discard, c)
		c.Close()
	}()
	select {
	case <-s.done:
	case <-time.After(time.Minute):
	}
}

// hostile sends the hostile answer to verb that k describes, then stalls.
// It allocates nothing per line, so that the client's memory is what a
// test measures.
func (s *fakeServer) hostile(c net.Conn, w *bufio.Writer, verb string, k fakeKnobs) {
	limit := k.hostileCap
	if limit == 0 {
		limit = 128 << 20
	}
	every := k.trickleEvery
	if every == 0 {
		every = 100 * time.Millisecond
	}
	var sent int64
	write := func(b []byte) bool {
		if sent >= limit {
			return false
		}
		if _, err := w.Write(b); err != nil || w.Flush() != nil {
			return false
		}
		sent += int64(len(b))
		return true
	}
	// line appends the i-th valid line of a multi-line answer to verb.
	line := func(b []byte, i int64) []byte {
		if verb == "CAPA" {
			b = append(b, "X-CAPA-"...)
		}
		b = strconv.AppendInt(b, i, 10)
		switch verb {
		case "CAPA":
		case "LIST":
			b = append(b, " 4096"...)
		default: // UIDL, RETR: a 64-character unique id
			b = append(b, " uid-0000000000000000000000000000000000000000000000000000000-"...)
			b = strconv.AppendInt(b, i, 10)
		}
		return append(b, "\r\n"...)
	}
	tick := time.NewTicker(every)
	defer tick.Stop()
	wait := func() bool {
		select {
		case <-s.done:
			return false
		case <-tick.C:
			return true
		}
	}
	buf := make([]byte, 0, 64<<10)
	switch k.hostileMode {
	case "lines":
		ok := write([]byte("+OK\r\n"))
		for i := int64(1); ok; {
			buf = buf[:0]
			for len(buf) < 60<<10 {
				buf = line(buf, i)
				i++
			}
			ok = write(buf)
		}
	case "line":
		for i := range cap(buf) {
			buf = append(buf, 'a'+byte(i%26))
		}
		ok := write([]byte("+OK "))
		for ok {
			ok = write(buf)
		}
	case "trickle":
		ok := write([]byte("+OK\r\n"))
		for i := int64(1); ok && wait(); i++ {
			ok = write(line(buf[:0], i))
		}
	case "trickle-line":
		ok := write([]byte("+OK "))
		for ok && wait() {
			ok = write([]byte("x"))
		}
	}
	s.stall(c)
}

type fakeMsg struct {
	uid     string
	body    []byte
	deleted bool // committed by a QUIT
	seen    bool // read flag, set by RETR with retrMarksRead
}

// startFake starts a server for user/pass (and, if token is set, XOAUTH2).
func startFake(user, pass, token string) (*fakeServer, error) {
	cert, pool, err := fakeCert()
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	s := &fakeServer{Addr: ln.Addr().String(), CAPool: pool, ln: ln,
		tls:  &tls.Config{Certificates: []tls.Certificate{cert}},
		user: user, pass: pass, token: token, done: make(chan struct{})}
	s.wg.Add(1)
	go s.serve()
	return s, nil
}

func (s *fakeServer) Close() {
	select {
	case <-s.done:
		return
	default:
	}
	close(s.done)
	s.ln.Close()
	s.mu.Lock()
	for _, c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
}

func (s *fakeServer) add(uid string, body []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.msgs = append(s.msgs, &fakeMsg{uid: uid, body: body})
}

// uids lists the messages not deleted.
func (s *fakeServer) uids() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, m := range s.msgs {
		if !m.deleted {
			out = append(out, m.uid)
		}
	}
	return out
}

func (s *fakeServer) seen() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.commands...)
}

// connection is the admin-form connection to the fake server.
func (s *fakeServer) connection() mailsync.Connection {
	host, port, _ := net.SplitHostPort(s.Addr)
	p, _ := strconv.Atoi(port)
	return mailsync.Connection{Name: "fake", Enabled: true, User: s.user, Server: host, Port: p,
		Protocol: mailsync.POP3, ConnectedWith: []string{"incident"}}
}

func (s *fakeServer) serve() {
	defer s.wg.Done()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return
		}
		s.mu.Lock()
		s.conns = append(s.conns, c)
		s.mu.Unlock()
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer c.Close()
			s.session(c)
		}()
	}
}

// session serves one connection. The maildrop snapshot is taken at login.
func (s *fakeServer) session(c net.Conn) {
	r := bufio.NewReader(c)
	w := bufio.NewWriter(c)
	send := func(format string, args ...any) bool {
		fmt.Fprintf(w, format+"\r\n", args...)
		return w.Flush() == nil
	}
	k := s.getKnobs()
	greeting := k.greeting
	if greeting == "" {
		greeting = "+OK fake POP3 ready"
	}
	if !send("%s", greeting) || !strings.HasPrefix(greeting, "+OK") {
		return
	}
	var (
		user    string
		authed  bool
		secure  bool
		view    []*fakeMsg
		pending = map[int]bool{}
	)
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		line = strings.TrimRight(line, "\r\n")
		verb, arg, _ := strings.Cut(line, " ")
		verb = strings.ToUpper(verb)
		s.mu.Lock()
		s.commands = append(s.commands, verb)
		k = s.knobs
		s.mu.Unlock()
		if k.hostileOn == verb && (authed || verb == "USER" || verb == "PASS" || verb == "CAPA") {
			s.hostile(c, w, verb, k)
			return
		}
		stall := k.stallOn == verb
		if stall && verb != "RETR" {
			s.stall(c)
			return
		}
		msg := func(arg string) (int, *fakeMsg) {
			n, err := strconv.Atoi(arg)
			if err != nil || n < 1 || n > len(view) || pending[n] {
				return 0, nil
			}
			return n, view[n-1]
		}
		switch {
		case verb == "CAPA":
			send("+OK")
			send("USER")
			if !authed {
				if !secure && !k.noSTLS {
					send("STLS")
				}
				if s.token != "" {
					send("SASL XOAUTH2")
				}
			}
			if !k.noUIDL {
				send("UIDL")
			}
			if k.loginDelay != "" {
				send("LOGIN-DELAY %s", k.loginDelay)
			}
			send(".")
		case verb == "STLS" && !authed && !secure:
			if k.noSTLS {
				send("-ERR StartTLS not available")
				continue
			}
			if k.stlsInject {
				send("+OK Begin TLS\r\n-ERR injected")
				return
			}
			send("+OK Begin TLS")
			tc := tls.Server(c, s.tls)
			if tc.Handshake() != nil {
				return
			}
			c, secure = tc, true
			r, w = bufio.NewReader(tc), bufio.NewWriter(tc)
		case verb == "USER" && !authed:
			user = arg
			send("+OK")
		case verb == "PASS" && !authed:
			switch {
			case k.errEcho != nil && k.errEcho(verb, arg) != "":
				send("-ERR %s", k.errEcho(verb, arg))
			case k.passErr != "":
				send("-ERR %s", k.passErr)
			case user == s.user && arg == s.pass:
				authed = true
			default:
				send("-ERR [AUTH] Authentication failed.")
			}
		case verb == "AUTH" && !authed:
			mech, ir, _ := strings.Cut(arg, " ")
			raw, _ := base64.StdEncoding.DecodeString(ir)
			if strings.ToUpper(mech) != "XOAUTH2" || s.token == "" {
				send("-ERR Unsupported mechanism")
				continue
			}
			if string(raw) == "user="+s.user+"\x01auth=Bearer "+s.token+"\x01\x01" {
				authed = true
				break
			}
			if k.challenge {
				send("+ %s", base64.StdEncoding.EncodeToString([]byte(`{"status":"401","schemes":"bearer"}`)))
				if l, err := r.ReadString('\n'); err != nil || strings.TrimRight(l, "\r\n") != "" {
					send("-ERR [AUTH] expected an empty response to the challenge")
					continue
				}
			}
			if k.errEcho != nil && k.errEcho(verb, arg) != "" {
				send("-ERR %s", k.errEcho(verb, arg))
				continue
			}
			send("-ERR [AUTH] Authentication failed.")
		case !authed:
			send("-ERR Unknown command or not logged in")
		case verb == "STAT":
			total := 0
			for _, m := range view {
				total += len(m.body)
			}
			send("+OK %d %d", len(view), total)
		case verb == "LIST":
			send("+OK %d messages", len(view))
			for i, m := range view {
				if !pending[i+1] {
					send("%d %d", i+1, len(m.body))
				}
			}
			send(".")
		case verb == "UIDL" && k.noUIDL:
			send("-ERR UIDL not supported")
		case verb == "UIDL" && arg != "":
			if n, m := msg(arg); m != nil {
				send("+OK %d %s", n, m.uid)
			} else {
				send("-ERR no such message")
			}
		case verb == "UIDL":
			send("+OK")
			for i, m := range view {
				if pending[i+1] {
					continue
				}
				uid := m.uid
				if k.dupUIDL {
					uid = "same"
				}
				send("%d %s", i+1, uid)
			}
			send(".")
		case (verb == "RETR" || verb == "DELE") && k.errEcho != nil && k.errEcho(verb, arg) != "":
			send("-ERR %s", k.errEcho(verb, arg))
		case verb == "RETR":
			n, m := msg(arg)
			if m == nil {
				send("-ERR There's no message %s.", arg)
				continue
			}
			if e := k.retrErr[m.uid]; e != "" {
				send("-ERR %s", e)
				continue
			}
			send("+OK %d octets", len(m.body))
			data := stuffed(m.body)
			if stall {
				w.Write(data[:min(k.stallAfter, len(data))])
				w.Flush()
				s.stall(c)
				return
			}
			w.Write(data)
			if w.Flush() != nil {
				return
			}
			if k.retrMarksRead {
				s.mu.Lock()
				m.seen = true
				s.mu.Unlock()
			}
			_ = n
		case verb == "DELE":
			if n, m := msg(arg); m != nil {
				pending[n] = true
				send("+OK Marked to be deleted.")
			} else {
				send("-ERR no such message")
			}
		case verb == "RSET":
			pending = map[int]bool{}
			send("+OK")
		case verb == "NOOP":
			send("+OK")
		case verb == "QUIT":
			if k.quitErr != "" {
				send("-ERR %s", k.quitErr)
				return
			}
			s.mu.Lock()
			for n := range pending {
				view[n-1].deleted = true
			}
			s.mu.Unlock()
			send("+OK Logging out, messages deleted.")
			return
		default:
			send("-ERR Unknown command: %s", verb)
		}
		if verb == "PASS" && authed || verb == "AUTH" && authed {
			s.mu.Lock()
			for _, m := range s.msgs {
				if !m.deleted {
					view = append(view, m)
				}
			}
			s.mu.Unlock()
			send("+OK Logged in.")
		}
	}
}

// stuffed is body dot-stuffed and terminated, as RETR sends it.
func stuffed(body []byte) []byte {
	out := make([]byte, 0, len(body)+len(body)/64+8)
	if len(body) > 0 && body[0] == '.' {
		out = append(out, '.')
	}
	for len(body) > 0 {
		i := bytes.IndexByte(body, '\n')
		if i < 0 {
			out = append(out, body...)
			break
		}
		out = append(out, body[:i+1]...)
		body = body[i+1:]
		if len(body) > 0 && body[0] == '.' {
			out = append(out, '.')
		}
	}
	if len(out) > 0 && out[len(out)-1] != '\n' {
		out = append(out, '\r', '\n')
	}
	return append(out, ".\r\n"...)
}

// fakeCert makes a self-signed certificate for 127.0.0.1 and a pool trusting it.
func fakeCert() (tls.Certificate, *x509.CertPool, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "fake pop3"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true, IsCA: true, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
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
