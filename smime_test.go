package mailsync

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"errors"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/smallstep/pkcs7"
)

// testPKI is a CA and a signer certificate made for the test.
type testPKI struct {
	roots *x509.CertPool
	cert  *x509.Certificate
	key   *rsa.PrivateKey
}

func newTestPKI(t *testing.T) testPKI {
	t.Helper()
	caKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "Test CA"}, NotBefore: time.Now().Add(-time.Hour),
		NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, _ := rsa.GenerateKey(rand.Reader, 2048)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "Ana Silva"}, EmailAddresses: []string{"ana.silva@cliente.pt"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageEmailProtection}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	roots := x509.NewCertPool()
	roots.AddCert(ca)
	return testPKI{roots: roots, cert: cert, key: key}
}

const smimeContent = "Content-Type: text/plain; charset=utf-8\r\n\r\nA impressora não imprime (assinado).\r\n"

func opaqueMail(der []byte, smimeType string) string {
	enc := base64.StdEncoding.EncodeToString(der)
	var b strings.Builder
	for len(enc) > 76 {
		b.WriteString(enc[:76] + "\r\n")
		enc = enc[76:]
	}
	b.WriteString(enc + "\r\n")
	return "From: Ana Silva <ana.silva@cliente.pt>\r\nTo: suporte@empresa.pt\r\nSubject: assinado\r\nMIME-Version: 1.0\r\n" +
		"Content-Type: application/x-pkcs7-mime; smime-type=" + smimeType + "; name=smime.p7m\r\nContent-Transfer-Encoding: base64\r\n" +
		"Content-Disposition: attachment; filename=smime.p7m\r\n\r\n" + b.String()
}

func (p testPKI) sign(t *testing.T, content string) []byte {
	t.Helper()
	sd, err := pkcs7.NewSignedData([]byte(content))
	if err != nil {
		t.Fatal(err)
	}
	if err := sd.AddSigner(p.cert, p.key, pkcs7.SignerInfoConfig{}); err != nil {
		t.Fatal(err)
	}
	der, err := sd.Finish()
	if err != nil {
		t.Fatal(err)
	}
	return der
}

// Opaque-signed mail is opened: its content is the ticket, verified
// against the host's roots; a tampered one is opened but not verified.
func TestParseSMIMEOpaqueSigned(t *testing.T) {
	pki := newTestPKI(t)
	der := pki.sign(t, smimeContent)
	parse := func(p *Parser, raw string) *Message {
		m, err := p.Parse(strings.NewReader(raw))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { m.Close() })
		return m
	}
	m := parse(&Parser{SMIME: SMIME{Roots: pki.roots}}, opaqueMail(der, "signed-data"))
	if strings.TrimSpace(m.Text) != "A impressora não imprime (assinado)." {
		t.Fatalf("text %q (warnings %v)", m.Text, m.Warnings)
	}
	if m.Signature == nil || !m.Signature.Verified || m.Signature.SignedBy[0] != "ana.silva@cliente.pt" || m.Signature.Detached {
		t.Fatalf("signature %+v", m.Signature)
	}
	for _, a := range m.Attachments {
		if a.Filename == "smime.p7m" {
			t.Fatal("the opened smime.p7m is also an attachment")
		}
	}
	// Without roots: opened, not verified.
	m = parse(&Parser{}, opaqueMail(der, "signed-data"))
	if m.Signature == nil || m.Signature.Verified || !strings.Contains(m.Signature.Reason, "no trust roots") || !strings.Contains(m.Text, "assinado") {
		t.Fatalf("without roots: %+v %q", m.Signature, m.Text)
	}
	// Tampered content: opened, not verified.
	bad := bytes.Replace(der, []byte("assinado"), []byte("alterado"), 1)
	m = parse(&Parser{SMIME: SMIME{Roots: pki.roots}}, opaqueMail(bad, "signed-data"))
	if m.Signature == nil || m.Signature.Verified || m.Signature.Reason == "" || !strings.Contains(m.Text, "alterado") {
		t.Fatalf("tampered: %+v %q", m.Signature, m.Text)
	}
	// A signer the roots do not know.
	m = parse(&Parser{SMIME: SMIME{Roots: newTestPKI(t).roots}}, opaqueMail(der, "signed-data"))
	if m.Signature.Verified {
		t.Fatal("verified against foreign roots")
	}
}

