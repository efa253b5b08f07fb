package imap_test

import (
	"bufio"
	"fmt"
	"net"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// fakeServer is a scripted IMAP server for the behaviours a real server
// will not produce on demand: answering FETCH with the UID after the body
// literal, stalling in the middle of a literal, never answering.
type fakeServer struct {
	Addr string

	// uidAfterBody sends "BODY[] {n}...literal... UID u" instead of UID first.
	uidAfterBody bool
	// stallFetchAfter > 0: a body FETCH sends that many bytes of the first
	// literal and then nothing more (the connection stays open).
	stallFetchAfter int
	// stallCommand: never answer a command starting with this ("UID FETCH").
	stallCommand string
	// replies overrides the answer to commands starting with a key
	// ("LOGIN", "SELECT", "UID FETCH"); "%[1]s" in the value is the tag.
	// The connection is closed after an override that ends without CRLF.
	replies map[string]string

	uidValidity uint32
	msgs        [][]byte // message i has UID i+1 and sequence number i+1

	quit     chan struct{}
	mu       sync.Mutex
	commands []string
}

func startFake(t testing.TB, f *fakeServer) *fakeServer {
	t.Helper()
	if f.uidValidity == 0 {
		f.uidValidity = 42
	}
	f.quit = make(chan struct{})
	f.Addr = serveLoopback(t, f.serve, func() { close(f.quit) })
	return f
}

func (f *fakeServer) sent() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.commands...)
}

var (
	reUIDFetch = regexp.MustCompile(`(?i)^UID FETCH (\S+) \((.*)\)$`)
	reFetch    = regexp.MustCompile(`(?i)^FETCH (\d+) \((.*)\)$`)
	reSearch   = regexp.MustCompile(`(?i)^(UID )?SEARCH UID (\S+)$`)
)

func (f *fakeServer) serve(c net.Conn) {
	r := bufio.NewReader(c)
	w := bufio.NewWriter(c)
	fmt.Fprintf(w, "* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN UIDPLUS] fake ready\r\n")
	w.Flush()
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		line = strings.TrimRight(line, "\r\n")
		tag, cmd, _ := strings.Cut(line, " ")
		record := cmd
		if strings.HasPrefix(strings.ToUpper(cmd), "LOGIN") {
			record = "LOGIN [credentials]"
		}
		f.mu.Lock()
		f.commands = append(f.commands, record)
		f.mu.Unlock()
		if f.stallCommand != "" && strings.HasPrefix(strings.ToUpper(cmd), f.stallCommand) {
			r.ReadString('\n') // wait for the client to give up
			return
		}
		upper := strings.ToUpper(cmd)
		if reply, ok := f.override(upper); ok {
			fmt.Fprintf(w, reply, tag)
			w.Flush()
			if !strings.HasSuffix(reply, "\r\n") {
				return
			}
			continue
		}
		switch {
		case strings.HasPrefix(upper, "CAPABILITY"):
			fmt.Fprintf(w, "* CAPABILITY IMAP4rev1 AUTH=PLAIN UIDPLUS\r\n%s OK done\r\n", tag)
		case strings.HasPrefix(upper, "LOGIN"):
			fmt.Fprintf(w, "%s OK [CAPABILITY IMAP4rev1 UIDPLUS] logged in\r\n", tag)
		case strings.HasPrefix(upper, "SELECT"), strings.HasPrefix(upper, "EXAMINE"):
			fmt.Fprintf(w, "* %d EXISTS\r\n* OK [UIDVALIDITY %d] ok\r\n* OK [UIDNEXT %d] ok\r\n%s OK [READ-WRITE] selected\r\n",
				len(f.msgs), f.uidValidity, len(f.msgs)+1, tag)
		case strings.HasPrefix(upper, "LOGOUT"):
			fmt.Fprintf(w, "* BYE bye\r\n%s OK done\r\n", tag)
			w.Flush()
			return
		case reSearch.MatchString(cmd):
			m := reSearch.FindStringSubmatch(cmd)
			var hits []string
			for _, uid := range f.uids(m[2]) {
				hits = append(hits, strconv.Itoa(uid)) // UID == sequence number here
			}
			fmt.Fprintf(w, "* SEARCH %s\r\n%s OK done\r\n", strings.Join(hits, " "), tag)
		case reUIDFetch.MatchString(cmd):
			m := reUIDFetch.FindStringSubmatch(cmd)
			for _, uid := range f.uids(m[1]) {
				if !f.writeFetch(w, uid, m[2]) {
					return
				}
			}
			fmt.Fprintf(w, "%s OK done\r\n", tag)
		case reFetch.MatchString(cmd):
			m := reFetch.FindStringSubmatch(cmd)
			seq, _ := strconv.Atoi(m[1])
			if seq >= 1 && seq <= len(f.msgs) && !f.writeFetch(w, seq, m[2]) {
				return
			}
			fmt.Fprintf(w, "%s OK done\r\n", tag)
		default:
			fmt.Fprintf(w, "%s OK ignored\r\n", tag)
		}
		if err := w.Flush(); err != nil {
			return
		}
	}
}

func (f *fakeServer) override(upperCmd string) (string, bool) {
	for prefix, reply := range f.replies {
		if strings.HasPrefix(upperCmd, prefix) {
			return reply, true
		}
	}
	return "", false
}

// uids expands a UID set such as "1:3,5" or "4:*" over the messages.
func (f *fakeServer) uids(set string) []int {
	var out []int
	for _, part := range strings.Split(set, ",") {
		lo, hi, isRange := strings.Cut(part, ":")
		a, _ := strconv.Atoi(lo)
		b := a
		if isRange {
			if hi == "*" {
				b = len(f.msgs)
			} else {
				b, _ = strconv.Atoi(hi)
			}
		}
		if a > b {
			a, b = b, a
		}
		for u := max(a, 1); u <= b && u <= len(f.msgs); u++ {
			out = append(out, u)
		}
	}
	return out
}

// writeFetch answers one message; false means the connection must stall.
func (f *fakeServer) writeFetch(w *bufio.Writer, uid int, items string) bool {
	body := f.msgs[uid-1]
	if !strings.Contains(strings.ToUpper(items), "BODY") {
		fmt.Fprintf(w, "* %d FETCH (UID %d RFC822.SIZE %d)\r\n", uid, uid, len(body))
		return true
	}
	if f.stallFetchAfter > 0 {
		fmt.Fprintf(w, "* %d FETCH (UID %d BODY[] {%d}\r\n", uid, uid, len(body))
		w.Write(body[:min(f.stallFetchAfter, len(body))])
		w.Flush()
		<-f.quit // never finish
		return false
	}
	if f.uidAfterBody {
		fmt.Fprintf(w, "* %d FETCH (BODY[] {%d}\r\n%s UID %d)\r\n", uid, len(body), body, uid)
	} else {
		fmt.Fprintf(w, "* %d FETCH (UID %d BODY[] {%d}\r\n%s)\r\n", uid, uid, len(body), body)
	}
	return true
}
