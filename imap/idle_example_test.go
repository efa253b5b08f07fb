package imap_test

import (
	"context"
	"log"
	"time"

	"golang.org/x/oauth2"

	"github.com/mailsync/mailsync"
	mimap "github.com/mailsync/mailsync/imap"
)

// A host watches its OAuth IMAP connections and triggers a sync (here a
// channel a sync loop reads; with the fleet, Fleet.Trigger) when mail
// arrives. The periodic sync stays as the backstop.
func ExampleWatcher() {
	syncNow := make(chan string, 100)
	w, err := mimap.NewWatcher(mimap.WatchOptions{
		OnChange: func(connection string) {
			select {
			case syncNow <- connection:
			default: // a sync is queued already
			}
		},
		MaxConnections: 500,
	})
	if err != nil {
		log.Fatal(err)
	}
	defer w.Close()

	conn := mailsync.Connection{Name: "support", Enabled: true, User: "support@example.com",
		Server: "imap.example.com", Protocol: mailsync.IMAP, ConnectedWith: []string{"incident"}}
	var ts oauth2.TokenSource = oauth2.StaticTokenSource(&oauth2.Token{AccessToken: "…"}) // a refreshing source in real use
	if err := w.Watch(context.Background(), conn, mimap.Options{TokenSource: ts}); err != nil {
		log.Fatal(err)
	}

	time.Sleep(time.Second)
	if st, ok := w.Status("support"); ok {
		log.Printf("%s: %s, last event %s, last error %v", st.Connection, st.State, st.LastEvent, st.LastError)
	}
}
