// Package dovecottest runs a private, real Dovecot (IMAP and POP3) on
// loopback for tests.
//
// Everything lives in one temporary directory (Server.Dir): a generated
// dovecot.conf (never /etc/dovecot), a self-signed certificate made in Go,
// one passwd-file per user with a {PLAIN} password, and one Maildir per
// user. Dovecot listens on free high ports of 127.0.0.1: IMAP with STARTTLS,
// IMAPS, POP3 with STLS and POP3S. Failed logins are answered within about
// 0.5 s (auth_failure_delay = 0; Dovecot 2.3 still flushes failures on a
// 500 ms timer) and the anvil auth penalty is off, so a correct login right
// after wrong ones is not slowed down.
//
// Start gives a test its own server, stopped at t.Cleanup. A test package
// with several tests should share one server per Options with Shared and
// stop it from TestMain, so that Dovecot's start-up (about 0.1 s, plus the
// certificate) is paid once:
//
//	func TestMain(m *testing.M) {
//		code := m.Run()
//		dovecottest.StopAll()
//		os.Exit(code)
//	}
//
//	func TestSomething(t *testing.T) {
//		srv := dovecottest.Shared(t, dovecottest.Options{})
//		user := srv.AddUser(t, t.Name(), "secret") // unique login per test
//		srv.Deliver(t, user, "INBOX", raw)
//		// connect to srv.IMAPSAddr with &tls.Config{RootCAs: srv.CAPool, ServerName: "localhost"}
//		// check srv.Messages(t, user, "INBOX") afterwards
//	}
//
// Tests that Restart or Stop the server must use Start, not Shared.
//
// # Plaintext authentication on loopback
//
// Dovecot treats a connection whose remote IP equals its local IP as secured
// and then allows LOGIN and USER/PASS without TLS even when
// disable_plaintext_auth = yes. Every connection to IMAPAddr/POP3Addr
// (127.0.0.1 to 127.0.0.1) is such a connection. The plain listeners are
// therefore also bound on 127.0.0.2 (IMAPNonLocalAddr, POP3NonLocalAddr):
// a client connecting there comes from 127.0.0.1, and Dovecot applies
// disable_plaintext_auth as for a remote client (LOGINDISABLED, "-ERR
// Plaintext authentication disallowed"), unless Options.AllowPlaintextAuth.
//
// # Running as root or not
//
// As root (CI), mail is owned by nobody (65534) and Dovecot uses its system
// users dovecot and dovenull (created by the Debian packages). As another
// user everything runs as that user: mail uid = own uid, no chroot.
//
// # Environment
//
//   - CI=true: a missing dovecot binary fails the test instead of skipping
//     it. scripts/install-test-deps.sh installs it.
//   - DOVECOTTEST_DOVECOT, DOVECOTTEST_DOVEADM: paths of the binaries
//     (default: PATH, then /usr/sbin, /usr/local/sbin).
//   - DOVECOTTEST_KEEP=1: keep Server.Dir (config, dovecot.log, Maildirs)
//     after Stop, for debugging.
//
// If a test fails, the part of dovecot.log written during it is logged (its
// last 60 lines, with known passwords and tokens redacted).
package dovecottest

