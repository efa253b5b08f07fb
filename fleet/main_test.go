package fleet

import (
	"os"
	"testing"

	"github.com/mailsync/mailsync/internal/dovecottest"
	"github.com/mailsync/mailsync/internal/pgtest"
)

// TestMain stops the private PostgreSQL and Dovecot the tests started.
func TestMain(m *testing.M) {
	code := m.Run()
	pgtest.StopAll()
	dovecottest.StopAll()
	os.Exit(code)
}
