package mailsync

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"
)

// ErrBusy means another holder (a process, a machine) is syncing the
// connection now: its lease has not expired. Not retried by Sync; the next
// scheduled run tries again.
var ErrBusy = errors.New("mailsync: connection is being synced by another holder")

// ErrLeaseLost means the lease expired and someone else may hold it: the
// holder must stop, and a State refuses its writes (fencing).
var ErrLeaseLost = errors.New("mailsync: lease lost")

// Lease is one holder's right to sync one connection until Expires.
type Lease struct {
	Connection string    `json:"connection"`
	Holder     string    `json:"holder"`
	Expires    time.Time `json:"expires"`
	// Token is the fencing token: it grows with every acquisition of the
	// connection's lease, so a write carrying an older token is refused.
	Token int64 `json:"token"`
}

// Leaser is an optional interface of a State that lets only one holder
// sync a connection at a time, across processes and machines. Sync uses
// it when the State has it: it acquires the lease (failing with ErrBusy),
// renews it every third of the TTL while it runs, passes it as Record.Fence
// on every write, and releases it at the end.
type Leaser interface {
	// AcquireLease takes connection's lease for ttl. It fails with ErrBusy
	// while another holder's lease has not expired. Taking an expired (or
	// released) lease gives a larger Token than every earlier one.
	AcquireLease(ctx context.Context, connection, holder string, ttl time.Duration) (Lease, error)
	// RenewLease extends l by ttl from now; ErrLeaseLost when l is no
	// longer the connection's current lease (it expired and was taken).
	RenewLease(ctx context.Context, l Lease, ttl time.Duration) (Lease, error)
	// ReleaseLease gives l up (a no-op when it was already lost).
	ReleaseLease(ctx context.Context, l Lease) error
}

// CursorLeaser is an optional interface of a Leaser whose lease can come
// with the connection's cursor in one round trip to its store. Sync uses it
// when the State has it, instead of AcquireLease and then State.Cursor.
type CursorLeaser interface {
	Leaser
	// AcquireLeaseCursor is AcquireLease that also returns the
	// connection's stored cursor ("" when there is none), as Cursor would
	// right after the lease was taken.
	AcquireLeaseCursor(ctx context.Context, connection, holder string, ttl time.Duration) (Lease, Cursor, error)
}

// DefaultLeaseTTL is how long Sync's lease lasts between renewals.
const DefaultLeaseTTL = 2 * time.Minute

// WithLease sets the lease holder's name (default: host name, process id
// and a random suffix) and TTL (default DefaultLeaseTTL) used when the
// State is a Leaser.
func WithLease(holder string, ttl time.Duration) Option {
	return func(o *options) { o.leaseHolder, o.leaseTTL = holder, ttl }
}

// defaultHolder is the holder name of a Sync without WithLease: the
// process's name and a random suffix, so that two Syncs of one process are
// two holders.
func defaultHolder() string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return processName() + "/" + hex.EncodeToString(b[:])
}

// processName is "host/pid", computed once: os.Hostname is a system call.
var processName = sync.OnceValue(func() string {
	host, _ := os.Hostname()
	return fmt.Sprintf("%s/%d", host, os.Getpid())
})

// leaseKeeper holds a lease while a sync runs: it renews it in the
// background and cancels the sync when it is lost.
type leaseKeeper struct {
	leaser Leaser
	ttl    time.Duration
	cancel context.CancelFunc // the sync's, called when the lease is lost
	ctx    context.Context    // of the renewals

	mu       sync.Mutex
	lease    Lease
	lost     error
	timer    *time.Timer    // the next renewal
	stopped  bool           // release began: no renewal starts
	renewing sync.WaitGroup // the renewal in progress

	// cursor is the connection's cursor read with the lease (CursorLeaser),
	// when hasCursor.
	cursor    Cursor
	hasCursor bool
}

// holdLease acquires connection's lease and starts renewing it; cancel is
// called when the lease is lost. It returns nil, nil when s is no Leaser.
func holdLease(ctx context.Context, s State, connection, holder string, ttl time.Duration, cancel context.CancelFunc) (*leaseKeeper, error) {
	l, ok := s.(Leaser)
	if !ok {
		return nil, nil
	}
	if ttl <= 0 {
		ttl = DefaultLeaseTTL
	}
	if holder == "" {
		holder = defaultHolder()
	}
	k := &leaseKeeper{leaser: l, ttl: ttl, cancel: cancel, ctx: context.WithoutCancel(ctx)}
	var err error
	if cl, ok := s.(CursorLeaser); ok {
		k.lease, k.cursor, err = cl.AcquireLeaseCursor(ctx, connection, holder, ttl)
		k.hasCursor = true
	} else {
		k.lease, err = l.AcquireLease(ctx, connection, holder, ttl)
	}
	if err != nil {
		return nil, err
	}
	// A timer rather than a goroutine: most syncs end before the first
	// renewal is due.
	k.mu.Lock()
	k.timer = time.AfterFunc(ttl/3, k.renew)
	k.mu.Unlock()
	return k, nil
}

// renew renews the lease and arms the next renewal, or cancels the sync
// when the lease is lost.
func (k *leaseKeeper) renew() {
	k.mu.Lock()
	if k.stopped {
		k.mu.Unlock()
		return
	}
	k.renewing.Add(1)
	defer k.renewing.Done()
	cur := k.lease
	k.mu.Unlock()
	next, err := k.leaser.RenewLease(k.ctx, cur, k.ttl)
	k.mu.Lock()
	if err == nil {
		k.lease = next
	} else if errors.Is(err, ErrLeaseLost) || time.Now().After(cur.Expires) {
		k.lost = fmt.Errorf("%w: %s: %w", ErrLeaseLost, cur.Connection, err)
	}
	lost := k.lost
	if lost == nil && !k.stopped {
		k.timer.Reset(k.ttl / 3)
	}
	k.mu.Unlock()
	if lost != nil {
		k.cancel()
	}
}

// fence returns the lease to put on a Record.
func (k *leaseKeeper) fence() *Lease {
	if k == nil {
		return nil
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	l := k.lease
	return &l
}

// err is ErrLeaseLost once the lease was lost.
func (k *leaseKeeper) err() error {
	if k == nil {
		return nil
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.lost
}

// release stops renewing and gives the lease up.
func (k *leaseKeeper) release(ctx context.Context) {
	if k == nil {
		return
	}
	k.mu.Lock()
	k.stopped = true
	k.mu.Unlock()
	k.timer.Stop()
	k.renewing.Wait() // a renewal in progress ends before the release
	_ = k.leaser.ReleaseLease(context.WithoutCancel(ctx), *k.fence())
}
