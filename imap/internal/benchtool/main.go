// Command benchtool is the client half of scripts/bench-imap.sh: it syncs
// the benchmark mailbox that TestBenchServer serves into a no-op sink and
// prints one summary line. The connection comes from the env file the
// server writes (BENCH_ADDR, BENCH_CA, BENCH_USER, BENCH_PASSWORD).
//
//	benchtool -env /tmp/bench/env            # mailsync.Sync into a no-op sink
//	benchtool -env /tmp/bench/env -mode fetch # the connector alone: List + Fetch into SHA-256
package main

import (
	"bufio"
	"context"
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"runtime/pprof"
	"strconv"
	"strings"
	"time"

	"github.com/mailsync/mailsync"
	"github.com/mailsync/mailsync/imap"
	"github.com/mailsync/mailsync/internal/benchsink"
)

func main() {
	envFile := flag.String("env", "", "env file written by the benchmark server")
	mode := flag.String("mode", "sync", "sync (mailsync.Sync into a no-op sink) or fetch (connector List+Fetch only)")
	verbose := flag.Bool("v", false, "log at debug level to stderr")
	cpuProfile := flag.String("cpuprofile", "", "write a CPU profile to this file")
	readAhead := flag.Int64("readahead", 0, "imap.Options.ReadAhead (0: default, negative: off)")
	flag.Parse()
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			fmt.Fprintln(os.Stderr, "benchtool:", err)
			os.Exit(1)
		}
		pprof.StartCPUProfile(f)
		defer pprof.StopCPUProfile()
	}
	if err := run(*envFile, *mode, *verbose, *readAhead); err != nil {
		pprof.StopCPUProfile()
		fmt.Fprintln(os.Stderr, "benchtool:", err)
		os.Exit(1)
	}
}

func run(envFile, mode string, verbose bool, readAhead int64) error {
	env, err := readEnv(envFile)
	if err != nil {
		return err
	}
	pem, err := os.ReadFile(env["BENCH_CA"])
	if err != nil {
		return err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return errors.New("no certificate in " + env["BENCH_CA"])
	}
	host, portStr, err := net.SplitHostPort(env["BENCH_ADDR"])
	if err != nil {
		return err
	}
	port, _ := strconv.Atoi(portStr)
	conn := mailsync.Connection{Name: "bench", Enabled: true, User: env["BENCH_USER"], Server: host, Port: port,
		Protocol: mailsync.IMAP, ConnectedWith: []string{"bench"}}
	logger := slog.New(slog.DiscardHandler)
	if verbose {
		logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	opts := imap.Options{Password: mailsync.Secret(env["BENCH_PASSWORD"]), Security: imap.ImplicitTLS, RootCAs: pool,
		Logger: logger, ReadAhead: readAhead}
	c, err := imap.New(conn, opts)
	if err != nil {
		return err
	}
	defer c.Close()
	ctx := context.Background()
	start := time.Now()
	var messages int
	var bytes int64
	switch mode {
	case "sync":
		sink := &benchsink.DiscardSink{}
		rep, err := mailsync.Sync(ctx, c, mailsync.DefaultMapping("bench"), sink, mailsync.WithLogger(logger))
		if err != nil {
			return err
		}
		if rep.Failed > 0 || rep.Created+rep.Quarantined != rep.Seen {
			return fmt.Errorf("sync incomplete: %+v", rep)
		}
		messages, bytes = rep.Created+rep.Quarantined, sink.MessageBytes.Load()
		defer fmt.Printf("  (created %d, quarantined %d)\n", rep.Created, rep.Quarantined)
	case "fetch":
		l, err := c.List(ctx, "")
		if err != nil {
			return err
		}
		h := sha256.New()
		err = c.Fetch(ctx, l.Messages, func(_ mailsync.MessageRef, r io.Reader) error {
			if r == nil { // gone meanwhile
				return nil
			}
			n, err := io.Copy(h, r)
			bytes += n
			messages++
			return err
		})
		if err != nil {
			return err
		}
	default:
		return fmt.Errorf("unknown mode %q", mode)
	}
	d := time.Since(start)
	if want, _ := strconv.Atoi(env["BENCH_MESSAGES"]); messages != want {
		return fmt.Errorf("got %d messages, the mailbox has %d", messages, want)
	}
	fmt.Printf("mailsync %s: %d messages, %.1f MB in %.2f s (%.1f MB/s)", mode, messages, float64(bytes)/1e6, d.Seconds(), float64(bytes)/1e6/d.Seconds())
	return nil
}

func readEnv(path string) (map[string]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	env := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), "="); ok {
			env[k] = v
		}
	}
	return env, sc.Err()
}
