package mailsync_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/mailsync/mailsync"
	"github.com/mailsync/mailsync/connectortest"
)

// fakeConnector is an in-memory mailbox with failure injection.
type fakeConnector struct {
	conn      mailsync.Connection
	msgs      []fakeMsg
	fetchErrs []error // returned by successive Fetch calls after the first message
	ackErr    error
	acked     []string
	lists     int
	gone      map[string]bool // keys reported gone with fn(ref, nil)
	dropped   map[string]bool // keys silently not delivered
}

type fakeMsg struct {
	key string
	raw []byte
}

func newFake(n int) *fakeConnector {
	f := &fakeConnector{conn: mailsync.Connection{Name: "fake", Enabled: true, User: "u", Server: "h", Protocol: mailsync.IMAP, ConnectedWith: []string{"incident"}}}
	for i := 0; i < n; i++ {
		f.msgs = append(f.msgs, fakeMsg{key: fmt.Sprint(i), raw: connectortest.NewMessage(fmt.Sprintf("m%d", i), fmt.Sprintf("subject %d", i))})
	}
	return f
}

func (f *fakeConnector) Connection() mailsync.Connection { return f.conn }
func (f *fakeConnector) Close() error                    { return nil }
func (f *fakeConnector) List(ctx context.Context, c mailsync.Cursor) (*mailsync.Listing, error) {
	f.lists++
	l := &mailsync.Listing{Cursor: mailsync.Cursor(fmt.Sprint(len(f.msgs)))}
	for _, m := range f.msgs {
		l.Messages = append(l.Messages, mailsync.MessageRef{Key: m.key, Size: int64(len(m.raw))})
	}
	return l, nil
}
func (f *fakeConnector) Fetch(ctx context.Context, refs []mailsync.MessageRef, fn func(mailsync.MessageRef, io.Reader) error) error {
	for i, r := range refs {
		if i == 1 && len(f.fetchErrs) > 0 {
			err := f.fetchErrs[0]
			f.fetchErrs = f.fetchErrs[1:]
			return err
		}
		if f.gone[r.Key] {
			if err := fn(r, nil); err != nil {
				return err
			}
			continue
		}
		if f.dropped[r.Key] {
			continue
		}
		for _, m := range f.msgs {
			if m.key == r.Key {
				if err := fn(r, bytes.NewReader(m.raw)); err != nil {
					return err
				}
			}
		}
	}
	return nil
}
func (f *fakeConnector) Ack(ctx context.Context, refs []mailsync.MessageRef, a mailsync.PostAction) error {
	if f.ackErr != nil {
		return f.ackErr
	}
	for _, r := range refs {
		f.acked = append(f.acked, r.Key)
	}
	return nil
}

var mapping = mailsync.DefaultMapping("incident")

func TestSyncRefusesTicketTypeNotConnected(t *testing.T) {
	_, err := mailsync.Sync(context.Background(), newFake(1), mailsync.DefaultMapping("change-request"), mailsync.NewMemorySink())
	if !errors.Is(err, mailsync.ErrNotConnectedWith) {
		t.Fatalf("got %v, want ErrNotConnectedWith", err)
	}
}

func TestSyncRefusesDisabledConnection(t *testing.T) {
	f := newFake(1)
	f.conn.Enabled = false
	_, err := mailsync.Sync(context.Background(), f, mapping, mailsync.NewMemorySink())
	if !errors.Is(err, mailsync.ErrDisabled) {
		t.Fatalf("got %v, want ErrDisabled", err)
	}
}

func TestSyncReportsEveryConfigProblem(t *testing.T) {
	f := newFake(1)
	f.conn.Port = 70000
	bad := mailsync.Mapping{TicketType: "incident", Fields: []mailsync.FieldMapping{{Ticket: "x", Source: "sender.phone"}}}
	_, err := mailsync.Sync(context.Background(), f, bad, mailsync.NewMemorySink(), mailsync.WithPostAction(mailsync.PostAction{Kind: mailsync.MoveToFolder}))
	var ce *mailsync.ConfigError
	if !errors.As(err, &ce) || !errors.Is(err, mailsync.ErrInvalidConfig) {
		t.Fatalf("got %v, want a ConfigError", err)
	}
	for _, field := range []string{"port", "fields[0].source", "post_action.folder"} {
		if !ce.Field(field) {
			t.Errorf("no problem reported for %s in %v", field, err)
		}
	}
}

