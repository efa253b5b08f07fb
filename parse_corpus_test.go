package mailsync

import (
	"bytes"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/emersion/go-message"
)

// The corpus is a copy of the Ruby mail gem's fixtures (testdata/corpus/README.md).
const corpusDir = "testdata/corpus"

// corpusFiles lists every message of the corpus, relative to corpusDir.
func corpusFiles(tb testing.TB) []string {
	tb.Helper()
	var files []string
	err := filepath.WalkDir(corpusDir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		name := d.Name()
		if d.IsDir() || name == "LICENSE" || name == "README.md" || strings.HasPrefix(name, ".") {
			return nil
		}
		rel, _ := filepath.Rel(corpusDir, path)
		files = append(files, filepath.ToSlash(rel))
		return nil
	})
	if err != nil {
		tb.Fatal(err)
	}
	if len(files) < 100 {
		tb.Fatalf("corpus has %d files, want the full copy of about 100", len(files))
	}
	return files
}

func readCorpus(tb testing.TB, name string) []byte {
	tb.Helper()
	b, err := os.ReadFile(filepath.Join(corpusDir, filepath.FromSlash(name)))
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// parseCorpus parses a corpus file with the parser's unexported parse, which
// has no recover: a panic fails the test instead of hiding as a quarantine.
func parseCorpus(tb testing.TB, name string) (*Message, error) {
	tb.Helper()
	m, err := (&Parser{TempDir: tb.TempDir()}).parse(bytes.NewReader(readCorpus(tb, name)))
	if m != nil {
		tb.Cleanup(func() { m.Close() })
	}
	return m, err
}

func mustParseCorpus(tb testing.TB, name string) *Message {
	tb.Helper()
	m, err := parseCorpus(tb, name)
	if err != nil {
		tb.Fatalf("%s: %v", name, err)
	}
	return m
}

// quarantined lists the corpus files that must not become tickets, with the
// reason the quarantine gives. None today: the four files go-message refuses
// are read as mail clients show them (see degraded). A file appearing here, or
// a file parsing that should not, is a behaviour change to look at.
var quarantined = map[string]string{}

// degraded are corpus files that go-message alone refuses but mail clients
// show; each must parse with the warning that says how it was repaired.
var degraded = map[string]string{
	// A References value continued on a line without leading white space.
	"error_emails/multiple_references_with_one_invalid.eml": "header line without a field name joined to References",
	// "quite Delivered-To: …": a field name with a space.
	"plain_emails/raw_email_incorrect_header.eml": `malformed header line "quite Delivered-To: xxx@xxx.xxx" dropped`,
	// RFC 2822 A.6.3 obsolete syntax: "From  :", and a line "__" inside To.
	"rfc2822/example13.eml": "header line without a field name joined to To",
	// The closing delimiter is "--boundary-" (one dash).
	"mime_emails/raw_email4.eml": "multipart/mixed closing boundary is misspelt",
}

// TestParseCorpus parses every corpus file: each becomes a message (a ticket)
// or fails with ErrMalformed/ErrOversized (quarantine), exactly as listed in
// quarantined; nothing panics; every string is valid UTF-8; every attachment
// reads back exactly its Size.
func TestParseCorpus(t *testing.T) {
	var parsed, quarantine int
	for _, name := range corpusFiles(t) {
		m, err := parseCorpus(t, name)
		if reason, ok := quarantined[name]; ok {
			switch {
			case err == nil:
				t.Errorf("%s parsed, want quarantine: %s", name, reason)
			case !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrOversized):
				t.Errorf("%s: error %v matches neither ErrMalformed nor ErrOversized", name, err)
			case !strings.Contains(err.Error(), reason):
				t.Errorf("%s: error %q, want the reason %q", name, err, reason)
			}
			quarantine++
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		parsed++
		checkMessage(t, name, m)
		if w, ok := degraded[name]; ok && !slices.Contains(m.Warnings, w) {
			t.Errorf("%s: warnings %q, want %q", name, m.Warnings, w)
		}
		if err := m.Close(); err != nil {
			t.Errorf("%s: Close: %v", name, err)
		}
	}
	t.Logf("%d parsed, %d quarantined", parsed, quarantine)
	if parsed+quarantine != len(corpusFiles(t)) || quarantine != len(quarantined) {
		t.Errorf("%d parsed + %d quarantined, want %d files of which %d quarantined", parsed, quarantine, len(corpusFiles(t)), len(quarantined))
	}
}

// checkMessage asserts what must hold for any parsed message.
func checkMessage(t *testing.T, name string, m *Message) {
	t.Helper()
	strs := []string{m.Subject, m.Text, m.HTML, m.MessageID, m.From.Name, m.From.Address}
	for _, list := range [][]Address{m.To, m.Cc, m.ReplyTo} {
		for _, a := range list {
			strs = append(strs, a.Name, a.Address)
		}
	}
	strs = append(strs, m.InReplyTo...)
	strs = append(strs, m.References...)
	for k, vs := range m.Header {
		strs = append(strs, k)
		strs = append(strs, vs...)
	}
	for _, s := range strs {
		if !utf8.ValidString(s) {
			t.Errorf("%s: invalid UTF-8 in %q", name, s)
		}
	}
	if m.Size <= 0 && name != "sample_output_multipart" {
		t.Errorf("%s: Size %d", name, m.Size)
	}
	if m.TextFromHTML && m.HTML == "" {
		t.Errorf("%s: TextFromHTML without HTML", name)
	}
	for _, a := range m.Attachments {
		if !utf8.ValidString(a.Filename) || strings.ContainsAny(a.Filename, "/\\\x00") {
			t.Errorf("%s: bad file name %q", name, a.Filename)
		}
		b := readAttachment(t, a)
		if int64(len(b)) != a.Size {
			t.Errorf("%s: attachment %q reads %d bytes, Size says %d", name, a.Filename, len(b), a.Size)
		}
	}
}

func readAttachment(t testing.TB, a *Attachment) []byte {
	t.Helper()
	rc, err := a.Open()
	if err != nil {
		t.Fatalf("open %q: %v", a.Filename, err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatalf("read %q: %v", a.Filename, err)
	}
	return b
}

// TestParseCorpusSenders asserts subject and sender as a mail client shows
// them. Each expectation was checked against the raw file: encoded words in
// UTF-8, ISO-8859-1, windows-1251 and windows-1252, raw UTF-8 (RFC 6532) and
// undeclared windows-1252 8-bit headers, RFC 2822 comments and obsolete
// syntax, and broken address lists.
func TestParseCorpusSenders(t *testing.T) {
	tests := []struct {
		file, subject, fromName, fromAddr string
	}{
		{"plain_emails/basic_email.eml", "Testing 123", "Mikel Lindsaar", "test@lindsaar.net"},
		{"plain_emails/basic_email_lf.eml", "Testing 123", "Mikel Lindsaar", "test@lindsaar.net"},
		// =?UTF-8?B?…?= Korean
		{"plain_emails/raw_email.eml", "NOTE: 한국말로 하는 것", "Jamis Buck", "jamis@37signals.com"},
		// Encoded words between plain words: "Re: Test: =?UTF-8?B?Iua8ouWtlyI=?= mid … tail"
		{"plain_emails/raw_email_with_partially_quoted_subject.eml", `Re: Test: "漢字" mid "漢字" tail`, "Jamis Buck", "jamis@37signals.com"},
		// Emoji in a UTF-8 encoded word; an mbox "From " line before the header
		{"attachment_emails/attachment_pdf.eml", "Another PDF with 🎉 Unicode chars in it 🍿", "Test Tester", "xxxx@xxxx.com"},
		// =?ISO-8859-1?Q?Eelanal=FC=FCsi_p=E4ring?=
		{"attachment_emails/attachment_with_quoted_filename.eml", "Eelanalüüsi päring", "Jeffrey Hardy", "jeff@37signals.com"},
		// Japanese in UTF-8 encoded words
		{"multi_charset/japanese.eml", "まみむめも", "Mikel Lindsaar", "raasdnil@gmail.com"},
		{"multi_charset/japanese_attachment_long_name.eml", strings.Repeat("まみむめも", 10), "Mikel Lindsaar", "mikel@test.lindsaar.net"},
		// "Re: TEST" folded with an ISO-2022-JP encoded word on the next line
		{"rfc2822/example14.eml", "Re: TEST テストテスト", "Atsushi Yoshida", "atsushi@example.com"},
		// Raw 8-bit windows-1252 subject without any declaration; the From name is a windows-1252 B word in quotes
		{"error_emails/invalid_subject_characters.eml", "Formação FrenetikPolis: Mega Campanha Final Verão | Cursos de Setembro", "Formação Frenetikpolis", "info@formacaofrenetik.info"},
		// Raw UTF-8 subject ("ô" as C3 B4) in an iso-8859-1 message
		{"error_emails/trademark_character_in_subject.eml", "GA.comô has a lead for you", "", "j@yahoo-example.com"},
		// =?iso-8859-1?Q?J=F8rn_St=F8ylen?=
		{"error_emails/header_fields_with_empty_values.eml", "Testmail", "Jørn Støylen", "jorn@prikkprikkprikk.no"},
		// =?windows-1251?B?wPLo6u7iYQ==?= (Cyrillic, with a Latin "a" at the end)
		{"plain_emails/raw_email_bad_time.eml", "[0]: XXXXXXX XXXXX XXXXX !", "Атиковa", "yusuf75thu@auracom.net"},
		// =?ISO-8859-1?Q?Nicolas_Fouch=E9_has_accepted_your_invitation_to_Gmail?=
		{"mime_emails/raw_email_encoded_stack_level_too_deep.eml", "Nicolas Fouché has accepted your invitation to Gmail", "Gmail Team", "gmail-noreply@google.com"},
		// RFC 6532: raw UTF-8 in quoted names, addresses and the subject
		{"rfc6532/utf8_headers.eml", "Säying Hello", "Jöhn Doe", "jdöe@mächine.example"},
		{"rfc2822/example01.eml", "Saying Hello", "John Doe", "jdoe@machine.example"},
		// RFC 2822 A.5: comments everywhere; "Pete(A wonderful \) chap) <pete(his account)@silly.test(his host)>"
		{"rfc2822/example10.eml", "", "Pete", "pete@silly.test"},
		// RFC 2822 A.6.3: "From  : John Doe <jdoe@machine(comment).  example>"
		{"rfc2822/example13.eml", "Saying Hello", "John Doe", "jdoe@machine.example"},
		// "From: Big Bug bb@bug.com" without angle brackets
		{"plain_emails/mix_caps_content_type.eml", "undef method parameter bug", "Big Bug", "bb@bug.com"},
		// "From: tim@powerupdev.com concierge@powerupdev.com": two addresses without a comma
		{"plain_emails/raw_email_multiple_from.eml", "/home/svn/public/minebox revision 214", "", "tim@powerupdev.com"},
		{"multipart_report_emails/report_530.eml", "Returned mail: see transcript for details", "Mail Delivery Subsystem", "MAILER-DAEMON@tttttt.com.au"},
		{"error_emails/content_transfer_encoding_7-bit.eml", "Discover(R) Card News Online - January 2002", "Discover Card", "discovercard_newsflash@discover.qrs1.net"},
		{"error_emails/bad_subject.eml", "MySurvey.com:  You have a survey waiting!  91123105", "MySurvey.com & Carol Adams", "carol@mysurvey.com"},
		{"plain_emails/raw_email_reply.eml", "Re: Test reply email", "Testing", "xxxxxxxx@xxx.org"},
		{"mime_emails/raw_email4.eml", "Filth", "", "xxx@xxxx.xxx"},
		{"plain_emails/raw_email_incorrect_header.eml", "Stop adware/spyware once and for all.", "xxx xxx", "xxx@xxx.xxx"},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			m := mustParseCorpus(t, tt.file)
			if m.Subject != tt.subject {
				t.Errorf("Subject = %q, want %q", m.Subject, tt.subject)
			}
			if m.From.Name != tt.fromName || m.From.Address != tt.fromAddr {
				t.Errorf("From = %q <%s>, want %q <%s>", m.From.Name, m.From.Address, tt.fromName, tt.fromAddr)
			}
		})
	}
}

