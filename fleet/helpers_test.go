package fleet

import (
	"context"
	"database/sql"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver"
	"github.com/riverqueue/river/riverdriver/riversqlite"
	"github.com/riverqueue/river/rivertype"
	_ "modernc.org/sqlite"

	"github.com/mailsync/mailsync"
	"github.com/mailsync/mailsync/sqlstate"
)

// openSQLite opens a SQLite database in a temporary file with River's
// tables, as a host of the embedded default would (through
// sqlstate.OpenSQLiteDB: River's statements run from its statement cache).
func openSQLite(t testing.TB) *sql.DB {
	t.Helper()
	path := filepath.Join(t.TempDir(), "fleet.db")
	db, err := sqlstate.OpenSQLiteDB(path)
	if err != nil {
		t.Fatal(err)
	}
	db.SetMaxOpenConns(1)
	t.Cleanup(func() { db.Close() })
	if err := Migrate(context.Background(), riversqlite.New(db)); err != nil {
		t.Fatal(err)
	}
	return db
}

// fastRiver makes River poll often, so tests with short intervals run fast.
func fastRiver(c *river.Config) {
	c.FetchPollInterval = 20 * time.Millisecond
	c.FetchCooldown = 10 * time.Millisecond
}

// mailbox is a fake mail source. Each Resolve makes a fakeConnector on it.
type mailbox struct {
	name string

	mu        sync.Mutex
	msgs      [][]byte
	bigSize   map[int]int64     // index → reported size (a huge one is quarantined unread)
	listErr   func(n int) error // error of the n-th List call (1-based), nil for none
	block     chan struct{}     // when set, List waits for it to close
	entered   chan struct{}     // when set, List signals it on entry
	listCalls []time.Time       // when List was called
	listDelay time.Duration     // List sleeps that long
	inList    int               // List calls under way
	overlaps  int               // List calls that began while another was under way
	passwords []mailsync.Secret // the password of each Resolve
}

func newMailbox(name string, n int) *mailbox {
	mb := &mailbox{name: name, bigSize: map[int]int64{}}
	for i := range n {
		mb.msgs = append(mb.msgs, rawMessage(fmt.Sprintf("%s-%d", name, i), fmt.Sprintf("Problem %d", i)))
	}
	return mb
}

func rawMessage(id, subject string) []byte {
	return []byte("From: \"Ana Sousa\" <ana.sousa@example.com>\r\nTo: support@example.com\r\nSubject: " + subject +
		"\r\nDate: Mon, 02 Nov 2026 09:30:00 +0000\r\nMessage-ID: <" + id + "@fleet.invalid>\r\n" +
		"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nHello, message " + id + ".\r\n")
}

func (mb *mailbox) calls() []time.Time {
	mb.mu.Lock()
	defer mb.mu.Unlock()
	return append([]time.Time(nil), mb.listCalls...)
}

func (mb *mailbox) setListErr(f func(n int) error) {
	mb.mu.Lock()
	mb.listErr = f
	mb.mu.Unlock()
}

type fakeConnector struct{ mb *mailbox }

func (c *fakeConnector) Connection() mailsync.Connection {
	return mailsync.Connection{Name: c.mb.name, Enabled: true, User: "support@example.com",
		Protocol: "x-fake", ConnectedWith: []string{"incident"}}
}

