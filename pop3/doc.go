// Package pop3 is the mailsync provider for POP3 mailboxes.
//
// It implements mailsync.Connector on top of github.com/knadh/go-pop3
// v1.0.1, adding what that library lacks: implicit TLS and StartTLS with the
// caller's CA pool, USER/PASS and XOAUTH2 logins, context cancellation,
// per-command idle and total timeouts, limits on what a server may send,
// typed errors, secrets scrubbed from server text, its own line-by-line
// reading of UIDL, LIST and CAPA answers, and a streaming RETR with
// dot-unstuffing, so a message is never held whole in memory.
//
// POP3 has no notion of "new since": List returns the whole maildrop (one
// UIDL and one LIST, whatever its size) with Listing.Complete set, keyed by
// UIDL, and the sync engine skips the keys it has already processed. The
// post-actions are LeaveUntouched and Delete; Delete sends DELE for each
// message and then QUIT, and reports success only when the server
// acknowledged the QUIT, since POP3 servers apply deletions only then.
//
// LeaveUntouched sends nothing, but POP3 gives the client no say over a
// read flag, and some servers set one when a message is retrieved:
// Courier marks mail read on RETR, and so does Dovecot unless
// pop3_no_flag_updates is set. On those servers mail that mailsync
// downloaded shows as read to IMAP or webmail users even with
// LeaveUntouched; "leave untouched" cannot be kept there over POP3. A
// connectortest harness for such a server declares it with
// connectortest.FetchMarksReader.
//
// A POP3 session holds the maildrop lock and numbers messages per session,
// so a Connector keeps one session open from List through Fetch until Ack
// (with Delete) or Close ends it; a later call opens a new session and maps
// the keys again. Use Check to test a configuration from an admin form.
//
// A hostile or broken server cannot exhaust memory or hold a call for
// ever: response lines outside message bodies are limited to 8 KiB, UIDL
// and LIST answers to Options.MaxMessages lines, CAPA to 1,000 lines, and
// each command to Options.CommandTimeout of silence and, in all, to
// CommandTimeout plus the time its bytes take at 32 KiB/s. Breaking a
// limit fails the call with an error wrapping mailsync.ErrConnection and
// ErrServerLimit and closes the session. Message bodies are streamed; the
// caller bounds their size (mailsync.Limits.MaxMessageBytes).
//
// A server may impose a minimum delay between logins (RFC 2449
// LOGIN-DELAY) and refuse an early one with [LOGIN-DELAY]. The login then
// fails with a *mailsync.ThrottledError whose RetryAfter is the server's
// delay: the response code's argument if it has one, else the value of the
// LOGIN-DELAY capability (asked with CAPA after the refusal), else
// DefaultLoginDelay. Until that time has passed the Connector does not try
// to log in again: every call fails at once with a ThrottledError carrying
// the time left, so a retry loop cannot spend its attempts on the server.
// Schedule the next sync after RetryAfter instead.
package pop3