func TestParseCorpusRecipients(t *testing.T) {
	tests := []struct {
		file, field string
		want        []Address
	}{
		// =?UTF-8?B?44G/44GR44KL?= <raasdnil@gmail.com>
		{"multi_charset/japanese.eml", "To", []Address{{"みける", "raasdnil@gmail.com"}}},
		// RFC 2822 A.5: a group with comments; an empty group in Cc
		{"rfc2822/example10.eml", "To", []Address{{"Chris Jones", "c@public.example"}, {"", "joe@example.org"}, {"John", "jdoe@one.test"}}},
		{"rfc2822/example10.eml", "Cc", nil},
		// RFC 2822 A.6.2: an obsolete route and "jdoe@test   . example"
		{"rfc2822/example11.eml", "To", []Address{{"Mary Smith", "mary@example.net"}, {"", "jdoe@test.example"}}},
		// "smith@gmail.com, Mikel@Lindsaar <raasdnil@gmail.com>, tom@gmail.com"
		{"plain_emails/raw_email_with_at_display_name.eml", "To", []Address{{"", "smith@gmail.com"}, {"Mikel@Lindsaar", "raasdnil@gmail.com"}, {"", "tom@gmail.com"}}},
		{"plain_emails/raw_email_multiple_from.eml", "To", []Address{{"", "tim@powerupdev.com"}, {"", "concierge@powerupdev.com"}}},
		{"rfc2822/example03.eml", "To", []Address{{"Mary Smith", "mary@x.test"}, {"", "jdoe@example.org"}, {"Who?", "one@y.test"}}},
		// Reply-To: "KLAUS- HÄNSCHEL" <> (raw UTF-8, empty address)
		{"error_emails/encoding_madness.eml", "Reply-To", []Address{{"KLAUS- HÄNSCHEL", ""}}},
	}
	for _, tt := range tests {
		t.Run(tt.file+"/"+tt.field, func(t *testing.T) {
			m := mustParseCorpus(t, tt.file)
			got := map[string][]Address{"To": m.To, "Cc": m.Cc, "Reply-To": m.ReplyTo}[tt.field]
			if !slices.Equal(got, tt.want) {
				t.Errorf("%s = %q, want %q", tt.field, got, tt.want)
			}
		})
	}
}