func (c *fakeConnector) List(ctx context.Context, cursor mailsync.Cursor) (*mailsync.Listing, error) {
	mb := c.mb
	mb.mu.Lock()
	mb.listCalls = append(mb.listCalls, time.Now())
	n := len(mb.listCalls)
	listErr, block, entered := mb.listErr, mb.block, mb.entered
	if mb.inList > 0 {
		mb.overlaps++
	}
	mb.inList++
	mb.mu.Unlock()
	defer func() {
		mb.mu.Lock()
		mb.inList--
		mb.mu.Unlock()
	}()
	if entered != nil {
		select {
		case entered <- struct{}{}:
		default:
		}
	}
	if mb.listDelay > 0 {
		time.Sleep(mb.listDelay)
	}
	if block != nil {
		select {
		case <-block:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	if listErr != nil {
		if err := listErr(n); err != nil {
			return nil, err
		}
	}
	mb.mu.Lock()
	defer mb.mu.Unlock()
	l := &mailsync.Listing{Cursor: mailsync.Cursor(fmt.Sprint(len(mb.msgs)))}
	for i, raw := range mb.msgs {
		size := int64(len(raw))
		if s, ok := mb.bigSize[i]; ok {
			size = s
		}
		l.Messages = append(l.Messages, mailsync.MessageRef{Key: fmt.Sprint(i), Size: size})
	}
	return l, nil
}

func (c *fakeConnector) Fetch(ctx context.Context, refs []mailsync.MessageRef, fn func(mailsync.MessageRef, io.Reader) error) error {
	for _, r := range refs {
		var i int
		fmt.Sscan(r.Key, &i)
		c.mb.mu.Lock()
		raw := c.mb.msgs[i]
		c.mb.mu.Unlock()
		if err := fn(r, strings.NewReader(string(raw))); err != nil {
			return err
		}
	}
	return nil
}

func (c *fakeConnector) Ack(context.Context, []mailsync.MessageRef, mailsync.PostAction) error {
	return nil
}
func (c *fakeConnector) Close() error { return nil }

// resolver resolves the mailboxes it knows; password connections need a
// typed password.
type resolver struct {
	mu       sync.Mutex
	boxes    map[string]*mailbox
	sink     *mailsync.MemorySink
	password map[string]bool // typed-password connections
	secrets  []mailsync.Secret
	resolves map[string]int
	interval time.Duration
}

func newResolver(boxes ...*mailbox) *resolver {
	r := &resolver{boxes: map[string]*mailbox{}, sink: mailsync.NewMemorySink(), password: map[string]bool{}, resolves: map[string]int{}}
	for _, b := range boxes {
		r.boxes[b.name] = b
	}
	return r
}

func (r *resolver) Resolve(_ context.Context, id string, password mailsync.Secret) (Target, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.resolves[id]++
	mb, ok := r.boxes[id]
	if !ok {
		return Target{}, fmt.Errorf("%w: %s", ErrUnknownConnection, id)
	}
	if r.password[id] && password == "" {
		return Target{}, fmt.Errorf("%s: %w", id, ErrPasswordRequired)
	}
	mb.mu.Lock()
	mb.passwords = append(mb.passwords, password)
	mb.mu.Unlock()
	return Target{
		Connector: &fakeConnector{mb: mb},
		Mapping:   mailsync.DefaultMapping("incident"),
		Sink:      r.sink,
		// One try per sync: the fleet, not Sync's inner retry, is under test.
		Options:  []mailsync.Option{mailsync.WithRetry(1, time.Millisecond)},
		Interval: r.interval,
		Secrets:  r.secrets,
	}, nil
}

func (r *resolver) resolveCount(id string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.resolves[id]
}

// checkingResolver is a resolver that is also a Checker.
type checkingResolver struct{ *resolver }

func (r checkingResolver) Schedulable(_ context.Context, id string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.password[id] {
		return ErrPasswordRequired
	}
	return nil
}

// newFleet makes and starts a Fleet on the SQLite db with cfg (see newFleetOn).
func newFleet(t *testing.T, db *sql.DB, cfg Config) *Fleet {
	t.Helper()
	return newFleetOn(t, riversqlite.New(db), cfg)
}

// newFleetOn makes and starts a Fleet on driver with cfg (State and River
// tuning filled in when unset) and stops it at the end of the test.
func newFleetOn[TTx any](t *testing.T, driver riverdriver.Driver[TTx], cfg Config) *Fleet {
	t.Helper()
	if cfg.State == nil {
		cfg.State = mailsync.NewMemoryState()
	}
	if cfg.River == nil {
		cfg.River = fastRiver
	}
	f, err := New(driver, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := f.Stop(ctx); err != nil {
			t.Errorf("stop: %v", err)
		}
	})
	return f
}

// jobsOf lists connection's sync jobs in every state.
func jobsOf(t *testing.T, f *Fleet, connection string) []*rivertype.JobRow {
	t.Helper()
	res, err := f.client.JobList(context.Background(), river.NewJobListParams().Kinds(JobKind).First(100).
		States(rivertype.JobStates()...).
		Where("args ->> 'connection' = @c", river.NamedArgs{"c": connection}))
	if err != nil {
		t.Fatal(err)
	}
	return res.Jobs
}

// eventually polls cond every 10 ms until it holds or d passes.
func eventually(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// healthOf returns connection's health, failing the test when there is none.
func healthOf(t *testing.T, f *Fleet, connection string) Health {
	t.Helper()
	h, ok, err := f.Health().Get(context.Background(), connection)
	if err != nil || !ok {
		t.Fatalf("health of %s: ok=%v err=%v", connection, ok, err)
	}
	return h
}