// Encrypted mail is decrypted with the host's key; without one it is
// quarantined with ErrEncrypted, never an empty ticket.
func TestParseSMIMEEncrypted(t *testing.T) {
	pki := newTestPKI(t)
	pkcs7.ContentEncryptionAlgorithm = pkcs7.EncryptionAlgorithmAES256CBC
	der, err := pkcs7.Encrypt([]byte(smimeContent), []*x509.Certificate{pki.cert})
	if err != nil {
		t.Fatal(err)
	}
	raw := opaqueMail(der, "enveloped-data")
	p := &Parser{SMIME: SMIME{Key: func() (*x509.Certificate, crypto.PrivateKey, error) { return pki.cert, pki.key, nil }}}
	m, err := p.Parse(strings.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if !strings.Contains(m.Text, "assinado") {
		t.Fatalf("decrypted text %q", m.Text)
	}
	for name, p := range map[string]*Parser{
		"no key":    {},
		"wrong key": {SMIME: SMIME{Key: func() (*x509.Certificate, crypto.PrivateKey, error) { o := newTestPKI(t); return o.cert, o.key, nil }}},
	} {
		if _, err := p.Parse(strings.NewReader(raw)); !errors.Is(err, ErrEncrypted) {
			t.Errorf("%s: %v, want ErrEncrypted", name, err)
		}
	}
	// Through Sync: quarantined raw with the typed reason.
	sink := NewMemorySink()
	rep, err := Sync(context.Background(), &oneMessage{raw: raw}, DefaultMapping("incident"), sink)
	if err != nil {
		t.Fatal(err)
	}
	q := sink.QuarantinedMessages()
	if rep.Quarantined != 1 || len(q) != 1 || !errors.Is(q[0].Err, ErrEncrypted) || len(sink.Tickets()) != 0 {
		t.Fatalf("report %+v quarantined %+v", rep, q)
	}
	// With the key through WithSMIME: a ticket with the decrypted text.
	sink = NewMemorySink()
	rep, err = Sync(context.Background(), &oneMessage{raw: raw}, DefaultMapping("incident"), sink, WithSMIME(p.SMIME))
	if err != nil || rep.Created != 1 || !strings.Contains(sink.FieldValues("description")[0], "assinado") {
		t.Fatalf("with the key: %+v %v", rep, err)
	}
}

// multipart/signed: the content is the body; the signer is reported, not verified.
func TestParseSMIMEDetachedReported(t *testing.T) {
	pki := newTestPKI(t)
	sd, _ := pkcs7.NewSignedData([]byte(smimeContent))
	_ = sd.AddSigner(pki.cert, pki.key, pkcs7.SignerInfoConfig{})
	sd.Detach()
	der, _ := sd.Finish()
	raw := "From: a@cliente.pt\r\nSubject: s\r\nMIME-Version: 1.0\r\nContent-Type: multipart/signed; protocol=\"application/pkcs7-signature\"; micalg=sha-256; boundary=b\r\n\r\n" +
		"--b\r\n" + smimeContent + "--b\r\nContent-Type: application/pkcs7-signature; name=smime.p7s\r\nContent-Transfer-Encoding: base64\r\n\r\n" +
		base64.StdEncoding.EncodeToString(der) + "\r\n--b--\r\n"
	m := parseGap(t, raw)
	if !strings.Contains(m.Text, "assinado") || m.Signature == nil || !m.Signature.Detached || m.Signature.Verified || m.Signature.SignedBy[0] != "ana.silva@cliente.pt" {
		t.Fatalf("text %q signature %+v", m.Text, m.Signature)
	}
}

// signedPart is the first part of a multipart/signed test mail: the bytes
// its detached signature covers (RFC 1847: up to, not including, the CRLF
// before the next boundary).
const signedPart = "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n" +
	"A impressora n=C3=A3o imprime (assinado).\r\nCumprimentos,\r\nAna\r\n"

// detachedSig signs content with a detached signature.
func (p testPKI) detachedSig(t *testing.T, content string) []byte {
	t.Helper()
	sd, err := pkcs7.NewSignedData([]byte(content))
	if err != nil {
		t.Fatal(err)
	}
	if err := sd.AddSigner(p.cert, p.key, pkcs7.SignerInfoConfig{}); err != nil {
		t.Fatal(err)
	}
	sd.Detach()
	der, err := sd.Finish()
	if err != nil {
		t.Fatal(err)
	}
	return der
}

// signedMail is a multipart/signed mail with content as its first part and
// sigPart (header and body) as its second.
func signedMail(protocol, content, sigPart string) string {
	return "From: Ana Silva <ana.silva@cliente.pt>\r\nTo: suporte@empresa.pt\r\nSubject: assinado\r\nMIME-Version: 1.0\r\n" +
		"Content-Type: multipart/signed; protocol=\"" + protocol + "\"; micalg=sha-256; boundary=\"----=_Part_1\"\r\n\r\n" +
		"This is an S/MIME signed message\r\n\r\n" +
		"------=_Part_1\r\n" + content + "\r\n------=_Part_1\r\n" + sigPart + "\r\n------=_Part_1--\r\n"
}

func p7sPart(der []byte) string {
	enc := base64.StdEncoding.EncodeToString(der)
	var b strings.Builder
	for len(enc) > 76 {
		b.WriteString(enc[:76] + "\r\n")
		enc = enc[76:]
	}
	b.WriteString(enc)
	return "Content-Type: application/pkcs7-signature; name=smime.p7s\r\nContent-Transfer-Encoding: base64\r\n" +
		"Content-Disposition: attachment; filename=smime.p7s\r\n\r\n" + b.String()
}

// Detached multipart/signed signatures are verified against SMIME.Roots
// over the first part's raw bytes, and reported as opaque ones are; the
// content is delivered whatever the outcome.
func TestParseSMIMEDetachedVerify(t *testing.T) {
	pki := newTestPKI(t)
	der := pki.detachedSig(t, signedPart)
	valid := signedMail("application/pkcs7-signature", signedPart, p7sPart(der))
	withRoots := &Parser{SMIME: SMIME{Roots: pki.roots}}
	parse := func(t *testing.T, p *Parser, raw string) *Message {
		t.Helper()
		m, err := p.Parse(strings.NewReader(raw))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { m.Close() })
		if !strings.Contains(m.Text, "imprime") {
			t.Fatalf("content not delivered: text %q (warnings %v)", m.Text, m.Warnings)
		}
		if m.Signature == nil || !m.Signature.Detached {
			t.Fatalf("signature %+v", m.Signature)
		}
		return m
	}
	wantReason := func(t *testing.T, m *Message, prefix string) {
		t.Helper()
		if m.Signature.Verified || !strings.HasPrefix(m.Signature.Reason, prefix) {
			t.Fatalf("signature %+v, want not verified with a reason starting %q", m.Signature, prefix)
		}
	}
	t.Run("valid", func(t *testing.T) {
		m := parse(t, withRoots, valid)
		if !m.Signature.Verified || m.Signature.Reason != "" || len(m.Signature.SignedBy) != 1 || m.Signature.SignedBy[0] != "ana.silva@cliente.pt" {
			t.Fatalf("signature %+v", m.Signature)
		}
		if !strings.Contains(m.Text, "A impressora não imprime (assinado).") {
			t.Fatalf("text %q", m.Text)
		}
	})
	t.Run("x-pkcs7-signature", func(t *testing.T) {
		raw := strings.ReplaceAll(signedMail("application/x-pkcs7-signature", signedPart, p7sPart(der)), "application/pkcs7-signature", "application/x-pkcs7-signature")
		if m := parse(t, withRoots, raw); !m.Signature.Verified {
			t.Fatalf("signature %+v", m.Signature)
		}
	})
	t.Run("one byte tampered", func(t *testing.T) {
		m := parse(t, withRoots, strings.Replace(valid, "(assinado)", "(assinadO)", 1))
		wantReason(t, m, "invalid")
		if m.Signature.SignedBy[0] != "ana.silva@cliente.pt" || !strings.Contains(m.Text, "(assinadO)") {
			t.Fatalf("signature %+v text %q", m.Signature, m.Text)
		}
	})
	t.Run("signer not under the roots", func(t *testing.T) {
		m := parse(t, &Parser{SMIME: SMIME{Roots: newTestPKI(t).roots}}, valid)
		wantReason(t, m, "untrusted")
		if !strings.Contains(m.Signature.Reason, "unknown authority") {
			t.Fatalf("reason %q", m.Signature.Reason)
		}
	})
	t.Run("no roots", func(t *testing.T) {
		m := parse(t, &Parser{}, valid)
		wantReason(t, m, "no trust roots given: not verified")
		if m.Signature.SignedBy[0] != "ana.silva@cliente.pt" {
			t.Fatalf("signature %+v", m.Signature)
		}
	})
	t.Run("LF line ends", func(t *testing.T) {
		if m := parse(t, withRoots, strings.ReplaceAll(valid, "\r\n", "\n")); !m.Signature.Verified {
			t.Fatalf("signature %+v", m.Signature)
		}
	})
	t.Run("transfer encoding changed by a gateway", func(t *testing.T) {
		// The quoted-printable part decoded to 8bit on the way.
		raw := strings.Replace(strings.Replace(valid, "quoted-printable", "8bit", 1), "n=C3=A3o", "não", 1)
		m := parse(t, withRoots, raw)
		wantReason(t, m, "invalid")
		if !strings.Contains(m.Text, "A impressora não imprime") {
			t.Fatalf("text %q", m.Text)
		}
	})
	t.Run("signature part garbage", func(t *testing.T) {
		garbage := "Content-Type: application/pkcs7-signature; name=smime.p7s\r\nContent-Transfer-Encoding: base64\r\n\r\nMIIBAAAAAAAA////\r\n"
		m := parse(t, withRoots, signedMail("application/pkcs7-signature", signedPart, garbage))
		wantReason(t, m, "signature part could not be read")
		// A truncated signature.
		m = parse(t, withRoots, signedMail("application/pkcs7-signature", signedPart, p7sPart(der[:len(der)/2])))
		wantReason(t, m, "signature part could not be read")
	})
	t.Run("signature part missing", func(t *testing.T) {
		raw := strings.Replace(valid, "\r\n------=_Part_1\r\n"+p7sPart(der), "", 1)
		m := parse(t, withRoots, raw)
		wantReason(t, m, "signature part missing")
	})
	t.Run("too large", func(t *testing.T) {
		big := "Content-Type: multipart/mixed; boundary=in\r\n\r\n--in\r\n" + strings.TrimSuffix(signedPart, "\r\n") +
			"\r\n--in\r\nContent-Type: application/octet-stream\r\nContent-Disposition: attachment; filename=big.bin\r\n\r\n" +
			strings.Repeat(strings.Repeat("x", 98)+"\r\n", MaxSignedBytes/100+1) + "--in--\r\n"
		m := parse(t, withRoots, signedMail("application/pkcs7-signature", big, p7sPart(pki.detachedSig(t, big))))
		wantReason(t, m, "not verified: too large")
		if len(m.Attachments) < 1 || m.Attachments[0].Filename != "big.bin" || m.Attachments[0].Size < MaxSignedBytes {
			t.Fatalf("attachments %+v", m.Attachments)
		}
	})
}

