package sinktest_test

import (
	"path/filepath"

	"github.com/mailsync/mailsync/jsonlsink"
	"testing"

	"github.com/mailsync/mailsync"
	"github.com/mailsync/mailsync/sinktest"
)

func TestMemorySink(t *testing.T) {
	sinktest.Run(t, func(t *testing.T) sinktest.Harness { return sinktest.Harness{Sink: mailsync.NewMemorySink()} })
}

func TestJSONLSink(t *testing.T) {
	for _, saveFiles := range []bool{false, true} {
		t.Run(map[bool]string{false: "hashes", true: "files"}[saveFiles], func(t *testing.T) {
			sinktest.Run(t, func(t *testing.T) sinktest.Harness {
				path := filepath.Join(t.TempDir(), "tickets.jsonl")
				open := func() mailsync.Sink {
					s, err := jsonlsink.Open(path, saveFiles)
					if err != nil {
						t.Fatal(err)
					}
					t.Cleanup(func() { s.Close() })
					return s
				}
				return sinktest.Harness{Sink: open(), Reopen: open}
			})
		})
	}
}
