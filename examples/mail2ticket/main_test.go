package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mailsync/mailsync/connectortest"
	"github.com/mailsync/mailsync/internal/dovecottest"
	"github.com/mailsync/mailsync/internal/pgtest"
	"github.com/mailsync/mailsync/jsonlsink"
)

func TestMain(m *testing.M) {
	code := m.Run()
	dovecottest.StopAll()
	pgtest.StopAll()
	os.Exit(code)
}

func writeConfig(t *testing.T, doc map[string]any) string {
	t.Helper()
	raw, _ := json.Marshal(doc)
	path := filepath.Join(t.TempDir(), "mail2ticket.json")
	if err := os.WriteFile(path, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestSyncAgainstDovecot runs the tool end to end against a real Dovecot,
// over IMAPS and POP3S, with the password on stdin, twice.
func TestSyncAgainstDovecot(t *testing.T) {
	srv := dovecottest.Shared(t, dovecottest.Options{})
	for _, proto := range []string{"imap", "pop3"} {
		t.Run(proto, func(t *testing.T) {
			user := srv.AddUser(t, "m2t-"+proto, "pa55-"+proto)
			for i := 0; i < 3; i++ {
				srv.Deliver(t, user, "", connectortest.NewMessage(fmt.Sprintf("m2t-%s-%d", proto, i), fmt.Sprintf("Chamado %d", i)))
			}
			addr := srv.IMAPSAddr
			if proto == "pop3" {
				addr = srv.POP3SAddr
			}
			host, port, _ := strings.Cut(addr, ":")
			dir := t.TempDir()
			cfg := writeConfig(t, map[string]any{
				"state_file":   filepath.Join(dir, "state.db"),
				"tickets_file": filepath.Join(dir, "tickets.jsonl"),
				"connections": []map[string]any{{
					"name": "Suporte", "enabled": true, "user": user, "server": host, "port": json.Number(port),
					"protocol": proto, "connected_with": []string{"incident"}, "security": "tls", "ca_file": srv.CAFile,
				}},
				"mappings": []map[string]any{{"ticket_type": "incident", "fields": []map[string]any{
					{"ticket": "title", "source": "subject"}, {"ticket": "requester", "source": "from.address"}}}},
			})
			for run := 0; run < 2; run++ {
				var out, errb bytes.Buffer
				err := run2(t, []string{"-config", cfg, "-password-stdin"}, "pa55-"+proto+"\n", &out, &errb)
				if err != nil {
					t.Fatalf("run %d: %v\n%s\n%s", run, err, out.String(), errb.String())
				}
				if strings.Contains(out.String()+errb.String(), "pa55-") {
					t.Fatalf("the password was printed:\n%s%s", out.String(), errb.String())
				}
				want := "created 3"
				if run == 1 {
					want = "created 0"
				}
				if !strings.Contains(out.String(), want) {
					t.Fatalf("run %d output lacks %q:\n%s", run, want, out.String())
				}
			}
			f, _ := os.Open(filepath.Join(dir, "tickets.jsonl"))
			defer f.Close()
			recs, err := jsonlsink.ReadRecords(f)
			if err != nil || len(recs) != 3 {
				t.Fatalf("%d records, err %v", len(recs), err)
			}
			if recs[0].Fields["title"] != "Chamado 0" {
				t.Errorf("first ticket %+v", recs[0].Fields)
			}
			var out bytes.Buffer
			if err := run2(t, []string{"-config", cfg, "-check"}, "", &out, &out); err == nil || !strings.Contains(out.String(), "MAILSYNC_PASSWORD") {
				// With no password source at all, -check must say how to give one.
				if os.Getenv("MAILSYNC_PASSWORD") == "" {
					t.Errorf("check without a password: err %v, output %s", err, out.String())
				}
			}
			out.Reset()
			t.Setenv("MAILSYNC_PASSWORD", "pa55-"+proto)
			if err := run2(t, []string{"-config", cfg, "-check"}, "", &out, &out); err != nil || !strings.Contains(out.String(), "✓ Suporte") {
				t.Errorf("check: %v\n%s", err, out.String())
			}
			out.Reset()
			t.Setenv("MAILSYNC_PASSWORD", "wrong")
			if err := run2(t, []string{"-config", cfg, "-check"}, "", &out, &out); err == nil || !strings.Contains(strings.ToLower(out.String()), "auth") {
				t.Errorf("check with a wrong password: %v\n%s", err, out.String())
			}
		})
	}
}

func run2(t *testing.T, args []string, stdin string, stdout, stderr *bytes.Buffer) error {
	t.Helper()
	return run(args, strings.NewReader(stdin), stdout, stderr)
}

func TestPasswordInConfigIsRefused(t *testing.T) {
	cfg := writeConfig(t, map[string]any{"connections": []map[string]any{{"name": "x", "password": "hunter2"}}})
	var out bytes.Buffer
	err := run([]string{"-config", cfg}, strings.NewReader(""), &out, &out)
	if err == nil || !strings.Contains(err.Error(), "never read from the file") || strings.Contains(err.Error(), "hunter2") {
		t.Fatalf("got %v", err)
	}
}

// The shipped example configuration stays loadable and valid.
func TestExampleConfigIsValid(t *testing.T) {
	cfg, err := loadConfig("example-config.json")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range cfg.Connections {
		if err := c.Validate(); err != nil {
			t.Errorf("%s: %v", c.Name, err)
		}
		if err := c.PostAction.Validate(); err != nil {
			t.Errorf("%s: %v", c.Name, err)
		}
		tt := c.ConnectedWith[0]
		if _, ok := cfg.mapping(tt); !ok {
			t.Errorf("%s: no mapping for %q", c.Name, tt)
		}
	}
	for _, m := range cfg.Mappings {
		if err := m.Validate(); err != nil {
			t.Errorf("mapping %s: %v", m.TicketType, err)
		}
	}
}
