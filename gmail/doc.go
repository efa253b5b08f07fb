// Package gmail is the mailsync provider for Gmail and Google Workspace
// mailboxes, through the Gmail API v1.
//
// It calls the API through Google's generated client,
// google.golang.org/api/gmail/v1, and authenticates with any
// oauth2.TokenSource: by default the oauthx one built from the
// connection's OAuth block.
//
//	c, err := gmail.New(conn, gmail.Options{
//		OAuth: oauthx.Options{OnRefreshToken: saveRefreshToken},
//	})
//
// # The generated client, and where the provider does without it
//
// New makes the client with gmail.NewService, option.WithHTTPClient and
// option.WithEndpoint. Through it go users.getProfile, messages.list and
// history.list (page by page, each page with its own retries),
// labels.list, get and create, messages.batchModify, modify, trash and
// batchDelete. Its *googleapi.Error answers are mapped onto the mailsync
// sentinels (see APIError, which keeps them for errors.As). The access
// token is added by the provider's HTTP transport rather than with
// option.WithTokenSource, which the library ignores next to
// option.WithHTTPClient and whose own transport could not drop a token
// the API rejects so that the next attempt refreshes it.
//
// Two things remain the provider's own code, because the library falls
// short there:
//
//   - The batch endpoint (POST /batch/gmail/v1): the Go client has no
//     batch support, and fetching thousands of messages one request each
//     is what the batch endpoint exists to avoid.
//   - messages.get format=raw: the library's Message.Raw is the whole
//     message as one base64url string in memory (and then its decoded
//     copy); the provider reads the answer as a stream and decodes the
//     raw field while it arrives (see Fetching).
//
// The generated client has a build-time price: it brings
// cloud.google.com/go/auth, gax-go, gRPC and protobuf (through s2a-go)
// and OpenTelemetry's HTTP instrumentation, even though the provider
// hands it its own HTTP client. Measured on 2 cores (Go 1.26.8,
// google.golang.org/api v0.312.0): the package's dependencies grow from
// 228 to 467 packages; a cold-cache go build ./gmail/ takes about 30 s
// more CPU time (65 s instead of 35 s; 15 s more wall time), and the
// mail2ticket example binary grows from 16.0 MB to 29.7 MB.
//
// # Listing and the cursor
//
// The first List reads the mailbox's history id (users.getProfile), then
// pages through messages.list for each configured label (default INBOX).
// The history id is read before the listing, so a message arriving
// meanwhile is listed now, or by the next List, or both; never by
// neither. The cursor is that history id (plus the labels' ids, see
// below). Later Lists page through history.list (messageAdded,
// messageDeleted and labelAdded records, filtered by label) from the
// cursor: mail that gains a configured label later (moved out of Spam,
// un-archived, labelled by hand) is new mail too, unless the label is
// removed again within the window (then a second request reads the
// labelRemoved records); a sync with nothing new is one request. Gmail keeps history for about a week; an older history id
// answers 404 and List lists the labels in full again, with a
// Listing.Notes entry. Keys are Gmail message ids, which never change, so
// the engine creates no duplicate tickets.
//
// The cursor text is "HISTORYID;LABEL…", e.g. "4207;INBOX". It records
// the ids of user labels so that later Lists need no labels.list, and
// the configured names so that changing the labels triggers a full
// listing (with a note).
//
// Gmail message ids grow with arrival time; with several labels, the
// listings are merged in that order.
//
// # Fetching
//
// Fetch asks for messages.get format=raw through the batch endpoint
// (POST /batch/gmail/v1), BatchSize calls per request (default 50, the
// largest size Google recommends; at most 100). A first sync of 2,000
// messages thus costs about 2,000/50 + 2,000/500 + 1 requests instead of
// 2,000 (measured in the tests: under 0.05 requests per message with
// mark-read included; a trash post-action adds one request per message). The raw message comes base64url-encoded inside
// a JSON string; it is decoded while it streams (padding optional, "="
// escaped as \u003d tolerated), so memory does not grow with message
// size. Only when the batch answers out of order are early answers kept,
// decoded, in memory, up to 16 MiB; beyond that they are asked for again.
//
// # Throttling and errors
//
// 429 and 403 rateLimitExceeded/userRateLimitExceeded are retried with
// exponential back-off and jitter (Options.MaxRetries, RetryBase,
// MaxWait), honouring Retry-After and Gmail's "Retry after <time>"; when
// throttling persists the error is a *mailsync.ThrottledError. Inside a
// batch, a throttled call stops the batch at that message (earlier ones
// are delivered, in order), the batch size halves and the rest is asked
// for again after the back-off. 5xx answers are retried the same way and
// end as mailsync.ErrConnection, like network failures. 401 (after the
// token source was asked for a fresh token once) is mailsync.ErrAuth; a
// revoked refresh token is mailsync.ErrConsentRequired; an unknown label
// is mailsync.ErrFolderNotFound. See APIError.
//
// # Post-actions and scopes
//
// MarkRead removes the UNREAD label; MoveToFolder adds the target label
// (created if missing) and removes the source labels: one
// messages.batchModify per 1,000 messages. Delete moves to the trash with
// one messages.trash per message (the API has no batch trash; four calls
// are in flight at once), or, only with Options.PermanentDelete, deletes
// for good with messages.batchDelete. All are idempotent and ignore
// messages that are gone. Scopes tells which OAuth
// scope a connection needs:
//
//   - https://www.googleapis.com/auth/gmail.readonly to leave mail untouched;
//   - https://www.googleapis.com/auth/gmail.modify for mark read, move and
//     trash (it includes reading);
//   - https://mail.google.com/ for Delete with PermanentDelete.
//
// Check tests a configuration for the admin form's "test connection"
// button.
package gmail