import (
	"bytes"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Options configure a server.
type Options struct {
	// OAuth enables XOAUTH2 and OAUTHBEARER through Dovecot's oauth2 passdb,
	// checked against an RFC 7662 introspection endpoint this package runs on
	// loopback (httptest). Tokens are registered with AddToken. Passwords
	// are never sent to that endpoint (the passdbs are split by mechanism).
	OAuth bool
	// AllowPlaintextAuth sets disable_plaintext_auth = no (LOGIN/USER+PASS on
	// the non-TLS ports). Otherwise Dovecot refuses plaintext authentication
	// before STARTTLS/STLS.
	AllowPlaintextAuth bool
	// DisableMove removes the MOVE capability from the IMAP capability list
	// (everything else Dovecot 2.3 advertises stays), so IMAP clients can be
	// tested on their COPY + STORE \Deleted + EXPUNGE fallback.
	DisableMove bool
	// CourierNamespace gives the personal namespace the prefix "INBOX." and
	// the separator ".", as Courier-IMAP (and Cyrus by default) present
	// mailboxes: NAMESPACE answers (("INBOX." ".")), every folder lives
	// below INBOX ("INBOX.Processed"), and a name outside the namespace
	// ("Processed") is refused. The Maildir layout is unchanged: IMAP
	// "INBOX.Processed" is the Maildir++ folder ".Processed", so Deliver
	// and Messages still take "Processed".
	CourierNamespace bool
	// LoginProcessLimit, when positive, sets process_limit of the imap-login
	// and imap services (Dovecot's default is 100 each, from
	// default_process_limit), so that more than 100 IMAP connections can be
	// open or logging in at once, as a fleet benchmark needs.
	LoginProcessLimit int
	// LoginHighPerformance runs imap-login in Dovecot's "high-performance"
	// mode (service_count = 0, process_min_avail = 1): a long-lived login
	// process serving many connections (up to default_client_limit, 1000),
	// instead of one new process per connection. Its OpenSSL context lives
	// on, so a client can resume TLS sessions (TLS 1.3 tickets) across
	// connections; in the default high-security mode every handshake is a
	// full one. (Dovecot's guide suggests process_min_avail = CPU cores;
	// each process has its own ticket key, so resumption then only works
	// when the connection lands on the same process.)
	LoginHighPerformance bool
	// ExtraConfig is appended to the generated dovecot.conf, e.g. to raise
	// limits for a benchmark ("service anvil {\n client_limit = 3000\n}";
	// a section repeated there is merged with the generated one).
	ExtraConfig string
}

// Server is a running private Dovecot.
type Server struct {
	// IMAPAddr is the plain IMAP listener ("127.0.0.1:port"), offering STARTTLS.
	IMAPAddr string
	// IMAPSAddr is the implicit-TLS IMAP listener.
	IMAPSAddr string
	// POP3Addr is the plain POP3 listener, offering STLS.
	POP3Addr string
	// POP3SAddr is the implicit-TLS POP3 listener.
	POP3SAddr string
	// IMAPNonLocalAddr and POP3NonLocalAddr reach the plain listeners at
	// 127.0.0.2 ("127.0.0.2:port"; empty if 127.0.0.2 cannot be bound).
	// Dovecot treats a connection whose remote IP equals its local IP as
	// secured and then allows plaintext authentication whatever
	// disable_plaintext_auth says — which is every connection to IMAPAddr
	// and POP3Addr. Connecting to 127.0.0.2 comes from 127.0.0.1, so there
	// Dovecot behaves as towards a remote client: without
	// AllowPlaintextAuth it advertises LOGINDISABLED and refuses
	// LOGIN/USER+PASS before STARTTLS/STLS. Use these to test how a client
	// copes with a server that insists on TLS.
	IMAPNonLocalAddr string
	// POP3NonLocalAddr: see IMAPNonLocalAddr.
	POP3NonLocalAddr string
	// CAPool trusts the server's self-signed certificate (ECDSA P-256,
	// CN=localhost, SANs DNS:localhost, IP:127.0.0.1, IP:127.0.0.2, IP:::1).
	CAPool *x509.CertPool
	// CAFile is the path of that certificate in PEM form, for external
	// clients (mbsync, fetchmail, openssl s_client).
	CAFile string
	// Dir is the server's private directory (config, logs, homes).
	Dir string
	// ConfigFile is the generated dovecot.conf, for doveadm -c.
	ConfigFile string
	// LogFile is Dovecot's log file.
	LogFile string
	// IntrospectionURL is the RFC 7662 endpoint Dovecot asks about bearer
	// tokens; empty unless Options.OAuth.
	IntrospectionURL string

	opts     Options
	dovecot  string // path of the dovecot binary
	doveadm  string // path of the doveadm binary
	mailUID  int
	mailGID  int
	asRoot   bool
	nonLocal bool // also listen on 127.0.0.2 (plain ports)
	oauth    *introspector
	httpSrv  *httptest.Server

	mu        sync.Mutex        // guards the fields below and the users file
	users     map[string]string // login -> password
	lastDeliv time.Time
	seq       int
	proc      *process
	stopped   bool // Stop was called
}

// process is one running dovecot master started with -F.
type process struct {
	cmd  *exec.Cmd
	done chan struct{} // closed when the master has exited and been reaped
	err  error
}

// probeUser is an internal account used for the readiness check.
const probeUser = "dovecottest-probe"

// Start starts a private Dovecot (dovecot -c <tempdir>/dovecot.conf) and stops
// it at t.Cleanup. If the dovecot binary is missing it calls t.Skip with a
// clear message, except when the environment has CI=true, where it calls
// t.Fatal instead (CI must run these tests). On a failed test the tail of
// Dovecot's log is printed.
func Start(t testing.TB, opts Options) *Server {
	t.Helper()
	dovecot, doveadm, err := findBinaries()
	if err != nil {
		skipOrFail(t, err)
	}
	s, err := start(opts, dovecot, doveadm)
	if err != nil {
		t.Fatalf("dovecottest: %v", err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			s.logTail(t, 0)
		}
		s.Stop()
	})
	return s
}

