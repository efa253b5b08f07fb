package problemcodes_test

import (
	"context"
	"errors"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mailsync/mailsync"
	"github.com/mailsync/mailsync/examples/customprovider/maildir"
	"github.com/mailsync/mailsync/fleet"
	"github.com/mailsync/mailsync/graph"
	"github.com/mailsync/mailsync/imap"
	"golang.org/x/oauth2"
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
	ctx := context.Background()

	// imap: Options, the Watcher, Ack.
	imapNew := func(f func(*mailsync.Connection), o imap.Options) error {
		_, err := imap.New(conn(f), o)
		return err
	}
	keep := func(*mailsync.Connection) {}
	pw := imap.Options{Password: "x"}
	imapOpts := func(f func(*imap.Options)) imap.Options {
		o := pw
		f(&o)
		return o
	}
	imapAck := func() error {
		c, err := imap.New(good, imap.Options{Password: "x", Folders: []string{"INBOX", "Support"}})
		if err != nil {
			return err
		}
		defer c.Close()
		return c.Ack(ctx, []mailsync.MessageRef{{Key: "1:1"}}, mailsync.PostAction{Kind: mailsync.MoveToFolder, Folder: "Support"})
	}
	onChange := func(string) {}
	watcher, err := imap.NewWatcher(imap.WatchOptions{OnChange: onChange})
	if err != nil {
		t.Fatal(err)
	}
	defer watcher.Close()
	newWatcher := func(o imap.WatchOptions) error {
		w, err := imap.NewWatcher(o)
		if err == nil {
			w.Close()
		}
		return err
	}
	idle := func(name string) error {
		s := &fleet.IMAPIdle{Watcher: watcher, Resolve: func(context.Context, string) (mailsync.Connection, imap.Options, error) {
			return conn(func(c *mailsync.Connection) { c.Name = name }), pw, nil
		}}
		return s.Start(ctx, "suporte")
	}

	// graph: New, Ack, the Subscriber and the Handler.
	graphConn := mailsync.Connection{Name: "suporte", Enabled: true, User: "suporte@empresa.pt", ConnectedWith: []string{"incident"},
		OAuth: &mailsync.OAuth{Provider: mailsync.MicrosoftGraph, ClientID: "c", ClientSecret: "s", TenantID: "t", RefreshToken: "r"}}
	graphNew := func(f func(*mailsync.Connection), o graph.Options) error {
		c := graphConn
		o2 := *graphConn.OAuth
		c.OAuth = &o2
		f(&c)
		_, err := graph.New(c, o)
		return err
	}
	graphAck := func(folder string) error {
		c, err := graph.New(graphConn, graph.Options{})
		if err != nil {
			return err
		}
		defer c.Close()
		return c.Ack(ctx, []mailsync.MessageRef{{Key: "AAMk"}}, mailsync.PostAction{Kind: mailsync.MoveToFolder, Folder: folder})
	}
	key := mailsync.Secret(strings.Repeat("k", graph.MinClientStateKeyLen))
	notify := "https://helpdesk.empresa.pt/graph/notify"
	onGraphChange := func(string, bool) {}
	newSubscriber := func(o graph.SubscriberOptions) error {
		s, err := graph.NewSubscriber(o)
		if err == nil {
			s.Close()
		}
		return err
	}
	subscribe := func(name string) error {
		s, err := graph.NewSubscriber(graph.SubscriberOptions{NotificationURL: notify, ClientStateKey: key, OnChange: onGraphChange})
		if err != nil {
			return err
		}
		defer s.Close()
		c := graphConn
		c.Name = name
		return s.Subscribe(ctx, c, graph.Options{})
	}
	newHandler := func(o graph.HandlerOptions) error {
		h, err := graph.NewHandler(o)
		if err == nil {
			h.Close()
		}
		return err
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

		{"imap protocol", imapNew(func(c *mailsync.Connection) { c.Protocol = mailsync.POP3 }, pw), "protocol", mailsync.CodeConflict},
		{"imap no credentials", imapNew(keep, imap.Options{}), "credentials", mailsync.CodeRequired},
		{"imap two credentials", imapNew(keep, imapOpts(func(o *imap.Options) { o.TokenSource = oauth2.StaticTokenSource(&oauth2.Token{}) })), "credentials", mailsync.CodeConflict},
		{"imap sasl mechanism", imapNew(keep, imap.Options{TokenSource: oauth2.StaticTokenSource(&oauth2.Token{}), SASLMechanism: "PLAIN"}), "sasl_mechanism", mailsync.CodeUnknown},
		{"imap sasl without token", imapNew(keep, imapOpts(func(o *imap.Options) { o.SASLMechanism = "XOAUTH2" })), "sasl_mechanism", mailsync.CodeConflict},
		{"imap security", imapNew(keep, imapOpts(func(o *imap.Options) { o.Security = 9 })), "security", mailsync.CodeUnknown},
		{"imap folder with CR", imapNew(keep, imapOpts(func(o *imap.Options) { o.Folder = "a\rb" })), "folder", mailsync.CodeForbiddenCharacters},
		{"imap folder and folders", imapNew(keep, imapOpts(func(o *imap.Options) { o.Folder, o.Folders = "INBOX", []string{"Support"} })), "folders", mailsync.CodeConflict},
		{"imap empty folder", imapNew(keep, imapOpts(func(o *imap.Options) { o.Folders = []string{"INBOX", " "} })), "folders[1]", mailsync.CodeRequired},
		{"imap folder with NUL", imapNew(keep, imapOpts(func(o *imap.Options) { o.Folders = []string{"INBOX", "a\x00"} })), "folders[1]", mailsync.CodeForbiddenCharacters},
		{"imap folder twice", imapNew(keep, imapOpts(func(o *imap.Options) { o.Folders = []string{"inbox", "INBOX"} })), "folders[1]", mailsync.CodeDuplicate},
		{"imap batch size", imapNew(keep, imapOpts(func(o *imap.Options) { o.BatchSize = -1 })), "batch_size", mailsync.CodeNegative},
		{"imap batch bytes", imapNew(keep, imapOpts(func(o *imap.Options) { o.BatchBytes = -1 })), "batch_bytes", mailsync.CodeNegative},
		{"imap timeouts", imapNew(keep, imapOpts(func(o *imap.Options) { o.CommandTimeout = -time.Second })), "timeouts", mailsync.CodeNegative},
		{"imap move to a folder read", imapAck(), "post_action.folder", mailsync.CodeConflict},
		{"imap watcher", newWatcher(imap.WatchOptions{Backoff: -1}), "on_change", mailsync.CodeRequired},
		{"imap watcher negative", newWatcher(imap.WatchOptions{OnChange: onChange, Coalesce: -1}), "watch_options", mailsync.CodeNegative},
		{"imap watcher renew", newWatcher(imap.WatchOptions{OnChange: onChange, RenewEvery: time.Hour}), "renew_every", mailsync.CodeOutOfRange},
		{"imap watch without name", watcher.Watch(ctx, conn(func(c *mailsync.Connection) { c.Name = "" }), pw), "name", mailsync.CodeRequired},
		{"fleet idle name", idle("outra"), "name", mailsync.CodeConflict},

		{"graph no oauth", graphNew(func(c *mailsync.Connection) { c.OAuth, c.Protocol, c.Server = nil, mailsync.IMAP, "imap.empresa.pt" }, graph.Options{}), "oauth.provider", mailsync.CodeRequired},
		{"graph gmail oauth", graphNew(func(c *mailsync.Connection) { c.OAuth.Provider, c.OAuth.TenantID = mailsync.GmailAPI, "" }, graph.Options{}), "oauth.provider", mailsync.CodeConflict},
		{"graph base URL", graphNew(keep, graph.Options{BaseURL: "graph.microsoft.com"}), "graph base URL", mailsync.CodeInvalid},
		{"graph base URL http", graphNew(keep, graph.Options{BaseURL: "http://graph.microsoft.com/v1.0"}), "graph base URL", mailsync.CodeInsecure},
		{"graph folder and folders", graphNew(keep, graph.Options{Folder: "inbox", Folders: []string{"Support"}}), "folders", mailsync.CodeConflict},
		{"graph empty folder", graphNew(keep, graph.Options{Folders: []string{"inbox", "/"}}), "folders[1]", mailsync.CodeRequired},
		{"graph folder with LF", graphNew(keep, graph.Options{Folders: []string{"inbox", "a\nb"}}), "folders[1]", mailsync.CodeForbiddenCharacters},
		{"graph folder twice", graphNew(keep, graph.Options{Folders: []string{"Inbox", "inbox"}}), "folders[1]", mailsync.CodeDuplicate},
		{"graph move to /", graphAck("/"), "folder", mailsync.CodeRequired},
		{"graph no notification URL", newSubscriber(graph.SubscriberOptions{OnChange: onGraphChange}), "notification URL", mailsync.CodeRequired},
		{"graph relative notification URL", newSubscriber(graph.SubscriberOptions{NotificationURL: "/graph/notify", OnChange: onGraphChange}), "notification URL", mailsync.CodeInvalid},
		{"graph ftp lifecycle URL", newSubscriber(graph.SubscriberOptions{NotificationURL: notify, LifecycleURL: "ftp://helpdesk.empresa.pt/x", OnChange: onGraphChange}), "lifecycle URL", mailsync.CodeInsecure},
		{"graph URL with the connection", newSubscriber(graph.SubscriberOptions{NotificationURL: notify + "?" + graph.ConnectionParam + "=x", ClientStateKey: key, OnChange: onGraphChange}), "notification URL", mailsync.CodeConflict},
		{"graph short key", newSubscriber(graph.SubscriberOptions{NotificationURL: notify, ClientStateKey: "short", OnChange: onGraphChange}), "client state key", mailsync.CodeInvalid},
		{"graph state and key", newSubscriber(graph.SubscriberOptions{NotificationURL: notify, ClientStateKey: key, ClientState: "s", OnChange: onGraphChange}), "client state", mailsync.CodeConflict},
		{"graph no OnChange", newSubscriber(graph.SubscriberOptions{NotificationURL: notify}), "OnChange", mailsync.CodeRequired},
		{"graph long state", newSubscriber(graph.SubscriberOptions{NotificationURL: notify, ClientState: mailsync.Secret(strings.Repeat("s", 129)), OnChange: onGraphChange}), "client state", mailsync.CodeTooLong},
		{"graph lifetime", newSubscriber(graph.SubscriberOptions{NotificationURL: notify, Lifetime: 8 * 24 * time.Hour, OnChange: onGraphChange}), "subscription lifetime", mailsync.CodeOutOfRange},
		{"graph handler without key", newHandler(graph.HandlerOptions{OnChange: onGraphChange}), "client state key", mailsync.CodeRequired},
		{"graph subscribe no name", subscribe(""), "name", mailsync.CodeRequired},
		{"graph subscribe long name", subscribe(strings.Repeat("n", graph.MaxConnectionIDLen+1)), "name", mailsync.CodeTooLong},
		{"graph subscribe name not UTF-8", subscribe("a\xffb"), "name", mailsync.CodeInvalid},
		{"graph subscribe name with tab", subscribe("a\tb"), "name", mailsync.CodeForbiddenCharacters},

		{"maildir protocol", func() error { _, err := maildir.New(good); return err }(), "protocol", mailsync.CodeConflict},
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
				if p.Code != mailsync.CodeUnknown && p.Allowed != nil {
					t.Errorf("%s: %s with Allowed %q", p.Field, p.Code, p.Allowed)
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

	// The providers' options: the same parameters for the same kind of rule.
	one := func(name string, err error, want mailsync.Problem) {
		t.Helper()
		ps := problemsOf(t, err)
		if len(ps) != 1 || ps[0].Field != want.Field || ps[0].Code != want.Code || ps[0].Limit != want.Limit ||
			!slices.Equal(ps[0].Allowed, want.Allowed) || ps[0].Message == "" {
			t.Errorf("%s: %+v, want %+v with a message", name, ps, want)
		}
	}
	conn := mailsync.Connection{Name: "n", User: "u", Server: "h", Protocol: mailsync.IMAP, ConnectedWith: []string{"t"}}
	_, err := imap.New(conn, imap.Options{Password: "x", Security: -1})
	one("imap security", err, mailsync.Problem{Field: "security", Code: mailsync.CodeUnknown, Allowed: []string{"auto", "implicit-tls", "starttls", "plaintext"}})
	_, err = imap.New(conn, imap.Options{TokenSource: oauth2.StaticTokenSource(&oauth2.Token{}), SASLMechanism: "CRAM-MD5"})
	one("imap sasl", err, mailsync.Problem{Field: "sasl_mechanism", Code: mailsync.CodeUnknown, Allowed: []string{"XOAUTH2", "OAUTHBEARER"}})
	_, err = imap.NewWatcher(imap.WatchOptions{OnChange: func(string) {}, RenewEvery: 30 * time.Minute})
	one("imap renew", err, mailsync.Problem{Field: "renew_every", Code: mailsync.CodeOutOfRange, Limit: 29 * 60})

	onChange := func(string, bool) {}
	notify := "https://helpdesk.empresa.pt/graph/notify"
	_, err = graph.NewSubscriber(graph.SubscriberOptions{NotificationURL: notify, OnChange: onChange, ClientState: mailsync.Secret(strings.Repeat("s", 129))})
	one("graph client state", err, mailsync.Problem{Field: "client state", Code: mailsync.CodeTooLong, Limit: 128})
	_, err = graph.NewSubscriber(graph.SubscriberOptions{NotificationURL: notify, OnChange: onChange, Lifetime: graph.MaxMessageSubscriptionLifetime + time.Minute})
	one("graph lifetime", err, mailsync.Problem{Field: "subscription lifetime", Code: mailsync.CodeOutOfRange, Limit: 10080 * 60})
	sub, err := graph.NewSubscriber(graph.SubscriberOptions{NotificationURL: notify, OnChange: onChange, ClientStateKey: mailsync.Secret(strings.Repeat("k", 32))})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	err = sub.Subscribe(context.Background(), mailsync.Connection{Name: strings.Repeat("n", 257)}, graph.Options{})
	one("graph connection name", err, mailsync.Problem{Field: "name", Code: mailsync.CodeTooLong, Limit: graph.MaxConnectionIDLen})
}

// Every mailsync.Problem the module's code builds names its Code: a
// Problem literal without a Code field reaches a host untranslated. The
// table above checks the codes a bad configuration gets; this catches a
// new literal that no row exercises yet. The empty Problem{} (rules.go's
// "no problem") is allowed.
func TestProblemLiteralsHaveACode(t *testing.T) {
	fset := token.NewFileSet()
	var missing []string
	files := 0
	root := filepath.Join("..", "..") // the module's root
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if path != root && (strings.HasPrefix(d.Name(), ".") || d.Name() == "testdata" || d.Name() == "node_modules") {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, parser.SkipObjectResolution)
		if err != nil {
			return err
		}
		files++
		// The name the file gives the root package: "" in the root
		// package itself, where the type is plain Problem.
		pkg := ""
		if f.Name.Name != "mailsync" {
			pkg = "-"
			for _, imp := range f.Imports {
				if p, _ := strconv.Unquote(imp.Path.Value); p == "github.com/mailsync/mailsync" {
					pkg = "mailsync"
					if imp.Name != nil {
						pkg = imp.Name.Name
					}
				}
			}
			if pkg == "-" {
				return nil
			}
		}
		isProblem := func(e ast.Expr) bool {
			switch e := e.(type) {
			case *ast.Ident:
				return pkg == "" && e.Name == "Problem"
			case *ast.SelectorExpr:
				x, ok := e.X.(*ast.Ident)
				return ok && pkg != "" && x.Name == pkg && e.Sel.Name == "Problem"
			}
			return false
		}
		check := func(lit *ast.CompositeLit) {
			if len(lit.Elts) == 0 {
				return
			}
			for _, el := range lit.Elts {
				kv, ok := el.(*ast.KeyValueExpr)
				if !ok {
					return // positional: every field, Code among them
				}
				if k, ok := kv.Key.(*ast.Ident); ok && k.Name == "Code" {
					return
				}
			}
			missing = append(missing, fset.Position(lit.Pos()).String())
		}
		ast.Inspect(f, func(n ast.Node) bool {
			lit, ok := n.(*ast.CompositeLit)
			if !ok {
				return true
			}
			if isProblem(lit.Type) {
				check(lit)
			}
			// []Problem{{…}, …} and [n]Problem{…}: the elements' type is elided.
			if at, ok := lit.Type.(*ast.ArrayType); ok && isProblem(at.Elt) {
				for _, el := range lit.Elts {
					if e, ok := el.(*ast.CompositeLit); ok && e.Type == nil {
						check(e)
					}
				}
			}
			return true
		})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if files < 100 {
		t.Fatalf("only %d Go files read from the module", files)
	}
	for _, m := range missing {
		t.Errorf("%s: a Problem without a Code", m)
	}
}
