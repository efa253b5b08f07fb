package mailsync_test

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/mailsync/mailsync"
	"github.com/mailsync/mailsync/boltstate"
	"github.com/mailsync/mailsync/connectortest"
	"github.com/mailsync/mailsync/examples/customprovider/maildir"
	"github.com/mailsync/mailsync/jsonlsink"
)

const crashMessages = 1000

// TestCrashChild is the subprocess of TestCrashRecovery.
func TestCrashChild(t *testing.T) {
	dir := os.Getenv("MAILSYNC_CRASH_DIR")
	if dir == "" {
		t.Skip("subprocess of TestCrashRecovery")
	}
	sink, err := jsonlsink.Open(filepath.Join(dir, "tickets.jsonl"), false)
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
	readTickets := func() []jsonlsink.Record {
		raw, _ := os.ReadFile(filepath.Join(dir, "tickets.jsonl"))
		recs, err := jsonlsink.ReadRecords(bytes.NewReader(raw[:bytes.LastIndexByte(raw, '\n')+1]))
		if err != nil {
			t.Fatal(err)
		}
		return recs
	}
	count := func() int { return len(readTickets()) }
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

	tickets := readTickets()
	keys, ids := map[string]bool{}, map[string]bool{}
	for _, tk := range tickets {
		if keys[tk.IdempotencyKey] || ids[tk.Source.MessageID] {
			t.Errorf("duplicate ticket %+v", tk)
		}
		keys[tk.IdempotencyKey], ids[tk.Source.MessageID] = true, true
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