func skipOrFail(t testing.TB, err error) {
	t.Helper()
	msg := fmt.Sprintf("dovecottest: %v; install dovecot-imapd and dovecot-pop3d (scripts/install-test-deps.sh) to run this test", err)
	if os.Getenv("CI") == "true" {
		t.Fatal(msg + " (CI=true: the Dovecot tests must run)")
	}
	t.Skip(msg)
}

// findBinaries locates dovecot and doveadm: $DOVECOTTEST_DOVECOT and
// $DOVECOTTEST_DOVEADM if set, else PATH, else the usual sbin directories
// (which a non-root PATH often lacks).
func findBinaries() (dovecot, doveadm string, err error) {
	find := func(name, env string) (string, error) {
		if p := os.Getenv(env); p != "" {
			if fi, err := os.Stat(p); err != nil || fi.IsDir() || fi.Mode()&0o111 == 0 {
				return "", fmt.Errorf("%s=%s is not an executable file", env, p)
			}
			return p, nil
		}
		if p, err := exec.LookPath(name); err == nil {
			return p, nil
		}
		for _, dir := range []string{"/usr/sbin", "/usr/bin", "/usr/local/sbin", "/usr/local/bin", "/sbin"} {
			p := filepath.Join(dir, name)
			if fi, err := os.Stat(p); err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0 {
				return p, nil
			}
		}
		return "", fmt.Errorf("%s binary not found (PATH, /usr/sbin, /usr/local/sbin)", name)
	}
	if dovecot, err = find("dovecot", "DOVECOTTEST_DOVECOT"); err != nil {
		return "", "", err
	}
	if doveadm, err = find("doveadm", "DOVECOTTEST_DOVEADM"); err != nil {
		return "", "", err
	}
	return dovecot, doveadm, nil
}

