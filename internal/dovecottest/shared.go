package dovecottest

import (
	"sync"
	"testing"
)

// AddToken registers an OAuth bearer token valid for user: the introspection
// endpoint answers {"active":true,"username":user} for it. It panics if the
// server was started without Options.OAuth.
func (s *Server) AddToken(user, token string) {
	if s.oauth == nil {
		panic("dovecottest: AddToken on a server started without Options.OAuth")
	}
	s.oauth.add(user, token)
}

// RevokeToken makes a registered token inactive (as an expired or revoked
// access token): later logins with it fail.
func (s *Server) RevokeToken(token string) {
	if s.oauth == nil {
		panic("dovecottest: RevokeToken on a server started without Options.OAuth")
	}
	s.oauth.revoke(token)
}

// IntrospectionCalls reports how many introspection requests Dovecot made,
// e.g. to check that password logins never reach the token endpoint.
func (s *Server) IntrospectionCalls() int {
	if s.oauth == nil {
		return 0
	}
	return s.oauth.count()
}

// shared holds the per-process servers of Shared, one per Options.
var shared struct {
	mu      sync.Mutex
	servers map[Options]*sharedEntry
}

type sharedEntry struct {
	once sync.Once
	srv  *Server
	err  error
}

// Shared returns this process's server for opts, starting it on first use;
// later calls with equal Options return the same server, so Dovecot's
// start-up is paid once per test binary. Tests sharing a server must use
// their own users (AddUser makes names unique). The server is not stopped at
// the test's cleanup: call StopAll from TestMain after m.Run. Skipping and
// failing when Dovecot is missing work as in Start; if this test fails, the
// part of Dovecot's log written during it is printed.
func Shared(t testing.TB, opts Options) *Server {
	t.Helper()
	dovecot, doveadm, err := findBinaries()
	if err != nil {
		skipOrFail(t, err)
	}
	var e *sharedEntry
	for {
		shared.mu.Lock()
		if shared.servers == nil {
			shared.servers = make(map[Options]*sharedEntry)
		}
		e = shared.servers[opts]
		if e == nil {
			e = &sharedEntry{}
			shared.servers[opts] = e
		}
		shared.mu.Unlock()
		e.once.Do(func() {
			e.srv, e.err = start(opts, dovecot, doveadm)
		})
		if e.err != nil {
			t.Fatalf("dovecottest: %v", e.err)
		}
		if e.srv != nil && !e.srv.isStopped() {
			break
		}
		// A test stopped it: forget it and start a new one.
		shared.mu.Lock()
		if shared.servers[opts] == e {
			delete(shared.servers, opts)
		}
		shared.mu.Unlock()
	}
	s := e.srv
	offset := fileSize(s.LogFile)
	t.Cleanup(func() {
		if t.Failed() {
			s.logTail(t, offset)
		}
	})
	return s
}

func (s *Server) isStopped() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stopped
}

// StopAll stops every server started by Shared. Call it from TestMain after
// m.Run; a later Shared starts a fresh server.
func StopAll() {
	shared.mu.Lock()
	servers := shared.servers
	shared.servers = nil
	shared.mu.Unlock()
	for _, e := range servers {
		e.once.Do(func() {}) // wait for a start in progress
		if e.srv != nil {
			e.srv.Stop()
		}
	}
}
