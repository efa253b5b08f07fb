package pop3_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/mailsync/mailsync"
	"github.com/mailsync/mailsync/pop3"
)

const fakePass = "fake-password-9"

func newFake(t *testing.T) *fakeServer {
	t.Helper()
	s, err := startFake("ana", fakePass, "fake-token-7")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

// fakeOpts logs in over StartTLS with the fake's CA.
func fakeOpts(s *fakeServer) pop3.Options {
	return pop3.Options{Password: fakePass, Security: pop3.StartTLS, RootCAs: s.CAPool, CommandTimeout: 5 * time.Second}
}

func mustNew(t *testing.T, conn mailsync.Connection, opts pop3.Options) *pop3.Connector {
	t.Helper()
	c, err := pop3.New(conn, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func TestFakeListFetchDelete(t *testing.T) {
	s := newFake(t)
	s.add("u1", []byte("Subject: one\r\n\r\n.hidden dot\r\n"))
	s.add("u2", []byte("Subject: two\r\n\r\nbody\r\n"))
	s.add("u3", []byte("Subject: three\r\n\r\nbody\r\n"))
	s.set(func(k *fakeKnobs) { k.retrErr = map[string]string{"u2": "Message expunged by another session"} })
	c := mustNew(t, s.connection(), fakeOpts(s))
	ctx := ctxT(t)
	l, err := c.List(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	want := []mailsync.MessageRef{{Key: "u1", Size: 29}, {Key: "u2", Size: 22}, {Key: "u3", Size: 24}}
	if fmt.Sprint(l.Messages) != fmt.Sprint(want) || !l.Complete || l.Cursor != "" {
		t.Fatalf("listing %+v, want %v complete", l, want)
	}
	var got []string
	err = c.Fetch(ctx, append(l.Messages, mailsync.MessageRef{Key: "gone", Size: 1}), func(ref mailsync.MessageRef, r io.Reader) error {
		b, err := io.ReadAll(r)
		got = append(got, ref.Key+"="+string(b))
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	// u2 is refused by the server and "gone" was never there: both skipped.
	if w := []string{"u1=Subject: one\r\n\r\n.hidden dot\r\n", "u3=Subject: three\r\n\r\nbody\r\n"}; fmt.Sprint(got) != fmt.Sprint(w) {
		t.Fatalf("fetched %q, want %q", got, w)
	}
	// fn's error stops the fetch and is returned as is.
	stop := errors.New("stop here")
	calls := 0
	err = c.Fetch(ctx, l.Messages, func(mailsync.MessageRef, io.Reader) error { calls++; return stop })
	if err != stop || calls != 1 {
		t.Fatalf("Fetch with a failing fn: %v after %d calls", err, calls)
	}
	// The session stays usable after fn failed without reading.
	if err := c.Fetch(ctx, l.Messages[2:], func(mailsync.MessageRef, io.Reader) error { return nil }); err != nil {
		t.Fatal(err)
	}
	if err := c.Ack(ctx, l.Messages[:1], mailsync.PostAction{}); err != nil {
		t.Fatal(err)
	}
	if err := c.Ack(ctx, []mailsync.MessageRef{l.Messages[0], l.Messages[2]}, mailsync.PostAction{Kind: mailsync.Delete}); err != nil {
		t.Fatal(err)
	}
	if u := s.uids(); fmt.Sprint(u) != "[u2]" {
		t.Fatalf("left on the server: %v", u)
	}
	if n := strings.Count(strings.Join(s.seen(), " "), "USER"); n != 1 {
		t.Errorf("%d logins before the delete, want 1 session from List to Ack", n)
	}
	// After Ack's QUIT the next call reconnects.
	l, err = c.List(ctx, "")
	if err != nil || len(l.Messages) != 1 || l.Messages[0].Key != "u2" {
		t.Fatalf("listing after delete: %+v, %v", l, err)
	}
}

// A List with nothing new costs the same round trips whatever the size.
func TestFakeListConstantRoundTrips(t *testing.T) {
	s := newFake(t)
	count := func() int {
		before := len(s.seen())
		c := mustNew(t, s.connection(), fakeOpts(s))
		if _, err := c.List(ctxT(t), ""); err != nil {
			t.Fatal(err)
		}
		c.Close()
		return len(s.seen()) - before
	}
	small := count()
	for i := 0; i < 500; i++ {
		s.add(fmt.Sprintf("uid-%d", i), []byte("x\r\n"))
	}
	if big := count(); big != small {
		t.Fatalf("%d commands for an empty maildrop, %d for 500 messages", small, big)
	}
	if small != 6 { // StartTLS USER PASS UIDL LIST QUIT
		t.Errorf("%d commands per List, want 6: %v", small, s.seen())
	}
}

func TestFakeQuitFailureIsReported(t *testing.T) {
	s := newFake(t)
	s.add("u1", []byte("a\r\n"))
	s.set(func(k *fakeKnobs) { k.quitErr = "[SYS/TEMP] Failed to expunge" })
	c := mustNew(t, s.connection(), fakeOpts(s))
	ctx := ctxT(t)
	l, err := c.List(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	err = c.Ack(ctx, l.Messages, mailsync.PostAction{Kind: mailsync.Delete})
	if err == nil || !mailsync.Temporary(err) {
		t.Fatalf("Ack with a failing QUIT: %v, want a retryable error", err)
	}
	if len(s.uids()) != 1 {
		t.Fatal("message deleted although QUIT failed")
	}
	s.set(func(k *fakeKnobs) { k.quitErr = "" })
	// Repeating the ack reconnects, maps the key again and deletes.
	if err := c.Ack(ctx, l.Messages, mailsync.PostAction{Kind: mailsync.Delete}); err != nil {
		t.Fatal(err)
	}
	if len(s.uids()) != 0 {
		t.Fatal("message not deleted")
	}
}

func TestFakeNoUIDL(t *testing.T) {
	s := newFake(t)
	s.set(func(k *fakeKnobs) { k.noUIDL = true })
	s.add("u1", []byte("a\r\n"))
	c := mustNew(t, s.connection(), fakeOpts(s))
	if _, err := c.List(ctxT(t), ""); !errors.Is(err, mailsync.ErrUnsupported) {
		t.Fatalf("List: %v, want ErrUnsupported", err)
	}
	if _, err := pop3.Check(ctxT(t), s.connection(), fakeOpts(s)); !errors.Is(err, mailsync.ErrUnsupported) {
		t.Fatalf("Check: %v, want ErrUnsupported", err)
	}
}

func TestFakeDuplicateUIDL(t *testing.T) {
	s := newFake(t)
	s.set(func(k *fakeKnobs) { k.dupUIDL = true })
	s.add("u1", []byte("a\r\n"))
	s.add("u2", []byte("b\r\n"))
	c := mustNew(t, s.connection(), fakeOpts(s))
	l, err := c.List(ctxT(t), "")
	if err != nil {
		t.Fatal(err)
	}
	if len(l.Messages) != 1 || len(l.Notes) != 1 {
		t.Fatalf("listing %+v: want one message and a note", l)
	}
}

func TestFakeLoginResponseCodes(t *testing.T) {
	for _, tc := range []struct {
		text string
		want error
	}{
		{"[IN-USE] Mailbox is locked", mailsync.ErrMailboxBusy},
		{"[SYS/TEMP] Internal error", mailsync.ErrConnection},
		{"[LOGIN-DELAY] Wait", mailsync.ErrThrottled},
		{"[AUTH] Authentication failed.", mailsync.ErrAuth},
		{"Bad login", mailsync.ErrAuth},
	} {
		s := newFake(t)
		s.set(func(k *fakeKnobs) { k.passErr = tc.text })
		_, err := pop3.Check(ctxT(t), s.connection(), fakeOpts(s))
		if !errors.Is(err, tc.want) {
			t.Errorf("-ERR %s: %v, want %v", tc.text, err, tc.want)
		}
	}
}

func TestFakeGreetingRefused(t *testing.T) {
	s := newFake(t)
	s.set(func(k *fakeKnobs) { k.greeting = "-ERR [SYS/TEMP] Too many connections" })
	_, err := pop3.Check(ctxT(t), s.connection(), fakeOpts(s))
	if !errors.Is(err, mailsync.ErrConnection) {
		t.Fatalf("%v, want ErrConnection", err)
	}
}

func TestFakeConnectionRefused(t *testing.T) {
	s := newFake(t)
	conn := s.connection()
	s.Close()
	_, err := pop3.Check(ctxT(t), conn, fakeOpts(s))
	if !errors.Is(err, mailsync.ErrConnection) || !mailsync.Temporary(err) {
		t.Fatalf("%v, want ErrConnection", err)
	}
}

func TestFakeSTLS(t *testing.T) {
	t.Run("refused", func(t *testing.T) {
		s := newFake(t)
		s.set(func(k *fakeKnobs) { k.noSTLS = true })
		_, err := pop3.Check(ctxT(t), s.connection(), fakeOpts(s))
		if !errors.Is(err, mailsync.ErrTLS) {
			t.Fatalf("%v, want ErrTLS", err)
		}
		if seen := s.seen(); strings.Contains(strings.Join(seen, " "), "USER") || strings.Contains(strings.Join(seen, " "), "PASS") {
			t.Fatalf("credentials sent without TLS: %v", seen)
		}
	})
	t.Run("injection", func(t *testing.T) {
		s := newFake(t)
		s.set(func(k *fakeKnobs) { k.stlsInject = true })
		_, err := pop3.Check(ctxT(t), s.connection(), fakeOpts(s))
		if !errors.Is(err, mailsync.ErrTLS) {
			t.Fatalf("%v, want ErrTLS", err)
		}
	})
	t.Run("plaintext opt-in", func(t *testing.T) {
		s := newFake(t)
		s.add("u1", []byte("a\r\n"))
		opts := fakeOpts(s)
		opts.Security, opts.AllowPlaintextLogin = pop3.Plaintext, true
		res, err := pop3.Check(ctxT(t), s.connection(), opts)
		if err != nil || res.TLSVersion != "" || res.Messages != 1 || res.Security != pop3.Plaintext {
			t.Fatalf("Check: %+v, %v", res, err)
		}
		if seen := s.seen(); seen[0] == "STLS" {
			t.Fatalf("plaintext mode sent StartTLS: %v", seen)
		}
	})
}

func TestFakeXOAUTH2(t *testing.T) {
	for _, challenge := range []bool{false, true} {
		s := newFake(t)
		s.set(func(k *fakeKnobs) { k.challenge = challenge })
		opts := fakeOpts(s)
		opts.Password = ""
		opts.TokenSource = oauth2.StaticTokenSource(&oauth2.Token{AccessToken: "fake-token-7"})
		if res, err := pop3.Check(ctxT(t), s.connection(), opts); err != nil || res.Auth != "XOAUTH2" {
			t.Fatalf("good token: %+v, %v", res, err)
		}
		opts.TokenSource = oauth2.StaticTokenSource(&oauth2.Token{AccessToken: "wrong-token-3"})
		_, err := pop3.Check(ctxT(t), s.connection(), opts)
		if !errors.Is(err, mailsync.ErrAuth) || strings.Contains(err.Error(), "wrong-token-3") {
			t.Fatalf("challenge %v, bad token: %v, want ErrAuth without the token", challenge, err)
		}
	}
	// A token source failure is typed and keeps its sentinel.
	s := newFake(t)
	opts := fakeOpts(s)
	opts.Password = ""
	opts.TokenSource = failingTokens{fmt.Errorf("refresh: %w", mailsync.ErrConsentRequired)}
	if _, err := pop3.Check(ctxT(t), s.connection(), opts); !errors.Is(err, mailsync.ErrConsentRequired) {
		t.Fatalf("token source error: %v", err)
	}
	opts.TokenSource = failingTokens{errors.New("boom")}
	if _, err := pop3.Check(ctxT(t), s.connection(), opts); !errors.Is(err, mailsync.ErrAuth) {
		t.Fatalf("token source error: %v", err)
	}
}

type failingTokens struct{ err error }

func (f failingTokens) Token() (*oauth2.Token, error) { return nil, f.err }

// Cancelling ctx closes the connection at once, whatever go-pop3 is doing.
func TestFakeCancelStalledCommand(t *testing.T) {
	s := newFake(t)
	s.set(func(k *fakeKnobs) { k.stallOn = "UIDL" })
	c := mustNew(t, s.connection(), fakeOpts(s))
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := c.List(ctx, "")
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("List on a stalled server: %v, want context.DeadlineExceeded", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("took %s to give up", d)
	}
}

func TestFakeCommandTimeout(t *testing.T) {
	s := newFake(t)
	s.set(func(k *fakeKnobs) { k.stallOn = "LIST" })
	opts := fakeOpts(s)
	opts.CommandTimeout = 200 * time.Millisecond
	c := mustNew(t, s.connection(), opts)
	start := time.Now()
	_, err := c.List(context.Background(), "")
	if !errors.Is(err, mailsync.ErrConnection) {
		t.Fatalf("List on a silent server: %v, want ErrConnection", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("took %s", d)
	}
}

func TestFakeCancelDuringRETR(t *testing.T) {
	s := newFake(t)
	s.add("big", bytes.Repeat([]byte("0123456789abcdef\r\n"), 100_000))
	c := mustNew(t, s.connection(), fakeOpts(s))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	l, err := c.List(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	s.set(func(k *fakeKnobs) { k.stallOn, k.stallAfter = "RETR", 50_000 })
	start := time.Now()
	var read int64
	err = c.Fetch(ctx, l.Messages, func(_ mailsync.MessageRef, r io.Reader) error {
		buf := make([]byte, 1000)
		for {
			n, err := r.Read(buf)
			read += int64(n)
			if read >= 40_000 {
				cancel()
			}
			if err != nil {
				return err
			}
		}
	})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Fetch: %v, want context.Canceled", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("took %s", d)
	}
	if read < 40_000 || read > 50_000 {
		t.Errorf("read %d bytes before the stall", read)
	}
}

// Neither the password nor the token appears in logs or formatted values.
func TestFakeSecretsNeverPrinted(t *testing.T) {
	s := newFake(t)
	s.add("u1", []byte("a\r\n"))
	var logs bytes.Buffer
	opts := fakeOpts(s)
	opts.Logger = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	c := mustNew(t, s.connection(), opts)
	ctx := ctxT(t)
	l, err := c.List(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Fetch(ctx, l.Messages, func(mailsync.MessageRef, io.Reader) error { return nil }); err != nil {
		t.Fatal(err)
	}
	if err := c.Ack(ctx, l.Messages, mailsync.PostAction{Kind: mailsync.Delete}); err != nil {
		t.Fatal(err)
	}
	bad := opts
	bad.Password = "wrong-" + fakePass
	_, err = pop3.Check(ctx, s.connection(), bad)
	printed := fmt.Sprintf("%v %+v %#v %v %s", opts, opts, opts, err, logs.String())
	if strings.Contains(printed, fakePass) {
		t.Fatalf("password printed: %s", printed)
	}
	if !strings.Contains(logs.String(), "pop3 list") {
		t.Fatalf("expected debug logs, got %q", logs.String())
	}
}

func TestNewValidates(t *testing.T) {
	ok := mailsync.Connection{Name: "p", Enabled: true, User: "u", Server: "mail.example.com", Protocol: mailsync.POP3, ConnectedWith: []string{"t"}}
	for name, tc := range map[string]struct {
		conn  mailsync.Connection
		opts  pop3.Options
		field string
	}{
		"no credentials": {ok, pop3.Options{}, "password"},
		"both":           {ok, pop3.Options{Password: "x", TokenSource: oauth2.StaticTokenSource(&oauth2.Token{AccessToken: "t"})}, "credentials"},
		"imap":           {func() mailsync.Connection { c := ok; c.Protocol = mailsync.IMAP; return c }(), pop3.Options{Password: "x"}, "protocol"},
		"no server":      {func() mailsync.Connection { c := ok; c.Server = ""; return c }(), pop3.Options{Password: "x"}, "server"},
		"bad security":   {ok, pop3.Options{Password: "x", Security: 42}, "security"},
		"max messages":   {ok, pop3.Options{Password: "x", MaxMessages: -1}, "max_messages"},
	} {
		_, err := pop3.New(tc.conn, tc.opts)
		var ce *mailsync.ConfigError
		if !errors.As(err, &ce) || !ce.Field(tc.field) {
			t.Errorf("%s: %v, want a problem on %s", name, err, tc.field)
		}
	}
	c, err := pop3.New(ok, pop3.Options{Password: "x"})
	if err != nil || c.Connection().Name != "p" {
		t.Fatalf("valid: %v", err)
	}
}

// A sync whose QUIT is refused deletes nothing and claims nothing; the next
// sync fetches again, gets no duplicate ticket, and deletes.
func TestFakeSyncQuitRefusedNoDuplicates(t *testing.T) {
	s := newFake(t)
	for i := 0; i < 3; i++ {
		s.add(fmt.Sprintf("u%d", i), testMessage(fmt.Sprintf("q%d", i), 100))
	}
	s.set(func(k *fakeKnobs) { k.quitErr = "[SYS/TEMP] Expunge failed" })
	sink := mailsync.NewMemorySink()
	state := mailsync.NewMemoryState()
	run := func() *mailsync.Report {
		c := mustNew(t, s.connection(), fakeOpts(s))
		rep, err := mailsync.Sync(ctxT(t), c, mailsync.DefaultMapping("incident"), sink, mailsync.WithState(state),
			mailsync.WithRetry(2, time.Millisecond), mailsync.WithPostAction(mailsync.PostAction{Kind: mailsync.Delete}))
		if err != nil {
			t.Fatalf("Sync: %v", err)
		}
		return rep
	}
	rep := run()
	if rep.Failed != 3 || len(s.uids()) != 3 {
		t.Fatalf("with QUIT refused: failed %d, %d left on the server; want 3 and 3", rep.Failed, len(s.uids()))
	}
	s.set(func(k *fakeKnobs) { k.quitErr = "" })
	rep = run()
	if rep.Failed != 0 || len(s.uids()) != 0 || len(sink.Tickets()) != 3 {
		t.Fatalf("second run: failed %d, %d left, %d tickets; want 0, 0, 3", rep.Failed, len(s.uids()), len(sink.Tickets()))
	}
}

// invalidatingTokens hands out toks in turn, moving on at each Invalidate,
// like oauthx.TokenSource after a server refused a token.
type invalidatingTokens struct {
	mu          sync.Mutex
	toks        []string
	i           int
	invalidated int
}

func (s *invalidatingTokens) Token() (*oauth2.Token, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return &oauth2.Token{AccessToken: s.toks[s.i]}, nil
}

func (s *invalidatingTokens) Invalidate(*oauth2.Token) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.invalidated++
	if s.i < len(s.toks)-1 {
		s.i++
	}
}

func TestFakeXOAUTH2RefreshesRefusedToken(t *testing.T) {
	for _, tc := range []struct {
		toks []string
		ok   bool
	}{
		{[]string{"revoked-1", "fake-token-7"}, true},
		{[]string{"revoked-1", "revoked-2", "fake-token-7"}, false}, // one retry only
	} {
		s := newFake(t)
		ts := &invalidatingTokens{toks: tc.toks}
		opts := fakeOpts(s)
		opts.Password, opts.TokenSource = "", ts
		_, err := pop3.Check(ctxT(t), s.connection(), opts)
		if tc.ok != (err == nil) || (!tc.ok && !errors.Is(err, mailsync.ErrAuth)) {
			t.Errorf("tokens %v: %v", tc.toks, err)
		}
		if n := strings.Count(strings.Join(s.seen(), " "), "AUTH"); n != 2 || ts.invalidated < 1 {
			t.Errorf("tokens %v: %d AUTH commands, %d invalidations; want 2 and at least 1", tc.toks, n, ts.invalidated)
		}
	}
}

func TestSecurityText(t *testing.T) {
	for _, s := range []pop3.Security{pop3.SecurityAuto, pop3.ImplicitTLS, pop3.StartTLS, pop3.Plaintext} {
		b, err := s.MarshalText()
		if err != nil {
			t.Fatal(err)
		}
		var back pop3.Security
		if err := back.UnmarshalText(b); err != nil || back != s {
			t.Errorf("%v: round trip gave %v, %v", s, back, err)
		}
	}
	var s pop3.Security
	if err := s.UnmarshalText([]byte("STARTTLS")); err != nil || s != pop3.StartTLS {
		t.Errorf("STARTTLS: %v %v", s, err)
	}
	if err := s.UnmarshalText([]byte("quantum")); !errors.Is(err, mailsync.ErrInvalidConfig) {
		t.Errorf("unknown mode: %v", err)
	}
	if _, err := pop3.Security(9).MarshalText(); err == nil {
		t.Error("marshalled an unknown mode")
	}
}
