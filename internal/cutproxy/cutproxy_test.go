package cutproxy_test

import (
	"bytes"
	"io"
	"net"
	"testing"
	"time"

	"github.com/mailsync/mailsync/internal/cutproxy"
)

// startServer serves payload to every connection, after reading one line.
func startServer(t *testing.T, payload []byte) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				buf := make([]byte, 1)
				for buf[0] != '\n' {
					if _, err := c.Read(buf); err != nil {
						return
					}
				}
				c.Write(payload)
			}()
		}
	}()
	return ln.Addr().String()
}

func fetch(t *testing.T, addr string) ([]byte, error) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write([]byte("go\n")); err != nil {
		return nil, err
	}
	var got bytes.Buffer
	_, err = io.Copy(&got, c)
	return got.Bytes(), err
}

func TestCutAfterResetsOnlyTheArmedConnection(t *testing.T) {
	payload := bytes.Repeat([]byte("0123456789"), 100_000) // 1 MB
	p := cutproxy.Start(t, startServer(t, payload))

	p.CutAfter(300_000)
	got, err := fetch(t, p.Addr)
	if err == nil {
		t.Fatalf("cut connection ended cleanly after %d bytes; want a reset", len(got))
	}
	if len(got) > 300_000 || !bytes.Equal(got, payload[:len(got)]) {
		t.Fatalf("cut connection delivered %d bytes (limit 300000) or wrong bytes", len(got))
	}

	got, err = fetch(t, p.Addr)
	if err != nil || !bytes.Equal(got, payload) {
		t.Fatalf("second connection: %d bytes, err %v; want the whole %d-byte payload", len(got), err, len(payload))
	}
	if p.Conns() != 2 || p.Cuts() != 1 {
		t.Fatalf("Conns() = %d, Cuts() = %d; want 2, 1", p.Conns(), p.Cuts())
	}
}

func TestCutAfterZeroResetsAtAccept(t *testing.T) {
	p := cutproxy.Start(t, startServer(t, []byte("hello")))
	p.CutAfter(0)
	if got, err := fetch(t, p.Addr); err == nil && len(got) > 0 {
		t.Fatalf("got %q, want nothing", got)
	}
	if got, err := fetch(t, p.Addr); err != nil || string(got) != "hello" {
		t.Fatalf("got %q, %v; want hello", got, err)
	}
}

func TestCutAllAndDisarm(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() { // a server that never answers
		c, err := ln.Accept()
		if err == nil {
			accepted <- c
		}
	}()
	p := cutproxy.Start(t, ln.Addr().String())
	p.CutAfter(5)
	p.Disarm()
	c, err := net.Dial("tcp", p.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	select {
	case sc := <-accepted: // the relay reached the server
		defer sc.Close()
	case <-time.After(5 * time.Second):
		t.Fatal("the proxy did not connect to the server")
	}
	for range 100 { // the relay registers the pair right after its dial
		if p.CutAll(); p.Cuts() > 0 {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err = c.Read(make([]byte, 1))
	if ne, ok := err.(net.Error); err == nil || (ok && ne.Timeout()) {
		t.Fatalf("read after CutAll: %v; want a reset or EOF", err)
	}
	if p.Cuts() != 1 {
		t.Fatalf("Cuts() = %d, want 1", p.Cuts())
	}
}

func ExampleProxy_CutAfter() {
	var t testing.T // in a real test: the *testing.T
	p := cutproxy.Start(&t, "127.0.0.1:143")
	p.CutAfter(64 << 10) // the next connection is reset after 64 KiB from the server
	_ = p.Addr           // dial this instead of the server
}