// start creates the directory, config, certificate and starts the server,
// retrying with fresh ports if one was taken in the meantime.
func start(opts Options, dovecot, doveadm string) (*Server, error) {
	dir, err := os.MkdirTemp("", "dovecottest-")
	if err != nil {
		return nil, err
	}
	// Dovecot's unprivileged processes (dovenull, nobody) must reach into it.
	if err := os.Chmod(dir, 0o755); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	s := &Server{
		Dir:        dir,
		ConfigFile: filepath.Join(dir, "dovecot.conf"),
		LogFile:    filepath.Join(dir, "dovecot.log"),
		CAFile:     filepath.Join(dir, "cert.pem"),
		opts:       opts,
		dovecot:    dovecot,
		doveadm:    doveadm,
		users:      make(map[string]string),
	}
	ok := false
	defer func() {
		if !ok {
			s.Stop()
		}
	}()
	s.asRoot = os.Geteuid() == 0
	if s.asRoot {
		s.mailUID, s.mailGID = 65534, 65534
	} else {
		s.mailUID, s.mailGID = os.Getuid(), os.Getgid()
	}
	for _, sub := range []string{"home", "run", "state", "passwd.d"} {
		if err := os.Mkdir(filepath.Join(dir, sub), 0o755); err != nil {
			return nil, err
		}
	}
	certPEM, keyPEM, err := selfSignedCert()
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(s.CAFile, certPEM, 0o644); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, "key.pem"), keyPEM, 0o600); err != nil {
		return nil, err
	}
	s.CAPool = x509.NewCertPool()
	s.CAPool.AppendCertsFromPEM(certPEM)

	if opts.OAuth {
		s.oauth = newIntrospector()
		s.httpSrv = httptest.NewServer(s.oauth)
		s.IntrospectionURL = s.httpSrv.URL + "/introspect"
		ext := fmt.Sprintf("introspection_mode = post\nintrospection_url = %s\nusername_attribute = username\nactive_attribute = active\nactive_value = true\nforce_introspection = yes\n", s.IntrospectionURL)
		if err := os.WriteFile(filepath.Join(dir, "dovecot-oauth2.conf.ext"), []byte(ext), 0o644); err != nil {
			return nil, err
		}
	}

	probePass, err := randomToken()
	if err != nil {
		return nil, err
	}
	s.users[probeUser] = probePass
	if err := s.makeHome(probeUser); err != nil {
		return nil, err
	}
	if err := s.writeUserFile(probeUser, probePass); err != nil {
		return nil, err
	}

	s.nonLocal = canBind(nonLocalIP)
	var lastErr error
	for attempt := 0; attempt < 4; attempt++ {
		ports, err := freePorts(4)
		if err != nil {
			return nil, err
		}
		s.IMAPAddr = net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[0]))
		s.IMAPSAddr = net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[1]))
		s.POP3Addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[2]))
		s.POP3SAddr = net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[3]))
		if s.nonLocal {
			s.IMAPNonLocalAddr = net.JoinHostPort(nonLocalIP, strconv.Itoa(ports[0]))
			s.POP3NonLocalAddr = net.JoinHostPort(nonLocalIP, strconv.Itoa(ports[2]))
		}
		if err := os.WriteFile(s.ConfigFile, []byte(s.config(ports)), 0o644); err != nil {
			return nil, err
		}
		lastErr = s.launch()
		if lastErr == nil {
			ok = true
			return s, nil
		}
		if !errors.Is(lastErr, errAddrInUse) {
			break
		}
	}
	return nil, lastErr
}

var errAddrInUse = errors.New("address already in use")

// nonLocalIP is the second loopback address the plain listeners also use.
const nonLocalIP = "127.0.0.2"

func canBind(ip string) bool {
	l, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
	if err != nil {
		return false
	}
	l.Close()
	return true
}

