package pop3_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"net"
	"strconv"

	"github.com/mailsync/mailsync"
	"github.com/mailsync/mailsync/pop3"
)

// Example turns the mail of a POP3 maildrop into tickets and deletes it
// from the server once the tickets are stored. The server here is a local
// test double speaking POP3 with StartTLS; a real one is configured the same
// way (leave Security and RootCAs unset for POP3S on port 995 with the
// system's trusted CAs).
func Example() {
	srv, err := startFake("helpdesk@example.com", "app-password", "")
	if err != nil {
		log.Fatal(err)
	}
	defer srv.Close()
	srv.add("uid-1", []byte("From: Ana <ana@example.com>\r\nSubject: Printer is broken\r\nMessage-ID: <1@example.com>\r\n\r\nIt jams.\r\n"))
	host, port, _ := net.SplitHostPort(srv.Addr)
	p, _ := strconv.Atoi(port)

	conn := mailsync.Connection{Name: "support", Enabled: true, User: "helpdesk@example.com",
		Server: host, Port: p, Protocol: mailsync.POP3, ConnectedWith: []string{"incident"}}
	c, err := pop3.New(conn, pop3.Options{Password: "app-password", Security: pop3.StartTLS, RootCAs: srv.CAPool})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	sink := mailsync.NewMemorySink()
	rep, err := mailsync.Sync(context.Background(), c, mailsync.DefaultMapping("incident"), sink,
		mailsync.WithPostAction(mailsync.PostAction{Kind: mailsync.Delete}))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("created:", rep.Created, sink.FieldValues("title"))
	fmt.Println("left on the server:", len(srv.uids()))
	// Output:
	// created: 1 [Printer is broken]
	// left on the server: 0
}

// ExampleCheck tests a configuration as an admin form's "test connection"
// button would.
func ExampleCheck() {
	srv, err := startFake("helpdesk@example.com", "app-password", "")
	if err != nil {
		log.Fatal(err)
	}
	defer srv.Close()
	srv.add("uid-1", []byte("Subject: hello\r\n\r\nhi\r\n"))
	host, port, _ := net.SplitHostPort(srv.Addr)
	p, _ := strconv.Atoi(port)
	conn := mailsync.Connection{Name: "support", Enabled: true, User: "helpdesk@example.com",
		Server: host, Port: p, Protocol: mailsync.POP3, ConnectedWith: []string{"incident"}}

	res, err := pop3.Check(context.Background(), conn, pop3.Options{Password: "app-password", Security: pop3.StartTLS, RootCAs: srv.CAPool})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(res.Security, res.Auth, res.Messages, "message(s)")

	_, err = pop3.Check(context.Background(), conn, pop3.Options{Password: "wrong", Security: pop3.StartTLS, RootCAs: srv.CAPool})
	fmt.Println("wrong password is ErrAuth:", errors.Is(err, mailsync.ErrAuth))
	// Output:
	// starttls USER/PASS 1 message(s)
	// wrong password is ErrAuth: true
}

// ExampleNew_plaintext shows that a plaintext login needs an explicit opt-in.
func ExampleNew_plaintext() {
	conn := mailsync.Connection{Name: "legacy", Enabled: true, User: "helpdesk", Server: "pop.example.com",
		Port: 110, Protocol: mailsync.POP3, ConnectedWith: []string{"incident"}}
	_, err := pop3.New(conn, pop3.Options{Password: "pw", Security: pop3.Plaintext})
	fmt.Println(errors.Is(err, mailsync.ErrPlaintextRefused))
	_, err = pop3.New(conn, pop3.Options{Password: "pw", Security: pop3.Plaintext, AllowPlaintextLogin: true})
	fmt.Println(err)
	// Output:
	// true
	// <nil>
}
