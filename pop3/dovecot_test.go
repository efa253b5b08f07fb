package pop3_test

import (
	"context"
	"net"
	"os"
	"strconv"
	"testing"

	"github.com/mailsync/mailsync"
	"github.com/mailsync/mailsync/connectortest"
	"github.com/mailsync/mailsync/internal/dovecottest"
	"github.com/mailsync/mailsync/pop3"
)

func TestMain(m *testing.M) {
	code := m.Run()
	dovecottest.StopAll()
	os.Exit(code)
}

// connection returns the admin-form connection for user at addr.
func connection(t testing.TB, user, addr string) mailsync.Connection {
	t.Helper()
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	p, err := strconv.Atoi(port)
	if err != nil {
		t.Fatal(err)
	}
	return mailsync.Connection{Name: "pop3-" + user, Enabled: true, User: user, Server: host, Port: p,
		Protocol: mailsync.POP3, ConnectedWith: []string{"incident", "support"}}
}

// dovecotHarness is the connectortest harness over a real Dovecot POP3.
type dovecotHarness struct {
	t    *testing.T
	srv  *dovecottest.Server
	user string
	conn mailsync.Connection
	opts pop3.Options
}

func (h *dovecotHarness) MakeConnector(ctx context.Context) (mailsync.Connector, error) {
	return pop3.New(h.conn, h.opts)
}

func (h *dovecotHarness) Deliver(ctx context.Context, raw []byte) error {
	h.srv.Deliver(h.t, h.user, "", raw)
	return nil
}

func (h *dovecotHarness) Inspect(ctx context.Context) ([]connectortest.MailboxMessage, error) {
	var out []connectortest.MailboxMessage
	for _, m := range h.srv.Messages(h.t, h.user, "") {
		if m.Deleted {
			continue
		}
		out = append(out, connectortest.MailboxMessage{MessageID: m.MessageID, Folder: connectortest.SourceFolder, Seen: m.Seen})
	}
	return out, nil
}

func (h *dovecotHarness) PostActions() []mailsync.ActionKind {
	return []mailsync.ActionKind{mailsync.Delete}
}

func (h *dovecotHarness) Close() {}

// mode is one way of reaching Dovecot's POP3.
type mode struct {
	name     string
	opts     dovecottest.Options
	security pop3.Security
	addr     func(*dovecottest.Server) string
}

var modes = []mode{
	{"POP3S", dovecottest.Options{}, pop3.ImplicitTLS, func(s *dovecottest.Server) string { return s.POP3SAddr }},
	{"STLS", dovecottest.Options{}, pop3.StartTLS, func(s *dovecottest.Server) string { return s.POP3Addr }},
	{"Plaintext", dovecottest.Options{AllowPlaintextAuth: true}, pop3.Plaintext, func(s *dovecottest.Server) string { return s.POP3Addr }},
}

// newDovecotHarness makes a harness with a fresh user on the shared server of m.
func newDovecotHarness(t *testing.T, m mode) *dovecotHarness {
	srv := dovecottest.Shared(t, m.opts)
	user := srv.AddUser(t, t.Name(), "s3cret pass")
	return &dovecotHarness{t: t, srv: srv, user: user, conn: connection(t, user, m.addr(srv)),
		opts: pop3.Options{Password: "s3cret pass", Security: m.security, AllowPlaintextLogin: m.security == pop3.Plaintext, RootCAs: srv.CAPool}}
}

func TestConformanceDovecot(t *testing.T) {
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			connectortest.Run(t, func(ctx context.Context, t *testing.T) (connectortest.Harness, error) {
				return newDovecotHarness(t, m), nil
			})
		})
	}
}
