package imap

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"sync"
	"testing"
	"testing/iotest"
)

// trickle returns random-sized pieces of data, like a network connection.
type trickle struct {
	data []byte
	rng  *rand.Rand
}

func (t *trickle) Read(p []byte) (int, error) {
	if len(t.data) == 0 {
		return 0, io.EOF
	}
	n := min(len(p), len(t.data), 1+t.rng.IntN(20000))
	copy(p, t.data[:n])
	t.data = t.data[n:]
	return n, nil
}

func TestPendingPipeKeepsBytesAndBudget(t *testing.T) {
	const max = 100 << 10
	b := newBudget(max)
	var peak int64
	var mu sync.Mutex
	watch := func() {
		mu.Lock()
		b.mu.Lock()
		peak = maxOf(peak, b.use)
		b.mu.Unlock()
		mu.Unlock()
	}
	rng := rand.New(rand.NewPCG(1, 2))
	var msgs [][]byte
	for _, size := range []int{0, 1, 5000, chunkSize, chunkSize + 1, 300 << 10, 1 << 20} {
		m := make([]byte, size)
		for i := range m {
			m[i] = byte(rng.Uint32())
		}
		msgs = append(msgs, m)
	}
	ps := make(chan *pending, len(msgs))
	go func() {
		defer close(ps)
		for _, m := range msgs {
			p := newPending(&target{}, b)
			ps <- p
			if err := p.fill(&trickle{data: m, rng: rand.New(rand.NewPCG(3, 4))}, func() bool { return false }); err != nil {
				t.Error(err)
			}
		}
	}()
	i := 0
	for p := range ps {
		var got bytes.Buffer
		buf := make([]byte, 1+rng.IntN(9000))
		for {
			watch()
			n, err := p.Read(buf)
			got.Write(buf[:n])
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
		}
		if !bytes.Equal(got.Bytes(), msgs[i]) {
			t.Fatalf("message %d: got %d bytes, want %d identical", i, got.Len(), len(msgs[i]))
		}
		p.discard()
		i++
	}
	if b.use != 0 {
		t.Errorf("budget still holds %d bytes", b.use)
	}
	if peak > max+chunkSize {
		t.Errorf("peak buffered %d bytes, budget %d", peak, max)
	}
}

func maxOf(a, b int64) int64 {
	if a > b {
		return a
	}
	return b
}

func TestPendingErrorAndDiscard(t *testing.T) {
	b := newBudget(64 << 10)
	p := newPending(&target{}, b)
	boom := errors.New("connection reset")
	err := p.fill(io.MultiReader(bytes.NewReader(make([]byte, 1000)), iotest.ErrReader(boom)), func() bool { return false })
	if !errors.Is(err, boom) {
		t.Fatalf("fill = %v", err)
	}
	data, err := io.ReadAll(p)
	if len(data) != 1000 || !errors.Is(err, boom) {
		t.Fatalf("read %d bytes, %v; want 1000 then the error", len(data), err)
	}

	// A discarded message no longer holds budget, and the producer drops
	// the rest instead of waiting for budget.
	p2 := newPending(&target{}, b)
	done := make(chan error)
	go func() { done <- p2.fill(bytes.NewReader(make([]byte, 1<<20)), func() bool { return false }) }()
	buf := make([]byte, 10)
	if _, err := p2.Read(buf); err != nil {
		t.Fatal(err)
	}
	p2.discard()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if b.use != 0 {
		t.Fatalf("budget holds %d bytes after discard", b.use)
	}
}
