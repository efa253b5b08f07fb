package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mailsync/mailsync/internal/dovecottest"
	"github.com/mailsync/mailsync/jsonlsink"
)

// Rules in the config route mail among ticket types; -dry-run previews
// them and stores nothing; a quarantined mail replayed after the rule was
// fixed becomes one ticket, and a second replay a duplicate.
func TestRulesDryRunAndReplay(t *testing.T) {
	srv := dovecottest.Shared(t, dovecottest.Options{})
	user := srv.AddUser(t, "m2t-rules", "pa55-rules")
	mail := func(from, to, subject, id, extra string) []byte {
		return []byte("From: " + from + "\r\nTo: " + to + "\r\nSubject: " + subject + "\r\nMessage-ID: <" + id + ">\r\n" + extra +
			"Date: Mon, 23 Nov 2026 10:00:00 +0000\r\n\r\nbody of " + id + "\r\n")
	}
	srv.Deliver(t, user, "", mail("ana@cliente.pt", "suporte@empresa.pt", "Impressora", "r1@cliente.pt", ""))
	srv.Deliver(t, user, "", mail("rui@cliente.pt", "billing@empresa.pt", "Fatura errada", "r2@cliente.pt", ""))
	srv.Deliver(t, user, "", mail("x@spam.example", "suporte@empresa.pt", "Pergunta", "r3@spam.example", "X-Spam-Score: 3.1\r\n"))
	host, port, _ := strings.Cut(srv.IMAPSAddr, ":")
	dir := t.TempDir()
	tickets := filepath.Join(dir, "tickets.jsonl")
	config := func(spamAbove string) string {
		return writeConfig(t, map[string]any{
			"state_file": filepath.Join(dir, "state.db"), "tickets_file": tickets,
			"connections": []map[string]any{{
				"name": "Suporte", "enabled": true, "user": user, "server": host, "port": json.Number(port),
				"protocol": "imap", "connected_with": []string{"incident", "billing"}, "security": "tls", "ca_file": srv.CAFile,
				"rules": []map[string]any{
					{"id": "spam", "when": []map[string]any{{"field": "spam.score", "op": "above", "value": spamAbove}}, "action": "quarantine"},
					{"id": "billing", "when": []map[string]any{{"field": "recipient", "op": "is", "value": "billing@empresa.pt"}}, "ticket_type": "billing"},
				},
			}},
			"mappings": []map[string]any{
				{"ticket_type": "incident", "fields": []map[string]any{{"ticket": "title", "source": "subject"}}},
				{"ticket_type": "billing", "fields": []map[string]any{{"ticket": "title", "source": "subject"}, {"ticket": "queue", "const": "finance"}}},
			},
		})
	}
	strict := config("2") // too strict: quarantines the 3.1 question
	var out, errb bytes.Buffer
	if err := run2(t, []string{"-config", strict, "-dry-run", "-password-stdin"}, "pa55-rules\n", &out, &errb); err != nil {
		t.Fatalf("dry run: %v\n%s\n%s", err, out.String(), errb.String())
	}
	for _, want := range []string{"billing  ", "Fatura errada", "quarantined", "spam"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("dry-run table lacks %q:\n%s", want, out.String())
		}
	}
	if recs := readTickets(t, tickets); len(recs) != 0 {
		t.Fatalf("the dry run stored %d records", len(recs))
	}
	out.Reset()
	if err := run2(t, []string{"-config", strict, "-password-stdin"}, "pa55-rules\n", &out, &errb); err != nil {
		t.Fatalf("sync: %v\n%s", err, out.String())
	}
	if !strings.Contains(out.String(), "created 2") || !strings.Contains(out.String(), "quarantined 1") {
		t.Fatalf("sync output:\n%s", out.String())
	}
	// The admin fixes the rule and replays the quarantine folder.
	fixed := config("5")
	for i, want := range []string{"✓", "·"} {
		out.Reset()
		if err := run2(t, []string{"-config", fixed, "-connection", "Suporte", "-replay", tickets + ".files"}, "", &out, &errb); err != nil {
			t.Fatalf("replay %d: %v\n%s", i+1, err, out.String())
		}
		if lines := strings.Split(strings.TrimSpace(out.String()), "\n"); len(lines) != 1 || !strings.HasPrefix(lines[0], want) {
			t.Fatalf("replay %d output:\n%s", i+1, out.String())
		}
	}
	types := map[string]int{}
	for _, r := range readTickets(t, tickets) {
		if r.Kind == jsonlsink.KindTicket {
			types[r.Type]++
		}
	}
	if types["incident"] != 2 || types["billing"] != 1 {
		t.Fatalf("ticket types %v, want 2 incident (one replayed) and 1 billing", types)
	}
}

func readTickets(t *testing.T, path string) []jsonlsink.Record {
	t.Helper()
	f, err := os.Open(path)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	recs, err := jsonlsink.ReadRecords(f)
	if err != nil {
		t.Fatal(err)
	}
	return recs
}
