package pop3_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"log/slog"
	"net/url"
	"strings"
	"testing"

	"golang.org/x/oauth2"

	"github.com/mailsync/mailsync"
	"github.com/mailsync/mailsync/internal/redact"
	"github.com/mailsync/mailsync/pop3"
)

// TestServerEchoNeverLeaksSecrets: servers that echo the password or the
// access token in a -ERR text, in any encoding a request may carry it in
// (raw, URL-encoded, quoted, JSON, base64 as in SASL PLAIN and XOAUTH2),
// never get a form of the secret (redact.Forms) into an error or a log
// line (issue 10 item 7).
func TestServerEchoNeverLeaksSecrets(t *testing.T) {
	const (
		pass  = `s3cret "p@ss"/+w0rd%x\y`
		token = "ya29.A0-tok/en+x=y_z"
	)
	encodings := map[string]func(user, secret string) string{
		"raw":    func(_, s string) string { return s },
		"query":  func(_, s string) string { return url.QueryEscape(s) },
		"path":   func(_, s string) string { return url.PathEscape(s) },
		"quoted": func(_, s string) string { return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s) + `"` },
		"json":   func(_, s string) string { b, _ := json.Marshal(s); return string(b) },
		"PLAIN":  func(u, s string) string { return base64.StdEncoding.EncodeToString([]byte("\x00" + u + "\x00" + s)) },
		"XOAUTH2": func(u, s string) string {
			return base64.StdEncoding.EncodeToString([]byte("user=" + u + "\x01auth=Bearer " + s + "\x01\x01"))
		},
		"base64 raw":  func(_, s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) },
		"base64url+1": func(_, s string) string { return base64.URLEncoding.EncodeToString([]byte("x" + s)) },
	}
	type channel struct {
		name   string
		secret string
		verb   string // the command whose -ERR echoes
		run    func(ctx context.Context, s *fakeServer, opts pop3.Options) error
	}
	check := func(ctx context.Context, s *fakeServer, opts pop3.Options) error {
		_, err := pop3.Check(ctx, s.connection(), opts)
		return err
	}
	oauth := func(challenge bool) func(ctx context.Context, s *fakeServer, opts pop3.Options) error {
		return func(ctx context.Context, s *fakeServer, opts pop3.Options) error {
			s.set(func(k *fakeKnobs) { k.challenge = challenge })
			opts.Password, opts.TokenSource = "", oauth2.StaticTokenSource(&oauth2.Token{AccessToken: token})
			return check(ctx, s, opts)
		}
	}
	ack := func(ctx context.Context, s *fakeServer, opts pop3.Options) error {
		c := mustNew(t, s.connection(), opts)
		l, err := c.List(ctx, "")
		if err != nil {
			return err
		}
		if err := c.Fetch(ctx, l.Messages, func(mailsync.MessageRef, io.Reader) error { return nil }); err != nil {
			return err
		}
		return c.Ack(ctx, l.Messages, mailsync.PostAction{Kind: mailsync.Delete})
	}
	for _, ch := range []channel{
		{"USER/PASS", pass, "PASS", check},
		{"XOAUTH2", token, "AUTH", oauth(false)},
		{"XOAUTH2 after challenge", token, "AUTH", oauth(true)},
		{"RETR", pass, "RETR", ack},
		{"DELE", pass, "DELE", ack},
	} {
		for name, enc := range encodings {
			t.Run(ch.name+"/"+name, func(t *testing.T) {
				s, err := startFake("ana", pass, "fake-token-7")
				if err != nil {
					t.Fatal(err)
				}
				defer s.Close()
				s.add("u1", []byte("Subject: a\r\n\r\nb\r\n"))
				echo := "you sent " + enc("ana", ch.secret) + " here"
				s.set(func(k *fakeKnobs) {
					k.errEcho = func(verb, _ string) string {
						if verb == ch.verb {
							return echo
						}
						return ""
					}
				})
				var logs bytes.Buffer
				opts := fakeOpts(s)
				opts.Password = pass
				opts.Logger = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
				err = ch.run(ctxT(t), s, opts)
				text := ""
				if err != nil {
					text = err.Error()
				}
				text += "\n" + logs.String()
				if !strings.Contains(text, "you sent ") || !strings.Contains(text, " here") {
					t.Fatalf("the echo did not reach the error or the logs: %s", text)
				}
				for _, f := range redact.Forms(ch.secret) {
					if strings.Contains(text, f) {
						t.Errorf("secret form %q in:\n%s", f, text)
					}
				}
			})
		}
	}
}