// TestParseSMIMEDetachedNoCopyWithoutRoots: without trust roots a
// signature cannot be verified, so the signed part is not copied: parsing
// a multipart/signed mail with an 8 MiB attachment allocates about what
// the same mail in a multipart/mixed does, not 8 MiB more.
func TestParseSMIMEDetachedNoCopyWithoutRoots(t *testing.T) {
	pki := newTestPKI(t)
	big := "Content-Type: multipart/mixed; boundary=in\r\n\r\n--in\r\n" + strings.TrimSuffix(signedPart, "\r\n") +
		"\r\n--in\r\nContent-Type: application/octet-stream\r\nContent-Disposition: attachment; filename=big.bin\r\n\r\n" +
		strings.Repeat(strings.Repeat("x", 98)+"\r\n", (8<<20)/100) + "--in--\r\n"
	signed := signedMail("application/pkcs7-signature", big, p7sPart(pki.detachedSig(t, big)))
	mixed := strings.Replace(signed, "multipart/signed", "multipart/mixed", 1)
	allocated := func(raw string) uint64 {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		m, err := (&Parser{}).Parse(strings.NewReader(raw))
		if err != nil {
			t.Fatal(err)
		}
		runtime.ReadMemStats(&after)
		m.Close()
		return after.TotalAlloc - before.TotalAlloc
	}
	s, x := allocated(signed), allocated(mixed)
	if s > x+(4<<20) {
		t.Errorf("multipart/signed without roots allocated %d MiB, multipart/mixed %d MiB: the signed part was copied", s>>20, x>>20)
	}
}

