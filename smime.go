package mailsync

import (
	"bufio"
	"bytes"
	"crypto"
	"crypto/rsa"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/smallstep/pkcs7"

	"github.com/mailsync/mailsync/internal/mime"
)

// ErrEncrypted marks an S/MIME encrypted message that could not be opened:
// the Parser has no SMIMEKey callback, or it gave no key that opens it.
// Such mail is quarantined (raw, nothing lost), never an empty ticket.
var ErrEncrypted = errors.New("mailsync: encrypted message")

// SMIME configures how the Parser opens S/MIME mail. The library stores no
// key: the host's callback hands one over for one message.
type SMIME struct {
	// Roots verifies signatures, opaque (application/pkcs7-mime) and
	// detached (multipart/signed); nil opens signed mail without verifying
	// (Signature.Verified false, with the reason).
	Roots *x509.CertPool
	// Key returns the certificate and private key to decrypt an encrypted
	// message (nil: encrypted mail is quarantined with ErrEncrypted).
	Key func() (*x509.Certificate, crypto.PrivateKey, error)
}

// Signature is what the parser found of an S/MIME signature.
type Signature struct {
	// SignedBy names the signer: its certificate's e-mail addresses, or
	// its subject's common name.
	SignedBy []string
	// Verified is true when the signature is valid and its certificate
	// chains to SMIME.Roots.
	Verified bool
	// Reason says why it is not verified, in one line: "invalid: …" (the
	// content does not match the signature: changed on the way, e.g. a
	// gateway re-encoded it), "untrusted: …" (the certificate does not
	// chain to SMIME.Roots), "no trust roots given: not verified", "not
	// verified: too large" (a signed part over MaxSignedBytes), "signature
	// part missing…" or "signature part could not be read (…)…".
	Reason string
	// Detached is true for multipart/signed (the content travels beside
	// the signature); false for opaque application/pkcs7-mime signed data.
	Detached bool
}

// isPKCS7Mime reports whether a part is opaque S/MIME (signed or enveloped
// data), whatever spelling the mailer used.
func isPKCS7Mime(mediaType, filename string) bool {
	switch mediaType {
	case "application/pkcs7-mime", "application/x-pkcs7-mime":
		return true
	}
	return strings.EqualFold(filename, "smime.p7m")
}

// smime opens an opaque S/MIME part: signed data is verified (when Roots
// are given) and its content parsed as the message body; enveloped data is
// decrypted with the host's key and parsed likewise. The part itself is
// kept as an attachment (smime.p7m) only when it cannot be opened.
func (ps *parseState) smime(der []byte, depth int) (opened bool, err error) {
	if b, ok := pemOrBase64(der); ok {
		der = b
	}
	p7, perr := pkcs7.Parse(der)
	if perr != nil {
		ps.warn("S/MIME part could not be read (%v): kept as an attachment", perr)
		return false, nil
	}
	var content []byte
	switch {
	case len(p7.Signers) > 0:
		content = p7.Content
		sig := &Signature{SignedBy: signerNames(p7.GetOnlySigner())}
		switch roots := ps.p.SMIME.Roots; {
		case roots == nil:
			sig.Reason = "no trust roots given: not verified"
		default:
			if err := p7.VerifyWithChain(roots); err != nil {
				sig.Reason = verifyReason(err)
			} else {
				sig.Verified = true
			}
		}
		if ps.msg.Signature == nil {
			ps.msg.Signature = sig
		}
	case p7.Content == nil:
		key := ps.p.SMIME.Key
		if key == nil {
			return false, fmt.Errorf("%w: no decryption key (Parser.SMIME.Key)", ErrEncrypted)
		}
		cert, pk, err := key()
		if err != nil {
			return false, fmt.Errorf("%w: %v", ErrEncrypted, err)
		}
		if content, err = p7.Decrypt(cert, pk); err != nil {
			return false, fmt.Errorf("%w: %v", ErrEncrypted, err)
		}
		ps.warn("S/MIME encrypted message decrypted")
	default:
		content = p7.Content
	}
	br := bufio.NewReader(bytes.NewReader(content))
	h, inner, err := ps.dec.ReadHeader(br)
	if err != nil {
		return false, err
	}
	return true, ps.walk(h, inner, depth+1, "")
}