// TestParseCorpusAttachments asserts file names (RFC 2231 in several
// charsets, encoded words, unquoted parameters), content types, Content-ID,
// inline flags and sizes; the content itself is compared with what the raw
// file encodes.
func TestParseCorpusAttachments(t *testing.T) {
	type att struct {
		filename, contentType, contentID string
		inline                           bool
		size                             int64
		content                          string // when short enough to write here
		prefix                           string // magic bytes of the decoded content
	}
	tests := []struct {
		file string
		want []att
	}{
		// Content-Disposition: attachment; filename="api.rb" (Content-Type name="hello.rb" loses)
		{"attachment_emails/attachment_content_disposition.eml", []att{{filename: "api.rb", contentType: "text/x-ruby-script", size: 28, content: "puts \"Hello, world!\"\r\ngets\r\n"}}},
		// An inline image referenced by Content-ID, without a name
		// A nameless inline image gets a name by its type, as Outlook names them (issue 15).
		{"attachment_emails/attachment_content_location.eml", []att{{filename: "image001.jpg", contentType: "image/jpeg", contentID: "qbFGyPQAS8", inline: true, size: 227}}},
		// filename*=ISO-8859-1''Eelanal%FC%FCsi%20p%E4ring.jpg
		{"attachment_emails/attachment_with_quoted_filename.eml", []att{{filename: "Eelanalüüsi päring.jpg", contentType: "image/jpeg", inline: true, size: 1952, prefix: "\xff\xd8\xff"}}},
		// filename=ciële.txt: raw UTF-8 in an unquoted parameter
		{"attachment_emails/attachment_nonascii_filename.eml", []att{{filename: "ciële.txt", contentType: "text/plain", size: 11, content: "Hi there.\r\n"}}},
		// filename=This is a test.txt: spaces in an unquoted parameter
		{"attachment_emails/attachment_with_unquoted_name.eml", []att{{filename: "This is a test.txt", contentType: "text/plain", size: 11, content: "Hi there.\r\n"}}},
		// filename==?utf-8?B?VGhpcyBpcyBhIHRlc3QucGRm?= unquoted
		{"attachment_emails/attachment_with_base64_encoded_name.eml", []att{{filename: "This is a test.pdf", contentType: "application/pdf", size: 399, prefix: "0\x80\x06\t*"}}},
		// name*=iso-2022-jp'ja'01%20Quien%20Te%20Dij%8aat.%20Pitbull.mp3: 0x8A is not ISO-2022-JP, so windows-1252 "Š"
		{"attachment_emails/attachment_with_encoded_name.eml", []att{{filename: "01 Quien Te DijŠat. Pitbull.mp3", contentType: "application/octet-stream", size: 399}}},
		// A name in a UTF-8 B word; the content is kept as sent, not charset-converted
		{"multi_charset/japanese_attachment.eml", []att{{filename: "てすと.txt", contentType: "text/plain", size: 33}}},
		// filename*0*=utf-8''%E3%81%8B…; filename*1*=…: RFC 2231 continuation
		{"multi_charset/japanese_attachment_long_name.eml", []att{{filename: strings.Repeat("かきくけこ", 5) + ".txt", contentType: "text/plain", size: 18, content: "this is the data\r\n"}}},
		{"attachment_emails/attachment_message_rfc822.eml", []att{{filename: "ForwardedMessage.eml", contentType: "message/rfc822", size: 3781}}},
		{"attachment_emails/attachment_message_rfc822_inline_image.eml", []att{
			{filename: "img.png", contentType: "image/png", contentID: "emedfeb92f-a786-4718-a446-98db8afb53fb@kronos", inline: true, size: 370, prefix: "\x89PNG"},
			{filename: "Testmail.eml", contentType: "message/rfc822", size: 1851},
		}},
		// A nested multipart whose boundary extends the outer one ("…c73" and "…c73_alt")
		{"mime_emails/email_with_similar_boundaries.eml", []att{{filename: "LOGO.png", contentType: "application/octetstream", contentID: "LOGO.png", size: 3, content: "H\xd2\x0f"}}},
		// Nested multipart/mixed inside multipart/mixed; an empty text part is no attachment
		{"mime_emails/raw_email7.eml", []att{
			{filename: "test.rb", contentType: "text/x-ruby-script", size: 25, content: "puts \"testing, testing\"\r\n"},
			{filename: "test.pdf", contentType: "application/pdf", inline: true, size: 14, content: "blah blah blah"},
			{filename: "smime.p7s", contentType: "application/pkcs7-signature", size: 227},
		}},
		// boundary=----=_Part_…: an unquoted boundary with "="; binary transfer encoding
		{"mime_emails/raw_email_with_binary_encoded.eml", []att{{filename: "2013-08-13_19-08-28-1.jpg", contentType: "image/jpeg", size: 24, content: "BINARY_CONTENT_GOES_HERE"}}},
		// x-uuencode part whose content was cut from the fixture
		{"error_emails/content_transfer_encoding_x_uuencode.eml", []att{{filename: "PGP_Cmts_on_12-14-01_Pkg.doc", contentType: "application/msword", contentID: "p05100307b863befdfb67@[207.202.136.216].0.0", size: 0, content: ""}}},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			m := mustParseCorpus(t, tt.file)
			if len(m.Attachments) != len(tt.want) {
				t.Fatalf("%d attachments, want %d: %+v", len(m.Attachments), len(tt.want), m.Attachments)
			}
			for i, w := range tt.want {
				a := m.Attachments[i]
				if a.Filename != w.filename || a.ContentType != w.contentType || a.ContentID != w.contentID || a.Inline != w.inline || a.Size != w.size {
					t.Errorf("attachment %d = {%q %q cid=%q inline=%v size=%d}, want {%q %q cid=%q inline=%v size=%d}", i,
						a.Filename, a.ContentType, a.ContentID, a.Inline, a.Size, w.filename, w.contentType, w.contentID, w.inline, w.size)
				}
				b := readAttachment(t, a)
				if w.content != "" && string(b) != w.content {
					t.Errorf("attachment %d content %q, want %q", i, b, w.content)
				}
				if !bytes.HasPrefix(b, []byte(w.prefix)) {
					t.Errorf("attachment %d starts %q, want %q", i, b[:min(len(b), 8)], w.prefix)
				}
			}
		})
	}
}

