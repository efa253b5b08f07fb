package mailsync

import (
	"encoding/base64"
	"io"
	"os"
	"strings"
	"testing"
)

func tnefMail(t *testing.T, file string) string {
	t.Helper()
	data, err := os.ReadFile("testdata/tnef/" + file)
	if err != nil {
		t.Fatal(err)
	}
	enc := base64.StdEncoding.EncodeToString(data)
	var b strings.Builder
	for len(enc) > 76 {
		b.WriteString(enc[:76] + "\r\n")
		enc = enc[76:]
	}
	b.WriteString(enc + "\r\n")
	return "From: a@b.pt\r\nSubject: s\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nsee attached\r\n" +
		"--b\r\nContent-Type: application/ms-tnef; name=winmail.dat\r\nContent-Transfer-Encoding: base64\r\nContent-Disposition: attachment; filename=winmail.dat\r\n\r\n" + b.String() + "--b--\r\n"
}

// Outlook's winmail.dat is expanded into its files; it stays available.
func TestParseTNEFExpanded(t *testing.T) {
	m := parseGap(t, tnefMail(t, "two-files.tnef"))
	var names []string
	for _, a := range m.Attachments {
		names = append(names, a.Filename)
	}
	if strings.Join(names, ",") != "winmail.dat,AUTHORS,README" {
		t.Fatalf("attachments %v", names)
	}
	rc, err := m.Attachments[1].Open()
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(rc)
	rc.Close()
	if len(b) == 0 || int64(len(b)) != m.Attachments[1].Size {
		t.Fatalf("AUTHORS: %d bytes, size %d", len(b), m.Attachments[1].Size)
	}
	// The TNEF body (HTML here) joins the mail's body.
	m = parseGap(t, tnefMail(t, "body.tnef"))
	if !strings.Contains(m.Text, "see attached") || len(strings.TrimSpace(m.Text)) <= len("see attached") {
		t.Fatalf("body not expanded: %q (warnings %v)", m.Text, m.Warnings)
	}
}

// A file that makes the TNEF decoder panic, and garbage, stay winmail.dat.
func TestParseTNEFMalformedKept(t *testing.T) {
	for _, raw := range []string{tnefMail(t, "panic.tnef"),
		strings.Replace(tnefMail(t, "two-files.tnef"), "Content-Transfer-Encoding: base64\r\n", "", 1)} {
		m := parseGap(t, raw)
		if len(m.Attachments) == 0 || m.Attachments[0].Filename != "winmail.dat" {
			t.Fatalf("winmail.dat lost: %+v", m.Attachments)
		}
	}
}
