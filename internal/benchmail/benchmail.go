// Package benchmail generates a deterministic, realistic helpdesk mailbox
// for benchmarks: plain-text requests and replies, HTML mail with inline
// images, office attachments, and a few messages of several megabytes,
// with Portuguese subjects in encoded words and a mix of charsets and
// transfer encodings.
package benchmail

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"math/rand/v2"
	"mime"
	"mime/quotedprintable"
	"strings"
	"time"
)

// kind is the shape of a generated message.
type kind int

const (
	plain kind = iota
	html
	attachment
	large
)

// plan is one message to generate: its shape and payload size.
type plan struct {
	kind    kind
	payload int // attachment or inline-image bytes before encoding; text bytes for plain
}

// Generate makes n messages totalling about totalBytes and passes each, in
// order, to emit. The same n, totalBytes and seed give the same bytes. It
// returns the total size.
func Generate(n int, totalBytes int64, seed uint64, emit func(i int, raw []byte) error) (int64, error) {
	rng := rand.New(rand.NewChaCha8(seedBytes(seed)))
	plans := make([]plan, n)
	nLarge := max(1, n/250)
	nAttach := n * 6 / 100
	nHTML := n * 20 / 100
	for i := range plans {
		switch r := rng.IntN(n); {
		case r < nLarge:
			plans[i] = plan{large, 2_500_000 + rng.IntN(3_500_000)}
		case r < nLarge+nAttach:
			plans[i] = plan{attachment, 120_000 + rng.IntN(900_000)}
		case r < nLarge+nAttach+nHTML:
			plans[i] = plan{html, 10_000 + rng.IntN(90_000)}
		default:
			plans[i] = plan{plain, 600 + rng.IntN(9_000)}
		}
	}
	// Scale the binary payloads so the total lands near totalBytes
	// (base64 adds a third; headers and text add about 1.5 kB a message).
	var fixed, scalable float64
	for _, p := range plans {
		fixed += 1500
		if p.kind == plain {
			fixed += float64(p.payload)
		} else {
			scalable += float64(p.payload) * 4 / 3
		}
	}
	if scale := (float64(totalBytes) - fixed) / scalable; scale > 0 {
		for i := range plans {
			if plans[i].kind != plain {
				plans[i].payload = int(float64(plans[i].payload) * scale)
			}
		}
	}
	var total int64
	base := time.Date(2026, 11, 2, 8, 0, 0, 0, time.FixedZone("BRT", -3*3600))
	for i, p := range plans {
		raw := message(rng, i, p, base.Add(time.Duration(i)*7*time.Minute))
		total += int64(len(raw))
		if err := emit(i, raw); err != nil {
			return total, err
		}
	}
	return total, nil
}

func seedBytes(seed uint64) [32]byte {
	var b [32]byte
	for i := range 8 {
		b[i] = byte(seed >> (8 * i))
	}
	return b
}

var (
	names = []string{"João Conceição", "Maria Antônia Gonçalves", "Lúcia Araújo", "Pedro Álvares", "Ana Beatriz Simões",
		"Carlos Magalhães", "Fernanda Lopes", "Raúl Peña", "Sophie Müller", "Chen Wei"}
	subjects = []string{"Não consigo acessar o sistema", "Dúvida sobre a fatura de novembro", "Solicitação de reembolso",
		"Erro ao emitir nota fiscal", "Pedido de orçamento – manutenção", "Impressora não funciona",
		"Atualização cadastral", "Reclamação: atraso na entrega", "Senha expirada", "Relatório mensal em anexo"}
	phrases = []string{"Bom dia, equipe de suporte.", "Segue em anexo o documento solicitado.",
		"O problema começou ontem à tarde, depois da atualização.", "Já reiniciei o computador e o erro continua.",
		"Poderiam verificar com urgência? Obrigado pela atenção.", "Atenciosamente,",
		"A mensagem de erro é: código 0x80070005 — acesso negado.", "Não é a primeira vez que isso acontece."}
	attachments = []struct{ name, ctype string }{
		{"relatório-mensal.pdf", "application/pdf"}, {"planilha de custos.xlsx", "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"},
		{"contrato assinado.pdf", "application/pdf"}, {"fotos da instalação.zip", "application/zip"},
		{"captura de tela.png", "image/png"}, {"nota fiscal 2026-11.pdf", "application/pdf"},
	}
)

func pick[T any](rng *rand.Rand, s []T) T { return s[rng.IntN(len(s))] }

func paragraph(rng *rand.Rand, size int) string {
	var b strings.Builder
	for b.Len() < size {
		b.WriteString(pick(rng, phrases))
		if rng.IntN(4) == 0 {
			b.WriteString("\r\n\r\n")
		} else {
			b.WriteByte(' ')
		}
	}
	return b.String()
}

