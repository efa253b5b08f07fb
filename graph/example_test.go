package graph_test

import (
	"context"
	"fmt"

	"github.com/mailsync/mailsync"
	"github.com/mailsync/mailsync/connectortest"
	"github.com/mailsync/mailsync/graph"
	"github.com/mailsync/mailsync/internal/fakegraph"
	"github.com/mailsync/mailsync/oauthx"
)

// A host syncs a Microsoft 365 mailbox into tickets. Here a local fake
// stands in for login.microsoftonline.com and graph.microsoft.com; a real
// host leaves TokenURL, BaseURL and the HTTP clients at their defaults.
func ExampleNew() {
	fake := fakegraph.New("support@contoso.com")
	defer fake.Close()
	fake.ConfigureOAuth("app-id", "app-secret", "refresh-1", true, 3600)
	fake.Deliver("inbox", connectortest.NewMessage("printer-1", "A impressora não imprime"))

	conn := mailsync.Connection{
		Name: "support", Enabled: true, User: "support@contoso.com", ConnectedWith: []string{"incident"},
		OAuth: &mailsync.OAuth{Provider: mailsync.MicrosoftGraph, ClientID: "app-id", ClientSecret: "app-secret",
			TenantID: "contoso-tenant", RefreshToken: "refresh-1", TokenURL: fake.TokenURL()},
	}
	opts := graph.Options{
		Folder:     "inbox",
		BaseURL:    fake.BaseURL(),
		HTTPClient: fake.Client(),
		OAuth: oauthx.Options{HTTPClient: fake.Client(), OnRefreshToken: func(ctx context.Context, t mailsync.Secret) error {
			conn.OAuth.RefreshToken = t // persist the connection here
			fmt.Println("refresh token rotated and stored")
			return nil
		}},
	}
	if err := graph.Check(context.Background(), conn, opts); err != nil {
		fmt.Println("check:", err)
		return
	}
	c, err := graph.New(conn, opts)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.Close()
	sink := mailsync.NewMemorySink()
	rep, err := mailsync.Sync(context.Background(), c, mailsync.DefaultMapping("incident"), sink,
		mailsync.WithPostAction(mailsync.PostAction{Kind: mailsync.MoveToFolder, Folder: "Processed"}))
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("tickets created:", rep.Created)
	fmt.Println("title:", sink.Tickets()[0].Fields["title"])
	fmt.Println("message now in:", fake.Messages()[0].Folder)
	// Output:
	// refresh token rotated and stored
	// refresh token rotated and stored
	// tickets created: 1
	// title: A impressora não imprime
	// message now in: Processed
}
