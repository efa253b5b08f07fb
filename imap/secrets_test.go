package imap_test

import (
	"bufio"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"golang.org/x/oauth2"

	"github.com/mailsync/mailsync"
	mimap "github.com/mailsync/mailsync/imap"
	"github.com/mailsync/mailsync/internal/redact"
)

// echoServer answers LOGIN or AUTHENTICATE (or, with failOn, a later
// command) with a NO or BAD whose text repeats what the client sent, the
// way some servers do: the raw command with its literals, and for
// AUTHENTICATE the decoded SASL response too.
type echoServer struct {
	Addr   string
	caps   string
	failOn string // the command to refuse; "" refuses LOGIN/AUTHENTICATE
	answer string // "NO" or "BAD"
	decode bool   // also echo the base64-decoded SASL response
	plain  string // also echo this (e.g. a PLAIN blob the client never sent)

	mu   sync.Mutex
	seen []string // commands as received, literals inlined
}

var reLiteralEnd = regexp.MustCompile(`\{(\d+)(\+?)\}$`)

func startEcho(t *testing.T, e *echoServer) *echoServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e.Addr = ln.Addr().String()
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				e.serve(c)
			}()
		}
	}()
	return e
}

// readCommand reads one command line with its literals inlined.
func readCommand(r *bufio.Reader, w *bufio.Writer) (string, error) {
	var cmd strings.Builder
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return "", err
		}
		line = strings.TrimRight(line, "\r\n")
		m := reLiteralEnd.FindStringSubmatch(line)
		if m == nil {
			cmd.WriteString(line)
			return cmd.String(), nil
		}
		cmd.WriteString(line[:len(line)-len(m[0])])
		n, _ := strconv.Atoi(m[1])
		if m[2] == "" {
			w.WriteString("+ go ahead\r\n")
			w.Flush()
		}
		lit := make([]byte, n)
		if _, err := io.ReadFull(r, lit); err != nil {
			return "", err
		}
		cmd.Write(lit)
	}
}

func (e *echoServer) serve(c net.Conn) {
	r := bufio.NewReader(c)
	w := bufio.NewWriter(c)
	fmt.Fprintf(w, "* OK [CAPABILITY %s] echo ready\r\n", e.caps)
	w.Flush()
	for {
		line, err := readCommand(r, w)
		if err != nil {
			return
		}
		e.mu.Lock()
		e.seen = append(e.seen, line)
		e.mu.Unlock()
		tag, cmd, _ := strings.Cut(line, " ")
		upper := strings.ToUpper(cmd)
		isAuth := strings.HasPrefix(upper, "LOGIN") || strings.HasPrefix(upper, "AUTHENTICATE")
		refuse := (e.failOn == "" && isAuth) || (e.failOn != "" && strings.HasPrefix(upper, e.failOn))
		switch {
		case refuse:
			echo := "you sent: " + cmd
			if e.decode {
				for _, f := range strings.Fields(cmd) {
					if b, err := base64.StdEncoding.DecodeString(f); err == nil && len(b) > 8 {
						echo += " decoded: " + strings.NewReplacer("\x00", "^@", "\x01", "^A").Replace(string(b))
					}
				}
			}
			if e.plain != "" {
				echo += " " + e.plain
			}
			fmt.Fprintf(w, "%s %s %s\r\n", tag, e.answer, echo)
		case isAuth:
			fmt.Fprintf(w, "%s OK [CAPABILITY IMAP4rev1 UIDPLUS] logged in\r\n", tag)
		case strings.HasPrefix(upper, "CAPABILITY"):
			fmt.Fprintf(w, "* CAPABILITY %s\r\n%s OK done\r\n", e.caps, tag)
		case strings.HasPrefix(upper, "LOGOUT"):
			fmt.Fprintf(w, "* BYE bye\r\n%s OK done\r\n", tag)
			w.Flush()
			return
		default:
			fmt.Fprintf(w, "%s OK done\r\n", tag)
		}
		if w.Flush() != nil {
			return
		}
	}
}

