package graph

import (
	"context"
	"net/http"
	"strings"
	"sync"
	"time"
)

// Exchange Online allows an app 10,000 Graph requests per 10 minutes per
// mailbox; beyond that every request is answered 429 until the window
// has room again. A first sync of tens of thousands of messages (one
// $value request and one PATCH or move per message) would run into that
// wall and spend its time in 429 storms and Retry-After sleeps. The
// provider therefore paces its requests with a token bucket per mailbox
// (shared by every Connector of the process for the same service root
// and user): a burst of a tenth of the budget, then a steady rate of 90 %
// of budget/window, so no window of that length ever holds more than the
// budget and a large sync proceeds steadily.
const (
	// DefaultRequestBudget is Graph's per-app, per-mailbox request limit
	// for Outlook resources within DefaultBudgetWindow.
	DefaultRequestBudget = 10000
	// DefaultBudgetWindow is the window of DefaultRequestBudget.
	DefaultBudgetWindow = 10 * time.Minute
)

// pacer is a token bucket: burst tokens, refilled at rate per second.
type pacer struct {
	mu     sync.Mutex
	tokens float64
	burst  float64
	rate   float64 // tokens per second
	last   time.Time
	now    func() time.Time
}

func newPacer(budget int, window time.Duration) *pacer {
	burst := max(float64(budget)/10, 1)
	return &pacer{tokens: burst, burst: burst, rate: 0.9 * float64(budget) / window.Seconds(), now: time.Now}
}

// wait takes one token, sleeping until there is one or ctx is done.
func (p *pacer) wait(ctx context.Context) error {
	for {
		p.mu.Lock()
		now := p.now()
		if !p.last.IsZero() {
			p.tokens = min(p.burst, p.tokens+now.Sub(p.last).Seconds()*p.rate)
		}
		p.last = now
		if p.tokens >= 1 {
			p.tokens--
			p.mu.Unlock()
			return nil
		}
		d := time.Duration((1 - p.tokens) / p.rate * float64(time.Second))
		p.mu.Unlock()
		t := time.NewTimer(max(d, time.Millisecond))
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
}

// pacers holds one pacer per mailbox (service host, user, budget).
var pacers sync.Map

type pacerKey struct {
	host, user string
	budget     int
	window     time.Duration
}

func mailboxPacer(host, user string, budget int, window time.Duration) *pacer {
	k := pacerKey{strings.ToLower(host), strings.ToLower(user), budget, window}
	if p, ok := pacers.Load(k); ok {
		return p.(*pacer)
	}
	p, _ := pacers.LoadOrStore(k, newPacer(budget, window))
	return p.(*pacer)
}

// pacedTransport waits for the mailbox's pacer before each attempt (it
// sits below kiota's retry handler, so retries are paced too).
type pacedTransport struct {
	base  http.RoundTripper
	pacer *pacer
}

// RoundTrip implements http.RoundTripper.
func (t *pacedTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if err := t.pacer.wait(r.Context()); err != nil {
		return nil, err
	}
	return t.base.RoundTrip(r)
}

// CloseIdleConnections closes the base transport's idle connections.
func (t *pacedTransport) CloseIdleConnections() {
	if c, ok := t.base.(interface{ CloseIdleConnections() }); ok {
		c.CloseIdleConnections()
	}
}