// Through Sync, a multipart/signed mail is a ticket with its content
// whether or not its signature verifies.
func TestSyncSMIMEDetached(t *testing.T) {
	pki := newTestPKI(t)
	valid := signedMail("application/pkcs7-signature", signedPart, p7sPart(pki.detachedSig(t, signedPart)))
	for name, raw := range map[string]string{
		"valid":    valid,
		"tampered": strings.Replace(valid, "(assinado)", "(assinadO)", 1),
		"garbage":  signedMail("application/pkcs7-signature", signedPart, "Content-Type: application/pkcs7-signature\r\n\r\n\x30\x80garbage"),
	} {
		sink := NewMemorySink()
		rep, err := Sync(context.Background(), &oneMessage{raw: raw}, DefaultMapping("incident"), sink, WithSMIME(SMIME{Roots: pki.roots}))
		if err != nil || rep.Created != 1 || !strings.Contains(sink.FieldValues("description")[0], "imprime") {
			t.Errorf("%s: report %+v, err %v", name, rep, err)
		}
	}
}

// Real signed mail from the corpus. raw_email_with_nested_attachment.eml
// (Apple Mail, 2007) is a multipart/signed whose fixture was cut short
// (its image and its signature, which announces 1,575 bytes of
// certificates in 939 bytes): reported as unreadable, content delivered.
// raw_email2.eml is a forward that kept only the smime.p7s of the original
// (a real signature, signer smhaunch@mac.com) in a multipart/mixed: its
// signer is reported, and it is not verified since it covers nothing that
// is in the mail.
func TestParseSMIMEDetachedCorpus(t *testing.T) {
	for _, c := range []struct {
		file, text, signer, reason string
	}{
		{"raw_email_with_nested_attachment.eml", "Here is a test of an attachment", "", "signature part could not be read"},
		{"raw_email2.eml", "We should not include these files", "smhaunch@mac.com", "signature part outside a multipart/signed"},
	} {
		raw, err := os.ReadFile(filepath.Join("testdata", "corpus", "mime_emails", c.file))
		if err != nil {
			t.Fatal(err)
		}
		m, err := (&Parser{SMIME: SMIME{Roots: newTestPKI(t).roots}}).Parse(bytes.NewReader(raw))
		if err != nil {
			t.Fatal(err)
		}
		sig := m.Signature
		m.Close()
		if !strings.Contains(m.Text, c.text) || sig == nil || !sig.Detached || sig.Verified || !strings.HasPrefix(sig.Reason, c.reason) ||
			c.signer != "" && (len(sig.SignedBy) != 1 || sig.SignedBy[0] != c.signer) {
			t.Errorf("%s: text %q signature %+v", c.file, m.Text, sig)
		}
	}
}