// Servers that echo the command or the SASL response in a NO or BAD must
// not get a password or token into an error, in any encoding the request
// carried it in (issue 10 item 7).
func TestServerEchoedSecretsAreScrubbed(t *testing.T) {
	const user = "alice@example.com"
	const token = "ya29.A0ARrdaM-secret-access-token_0123456789"
	plainBlob := func(pw string) string {
		return base64.StdEncoding.EncodeToString([]byte("\x00" + user + "\x00" + pw))
	}
	passwords := map[string]string{
		"quoted":           `Tr0ub4dor&3-horse`,
		"quoted escapes":   `pa"ss\word-Secret1`,
		"literal":          "pässwört-Geheimnis-42",
		"url-ish":          "p@ss w/rd+%&=secret",
		"base64-ish chars": "AbCd+/Ef==GhIj",
	}
	type tc struct {
		name     string
		server   *echoServer
		opts     mimap.Options
		secrets  []string
		sentinel error
	}
	var cases []tc
	for name, pw := range passwords {
		for _, answer := range []string{"NO", "BAD"} {
			cases = append(cases, tc{
				name:     "LOGIN " + name + " " + answer,
				server:   &echoServer{caps: "IMAP4rev1 UIDPLUS", answer: answer, plain: plainBlob(pw)},
				opts:     mimap.Options{Password: mailsync.Secret(pw)},
				secrets:  []string{pw},
				sentinel: mailsync.ErrAuth,
			})
		}
		cases = append(cases, tc{
			name:     "password echoed by SELECT " + name,
			server:   &echoServer{caps: "IMAP4rev1 UIDPLUS", failOn: "SELECT", answer: "NO", plain: `your LOGIN was "` + pw + `" ` + plainBlob(pw)},
			opts:     mimap.Options{Password: mailsync.Secret(pw)},
			secrets:  []string{pw},
			sentinel: mailsync.ErrFolderNotFound,
		})
	}
	for _, mech := range []string{"XOAUTH2", "OAUTHBEARER"} {
		for _, answer := range []string{"NO", "BAD"} {
			cases = append(cases, tc{
				name:     mech + " " + answer,
				server:   &echoServer{caps: "IMAP4rev1 UIDPLUS SASL-IR AUTH=XOAUTH2 AUTH=OAUTHBEARER", answer: answer, decode: true},
				opts:     mimap.Options{TokenSource: oauth2.StaticTokenSource(&oauth2.Token{AccessToken: token}), SASLMechanism: mech},
				secrets:  []string{token},
				sentinel: mailsync.ErrAuth,
			})
		}
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := startEcho(t, tc.server)
			opts := tc.opts
			opts.Security = mimap.Plaintext
			opts.AllowPlaintextLogin = true
			conn := connection(t, e.Addr)
			conn.User = user
			c := newConnector(t, conn, opts)
			_, err := c.List(testCtx(t), "")
			if err == nil {
				t.Fatal("List succeeded")
			}
			// The server did receive the secret (so the test means something).
			e.mu.Lock()
			seen := strings.Join(e.seen, "\n")
			e.mu.Unlock()
			for _, s := range tc.secrets {
				if !slices.ContainsFunc(redact.Forms(s), func(f string) bool { return strings.Contains(seen, f) }) {
					t.Fatalf("the server never saw the secret; commands: %q", seen)
				}
			}
			if !errors.Is(err, tc.sentinel) {
				t.Errorf("got %v; want %v", err, tc.sentinel)
			}
			if !strings.Contains(err.Error(), redact.Mark) {
				t.Errorf("nothing was scrubbed from %q (the server echoed the secret)", err)
			}
			for _, s := range tc.secrets {
				for _, f := range redact.Forms(s) {
					if strings.Contains(err.Error(), f) {
						t.Fatalf("the error carries the secret %q as %q: %v", s, f, err)
					}
				}
			}
			t.Log(err)
		})
	}
}
