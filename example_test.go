package mailsync_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/mailsync/mailsync"
	"github.com/mailsync/mailsync/examples/customprovider/maildir"
)

// Sync turns the mail of a connector into tickets. Here the connector reads
// a Maildir directory; the imap, pop3, graph and gmail packages make
// connectors for real mailboxes the same way.
func ExampleSync() {
	dir, _ := os.MkdirTemp("", "maildir")
	defer os.RemoveAll(dir)
	for _, sub := range []string{"cur", "new", "tmp"} {
		os.MkdirAll(filepath.Join(dir, sub), 0o700)
	}
	os.WriteFile(filepath.Join(dir, "new", "1.example"), []byte(
		"From: =?utf-8?q?Jo=C3=A3o?= <joao@example.com>\r\nSubject: =?utf-8?q?Impressora_n=C3=A3o_imprime?=\r\n"+
			"Message-ID: <1@example.com>\r\n\r\nA impressora do 2.º andar não imprime.\r\n"), 0o600)

	conn := mailsync.Connection{Name: "Suporte", Enabled: true, User: dir, Protocol: maildir.Protocol, ConnectedWith: []string{"incident"}}
	c, err := maildir.New(conn)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.Close()

	sink := mailsync.NewMemorySink()
	state := mailsync.NewMemoryState() // use boltstate.Open for a durable one
	rep, err := mailsync.Sync(context.Background(), c, mailsync.DefaultMapping("incident"), sink, mailsync.WithState(state))
	if err != nil {
		fmt.Println(err)
		return
	}
	t := sink.Tickets()[0]
	fmt.Printf("created %d: %q from %s <%s>\n", rep.Created, t.Fields["title"], t.Fields["requester_name"], t.Fields["requester"])

	rep, _ = mailsync.Sync(context.Background(), c, mailsync.DefaultMapping("incident"), sink, mailsync.WithState(state))
	fmt.Printf("second sync created %d\n", rep.Created)
	// Output:
	// created 1: "Impressora não imprime" from João <joao@example.com>
	// second sync created 0
}

// A Mapping fills ticket fields from e-mail fields, constants and defaults.
func ExampleMapping() {
	m := mailsync.Mapping{TicketType: "incident", Fields: []mailsync.FieldMapping{
		{Ticket: "title", Source: mailsync.FieldSubject, Default: "(no subject)", MaxLength: 20},
		{Ticket: "requester", Source: mailsync.FieldFromAddress},
		{Ticket: "priority", Source: "header:X-Priority", Default: "3"},
		{Ticket: "channel", Const: "e-mail"},
	}}
	p := &mailsync.Parser{}
	msg, err := p.Parse(strings.NewReader("From: ana@example.com\r\nSubject: VPN does not connect since Monday\r\n\r\nHelp!\r\n"))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer msg.Close()
	f := m.Apply(msg)
	fmt.Println(f["title"], "|", f["requester"], "|", f["priority"], "|", f["channel"])
	// Output: VPN does not connect | ana@example.com | 3 | e-mail
}

// Validate reports every problem of a mapping at once, by field.
func ExampleMapping_Validate() {
	m := mailsync.Mapping{TicketType: "incident", Fields: []mailsync.FieldMapping{{Ticket: "title", Source: "subjekt"}}}
	err := m.Validate()
	var ce *mailsync.ConfigError
	fmt.Println(errors.Is(err, mailsync.ErrInvalidConfig), errors.As(err, &ce) && ce.Field("fields[0].source"))
	fmt.Println(err)
	// Output:
	// true true
	// mailsync: invalid configuration: fields[0].source "subjekt" is not a known e-mail field
}

// A Secret never prints, whatever the verb; JSON keeps its value for the host's storage.
func ExampleSecret() {
	s := mailsync.Secret("client-secret-value")
	fmt.Println(s, fmt.Sprintf("%v %+v %#v %q", s, s, s, s))
	// Output: [REDACTED] [REDACTED] [REDACTED] "[REDACTED]" "[REDACTED]"
}
