package sasl_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	gosasl "github.com/emersion/go-sasl"

	"github.com/mailsync/mailsync/internal/sasl"
)

const token = "ya29.SECRET-token-value"

func TestXOAuth2InitialResponse(t *testing.T) {
	c := sasl.NewXOAuth2Client("alice@example.com", token)
	mech, ir, err := c.Start()
	if err != nil {
		t.Fatal(err)
	}
	want := "user=alice@example.com\x01auth=Bearer " + token + "\x01\x01"
	if mech != "XOAUTH2" || string(ir) != want {
		t.Fatalf("Start() = %q, %q; want XOAUTH2, %q", mech, ir, want)
	}
}

func TestXOAuth2FailureChallengeGetsEmptyResponse(t *testing.T) {
	c := sasl.NewXOAuth2Client("alice", token)
	if _, _, err := c.Start(); err != nil {
		t.Fatal(err)
	}
	resp, err := c.Next([]byte(`{"status":"401","schemes":"bearer","scope":"https://mail.google.com/"}`))
	if err != nil {
		t.Fatalf("Next: %v; the client must answer, not abort", err)
	}
	if resp == nil || len(resp) != 0 {
		t.Fatalf("Next response = %q; want a non-nil empty response", resp)
	}
	se := c.ServerError()
	if se == nil || se.Status != "401" || se.Scope != "https://mail.google.com/" {
		t.Fatalf("ServerError() = %+v", se)
	}
	if _, err := c.Next([]byte("again")); !errors.Is(err, sasl.ErrUnexpectedChallenge) {
		t.Fatalf("second Next: %v; want ErrUnexpectedChallenge", err)
	}
}

func TestNonJSONChallengeIsKeptPrintable(t *testing.T) {
	c := sasl.NewXOAuth2Client("alice", token)
	resp, err := c.Next([]byte("bad\x00\x01thing"))
	if err != nil || len(resp) != 0 {
		t.Fatalf("Next = %q, %v", resp, err)
	}
	if got := c.ServerError().Status; got != `"badthing"` {
		t.Fatalf("Status = %q", got)
	}
}

func TestRejects0x01InFields(t *testing.T) {
	if _, _, err := sasl.NewXOAuth2Client("a\x01b", token).Start(); err == nil {
		t.Error("XOAUTH2 accepted a user name with 0x01")
	}
	if _, _, err := sasl.NewOAuthBearerClient("alice", "t\x01", "h", 1).Start(); err == nil {
		t.Error("OAUTHBEARER accepted a token with 0x01")
	}
}

func TestOAuthBearerInitialResponse(t *testing.T) {
	c := sasl.NewOAuthBearerClient("a,l=ice", token, "imap.example.com", 993)
	mech, ir, err := c.Start()
	if err != nil {
		t.Fatal(err)
	}
	want := "n,a=a=2Cl=3Dice,\x01host=imap.example.com\x01port=993\x01auth=Bearer " + token + "\x01\x01"
	if mech != "OAUTHBEARER" || string(ir) != want {
		t.Fatalf("Start() = %q, %q; want OAUTHBEARER, %q", mech, ir, want)
	}
}

// The go-sasl server implementation parses what our client sends, and our
// client completes its failure exchange.
func TestOAuthBearerAgainstGoSASLServer(t *testing.T) {
	for _, good := range []bool{true, false} {
		t.Run(fmt.Sprint("good=", good), func(t *testing.T) {
			var seen gosasl.OAuthBearerOptions
			srv := gosasl.NewOAuthBearerServer(func(o gosasl.OAuthBearerOptions) *gosasl.OAuthBearerError {
				seen = o
				if good {
					return nil
				}
				return &gosasl.OAuthBearerError{Status: "invalid_token", Schemes: "bearer"}
			})
			c := sasl.NewOAuthBearerClient("alice", token, "localhost", 143)
			_, ir, err := c.Start()
			if err != nil {
				t.Fatal(err)
			}
			challenge, done, err := srv.Next(ir)
			if seen.Username != "alice" || seen.Token != token || seen.Host != "localhost" || seen.Port != 143 {
				t.Fatalf("server parsed %+v", seen)
			}
			if good {
				if err != nil || !done {
					t.Fatalf("server: done=%v err=%v", done, err)
				}
				return
			}
			if done || err != nil {
				t.Fatalf("server should send a failure challenge first: done=%v err=%v", done, err)
			}
			resp, err := c.Next(challenge)
			if err != nil || string(resp) != "\x01" {
				t.Fatalf("client answer = %q, %v; want \\x01", resp, err)
			}
			if c.ServerError() == nil || c.ServerError().Status != "invalid_token" {
				t.Fatalf("ServerError() = %+v", c.ServerError())
			}
			if _, done, err := srv.Next(resp); !done || err == nil {
				t.Fatalf("server after answer: done=%v err=%v; want done with failure", done, err)
			}
		})
	}
}

func TestTokenNeverPrinted(t *testing.T) {
	clients := []any{sasl.NewXOAuth2Client("alice", token), sasl.NewOAuthBearerClient("alice", token, "h", 1)}
	for _, c := range clients {
		for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x"} {
			if s := fmt.Sprintf(verb, c); strings.Contains(s, token) || strings.Contains(s, fmt.Sprintf("%x", token)) {
				t.Errorf("%s of %T prints the token: %s", verb, c, s)
			}
		}
	}
	e := (&sasl.ServerError{Status: "401", Scope: "mail"}).Error()
	if e != "sasl: server rejected the token (status 401), scope mail" {
		t.Errorf("ServerError.Error() = %q", e)
	}
}

func ExampleNewXOAuth2Client() {
	c := sasl.NewXOAuth2Client("alice@example.com", "ya29.token")
	mech, ir, _ := c.Start()
	fmt.Printf("%s %q\n", mech, ir)
	// A rejected token: the server sends its JSON error, the client answers empty.
	resp, _ := c.Next([]byte(`{"status":"400","schemes":"Bearer"}`))
	fmt.Printf("answer %q, %v\n", resp, c.ServerError())
	// Output:
	// XOAUTH2 "user=alice@example.com\x01auth=Bearer ya29.token\x01\x01"
	// answer "", sasl: server rejected the token (status 400)
}
