package sqlstate

import (
	"context"
	"embed"
	"fmt"
	"hash/fnv"
	"io/fs"
	"path"
	"sort"
	"strconv"
	"strings"
)

//go:embed migrations
var migrationFiles embed.FS

// migration is one numbered .sql file of a dialect.
type migration struct {
	version    int
	name       string
	statements []string
}

// migrations returns the dialect's migrations in order, with the table
// prefix applied. File names are NNNN_description.sql; a file holds
// statements separated by ";" at the end of a line, and "--" comment lines.
func migrations(o Options) ([]migration, error) {
	dir := path.Join("migrations", o.Dialect.String())
	entries, err := fs.ReadDir(migrationFiles, dir)
	if err != nil {
		return nil, err
	}
	tp := tablePrefix(o)
	var out []migration
	for _, e := range entries {
		num, _, ok := strings.Cut(e.Name(), "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil || v <= 0 || !strings.HasSuffix(e.Name(), ".sql") {
			return nil, fmt.Errorf("migration file %s is not named NNNN_name.sql", e.Name())
		}
		b, err := migrationFiles.ReadFile(path.Join(dir, e.Name()))
		if err != nil {
			return nil, err
		}
		var lines []string
		for _, l := range strings.Split(string(b), "\n") {
			if !strings.HasPrefix(strings.TrimSpace(l), "--") {
				lines = append(lines, l)
			}
		}
		m := migration{version: v, name: e.Name()}
		for _, st := range strings.Split(strings.Join(lines, "\n"), ";\n") {
			if st = strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(st), ";")); st != "" {
				m.statements = append(m.statements, strings.ReplaceAll(st, "{{T}}", tp))
			}
		}
		out = append(out, m)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].version < out[j].version })
	for i := 1; i < len(out); i++ {
		if out[i].version == out[i-1].version {
			return nil, fmt.Errorf("two migrations numbered %d", out[i].version)
		}
	}
	return out, nil
}

// lockKey is the PostgreSQL advisory lock that serialises the migrations
// of one schema and prefix.
func lockKey(o Options) int64 {
	h := fnv.New64a()
	h.Write([]byte("mailsync/sqlstate\x00" + o.Schema + "\x00" + strings.ToLower(o.Prefix)))
	return int64(h.Sum64())
}

// migrate applies the pending migrations, each in its own transaction
// together with its row in the version table. Every transaction first
// takes the migration lock (PostgreSQL: pg_advisory_xact_lock; SQLite:
// BEGIN IMMEDIATE) and then checks whether the version is still pending,
// so processes starting at once apply each migration exactly once.
func (s *State) migrate(ctx context.Context, o Options) error {
	ms, err := migrations(o)
	if err != nil {
		return fmt.Errorf("sqlstate: %w", err)
	}
	versions := tablePrefix(o) + "schema_migrations"
	createVersions := `CREATE TABLE IF NOT EXISTS ` + versions + ` (version integer PRIMARY KEY, name text NOT NULL, applied_at text NOT NULL)`
	applied := `SELECT count(*) FROM ` + versions + ` WHERE version = $1`
	insert := `INSERT INTO ` + versions + ` (version, name, applied_at) VALUES ($1, $2, CAST(CURRENT_TIMESTAMP AS text))`
	if s.dialect == SQLite {
		applied = strings.ReplaceAll(applied, "$", "?")
		insert = strings.ReplaceAll(insert, "$", "?")
	}
	lock := func(ctx context.Context, q querier) error {
		if s.dialect != Postgres {
			return nil // BEGIN IMMEDIATE already holds the write lock
		}
		_, err := q.ExecContext(ctx, `SELECT pg_advisory_xact_lock($1)`, lockKey(o))
		return err
	}
	err = s.inTx(ctx, func(q querier) error {
		if err := lock(ctx, q); err != nil {
			return err
		}
		if o.Schema != "" {
			var n int
			if err := q.QueryRowContext(ctx, `SELECT count(*) FROM pg_namespace WHERE nspname = $1`, o.Schema).Scan(&n); err != nil {
				return err
			}
			if n == 0 {
				if _, err := q.ExecContext(ctx, `CREATE SCHEMA "`+o.Schema+`"`); err != nil {
					return err
				}
			}
		}
		_, err := q.ExecContext(ctx, createVersions)
		return err
	})
	if err != nil {
		return fmt.Errorf("sqlstate: create %s: %w", versions, err)
	}
	for _, m := range ms {
		err := s.inTx(ctx, func(q querier) error {
			if err := lock(ctx, q); err != nil {
				return err
			}
			var n int
			if err := q.QueryRowContext(ctx, applied, m.version).Scan(&n); err != nil {
				return err
			}
			if n > 0 {
				return nil
			}
			for _, st := range m.statements {
				if _, err := q.ExecContext(ctx, st); err != nil {
					return err
				}
			}
			_, err := q.ExecContext(ctx, insert, m.version, m.name)
			return err
		})
		if err != nil {
			return fmt.Errorf("sqlstate: migration %s: %w", m.name, err)
		}
	}
	return nil
}
