// Command pop3bench pulls a whole POP3 maildrop once, for
// scripts/bench-pop3.sh, which times it next to fetchmail.
//
// Mode "sync" runs mailsync.Sync (parse, map, attachments read and hashed)
// into a sink that keeps nothing; mode "raw" only lists and fetches, hashing
// the bytes. Both leave the mail on the server. The password is read from
// the environment variable POP3BENCH_PASSWORD.
package main

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"os"
	"strconv"
	"time"

	"github.com/mailsync/mailsync"
	"github.com/mailsync/mailsync/internal/benchsink"
	"github.com/mailsync/mailsync/pop3"
)

func main() {
	addr := flag.String("addr", "", "POP3S server host:port")
	user := flag.String("user", "", "user name")
	caFile := flag.String("ca", "", "PEM file of the CA to trust")
	mode := flag.String("mode", "sync", "sync or raw")
	flag.Parse()

	host, port, err := net.SplitHostPort(*addr)
	if err != nil {
		log.Fatal(err)
	}
	p, _ := strconv.Atoi(port)
	pem, err := os.ReadFile(*caFile)
	if err != nil {
		log.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	conn := mailsync.Connection{Name: "bench", Enabled: true, User: *user, Server: host, Port: p,
		Protocol: mailsync.POP3, ConnectedWith: []string{"incident"}}
	c, err := pop3.New(conn, pop3.Options{Password: mailsync.Secret(os.Getenv("POP3BENCH_PASSWORD")), Security: pop3.ImplicitTLS, RootCAs: pool})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()
	start := time.Now()
	switch *mode {
	case "raw":
		l, err := c.List(ctx, "")
		if err != nil {
			log.Fatal(err)
		}
		var n, bytes int64
		h := sha256.New()
		err = c.Fetch(ctx, l.Messages, func(_ mailsync.MessageRef, r io.Reader) error {
			k, err := io.Copy(h, r)
			n++
			bytes += k
			return err
		})
		if err != nil {
			log.Fatal(err)
		}
		fmt.Printf("raw: %d messages, %d bytes, sha256 %x, %s\n", n, bytes, h.Sum(nil)[:8], time.Since(start).Round(time.Millisecond))
	case "sync":
		sink := &benchsink.DiscardSink{}
		rep, err := mailsync.Sync(ctx, c, mailsync.DefaultMapping("incident"), sink)
		if err != nil {
			log.Fatal(err)
		}
		fmt.Printf("sync: seen %d, created %d, quarantined %d, failed %d; %d attachment bytes read; %s\n",
			rep.Seen, rep.Created, rep.Quarantined, rep.Failed, sink.AttachmentBytes.Load(), time.Since(start).Round(time.Millisecond))
		if rep.Failed > 0 {
			os.Exit(1)
		}
	default:
		log.Fatalf("unknown mode %q", *mode)
	}
}
