package mailsync_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/mailsync/mailsync"
	"github.com/mailsync/mailsync/examples/customprovider/maildir"
)

// A mailbox shared by support@ and billing@ feeds two ticket types; a rule
// picks the type by recipient, a block list drops a spammer, and every
// outcome names the rules that matched. WithDryRun previews it first,
// storing nothing.
func ExampleWithRouting() {
	dir, _ := os.MkdirTemp("", "maildir")
	defer os.RemoveAll(dir)
	for _, sub := range []string{"cur", "new", "tmp"} {
		os.MkdirAll(filepath.Join(dir, sub), 0o700)
	}
	for i, m := range []struct{ from, to, subject string }{
		{"ana@cliente.pt", "support@empresa.pt", "Impressora avariada"},
		{"rui@cliente.pt", "billing@empresa.pt", "Fatura em duplicado"},
		{"bot@spam.example", "support@empresa.pt", "Cheap pills"},
	} {
		raw := fmt.Sprintf("From: %s\r\nTo: %s\r\nSubject: %s\r\nMessage-ID: <%d@example.com>\r\n\r\nbody\r\n", m.from, m.to, m.subject, i)
		os.WriteFile(filepath.Join(dir, "new", fmt.Sprintf("%d.example", i)), []byte(raw), 0o600)
	}
	conn := mailsync.Connection{Name: "Caixa partilhada", Enabled: true, User: dir, Protocol: maildir.Protocol,
		ConnectedWith: []string{"incident", "billing"}}
	routing := mailsync.Routing{
		Mappings: []mailsync.Mapping{mailsync.DefaultMapping("billing")},
		Rules: []mailsync.Rule{{ID: "billing-alias", TicketType: "billing",
			When: []mailsync.Condition{{Field: "recipient", Op: mailsync.OpIs, Value: "billing@empresa.pt"}}}},
		Blocked: mailsync.BlockList{Domains: []string{"spam.example"}},
	}
	for _, opts := range [][]mailsync.Option{{mailsync.WithDryRun()}, nil} {
		c, _ := maildir.New(conn)
		rep, err := mailsync.Sync(context.Background(), c, mailsync.DefaultMapping("incident"), mailsync.NewMemorySink(),
			append(opts, mailsync.WithRouting(routing))...)
		if err != nil {
			fmt.Println(err)
			return
		}
		fmt.Printf("dry run %v: created %d, blocked %d\n", rep.DryRun, rep.Created, rep.Blocked)
		for _, o := range rep.Messages {
			fmt.Println(strings.TrimSpace(fmt.Sprintf("  %-8s %-8s rules %q %s", o.Status, o.TicketType, o.Rules, o.Blocked)))
		}
	}
	// Output:
	// dry run true: created 2, blocked 1
	// created  incident rules []
	// created  billing  rules ["billing-alias"]
	// dropped           rules [] bot@spam.example
	// dry run false: created 2, blocked 1
	// created  incident rules []
	// created  billing  rules ["billing-alias"]
	// dropped           rules [] bot@spam.example
}
