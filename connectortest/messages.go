package connectortest

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"mime"
	"strings"
	"time"
)

// NewMessage returns a small, valid RFC 5322 message whose Message-ID is
// "<id>@connectortest.invalid" and whose subject is subject.
func NewMessage(id, subject string) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "From: \"Ana Sousa\" <ana.sousa@example.com>\r\n")
	fmt.Fprintf(&b, "To: support@example.com\r\n")
	fmt.Fprintf(&b, "Subject: %s\r\n", mime.QEncoding.Encode("utf-8", subject))
	fmt.Fprintf(&b, "Date: %s\r\n", time.Date(2026, 11, 2, 9, 30, 0, 0, time.UTC).Format(time.RFC1123Z))
	fmt.Fprintf(&b, "Message-ID: <%s@connectortest.invalid>\r\n", id)
	fmt.Fprintf(&b, "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n")
	fmt.Fprintf(&b, "Olá, this is message %s.\r\nObrigada.\r\n", id)
	return b.Bytes()
}

// NewLargeMessage returns a message with one base64 attachment of
// attachmentBytes random bytes, and the attachment's content.
func NewLargeMessage(id string, attachmentBytes int) (raw, attachment []byte) {
	attachment = make([]byte, attachmentBytes)
	rand.Read(attachment)
	var b bytes.Buffer
	fmt.Fprintf(&b, "From: ana.sousa@example.com\r\nTo: support@example.com\r\nSubject: large %s\r\n", id)
	fmt.Fprintf(&b, "Message-ID: <%s@connectortest.invalid>\r\nMIME-Version: 1.0\r\n", id)
	fmt.Fprintf(&b, "Content-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n--b1\r\nContent-Type: text/plain\r\n\r\nSee the attachment.\r\n")
	fmt.Fprintf(&b, "--b1\r\nContent-Type: application/octet-stream\r\nContent-Disposition: attachment; filename=\"data.bin\"\r\nContent-Transfer-Encoding: base64\r\n\r\n")
	enc := base64.StdEncoding.EncodeToString(attachment)
	for len(enc) > 76 {
		b.WriteString(enc[:76])
		b.WriteString("\r\n")
		enc = enc[76:]
	}
	b.WriteString(enc)
	b.WriteString("\r\n--b1--\r\n")
	return b.Bytes(), attachment
}

// NewMalformedMessage returns a message that no ticket can be made of: a
// MIME structure nested deeper than the parser's default limit. It is valid
// RFC 5322, so every server stores it.
func NewMalformedMessage(id string) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "From: loop@example.com\r\nTo: support@example.com\r\nSubject: nested %s\r\n", id)
	fmt.Fprintf(&b, "Message-ID: <%s@connectortest.invalid>\r\nMIME-Version: 1.0\r\n", id)
	const depth = 64
	for i := 0; i < depth; i++ {
		fmt.Fprintf(&b, "Content-Type: multipart/mixed; boundary=\"n%d\"\r\n\r\n--n%d\r\n", i, i)
	}
	b.WriteString("Content-Type: text/plain\r\n\r\ndeep\r\n")
	for i := depth - 1; i >= 0; i-- {
		fmt.Fprintf(&b, "--n%d--\r\n", i)
	}
	return b.Bytes()
}

func messageID(id string) string { return id + "@connectortest.invalid" }

func sanitizeName(s string) string {
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' {
			return r
		}
		return '-'
	}, s)
}
