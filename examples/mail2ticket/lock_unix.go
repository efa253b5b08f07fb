//go:build unix

package main

import (
	"errors"
	"fmt"
	"os"
	"syscall"
)

// lockTickets takes an exclusive advisory lock on "<tickets>.lock" for as
// long as this process writes the tickets file: a jsonlsink Sink keeps the
// file's keys and threads in memory and cuts a failed write off at the
// size it knows, so two processes must not write one file. The lock goes
// with the process, even when it dies.
func lockTickets(tickets string) (unlock func(), err error) {
	f, err := os.OpenFile(tickets+".lock", os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("%s is in use by another mail2ticket (a -serve?): stop it first, or use another tickets_file", tickets)
		}
		return nil, fmt.Errorf("locking %s: %w", tickets, err)
	}
	return func() { f.Close() }, nil
}
