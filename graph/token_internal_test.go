package graph

import (
	"context"
	"net/url"
	"testing"

	"golang.org/x/oauth2"
)

// kiota's AllowedHostsValidator ignores ports; the provider must still send
// the token to the service root's host:port and nowhere else.
func TestTokenOnlyForTheServiceRoot(t *testing.T) {
	base, _ := url.Parse("https://127.0.0.1:8443/v1.0")
	p, err := newTokenProvider(oauth2.StaticTokenSource(&oauth2.Token{AccessToken: "tok"}), base, nil)
	if err != nil {
		t.Fatal(err)
	}
	cases := map[string]string{
		"https://127.0.0.1:8443/v1.0/users/x/messages": "tok",
		"https://127.0.0.1:9443/v1.0/users/x/messages": "",
		"http://127.0.0.1:8443/v1.0/users/x/messages":  "",
		"https://evil.example:8443/v1.0/users":         "",
	}
	for raw, want := range cases {
		u, _ := url.Parse(raw)
		got, err := p.GetAuthorizationToken(context.Background(), u, nil)
		if err != nil || got != want {
			t.Errorf("%s: token %q (%v), want %q", raw, got, err, want)
		}
	}
	if !p.GetAllowedHostsValidator().IsUrlHostValid(base) {
		t.Error("the validator rejects the service root itself")
	}

	def, _ := url.Parse(DefaultBaseURL)
	p, _ = newTokenProvider(oauth2.StaticTokenSource(&oauth2.Token{AccessToken: "tok"}), def, nil)
	u, _ := url.Parse("https://graph.microsoft.com:443/v1.0/me")
	if got, _ := p.GetAuthorizationToken(context.Background(), u, nil); got != "tok" {
		t.Errorf("explicit :443 not matched to the default port")
	}
}
