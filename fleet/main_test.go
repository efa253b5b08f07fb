package fleet

import (
	"os"
	"testing"

	"github.com/mailsync/mailsync/internal/dovecottest"
	"github.com/mailsync/mailsync/internal/pgtest"
)

// TestMain runs an acceptance worker process (see TestFleetAcceptance)
// when asked to, and stops the private PostgreSQL and Dovecot the tests started.
func TestMain(m *testing.M) {
	if os.Getenv(acceptanceWorkerEnv) != "" {
		os.Exit(acceptanceWorkerMain())
	}
	code := m.Run()
	pgtest.StopAll()
	dovecottest.StopAll()
	os.Exit(code)
}
