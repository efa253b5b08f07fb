package imap_test

import (
	"context"
	"crypto/tls"
	"fmt"
	"testing"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/mailsync/mailsync"
	"github.com/mailsync/mailsync/connectortest"
	mimap "github.com/mailsync/mailsync/imap"
)

// memHarness runs the conformance suite on go-imap's in-memory server over
// implicit TLS.
type memHarness struct {
	t    testing.TB
	m    *memServer
	conn mailsync.Connection
	opts mimap.Options
}

func newMemHarness(t testing.TB, o memOptions) *memHarness {
	o.tls = true
	m := startMem(t, o)
	return &memHarness{
		t: t, m: m, conn: connection(t, m.TLSAddr),
		opts: mimap.Options{Password: testPassword, Security: mimap.ImplicitTLS, RootCAs: m.CAPool},
	}
}

func (h *memHarness) MakeConnector(ctx context.Context) (mailsync.Connector, error) {
	return mimap.New(h.conn, h.opts)
}

func (h *memHarness) Deliver(ctx context.Context, raw []byte) error {
	h.m.deliver(h.t, "INBOX", raw)
	return nil
}

func (h *memHarness) Inspect(ctx context.Context) ([]connectortest.MailboxMessage, error) {
	c, err := imapclient.DialTLS(h.m.TLSAddr, &imapclient.Options{TLSConfig: &tls.Config{RootCAs: h.m.CAPool}})
	if err != nil {
		return nil, err
	}
	defer c.Close()
	if err := c.Login(testUser, testPassword).Wait(); err != nil {
		return nil, err
	}
	var out []connectortest.MailboxMessage
	for _, folder := range []string{"INBOX", connectortest.MoveFolder} {
		msgs, err := inspectFolder(c, folder)
		if err != nil {
			return nil, err
		}
		for i := range msgs {
			if folder != "INBOX" {
				msgs[i].Folder = folder
			}
		}
		out = append(out, msgs...)
	}
	return out, nil
}

func (h *memHarness) PostActions() []mailsync.ActionKind {
	return []mailsync.ActionKind{mailsync.MarkRead, mailsync.MoveToFolder, mailsync.Delete}
}

func (h *memHarness) Close() {}

func TestConformanceMemServer(t *testing.T) {
	connectortest.Run(t, func(ctx context.Context, t *testing.T) (connectortest.Harness, error) {
		return newMemHarness(t, memOptions{}), nil
	})
}

func TestConformanceMemServerWithoutMove(t *testing.T) {
	connectortest.Run(t, func(ctx context.Context, t *testing.T) (connectortest.Harness, error) {
		return newMemHarness(t, memOptions{noMove: true}), nil
	})
}

// Remove implements connectortest.Remover: another client flags the
// message \Deleted and expunges it.
func (h *memHarness) Remove(ctx context.Context, messageID string) error {
	c, err := imapclient.DialTLS(h.m.TLSAddr, &imapclient.Options{TLSConfig: &tls.Config{RootCAs: h.m.CAPool}})
	if err != nil {
		return err
	}
	defer c.Close()
	if err := c.Login(testUser, testPassword).Wait(); err != nil {
		return err
	}
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		return err
	}
	res, err := c.UIDSearch(&imap.SearchCriteria{Header: []imap.SearchCriteriaHeaderField{{Key: "Message-ID", Value: messageID}}}, nil).Wait()
	if err != nil {
		return err
	}
	uids := res.AllUIDs()
	if len(uids) != 1 {
		return fmt.Errorf("%d messages with Message-ID %s", len(uids), messageID)
	}
	if err := c.Store(imap.UIDSetNum(uids...), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{imap.FlagDeleted}}, nil).Close(); err != nil {
		return err
	}
	return c.Expunge().Close()
}
