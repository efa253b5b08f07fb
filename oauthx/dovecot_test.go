package oauthx_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/mailsync/mailsync"
	"github.com/mailsync/mailsync/imap"
	"github.com/mailsync/mailsync/internal/dovecottest"
	"github.com/mailsync/mailsync/oauthx"
	"github.com/mailsync/mailsync/pop3"
)

// issuer is a Microsoft-style token endpoint that hands out access tokens
// Dovecot's introspection accepts, and rotates the refresh token each time.
type issuer struct {
	srv     *httptest.Server
	dove    *dovecottest.Server
	user    string
	mu      sync.Mutex
	n       int
	refresh string
	revoked bool
}

func newIssuer(t *testing.T, dove *dovecottest.Server, user string) *issuer {
	is := &issuer{dove: dove, user: user, refresh: "rt-0"}
	is.srv = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.ParseForm()
		is.mu.Lock()
		defer is.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		if is.revoked || r.PostForm.Get("refresh_token") != is.refresh || r.PostForm.Get("client_secret") != "cs" {
			w.WriteHeader(http.StatusBadRequest)
			json.NewEncoder(w).Encode(map[string]string{"error": "invalid_grant", "error_description": "AADSTS70008: The refresh token has expired."})
			return
		}
		is.n++
		access := fmt.Sprintf("at-%d-%s", is.n, strings.Repeat("x", 20))
		is.dove.AddToken(is.user, access)
		is.refresh = "rt-" + strconv.Itoa(is.n)
		json.NewEncoder(w).Encode(map[string]any{"access_token": access, "token_type": "Bearer", "expires_in": 3600, "refresh_token": is.refresh})
	}))
	t.Cleanup(is.srv.Close)
	return is
}

// TestMailLoginWithOAuthxTokensOnDovecot logs in to a real Dovecot over
// IMAP (XOAUTH2 and OAUTHBEARER) and POP3 (XOAUTH2) with access tokens from
// an oauthx token source; the rotated refresh token reaches the callback;
// a revoked grant surfaces as ErrConsentRequired.
func TestMailLoginWithOAuthxTokensOnDovecot(t *testing.T) {
	dove := dovecottest.Shared(t, dovecottest.Options{OAuth: true})
	user := dove.AddUser(t, "oauthx-login", "not-used-password")
	is := newIssuer(t, dove, user)
	var rotated []mailsync.Secret
	newSource := func(refresh string) *oauthx.TokenSource {
		o := &mailsync.OAuth{Provider: mailsync.MicrosoftGraph, ClientID: "cid", ClientSecret: "cs", TenantID: "contoso",
			RefreshToken: mailsync.Secret(refresh), TokenURL: is.srv.URL + "/contoso/oauth2/v2.0/token"}
		ts, err := oauthx.New(context.Background(), o, oauthx.Options{HTTPClient: is.srv.Client(), Scopes: oauthx.MicrosoftIMAPScopes(),
			OnRefreshToken: func(ctx context.Context, s mailsync.Secret) error { rotated = append(rotated, s); return nil }})
		if err != nil {
			t.Fatal(err)
		}
		return ts
	}
	conn := func(proto mailsync.Protocol, addr string) mailsync.Connection {
		host, port, _ := strings.Cut(addr, ":")
		p, _ := strconv.Atoi(port)
		return mailsync.Connection{Name: "m365", Enabled: true, User: user, Server: host, Port: p, Protocol: proto, ConnectedWith: []string{"incident"},
			OAuth: &mailsync.OAuth{Provider: mailsync.MicrosoftGraph, ClientID: "cid", ClientSecret: "cs", TenantID: "contoso", RefreshToken: "rt"}}
	}
	ctx := context.Background()
	for _, mech := range []string{"XOAUTH2", "OAUTHBEARER"} {
		is.mu.Lock()
		refresh := is.refresh
		is.mu.Unlock()
		res, err := imap.Check(ctx, conn(mailsync.IMAP, dove.IMAPSAddr), imap.Options{TokenSource: newSource(refresh), SASLMechanism: mech, RootCAs: dove.CAPool})
		if err != nil {
			t.Fatalf("IMAP %s with an oauthx token: %v", mech, err)
		}
		if res.Auth != mech {
			t.Errorf("IMAP logged in with %s, want %s", res.Auth, mech)
		}
	}
	is.mu.Lock()
	refresh := is.refresh
	is.mu.Unlock()
	pres, err := pop3.Check(ctx, conn(mailsync.POP3, dove.POP3SAddr), pop3.Options{TokenSource: newSource(refresh), RootCAs: dove.CAPool})
	if err != nil || pres.Auth != "XOAUTH2" {
		t.Fatalf("POP3 XOAUTH2 with an oauthx token: %+v %v", pres, err)
	}
	if len(rotated) != 3 || rotated[2].Reveal() != "rt-3" {
		t.Fatalf("rotated refresh tokens reached the callback: %d (last %v)", len(rotated), rotated)
	}
	if dove.IntrospectionCalls() == 0 {
		t.Error("Dovecot never asked the introspection endpoint: the logins were not OAuth")
	}

	// The grant is revoked: the admin must consent again.
	is.mu.Lock()
	is.revoked = true
	is.mu.Unlock()
	_, err = imap.Check(ctx, conn(mailsync.IMAP, dove.IMAPSAddr), imap.Options{TokenSource: newSource(refresh), RootCAs: dove.CAPool})
	if !errors.Is(err, mailsync.ErrConsentRequired) {
		t.Fatalf("revoked grant: %v, want ErrConsentRequired", err)
	}
	if strings.Contains(err.Error(), "rt-") || strings.Contains(err.Error(), "at-") {
		t.Fatalf("a token leaked into the error: %v", err)
	}
}

func TestMain(m *testing.M) {
	code := m.Run()
	dovecottest.StopAll()
	os.Exit(code)
}
