package mailsync_test

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/mailsync/mailsync"
)

// problemsOf returns the problems of a validation error (nil for nil).
func problemsOf(t *testing.T, err error) []mailsync.Problem {
	t.Helper()
	if err == nil {
		return nil
	}
	var ce *mailsync.ConfigError
	if !errors.As(err, &ce) {
		t.Fatalf("%v is not a *ConfigError", err)
	}
	return ce.Problems
}

// Every Problem the validators produce has a Code a host can translate,
// whatever the bad configuration.
func TestEveryProblemHasAKnownCode(t *testing.T) {
	good := mailsync.Connection{Name: "suporte", Enabled: true, Protocol: mailsync.IMAP, Server: "imap.empresa.pt",
		User: "suporte@empresa.pt", ConnectedWith: []string{"incident"}}
	conn := func(f func(*mailsync.Connection)) mailsync.Connection {
		c := good
		c.ConnectedWith = slices.Clone(good.ConnectedWith)
		f(&c)
		return c
	}
	oauth := func(o mailsync.OAuth) func(*mailsync.Connection) {
		return func(c *mailsync.Connection) { c.OAuth = &o }
	}
	type check struct {
		name  string
		err   error
		field string               // a field that must be among the problems …
		code  mailsync.ProblemCode // … with this code
	}
	checks := []check{
		{"empty connection", mailsync.Connection{}.Validate(), "name", mailsync.CodeRequired},
		{"blank name", conn(func(c *mailsync.Connection) { c.Name = "  " }).Validate(), "name", mailsync.CodeRequired},
		{"user with CR", conn(func(c *mailsync.Connection) { c.User = "a\r\nb" }).Validate(), "user", mailsync.CodeForbiddenCharacters},
		{"no server", conn(func(c *mailsync.Connection) { c.Server = "" }).Validate(), "server", mailsync.CodeRequired},
		{"server with port", conn(func(c *mailsync.Connection) { c.Server = "imap.empresa.pt:993" }).Validate(), "server", mailsync.CodePortInServer},
		{"server in brackets", conn(func(c *mailsync.Connection) { c.Server = "[::1]" }).Validate(), "server", mailsync.CodePortInServer},
		{"server URL", conn(func(c *mailsync.Connection) { c.Server = "imaps://imap.empresa.pt" }).Validate(), "server", mailsync.CodeNotHostName},
		{"server with space", conn(func(c *mailsync.Connection) { c.Server = "imap empresa" }).Validate(), "server", mailsync.CodeForbiddenCharacters},
		{"server too long", conn(func(c *mailsync.Connection) { c.Server = strings.Repeat("a.", 130) + "pt" }).Validate(), "server", mailsync.CodeTooLong},
		{"server bad label", conn(func(c *mailsync.Connection) { c.Server = "imap..pt" }).Validate(), "server", mailsync.CodeInvalid},
		{"server bad rune", conn(func(c *mailsync.Connection) { c.Server = "imap!.pt" }).Validate(), "server", mailsync.CodeInvalid},
		{"no protocol", conn(func(c *mailsync.Connection) { c.Protocol = "" }).Validate(), "protocol", mailsync.CodeRequired},
		{"unknown protocol", conn(func(c *mailsync.Connection) { c.Protocol = "smtp" }).Validate(), "protocol", mailsync.CodeUnknown},
		{"port", conn(func(c *mailsync.Connection) { c.Port = 70000 }).Validate(), "port", mailsync.CodeOutOfRange},
		{"negative port", conn(func(c *mailsync.Connection) { c.Port = -1 }).Validate(), "port", mailsync.CodeOutOfRange},
		{"no ticket type", conn(func(c *mailsync.Connection) { c.ConnectedWith = nil }).Validate(), "connected_with", mailsync.CodeRequired},
		{"empty ticket type", conn(func(c *mailsync.Connection) { c.ConnectedWith = []string{"incident", " "} }).Validate(), "connected_with[1]", mailsync.CodeRequired},
		{"empty oauth", conn(oauth(mailsync.OAuth{})).Validate(), "oauth.provider", mailsync.CodeUnknown},
		{"graph without tenant", conn(oauth(mailsync.OAuth{Provider: mailsync.MicrosoftGraph, ClientID: "c", ClientSecret: "s", RefreshToken: "r"})).Validate(), "oauth.tenant_id", mailsync.CodeRequired},
		{"gmail with tenant", conn(oauth(mailsync.OAuth{Provider: mailsync.GmailAPI, ClientID: "c", ClientSecret: "s", RefreshToken: "r", TenantID: "t"})).Validate(), "oauth.tenant_id", mailsync.CodeConflict},
		{"oauth missing secrets", conn(oauth(mailsync.OAuth{Provider: mailsync.GmailAPI})).Validate(), "oauth.client_secret", mailsync.CodeRequired},
		{"token URL http", conn(oauth(mailsync.OAuth{Provider: mailsync.GmailAPI, ClientID: "c", ClientSecret: "s", RefreshToken: "r", TokenURL: "http://idp.example/token"})).Validate(), "oauth.token_url", mailsync.CodeInsecure},
		{"token URL user", conn(oauth(mailsync.OAuth{Provider: mailsync.GmailAPI, ClientID: "c", ClientSecret: "s", RefreshToken: "r", TokenURL: "https://u:p@idp.example/token"})).Validate(), "oauth.token_url", mailsync.CodeInsecure},
		{"token URL relative", conn(oauth(mailsync.OAuth{Provider: mailsync.GmailAPI, ClientID: "c", ClientSecret: "s", RefreshToken: "r", TokenURL: "/token"})).Validate(), "oauth.token_url", mailsync.CodeInvalid},
		{"scope with space", conn(oauth(mailsync.OAuth{Provider: mailsync.GmailAPI, ClientID: "c", ClientSecret: "s", RefreshToken: "r", Scopes: []string{"a b"}})).Validate(), "oauth.scopes[0]", mailsync.CodeForbiddenCharacters},

		{"folder without move", mailsync.PostAction{Kind: mailsync.MarkRead, Folder: "x"}.Validate(), "post_action.folder", mailsync.CodeConflict},
		{"move without folder", mailsync.PostAction{Kind: mailsync.MoveToFolder}.Validate(), "post_action.folder", mailsync.CodeRequired},
		{"folder with LF", mailsync.PostAction{Kind: mailsync.MoveToFolder, Folder: "a\nb"}.Validate(), "post_action.folder", mailsync.CodeForbiddenCharacters},
		{"folder too long", mailsync.PostAction{Kind: mailsync.MoveToFolder, Folder: strings.Repeat("f", 256)}.Validate(), "post_action.folder", mailsync.CodeTooLong},
		{"unknown action", mailsync.PostAction{Kind: "archive"}.Validate(), "post_action.kind", mailsync.CodeUnknown},

		{"empty mapping", mailsync.Mapping{Fields: []mailsync.FieldMapping{{}}}.Validate(), "ticket_type", mailsync.CodeRequired},
		{"mapping field", mailsync.Mapping{TicketType: "t", Fields: []mailsync.FieldMapping{
			{Ticket: "a", Source: mailsync.FieldSubject, Const: "x"},
			{Ticket: "a", Source: "nonsense", MaxLength: -1},
			{Ticket: strings.Repeat("n", 200), Source: mailsync.FieldSubject},
		}, Routes: map[mailsync.Kind]mailsync.Route{"weird": "elsewhere"}}.Validate(), "fields[1].ticket", mailsync.CodeDuplicate},

		{"threading", mailsync.Threading{Rules: []mailsync.ThreadRule{"magic"}, SubjectPattern: "("}.Validate(), "threading.rules[0]", mailsync.CodeUnknown},
		{"threading group", mailsync.Threading{SubjectPattern: "x"}.Validate(), "threading.subject_pattern", mailsync.CodeInvalid},

		{"routing", mailsync.Routing{
			Mappings: []mailsync.Mapping{{TicketType: "other"}, {TicketType: "other"}},
			Rules: []mailsync.Rule{
				{ID: "", When: []mailsync.Condition{{Field: "nope", Op: mailsync.OpIs, Value: "x"}}},
				{ID: "r", When: []mailsync.Condition{{Field: "subject", Op: "like", Value: "x"}, {Field: "subject", Op: mailsync.OpMatches, Value: "("},
					{Field: "spam.score", Op: mailsync.OpAbove, Value: "high"}, {Field: "subject", Op: mailsync.OpIs},
					{Field: "subject", Op: mailsync.OpMatches, Value: strings.Repeat("a", 1001)}},
					TicketType: "elsewhere", Set: map[string]string{"": "x", strings.Repeat("s", 200): "y"}, Action: "explode"},
				{ID: "r"}, {ID: "bad\x01id"}, {ID: strings.Repeat("i", 129)},
			},
			Blocked: mailsync.BlockList{Addresses: []string{"nobody"}, Domains: []string{"a b"}, Patterns: []string{"(", strings.Repeat("p", 1001)}, Action: "block"},
		}.Validate(good, mailsync.DefaultMapping("incident")), "routing.rules[1].when[0]", mailsync.CodeUnknown},
	}
	known := map[mailsync.ProblemCode]bool{}
	for _, c := range mailsync.ProblemCodes {
		known[c] = true
	}
	seen := map[mailsync.ProblemCode]bool{}
	for _, c := range checks {
		t.Run(c.name, func(t *testing.T) {
			ps := problemsOf(t, c.err)
			if len(ps) == 0 {
				t.Fatal("no problem")
			}
			found := false
			for _, p := range ps {
				if !known[p.Code] {
					t.Errorf("%s: %q has code %q, not a known one", p.Field, p.Message, p.Code)
				}
				seen[p.Code] = true
				if (p.Code == mailsync.CodeTooLong || p.Code == mailsync.CodeOutOfRange) && p.Limit <= 0 {
					t.Errorf("%s: %s without a Limit", p.Field, p.Code)
				}
				if p.Code != mailsync.CodeTooLong && p.Code != mailsync.CodeOutOfRange && p.Limit != 0 {
					t.Errorf("%s: %s with a Limit %d", p.Field, p.Code, p.Limit)
				}
				found = found || p.Field == c.field && p.Code == c.code
			}
			if !found {
				t.Errorf("no problem on %s with code %s in %+v", c.field, c.code, ps)
			}
		})
	}
	for _, c := range mailsync.ProblemCodes {
		if !seen[c] {
			t.Errorf("no bad configuration of the table gives %s", c)
		}
	}
}

// The parameters a host needs to word a problem itself.
func TestProblemParameters(t *testing.T) {
	ps := problemsOf(t, mailsync.Connection{Name: "n", User: "u", Server: "h", Protocol: "smtp", Port: 99999, ConnectedWith: []string{"t"}}.Validate())
	want := map[string]mailsync.Problem{
		"protocol": {Field: "protocol", Code: mailsync.CodeUnknown, Allowed: []string{"imap", "pop3", "x-<name>"}},
		"port":     {Field: "port", Code: mailsync.CodeOutOfRange, Limit: 65535},
	}
	if len(ps) != len(want) {
		t.Fatalf("problems %+v, want %d", ps, len(want))
	}
	for _, p := range ps {
		w := want[p.Field]
		if p.Code != w.Code || p.Limit != w.Limit || !slices.Equal(p.Allowed, w.Allowed) || p.Message == "" {
			t.Errorf("%+v, want %+v with a message", p, w)
		}
	}
	var s mailsync.Security
	ps = problemsOf(t, s.UnmarshalText([]byte("ssl3")))
	if len(ps) != 1 || ps[0].Code != mailsync.CodeUnknown || len(ps[0].Allowed) != 4 {
		t.Errorf("security: %+v", ps)
	}
}
