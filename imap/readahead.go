package imap

import (
	"context"
	"io"
	"sync"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/mailsync/mailsync"
)

// Read-ahead: a producer goroutine reads the batch's literals from the
// network into memory, at most ReadAhead bytes ahead of the caller, while
// the caller's callback parses the previous message. Without it the server
// waits while we parse, and we wait while it sends; with it both proceed
// (the benchmark's sync is about a third faster on two cores). A message
// larger than the budget streams through: the producer waits for the
// callback to read.

const chunkSize = 32 << 10

var chunkPool = sync.Pool{New: func() any { b := make([]byte, chunkSize); return &b }}

// budget bounds the bytes buffered across the messages of a batch.
type budget struct {
	mu       sync.Mutex
	cond     *sync.Cond
	max, use int64
}

func newBudget(max int64) *budget {
	b := &budget{max: max}
	b.cond = sync.NewCond(&b.mu)
	return b
}

// acquire waits until n more bytes fit (a chunk always fits in an empty
// budget, so a message larger than it streams), or until abort says stop.
func (b *budget) acquire(n int64, abort func() bool) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	for b.use > 0 && b.use+n > b.max {
		if abort() {
			return false
		}
		b.cond.Wait()
	}
	b.use += n
	return true
}

func (b *budget) release(n int64) {
	if n == 0 {
		return
	}
	b.mu.Lock()
	b.use -= n
	b.mu.Unlock()
	b.cond.Broadcast()
}

// pending is one message's body between the producer and the callback: an
// in-memory pipe of densely filled chunks whose unread bytes count against
// the budget.
type pending struct {
	t      *target
	b      *budget
	mu     sync.Mutex
	cond   *sync.Cond
	chunks []*[]byte // the first is read from off; the last is filled to its len
	lens   []int
	off    int
	avail  int64 // unread bytes
	done   bool
	err    error // the literal's read error; io.EOF at its end
	drop   bool  // the callback is done with it: discard the rest
}

func newPending(t *target, b *budget) *pending {
	p := &pending{t: t, b: b}
	p.cond = sync.NewCond(&p.mu)
	return p
}

// fill copies the literal into p as it arrives. It returns the literal's
// read error (nil at its normal end). The literal is always read to its
// end or to an error: go-imap's decoder waits for that.
func (p *pending) fill(lit io.Reader, stopped func() bool) error {
	bp := chunkPool.Get().(*[]byte)
	defer chunkPool.Put(bp)
	for {
		n, err := lit.Read(*bp)
		if n > 0 && !p.dropped() && p.b.acquire(int64(n), func() bool { return p.dropped() || stopped() }) {
			p.push((*bp)[:n])
		}
		if err == io.EOF {
			p.finish(io.EOF)
			return nil
		}
		if err != nil {
			p.finish(err)
			return err
		}
	}
}

// push appends data, whose size the budget already counts.
func (p *pending) push(data []byte) {
	p.mu.Lock()
	if p.drop {
		p.mu.Unlock()
		p.b.release(int64(len(data)))
		return
	}
	p.avail += int64(len(data))
	for len(data) > 0 {
		last := len(p.chunks) - 1
		if last < 0 || p.lens[last] == chunkSize {
			p.chunks = append(p.chunks, chunkPool.Get().(*[]byte))
			p.lens = append(p.lens, 0)
			last++
		}
		m := copy((*p.chunks[last])[p.lens[last]:], data)
		p.lens[last] += m
		data = data[m:]
	}
	p.mu.Unlock()
	p.cond.Broadcast()
}

func (p *pending) dropped() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.drop
}

func (p *pending) finish(err error) {
	p.mu.Lock()
	p.done, p.err = true, err
	p.mu.Unlock()
	p.cond.Broadcast()
}

// Read implements io.Reader for the callback. (Lock order: the budget's
// lock is never taken while p.mu is held, since acquire calls dropped.)
func (p *pending) Read(b []byte) (int, error) {
	p.mu.Lock()
	for p.avail == 0 && !p.done {
		p.cond.Wait()
	}
	if p.avail == 0 {
		err := p.err
		p.mu.Unlock()
		return 0, err
	}
	for p.off == p.lens[0] { // fully read; unread bytes are further on
		p.recycleFirst()
	}
	n := copy(b, (*p.chunks[0])[p.off:p.lens[0]])
	p.off += n
	p.avail -= int64(n)
	// A chunk the producer may still extend (the last, not full) stays.
	if p.off == p.lens[0] && (len(p.chunks) > 1 || p.lens[0] == chunkSize || p.done) {
		p.recycleFirst()
	}
	p.mu.Unlock()
	p.b.release(int64(n))
	return n, nil
}

func (p *pending) recycleFirst() {
	chunkPool.Put(p.chunks[0])
	p.chunks, p.lens, p.off = p.chunks[1:], p.lens[1:], 0
}

// discard frees what is buffered and makes the producer drop the rest.
func (p *pending) discard() {
	p.mu.Lock()
	p.drop = true
	for _, c := range p.chunks {
		chunkPool.Put(c)
	}
	n := p.avail
	p.chunks, p.lens, p.off, p.avail = nil, nil, 0, 0
	p.mu.Unlock()
	p.b.release(n)
}

// fetchBatchAhead is fetchBatch with read-ahead. The producer owns the
// go-imap command (reading it, then closing or abandoning it); the caller's
// goroutine runs fn on the messages in order.
func (s *session) fetchBatchAhead(ctx context.Context, cmd *imapclient.FetchCommand, claim func(imap.UID) (*target, bool), fn func(mailsync.MessageRef, io.Reader) error) error {
	b := newBudget(s.cfg.opts.ReadAhead)
	queue := make(chan *pending, 256)
	var stopOnce sync.Once
	stopCh := make(chan struct{})
	stop := func() {
		stopOnce.Do(func() { close(stopCh) })
		b.cond.Broadcast() // a producer waiting for budget rechecks
	}
	stopped := func() bool {
		select {
		case <-stopCh:
			return true
		default:
			return false
		}
	}
	var closeErr error // set by the producer before it closes queue
	go func() {
		defer close(queue)
		defer b.cond.Broadcast()
		for !stopped() {
			msg := cmd.Next()
			if msg == nil {
				break
			}
			var t *target
			for item := msg.Next(); item != nil; item = msg.Next() {
				switch item := item.(type) {
				case imapclient.FetchItemDataUID:
					if t == nil {
						t, _ = claim(item.UID)
					}
				case imapclient.FetchItemDataBodySection:
					if t == nil {
						continue // not ours: msg.Next discards it
					}
					p := newPending(t, b)
					t = nil // a second body section of the same response is not ours
					queue <- p
					if item.Literal == nil {
						s.cfg.log.Warn("imap: server returned NIL for a message body", "key", p.t.ref.Key)
						p.finish(io.EOF)
						continue
					}
					if err := p.fill(&literalReader{r: item.Literal, left: item.Literal.Size()}, stopped); err != nil {
						// The connection broke under the literal: go-imap's
						// decoder has moved on; never touch cmd again.
						s.literalFailed.Store(true)
						return
					}
				}
			}
		}
		closeErr = cmd.Close()
	}()

	var failed error
	for p := range queue {
		if failed == nil {
			failed = s.call(ctx, p.t.ref, p, fn)
			if failed != nil {
				stop()
			}
		}
		p.discard()
	}
	if failed == nil && closeErr != nil {
		failed = s.check(ctx, "fetch", closeErr)
	}
	return failed
}
