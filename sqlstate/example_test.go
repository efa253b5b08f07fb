package sqlstate_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"path/filepath"

	"github.com/mailsync/mailsync"
	"github.com/mailsync/mailsync/sqlstate"
)

// A host on one machine keeps the state in a SQLite file. (On several
// machines: sqlstate.OpenPostgres(ctx, dsn, sqlstate.Options{Schema: "helpdesk"}),
// or sqlstate.Open on the host's own *sql.DB.)
func ExampleOpenSQLite() {
	dir, err := os.MkdirTemp("", "example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)

	ctx := context.Background()
	st, err := sqlstate.OpenSQLite(ctx, filepath.Join(dir, "mailsync.db"))
	if err != nil {
		log.Fatal(err)
	}
	defer st.Close()

	// Sync(ctx, connector, mapping, sink, mailsync.WithState(st)) records here.
	c := mailsync.Cursor("v1:42")
	if err := st.Record(ctx, "support", mailsync.Record{Done: map[string]string{"INBOX/42": "T-7"}, Cursor: &c}); err != nil {
		log.Fatal(err)
	}
	cur, _ := st.Cursor(ctx, "support")
	done, _ := st.Processed(ctx, "support", []string{"INBOX/41", "INBOX/42"})
	fmt.Println(cur, done)
	// Output: v1:42 [false true]
}
