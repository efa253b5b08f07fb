package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/mailsync/mailsync"
)

// fileConfig is the JSON file: connections in the shape of the admin form,
// the mappings per ticket type, and where state and tickets go.
type fileConfig struct {
	// StateFile is the durable state in a bbolt file; default
	// "mailsync-state.db". It is used when State is empty.
	StateFile string `json:"state_file,omitempty"`
	// State selects an SQL state store instead of the bbolt StateFile:
	// "sqlite:PATH" (a SQLite file; a relative PATH is relative to the
	// config file's folder) or a PostgreSQL URL "postgres://…" /
	// "postgresql://…" (its password may come from PGPASSWORD instead of
	// the URL). The state holds cursors and processed keys, never a secret.
	// -serve keeps River's jobs and the connections' health in the same
	// database.
	State string `json:"state,omitempty"`
	// TicketsFile is the JSON-lines ticket file; default "tickets.jsonl".
	TicketsFile string `json:"tickets_file,omitempty"`
	// SaveFiles writes attachments next to TicketsFile (in
	// "<tickets_file>.files/"); without it they are only hashed.
	// Quarantined raw mail is written there in any case. A post_action that
	// removes mail from the server ("delete", "move") needs save_files:
	// true, or the attachments would be kept nowhere; the tool refuses to
	// start otherwise.
	SaveFiles   bool               `json:"save_files,omitempty"`
	Connections []connectionConfig `json:"connections"`
	Mappings    []mailsync.Mapping `json:"mappings"`

	// store is State parsed (zero: the bbolt StateFile).
	store stateSetting
}

// connectionConfig is one admin-form connection plus the tool's settings.
type connectionConfig struct {
	mailsync.Connection
	// TicketType picks the mapping; default the first of connected_with.
	TicketType string `json:"ticket_type,omitempty"`
	// Folder to read (IMAP, Graph; Gmail: label); default INBOX.
	Folder string `json:"folder,omitempty"`
	// Security: "tls" (implicit), "starttls" or "plaintext"; default by port.
	Security string `json:"security,omitempty"`
	// AllowPlaintextLogin opts in to credentials over an unencrypted connection.
	AllowPlaintextLogin bool `json:"allow_plaintext_login,omitempty"`
	// CAFile is a PEM file of extra trusted CAs (self-signed servers).
	CAFile string `json:"ca_file,omitempty"`
	// PostAction once a ticket is stored; default leave untouched.
	PostAction mailsync.PostAction `json:"post_action,omitempty"`
	// APIEndpoint overrides a Graph or Gmail API base URL (tests).
	APIEndpoint string `json:"api_endpoint,omitempty"`
	// Rules route the connection's mail among its connected_with ticket
	// types (their mappings come from "mappings"), and filter it; see
	// mailsync.Routing. Try them first with -dry-run.
	Rules []mailsync.Rule `json:"rules,omitempty"`
	// Blocked senders never become tickets.
	Blocked mailsync.BlockList `json:"blocked,omitempty"`
}

// routing returns the connection's rules and block list with the mappings
// of its other ticket types, or nil when it has neither.
func (c *fileConfig) routing(cc connectionConfig, def mailsync.Mapping) *mailsync.Routing {
	if len(cc.Rules) == 0 && len(cc.Blocked.Addresses)+len(cc.Blocked.Domains)+len(cc.Blocked.Patterns) == 0 {
		return nil
	}
	r := &mailsync.Routing{Rules: cc.Rules, Blocked: cc.Blocked}
	for _, t := range cc.ConnectedWith {
		if m, ok := c.mapping(t); ok && t != def.TicketType {
			r.Mappings = append(r.Mappings, m)
		}
	}
	return r
}

// forbiddenKeys never belong in the file: the password is typed in at sync time.
var forbiddenKeys = []string{"password", "passwd", "pass", "secret_password"}

func loadConfig(path string) (*fileConfig, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var probe struct {
		Connections []map[string]json.RawMessage `json:"connections"`
	}
	if err := json.Unmarshal(raw, &probe); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	for i, c := range probe.Connections {
		for k := range c {
			for _, bad := range forbiddenKeys {
				if strings.EqualFold(k, bad) {
					return nil, fmt.Errorf("%s: connections[%d] has a %q field: passwords are never read from the file (type it when asked, or set MAILSYNC_PASSWORD, or use -password-stdin)", path, i, k)
				}
			}
		}
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	var cfg fileConfig
	if err := dec.Decode(&cfg); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if err := cfg.validate(); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if cfg.StateFile == "" {
		cfg.StateFile = "mailsync-state.db"
	}
	if cfg.State != "" {
		st, err := parseStateSetting(cfg.State, filepath.Dir(path))
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		cfg.store = st
	}
	if cfg.TicketsFile == "" {
		cfg.TicketsFile = "tickets.jsonl"
	}
	return &cfg, nil
}

// validate checks what only the tool knows: the sink keeps attachments
// only with save_files, so a post-action that removes mail from the server
// would lose them (the post-action must remove only what the sink holds).
func (c *fileConfig) validate() error {
	var problems []mailsync.Problem
	for i, cc := range c.Connections {
		switch k := cc.PostAction.Kind; k {
		case mailsync.Delete, mailsync.MoveToFolder:
			if !c.SaveFiles {
				problems = append(problems, mailsync.Problem{
					Field: fmt.Sprintf("connections[%d].post_action", i),
					Code:  mailsync.CodeConflict,
					Message: fmt.Sprintf("%q (connection %q) removes the mail from the server, but save_files is false, so its attachments would be kept nowhere: "+
						"set \"save_files\": true, or use post_action \"mark_read\" or none", k, cc.Name),
				})
			}
		}
	}
	if len(problems) > 0 {
		return mailsync.NewConfigError(problems...)
	}
	return nil
}

func (c *fileConfig) mapping(ticketType string) (mailsync.Mapping, bool) {
	for _, m := range c.Mappings {
		if m.TicketType == ticketType {
			return m, true
		}
	}
	return mailsync.Mapping{}, false
}

// configMu serialises the rewrites of the config file: in -serve, two
// connections may rotate their refresh tokens at once.
var configMu sync.Mutex

// saveRefreshToken writes a rotated refresh token back into the config
// file (atomically, mode 0600), as the host would store it.
func saveRefreshToken(path, connection string, token mailsync.Secret) error {
	configMu.Lock()
	defer configMu.Unlock()
	raw, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var doc map[string]any
	if err := json.Unmarshal(raw, &doc); err != nil {
		return err
	}
	conns, _ := doc["connections"].([]any)
	found := false
	for _, c := range conns {
		m, _ := c.(map[string]any)
		if m["name"] == connection {
			if o, ok := m["oauth"].(map[string]any); ok {
				o["refresh_token"] = token.Reveal()
				found = true
			}
		}
	}
	if !found {
		return fmt.Errorf("connection %q has no oauth block in %s", connection, path)
	}
	out, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, append(out, '\n'), 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
