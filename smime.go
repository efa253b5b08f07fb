package mailsync

import (
	"bufio"
	"bytes"
	"crypto"
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
	// Roots verifies signatures; nil opens signed mail without verifying
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
	// Reason says why it is not verified.
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
				sig.Reason = err.Error()
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

// detachedSignature records the signer of a multipart/signed message's
// signature part; the signature over the content part is not verified
// (that needs the part's raw bytes, which the streaming parser does not
// keep).
func (ps *parseState) detachedSignature(sp *spool) {
	if ps.msg.Signature != nil {
		return
	}
	rc, err := sp.Open()
	if err != nil {
		return
	}
	der, err := io.ReadAll(io.LimitReader(rc, 1<<20))
	rc.Close()
	if err != nil {
		return
	}
	sig := &Signature{Detached: true, Reason: "detached signatures (multipart/signed) are not verified yet"}
	if p7, err := pkcs7.Parse(der); err == nil {
		sig.SignedBy = signerNames(p7.GetOnlySigner())
	}
	ps.msg.Signature = sig
}
