package gmail_test

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/mailsync/mailsync"
	"github.com/mailsync/mailsync/connectortest"
	"github.com/mailsync/mailsync/gmail"
	"github.com/mailsync/mailsync/internal/fakegmail"
)

// latencyTransport adds a fixed delay to every HTTP request, a stand-in
// for the round trip to gmail.googleapis.com.
type latencyTransport struct {
	base  http.RoundTripper
	delay time.Duration
}

func (l latencyTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	time.Sleep(l.delay)
	return l.base.RoundTrip(r)
}

// realisticMailbox delivers n messages of mixed sizes (mostly a few KiB,
// every 50th with a 100 KiB attachment) and returns the total raw size.
func realisticMailbox(f *fakegmail.Server, n int) int64 {
	var total int64
	for i := 0; i < n; i++ {
		var raw []byte
		if i%50 == 49 {
			raw, _ = connectortest.NewLargeMessage(fmt.Sprintf("big-%d", i), 100<<10)
		} else {
			raw = connectortest.NewMessage(fmt.Sprintf("m-%d", i), fmt.Sprintf("Pedido %d: impressora sem toner", i))
			raw = append(raw, bytes.Repeat([]byte("Linha de texto do pedido, com detalhes.\r\n"), i%40)...)
		}
		total += int64(len(raw))
		f.Deliver(raw)
	}
	return total
}

// The acceptance figure: a 2,000-message first sync through the engine,
// with a post-action, costs at most 1.1 HTTP requests per message (in
// fact about 0.04), and a second sync is one request.
func TestFirstSync2000RequestsPerMessage(t *testing.T) {
	const n = 2000
	e := newEnv(t, fakegmail.Options{})
	bytesTotal := realisticMailbox(e.fake, n)
	const rtt = 5 * time.Millisecond
	e.opts.HTTPClient = &http.Client{Transport: latencyTransport{base: e.fake.Client().Transport, delay: rtt}}
	state := mailsync.NewMemoryState()
	sink := mailsync.NewMemorySink()
	sink.KeepBytes = 64
	e.fake.ResetStats()
	c := e.connector()
	start := time.Now()
	rep, err := mailsync.Sync(context.Background(), c, mailsync.DefaultMapping("incident"), sink,
		mailsync.WithState(state), mailsync.WithPostAction(mailsync.PostAction{Kind: mailsync.MarkRead}))
	wall := time.Since(start)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Created != n || rep.Failed != 0 {
		t.Fatalf("created %d failed %d", rep.Created, rep.Failed)
	}
	st := e.fake.Stats()
	perMsg := float64(st.Requests) / n
	t.Logf("first sync of %d messages (%.1f MiB) with mark-read, %s simulated RTT: %s wall, %d HTTP requests (%.3f per message): %v",
		n, float64(bytesTotal)/(1<<20), rtt, wall.Round(time.Millisecond), st.Requests, perMsg, st.ByOp)
	if perMsg > 1.1 {
		t.Fatalf("%.3f requests per message, target ≤ 1.1", perMsg)
	}
	// profile + 4 pages of 500 + 40 batches of 50 + 40 batchModify.
	if st.Requests != 1+4+40+40 || int64(st.Requests) != c.Requests() {
		t.Errorf("requests: fake %d, connector %d, want 85", st.Requests, c.Requests())
	}
	for _, m := range e.fake.Messages() {
		for _, l := range m.LabelIDs {
			if l == "UNREAD" {
				t.Fatalf("message %s still unread", m.ID)
			}
		}
	}

	e.fake.ResetStats()
	rep, err = mailsync.Sync(context.Background(), e.connector(), mailsync.DefaultMapping("incident"), sink, mailsync.WithState(state))
	if err != nil || rep.Seen != 0 || e.fake.Stats().Requests != 1 {
		t.Fatalf("second sync: %v, seen %d, %d requests", err, rep.Seen, e.fake.Stats().Requests)
	}
}

// BenchmarkFirstSync2000 compares batch sizes for a 2,000-message first
// sync with a simulated round trip of 20 ms:
//
//	go test -run XXX -bench FirstSync2000 -benchtime 1x ./gmail/
func BenchmarkFirstSync2000(b *testing.B) {
	for _, batch := range []int{1, 10, 50, 100} {
		b.Run(fmt.Sprintf("batch=%d", batch), func(b *testing.B) {
			f := fakegmail.New(fakegmail.Options{})
			defer f.Close()
			size := realisticMailbox(f, 2000)
			for i := 0; i < b.N; i++ {
				c, err := gmail.New(testConn(f.Email()), gmail.Options{
					TokenSource: staticToken(f.Token()),
					Endpoint:    f.URL,
					HTTPClient:  &http.Client{Transport: latencyTransport{base: f.Client().Transport, delay: 20 * time.Millisecond}},
					BatchSize:   batch,
				})
				if err != nil {
					b.Fatal(err)
				}
				f.ResetStats()
				sink := mailsync.NewMemorySink()
				sink.KeepBytes = 64
				rep, err := mailsync.Sync(context.Background(), c, mailsync.DefaultMapping("incident"), sink)
				if err != nil || rep.Created != 2000 {
					b.Fatalf("%v %d", err, rep.Created)
				}
				b.ReportMetric(float64(f.Stats().Requests)/2000, "req/msg")
			}
			b.SetBytes(size)
		})
	}
}
