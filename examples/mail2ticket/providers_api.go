package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"golang.org/x/oauth2"

	"github.com/mailsync/mailsync"
	"github.com/mailsync/mailsync/gmail"
	"github.com/mailsync/mailsync/graph"
)

// httpClient is the HTTP client of API and token requests: nil (each
// package's default), or one that also trusts the connection's ca_file.
// timeout 0 suits API calls that stream large bodies.
func httpClient(cc connectionConfig, timeout time.Duration) (*http.Client, error) {
	pool, err := rootCAs(cc)
	if err != nil || pool == nil {
		return nil, err
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = &tls.Config{RootCAs: pool}
	return &http.Client{Transport: tr, Timeout: timeout}, nil
}

// apiConnector builds the connector of an OAuth API connection (Microsoft
// Graph or Gmail API) with the token source made from its OAuth block.
func apiConnector(ctx context.Context, cc connectionConfig, ts oauth2.TokenSource, logger *slog.Logger) (mailsync.Connector, error) {
	client, err := httpClient(cc, 0)
	if err != nil {
		return nil, err
	}
	switch cc.OAuth.Provider {
	case mailsync.MicrosoftGraph:
		return graph.New(cc.Connection, graph.Options{Folder: cc.Folder, BaseURL: cc.APIEndpoint, TokenSource: ts, HTTPClient: client, Logger: logger})
	case mailsync.GmailAPI:
		o := gmail.Options{TokenSource: ts, Endpoint: cc.APIEndpoint, HTTPClient: client, Logger: logger}
		if cc.Folder != "" {
			o.Labels = []string{cc.Folder}
		}
		return gmail.New(cc.Connection, o)
	}
	return nil, fmt.Errorf("%w: OAuth API provider %q", mailsync.ErrUnsupported, cc.OAuth.Provider)
}