// A multipart/signed nested in the signed part of another (up to
// MaxDepth deep) is copied once, by the outermost one, not once per level:
// each level would keep its own copy of the same bytes, up to
// MaxSignedBytes each.
func TestParseSMIMENestedSignedCopiedOnce(t *testing.T) {
	pki := newTestPKI(t)
	big := "Content-Type: multipart/mixed; boundary=in\r\n\r\n--in\r\n" + strings.TrimSuffix(signedPart, "\r\n") +
		"\r\n--in\r\nContent-Type: application/octet-stream\r\nContent-Disposition: attachment; filename=big.bin\r\n\r\n" +
		strings.Repeat(strings.Repeat("x", 98)+"\r\n", (4<<20)/100) + "--in--\r\n"
	sig := p7sPart(pki.detachedSig(t, big))
	nested := big
	for i := range 4 {
		b := fmt.Sprintf("nest%d", i)
		nested = "Content-Type: multipart/signed; protocol=\"application/pkcs7-signature\"; micalg=sha-256; boundary=\"" + b + "\"\r\n\r\n" +
			"--" + b + "\r\n" + nested + "\r\n--" + b + "\r\n" + sig + "\r\n--" + b + "--\r\n"
	}
	allocated := func(raw string) uint64 {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		m, err := (&Parser{SMIME: SMIME{Roots: pki.roots}}).Parse(strings.NewReader(raw))
		if err != nil {
			t.Fatal(err)
		}
		runtime.ReadMemStats(&after)
		// The outermost signature, over all of it, is the one reported.
		if m.Signature == nil || !m.Signature.Verified {
			t.Errorf("signature %+v, want the outer one, verified", m.Signature)
		}
		m.Close()
		return after.TotalAlloc - before.TotalAlloc
	}
	one := allocated(signedMail("application/pkcs7-signature", big, sig))
	five := allocated(signedMail("application/pkcs7-signature", nested, p7sPart(pki.detachedSig(t, nested))))
	if five > one+(6<<20) {
		t.Errorf("five nested multipart/signed allocated %d MiB, one %d MiB: each level copied the signed bytes", five>>20, one>>20)
	}
}

