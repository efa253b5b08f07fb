package main

import (
	"context"
	"crypto/x509"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"golang.org/x/oauth2"

	"github.com/mailsync/mailsync"
	"github.com/mailsync/mailsync/imap"
	"github.com/mailsync/mailsync/oauthx"
	"github.com/mailsync/mailsync/pop3"
)

func (c *cli) tokenSource(ctx context.Context, cc connectionConfig, logger *slog.Logger) (oauth2.TokenSource, error) {
	var scopes []string // used when the OAuth block names none
	switch {
	case cc.Protocol == mailsync.IMAP && cc.OAuth.Provider == mailsync.MicrosoftGraph:
		scopes = oauthx.MicrosoftIMAPScopes()
	case cc.Protocol == mailsync.POP3 && cc.OAuth.Provider == mailsync.MicrosoftGraph:
		scopes = oauthx.MicrosoftPOPScopes()
	case cc.Protocol != "" && cc.OAuth.Provider == mailsync.GmailAPI:
		scopes = oauthx.GmailIMAPScopes()
	}
	client, err := httpClient(cc, 30*time.Second)
	if err != nil {
		return nil, err
	}
	return oauthx.New(ctx, cc.OAuth, oauthx.Options{
		HTTPClient: client,
		Scopes:     scopes,
		Logger:     logger,
		OnRefreshToken: func(ctx context.Context, newToken mailsync.Secret) error {
			return saveRefreshToken(c.configPath, cc.Name, newToken)
		},
	})
}

func rootCAs(cc connectionConfig) (*x509.CertPool, error) {
	if cc.CAFile == "" {
		return nil, nil
	}
	pem, err := os.ReadFile(cc.CAFile)
	if err != nil {
		return nil, err
	}
	pool, err := x509.SystemCertPool()
	if err != nil {
		pool = x509.NewCertPool()
	}
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s: no PEM certificate", cc.CAFile)
	}
	return pool, nil
}

// mailAuth is what both mail protocols need to log in.
type mailAuth struct {
	rootCAs     *x509.CertPool
	password    mailsync.Secret
	tokenSource oauth2.TokenSource
}

func (c *cli) mailAuth(ctx context.Context, cc connectionConfig, logger *slog.Logger) (mailAuth, error) {
	var a mailAuth
	var err error
	if a.rootCAs, err = rootCAs(cc); err != nil {
		return a, err
	}
	if cc.OAuth != nil {
		a.tokenSource, err = c.tokenSource(ctx, cc, logger)
	} else {
		a.password, err = c.password(cc.Name, cc.User)
	}
	return a, err
}

// security maps the file's "security" value to tls, starttls, plaintext or "" (by port).
func security(cc connectionConfig) (string, error) {
	switch s := strings.ToLower(cc.Security); s {
	case "", "tls", "plaintext":
		return s, nil
	case "starttls", "stls":
		return "starttls", nil
	}
	return "", fmt.Errorf("security %q is not tls, starttls or plaintext", cc.Security)
}

func imapOptions(ctx context.Context, c *cli, cc connectionConfig, logger *slog.Logger) (imap.Options, error) {
	o := imap.Options{Folder: cc.Folder, AllowPlaintextLogin: cc.AllowPlaintextLogin, Logger: logger}
	sec, err := security(cc)
	if err != nil {
		return o, err
	}
	o.Security = map[string]imap.Security{"tls": imap.ImplicitTLS, "starttls": imap.StartTLS, "plaintext": imap.Plaintext}[sec]
	a, err := c.mailAuth(ctx, cc, logger)
	o.RootCAs, o.Password, o.TokenSource = a.rootCAs, a.password, a.tokenSource
	return o, err
}

func pop3Options(ctx context.Context, c *cli, cc connectionConfig, logger *slog.Logger) (pop3.Options, error) {
	o := pop3.Options{AllowPlaintextLogin: cc.AllowPlaintextLogin, Logger: logger}
	sec, err := security(cc)
	if err != nil {
		return o, err
	}
	o.Security = map[string]pop3.Security{"tls": pop3.ImplicitTLS, "starttls": pop3.StartTLS, "plaintext": pop3.Plaintext}[sec]
	a, err := c.mailAuth(ctx, cc, logger)
	o.RootCAs, o.Password, o.TokenSource = a.rootCAs, a.password, a.tokenSource
	return o, err
}

// connector builds the connector of one configured connection.
func (c *cli) connector(ctx context.Context, cfg *fileConfig, cc connectionConfig, logger *slog.Logger) (mailsync.Connector, error) {
	switch {
	case cc.Protocol == mailsync.IMAP:
		o, err := imapOptions(ctx, c, cc, logger)
		if err != nil {
			return nil, err
		}
		return imap.New(cc.Connection, o)
	case cc.Protocol == mailsync.POP3:
		o, err := pop3Options(ctx, c, cc, logger)
		if err != nil {
			return nil, err
		}
		return pop3.New(cc.Connection, o)
	case cc.Protocol == "" && cc.OAuth != nil:
		ts, err := c.tokenSource(ctx, cc, logger)
		if err != nil {
			return nil, err
		}
		return apiConnector(ctx, cc, ts, logger)
	}
	return nil, fmt.Errorf("%w: protocol %q", mailsync.ErrUnsupported, cc.Protocol)
}

// checkOne runs the provider's connection test and prints what it found.
func (c *cli) checkOne(ctx context.Context, cfg *fileConfig, cc connectionConfig, logger *slog.Logger) error {
	if err := cc.Validate(); err != nil {
		return err
	}
	conn, err := c.connector(ctx, cfg, cc, logger)
	if err != nil {
		return err
	}
	defer conn.Close()
	ch, ok := conn.(mailsync.Checker)
	if !ok { // a provider without a check: a listing shows it works
		l, err := conn.List(ctx, "")
		if err != nil {
			return err
		}
		fmt.Fprintf(c.stdout, "✓ %s: reachable, %d messages listed\n", cc.Name, len(l.Messages))
		return nil
	}
	r, err := ch.Check(ctx)
	if err != nil {
		return err
	}
	fmt.Fprintf(c.stdout, "✓ %s: %s\n", cc.Name, r)
	if len(r.Capabilities) > 0 {
		fmt.Fprintf(c.stdout, "  capabilities: %s\n", strings.Join(r.Capabilities, " "))
	}
	return nil
}