// pemOrBase64 undoes a second layer some mailers add around the DER.
func pemOrBase64(b []byte) ([]byte, bool) {
	t := bytes.TrimSpace(b)
	if len(t) == 0 || t[0] == 0x30 { // DER starts with a SEQUENCE
		return nil, false
	}
	dec, err := io.ReadAll((&mime.Decoder{}).TransferDecoder("base64", bytes.NewReader(t)))
	if err != nil || len(dec) == 0 || dec[0] != 0x30 {
		return nil, false
	}
	return dec, true
}

func signerNames(c *x509.Certificate) []string {
	if c == nil {
		return nil
	}
	if len(c.EmailAddresses) > 0 {
		return c.EmailAddresses
	}
	if c.Subject.CommonName != "" {
		return []string{c.Subject.CommonName}
	}
	return nil
}

// MaxSignedBytes bounds the signed part of a multipart/signed message that
// is kept in memory to verify its detached signature. A larger one is
// still read and delivered, its signature reported "not verified: too
// large".
const MaxSignedBytes = 16 << 20

// maxSignatureBytes bounds the signature part read (certificates and
// signer infos; a few KB in practice).
const maxSignatureBytes = 1 << 20

// smimeProtocol reports whether a multipart/signed's protocol parameter
// is S/MIME's (RFC 8551 §3.5; x-pkcs7-signature from older mailers). A
// missing one is taken for S/MIME too: the signature part's own type
// decides then.
func smimeProtocol(protocol string) bool {
	switch strings.ToLower(strings.TrimSpace(protocol)) {
	case "", "application/pkcs7-signature", "application/x-pkcs7-signature":
		return true
	}
	return false
}

// signedContent keeps the raw bytes of a multipart/signed's first part,
// the content its detached signature covers, up to max bytes: beyond that
// it keeps nothing and remembers that it overflowed.
type signedContent struct {
	buf  []byte
	max  int
	over bool
	// guessed: the multipart/signed named no protocol and was taken for
	// S/MIME; without a PKCS#7 signature part it is some other kind (a
	// PGP signature whose protocol parameter was lost) and is not reported.
	guessed bool
	sig     *spool // the signature part, once read
}

func (c *signedContent) Write(p []byte) (int, error) {
	switch {
	case c.over:
	case len(c.buf)+len(p) > c.max:
		c.over, c.buf = true, nil
	default:
		c.buf = append(c.buf, p...)
	}
	return len(p), nil
}

// verifyDetached verifies a multipart/signed message's detached signature
// over its first part's raw bytes against SMIME.Roots, and reports it in
// Message.Signature (the first signature of the message only). Whatever
// it finds — no signature part, garbage, a changed content — is reported,
// never an error: the content is delivered either way.
func (ps *parseState) verifyDetached(c *signedContent) {
	if ps.msg.Signature != nil {
		return
	}
	if c.sig == nil {
		if c.guessed {
			return
		}
		ps.msg.Signature = &Signature{Detached: true, Reason: "signature part missing: not verified"}
		return
	}
	sig := &Signature{Detached: true}
	ps.msg.Signature = sig
	defer func() {
		if r := recover(); r != nil { // a bug in the PKCS#7 decoder must not cost the content
			sig.Verified, sig.Reason = false, fmt.Sprintf("signature part could not be read (%v): not verified", r)
		}
	}()
	p7, err := readSignaturePart(c.sig)
	if err != nil {
		sig.Reason = fmt.Sprintf("signature part could not be read (%v): not verified", err)
		return
	}
	sig.SignedBy = signerNames(p7.GetOnlySigner())
	switch roots := ps.p.SMIME.Roots; {
	case len(p7.Signers) == 0:
		sig.Reason = "signature part has no signer: not verified"
	case roots == nil:
		sig.Reason = "no trust roots given: not verified"
	case c.over:
		sig.Reason = fmt.Sprintf("not verified: too large (signed part over %d bytes)", c.max)
	default:
		// The signature is over the canonical form (CRLF line ends); mail
		// stored with LF line ends is turned back into it. The bytes as
		// they came are tried too, for a signer that did not canonicalise.
		p7.Content = canonicalCRLF(c.buf)
		err := p7.VerifyWithChain(roots)
		if err != nil && !bytes.Equal(p7.Content, c.buf) {
			p7.Content = c.buf
			if p7.VerifyWithChain(roots) == nil {
				err = nil
			}
		}
		if err != nil {
			sig.Reason = verifyReason(err)
			return
		}
		sig.Verified = true
	}
}

