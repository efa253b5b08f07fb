package main

import (
	"context"
	"fmt"
	"log/slog"

	"golang.org/x/oauth2"

	"github.com/mailsync/mailsync"
	"github.com/mailsync/mailsync/gmail"
	"github.com/mailsync/mailsync/graph"
)

// apiConnector builds the connector of an OAuth API connection (Microsoft
// Graph or Gmail API) with the token source made from its OAuth block.
func apiConnector(ctx context.Context, cc connectionConfig, ts oauth2.TokenSource, logger *slog.Logger) (mailsync.Connector, error) {
	switch cc.OAuth.Provider {
	case mailsync.MicrosoftGraph:
		return graph.New(cc.Connection, graph.Options{Folder: cc.Folder, BaseURL: cc.APIEndpoint, TokenSource: ts, Logger: logger})
	case mailsync.GmailAPI:
		o := gmail.Options{TokenSource: ts, Endpoint: cc.APIEndpoint, Logger: logger}
		if cc.Folder != "" {
			o.Labels = []string{cc.Folder}
		}
		return gmail.New(ctx, cc.Connection, o)
	}
	return nil, fmt.Errorf("%w: OAuth API provider %q", mailsync.ErrUnsupported, cc.OAuth.Provider)
}
