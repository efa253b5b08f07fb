package graph_test

import (
	"context"
	"log"
	"net/http"

	"github.com/mailsync/mailsync"
	"github.com/mailsync/mailsync/graph"
)

// A host wires change notifications to its trigger of a connection's
// ordinary sync. The handler must be served (publicly, over https) before
// Subscribe, because Graph validates the URL while the subscription is
// created.
func ExampleSubscriber() {
	ctx := context.Background()
	trigger := func(conn string) { /* e.g. the fleet's Trigger(conn) */ }
	sub, err := graph.NewSubscriber(graph.SubscriberOptions{
		NotificationURL: "https://hooks.example.com/graph",
		OnChange: func(conn string, full bool) {
			// full: notifications may have been lost; the delta link in the
			// cursor catches up anyway, so the same sync does.
			trigger(conn)
		},
	})
	if err != nil {
		log.Fatal(err)
	}
	defer sub.Close()
	http.Handle("/graph", sub.Handler())
	go http.ListenAndServeTLS(":443", "cert.pem", "key.pem", nil)

	var conn mailsync.Connection // the connection's configuration, OAuth block included
	if err := sub.Subscribe(ctx, conn, graph.Options{Folder: "inbox"}); err != nil {
		log.Printf("no push for %s, polling only: %v", conn.Name, err)
	}
	go sub.Run(ctx) // renews ahead of expiry
}

// In a fleet of processes behind one notification URL, every process's
// Subscriber gets the same ClientStateKey, and a process that subscribes
// nothing serves a receive-only Handler with that key: each verifies the
// notifications of every process's subscriptions and triggers the sync of
// the connection the notification URL names.
func ExampleNewHandler() {
	trigger := func(conn string) { /* e.g. the fleet's OnChange(conn) */ }
	h, err := graph.NewHandler(graph.HandlerOptions{
		ClientStateKey: mailsync.Secret("the host secret every process shares"),
		OnChange:       func(conn string, _ bool) { trigger(conn) },
	})
	if err != nil {
		log.Fatal(err)
	}
	defer h.Close()
	http.Handle("/graph", h)
}
