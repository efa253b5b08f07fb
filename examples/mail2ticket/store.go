package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/mailsync/mailsync"
	"github.com/mailsync/mailsync/boltstate"
	"github.com/mailsync/mailsync/sqlstate"
)

// storeKind is the kind of state store a config selects.
type storeKind int

const (
	storeBolt     storeKind = iota // the bbolt state_file (the default)
	storeSQLite                    // "state": "sqlite:PATH"
	storePostgres                  // "state": "postgres://…"
)

// stateSetting is the config's "state" value, parsed.
type stateSetting struct {
	kind storeKind
	// path is the SQLite file (absolute, or relative to the working
	// folder when the config's folder was relative).
	path string
	// url is the PostgreSQL URL. It may hold a password: never print it.
	url string
}

// parseStateSetting parses a "state" value; relative SQLite paths are taken
// from configDir. Errors never quote a PostgreSQL URL (it may hold a
// password).
func parseStateSetting(v, configDir string) (stateSetting, error) {
	switch {
	case strings.HasPrefix(v, "sqlite:"):
		p := strings.TrimPrefix(v, "sqlite:")
		p = strings.TrimPrefix(p, "//") // sqlite:///abs/path
		if p == "" || p == ":memory:" {
			return stateSetting{}, mailsync.NewConfigError(mailsync.Problem{Field: "state", Code: mailsync.CodeInvalid, Message: `"sqlite:" needs a file path, e.g. "sqlite:mailsync.db"`})
		}
		if !filepath.IsAbs(p) {
			p = filepath.Join(configDir, p)
		}
		return stateSetting{kind: storeSQLite, path: p}, nil
	case strings.HasPrefix(v, "postgres://"), strings.HasPrefix(v, "postgresql://"):
		return stateSetting{kind: storePostgres, url: v}, nil
	}
	return stateSetting{}, mailsync.NewConfigError(mailsync.Problem{Field: "state", Code: mailsync.CodeUnknown,
		Allowed: []string{"sqlite:<path>", "postgres://<url>"},
		Message: `must be "sqlite:PATH" or a PostgreSQL URL "postgres://…" (leave it out for the bbolt "state_file")`})
}

// String describes the store without its secrets, for messages.
func (s stateSetting) String() string {
	switch s.kind {
	case storeSQLite:
		return "SQLite " + s.path
	case storePostgres:
		return "PostgreSQL"
	}
	return "bbolt"
}

// openState opens the config's state store: the SQLite file or the
// PostgreSQL database of "state", or else the bbolt state_file.
func openState(ctx context.Context, cfg *fileConfig) (mailsync.State, func() error, error) {
	switch cfg.store.kind {
	case storeSQLite:
		if err := os.MkdirAll(filepath.Dir(cfg.store.path), 0o700); err != nil {
			return nil, nil, err
		}
		s, err := sqlstate.OpenSQLite(ctx, cfg.store.path)
		if err != nil {
			return nil, nil, err
		}
		return s, s.Close, nil
	case storePostgres:
		s, err := sqlstate.OpenPostgres(ctx, cfg.store.url, sqlstate.Options{})
		if err != nil {
			// sqlstate's errors do not quote the URL; say which store failed.
			return nil, nil, fmt.Errorf("opening the PostgreSQL state: %w", err)
		}
		return s, s.Close, nil
	}
	s, err := boltstate.Open(cfg.StateFile)
	if err != nil {
		return nil, nil, err
	}
	return s, s.Close, nil
}
