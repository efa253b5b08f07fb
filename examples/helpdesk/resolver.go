package main

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"

	"golang.org/x/oauth2"

	"github.com/mailsync/mailsync"
	"github.com/mailsync/mailsync/fleet"
	"github.com/mailsync/mailsync/imap"
	"github.com/mailsync/mailsync/oauthx"
	"github.com/mailsync/mailsync/pop3"
)

// syncLimits are the parser limits of this host's syncs: stricter MIME
// nesting than the library's default (32), so deeply nested mail is
// quarantined for an admin to look at. The quarantine page's replay runs
// with the library's defaults: the admin looked at the raw mail and
// accepts it.
var syncLimits = mailsync.Limits{MaxDepth: 8}

// Resolver is the host's fleet.Resolver: connection id → everything one
// sync needs, read from the host's tables at the start of every sync. The
// fleet keeps only the id (a River job row); the OAuth secrets are opened
// here, in memory, and a typed password arrives as the password argument
// of fleet.SyncNow — it is handed to the connector and to nothing else.
type Resolver struct {
	st      *Store
	sink    *Sink
	rootCAs *x509.CertPool // the system roots plus the demo server's certificate
	logger  *slog.Logger
}

var (
	_ fleet.Resolver = (*Resolver)(nil)
	_ fleet.Checker  = (*Resolver)(nil)
)

// Schedulable implements fleet.Checker: only enabled OAuth connections are
// synced in the background. A password connection is never scheduled: its
// password is typed at sync time and stored nowhere.
func (r *Resolver) Schedulable(ctx context.Context, id string) error {
	row, err := r.st.Connection(ctx, id)
	if errors.Is(err, ErrNotFound) {
		return fmt.Errorf("%w: %s", fleet.ErrUnknownConnection, id)
	}
	if err != nil {
		return err
	}
	return schedulable(row.Conn)
}

func schedulable(c mailsync.Connection) error {
	switch {
	case !c.Enabled:
		return fmt.Errorf("%w: %s is disabled", fleet.ErrUnknownConnection, c.Name)
	case c.OAuth == nil:
		return fleet.ErrPasswordRequired
	}
	return nil
}

// Resolve implements fleet.Resolver. It does not dial: the connector
// connects in List.
func (r *Resolver) Resolve(ctx context.Context, id string, password mailsync.Secret) (fleet.Target, error) {
	conn, err := r.st.ConnectionWithSecrets(ctx, id)
	if errors.Is(err, ErrNotFound) {
		return fleet.Target{}, fmt.Errorf("%w: %s", fleet.ErrUnknownConnection, id)
	}
	if err != nil {
		return fleet.Target{}, err
	}
	if conn.OAuth == nil && password == "" {
		return fleet.Target{}, fleet.ErrPasswordRequired
	}
	if len(conn.ConnectedWith) == 0 {
		return fleet.Target{}, mailsync.NewConfigError(mailsync.Problem{Field: "connected_with", Code: mailsync.CodeRequired, Message: "names no ticket type"})
	}
	// Every ticket type the connection is connected with has its mapping;
	// the first is the default, routing rules may choose another.
	routing := mailsync.Routing{}
	for _, tt := range conn.ConnectedWith {
		m, err := r.st.Mapping(ctx, tt)
		if err != nil {
			return fleet.Target{}, err
		}
		routing.Mappings = append(routing.Mappings, m)
	}
	if routing.Rules, err = r.st.Rules(ctx, id); err != nil {
		return fleet.Target{}, err
	}
	c, secrets, err := r.connector(ctx, conn, password)
	if err != nil {
		return fleet.Target{}, err
	}
	opts := []mailsync.Option{
		mailsync.WithRouting(routing),
		mailsync.WithPostAction(mailsync.PostAction{Kind: mailsync.MarkRead}),
		mailsync.WithLimits(syncLimits),
		mailsync.WithLogger(r.logger),
	}
	return fleet.Target{Connector: c, Mapping: routing.Mappings[0], Sink: r.sink, Options: opts, Secrets: secrets}, nil
}

// connector builds the provider's connector: the typed password, or an
// OAuth token source whose rotated refresh tokens are stored (sealed) at
// once. It also returns the secrets it carries, for the fleet to scrub from
// the health record.
func (r *Resolver) connector(ctx context.Context, conn mailsync.Connection, password mailsync.Secret) (mailsync.Connector, []mailsync.Secret, error) {
	var ts oauth2.TokenSource
	var secrets []mailsync.Secret
	if o := conn.OAuth; o != nil {
		if conn.Protocol == "" {
			// The Graph and Gmail API connectors (graph/, gmail/) are left
			// out of this example: msgraph-sdk-go takes minutes to compile.
			// A host adds them exactly as IMAP below; see
			// examples/mail2ticket/providers_api.go.
			return nil, nil, mailsync.NewConfigError(mailsync.Problem{Field: "protocol", Code: mailsync.CodeUnknown,
				Allowed: []string{string(mailsync.IMAP), string(mailsync.POP3)}, Message: "the Graph/Gmail API connectors are not built into this example; choose IMAP or POP3 with OAuth (XOAUTH2)"})
		}
		scopes := oauthx.GmailIMAPScopes()
		if o.Provider == mailsync.MicrosoftGraph {
			scopes = oauthx.MicrosoftIMAPScopes()
			if conn.Protocol == mailsync.POP3 {
				scopes = oauthx.MicrosoftPOPScopes()
			}
		}
		name := conn.Name
		src, err := oauthx.New(ctx, o, oauthx.Options{
			Scopes: scopes,
			Logger: r.logger,
			// The provider may hand out a new refresh token with each
			// access token; the old one then stops working. Store it
			// before the token is used (oauthx retries if this fails).
			OnRefreshToken: func(ctx context.Context, tok mailsync.Secret) error {
				return r.st.SetRefreshToken(ctx, name, tok)
			},
		})
		if err != nil {
			return nil, nil, err
		}
		ts, secrets = src, []mailsync.Secret{o.ClientSecret, o.RefreshToken}
		password = ""
	}
	switch conn.Protocol {
	case mailsync.IMAP:
		c, err := imap.New(conn, imap.Options{Password: password, TokenSource: ts, RootCAs: r.rootCAs, Logger: r.logger})
		return c, secrets, err
	case mailsync.POP3:
		c, err := pop3.New(conn, pop3.Options{Password: password, TokenSource: ts, RootCAs: r.rootCAs, Logger: r.logger})
		return c, secrets, err
	}
	return nil, nil, mailsync.NewConfigError(mailsync.Problem{Field: "protocol", Code: mailsync.CodeUnknown,
		Allowed: []string{string(mailsync.IMAP), string(mailsync.POP3)}, Message: fmt.Sprintf("%q is not supported here", conn.Protocol)})
}
