package main

import (
	"context"
	"fmt"
	"log/slog"

	"golang.org/x/oauth2"

	"github.com/mailsync/mailsync"
)

// apiConnector builds the connector of an OAuth API connection (Microsoft
// Graph or Gmail API).
func apiConnector(ctx context.Context, cc connectionConfig, ts oauth2.TokenSource, logger *slog.Logger) (mailsync.Connector, error) {
	return nil, fmt.Errorf("%w: OAuth API provider %q is not in this build yet", mailsync.ErrUnsupported, cc.OAuth.Provider)
}
