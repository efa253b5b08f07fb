package gmail_test

import (
	"context"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/mailsync/mailsync"
	"github.com/mailsync/mailsync/gmail"
)

// A server answering garbage: every call fails with an error, none panics
// or hangs.
func TestHostileServer(t *testing.T) {
	answers := []func(w http.ResponseWriter, r *http.Request){
		func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "not json") },
		func(w http.ResponseWriter, r *http.Request) {
			io.WriteString(w, `{"historyId":"abc","messages":[{"id":5}]}`)
		},
		func(w http.ResponseWriter, r *http.Request) {
			io.WriteString(w, `{"historyId":"18446744073709551616"}`)
		},
		func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "multipart/mixed; boundary=b")
			io.WriteString(w, "--b\r\nContent-Type: application/http\r\nContent-ID: <response-item0>\r\n\r\nHTTP/1.1 200 OK\r\n\r\n{\"raw\":\"QUJD")
		},
		func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "multipart/mixed; boundary=b")
			io.WriteString(w, "--b\r\nContent-ID: <response-item99999999999999999999>\r\n\r\ngarbage\r\n--b--\r\n")
		},
		func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "multipart/mixed; boundary=b")
			io.WriteString(w, "--b\r\nContent-ID: <response-item0>\r\n\r\nHTTP/1.1 200 OK\r\n\r\n{\"raw\":{\"x\":1}}\r\n--b--\r\n")
		},
		func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(418)
			io.WriteString(w, `{"error":{"code":"x"}}`)
		},
		func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Length", "1000")
			io.WriteString(w, `{"messages":[`)
		},
	}
	for i, answer := range answers {
		srv := httptest.NewServer(http.HandlerFunc(answer))
		c, err := gmail.New(testConn("a@example.com"), gmail.Options{
			TokenSource: staticToken("t"), Endpoint: srv.URL, HTTPClient: srv.Client(), MaxRetries: -1,
		})
		if err != nil {
			t.Fatal(err)
		}
		ctx := context.Background()
		if l, err := c.List(ctx, ""); err == nil {
			t.Errorf("answer %d: List succeeded: %+v", i, l)
		}
		// A history answer without a usable historyId keeps the cursor.
		if l, err := c.List(ctx, "77;INBOX"); err == nil && (l.Cursor != "77;INBOX" || len(l.Messages) != 0) {
			t.Errorf("answer %d: history List gave %+v", i, l)
		}
		refs := []mailsync.MessageRef{{Key: "a", Size: -1}, {Key: "b", Size: -1}}
		err = c.Fetch(ctx, refs, func(r mailsync.MessageRef, rd io.Reader) error {
			_, err := io.Copy(io.Discard, rd)
			return err
		})
		if err == nil {
			t.Errorf("answer %d: Fetch succeeded", i)
		}
		_ = c.Ack(ctx, refs, mailsync.PostAction{Kind: mailsync.Delete})
		_ = c.Ack(ctx, refs, mailsync.PostAction{Kind: mailsync.MoveToFolder, Folder: "X"})
		srv.Close()
	}
	// Random bytes as every answer.
	rng := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 200; i++ {
		b := make([]byte, rng.IntN(300))
		const alphabet = "{}[]\":,raw-_=ABCxyz0129\\u\r\n"
		for j := range b {
			b[j] = alphabet[rng.IntN(len(alphabet))]
		}
		ct := []string{"application/json", "multipart/mixed; boundary=b", "multipart/mixed"}[rng.IntN(3)]
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", ct)
			w.Write(b)
		}))
		c, _ := gmail.New(testConn("a@example.com"), gmail.Options{
			TokenSource: staticToken("t"), Endpoint: srv.URL, HTTPClient: srv.Client(), MaxRetries: -1,
		})
		c.List(context.Background(), "")
		c.Fetch(context.Background(), []mailsync.MessageRef{{Key: "a"}, {Key: "b"}}, func(r mailsync.MessageRef, rd io.Reader) error {
			_, err := io.Copy(io.Discard, rd)
			return err
		})
		srv.Close()
	}
}