// freePorts returns n distinct free TCP ports on 127.0.0.1.
func freePorts(n int) ([]int, error) {
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	ports := make([]int, 0, n)
	for i := 0; i < n; i++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("find a free port: %w", err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// launch starts the dovecot master in the foreground (-F) and waits until it
// serves: all four ports accept connections and the auth process answers
// doveadm auth test.
func (s *Server) launch() error {
	logStart := fileSize(s.LogFile)
	cmd := exec.Command(s.dovecot, "-F", "-c", s.ConfigFile)
	// Output before the log file opens goes to a file, not a pipe: a pipe
	// would keep cmd.Wait waiting for every child process holding it.
	outPath := filepath.Join(s.Dir, "dovecot.out")
	outFile, err := os.OpenFile(outPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer outFile.Close()
	outStart := fileSize(outPath)
	cmd.Stdout = outFile
	cmd.Stderr = outFile
	cmd.Dir = s.Dir
	cmd.SysProcAttr = &syscall.SysProcAttr{
		// Its own process group, so that stragglers can be killed with the
		// master (by its pid as the group id).
		Setpgid: true,
		// Kill the master if the test binary dies without running its
		// cleanups; its children follow when the master is gone.
		Pdeathsig: syscall.SIGTERM,
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", s.dovecot, err)
	}
	p := &process{cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	s.mu.Lock()
	s.proc = p
	s.mu.Unlock()

	failed := func(what string) error {
		s.stopProcess()
		logText := readFrom(s.LogFile, logStart, 4096)
		out := readFrom(outPath, outStart, 4096)
		msg := fmt.Sprintf("dovecot %s; output: %q; log: %q", what, strings.TrimSpace(out), strings.TrimSpace(logText))
		if strings.Contains(logText+out, "Address already in use") {
			return fmt.Errorf("%w: %s", errAddrInUse, msg)
		}
		return errors.New(msg)
	}

	deadline := time.Now().Add(15 * time.Second)
	for _, addr := range []string{s.IMAPAddr, s.IMAPSAddr, s.POP3Addr, s.POP3SAddr, s.IMAPNonLocalAddr, s.POP3NonLocalAddr} {
		if addr == "" {
			continue
		}
		for {
			select {
			case <-p.done:
				return failed(fmt.Sprintf("exited during start-up (%v)", p.err))
			default:
			}
			c, err := net.DialTimeout("tcp", addr, time.Second)
			if err == nil {
				c.Close()
				break
			}
			if time.Now().After(deadline) {
				return failed("did not listen on " + addr + " within 15s")
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	s.mu.Lock()
	probePass := s.users[probeUser]
	s.mu.Unlock()
	for {
		out, err := exec.Command(s.doveadm, "-c", s.ConfigFile, "auth", "test", probeUser, probePass).CombinedOutput()
		if err == nil {
			return nil
		}
		select {
		case <-p.done:
			return failed(fmt.Sprintf("exited during start-up (%v)", p.err))
		default:
		}
		if time.Now().After(deadline) {
			return failed(fmt.Sprintf("auth test failed: %v: %s", err, redact(string(out), probePass)))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Restart stops and starts the same server again on the same ports (for
// reconnect tests): open connections are cut. Users, mail and OAuth tokens
// are kept. Use it on a server from Start, not on a Shared one.
func (s *Server) Restart(t testing.TB) {
	t.Helper()
	s.stopProcess()
	var err error
	for attempt := 0; attempt < 50; attempt++ {
		if err = s.launch(); err == nil || !errors.Is(err, errAddrInUse) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("dovecottest: restart: %v", err)
	}
}

// Stop stops the server (SIGTERM to the master, whose pid is in
// base_dir/master.pid, and to its process group; SIGKILL after 3 s), closes
// the introspection endpoint and removes Dir (unless DOVECOTTEST_KEEP=1). It
// is idempotent. A later Shared call replaces a stopped shared server.
func (s *Server) Stop() {
	s.stopProcess()
	s.mu.Lock()
	if s.stopped {
		s.mu.Unlock()
		return
	}
	s.stopped = true
	s.mu.Unlock()
	if s.httpSrv != nil {
		s.httpSrv.Close()
	}
	if s.Dir != "" {
		if os.Getenv("DOVECOTTEST_KEEP") == "" {
			os.RemoveAll(s.Dir)
		}
	}
}

// stopProcess stops the running master, if any, and waits for it to exit.
//
// The master runs in the foreground (-F) as our child, in its own process
// group: its pid, the one in base_dir/master.pid, is the group id. Signals
// go to that pid (as a group) only, never to a pid read back from a file
// that might be stale. SIGTERM goes to the whole group: signalling only the master
// makes it wait 1–6 s for its children, signalling all of them together
// stops Dovecot in a few milliseconds. The SIGTERM is repeated every 200 ms;
// anything left after the master has exited, or after 3 s, is killed.
func (s *Server) stopProcess() {
	s.mu.Lock()
	p := s.proc
	s.proc = nil
	s.mu.Unlock()
	if p == nil {
		return
	}
	pgid := p.cmd.Process.Pid
	select {
	case <-p.done:
	default:
		// Repeat the SIGTERM: a child the master forks while shutting
		// down would otherwise miss it, and the master waits for it.
		deadline := time.After(3 * time.Second)
		tick := time.NewTicker(200 * time.Millisecond)
		defer tick.Stop()
		_ = syscall.Kill(-pgid, syscall.SIGTERM)
	wait:
		for {
			select {
			case <-p.done:
				break wait
			case <-tick.C:
				_ = syscall.Kill(-pgid, syscall.SIGTERM)
			case <-deadline:
				_ = syscall.Kill(-pgid, syscall.SIGKILL)
				<-p.done
				break wait
			}
		}
	}
	// Children that outlive the master would keep the ports bound.
	_ = syscall.Kill(-pgid, syscall.SIGKILL)
}

// SetUIDValidity sets the IMAP UIDVALIDITY of the user's folder ("" or
// "INBOX" = INBOX; hierarchy with "/" or ".") with doveadm mailbox update,
// keeping the UIDs, as a server that lost its UID state would announce.
func (s *Server) SetUIDValidity(t testing.TB, user, folder string, uidValidity uint32) {
	t.Helper()
	s.folderDir(t, user, folder) // validates user and folder
	name := "INBOX"
	if folder != "" && !strings.EqualFold(folder, "INBOX") {
		name = strings.ReplaceAll(folder, "/", ".")
	}
	s.Doveadm(t, "mailbox", "update", "--uid-validity", strconv.FormatUint(uint64(uidValidity), 10), "-u", user, name)
}

// Doveadm runs doveadm -c <config> with args (for example "mailbox",
// "update", "--uid-validity", "42", "-u", user, "INBOX") and returns its
// standard output; a failure fails the test.
func (s *Server) Doveadm(t testing.TB, args ...string) string {
	t.Helper()
	cmd := exec.Command(s.doveadm, append([]string{"-c", s.ConfigFile}, args...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("dovecottest: doveadm %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return string(out)
}

// logTail prints Dovecot's log written since offset (its last 60 lines).
func (s *Server) logTail(t testing.TB, offset int64) {
	t.Helper()
	text := readFrom(s.LogFile, offset, 1<<20)
	lines := strings.Split(strings.TrimRight(text, "\n"), "\n")
	if len(lines) > 60 {
		lines = lines[len(lines)-60:]
	}
	for _, secret := range s.secrets() {
		for i := range lines {
			lines[i] = redact(lines[i], secret)
		}
	}
	if len(lines) == 1 && lines[0] == "" {
		t.Logf("dovecottest: nothing logged to %s during the test", s.LogFile)
		return
	}
	t.Logf("dovecottest: tail of %s:\n%s", s.LogFile, strings.Join(lines, "\n"))
}

// secrets returns the passwords and tokens the server knows, for redaction.
func (s *Server) secrets() []string {
	s.mu.Lock()
	var out []string
	for _, pw := range s.users {
		out = append(out, pw)
	}
	s.mu.Unlock()
	if s.oauth != nil {
		out = append(out, s.oauth.all()...)
	}
	return out
}

func fileSize(path string) int64 {
	fi, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return fi.Size()
}

// readFrom reads up to max bytes of path from offset (the last max bytes if
// there are more).
func readFrom(path string, offset int64, max int64) string {
	b, err := os.ReadFile(path)
	if err != nil || offset >= int64(len(b)) {
		return ""
	}
	b = b[offset:]
	if int64(len(b)) > max {
		b = b[int64(len(b))-max:]
	}
	return string(b)
}

// redact replaces secret in s. Secrets shorter than 4 bytes are left alone:
// replacing them would garble the text, and Dovecot does not log passwords
// anyway (auth_verbose_passwords = no).
func redact(s, secret string) string {
	if len(secret) < 4 {
		return s
	}
	return strings.ReplaceAll(s, secret, "[redacted]")
}
