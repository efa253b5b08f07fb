package pop3_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net/textproto"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/mailsync/mailsync"
	"github.com/mailsync/mailsync/connectortest"
	"github.com/mailsync/mailsync/pop3"
)

// courierHarness runs the conformance suite on the fake server behaving
// like Courier, which marks a message read when it is retrieved: the
// harness declares it (connectortest.FetchMarksReader), unless declare is
// false.
type courierHarness struct {
	s       *fakeServer
	n       int
	declare bool
}

func (h *courierHarness) MakeConnector(context.Context) (mailsync.Connector, error) {
	return pop3.New(h.s.connection(), fakeOpts(h.s))
}

func (h *courierHarness) Deliver(_ context.Context, raw []byte) error {
	h.n++
	h.s.add(fmt.Sprintf("courier-%d", h.n), raw)
	return nil
}

func (h *courierHarness) Inspect(context.Context) ([]connectortest.MailboxMessage, error) {
	h.s.mu.Lock()
	defer h.s.mu.Unlock()
	var out []connectortest.MailboxMessage
	for _, m := range h.s.msgs {
		if m.deleted {
			continue
		}
		hdr, err := textproto.NewReader(bufio.NewReader(bytes.NewReader(m.body))).ReadMIMEHeader()
		if err != nil && len(hdr) == 0 {
			return nil, fmt.Errorf("message %s: %w", m.uid, err)
		}
		id := strings.Trim(strings.TrimSpace(hdr.Get("Message-Id")), "<>")
		out = append(out, connectortest.MailboxMessage{MessageID: id, Folder: connectortest.SourceFolder, Seen: m.seen})
	}
	return out, nil
}

func (h *courierHarness) PostActions() []mailsync.ActionKind {
	return []mailsync.ActionKind{mailsync.Delete}
}

func (h *courierHarness) FetchMarksRead() bool { return h.declare }

func (h *courierHarness) Close() { h.s.Close() }

// undeclaredEnv, set in a child test process, makes the Courier harness
// not declare that RETR marks mail read.
const undeclaredEnv = "POP3_TEST_COURIER_UNDECLARED"

// TestConformanceFakeCourier: a server that marks mail read on RETR passes
// the suite when the harness declares it (issue 11 item 8).
func TestConformanceFakeCourier(t *testing.T) {
	connectortest.Run(t, func(ctx context.Context, t *testing.T) (connectortest.Harness, error) {
		s, err := startFake("ana", fakePass, "")
		if err != nil {
			return nil, err
		}
		s.set(func(k *fakeKnobs) { k.retrMarksRead = true })
		return &courierHarness{s: s, declare: os.Getenv(undeclaredEnv) == ""}, nil
	})
}

// Undeclared, the same server fails the PostActions test: the declaration
// is what makes it pass, and the suite is not silently lenient.
func TestConformanceFakeCourierUndeclaredFails(t *testing.T) {
	if os.Getenv(undeclaredEnv) != "" {
		t.Skip("inside the child process")
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestConformanceFakeCourier$/^PostActions$", "-test.v")
	cmd.Env = append(os.Environ(), undeclaredEnv+"=1")
	out, err := cmd.CombinedOutput()
	if err == nil || !bytes.Contains(out, []byte("is marked read")) || !bytes.Contains(out, []byte("--- FAIL: TestConformanceFakeCourier/PostActions")) {
		t.Fatalf("undeclared, the PostActions test should fail on the read flag; got %v:\n%s", err, out)
	}
}
