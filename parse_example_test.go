package mailsync_test

import (
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/mailsync/mailsync"
)

func ExampleParser_Parse() {
	raw := "From: =?UTF-8?Q?Jos=C3=A9?= <jose@example.com>\r\n" +
		"Subject: =?ISO-8859-1?Q?Caf=E9?= machine broken\r\n" +
		"Content-Type: multipart/mixed; boundary=----=_Part_1\r\n" + // unquoted "=": clients accept it
		"\r\n" +
		"------=_Part_1\r\n" +
		"Content-Type: text/html; charset=utf-8\r\n" +
		"\r\n" +
		"<p onclick=\"x()\">It leaks.<script>steal()</script></p>\r\n" +
		"------=_Part_1\r\n" +
		"Content-Type: image/jpeg\r\n" +
		"Content-Disposition: attachment; filename*=UTF-8''r%C3%A9sum%C3%A9.jpg\r\n" +
		"Content-Transfer-Encoding: base64\r\n" +
		"\r\n" +
		"/9j/4AAQ\r\n" +
		"------=_Part_1--\r\n"
	var p mailsync.Parser // zero value: default limits, system temp dir
	m, err := p.Parse(strings.NewReader(raw))
	if errors.Is(err, mailsync.ErrMalformed) || errors.Is(err, mailsync.ErrOversized) {
		fmt.Println("quarantine:", err)
		return
	}
	if err != nil {
		fmt.Println(err)
		return
	}
	defer m.Close() // releases attachments spooled to temporary files

	fmt.Println(m.From.Name, m.From.Address)
	fmt.Println(m.Subject)
	fmt.Println(m.HTML)
	fmt.Println(m.Text, m.TextFromHTML)
	for _, a := range m.Attachments {
		rc, _ := a.Open()
		b, _ := io.ReadAll(rc)
		rc.Close()
		fmt.Printf("%s %s %d bytes %x\n", a.Filename, a.ContentType, a.Size, b)
	}
	// Output:
	// José jose@example.com
	// Café machine broken
	// <p>It leaks.</p>
	// It leaks. true
	// résumé.jpg image/jpeg 6 bytes ffd8ffe00010
}
