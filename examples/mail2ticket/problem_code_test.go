package main

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/mailsync/mailsync"
)

// The tool's own configuration problems carry a Code, as the library's do.
func TestConfigProblemCodes(t *testing.T) {
	dir := t.TempDir()
	// A connection whose ticket type has no mapping: Resolve says so.
	path := filepath.Join(dir, "config.json")
	raw, err := json.Marshal(map[string]any{
		"connections": []map[string]any{{"name": "c", "enabled": true, "user": "u@example.com", "connected_with": []string{"incident"},
			"ticket_type": "other", "oauth": map[string]any{"provider": "gmail_api", "client_id": "cid", "client_secret": "s", "refresh_token": "r"}}},
		"mappings": []mailsync.Mapping{mailsync.DefaultMapping("incident")},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	r := &serveResolver{c: &cli{configPath: path}, ids: []string{"c"}}
	_, resolveErr := r.Resolve(context.Background(), "c", "")

	_, sqliteErr := parseStateSetting("sqlite:", dir)
	_, stateErr := parseStateSetting("mysql://db/mailsync", dir)
	saveErr := (&fileConfig{Connections: []connectionConfig{{Connection: mailsync.Connection{Name: "c"},
		PostAction: mailsync.PostAction{Kind: mailsync.Delete}}}}).validate()

	for _, tc := range []struct {
		name  string
		err   error
		want  mailsync.Problem
		limit bool
	}{
		{"no mapping", resolveErr, mailsync.Problem{Field: "ticket_type", Code: mailsync.CodeNotFound}, false},
		{"sqlite without a path", sqliteErr, mailsync.Problem{Field: "state", Code: mailsync.CodeInvalid}, false},
		{"unknown state", stateErr, mailsync.Problem{Field: "state", Code: mailsync.CodeUnknown, Allowed: []string{"sqlite:<path>", "postgres://<url>"}}, false},
		{"delete without save_files", saveErr, mailsync.Problem{Field: "connections[0].post_action", Code: mailsync.CodeConflict}, false},
	} {
		var ce *mailsync.ConfigError
		if !errors.As(tc.err, &ce) || len(ce.Problems) != 1 {
			t.Errorf("%s: %v, want one problem", tc.name, tc.err)
			continue
		}
		p := ce.Problems[0]
		if p.Field != tc.want.Field || p.Code != tc.want.Code || !slices.Equal(p.Allowed, tc.want.Allowed) || p.Limit != 0 || p.Message == "" {
			t.Errorf("%s: %+v, want %+v", tc.name, p, tc.want)
		}
	}
}
