package mailsync

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"unicode/utf8"
)

// This file holds the two kinds of key mailsync stores, both stored
// contracts: changing either format makes every host see its mail as new
// (idempotency keys) or forget what was done (state keys).
//
// Idempotency keys travel on every Ticket, FollowUp and Quarantined; the
// host stores them and refuses a second ticket with the same key.
//
//   - "ms1-" + the first 16 bytes, in hex, of SHA-256 over
//     "mailsync/v1\x00" + connection + "\x00" + Message-ID + "\x00" + hex SHA-256 of the raw message:
//     a message that was downloaded. It does not depend on the provider's
//     key, so a changed UIDVALIDITY, a restarted delta or a lost State
//     gives the same key.
//   - "ms1r-" + the first 16 bytes, in hex, of SHA-256 over
//     "mailsync/v1/ref\x00" + connection + "\x00" + provider key:
//     a message quarantined without being downloaded (over the size limit).
//
// State keys are the provider's message keys and the Message-IDs the
// engine hands to a State. Both come from a server or a mail, so they may
// be of any length; StateKey bounds them.

// keyForContent is the idempotency key of a downloaded message.
func keyForContent(connection, messageID, digest string) string {
	h := sha256.Sum256([]byte("mailsync/v1\x00" + connection + "\x00" + messageID + "\x00" + digest))
	return "ms1-" + hex.EncodeToString(h[:16])
}

// keyForRef is the idempotency key of a message that was not downloaded.
func keyForRef(connection, key string) string {
	h := sha256.Sum256([]byte("mailsync/v1/ref\x00" + connection + "\x00" + key))
	return "ms1r-" + hex.EncodeToString(h[:16])
}

// MaxStateKey is the longest key (a provider's message key or a
// Message-ID) that Sync hands to a State as it is; longer ones are hashed
// by StateKey.
const MaxStateKey = 200

// stateKeyHashPrefix starts a hashed state key.
const stateKeyHashPrefix = "~sha256:"

// StateKey is the form in which Sync stores a provider's message key or a
// Message-ID in a State: the key itself when it is at most MaxStateKey bytes
// of printable UTF-8, otherwise "~sha256:" and the hex SHA-256 of it (a key
// that itself starts with "~sha256:" is always hashed, so the two forms
// never collide; a key already in the hashed form is returned as it is, so
// StateKey(StateKey(k)) == StateKey(k)). Every key a State sees is therefore short and safe for
// any database; a host that looks keys up in its State itself uses this
// function too.
func StateKey(key string) string {
	if rest, ok := strings.CutPrefix(key, stateKeyHashPrefix); ok {
		if len(rest) == 2*sha256.Size && isLowerHex(rest) {
			return key
		}
	} else if len(key) <= MaxStateKey && printable(key) {
		return key
	}
	h := sha256.Sum256([]byte(key))
	return stateKeyHashPrefix + hex.EncodeToString(h[:])
}

func printable(s string) bool {
	if !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f {
			return false
		}
	}
	return true
}

func isLowerHex(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}
