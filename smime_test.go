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
	"math/big"
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
