package gmail_test

import (
	"context"
	"log"
	"net/http"

	"github.com/mailsync/mailsync"
	"github.com/mailsync/mailsync/gmail"
)

// A host gets Gmail push notifications through a Pub/Sub push
// subscription and syncs a connection as soon as its mailbox changes.
// The periodic sync stays: a lost notification costs latency, never mail.
func ExamplePush() {
	ctx := context.Background()
	trigger := func(connection string) { /* e.g. fleet.Trigger(ctx, connection) */ }
	loadCursor := func(ctx context.Context, connection string) (mailsync.Cursor, error) {
		return "", nil // the connection's stored cursor
	}
	push, err := gmail.NewPush(gmail.PushOptions{
		Topic:          "projects/helpdesk-1/topics/gmail-push",
		Audience:       "https://helpdesk.example.com/gmail/push",
		ServiceAccount: "pubsub-push@helpdesk-1.iam.gserviceaccount.com",
		OnChange:       trigger,
		Cursor:         loadCursor,
	})
	if err != nil {
		log.Fatal(err)
	}
	go push.Run(ctx) // renews the watches daily

	conn := mailsync.Connection{Name: "support", Enabled: true /* , OAuth: … */}
	if _, err := push.Watch(ctx, conn, gmail.Options{Labels: []string{"INBOX"}}); err != nil {
		log.Printf("gmail push for %s: %v (the periodic sync continues)", conn.Name, err)
	}
	http.Handle("POST /gmail/push", push.Handler())
}
