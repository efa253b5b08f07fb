package mailsync_test

import (
	"errors"
	"testing"

	"github.com/mailsync/mailsync"
)

// Careless configs fail at Validate, with the field named, not later as a
// DNS error or a leaked credential.
func TestValidateServerAndEndpoints(t *testing.T) {
	base := func() mailsync.Connection {
		return mailsync.Connection{Name: "n", Enabled: true, User: "u@x.pt", Server: "imap.example.com", Port: 993, Protocol: mailsync.IMAP, ConnectedWith: []string{"t"}}
	}
	servers := map[string]bool{
		"imap.example.com":     true,
		"imap.example.com.":    true,
		"10.0.0.7":             true,
		"::1":                  true,
		"2001:db8::1":          true,
		"mail_1.intra":         true,
		"correio.exemplo.pt":   true,
		"imap.example.com:993": false,
		"[::1]":                false,
		"[::1]:993":            false,
		"imap\t.example.com":   false,
		"imap.example.com\n":   false,
		"imaps://imap.x.com":   false,
		"imap..example.com":    false,
		"imap.exa mple.com":    false,
		"ex\u0085ample.com":    false,
	}
	for server, valid := range servers {
		c := base()
		c.Server = server
		err := c.Validate()
		var ce *mailsync.ConfigError
		if valid && err != nil {
			t.Errorf("server %q: %v", server, err)
		}
		if !valid && (!errors.As(err, &ce) || !ce.Field("server")) {
			t.Errorf("server %q passed Validate (%v)", server, err)
		}
	}
	urls := map[string]bool{
		"https://login.microsoftonline.com/t/oauth2/v2.0/token": true,
		"http://127.0.0.1:8080/token":                           true,
		"http://[::1]:8080/token":                               true,
		"http://localhost/token":                                true,
		"http://login.example.com/token":                        false,
		"https://user:pass@login.example.com/token":             false,
		"https://user@login.example.com/token":                  false,
		"http://127.0.0.1.evil.example/token":                   false,
		"ftp://login.example.com/token":                         false,
		"/token":                                                false,
	}
	for u, valid := range urls {
		c := base()
		c.Protocol, c.Server, c.Port = "", "", 0
		c.OAuth = &mailsync.OAuth{Provider: mailsync.GmailAPI, ClientID: "c", ClientSecret: "s", RefreshToken: "r", TokenURL: u}
		err := c.Validate()
		var ce *mailsync.ConfigError
		if valid && err != nil {
			t.Errorf("token_url %q: %v", u, err)
		}
		if !valid && (!errors.As(err, &ce) || !ce.Field("oauth.token_url")) {
			t.Errorf("token_url %q passed Validate (%v)", u, err)
		}
		if got := mailsync.CheckEndpointURL(u) == ""; got != valid {
			t.Errorf("CheckEndpointURL(%q) ok=%v, want %v", u, got, valid)
		}
	}
	for folder, valid := range map[string]bool{"Processed": true, "Done/2026": true, "Proc\r\nA1 DELETE INBOX": false, "x\x00": false, "Tab\there": false} {
		err := mailsync.PostAction{Kind: mailsync.MoveToFolder, Folder: folder}.Validate()
		var ce *mailsync.ConfigError
		if valid && err != nil {
			t.Errorf("folder %q: %v", folder, err)
		}
		if !valid && (!errors.As(err, &ce) || !ce.Field("post_action.folder")) {
			t.Errorf("folder %q passed Validate (%v)", folder, err)
		}
	}
}

func TestConnectionValidate(t *testing.T) {
	c := mailsync.Connection{Protocol: "smtp", Port: -1, OAuth: &mailsync.OAuth{Provider: mailsync.MicrosoftGraph, TokenURL: "http://login.example.com/token", Scopes: []string{"a b"}}}
	err := c.Validate()
	var ce *mailsync.ConfigError
	if !errors.As(err, &ce) {
		t.Fatalf("got %v", err)
	}
	for _, field := range []string{"name", "user", "protocol", "port", "connected_with", "oauth.client_id", "oauth.client_secret",
		"oauth.refresh_token", "oauth.tenant_id", "oauth.token_url", "oauth.scopes[0]"} {
		if !ce.Field(field) {
			t.Errorf("no problem reported for %s in %v", field, err)
		}
	}
	ok := mailsync.Connection{Name: "n", Enabled: true, User: "u", OAuth: &mailsync.OAuth{Provider: mailsync.GmailAPI, ClientID: "c", ClientSecret: "s", RefreshToken: "r"}, ConnectedWith: []string{"t"}}
	if err := ok.Validate(); err != nil {
		t.Fatalf("valid Gmail API connection: %v", err)
	}
	if got := (&mailsync.OAuth{Provider: mailsync.MicrosoftGraph, TenantID: "contoso"}).EffectiveTokenURL(); got != "https://login.microsoftonline.com/contoso/oauth2/v2.0/token" {
		t.Errorf("default Microsoft token URL = %q", got)
	}
}
