// Package mime is the lenient MIME layer under mailsync's Parser: header
// blocks, Content-Type parameters (RFC 2045, 2231), multipart splitting,
// transfer encodings, charsets, encoded words (RFC 2047), addresses,
// message identifiers and dates, and the HTML side of mail (sanitiser
// policy, HTML to text, remote content).
//
// It is internal on purpose: users of mailsync who need a MIME API use
// go-message. Its parts are mailsync's own because go-message's refuse mail
// that clients show (a header line without a name, boundary=----=_Part…
// unquoted, a misspelt closing boundary) and have no limits on part headers
// or nesting. It never panics on its input and reports each repair it makes
// through a warning callback.
package mime