// A multipart/signed that names no protocol is taken for S/MIME; when its
// signature part turns out to be PGP's it is not reported as an S/MIME
// signature "missing", and its text is delivered.
func TestParsePGPSignedWithoutProtocol(t *testing.T) {
	raw := "From: Ana Silva <ana.silva@cliente.pt>\r\nTo: suporte@empresa.pt\r\nSubject: pgp\r\nMIME-Version: 1.0\r\n" +
		"Content-Type: multipart/signed; micalg=pgp-sha256; boundary=\"b\"\r\n\r\n" +
		"--b\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nA impressora do 2.º piso não imprime.\r\n" +
		"--b\r\nContent-Type: application/pgp-signature; name=signature.asc\r\n\r\n" +
		"-----BEGIN PGP SIGNATURE-----\r\n\r\niQEzBAEBCAAdFiEE\r\n=abcd\r\n-----END PGP SIGNATURE-----\r\n--b--\r\n"
	for name, p := range map[string]*Parser{"no roots": {}, "roots": {SMIME: SMIME{Roots: newTestPKI(t).roots}}} {
		m, err := p.Parse(strings.NewReader(raw))
		if err != nil {
			t.Fatal(err)
		}
		if m.Signature != nil {
			t.Errorf("%s: signature %+v, want none reported", name, m.Signature)
		}
		if !strings.Contains(m.Text, "não imprime") {
			t.Errorf("%s: text %q", name, m.Text)
		}
		m.Close()
	}
}
