package sinktest_test

import (
	"testing"

	"github.com/mailsync/mailsync"
	"github.com/mailsync/mailsync/sinktest"
)

func TestMemorySink(t *testing.T) {
	sinktest.Run(t, func(t *testing.T) sinktest.Harness { return sinktest.Harness{Sink: mailsync.NewMemorySink()} })
}
