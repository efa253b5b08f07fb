package mailsync

import (
	"bytes"
	"errors"
	"io"
	"os"
	"sync"
)

// spool buffers a stream in memory up to a threshold and in a temporary file
// beyond it, so large messages and attachments never sit whole in memory.
// Write it once, then open as many readers as needed; Close removes the file.
type spool struct {
	dir       string
	threshold int
	mem       *bytes.Buffer
	file      *os.File
	size      int64
	pool      *bufferPool

	mu     sync.Mutex
	closed bool
}

// bufferPool recycles spool buffers across the messages of one Sync, so a
// sync does not allocate and zero a fresh buffer per message. Each Sync
// has its own; nil means no recycling.
type bufferPool struct{ p sync.Pool }

func newBufferPool() *bufferPool {
	return &bufferPool{p: sync.Pool{New: func() any { return new(bytes.Buffer) }}}
}

func (bp *bufferPool) get() *bytes.Buffer {
	if bp == nil {
		return new(bytes.Buffer)
	}
	b := bp.p.Get().(*bytes.Buffer)
	b.Reset()
	return b
}

// put returns b for reuse; buffers that grew past max are dropped.
func (bp *bufferPool) put(b *bytes.Buffer, max int) {
	if bp != nil && b != nil && b.Cap() <= max {
		bp.p.Put(b)
	}
}

func newSpool(dir string, threshold int, pool *bufferPool) *spool {
	return &spool{dir: dir, threshold: threshold, pool: pool, mem: pool.get()}
}

// Write appends p, moving to a temporary file once the threshold is passed.
func (s *spool) Write(p []byte) (int, error) {
	if s.file == nil && s.mem.Len()+len(p) > s.threshold {
		f, err := os.CreateTemp(s.dir, "mailsync-spool-*")
		if err != nil {
			return 0, err
		}
		// Unlink at once where the OS allows it, so a crash leaves no file behind.
		if rmErr := os.Remove(f.Name()); rmErr != nil {
			f.Close()
			return 0, rmErr
		}
		if _, err := f.Write(s.mem.Bytes()); err != nil {
			f.Close()
			return 0, err
		}
		s.pool.put(s.mem, 2*s.threshold+64<<10)
		s.mem = nil
		s.file = f
	}
	var n int
	var err error
	if s.file != nil {
		n, err = s.file.Write(p)
	} else {
		n, err = s.mem.Write(p)
	}
	s.size += int64(n)
	return n, err
}

// Size returns the number of bytes written.
func (s *spool) Size() int64 { return s.size }

// Reader returns a new reader over everything written so far.
func (s *spool) Reader() io.Reader {
	if s.file != nil {
		return io.NewSectionReader(s.file, 0, s.size)
	}
	if s.mem == nil {
		return bytes.NewReader(nil)
	}
	return bytes.NewReader(s.mem.Bytes())
}

// Open returns a ReadCloser over the content, for Attachment.Open.
func (s *spool) Open() (io.ReadCloser, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, errors.New("mailsync: attachment read after its ticket was handed over")
	}
	return io.NopCloser(s.Reader()), nil
}

// Close releases the temporary file.
func (s *spool) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	// Readers handed out earlier must be done by now (the sink's contract),
	// so the buffer can serve the next message.
	s.pool.put(s.mem, 2*s.threshold+64<<10)
	s.mem = nil
	if s.file != nil {
		err := s.file.Close()
		s.file = nil
		return err
	}
	return nil
}