// TestParseCorpusAttachmentBytesMatchGoMessage compares every non-text
// attachment with what go-message decodes from the same file, an independent
// implementation, wherever go-message can read the file.
func TestParseCorpusAttachmentBytesMatchGoMessage(t *testing.T) {
	compared := 0
	for _, name := range corpusFiles(t) {
		raw := readCorpus(t, name)
		want, ok := goMessageAttachments(raw)
		if !ok {
			continue
		}
		m, err := parseCorpus(t, name)
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		var got [][]byte
		for _, a := range m.Attachments {
			if !strings.HasPrefix(a.ContentType, "text/") {
				got = append(got, readAttachment(t, a))
			}
		}
		if len(got) != len(want) {
			t.Errorf("%s: %d non-text attachments, go-message finds %d", name, len(got), len(want))
			continue
		}
		for i := range got {
			if !bytes.Equal(got[i], want[i]) {
				t.Errorf("%s: attachment %d differs from go-message's (%d vs %d bytes)", name, i, len(got[i]), len(want[i]))
			}
		}
		compared += len(got)
	}
	if compared < 20 {
		t.Errorf("only %d attachments compared", compared)
	}
}

// goMessageAttachments returns the decoded bodies of the non-text,
// non-multipart leaves, or false if go-message reports any problem.
func goMessageAttachments(raw []byte) ([][]byte, bool) {
	if bytes.HasPrefix(raw, []byte("From ")) {
		if i := bytes.IndexByte(raw, '\n'); i >= 0 {
			raw = raw[i+1:]
		}
	}
	e, err := message.Read(bytes.NewReader(raw))
	if err != nil {
		return nil, false
	}
	var out [][]byte
	ok := true
	var walk func(e *message.Entity)
	walk = func(e *message.Entity) {
		if mr := e.MultipartReader(); mr != nil {
			for {
				p, err := mr.NextPart()
				if err == io.EOF {
					return
				}
				if err != nil {
					ok = false
					return
				}
				walk(p)
			}
		}
		mt, _, err := e.Header.ContentType()
		if err != nil {
			ok = false
			return
		}
		b, err := io.ReadAll(e.Body)
		if err != nil {
			ok = false
			return
		}
		if !strings.HasPrefix(mt, "text/") && !strings.HasPrefix(mt, "multipart/") {
			out = append(out, b)
		}
	}
	walk(e)
	return out, ok
}

