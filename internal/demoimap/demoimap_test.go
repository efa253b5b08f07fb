package demoimap_test

import (
	"context"
	"errors"
	"net"
	"strconv"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/mailsync/mailsync"
	"github.com/mailsync/mailsync/imap"
	"github.com/mailsync/mailsync/internal/demoimap"
)

// TestServeOverVerifiedTLS: a delivered mail is listed by the imap
// connector over TLS verified against RootCAs; a wrong password fails with
// ErrAuth; XOAUTH2 works only with CheckToken approving the token.
func TestServeOverVerifiedTLS(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	srv, err := demoimap.Start("demo@example.com", "pw", demoimap.Options{
		CheckToken: func(user, token string) bool { return user == "demo@example.com" && token == "good-token" },
	})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	if err := srv.Deliver([]byte("From: a@example.com\r\nSubject: hi\r\nMessage-ID: <1@example.com>\r\n\r\nbody\r\n")); err != nil {
		t.Fatal(err)
	}
	conn := mailsync.Connection{Name: "demo", Enabled: true, User: "demo@example.com", Server: "127.0.0.1",
		Protocol: mailsync.IMAP, ConnectedWith: []string{"incident"}}
	_, port, err := net.SplitHostPort(srv.Addr)
	if err != nil {
		t.Fatal(err)
	}
	if conn.Port, err = strconv.Atoi(port); err != nil {
		t.Fatal(err)
	}
	list := func(opts imap.Options) (int, error) {
		opts.RootCAs = srv.RootCAs
		c, err := imap.New(conn, opts)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		l, err := c.List(ctx, "")
		if err != nil {
			return 0, err
		}
		return len(l.Messages), nil
	}
	if n, err := list(imap.Options{Password: "pw"}); err != nil || n != 1 {
		t.Fatalf("password login: %d messages, %v; want 1", n, err)
	}
	if _, err := list(imap.Options{Password: "wrong"}); !errors.Is(err, mailsync.ErrAuth) {
		t.Fatalf("wrong password: %v, want ErrAuth", err)
	}
	if n, err := list(imap.Options{TokenSource: staticToken("good-token")}); err != nil || n != 1 {
		t.Fatalf("XOAUTH2: %d messages, %v; want 1", n, err)
	}
	if _, err := list(imap.Options{TokenSource: staticToken("bad-token")}); !errors.Is(err, mailsync.ErrAuth) {
		t.Fatalf("XOAUTH2 with a bad token: %v, want ErrAuth", err)
	}
}

// staticToken is an OAuth token source that always gives one access token.
type staticToken string

func (s staticToken) Token() (*oauth2.Token, error) {
	return &oauth2.Token{AccessToken: string(s), TokenType: "Bearer"}, nil
}
