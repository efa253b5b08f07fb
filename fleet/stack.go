package fleet

// syncStackBytes is the stack a sync run by a worker grows to: a TLS
// handshake, the IMAP client and a database driver nest deeply.
const syncStackBytes = 16 << 10

// growStack grows the calling goroutine's stack to hold syncStackBytes
// more in one step, while it is still shallow.
//
// River runs every job on a new goroutine, which starts with a small
// stack; a sync then outgrows it several times, and every growth copies
// the stack and walks all of its frames. One growth at the start of the
// job copies a few frames instead.
//
//go:noinline
func growStack() {
	var frame [syncStackBytes]byte
	touchStack(frame[:])
}

// touchStack keeps growStack's frame from being optimised away.
//
//go:noinline
func touchStack(b []byte) { b[len(b)-1] = 1 }
