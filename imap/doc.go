// Package imap is the mailsync provider for IMAP servers, built on
// github.com/emersion/go-imap/v2.
//
// A Connector reads one folder (INBOX by default) or several
// (Options.Folders, e.g. {"INBOX", "Support"}) and implements
// mailsync.Connector:
//
//   - Security: implicit TLS (port 993, the default), STARTTLS (port 143),
//     or plaintext only with an explicit opt-in; certificates are verified,
//     Options.RootCAs trusts a private CA.
//   - Login with the password typed in at sync time (a mailsync.Secret), or
//     SASL XOAUTH2 / OAUTHBEARER with a token from any oauth2.TokenSource.
//   - The cursor is the folder's UIDVALIDITY and the highest UID listed
//     ("v1:<uidvalidity>:<uid>"), a message key is "<uidvalidity>:<uid>".
//     A sync with nothing new costs a SELECT (and at most one UID FETCH)
//     whatever the folder's size. A changed UIDVALIDITY re-lists the folder
//     with a note in the listing.
//   - Several folders: the cursor keeps one position per folder,
//     "v2;<folder>=<uidvalidity>:<uid>;…" (folder names URL-query escaped);
//     nothing new costs a SELECT (and at most one UID FETCH) per folder.
//     The first folder of the list is the primary one: its keys stay
//     "<uidvalidity>:<uid>" and a one-folder "v1" cursor is its position,
//     so a deployment that moves from Folder to Folders, or adds folders
//     after its folder, keeps its cursor and processed keys. The other
//     folders' keys are "<folder>/<uidvalidity>:<uid>" (folder URL-path
//     escaped), unique across folders; reordering the list changes which
//     keys are qualified (positions are by name and stay). Every listed
//     MessageRef carries its Folder (routing rules: field "folder"); Fetch
//     and Ack select the folder a key names. Only the listed folders are
//     read: Junk, Spam and the others never implicitly. Check examines
//     every folder read and lists the account's folders with their RFC
//     6154 special use (\Junk, \Sent …) so an admin can pick, warning when
//     a \Junk folder is read.
//   - Bodies are fetched in batches with BODY.PEEK[] (never setting \Seen)
//     and streamed from the network to the callback.
//   - Post-actions: mark read, move (MOVE, or COPY then UID EXPUNGE of just
//     the messages the server confirmed copying, never a plain EXPUNGE and
//     never a delete after a failed COPY; the folder is placed in the
//     server's personal namespace, e.g. "INBOX.Processed" on Courier and
//     Cyrus, and created when missing), delete (UID EXPUNGE, needs UIDPLUS).
//   - go-imap has no context: every call watches its ctx and closes the
//     connection when it ends, when the server stays silent for
//     Options.CommandTimeout, or when one command takes longer than that in
//     total. Broken connections surface as errors wrapping
//     mailsync.ErrConnection and the next call reconnects.
//   - A hostile server cannot exhaust memory: a response may carry at most
//     1 MiB outside message-body literals (a longer line, or a larger
//     literal in any other reply, fails the connection with
//     mailsync.ErrConnection); bodies stream. Server text in errors is
//     scrubbed of the password and tokens in every encoding sent.
//
// Check backs the admin's "test connection" button.
package imap