func message(rng *rand.Rand, i int, p plan, date time.Time) []byte {
	var b bytes.Buffer
	from := pick(rng, names)
	subject := pick(rng, subjects)
	if i > 0 && rng.IntN(5) == 0 {
		subject = "Re: " + subject
	}
	fmt.Fprintf(&b, "Return-Path: <cliente%d@example.com.br>\r\n", i%97)
	fmt.Fprintf(&b, "Received: from mx.example.com.br (mx.example.com.br [203.0.113.%d]) by mail.example.com with ESMTPS id %x; %s\r\n", i%250+1, rng.Uint64(), date.Format(time.RFC1123Z))
	fmt.Fprintf(&b, "From: %s <cliente%d@example.com.br>\r\n", mime.QEncoding.Encode("utf-8", from), i%97)
	b.WriteString("To: Suporte <suporte@example.com>\r\n")
	fmt.Fprintf(&b, "Subject: %s\r\n", mime.QEncoding.Encode("utf-8", subject))
	fmt.Fprintf(&b, "Date: %s\r\n", date.Format(time.RFC1123Z))
	fmt.Fprintf(&b, "Message-ID: <bench-%06d.%x@example.com.br>\r\n", i, rng.Uint32())
	if strings.HasPrefix(subject, "Re: ") {
		fmt.Fprintf(&b, "In-Reply-To: <bench-%06d@example.com>\r\nReferences: <bench-%06d@example.com>\r\n", i-1, i-1)
	}
	b.WriteString("MIME-Version: 1.0\r\n")
	text := paragraph(rng, 400+rng.IntN(1500))
	switch p.kind {
	case plain:
		if rng.IntN(3) == 0 { // Latin-1, quoted-printable
			b.WriteString("Content-Type: text/plain; charset=iso-8859-1\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n")
			writeQP(&b, latin1(paragraph(rng, p.payload)))
		} else {
			b.WriteString("Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n")
			b.WriteString(paragraph(rng, p.payload))
		}
		b.WriteString("\r\n")
	case html:
		fmt.Fprintf(&b, "Content-Type: multipart/related; boundary=\"rel-%d\"\r\n\r\n", i)
		fmt.Fprintf(&b, "--rel-%d\r\nContent-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n", i)
		writeQP(&b, []byte("<html><body><p>"+strings.ReplaceAll(text, "\r\n\r\n", "</p><p>")+"</p><img src=\"cid:logo"+fmt.Sprint(i)+"@example\"></body></html>"))
		fmt.Fprintf(&b, "\r\n--rel-%d\r\nContent-Type: image/png\r\nContent-ID: <logo%d@example>\r\nContent-Disposition: inline; filename=\"logo.png\"\r\nContent-Transfer-Encoding: base64\r\n\r\n", i, i)
		writeBase64(&b, rng, p.payload)
		fmt.Fprintf(&b, "--rel-%d--\r\n", i)
	case attachment, large:
		a := pick(rng, attachments)
		fmt.Fprintf(&b, "Content-Type: multipart/mixed; boundary=\"mix-%d\"\r\n\r\nThis is a multi-part message in MIME format.\r\n", i)
		fmt.Fprintf(&b, "--mix-%d\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n%s\r\n", i, text)
		fmt.Fprintf(&b, "--mix-%d\r\nContent-Type: %s; name=\"%s\"\r\nContent-Disposition: attachment; filename*=utf-8''%s\r\nContent-Transfer-Encoding: base64\r\n\r\n",
			i, a.ctype, mime.QEncoding.Encode("utf-8", a.name), pathEscape(a.name))
		writeBase64(&b, rng, p.payload)
		fmt.Fprintf(&b, "--mix-%d--\r\n", i)
	}
	return b.Bytes()
}

func writeBase64(b *bytes.Buffer, rng *rand.Rand, n int) {
	raw := make([]byte, n)
	for i := 0; i+8 <= n; i += 8 {
		v := rng.Uint64()
		for j := range 8 {
			raw[i+j] = byte(v >> (8 * j))
		}
	}
	enc := base64.StdEncoding.EncodeToString(raw)
	for len(enc) > 76 {
		b.WriteString(enc[:76])
		b.WriteString("\r\n")
		enc = enc[76:]
	}
	b.WriteString(enc)
	b.WriteString("\r\n")
}

func writeQP(b *bytes.Buffer, p []byte) {
	w := quotedprintable.NewWriter(b)
	w.Write(p)
	w.Close()
}

// latin1 converts s to ISO-8859-1, dropping what it cannot represent.
func latin1(s string) []byte {
	out := make([]byte, 0, len(s))
	for _, r := range s {
		if r < 256 {
			out = append(out, byte(r))
		}
	}
	return out
}

func pathEscape(s string) string {
	var b strings.Builder
	for _, c := range []byte(s) {
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("-._~", c) >= 0 {
			b.WriteByte(c)
		} else {
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	return b.String()
}
