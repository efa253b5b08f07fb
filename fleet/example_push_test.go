package fleet_test

import (
	"context"
	"database/sql"
	"log"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/riverqueue/river/riverdriver/riversqlite"

	"github.com/mailsync/mailsync"
	"github.com/mailsync/mailsync/fleet"
	"github.com/mailsync/mailsync/gmail"
	"github.com/mailsync/mailsync/graph"
	"github.com/mailsync/mailsync/imap"
)

// graphSource is a fleet.PushSource on a graph.Subscriber: the few lines a
// host writes (the fleet package does not import graph, whose SDK is large).
type graphSource struct {
	sub *graph.Subscriber
	// resolve returns a connection's configuration and the options of
	// its connector (OAuth: the host's token store).
	resolve func(ctx context.Context, id string) (mailsync.Connection, graph.Options, error)

	mu   sync.Mutex
	errs map[string]error
}

func (s *graphSource) Kind() fleet.PushKind { return fleet.PushGraph }

func (s *graphSource) Start(ctx context.Context, id string) error {
	conn, opts, err := s.resolve(ctx, id)
	if err == nil {
		err = s.sub.Subscribe(ctx, conn, opts) // scrubbed by the Subscriber
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.errs == nil {
		s.errs = map[string]error{}
	}
	s.errs[id] = err
	return err
}

func (s *graphSource) Stop(ctx context.Context, id string) error { return s.sub.Unsubscribe(ctx, id) }

func (s *graphSource) Status(id string) fleet.PushStatus {
	var st fleet.PushStatus
	for _, sub := range s.sub.Subscriptions() {
		if sub.Connection == id && (st.Expires.IsZero() || sub.Expires.Before(st.Expires)) {
			st.Expires = sub.Expires
		}
	}
	st.Active = time.Now().Before(st.Expires)
	s.mu.Lock()
	st.Err = s.errs[id]
	s.mu.Unlock()
	return st
}

// gmailSource is a fleet.PushSource on a gmail.Push.
type gmailSource struct {
	push    *gmail.Push
	resolve func(ctx context.Context, id string) (mailsync.Connection, gmail.Options, error)
}

func (s *gmailSource) Kind() fleet.PushKind { return fleet.PushGmail }

func (s *gmailSource) Start(ctx context.Context, id string) error {
	conn, opts, err := s.resolve(ctx, id)
	if err != nil {
		return err
	}
	_, err = s.push.Watch(ctx, conn, opts)
	if err != nil {
		if _, ok := s.push.Status(id); ok {
			return nil // registered: Run retries users.watch; Status shows the error
		}
	}
	return err
}

func (s *gmailSource) Stop(ctx context.Context, id string) error { return s.push.Stop(ctx, id) }

func (s *gmailSource) Status(id string) fleet.PushStatus {
	w, ok := s.push.Status(id)
	if !ok {
		return fleet.PushStatus{}
	}
	return fleet.PushStatus{Active: w.Err == nil && time.Now().Before(w.Expiration), Expires: w.Expiration, Err: w.Err}
}

// Push for Microsoft Graph and Gmail: the webhook handlers are mounted
// with OnChange = the Fleet's OnChange (a notification only triggers the
// connection's usual sync, through its job, which any worker runs). The
// process adds the push sources, so it may create and renew the
// subscriptions and watches (the push lease keeps each in one process;
// graph.Subscriber.Run and gmail.Push.Run renew only what their own process
// made).
//
// Both handlers may run in every process, behind one URL each: the load
// balancer may send a notification to any of them. Gmail: with
// PushOptions.Connections (the connections that read a mailbox), a
// process that does not hold a mailbox's watch still triggers their sync.
// Graph: with the same ClientStateKey (a host secret) in every process,
// a subscription's clientState is derived from the key and the
// connection, which its notification URL names, so any process's handler
// verifies the notifications of any process's subscriptions; a process
// that subscribes nothing (no Graph source, e.g. a web front end) serves
// graph.NewHandler with the same key. Lifecycle notifications reaching a
// process that does not hold the subscription trigger a sync there; the
// holder's Run renews every subscription every VerifyEvery, so it
// recreates a removed one by itself.
func Example_graphAndGmailPush() {
	ctx := context.Background()
	db, _ := sql.Open("sqlite", "file:fleet.db?_pragma=busy_timeout(5000)&_pragma=journal_mode(WAL)")
	db.SetMaxOpenConns(1)
	health, _ := fleet.NewSQLHealth(db, fleet.SQLite, "mailsync_")
	_ = health.Migrate(ctx)
	var resolver fleet.Resolver                                               // the host's
	var state mailsync.State                                                  // e.g. sqlstate
	var pushConnections func(context.Context) ([]fleet.PushConnection, error) // the host's push settings
	var mailboxConnections func(ctx context.Context, email string) []string   // the connections reading a Gmail address
	f, err := fleet.New(riversqlite.New(db), fleet.Config{Resolver: resolver, State: state, Health: health,
		Interval: 5 * time.Minute, BackstopInterval: time.Hour,
		Push: &fleet.PushConfig{Connections: pushConnections}})
	if err != nil {
		log.Fatal(err)
	}

	clientStateKey := mailsync.Secret(os.Getenv("GRAPH_CLIENT_STATE_KEY")) // the same in every process, from the host's secrets
	sub, err := graph.NewSubscriber(graph.SubscriberOptions{
		NotificationURL: "https://hooks.example.com/graph",
		ClientStateKey:  clientStateKey,
		OnChange:        func(conn string, _ bool) { f.OnChange(conn) }, // the delta link catches up: full changes nothing
	})
	if err != nil {
		log.Fatal(err)
	}
	defer sub.Close()
	push, err := gmail.NewPush(gmail.PushOptions{
		Topic: "projects/helpdesk/topics/gmail", Audience: "https://hooks.example.com/gmail",
		ServiceAccount: "pubsub-push@helpdesk.iam.gserviceaccount.com",
		OnChange:       f.OnChange,
		Cursor:         state.Cursor,       // a delivery the cursor already passed is dropped
		Connections:    mailboxConnections, // watched by another process: still triggered
	})
	if err != nil {
		log.Fatal(err)
	}
	http.Handle("/graph", sub.Handler()) // any connection's, any process's subscriptions
	http.Handle("/gmail", push.Handler())
	// A process without the Graph source serves only:
	//	h, _ := graph.NewHandler(graph.HandlerOptions{ClientStateKey: clientStateKey,
	//		OnChange: func(conn string, _ bool) { f.OnChange(conn) }})
	//	http.Handle("/graph", h)
	go http.ListenAndServeTLS(":443", "cert.pem", "key.pem", nil) // before the subscriptions: Graph validates the URL

	var graphOptions func(ctx context.Context, id string) (mailsync.Connection, graph.Options, error) // OAuth from the host's store
	var gmailOptions func(ctx context.Context, id string) (mailsync.Connection, gmail.Options, error)
	_ = f.AddPushSource(&graphSource{sub: sub, resolve: graphOptions})
	_ = f.AddPushSource(&gmailSource{push: push, resolve: gmailOptions})
	go sub.Run(ctx)  // renews this process's subscriptions, recreating those Graph removed
	go push.Run(ctx) // renews this process's watches
	_ = f.Start(ctx)
	defer f.Stop(context.Background())
}

// IMAP IDLE: every worker process may hold watches; the push lease keeps
// one IDLE connection per mailbox in the whole fleet and moves it when its
// holder dies. Only OAuth connections: a watch logs in again after every
// drop and every takeover, and a typed password is kept nowhere.
func ExampleIMAPIdle() {
	ctx := context.Background()
	var driver = riversqlite.New(nil) // or riverpgxv5.New(pool)
	var cfg fleet.Config              // Resolver, State (a mailsync.Leaser: sqlstate), Health (SQLHealth), …
	cfg.BackstopInterval = time.Hour  // the poll while IDLE works; Interval when it does not
	cfg.Push = &fleet.PushConfig{Connections: func(ctx context.Context) ([]fleet.PushConnection, error) {
		return []fleet.PushConnection{{ID: "support", Kind: fleet.PushIdle}}, nil // the same in every process
	}}
	f, err := fleet.New(driver, cfg)
	if err != nil {
		log.Fatal(err)
	}
	w, err := imap.NewWatcher(imap.WatchOptions{OnChange: f.OnChange})
	if err != nil {
		log.Fatal(err)
	}
	defer w.Close()
	_ = f.AddPushSource(&fleet.IMAPIdle{Watcher: w, Resolve: func(ctx context.Context, id string) (mailsync.Connection, imap.Options, error) {
		var conn mailsync.Connection // the host's configuration of id (Name: id)
		var opts imap.Options        // with TokenSource from the host's OAuth store
		return conn, opts, nil
	}})
	_ = f.Start(ctx)
	defer f.Stop(context.Background())
}
