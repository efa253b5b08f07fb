// Package sasl implements the client side of the two OAuth 2.0 SASL
// mechanisms mail servers accept, XOAUTH2 (Google, Microsoft) and
// OAUTHBEARER (RFC 7628), as github.com/emersion/go-sasl Clients.
//
// Both answer a failure challenge (the server's JSON error) the way the
// mechanism requires — XOAUTH2 with an empty response, OAUTHBEARER with a
// single 0x01 byte — instead of aborting, because a client that sends
// nothing leaves the server waiting and the connection hangs. The server's
// error is kept and available through ServerError.
//
// The access token never appears in an error, String or %v output.
package sasl

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"

	gosasl "github.com/emersion/go-sasl"
)

// Mechanism names.
const (
	XOAuth2     = "XOAUTH2"
	OAuthBearer = "OAUTHBEARER"
)

// ServerError is the JSON error a server sends as a challenge when it
// rejects a token (both mechanisms use the same fields).
type ServerError struct {
	Status  string `json:"status"`
	Schemes string `json:"schemes,omitempty"`
	Scope   string `json:"scope,omitempty"`
}

// Error describes the rejection.
func (e *ServerError) Error() string {
	s := "sasl: server rejected the token"
	if e.Status != "" {
		s += " (status " + e.Status + ")"
	}
	if e.Scope != "" {
		s += ", scope " + e.Scope
	}
	return s
}

// ErrUnexpectedChallenge is returned when a server sends a second challenge
// after the failure challenge, which neither mechanism allows.
var ErrUnexpectedChallenge = errors.New("sasl: unexpected server challenge")

// Client is a go-sasl Client that also reports the server's error.
type Client interface {
	gosasl.Client
	// ServerError returns the error the server sent as a challenge, or nil.
	ServerError() *ServerError
}

// base holds what both mechanisms share.
type base struct {
	user, token string
	challenged  bool
	serverErr   *ServerError
}

func (b *base) next(challenge []byte, answer []byte) ([]byte, error) {
	if b.challenged {
		return nil, ErrUnexpectedChallenge
	}
	b.challenged = true
	var e ServerError
	if err := json.Unmarshal(challenge, &e); err != nil || e.Status == "" {
		// Not the documented JSON: keep a printable summary, never fail
		// here (failing would leave the exchange open).
		e = ServerError{Status: summarize(challenge)}
	}
	b.serverErr = &e
	return answer, nil
}

func (b *base) ServerError() *ServerError { return b.serverErr }

// summarize turns an unparsable challenge into a short printable string.
func summarize(p []byte) string {
	s := strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return -1
		}
		return r
	}, string(p))
	if len(s) > 80 {
		s = s[:80] + "…"
	}
	return strconv.Quote(s)
}

// XOAuth2Client is the XOAUTH2 client.
type XOAuth2Client struct{ base }

// NewXOAuth2Client returns an XOAUTH2 client that authenticates user with
// the access token.
func NewXOAuth2Client(user, token string) *XOAuth2Client {
	return &XOAuth2Client{base{user: user, token: token}}
}

// Start returns the initial response user=<user>^Aauth=Bearer <token>^A^A.
func (c *XOAuth2Client) Start() (string, []byte, error) {
	if strings.ContainsRune(c.user, '\x01') || strings.ContainsRune(c.token, '\x01') {
		return "", nil, errors.New("sasl: user name or token contains a 0x01 byte")
	}
	return XOAuth2, []byte("user=" + c.user + "\x01auth=Bearer " + c.token + "\x01\x01"), nil
}

// Next answers the server's failure challenge with an empty response, as
// XOAUTH2 requires; the server then fails the command.
func (c *XOAuth2Client) Next(challenge []byte) ([]byte, error) {
	return c.next(challenge, []byte{})
}

// String describes the client without the token.
func (c *XOAuth2Client) String() string { return fmt.Sprintf("XOAUTH2 client for %q", c.user) }

// Format prints String for every verb.
func (c *XOAuth2Client) Format(f fmt.State, _ rune) { fmt.Fprint(f, c.String()) }

// OAuthBearerClient is the OAUTHBEARER (RFC 7628) client.
type OAuthBearerClient struct {
	base
	host string
	port int
}

// NewOAuthBearerClient returns an OAUTHBEARER client that authenticates
// user with the access token; host and port name the server (they may be
// empty and 0).
func NewOAuthBearerClient(user, token, host string, port int) *OAuthBearerClient {
	return &OAuthBearerClient{base: base{user: user, token: token}, host: host, port: port}
}

// Start returns the initial response
// n,a=<user>,^Ahost=<host>^Aport=<port>^Aauth=Bearer <token>^A^A.
func (c *OAuthBearerClient) Start() (string, []byte, error) {
	if strings.ContainsRune(c.user, '\x01') || strings.ContainsRune(c.token, '\x01') || strings.ContainsRune(c.host, '\x01') {
		return "", nil, errors.New("sasl: user name, host or token contains a 0x01 byte")
	}
	var b strings.Builder
	b.WriteString("n,")
	if c.user != "" {
		// RFC 5801 saslname: ',' and '=' are escaped.
		b.WriteString("a=" + strings.NewReplacer("=", "=3D", ",", "=2C").Replace(c.user))
	}
	b.WriteString(",")
	if c.host != "" {
		b.WriteString("\x01host=" + c.host)
	}
	if c.port != 0 {
		b.WriteString("\x01port=" + strconv.Itoa(c.port))
	}
	b.WriteString("\x01auth=Bearer " + c.token + "\x01\x01")
	return OAuthBearer, []byte(b.String()), nil
}

// Next answers the server's failure challenge with the single 0x01 byte RFC
// 7628 section 3.2.3 prescribes; the server then fails the command.
func (c *OAuthBearerClient) Next(challenge []byte) ([]byte, error) {
	return c.next(challenge, []byte{0x01})
}

// String describes the client without the token.
func (c *OAuthBearerClient) String() string {
	return fmt.Sprintf("OAUTHBEARER client for %q", c.user)
}

// Format prints String for every verb.
func (c *OAuthBearerClient) Format(f fmt.State, _ rune) { fmt.Fprint(f, c.String()) }