// readSignaturePart parses a signature part (DER, or base64 again inside
// the transfer encoding, as some mailers send it).
func readSignaturePart(sp *spool) (*pkcs7.PKCS7, error) {
	rc, err := sp.Open()
	if err != nil {
		return nil, err
	}
	der, err := io.ReadAll(io.LimitReader(rc, maxSignatureBytes+1))
	rc.Close()
	if err != nil {
		return nil, err
	}
	if len(der) > maxSignatureBytes {
		return nil, fmt.Errorf("larger than %d bytes", maxSignatureBytes)
	}
	if b, ok := pemOrBase64(der); ok {
		der = b
	}
	return pkcs7.Parse(der)
}

// canonicalCRLF returns b with every line end a CRLF (b itself when it
// already is).
func canonicalCRLF(b []byte) []byte {
	bare := 0
	for i, c := range b {
		if c == '\n' && (i == 0 || b[i-1] != '\r') {
			bare++
		}
	}
	if bare == 0 {
		return b
	}
	out := make([]byte, 0, len(b)+bare)
	for i, c := range b {
		if c == '\n' && (i == 0 || b[i-1] != '\r') {
			out = append(out, '\r')
		}
		out = append(out, c)
	}
	return out
}

// verifyReason says in one line why a signature did not verify: the
// content does not match it ("invalid"), or its certificate does not
// chain to the roots ("untrusted").
func verifyReason(err error) string {
	var (
		digest  *pkcs7.MessageDigestMismatchError
		sigTime *pkcs7.SigningTimeNotValidError
	)
	msg := strings.Join(strings.Fields(err.Error()), " ")
	switch {
	case errors.As(err, &digest):
		return "invalid: the signed content was changed (message digest mismatch)"
	case errors.As(err, &sigTime):
		return "untrusted: signing time outside the certificate's validity"
	case strings.Contains(msg, "verify certificate chain"): // pkcs7 wraps x509's error with %v
		return "untrusted: " + strings.TrimPrefix(msg, "pkcs7: ")
	case errors.Is(err, rsa.ErrVerification), strings.Contains(msg, "verification"), strings.Contains(msg, "signature"):
		return "invalid: " + msg
	}
	return "not verified: " + msg
}

// detachedSignature records the signer of a signature part found outside
// a multipart/signed (attached to a multipart/mixed): what it covers is
// not defined, so it is not verified.
func (ps *parseState) detachedSignature(sp *spool) {
	if ps.msg.Signature != nil {
		return
	}
	sig := &Signature{Detached: true, Reason: "signature part outside a multipart/signed: not verified"}
	ps.msg.Signature = sig
	defer func() {
		if r := recover(); r != nil {
			sig.SignedBy = nil
		}
	}()
	if p7, err := readSignaturePart(sp); err == nil {
		sig.SignedBy = signerNames(p7.GetOnlySigner())
	}
}
