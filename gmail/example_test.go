package gmail_test

import (
	"context"
	"fmt"

	"golang.org/x/oauth2"

	"github.com/mailsync/mailsync"
	"github.com/mailsync/mailsync/gmail"
	"github.com/mailsync/mailsync/internal/fakegmail"
)

// A host syncs a Gmail mailbox into tickets and marks the mail read.
// (A fake Gmail API stands in for gmail.googleapis.com; in production,
// leave TokenSource, Endpoint and HTTPClient unset: the token source is
// built from the connection's OAuth block.)
func Example() {
	fake := fakegmail.New(fakegmail.Options{})
	defer fake.Close()
	fake.Deliver([]byte("From: Ana Sousa <ana@example.com>\r\nTo: support@example.com\r\nSubject: Impressora parada\r\nMessage-ID: <1@example.com>\r\n\r\nNão imprime.\r\n"))
	fake.Deliver([]byte("From: Rui <rui@example.com>\r\nTo: support@example.com\r\nSubject: VPN\r\nMessage-ID: <2@example.com>\r\n\r\nSem acesso.\r\n"))

	ctx := context.Background()
	conn := mailsync.Connection{
		Name: "support", Enabled: true, User: "support@example.com",
		OAuth: &mailsync.OAuth{
			Provider: mailsync.GmailAPI, ClientID: "1234.apps.googleusercontent.com",
			ClientSecret: "client-secret", RefreshToken: "refresh-token",
		},
		ConnectedWith: []string{"incident"},
	}
	action := mailsync.PostAction{Kind: mailsync.MarkRead}
	fmt.Println("scopes:", gmail.Scopes(action))

	c, err := gmail.New(conn, gmail.Options{
		TokenSource: oauth2.StaticTokenSource(&oauth2.Token{AccessToken: fake.Token()}),
		Endpoint:    fake.URL,
		HTTPClient:  fake.Client(),
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.Close()
	sink := mailsync.NewMemorySink()
	rep, err := mailsync.Sync(ctx, c, mailsync.DefaultMapping("incident"), sink, mailsync.WithPostAction(action))
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("created:", rep.Created)
	for _, t := range sink.Tickets() {
		fmt.Printf("%s: %s\n", t.Fields["requester"], t.Fields["title"])
	}
	unread := 0
	for _, m := range fake.Messages() {
		for _, l := range m.LabelIDs {
			if l == "UNREAD" {
				unread++
			}
		}
	}
	fmt.Println("unread left:", unread)
	// Output:
	// scopes: [https://www.googleapis.com/auth/gmail.modify]
	// created: 2
	// ana@example.com: Impressora parada
	// rui@example.com: VPN
	// unread left: 0
}

// The admin form's "test connection" button.
func ExampleCheck() {
	fake := fakegmail.New(fakegmail.Options{Email: "support@example.com"})
	defer fake.Close()
	fake.Deliver([]byte("Subject: hello\r\n\r\nhi\r\n"))

	conn := mailsync.Connection{Name: "support", Enabled: true, User: "support@example.com",
		OAuth:         &mailsync.OAuth{Provider: mailsync.GmailAPI, ClientID: "id", ClientSecret: "secret", RefreshToken: "refresh"},
		ConnectedWith: []string{"incident"}}
	res, err := gmail.Check(context.Background(), conn, gmail.Options{
		TokenSource: oauth2.StaticTokenSource(&oauth2.Token{AccessToken: fake.Token()}),
		Endpoint:    fake.URL,
		HTTPClient:  fake.Client(),
	})
	if err != nil {
		fmt.Println("check failed:", err)
		return
	}
	fmt.Println(res)
	// Output:
	// gmail support@example.com: 1 messages; INBOX 1 messages (1 unread)
}

func ExampleScopes() {
	fmt.Println(gmail.Scopes(mailsync.PostAction{}))
	fmt.Println(gmail.Scopes(mailsync.PostAction{Kind: mailsync.MoveToFolder, Folder: "Processed"}))
	fmt.Println(gmail.Options{PermanentDelete: true}.Scopes(mailsync.PostAction{Kind: mailsync.Delete}))
	// Output:
	// [https://www.googleapis.com/auth/gmail.readonly]
	// [https://www.googleapis.com/auth/gmail.modify]
	// [https://mail.google.com/]
}
