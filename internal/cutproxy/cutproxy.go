// Package cutproxy is a loopback TCP proxy for tests that breaks
// connections on purpose: armed with CutAfter(n), it resets the next
// connection it accepts once n bytes have flowed from the server to the
// client, which simulates a network failure in the middle of a download.
//
//	p := cutproxy.Start(t, server.Addr)
//	p.CutAfter(10_000)          // the next connection dies after 10 kB from the server
//	client := dial(p.Addr)      // ... the client sees a reset mid-transfer
//
// Connections accepted while no cut is armed are relayed untouched.
package cutproxy

import (
	"errors"
	"io"
	"net"
	"sync"
	"testing"
)

// Proxy relays TCP connections from Addr to a target address.
type Proxy struct {
	// Addr is the proxy's listening address ("127.0.0.1:port"); dial it
	// instead of the target.
	Addr string

	target string
	ln     net.Listener

	mu     sync.Mutex
	armed  []int64 // pending cuts, one per future connection, in order
	conns  int
	cuts   int
	open   map[*pair]struct{}
	closed bool
	wg     sync.WaitGroup
}

type pair struct {
	client, server net.Conn
}

// Start listens on a random loopback port and relays every connection to
// target. The proxy is closed when the test ends.
func Start(t testing.TB, target string) *Proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("cutproxy: listen: %v", err)
	}
	p := &Proxy{Addr: ln.Addr().String(), target: target, ln: ln, open: map[*pair]struct{}{}}
	p.wg.Add(1)
	go p.serve()
	t.Cleanup(p.Close)
	return p
}

// CutAfter arms a cut for the next connection the proxy accepts: once n
// bytes have been relayed from the server to the client on it, both sides
// are reset. Each call arms one more connection, in order; n <= 0 arms a
// connection that is reset as soon as it is accepted.
func (p *Proxy) CutAfter(n int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.armed = append(p.armed, n)
}

// Disarm cancels the cuts armed for connections not yet accepted.
func (p *Proxy) Disarm() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.armed = nil
}

// CutAll resets every connection currently open, like a server restart.
func (p *Proxy) CutAll() {
	p.mu.Lock()
	open := make([]*pair, 0, len(p.open))
	for c := range p.open {
		open = append(open, c)
	}
	p.cuts += len(open)
	p.mu.Unlock()
	for _, c := range open {
		reset(c)
	}
}

// Conns returns the number of connections accepted so far.
func (p *Proxy) Conns() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.conns
}

// Cuts returns the number of connections the proxy has cut so far.
func (p *Proxy) Cuts() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cuts
}

// Close stops listening and resets the connections still open.
func (p *Proxy) Close() {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	p.closed = true
	open := make([]*pair, 0, len(p.open))
	for c := range p.open {
		open = append(open, c)
	}
	p.mu.Unlock()
	p.ln.Close()
	for _, c := range open {
		reset(c)
	}
	p.wg.Wait()
}

func (p *Proxy) serve() {
	defer p.wg.Done()
	for {
		client, err := p.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			client.Close()
			return
		}
		p.conns++
		cut := int64(-1)
		if len(p.armed) > 0 {
			cut = p.armed[0]
			p.armed = p.armed[1:]
		}
		p.mu.Unlock()

		p.wg.Add(1)
		go p.relay(client, cut)
	}
}

// relay copies both directions; cut >= 0 resets the pair after cut bytes
// from the server.
func (p *Proxy) relay(client net.Conn, cut int64) {
	defer p.wg.Done()
	server, err := net.Dial("tcp", p.target)
	if err != nil {
		resetConn(client)
		return
	}
	c := &pair{client: client, server: server}
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		reset(c)
		return
	}
	p.open[c] = struct{}{}
	p.mu.Unlock()
	defer func() {
		p.mu.Lock()
		delete(p.open, c)
		p.mu.Unlock()
	}()

	if cut == 0 {
		p.countCut()
		reset(c)
		return
	}

	done := make(chan struct{}, 2)
	go func() { // client → server
		io.Copy(server, client)
		if tc, ok := server.(*net.TCPConn); ok {
			tc.CloseWrite()
		}
		done <- struct{}{}
	}()
	go func() { // server → client, counted
		if cut < 0 {
			io.Copy(client, server)
			if tc, ok := client.(*net.TCPConn); ok {
				tc.CloseWrite()
			}
		} else {
			n, _ := io.CopyN(client, server, cut)
			if n == cut {
				p.countCut()
				reset(c)
			} else if tc, ok := client.(*net.TCPConn); ok {
				tc.CloseWrite()
			}
		}
		done <- struct{}{}
	}()
	<-done
	<-done
	client.Close()
	server.Close()
}

func (p *Proxy) countCut() {
	p.mu.Lock()
	p.cuts++
	p.mu.Unlock()
}

func reset(c *pair) {
	resetConn(c.client)
	resetConn(c.server)
}

// resetConn closes conn with SO_LINGER 0 so the peer sees a TCP reset.
func resetConn(conn net.Conn) {
	if tc, ok := conn.(*net.TCPConn); ok {
		tc.SetLinger(0)
	}
	conn.Close()
}
