// Package connectortest is the conformance suite every mailsync provider
// passes, in the spirit of gocloud.dev's drivertest: a provider's test
// supplies a Harness that can put mail into a real (or faithfully faked)
// mailbox, and Run checks the behaviour Sync relies on.
//
//	func TestConformance(t *testing.T) {
//		connectortest.Run(t, func(ctx context.Context, t *testing.T) (connectortest.Harness, error) {
//			return newMyHarness(ctx, t)
//		})
//	}
package connectortest

import (
	"context"
	"testing"

	"github.com/mailsync/mailsync"
)

// SourceFolder is the MailboxMessage.Folder value of messages in the folder
// the connector reads.
const SourceFolder = ""

// MoveFolder is the folder (Gmail: label) the suite moves messages to. A
// harness must let the connector move there, creating it if needed.
const MoveFolder = "Processed"

// MoveFolderNamer may be implemented by a Harness whose server shows the
// folder the suite moves to under another name than MoveFolder: an IMAP
// server whose personal namespace has a prefix keeps it as
// "INBOX.Processed" (Courier, Cyrus). The suite still asks the connector to
// move to MoveFolder, and expects Inspect to report moved messages with
// Folder == ServerMoveFolder(). Optional; without it, MoveFolder.
type MoveFolderNamer interface {
	ServerMoveFolder() string
}

// ServerMoveFolder is the name h's server gives MoveFolder: h's
// ServerMoveFolder when it implements MoveFolderNamer, else MoveFolder.
func ServerMoveFolder(h Harness) string {
	if n, ok := h.(MoveFolderNamer); ok {
		if f := n.ServerMoveFolder(); f != "" {
			return f
		}
	}
	return MoveFolder
}

// Harness gives the suite one fresh, empty mailbox.
type Harness interface {
	// MakeConnector opens a new connector on the mailbox. The suite calls it
	// once per sync, as a host would.
	MakeConnector(ctx context.Context) (mailsync.Connector, error)
	// Deliver adds a raw RFC 5322 message to the folder the connector reads.
	Deliver(ctx context.Context, raw []byte) error
	// Inspect lists the mailbox's messages: those in the source folder with
	// Folder == SourceFolder, those in MoveFolder with Folder == MoveFolder
	// (or the name ServerMoveFolder gives it).
	// Deleted (or trashed) messages are not listed.
	Inspect(ctx context.Context) ([]MailboxMessage, error)
	// PostActions lists the post-actions the provider supports besides
	// LeaveUntouched; the suite expects ErrUnsupported for the others.
	PostActions() []mailsync.ActionKind
	// Close releases the mailbox.
	Close()
}

// MailboxMessage is what Inspect reports of one message.
type MailboxMessage struct {
	MessageID string // without angle brackets
	Folder    string // SourceFolder or MoveFolder (see ServerMoveFolder)
	Seen      bool   // read flag, where the provider has one
}

// HarnessMaker returns a new harness with an empty mailbox for one test.
type HarnessMaker func(ctx context.Context, t *testing.T) (Harness, error)
