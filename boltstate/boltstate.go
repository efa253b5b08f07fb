// Package boltstate is a durable mailsync.State in one bbolt file.
//
// bbolt was chosen over SQLite because it is pure Go (no cgo, a small and
// fast build), keeps everything in a single file, and commits each
// transaction with fsync through a copy-on-write B+tree, so a kill -9 or a
// power cut leaves either the whole Record or none of it. Its file lock also
// stops two processes from syncing the same state at once.
package boltstate

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"

	"github.com/mailsync/mailsync"
)

var (
	bucketConnections = []byte("connections")
	bucketDone        = []byte("done")
	bucketThreads     = []byte("threads")
	bucketFailures    = []byte("failures")
	keyCursor         = []byte("cursor")
)

// Store is a mailsync.State backed by a bbolt file. It is safe for
// concurrent use within one process.
type Store struct {
	db *bolt.DB
}

var (
	_ mailsync.State          = (*Store)(nil)
	_ mailsync.FailureCounter = (*Store)(nil)
)

// Open opens (creating if needed) the state file at path. It fails after a
// second if another process holds the file.
func Open(path string) (*Store, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	if errors.Is(err, bolterrors.ErrTimeout) {
		return nil, fmt.Errorf("boltstate: %s is in use by another process", path)
	}
	if err != nil {
		return nil, fmt.Errorf("boltstate: open %s: %w", path, err)
	}
	if err := db.Update(func(tx *bolt.Tx) error {
		if _, err := tx.CreateBucketIfNotExists(bucketThreads); err != nil {
			return err
		}
		_, err := tx.CreateBucketIfNotExists(bucketConnections)
		return err
	}); err != nil {
		db.Close()
		return nil, fmt.Errorf("boltstate: init %s: %w", path, err)
	}
	return &Store{db: db}, nil
}

// Close closes the file.
func (s *Store) Close() error { return s.db.Close() }

func connBucket(tx *bolt.Tx, name string, create bool) (*bolt.Bucket, error) {
	root := tx.Bucket(bucketConnections)
	if !create {
		return root.Bucket([]byte(name)), nil
	}
	b, err := root.CreateBucketIfNotExists([]byte(name))
	if err != nil {
		return nil, err
	}
	if _, err := b.CreateBucketIfNotExists(bucketDone); err != nil {
		return nil, err
	}
	return b, nil
}

// Cursor implements mailsync.State.
func (s *Store) Cursor(ctx context.Context, connection string) (mailsync.Cursor, error) {
	var c mailsync.Cursor
	err := s.db.View(func(tx *bolt.Tx) error {
		b, _ := connBucket(tx, connection, false)
		if b != nil {
			c = mailsync.Cursor(b.Get(keyCursor))
		}
		return nil
	})
	return c, err
}

// Processed implements mailsync.State.
func (s *Store) Processed(ctx context.Context, connection string, keys []string) ([]bool, error) {
	out := make([]bool, len(keys))
	err := s.db.View(func(tx *bolt.Tx) error {
		b, _ := connBucket(tx, connection, false)
		if b == nil {
			return nil
		}
		done := b.Bucket(bucketDone)
		for i, k := range keys {
			out[i] = done.Get([]byte(k)) != nil
		}
		return nil
	})
	return out, err
}

// Record implements mailsync.State: one fsynced transaction.
func (s *Store) Record(ctx context.Context, connection string, r mailsync.Record) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return s.db.Update(func(tx *bolt.Tx) error {
		threads := tx.Bucket(bucketThreads)
		for id, t := range r.Threads {
			if threads.Get([]byte(id)) != nil {
				continue // the first ticket to own an id keeps it
			}
			if err := threads.Put([]byte(id), []byte(t)); err != nil {
				return err
			}
		}
		if connection == "" || (len(r.Done) == 0 && r.Cursor == nil) {
			return nil
		}
		b, err := connBucket(tx, connection, true)
		if err != nil {
			return err
		}
		done := b.Bucket(bucketDone)
		failures := b.Bucket(bucketFailures)
		for k, v := range r.Done {
			if err := done.Put([]byte(k), []byte("t"+v)); err != nil {
				return err
			}
			if failures != nil {
				if err := failures.Delete([]byte(k)); err != nil {
					return err
				}
			}
		}
		if r.Cursor != nil {
			return b.Put(keyCursor, []byte(*r.Cursor))
		}
		return nil
	})
}

// CountFailure implements mailsync.FailureCounter: one fsynced transaction.
func (s *Store) CountFailure(ctx context.Context, connection, key string) (int, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	n := 0
	err := s.db.Update(func(tx *bolt.Tx) error {
		b, err := connBucket(tx, connection, true)
		if err != nil {
			return err
		}
		f, err := b.CreateBucketIfNotExists(bucketFailures)
		if err != nil {
			return err
		}
		if v := f.Get([]byte(key)); len(v) == 8 {
			n = int(binary.BigEndian.Uint64(v))
		}
		n++
		return f.Put([]byte(key), binary.BigEndian.AppendUint64(nil, uint64(n)))
	})
	return n, err
}

// Threads implements mailsync.State.
func (s *Store) Threads(ctx context.Context, messageIDs []string) (map[string]string, error) {
	out := map[string]string{}
	err := s.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketThreads)
		for _, id := range messageIDs {
			if v := b.Get([]byte(id)); v != nil {
				out[id] = string(v)
			}
		}
		return nil
	})
	return out, err
}

// Prune implements mailsync.State.
func (s *Store) Prune(ctx context.Context, connection string, present []string) error {
	keep := make(map[string]bool, len(present))
	for _, k := range present {
		keep[k] = true
	}
	var gone [][]byte
	if err := s.db.View(func(tx *bolt.Tx) error {
		b, _ := connBucket(tx, connection, false)
		if b == nil {
			return nil
		}
		collect := func(k, _ []byte) error {
			if !keep[string(k)] {
				gone = append(gone, append([]byte(nil), k...))
			}
			return nil
		}
		if err := b.Bucket(bucketDone).ForEach(collect); err != nil {
			return err
		}
		if f := b.Bucket(bucketFailures); f != nil {
			return f.ForEach(collect)
		}
		return nil
	}); err != nil || len(gone) == 0 {
		return err // nothing to forget: no write, no fsync
	}
	return s.db.Update(func(tx *bolt.Tx) error {
		b, _ := connBucket(tx, connection, false)
		if b == nil {
			return nil
		}
		for _, name := range [][]byte{bucketDone, bucketFailures} {
			bk := b.Bucket(name)
			if bk == nil {
				continue
			}
			for _, k := range gone {
				if err := bk.Delete(k); err != nil {
					return err
				}
			}
		}
		return nil
	})
}

// ProcessedCount returns how many keys are recorded as done for connection.
func (s *Store) ProcessedCount(connection string) (int, error) {
	n := 0
	err := s.db.View(func(tx *bolt.Tx) error {
		b, _ := connBucket(tx, connection, false)
		if b != nil {
			n = b.Bucket(bucketDone).Stats().KeyN
		}
		return nil
	})
	return n, err
}
