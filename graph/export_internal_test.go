package graph

import "github.com/mailsync/mailsync"

// DeriveClientState exposes the derivation to the external tests, which
// forge notifications with a genuine clientState for hostile URLs.
func DeriveClientState(key mailsync.Secret, conn string) string { return deriveClientState(key, conn) }