func TestParseCorpusBodies(t *testing.T) {
	tests := []struct {
		file         string
		textPrefix   string
		htmlContains string
		fromHTML     bool
	}{
		// charset=iso-2022-jp declared on a continuation line
		{"multi_charset/japanese_iso_2022.eml", "すみません。", "", false},
		{"multi_charset/japanese_shift_jis.eml", "あいうえお\n\nこのメールはテスト用のメールです。", "", false},
		{"multi_charset/ks_c_5601-1987.eml", "스티해", "", false},
		// iso-8859-1 quoted-printable, Outlook-style multipart/alternative
		{"mime_emails/raw_email_with_quoted_illegal_boundary.eml", "Hello\nThis is an outlook test\n\nSo there.\n\nMe.", "This is an outlook", false},
		// boundary=----=_NextPart_000_0093_01C81419.EB75E850 unquoted: parts found, not shown as raw MIME
		{"mime_emails/raw_email_with_illegal_boundary.eml", "Hello\nThis is an outlook test", "", false},
		// windows-1251 quoted-printable under an unquoted boundary
		{"plain_emails/raw_email_bad_time.eml", "\nFilter2: This message has been scanned", "", false},
		// HTML only: the text is rendered from it
		{"error_emails/content_transfer_encoding_with_8bits.eml", "December 04, 2001\n\nCan't read this email? Click here", "December 04, 2001", true},
		// HTML with nothing but an inline image: no text to render
		{"attachment_emails/attachment_message_rfc822_inline_image.eml", "", `src="cid:emedfeb92f-a786-4718-a446-98db8afb53fb@kronos"`, false},
		// Content-Transfer-Encoding: "quoted printable" and "quoted-printable;" are understood
		{"error_emails/content_transfer_encoding_qp_with_space.eml", "If you're in need of a good RX site for online purchases, we are your answer.", "", false},
		{"error_emails/content_transfer_encoding_with_semi_colon.eml", "Dear Homeowner,\n\n \n\nYou have been pre-approved for a $402,000 Home Loan at a 3.45% Fixed Rate.", "", false},
		// text/plain and text/html, nested multipart/alternative under multipart/mixed
		{"mime_emails/email_with_similar_boundaries.eml", "Test\n", "<p>Test</p>", false},
		// Declared charset wins: iso-8859-1 (read as windows-1252) over bytes that also happen to be valid UTF-8
		{"error_emails/content_transfer_encoding_7-bit.eml", "DISCOVERÃ† CARD", "", false},
		// A misspelt closing boundary: the parts before it are kept
		{"mime_emails/raw_email4.eml", "Some text\n", "", false},
		{"plain_emails/raw_email_incorrect_header.eml", "You are infected with: \nAd Ware and Spy Ware", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			m := mustParseCorpus(t, tt.file)
			if !strings.HasPrefix(m.Text, tt.textPrefix) {
				t.Errorf("Text = %q…, want prefix %q", m.Text[:min(len(m.Text), 120)], tt.textPrefix)
			}
			if !strings.Contains(m.HTML, tt.htmlContains) {
				t.Errorf("HTML %q… lacks %q", m.HTML[:min(len(m.HTML), 200)], tt.htmlContains)
			}
			if m.TextFromHTML != tt.fromHTML {
				t.Errorf("TextFromHTML = %v, want %v", m.TextFromHTML, tt.fromHTML)
			}
			if strings.Contains(m.Text, "\r") {
				t.Errorf("Text keeps CR line ends")
			}
		})
	}
}

