package gmail_test

import (
	"context"
	"testing"

	"github.com/mailsync/mailsync/connectortest"
	"github.com/mailsync/mailsync/internal/fakegmail"
)

func TestConformance(t *testing.T) {
	connectortest.Run(t, func(ctx context.Context, t *testing.T) (connectortest.Harness, error) {
		return &harness{e: newEnv(t, fakegmail.Options{})}, nil
	})
}

// The same suite with unpadded base64url and batch answers in reverse
// order, both of which the documentation allows. (Skipped under the race
// detector, where the 21 MiB message alone takes 20 s; TestFetchRawEncodings
// and TestFetchBatchingOrderAndGone cover both variants there.)
func TestConformanceUnpaddedReversed(t *testing.T) {
	if testing.Short() || raceEnabled {
		t.Skip("short or race")
	}
	connectortest.Run(t, func(ctx context.Context, t *testing.T) (connectortest.Harness, error) {
		return &harness{e: newEnv(t, fakegmail.Options{RawEncoding: fakegmail.Unpadded, ReverseBatch: true})}, nil
	})
}
