package mailsync_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mailsync/mailsync"
	"github.com/mailsync/mailsync/boltstate"
	"github.com/mailsync/mailsync/connectortest"
	"github.com/mailsync/mailsync/examples/customprovider/maildir"
)

// fileSink is a durable, idempotent sink: one JSON line per ticket, fsynced.
// A line cut short by a crash is dropped when the file is opened again.
type fileSink struct {
	mu   sync.Mutex
	f    *os.File
	keys map[string]bool
}

type fileTicket struct {
	Key       string `json:"key"`
	MessageID string `json:"message_id"`
}

func openFileSink(path string) (*fileSink, error) {
	raw, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		return nil, err
	}
	// Keep only complete lines.
	end := len(raw)
	for end > 0 && raw[end-1] != '\n' {
		end--
	}
	if err := os.WriteFile(path, raw[:end], 0o600); err != nil {
		return nil, err
	}
	s := &fileSink{keys: map[string]bool{}}
	for _, t := range readTickets(raw[:end]) {
		s.keys[t.Key] = true
	}
	s.f, err = os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0o600)
	return s, err
}

func readTickets(raw []byte) []fileTicket {
	var out []fileTicket
	sc := bufio.NewScanner(bytes.NewReader(raw))
	for sc.Scan() {
		var t fileTicket
		if json.Unmarshal(sc.Bytes(), &t) == nil {
			out = append(out, t)
		}
	}
	return out
}

func (s *fileSink) CreateTicket(ctx context.Context, t *mailsync.Ticket) (mailsync.Receipt, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.keys[t.IdempotencyKey] {
		return mailsync.Receipt{TicketID: t.IdempotencyKey, Duplicate: true}, nil
	}
	line, _ := json.Marshal(fileTicket{Key: t.IdempotencyKey, MessageID: t.Message.MessageID})
	if _, err := s.f.Write(append(line, '\n')); err != nil {
		return mailsync.Receipt{}, err
	}
	if err := s.f.Sync(); err != nil {
		return mailsync.Receipt{}, err
	}
	s.keys[t.IdempotencyKey] = true
	return mailsync.Receipt{TicketID: t.IdempotencyKey}, nil
}

func (s *fileSink) Quarantine(ctx context.Context, q *mailsync.Quarantined) error {
	return fmt.Errorf("unexpected quarantine: %v", q.Err)
}

const crashMessages = 1000

// TestCrashChild is the subprocess of TestCrashRecovery.
func TestCrashChild(t *testing.T) {
	dir := os.Getenv("MAILSYNC_CRASH_DIR")
	if dir == "" {
		t.Skip("subprocess of TestCrashRecovery")
	}
	sink, err := openFileSink(filepath.Join(dir, "tickets.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	st, err := boltstate.Open(filepath.Join(dir, "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	c, err := maildir.New(mailsync.Connection{Name: "crash", Enabled: true, User: filepath.Join(dir, "Maildir"), Protocol: maildir.Protocol, ConnectedWith: []string{"incident"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := mailsync.Sync(context.Background(), c, mailsync.DefaultMapping("incident"), sink,
		mailsync.WithState(st), mailsync.WithPostAction(mailsync.PostAction{Kind: mailsync.Delete}), mailsync.WithBatchSize(25)); err != nil {
		t.Fatal(err)
	}
}

// TestCrashRecovery syncs 1,000 messages in a subprocess that is SIGKILLed at
// random points 20 times, then lets it finish: exactly one ticket per message.
func TestCrashRecovery(t *testing.T) {
	if testing.Short() {
		t.Skip("slow")
	}
	dir := t.TempDir()
	box := filepath.Join(dir, "Maildir")
	for _, sub := range []string{"cur", "new", "tmp"} {
		if err := os.MkdirAll(filepath.Join(box, sub), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < crashMessages; i++ {
		raw := connectortest.NewMessage(fmt.Sprintf("crash-%04d", i), fmt.Sprintf("crash %d", i))
		if err := os.WriteFile(filepath.Join(box, "new", fmt.Sprintf("%010d.crash", i)), raw, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	count := func() int {
		raw, _ := os.ReadFile(filepath.Join(dir, "tickets.jsonl"))
		return len(readTickets(raw))
	}
	// run starts the child and SIGKILLs it once the sink holds killAt
	// tickets (0: let it finish). It reports whether it killed the child.
	run := func(killAt int) (killed bool) {
		cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChild$", "-test.count=1")
		cmd.Env = append(os.Environ(), "MAILSYNC_CRASH_DIR="+dir)
		out, _ := os.CreateTemp(dir, "child-*.log")
		defer out.Close()
		cmd.Stdout, cmd.Stderr = out, out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		tick := time.NewTicker(time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case err := <-done:
				if err != nil {
					log, _ := os.ReadFile(out.Name())
					t.Fatalf("child failed: %v\n%s", err, log)
				}
				return false
			case <-tick.C:
				if killAt > 0 && count() >= killAt {
					cmd.Process.Signal(syscall.SIGKILL)
					<-done
					return true
				}
			}
		}
	}
	kills := 0
	for i := 0; i < 20; i++ {
		// Kill points spread over the whole sync, each after some progress.
		target := (i+1)*crashMessages/21 + rand.IntN(crashMessages/42)
		if run(target) {
			kills++
		}
	}
	run(0)
	t.Logf("%d of 20 runs were killed mid-sync", kills)

	raw, err := os.ReadFile(filepath.Join(dir, "tickets.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	tickets := readTickets(raw)
	keys, ids := map[string]bool{}, map[string]bool{}
	for _, tk := range tickets {
		if keys[tk.Key] || ids[tk.MessageID] {
			t.Errorf("duplicate ticket %+v", tk)
		}
		keys[tk.Key], ids[tk.MessageID] = true, true
	}
	if len(tickets) != crashMessages || len(ids) != crashMessages {
		t.Fatalf("%d tickets for %d distinct messages, want %d", len(tickets), len(ids), crashMessages)
	}
	left, _ := os.ReadDir(filepath.Join(box, "new"))
	if len(left) != 0 {
		t.Errorf("%d messages left in the mailbox after the final run", len(left))
	}
	if kills < 20 {
		t.Errorf("only %d runs were killed mid-sync", kills)
	}
}
