package imap_test

import (
	"net"
	"sync"
	"testing"
)

// serveLoopback listens on a free loopback port and runs serve for every
// connection until the test ends; then it closes the listener and every
// open connection, calls stop (if any), and waits for the handlers. It
// returns the address. The fake servers of these tests share it.
func serveLoopback(t testing.TB, serve func(net.Conn), stop func()) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var open []net.Conn
	t.Cleanup(func() {
		if stop != nil {
			stop()
		}
		ln.Close()
		mu.Lock()
		for _, c := range open {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			open = append(open, c)
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				serve(c)
			}()
		}
	}()
	return ln.Addr().String()
}
