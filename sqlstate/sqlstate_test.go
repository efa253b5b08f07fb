package sqlstate_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/mailsync/mailsync"
	"github.com/mailsync/mailsync/internal/pgtest"
	"github.com/mailsync/mailsync/sqlstate"
	"github.com/mailsync/mailsync/statetest"
)

func TestMain(m *testing.M) {
	if os.Getenv(helperEnv) != "" {
		os.Exit(helperMain())
	}
	code := m.Run()
	pgtest.StopAll()
	os.Exit(code)
}

var ctx = context.Background()

// openSQLite opens a fresh SQLite state in t's temp dir.
func openSQLite(t testing.TB) *sqlstate.State {
	t.Helper()
	s, err := sqlstate.OpenSQLite(ctx, filepath.Join(t.TempDir(), "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// openPostgres opens a fresh PostgreSQL state in its own database.
func openPostgres(t testing.TB, opts sqlstate.Options) *sqlstate.State {
	t.Helper()
	s, err := sqlstate.OpenPostgres(ctx, pgtest.NewDatabase(t), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestSQLite(t *testing.T) {
	maker := func(t *testing.T) mailsync.State { return openSQLite(t) }
	statetest.Run(t, maker)
	statetest.RunLeases(t, maker)
}

func TestPostgres(t *testing.T) {
	maker := func(t *testing.T) mailsync.State { return openPostgres(t, sqlstate.Options{}) }
	statetest.Run(t, maker)
	statetest.RunLeases(t, maker)
}

// The suite with a schema and a prefix of the host's choice.
func TestPostgresSchemaAndPrefix(t *testing.T) {
	var dsn string
	maker := func(t *testing.T) mailsync.State {
		dsn = pgtest.NewDatabase(t)
		s, err := sqlstate.OpenPostgres(ctx, dsn, sqlstate.Options{Schema: "helpdesk", Prefix: "ms_"})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		// The tables are where the options say, and nowhere else.
		var n int
		if err := s.DB().QueryRowContext(ctx, `SELECT count(*) FROM pg_tables WHERE schemaname = 'helpdesk' AND tablename LIKE 'ms\_%'`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n != 6 {
			t.Fatalf("%d tables helpdesk.ms_*, want 6", n)
		}
		if err := s.DB().QueryRowContext(ctx, `SELECT count(*) FROM pg_tables WHERE schemaname = 'public'`).Scan(&n); err != nil || n != 0 {
			t.Fatalf("%d tables in public (%v), want none", n, err)
		}
		return s
	}
	statetest.Run(t, maker)
}

// Two prefixes in one database are two independent states.
func TestSQLitePrefixesAreIndependent(t *testing.T) {
	path := filepath.Join(t.TempDir(), "host.db")
	a, err := sqlstate.OpenSQLiteOptions(ctx, path, sqlstate.Options{Prefix: "a_"})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := sqlstate.OpenSQLiteOptions(ctx, path, sqlstate.Options{Prefix: "b_"})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	c := mailsync.Cursor("x")
	if err := a.Record(ctx, "conn", mailsync.Record{Done: map[string]string{"k": "T"}, Cursor: &c}); err != nil {
		t.Fatal(err)
	}
	if p, _ := b.Processed(ctx, "conn", []string{"k"}); p[0] {
		t.Fatal("prefix b_ sees a key recorded under a_")
	}
	if p, _ := a.Processed(ctx, "conn", []string{"k"}); !p[0] {
		t.Fatal("prefix a_ lost its key")
	}
}

func TestOptionsValidated(t *testing.T) {
	db, err := sql.Open("sqlite", filepath.Join(t.TempDir(), "x.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for _, o := range []sqlstate.Options{
		{},
		{Dialect: sqlstate.SQLite, Prefix: "bad-prefix"},
		{Dialect: sqlstate.SQLite, Prefix: "x; DROP TABLE y; --"},
		{Dialect: sqlstate.SQLite, Schema: "main"},
		{Dialect: sqlstate.Postgres, Schema: `a"b`},
	} {
		if _, err := sqlstate.Open(ctx, db, o); !errors.Is(err, mailsync.ErrInvalidConfig) {
			t.Errorf("Open(%+v) = %v, want ErrInvalidConfig", o, err)
		}
	}
	if _, err := sqlstate.OpenSQLite(ctx, ":memory:"); !errors.Is(err, mailsync.ErrInvalidConfig) {
		t.Errorf("OpenSQLite(:memory:) = %v, want ErrInvalidConfig", err)
	}
}

// Migrations run once, also when several processes (here: pools) open a
// new database at the same moment, and again is a no-op.
func testConcurrentOpen(t *testing.T, open func() (*sqlstate.State, error)) {
	var wg sync.WaitGroup
	states := make([]*sqlstate.State, 6)
	errs := make([]error, len(states))
	for i := range states {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			states[i], errs[i] = open()
		}(i)
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("open %d: %v", i, err)
		}
		defer states[i].Close()
	}
	var n int
	if err := states[0].DB().QueryRowContext(ctx, `SELECT count(*) FROM mailsync_schema_migrations`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 1 {
		t.Fatalf("%d rows in the version table, want 1", n)
	}
	if err := states[1].Record(ctx, "c", mailsync.Record{Done: map[string]string{"k": "T"}}); err != nil {
		t.Fatal(err)
	}
	if p, _ := states[5].Processed(ctx, "c", []string{"k"}); !p[0] {
		t.Fatal("states opened at once do not share their data")
	}
}

func TestSQLiteConcurrentOpen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	testConcurrentOpen(t, func() (*sqlstate.State, error) { return sqlstate.OpenSQLite(ctx, path) })
}

func TestPostgresConcurrentOpen(t *testing.T) {
	dsn := pgtest.NewDatabase(t)
	testConcurrentOpen(t, func() (*sqlstate.State, error) { return sqlstate.OpenPostgres(ctx, dsn, sqlstate.Options{}) })
}

// Processed answers large lists (a complete listing) both by probing and
// by reading all done keys; both give the same answers, also for a key
// listed twice and for another connection's keys.
func testProcessedManyKeys(t *testing.T, s *sqlstate.State) {
	done := map[string]string{}
	for i := 0; i < 9000; i += 2 { // even keys are done
		done[fmt.Sprint("k", i)] = "T"
	}
	if err := s.Record(ctx, "a", mailsync.Record{Done: done}); err != nil {
		t.Fatal(err)
	}
	if err := s.Record(ctx, "b", mailsync.Record{Done: map[string]string{"k1": "T", "k3": "T"}}); err != nil {
		t.Fatal(err)
	}
	// 10 keys and 1001 keys (4500 done, more than 4 times as many): probed;
	// 3000 keys: all done keys read.
	for _, n := range []int{10, 1001, 3000} {
		keys := make([]string, 0, n+1)
		for i := 0; i < n; i++ {
			keys = append(keys, fmt.Sprint("k", i))
		}
		keys = append(keys, "k0") // listed twice
		got, err := s.Processed(ctx, "a", keys)
		if err != nil {
			t.Fatal(err)
		}
		for i, k := range keys {
			want := done[k] != ""
			if got[i] != want {
				t.Fatalf("%d keys: Processed(%s) = %v, want %v", n, k, got[i], want)
			}
		}
	}
}

func TestSQLiteProcessedManyKeys(t *testing.T) { testProcessedManyKeys(t, openSQLite(t)) }
func TestPostgresProcessedManyKeys(t *testing.T) {
	testProcessedManyKeys(t, openPostgres(t, sqlstate.Options{}))
}

func TestSQLiteWriteTx(t *testing.T) { testWriteTx(t, openSQLite(t), "") }

// On PostgreSQL WriteTx is READ COMMITTED: a read that a write depends on
// locks its row.
func TestPostgresWriteTx(t *testing.T) {
	testWriteTx(t, openPostgres(t, sqlstate.Options{}), " FOR UPDATE")
}

// testWriteTx: a host table in the State's database written through
// WriteTx: nil commits, an error rolls back and is returned, and eight
// concurrent read-then-write transactions (the pattern that fails with
// SQLITE_BUSY in a deferred SQLite transaction) all succeed and lose no
// increment.
func testWriteTx(t *testing.T, st *sqlstate.State, lock string) {
	ctx := context.Background()
	if _, err := st.DB().ExecContext(ctx, `CREATE TABLE host_counter (id INTEGER PRIMARY KEY, n INTEGER NOT NULL)`); err != nil {
		t.Fatal(err)
	}
	if err := st.WriteTx(ctx, func(q sqlstate.Querier) error {
		_, err := q.ExecContext(ctx, `INSERT INTO host_counter (id, n) VALUES (1, 0)`)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	boom := errors.New("boom")
	if err := st.WriteTx(ctx, func(q sqlstate.Querier) error {
		if _, err := q.ExecContext(ctx, `UPDATE host_counter SET n = 100 WHERE id = 1`); err != nil {
			return err
		}
		return boom
	}); !errors.Is(err, boom) {
		t.Fatalf("WriteTx returned %v, want fn's error", err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- st.WriteTx(ctx, func(q sqlstate.Querier) error {
				var n int
				if err := q.QueryRowContext(ctx, `SELECT n FROM host_counter WHERE id = 1`+lock).Scan(&n); err != nil {
					return err
				}
				time.Sleep(5 * time.Millisecond) // let another writer come in between
				_, err := q.ExecContext(ctx, `UPDATE host_counter SET n = `+strconv.Itoa(n+1)+` WHERE id = 1`)
				return err
			})
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Errorf("concurrent WriteTx: %v", err)
		}
	}
	var n int
	if err := st.DB().QueryRowContext(ctx, `SELECT n FROM host_counter WHERE id = 1`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 8 {
		t.Errorf("counter = %d after a rolled-back write and 8 increments, want 8", n)
	}
}

// OpenPostgres's pool keeps the connections a fleet uses at once instead of
// database/sql's 2: with 2, each statement beyond them opened a PostgreSQL
// session (a server process, authentication) and closed it after.
func TestPostgresPoolKeepsItsConnections(t *testing.T) {
	s := openPostgres(t, sqlstate.Options{})
	db := s.DB()
	run := func() {
		var wg sync.WaitGroup
		for range 8 {
			wg.Go(func() {
				if _, err := db.ExecContext(ctx, "SELECT pg_sleep(0.05)"); err != nil {
					t.Error(err)
				}
			})
		}
		wg.Wait()
	}
	run()
	opened := db.Stats().OpenConnections
	run()
	st := db.Stats()
	if st.MaxIdleClosed > 0 || st.OpenConnections < opened || st.Idle < 8 {
		t.Errorf("after two rounds of 8 statements at once: %d open, %d idle, %d closed for the idle limit; want 8 kept", st.OpenConnections, st.Idle, st.MaxIdleClosed)
	}
}
