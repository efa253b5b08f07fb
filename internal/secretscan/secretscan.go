// Package secretscan checks that no secret was persisted: it reads every
// row of a database's tables and reports the values that hold a secret in
// any encoding internal/redact knows (raw, URL-encoded, quoted, base64 at
// any alignment). Tests of every store that must never keep a secret use it.
package secretscan

import (
	"context"
	"database/sql"
	"fmt"
	"strings"

	"github.com/mailsync/mailsync/internal/redact"
)

// Leak is one column value that holds a secret.
type Leak struct {
	Table, Column string
	Form          string // the encoding of the secret that was found
}

func (l Leak) String() string {
	return fmt.Sprintf("table %s column %s holds a secret (form %q)", l.Table, l.Column, l.Form)
}

// Rows reads every row of tables (names are quoted as identifiers) and
// returns the rows read per table and every value holding one of secrets.
func Rows(ctx context.Context, db *sql.DB, tables []string, secrets ...string) (map[string]int, []Leak, error) {
	var forms []string
	for _, s := range secrets {
		forms = append(forms, redact.Forms(s)...)
	}
	counts := map[string]int{}
	var leaks []Leak
	for _, table := range tables {
		rows, err := db.QueryContext(ctx, `SELECT * FROM "`+strings.ReplaceAll(table, `"`, `""`)+`"`)
		if err != nil {
			return nil, nil, err
		}
		cols, _ := rows.Columns()
		for rows.Next() {
			vals := make([]any, len(cols))
			ptrs := make([]any, len(cols))
			for i := range vals {
				ptrs[i] = &vals[i]
			}
			if err := rows.Scan(ptrs...); err != nil {
				rows.Close()
				return nil, nil, err
			}
			counts[table]++
			for i, v := range vals {
				text := fmt.Sprint(v)
				if b, ok := v.([]byte); ok {
					text = string(b)
				}
				for _, f := range forms {
					if strings.Contains(text, f) {
						leaks = append(leaks, Leak{Table: table, Column: cols[i], Form: f})
					}
				}
			}
		}
		err = rows.Err()
		rows.Close()
		if err != nil {
			return nil, nil, err
		}
	}
	return counts, leaks, nil
}
