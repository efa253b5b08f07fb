package mailsync

import (
	"strings"
	"testing"

	"golang.org/x/text/encoding"
	"golang.org/x/text/encoding/charmap"
	"golang.org/x/text/encoding/japanese"
	"golang.org/x/text/encoding/korean"
	"golang.org/x/text/encoding/simplifiedchinese"
	"golang.org/x/text/encoding/traditionalchinese"
)

func encodeIn(t *testing.T, enc encoding.Encoding, s string) string {
	t.Helper()
	b, err := enc.NewEncoder().String(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// 8-bit text without a charset, or with one that lies, is detected instead
// of turning into windows-1252 mojibake — in the body, the subject and the
// display names — with a warning.
func TestParseDetectsUndeclaredOrLyingCharsets(t *testing.T) {
	cases := []struct {
		name     string
		enc      encoding.Encoding
		declared string // "" for none
		from     string // display name
		subject  string
		body     string
	}{
		{"GBK undeclared", simplifiedchinese.GBK, "", "王小明", "打印机无法打印", "您好，我的打印机从昨天开始无法打印，请帮忙检查一下。谢谢！"},
		{"Big5 undeclared", traditionalchinese.Big5, "", "陳大文", "印表機無法列印", "您好，我的印表機從昨天開始無法列印，請幫忙檢查一下。謝謝！"},
		{"Shift_JIS labelled ISO-2022-JP", japanese.ShiftJIS, "iso-2022-jp", "山田太郎", "プリンターが印刷できません", "こんにちは。昨日からプリンターが印刷できません。確認していただけますか。よろしくお願いします。"},
		{"EUC-KR undeclared", korean.EUCKR, "", "김철수", "프린터가 인쇄되지 않습니다", "안녕하세요. 어제부터 프린터가 인쇄되지 않습니다. 확인 부탁드립니다. 감사합니다."},
		{"windows-1251 labelled us-ascii", charmap.Windows1251, "us-ascii", "Иван Петров", "Принтер не печатает", "Здравствуйте! Со вчерашнего дня принтер не печатает документы. Пожалуйста, проверьте его как можно скорее. Спасибо за помощь."},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ct := "text/plain"
			if tc.declared != "" {
				ct += "; charset=" + tc.declared
			}
			raw := "From: " + encodeIn(t, tc.enc, tc.from) + " <c@example.com>\r\nTo: s@example.com\r\nSubject: " + encodeIn(t, tc.enc, tc.subject) +
				"\r\nMIME-Version: 1.0\r\nContent-Type: " + ct + "\r\nContent-Transfer-Encoding: 8bit\r\n\r\n" + encodeIn(t, tc.enc, tc.body) + "\r\n"
			m := parseGap(t, raw)
			if strings.TrimSpace(m.Text) != tc.body {
				t.Errorf("body %q, want %q (warnings %v)", m.Text, tc.body, m.Warnings)
			}
			if m.Subject != tc.subject {
				t.Errorf("subject %q, want %q", m.Subject, tc.subject)
			}
			if m.From.Name != tc.from {
				t.Errorf("display name %q, want %q", m.From.Name, tc.from)
			}
			if !hasWarning(m, "detected as") {
				t.Errorf("no warning: %v", m.Warnings)
			}
		})
	}
	// Valid UTF-8 without a charset stays UTF-8; Western 8-bit text stays windows-1252.
	m := parseGap(t, "From: a@b.pt\r\nSubject: Impressão\r\n\r\nA impressora não imprime.\r\n")
	if m.Subject != "Impressão" || strings.TrimSpace(m.Text) != "A impressora não imprime." {
		t.Errorf("UTF-8: %q %q", m.Subject, m.Text)
	}
	m = parseGap(t, "From: a@b.pt\r\nSubject: x\r\n\r\n"+encodeIn(t, charmap.Windows1252, "A impressora não imprime, é urgente.")+"\r\n")
	if strings.TrimSpace(m.Text) != "A impressora não imprime, é urgente." {
		t.Errorf("windows-1252: %q (%v)", m.Text, m.Warnings)
	}
}