func TestSinkFailureLeavesMessageForNextRun(t *testing.T) {
	f := newFake(3)
	sink := mailsync.NewMemorySink()
	state := mailsync.NewMemoryState()
	sink.BeforeCreate = func(ctx context.Context, tk *mailsync.Ticket) error {
		if tk.Message.Subject == "subject 1" {
			return errors.New("database down")
		}
		return nil
	}
	rep, err := mailsync.Sync(context.Background(), f, mapping, sink, mailsync.WithState(state), mailsync.WithPostAction(mailsync.PostAction{Kind: mailsync.MarkRead}))
	if err != nil {
		t.Fatal(err)
	}
	if rep.Created != 2 || rep.Failed != 1 || rep.Cursor != "" {
		t.Fatalf("created %d failed %d cursor %q; want 2, 1 and no new cursor", rep.Created, rep.Failed, rep.Cursor)
	}
	if strings.Join(f.acked, ",") != "0,2" {
		t.Fatalf("acked %v: the failed message must not be acknowledged", f.acked)
	}
	for _, o := range rep.Messages {
		if o.Status == mailsync.StatusFailed && !errors.Is(o.Err, mailsync.ErrSink) {
			t.Errorf("failure %v should wrap ErrSink", o.Err)
		}
	}
	sink.BeforeCreate = nil
	rep, err = mailsync.Sync(context.Background(), f, mapping, sink, mailsync.WithState(state), mailsync.WithPostAction(mailsync.PostAction{Kind: mailsync.MarkRead}))
	if err != nil || rep.Created != 1 || rep.AlreadyDone != 2 || rep.Cursor != "3" {
		t.Fatalf("second run: created %d already %d cursor %q err %v", rep.Created, rep.AlreadyDone, rep.Cursor, err)
	}
	if len(sink.Tickets()) != 3 {
		t.Fatalf("%d tickets", len(sink.Tickets()))
	}
}

func TestAckFailureIsRetriedNextRun(t *testing.T) {
	f := newFake(2)
	f.ackErr = fmt.Errorf("imap: %w: folder is read-only", mailsync.ErrUnsupported)
	sink := mailsync.NewMemorySink()
	state := mailsync.NewMemoryState()
	move := mailsync.WithPostAction(mailsync.PostAction{Kind: mailsync.MoveToFolder, Folder: "Done"})
	rep, _ := mailsync.Sync(context.Background(), f, mapping, sink, mailsync.WithState(state), move)
	if rep.Failed != 2 || len(sink.Tickets()) != 2 || len(state.ProcessedKeys("fake")) != 0 {
		t.Fatalf("failed %d, tickets %d, processed %v", rep.Failed, len(sink.Tickets()), state.ProcessedKeys("fake"))
	}
	f.ackErr = nil
	rep, _ = mailsync.Sync(context.Background(), f, mapping, sink, mailsync.WithState(state), move)
	if rep.Created != 0 || rep.AlreadyDone != 2 || len(f.acked) != 2 || len(state.ProcessedKeys("fake")) != 2 {
		t.Fatalf("second run: created %d already %d acked %v", rep.Created, rep.AlreadyDone, f.acked)
	}
}

func TestConnectionErrorsAreRetried(t *testing.T) {
	f := newFake(4)
	f.fetchErrs = []error{fmt.Errorf("%w: reset", mailsync.ErrConnection), &mailsync.ThrottledError{RetryAfter: 20 * time.Millisecond}}
	sink := mailsync.NewMemorySink()
	rep, err := mailsync.Sync(context.Background(), f, mapping, sink, mailsync.WithRetry(5, time.Millisecond), mailsync.WithBatchSize(10))
	if err != nil || rep.Created != 4 || len(sink.Tickets()) != 4 {
		t.Fatalf("created %d, err %v", rep.Created, err)
	}
}

func TestPermanentFetchErrorStopsButKeepsWork(t *testing.T) {
	f := newFake(4)
	f.fetchErrs = []error{fmt.Errorf("%w: bad password", mailsync.ErrAuth)}
	state := mailsync.NewMemoryState()
	rep, err := mailsync.Sync(context.Background(), f, mapping, mailsync.NewMemorySink(), mailsync.WithState(state))
	if !errors.Is(err, mailsync.ErrAuth) {
		t.Fatalf("err %v, want ErrAuth", err)
	}
	if rep.Created != 1 || len(state.ProcessedKeys("fake")) != 1 {
		t.Fatalf("created %d processed %v: the message before the error must be kept", rep.Created, state.ProcessedKeys("fake"))
	}
}

func TestGoneMessagesLetTheCursorMove(t *testing.T) {
	f := newFake(3)
	f.gone = map[string]bool{"1": true}
	rep, err := mailsync.Sync(context.Background(), f, mapping, mailsync.NewMemorySink())
	if err != nil || rep.Created != 2 || rep.Gone != 1 || rep.Cursor != "3" {
		t.Fatalf("created %d gone %d cursor %q err %v; want 2, 1, \"3\"", rep.Created, rep.Gone, rep.Cursor, err)
	}
	// A message neither delivered nor reported gone holds the cursor back.
	f = newFake(3)
	f.dropped = map[string]bool{"1": true}
	rep, err = mailsync.Sync(context.Background(), f, mapping, mailsync.NewMemorySink())
	if err != nil || rep.Created != 2 || rep.Cursor != "" || len(rep.Notes) == 0 {
		t.Fatalf("created %d cursor %q notes %v err %v; want 2 and the cursor kept", rep.Created, rep.Cursor, rep.Notes, err)
	}
}
