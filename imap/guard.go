package imap

import (
	"bytes"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/mailsync/mailsync"
)

// A hostile or broken server must not exhaust memory. go-imap buffers
// every response line, and every literal that is not a message body, in
// memory before it looks at it, so a 1 GiB line or a 1 GiB literal in a
// LIST reply costs gigabytes. guard watches the byte stream below go-imap
// (above TLS): it follows the IMAP framing (lines, and "{n}" literals) and
// fails the connection as soon as one response carries more than
// maxResponseBytes outside message-body literals. Body literals
// (BODY[...] and BINARY[...] in a FETCH response) are not counted: go-imap
// streams them to the caller, and Limits.MaxMessageBytes bounds what the
// caller keeps. The guard also tells the session when a command is in
// progress (from its first byte written to its tagged completion), so the
// watcher can bound the total time of each command.

// minBodyRate is the slowest delivery of message bodies that still extends
// a command's time: each minBodyRate bytes handed to the caller's callback
// add a second to CommandTimeout, so a large batch on a slow but steady link
// completes, while a server that trickles (or sends what nobody reads)
// earns nothing.
const minBodyRate = 64 << 10

// maxResponseBytes bounds one server response, literals that are not
// message bodies included. Real responses (CAPABILITY, LIST, SELECT data,
// FETCH flags, SEARCH of at most one batch) are far smaller.
const maxResponseBytes = 1 << 20

// errResponseTooLarge is returned to go-imap's reader when the guard
// stops a response; the session reports the guard's reason instead.
var errResponseTooLarge = errors.New("imap: response exceeds the size limit")

// bodyBefore matches what precedes a message-body literal in a FETCH
// response: BODY[section]<origin> or BINARY[part], a space, and for
// BINARY an optional literal8 marker.
var bodyBefore = regexp.MustCompile(`(?i)(?:BODY\[[^\]]*\](?:<\d+>)?|BINARY\[[\d.]*\]) ~?$`)

// fetchHead matches the start of an untagged FETCH response.
var fetchHead = regexp.MustCompile(`(?i)^\* \d+ FETCH `)

// guard follows the server's byte stream. Only the reader goroutine calls
// scan; the command state is read by the watcher.
type guard struct {
	max int64

	// Framing state (reader goroutine only).
	inLiteral bool
	litLeft   int64
	respBytes int64  // bytes of the current response counted so far
	head      []byte // the first bytes of the current response
	tail      []byte // the last bytes of the current line segment

	// Command state.
	cmdActive atomic.Bool
	cmdSeq    atomic.Uint64
	bodyBytes atomic.Int64 // message-body bytes handed to the caller, ever

	mu     sync.Mutex
	failed error
	onFail func(error) // closes the connection
}

const (
	headKeep = 32
	tailKeep = 256
)

func newGuard(max int64, onFail func(error)) *guard {
	return &guard{max: max, onFail: onFail}
}

// err returns why the guard stopped the stream, if it did.
func (g *guard) err() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.failed
}

func (g *guard) fail(reason error) error {
	reason = fmt.Errorf("%w: %w", mailsync.ErrServerLimit, reason)
	g.mu.Lock()
	if g.failed == nil {
		g.failed = reason
	}
	g.mu.Unlock()
	if g.onFail != nil {
		g.onFail(reason)
	}
	return errResponseTooLarge
}

// wrote notes that the client sent bytes: a command starts unless one is
// in progress (literal data and SASL answers belong to the current one).
func (g *guard) wrote() {
	if g.cmdActive.CompareAndSwap(false, true) {
		g.cmdSeq.Add(1)
	}
}

// scan follows p, just read from the server. It returns an error once the
// stream breaks a limit; the connection is then being closed.
func (g *guard) scan(p []byte) error {
	if err := g.err(); err != nil {
		return errResponseTooLarge
	}
	for len(p) > 0 {
		if g.inLiteral {
			n := int64(len(p))
			if n > g.litLeft {
				n = g.litLeft
			}
			g.litLeft -= n
			p = p[n:]
			if g.litLeft == 0 {
				g.inLiteral = false
			}
			continue
		}
		i := bytes.IndexByte(p, '\n')
		seg := p
		if i >= 0 {
			seg = p[:i+1]
		}
		p = p[len(seg):]
		g.respBytes += int64(len(seg))
		if g.respBytes > g.max {
			return g.fail(fmt.Errorf("the server sent a response longer than %d bytes (without a line end, or in literals that are not a message body); a broken or hostile server", g.max))
		}
		if len(g.head) < headKeep {
			g.head = append(g.head, seg[:min(len(seg), headKeep-len(g.head))]...)
		}
		g.keepTail(seg)
		if i >= 0 {
			if err := g.lineEnd(); err != nil {
				return err
			}
		}
	}
	return nil
}

func (g *guard) keepTail(seg []byte) {
	if len(seg) >= tailKeep {
		g.tail = append(g.tail[:0], seg[len(seg)-tailKeep:]...)
		return
	}
	if over := len(g.tail) + len(seg) - tailKeep; over > 0 {
		g.tail = g.tail[:copy(g.tail, g.tail[over:])]
	}
	g.tail = append(g.tail, seg...)
}

// lineEnd handles a line end: either a literal follows ("{n}" before it)
// or the response is complete.
func (g *guard) lineEnd() error {
	line := bytes.TrimRight(g.tail, "\r\n")
	g.tail = g.tail[:0]
	if n := len(line); n > 0 && line[n-1] == '}' {
		if open := bytes.LastIndexByte(line, '{'); open >= 0 {
			digits := line[open+1 : n-1]
			digits = bytes.TrimSuffix(digits, []byte("+")) // LITERAL+ (not sent by servers, but harmless)
			if len(digits) > 0 && isDigitsOnly(digits) {
				size, err := strconv.ParseInt(string(digits), 10, 64)
				if err != nil {
					return g.fail(fmt.Errorf("the server announced a literal of %s bytes; a broken or hostile server", printable(string(digits))))
				}
				body := fetchHead.Match(g.head) && bodyBefore.Match(line[:open])
				if !body {
					if g.respBytes+size > g.max {
						return g.fail(fmt.Errorf("the server announced a literal of %d bytes that is not a message body (limit %d); a broken or hostile server", size, g.max))
					}
					g.respBytes += size
				}
				g.inLiteral, g.litLeft = size > 0, size
				return nil
			}
		}
	}
	// The response is complete. A tagged one completes the command.
	tagged := len(g.head) > 0 && g.head[0] != '*' && g.head[0] != '+'
	g.head, g.respBytes = g.head[:0], 0
	if tagged {
		g.cmdActive.Store(false)
	}
	return nil
}

func isDigitsOnly(b []byte) bool {
	for _, c := range b {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}