func TestParseCorpusIDs(t *testing.T) {
	tests := []struct {
		file       string
		id         string
		inReplyTo  []string
		references []string
	}{
		{"plain_emails/raw_email_reply.eml", "473FFE27.20003@xxx.org", []string{"348F04F142D69C21-291E56D292BC@xxxx.net"}, []string{"473FF3B8.9020707@xxx.org", "348F04F142D69C21-291E56D292BC@xxxx.net"}},
		{"rfc2822/example07.eml", "abcd.1234@local.machine.tld", []string{"3456@example.net"}, []string{"1234@local.machine.example", "3456@example.net"}},
		// "<1234   @   local(blah)  .machine .example>": obsolete white space and a comment
		{"rfc2822/example13.eml", "1234@local.machine.example", nil, nil},
		// A second References field continued without indentation: the first field counts
		{"error_emails/multiple_references_with_one_invalid.eml", "105647271315.NCV17523@x263.net", nil, []string{"foo@bar.net"}},
		// "In-Reply-To:" present but empty
		{"error_emails/empty_in_reply_to.eml", "F194F88AF3E341A6B2B135CC17912811@articondell", nil, nil},
		// Two "@" in the Message-ID are kept as sent
		{"plain_emails/raw_email_double_at_in_header.eml", "d3b8cf8e49f0448085@0c28713a1@f473e@37signals.com", nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			m := mustParseCorpus(t, tt.file)
			if m.MessageID != tt.id || !slices.Equal(m.InReplyTo, tt.inReplyTo) || !slices.Equal(m.References, tt.references) {
				t.Errorf("ids = %q %q %q, want %q %q %q", m.MessageID, m.InReplyTo, m.References, tt.id, tt.inReplyTo, tt.references)
			}
		})
	}
}

