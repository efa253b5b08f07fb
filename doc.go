// Package mailsync turns mailboxes into helpdesk tickets.
//
// A host (a ticketing backend) stores one Connection per mailbox, as its
// admin configured it, and a Mapping per ticket type. At sync time it makes a
// Connector with a provider package — imap, pop3, graph or gmail, or its own
// (see connectortest and examples/customprovider) — handing over the
// password or OAuth token source, and calls Sync with its own Sink:
//
//	rep, err := mailsync.Sync(ctx, connector, mapping, sink, mailsync.WithState(state))
//
// # Guarantees
//
// A message is acknowledged to the mailbox (the PostAction) and recorded in
// the State only after the sink accepted its ticket. Every ticket carries an
// idempotency key made from the connection, the Message-ID and a hash of the
// raw message, so re-runs, crashes, lost state and re-keyed mailboxes never
// create a second ticket. Mail that cannot be parsed or breaks a Limit is
// handed to Sink.Quarantine raw, never dropped.
//
// # Mapping fields
//
// A FieldMapping's Source is one of these e-mail fields:
//
//	from          "Name <address>" of the sender
//	from.address  the sender's address
//	from.name     the sender's display name
//	to, cc, reply_to  comma-separated "Name <address>" lists
//	subject       the decoded subject
//	body.text     the text body, or a text rendering of an HTML-only mail
//	body.html     the HTML body, sanitised
//	body.reply    the new text of body.text: quoted history, forwarded
//	              message and signature cut off (Message.ReplyMarker says
//	              which mark decided; the whole text when none was found)
//	body.reply_html  the same for body.html
//	body.quoted   the quoted history cut off, as text
//	body.signature  the signature cut off, as text
//	date          the Date header, RFC 3339
//	message_id    the Message-ID, without angle brackets
//	in_reply_to   the In-Reply-To ids, space-separated
//	references    the References ids, space-separated
//	attachments   the attachments' file names; the ticket also gets the attachments
//	header:<Name> any header, decoded (several values joined by ", ")
//
// or a Const. Default fills an empty value; MaxLength truncates.
//
// # Errors
//
// Errors wrap the sentinels of this package (ErrAuth, ErrTLS,
// ErrPlaintextRefused, ErrConnection, ErrThrottled, ErrConsentRequired,
// ErrInvalidConfig, ErrNotConnectedWith, …), so callers test them with
// errors.Is whatever the provider; *ConfigError, *ThrottledError and
// *MessageError carry details for errors.As.
package mailsync
