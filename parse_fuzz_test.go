package mailsync

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/mailsync/mailsync/internal/mime"
)

// FuzzParse feeds arbitrary bytes to the parser, seeded with every corpus
// file and a few hand-made tricky messages. It calls parse, which has no
// recover, so a panic is a failure and not a quarantine. For each input:
// an error matches ErrMalformed or ErrOversized and comes without a message;
// a message has valid UTF-8 everywhere, Size equal to the input length,
// attachments that read back exactly their Size, and Close works (twice);
// single-line fields hold no control character and attachment names are at
// most 255 bytes without invisible characters or paths, and the HTML loads
// nothing remote (issue 10).
//
// CI: go test -run '^$' -fuzz '^FuzzParse$' -fuzztime 20s .
func FuzzParse(f *testing.F) {
	for _, name := range corpusFiles(f) {
		f.Add(readCorpus(f, name))
	}
	for _, seed := range fuzzSeeds {
		f.Add([]byte(seed))
	}
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, raw []byte) {
		p := &Parser{
			Limits:         Limits{MaxMessageBytes: 1 << 20, MaxDepth: 8, MaxParts: 200, MaxTextBytes: 64 << 10},
			TempDir:        dir,
			SpoolThreshold: 1 << 10,
		}
		// A hang is a bug too: crash the worker so the fuzzer keeps the input.
		watchdog := time.AfterFunc(10*time.Second, func() { panic(fmt.Sprintf("parse of %d bytes still running after 10s", len(raw))) })
		m, err := p.parse(bytes.NewReader(raw))
		watchdog.Stop()
		if err != nil {
			if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrOversized) {
				t.Fatalf("error %v matches neither ErrMalformed nor ErrOversized", err)
			}
			if strings.Contains(err.Error(), "parser panic") {
				t.Fatalf("panic: %v", err)
			}
			if m != nil {
				t.Fatal("a message with an error")
			}
			return
		}
		defer m.Close()
		if m.Size != int64(len(raw)) {
			t.Errorf("Size %d, input %d bytes", m.Size, len(raw))
		}
		for what, s := range map[string]string{"Subject": m.Subject, "Text": m.Text, "HTML": m.HTML, "MessageID": m.MessageID,
			"From.Name": m.From.Name, "From.Address": m.From.Address} {
			if !utf8.ValidString(s) {
				t.Errorf("%s is not valid UTF-8: %q", what, s)
			}
		}
		for _, list := range [][]Address{m.To, m.Cc, m.ReplyTo} {
			for _, a := range list {
				if !utf8.ValidString(a.Name) || !utf8.ValidString(a.Address) {
					t.Errorf("address %q is not valid UTF-8", a)
				}
			}
		}
		for k, vs := range m.Header {
			for _, v := range vs {
				if !utf8.ValidString(v) {
					t.Errorf("header %s is not valid UTF-8: %q", k, v)
				}
				if hasLineControl(v) {
					t.Errorf("header %s keeps a control character: %q", k, v)
				}
			}
		}
		single := []string{m.Subject, m.MessageID, m.From.Name, m.From.Address}
		single = append(append(single, m.InReplyTo...), m.References...)
		for _, list := range [][]Address{m.To, m.Cc, m.ReplyTo} {
			for _, a := range list {
				single = append(single, a.Name, a.Address)
			}
		}
		for _, s := range single {
			if hasLineControl(s) {
				t.Errorf("single-line field keeps a control character: %q", s)
			}
		}
		if got := remoteLoad(m.HTML); got != "" {
			t.Errorf("HTML loads remote content: %q", got)
		}
		if m.TextFromHTML && m.HTML == "" {
			t.Error("TextFromHTML without HTML")
		}
		if int64(len(m.Text)) > 3*64<<10+2 && !m.TextFromHTML {
			t.Errorf("Text has %d bytes, over MaxTextBytes", len(m.Text))
		}
		for _, a := range m.Attachments {
			if !utf8.ValidString(a.Filename) || !utf8.ValidString(a.ContentID) {
				t.Errorf("attachment names not valid UTF-8: %q %q", a.Filename, a.ContentID)
			}
			if len(a.Filename) > 255 || strings.ContainsFunc(a.Filename, mime.InvisibleInName) || strings.ContainsAny(a.Filename, `/\`) {
				t.Errorf("attachment name %q: %d bytes, or an invisible character or a path", a.Filename, len(a.Filename))
			}
			rc, err := a.Open()
			if err != nil {
				t.Fatal(err)
			}
			n, err := io.Copy(io.Discard, rc)
			rc.Close()
			if err != nil || n != a.Size {
				t.Errorf("attachment %q reads %d bytes (%v), Size %d", a.Filename, n, err, a.Size)
			}
		}
		if err := m.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
		if err := m.Close(); err != nil {
			t.Errorf("second Close: %v", err)
		}
		for _, a := range m.Attachments {
			if rc, err := a.Open(); err == nil {
				rc.Close()
				t.Errorf("attachment %q opens after Close", a.Filename)
			}
		}
	})
}

// fuzzSeeds exercise corners the corpus lacks.
var fuzzSeeds = []string{
	"",
	"\r\n\r\n",
	"Subject: no body",
	"Subject: =?utf-8?B?w6k=?= =?utf-8?Q?=C3=A9?= =?x-unknown?Q?caf=E9?=\r\n\r\nbody",
	"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: multipart/alternative; boundary=c\r\n\r\n--c\r\n\r\ntext\r\n--c\r\nContent-Type: text/html\r\n\r\n<p onclick=x>hi<script>x</script>\r\n--c--\r\n--b\r\nContent-Disposition: attachment; filename*0*=utf-8''%E3%81%8B; filename*1=.txt\r\nContent-Transfer-Encoding: base64\r\n\r\naGVsbG8=\r\n--b--\r\n",
	"Content-Type: multipart/mixed; boundary=\"b\"\n\n--b\nContent-Transfer-Encoding: quoted-printable\n\nx=3D=\ny=ZZ\n--b\n",
	"Content-Type: multipart/digest; boundary=d\r\n\r\n--d\r\n\r\nSubject: inner\r\n\r\nhi\r\n--d--",
	"Subject: =?utf-8?Q?a=0D=0ABcc:_x@y?=\r\nFrom: =?utf-8?B?RXZlDQo=?= <e\x00@x>\r\nMessage-ID: <a\x01b>\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Disposition: attachment; filename=\"C:\u202eexe.txt\"\r\n\r\nx\r\n--b--\r\n",
	"Content-Type: text/html\r\n\r\n<img src=https://t/p.gif srcset=\"//a/1.png 1x,cid:b 2x\"><table background=http://b/c><tr><td style=\"background-image:url(https://u/v);margin:-9px;width:99999px;float:left\">x</td></tr></table><img src=cid:c align=left>",
	"Content-Type: text/plain; charset=shift_jis\r\nContent-Transfer-Encoding: x-uuencode\r\n\r\nbegin 644 a\r\n#86)C\r\n`\r\nend\r\n",
}
