package dovecottest

import (
	"encoding/json"
	"net/http"
	"strings"
	"sync"
)

// introspector is the RFC 7662 token introspection endpoint Dovecot's oauth2
// passdb asks. It answers {"active":true,"username":<user>} for registered
// tokens and {"active":false} for everything else.
type introspector struct {
	mu      sync.Mutex
	tokens  map[string]string // active token -> user
	revoked map[string]bool   // tokens revoked (still redacted from logs)
	calls   int
}

func newIntrospector() *introspector {
	return &introspector{tokens: make(map[string]string), revoked: make(map[string]bool)}
}

func (in *introspector) add(user, token string) {
	in.mu.Lock()
	defer in.mu.Unlock()
	in.tokens[token] = user
	delete(in.revoked, token)
}

func (in *introspector) revoke(token string) {
	in.mu.Lock()
	defer in.mu.Unlock()
	if _, ok := in.tokens[token]; ok {
		delete(in.tokens, token)
		in.revoked[token] = true
	}
}

func (in *introspector) all() []string {
	in.mu.Lock()
	defer in.mu.Unlock()
	out := make([]string, 0, len(in.tokens)+len(in.revoked))
	for tok := range in.tokens {
		out = append(out, tok)
	}
	for tok := range in.revoked {
		out = append(out, tok)
	}
	return out
}

func (in *introspector) count() int {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.calls
}

// ServeHTTP accepts the token as the "token" form or query parameter
// (introspection_mode = post or get) or as an Authorization: Bearer header
// (introspection_mode = auth).
func (in *introspector) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	token := ""
	if err := r.ParseForm(); err == nil {
		token = r.Form.Get("token")
	}
	if token == "" {
		if h := r.Header.Get("Authorization"); len(h) > 7 && strings.EqualFold(h[:7], "bearer ") {
			token = strings.TrimSpace(h[7:])
		}
	}
	in.mu.Lock()
	in.calls++
	user, ok := in.tokens[token]
	in.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	resp := map[string]any{"active": false}
	if ok && token != "" {
		resp = map[string]any{"active": true, "username": user}
	}
	_ = json.NewEncoder(w).Encode(resp)
}
