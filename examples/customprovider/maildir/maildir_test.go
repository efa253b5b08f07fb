package maildir_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net/textproto"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/mailsync/mailsync"
	"github.com/mailsync/mailsync/connectortest"
	"github.com/mailsync/mailsync/examples/customprovider/maildir"
)

type harness struct {
	dir string
	seq atomic.Int64
}

func (h *harness) MakeConnector(ctx context.Context) (mailsync.Connector, error) {
	return maildir.New(mailsync.Connection{Name: "maildir-test", Enabled: true, User: h.dir, Protocol: maildir.Protocol, ConnectedWith: []string{"incident"}})
}

func (h *harness) Deliver(ctx context.Context, raw []byte) error {
	name := fmt.Sprintf("%010d.M%d.test", h.seq.Add(1), os.Getpid())
	tmp := filepath.Join(h.dir, "tmp", name)
	if err := os.WriteFile(tmp, raw, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, filepath.Join(h.dir, "new", name))
}

func (h *harness) Inspect(ctx context.Context) ([]connectortest.MailboxMessage, error) {
	var out []connectortest.MailboxMessage
	for folder, dir := range map[string]string{connectortest.SourceFolder: h.dir, connectortest.MoveFolder: filepath.Join(h.dir, "."+connectortest.MoveFolder)} {
		for _, sub := range []string{"new", "cur"} {
			entries, _ := os.ReadDir(filepath.Join(dir, sub))
			for _, e := range entries {
				raw, err := os.ReadFile(filepath.Join(dir, sub, e.Name()))
				if err != nil {
					return nil, err
				}
				hdr, _ := textproto.NewReader(bufio.NewReader(bytes.NewReader(raw))).ReadMIMEHeader()
				_, info, _ := strings.Cut(e.Name(), ":2,")
				out = append(out, connectortest.MailboxMessage{
					MessageID: strings.Trim(hdr.Get("Message-Id"), "<>"),
					Folder:    folder,
					Seen:      strings.Contains(info, "S"),
				})
			}
		}
	}
	return out, nil
}

func (h *harness) PostActions() []mailsync.ActionKind {
	return []mailsync.ActionKind{mailsync.MarkRead, mailsync.MoveToFolder, mailsync.Delete}
}

func (h *harness) Close() {}

func TestConformance(t *testing.T) {
	connectortest.Run(t, func(ctx context.Context, t *testing.T) (connectortest.Harness, error) {
		dir := t.TempDir()
		for _, sub := range []string{"cur", "new", "tmp"} {
			if err := os.MkdirAll(filepath.Join(dir, sub), 0o700); err != nil {
				return nil, err
			}
		}
		return &harness{dir: dir}, nil
	})
}

// Remove implements connectortest.Remover: another client deletes the file.
func (h *harness) Remove(ctx context.Context, messageID string) error {
	for _, sub := range []string{"new", "cur"} {
		entries, _ := os.ReadDir(filepath.Join(h.dir, sub))
		for _, e := range entries {
			path := filepath.Join(h.dir, sub, e.Name())
			raw, err := os.ReadFile(path)
			if err != nil {
				continue
			}
			hdr, _ := textproto.NewReader(bufio.NewReader(bytes.NewReader(raw))).ReadMIMEHeader()
			if strings.Trim(hdr.Get("Message-Id"), "<>") == messageID {
				return os.Remove(path)
			}
		}
	}
	return fmt.Errorf("no message %s", messageID)
}
