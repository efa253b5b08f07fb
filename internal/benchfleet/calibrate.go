package main

import (
	"crypto/ecdh"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"time"
)

// calibrate prints how fast this machine runs a fixed piece of the work a
// no-change sync does (an X25519 key generation and agreement, as in every
// TLS 1.3 resumption, and hashing 4 KiB), one thread, best of five: CPU
// figures of runs at different times can be compared through it (the
// shared machines these benchmarks run on change speed by a fifth within
// an hour).
func calibrate() error {
	peer, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		return err
	}
	buf := make([]byte, 4096)
	const n = 400
	best := time.Duration(1 << 62)
	for range 5 {
		start := time.Now()
		for range n {
			k, err := ecdh.X25519().GenerateKey(rand.Reader)
			if err != nil {
				return err
			}
			if _, err := k.ECDH(peer.PublicKey()); err != nil {
				return err
			}
			sha256.Sum256(buf)
		}
		best = min(best, time.Since(start)/n)
	}
	fmt.Printf("machine speed: %.1f µs per X25519 exchange and 4 KiB hashed (lower is faster)\n", float64(best.Nanoseconds())/1000)
	return nil
}
