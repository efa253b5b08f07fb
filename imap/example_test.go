package imap_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
	"github.com/emersion/go-imap/v2/imapserver/imapmemserver"

	"github.com/mailsync/mailsync"
	mimap "github.com/mailsync/mailsync/imap"
)

// exampleServer runs go-imap's in-memory server on loopback with one
// message in INBOX and returns its address.
func exampleServer() (addr string, stop func()) {
	mem := imapmemserver.New()
	user := imapmemserver.NewUser("support@example.com", "app-password")
	user.Create("INBOX", nil)
	raw := "From: Ana <ana@example.org>\r\nSubject: Impressora parada\r\nMessage-ID: <1@example.org>\r\n\r\nA impressora do 2º andar não imprime.\r\n"
	user.Append("INBOX", literal{bytes.NewReader([]byte(raw))}, &imap.AppendOptions{})
	mem.AddUser(user)
	srv := imapserver.New(&imapserver.Options{
		NewSession: func(*imapserver.Conn) (imapserver.Session, *imapserver.GreetingData, error) {
			return mem.NewSession(), nil, nil
		},
		Caps:         imap.CapSet{imap.CapIMAP4rev1: {}, imap.CapMove: {}, imap.CapUIDPlus: {}},
		InsecureAuth: true, // loopback demo only
		Logger:       discardLogger{},
	})
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	go srv.Serve(ln)
	return ln.Addr().String(), func() { srv.Close() }
}

// A connector lists the folder, streams each message, then marks them read.
func Example() {
	addr, stop := exampleServer()
	defer stop()
	host, port, _ := net.SplitHostPort(addr)
	p, _ := strconv.Atoi(port)

	conn := mailsync.Connection{
		Name: "support", Enabled: true, User: "support@example.com",
		Server: host, Port: p, Protocol: mailsync.IMAP, ConnectedWith: []string{"incident"},
	}
	c, err := mimap.New(conn, mimap.Options{
		Password: mailsync.Secret("app-password"), // typed in at sync time
		// Real servers: leave Security at its default (TLS) and, for a
		// private CA, set RootCAs. Plain text needs this explicit opt-in.
		Security: mimap.Plaintext, AllowPlaintextLogin: true,
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.Close()

	ctx := context.Background()
	listing, err := c.List(ctx, "")
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("cursor:", listing.Cursor)
	err = c.Fetch(ctx, listing.Messages, func(ref mailsync.MessageRef, body io.Reader) error {
		raw, err := io.ReadAll(body)
		fmt.Printf("%s: %d bytes, %q\n", ref.Key, len(raw), bytes.SplitN(raw, []byte("\r\n"), 3)[1])
		return err
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	if err := c.Ack(ctx, listing.Messages, mailsync.PostAction{Kind: mailsync.MarkRead}); err != nil {
		fmt.Println(err)
		return
	}
	again, _ := c.List(ctx, listing.Cursor)
	fmt.Println("new since the cursor:", len(again.Messages))
	// Output:
	// cursor: v1:1:1
	// 1:1: 129 bytes, "Subject: Impressora parada"
	// new since the cursor: 0
}

// Check backs the admin's "test connection" button.
func ExampleCheck() {
	addr, stop := exampleServer()
	defer stop()
	host, port, _ := net.SplitHostPort(addr)
	p, _ := strconv.Atoi(port)
	conn := mailsync.Connection{Name: "support", Enabled: true, User: "support@example.com",
		Server: host, Port: p, Protocol: mailsync.IMAP, ConnectedWith: []string{"incident"}}

	res, err := mimap.Check(context.Background(), conn, mimap.Options{
		Password: "app-password", Security: mimap.Plaintext, AllowPlaintextLogin: true,
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Printf("%s: %d message(s), move: %v, delete: %v\n", res.Folder, res.Messages, res.CanMove, res.CanExpungeUIDs)

	_, err = mimap.Check(context.Background(), conn, mimap.Options{
		Password: "wrong", Security: mimap.Plaintext, AllowPlaintextLogin: true,
	})
	fmt.Println(errors.Is(err, mailsync.ErrAuth))
	// Output:
	// INBOX: 1 message(s), move: true, delete: true
	// true
}