func TestParseCorpusDates(t *testing.T) {
	tests := []struct {
		file string
		want string // RFC 3339, "" for a date that degrades to the zero time
		warn string
	}{
		{"rfc2822/example01.eml", "1997-11-21T09:55:06-06:00", ""},
		// "Wed, 9 Jan 2002 19:47:50 MST": an obsolete zone name is -0700
		{"error_emails/content_transfer_encoding_7-bit.eml", "2002-01-09T19:47:50-07:00", ""},
		// "Thu,\r\n 13\r\n Feb\r\n 1969\r\n 23:32\r\n -0330 (Newfoundland Time)": folded, with a comment
		{"rfc2822/example10.eml", "1969-02-13T23:32:00-03:30", ""},
		// "Fri, 21 Nov 1997 09(comment):   55  :  06 -0600"
		{"rfc2822/example13.eml", "1997-11-21T09:55:06-06:00", ""},
		{"plain_emails/raw_email_bad_time.eml", "3609-06-30T15:33:50+06:00", ""},
		{"plain_emails/raw_email_with_bad_date.eml", "", `date "Pn, 29 paX 2007 21:13:00 +0100" not understood`},
		{"error_emails/bad_date_header.eml", "", `date "<HR>" not understood`},
		{"error_emails/bad_date_header2.eml", "", `date "Wed, 15 Dec 2010    59:10 -0500" not understood`},
		{"error_emails/trademark_character_in_subject.eml", "", `date "Tue, 12 Oct 2010 16:21:05 H0500" not understood`},
		// No Date field at all: zero, and nothing to warn about
		{"multi_charset/japanese.eml", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			m := mustParseCorpus(t, tt.file)
			if tt.want == "" {
				if !m.Date.IsZero() {
					t.Errorf("Date = %v, want zero", m.Date)
				}
			} else if want, _ := time.Parse(time.RFC3339, tt.want); !m.Date.Equal(want) || m.Date.Format("-07:00") != want.Format("-07:00") {
				t.Errorf("Date = %v, want %v", m.Date, want)
			}
			if tt.warn != "" && !slices.Contains(m.Warnings, tt.warn) {
				t.Errorf("warnings %q lack %q", m.Warnings, tt.warn)
			}
			if tt.warn == "" {
				for _, w := range m.Warnings {
					if strings.HasPrefix(w, "date ") {
						t.Errorf("unexpected warning %q", w)
					}
				}
			}
		})
	}
}
