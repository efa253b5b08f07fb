package imap

import (
	"context"
	"crypto/tls"
	"net"
	"sync"
	"time"
)

// Key exchange groups.
//
// Without CurvePreferences, crypto/tls offers TLS 1.3 servers two key
// shares: the hybrid post-quantum X25519MLKEM768 and X25519. Generating
// the ML-KEM key costs about a tenth of the client CPU of a sync with
// nothing new (measured with scripts/bench-fleet.sh), and a server without
// ML-KEM support (Dovecot on OpenSSL 3.0, for one) never uses it. So when a
// server answered that offer with X25519, the next connections to it for
// classicalTTL offer the classical groups only; then the hybrid is offered
// again, so a server that gained it is noticed. The server's choice is
// authenticated by the handshake (its Finished covers both hellos), so no
// one in between can talk the connector into the classical offer. A
// caller's own CurvePreferences are left alone.

// classicalTTL is how long a server that chose X25519 gets the classical
// offer.
const classicalTTL = time.Hour

// maxClassical bounds the remembered servers (beyond it, new ones are not
// remembered and keep getting the default offer).
const maxClassical = 4096

// classicalGroups is the offer to a server that chose X25519: X25519's key
// share first, the NIST curves through a HelloRetryRequest should it have
// changed its mind.
var classicalGroups = []tls.CurveID{tls.X25519, tls.CurveP256, tls.CurveP384}

// classical remembers, by server address, until when it gets the
// classical offer.
var classical = struct {
	sync.Mutex
	until map[string]time.Time
	now   func() time.Time // for tests
}{until: map[string]time.Time{}, now: time.Now}

// classicalOffer reports whether addr gets the classical offer now.
func classicalOffer(addr string) bool {
	classical.Lock()
	defer classical.Unlock()
	until, ok := classical.until[addr]
	if ok && !classical.now().Before(until) {
		delete(classical.until, addr)
		return false
	}
	return ok
}

// learnGroup remembers the group the server at addr chose for an offer
// made with cfg (only Go's default offer teaches anything).
func learnGroup(addr string, cfg *tls.Config, st tls.ConnectionState) {
	if cfg.CurvePreferences != nil || st.Version != tls.VersionTLS13 {
		return
	}
	classical.Lock()
	defer classical.Unlock()
	switch {
	case st.CurveID == tls.X25519 && len(classical.until) < maxClassical:
		classical.until[addr] = classical.now().Add(classicalTTL)
	case st.CurveID != tls.X25519:
		delete(classical.until, addr)
	}
}

// handshake runs the TLS client handshake on raw with the server's
// configuration and learns the group the server chose.
func (c *config) handshake(ctx context.Context, raw net.Conn) (*tls.Conn, error) {
	cfg := c.tlsConfig()
	tc := tls.Client(raw, cfg)
	if err := tc.HandshakeContext(ctx); err != nil {
		return nil, err
	}
	learnGroup(c.addr, cfg, tc.ConnectionState())
	return tc, nil
}
