package gmail

import (
	"context"
	"crypto"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"google.golang.org/api/idtoken"
)

// Verifier checks the OIDC bearer token of a Pub/Sub push delivery: its
// signature, its expiry and, when audience is not empty, its audience.
// Push checks the issuer, audience, service account and expiry of the
// claims it returns again, so a Verifier need not.
type Verifier interface {
	Verify(ctx context.Context, token, audience string) (*TokenClaims, error)
}

// TokenClaims are the claims of a push subscription's OIDC token that
// Push checks.
type TokenClaims struct {
	Issuer   string // "https://accounts.google.com" for Google's tokens
	Audience string
	Subject  string
	// Email is the push subscription's service account.
	Email         string
	EmailVerified bool
	IssuedAt      time.Time
	Expires       time.Time
}

// clockSkew is the clock difference tolerated on iat and exp.
const clockSkew = 30 * time.Second

// NewGoogleVerifier returns the Verifier of Google-signed tokens, through
// google.golang.org/api/idtoken (which fetches and caches Google's
// certificates). v may be nil: idtoken.Validate's default validator
// (http.DefaultClient) is used then; make one with idtoken.NewValidator
// to choose the HTTP client.
func NewGoogleVerifier(v *idtoken.Validator) Verifier { return googleVerifier{v} }

type googleVerifier struct{ v *idtoken.Validator }

// Verify implements Verifier.
func (g googleVerifier) Verify(ctx context.Context, token, audience string) (*TokenClaims, error) {
	var p *idtoken.Payload
	var err error
	if g.v != nil {
		p, err = g.v.Validate(ctx, token, audience)
	} else {
		p, err = idtoken.Validate(ctx, token, audience)
	}
	if err != nil {
		return nil, err
	}
	c := &TokenClaims{
		Issuer: p.Issuer, Audience: p.Audience, Subject: p.Subject,
		IssuedAt: time.Unix(p.IssuedAt, 0), Expires: time.Unix(p.Expires, 0),
	}
	c.Email, _ = p.Claims["email"].(string)
	c.EmailVerified = claimTrue(p.Claims["email_verified"])
	return c, nil
}

func claimTrue(v any) bool {
	switch v := v.(type) {
	case bool:
		return v
	case string:
		return v == "true"
	}
	return false
}

// KeySetVerifier verifies RS256 tokens against a fixed set of RSA public
// keys, by key id (the JWT header's kid): for tests, or for a host that
// fetches and caches Google's certificates itself. It checks the
// signature, exp and iat (with 30 s of clock skew) and the audience.
type KeySetVerifier struct {
	// Keys are the public keys by key id.
	Keys map[string]*rsa.PublicKey
	// Now is the clock; default time.Now.
	Now func() time.Time
}

// errToken is the error of a token that fails verification; the text
// never includes the token.
var errToken = errors.New("gmail push: invalid token")

// Verify implements Verifier.
func (v *KeySetVerifier) Verify(_ context.Context, token, audience string) (*TokenClaims, error) {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return nil, fmt.Errorf("%w: not a JWT", errToken)
	}
	var hdr struct {
		Alg string `json:"alg"`
		Kid string `json:"kid"`
	}
	if err := decodeSegment(parts[0], &hdr); err != nil {
		return nil, fmt.Errorf("%w: header: %v", errToken, err)
	}
	if hdr.Alg != "RS256" {
		return nil, fmt.Errorf("%w: algorithm %q, want RS256", errToken, hdr.Alg)
	}
	key := v.Keys[hdr.Kid]
	if key == nil {
		return nil, fmt.Errorf("%w: unknown key id %q", errToken, hdr.Kid)
	}
	sig, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil {
		return nil, fmt.Errorf("%w: signature encoding", errToken)
	}
	sum := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
	if err := rsa.VerifyPKCS1v15(key, crypto.SHA256, sum[:], sig); err != nil {
		return nil, fmt.Errorf("%w: bad signature", errToken)
	}
	var pl struct {
		Iss           string          `json:"iss"`
		Aud           json.RawMessage `json:"aud"`
		Sub           string          `json:"sub"`
		Email         string          `json:"email"`
		EmailVerified any             `json:"email_verified"`
		Iat           float64         `json:"iat"`
		Exp           float64         `json:"exp"`
	}
	if err := decodeSegment(parts[1], &pl); err != nil {
		return nil, fmt.Errorf("%w: payload: %v", errToken, err)
	}
	c := &TokenClaims{
		Issuer: pl.Iss, Subject: pl.Sub, Email: pl.Email, EmailVerified: claimTrue(pl.EmailVerified),
		IssuedAt: time.Unix(int64(pl.Iat), 0), Expires: time.Unix(int64(pl.Exp), 0),
	}
	// aud is a string, or an array of strings (RFC 7519); Push wants the
	// one it is configured with.
	var auds []string
	if json.Unmarshal(pl.Aud, &c.Audience) != nil {
		if json.Unmarshal(pl.Aud, &auds) != nil {
			return nil, fmt.Errorf("%w: aud claim", errToken)
		}
		if len(auds) > 0 {
			c.Audience = auds[0]
		}
		for _, a := range auds {
			if a == audience {
				c.Audience = a
			}
		}
	}
	now := time.Now
	if v.Now != nil {
		now = v.Now
	}
	t := now()
	switch {
	case pl.Exp == 0 || !t.Before(c.Expires.Add(clockSkew)):
		return nil, fmt.Errorf("%w: expired", errToken)
	case pl.Iat == 0 || c.IssuedAt.After(t.Add(clockSkew)):
		return nil, fmt.Errorf("%w: issued in the future", errToken)
	case audience != "" && c.Audience != audience:
		return nil, fmt.Errorf("%w: audience mismatch", errToken)
	}
	return c, nil
}

func decodeSegment(s string, v any) error {
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, v)
}
