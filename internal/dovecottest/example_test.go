package dovecottest_test

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"strings"
	"testing"

	"github.com/mailsync/mailsync/internal/dovecottest"
)

// A test logs in over IMAPS and sees a delivered message. (Examples cannot
// receive a *testing.T, so this one only compiles; the same code runs in
// TestIMAPSLoginSelect. Pair Shared with dovecottest.StopAll in TestMain.)
func ExampleShared() {
	testSomething := func(t *testing.T) {
		srv := dovecottest.Shared(t, dovecottest.Options{})
		user := srv.AddUser(t, t.Name(), "secret")
		srv.Deliver(t, user, "INBOX", []byte("Message-ID: <1@example.com>\r\nSubject: hi\r\n\r\nbody\r\n"))

		conn, err := tls.Dial("tcp", srv.IMAPSAddr, &tls.Config{RootCAs: srv.CAPool, ServerName: "localhost"})
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		r := bufio.NewReader(conn)
		r.ReadString('\n') // greeting
		fmt.Fprintf(conn, "a LOGIN %s secret\r\nb SELECT INBOX\r\n", user)
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				t.Fatal(err)
			}
			if strings.HasPrefix(line, "* 1 EXISTS") {
				break // the delivered message is there
			}
		}
		// After the code under test ran:
		for _, m := range srv.Messages(t, user, "INBOX") {
			t.Logf("%s seen=%v", m.MessageID, m.Seen)
		}
	}
	_ = testSomething
}
