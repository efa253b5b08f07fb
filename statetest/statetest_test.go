package statetest_test

import (
	"path/filepath"
	"testing"

	"github.com/mailsync/mailsync"
	"github.com/mailsync/mailsync/boltstate"
	"github.com/mailsync/mailsync/statetest"
)

func TestMemoryState(t *testing.T) {
	mk := func(t *testing.T) mailsync.State { return mailsync.NewMemoryState() }
	statetest.Run(t, mk)
	statetest.RunLeases(t, mk)
}

func TestBoltState(t *testing.T) {
	statetest.Run(t, func(t *testing.T) mailsync.State {
		s, err := boltstate.Open(filepath.Join(t.TempDir(), "state.db"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	})
}
