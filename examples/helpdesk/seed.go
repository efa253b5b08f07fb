package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"image"
	"image/color"
	"image/draw"
	"image/png"
	"strings"

	"github.com/mailsync/mailsync"
)

// The demo mailbox: an in-process IMAP server (internal/demoimap) with the
// mail a helpdesk receives, and a connection to it already configured, so
// `go run ./examples/helpdesk` needs no set-up. A real host has none of
// this: its admin fills the connection form.
const (
	seedUser       = "suporte@empresa.pt"
	seedConnection = "Suporte"
)

// seed fills an empty database with the host's ticket types, their
// mappings, a routing rule, and points the demo connection at the demo
// server (its port changes at every start). The admin's own edits are
// kept: only missing rows are added.
func seed(ctx context.Context, st *Store, host string, port int) error {
	for _, t := range []TicketType{{"incident", "Incidente", "Incident"}, {"request", "Pedido", "Request"}} {
		if err := st.AddTicketType(ctx, t); err != nil {
			return err
		}
	}
	for _, tt := range []string{"incident", "request"} {
		if err := st.AddMappingIfMissing(ctx, seedMapping(tt)); err != nil {
			return err
		}
	}
	if host == "" {
		return nil // -no-seed: no demo mailbox to point at
	}
	row, err := st.Connection(ctx, seedConnection)
	switch {
	case errors.Is(err, ErrNotFound):
		c := mailsync.Connection{Name: seedConnection, Enabled: true, User: seedUser, Server: host, Port: port,
			Protocol: mailsync.IMAP, ConnectedWith: []string{"incident", "request"}}
		if err := st.CreateConnection(ctx, c); errors.Is(err, ErrExists) {
			return nil // another instance made it a moment ago
		} else if err != nil {
			return err
		}
		// Invoices are requests, not incidents.
		return st.SetRules(ctx, seedConnection, []mailsync.Rule{{ID: "faturas", TicketType: "request",
			When: []mailsync.Condition{{Field: "subject", Op: mailsync.OpContains, Value: "fatura"}}}})
	case err != nil:
		return err
	case row.Conn.Server == host && row.Conn.User == seedUser && row.Conn.OAuth == nil:
		c := row.Conn
		c.Port = port
		return st.SaveConnection(ctx, c)
	}
	return nil
}

// seedMapping is a ticket type's starting mapping: which e-mail field fills
// which ticket field.
func seedMapping(ticketType string) mailsync.Mapping {
	return mailsync.Mapping{TicketType: ticketType, Fields: []mailsync.FieldMapping{
		{Ticket: "requester", Source: mailsync.FieldFrom},
		{Ticket: "title", Source: mailsync.FieldSubject, Default: "(sem assunto)", MaxLength: 120},
		{Ticket: "description", Source: mailsync.FieldBodyReply},
		{Ticket: "attachments", Source: mailsync.FieldAttachments},
		{Ticket: "priority", Source: "header:X-Priority", Default: "3"},
		{Ticket: "channel", Const: "e-mail"},
	}}
}

// screenshotPNG draws the customer's "screenshot" of an error dialog (a
// window with a title bar and a red icon), base64 in 76-column lines.
func screenshotPNG() string {
	img := image.NewRGBA(image.Rect(0, 0, 240, 90))
	fill := func(r image.Rectangle, c color.RGBA) { draw.Draw(img, r, &image.Uniform{c}, image.Point{}, draw.Src) }
	fill(img.Bounds(), color.RGBA{0xf0, 0xf0, 0xf0, 0xff})
	fill(image.Rect(0, 0, 240, 18), color.RGBA{0x1f, 0x3a, 0x5f, 0xff})
	fill(image.Rect(16, 34, 56, 74), color.RGBA{0xc6, 0x28, 0x28, 0xff})
	fill(image.Rect(33, 40, 39, 60), color.RGBA{0xff, 0xff, 0xff, 0xff})
	fill(image.Rect(33, 64, 39, 70), color.RGBA{0xff, 0xff, 0xff, 0xff})
	for y := 38; y < 72; y += 10 {
		fill(image.Rect(72, y, 220-y, y+4), color.RGBA{0x88, 0x88, 0x88, 0xff})
	}
	var buf bytes.Buffer
	png.Encode(&buf, img)
	enc := base64.StdEncoding.EncodeToString(buf.Bytes())
	var lines []string
	for len(enc) > 76 {
		lines, enc = append(lines, enc[:76]), enc[76:]
	}
	return strings.Join(append(lines, enc), "\r\n")
}

// nested wraps a text part in depth multipart/mixed levels: valid MIME,
// but deeper than syncLimits allows, so a sync quarantines it.
func nested(depth int) string {
	var b strings.Builder
	for i := 0; i < depth; i++ {
		fmt.Fprintf(&b, "Content-Type: multipart/mixed; boundary=\"b%d\"\r\n\r\n--b%d\r\n", i, i)
	}
	b.WriteString("Content-Type: text/plain; charset=utf-8\r\n\r\nO anexo ficou dentro de vários reencaminhamentos.\r\n")
	for i := depth - 1; i >= 0; i-- {
		fmt.Fprintf(&b, "--b%d--\r\n", i)
	}
	return b.String()
}

// seedMails are realistic messages a helpdesk mailbox receives (the first
// five as in examples/demo).
var seedMails = []string{ // a var, not a const: the image is drawn at start-up
	// A Portuguese subject with accents, encoded words, ISO-8859-1 quoted-printable body.
	"From: =?ISO-8859-1?Q?Jo=E3o_Gon=E7alves?= <joao.goncalves@cliente.pt>\r\n" +
		"To: Suporte <suporte@empresa.pt>\r\n" +
		"Subject: =?ISO-8859-1?Q?Impressora_do_2=BA_andar_n=E3o_imprime?=\r\n" +
		"Date: Mon, 23 Nov 2026 09:14:02 +0000\r\n" +
		"Message-ID: <impressora-2andar@cliente.pt>\r\n" +
		"MIME-Version: 1.0\r\n" +
		"Content-Type: text/plain; charset=ISO-8859-1\r\n" +
		"Content-Transfer-Encoding: quoted-printable\r\n\r\n" +
		"Bom dia,\r\n\r\nA impressora do 2=BA andar n=E3o imprime desde ontem: aparece =\r\n" +
		"\"papel encravado\" mas n=E3o h=E1 papel nenhum.\r\n\r\nObrigado,\r\nJo=E3o\r\n",

	// An HTML mail with an inline image (multipart/related, cid: reference).
	"From: Maria Silva <maria.silva@parceiro.com.br>\r\n" +
		"To: suporte@empresa.pt\r\n" +
		"Subject: Erro ao aceder ao portal\r\n" +
		"Date: Mon, 23 Nov 2026 10:02:45 -0300\r\n" +
		"Message-ID: <portal-erro-123@parceiro.com.br>\r\n" +
		"MIME-Version: 1.0\r\n" +
		"Content-Type: multipart/related; boundary=\"rel\"\r\n\r\n" +
		"--rel\r\nContent-Type: text/html; charset=utf-8\r\n\r\n" +
		"<html><body><p>Olá,</p><p>Ao entrar no portal aparece este erro:</p>" +
		"<img src=\"cid:erro@parceiro\" alt=\"captura\"><script>alert('x')</script>" +
		"<p>Podem ajudar?<br>Maria</p></body></html>\r\n" +
		"--rel\r\nContent-Type: image/png\r\nContent-ID: <erro@parceiro>\r\nContent-Disposition: inline; filename=\"erro.png\"\r\n" +
		"Content-Transfer-Encoding: base64\r\n\r\n" +
		screenshotPNG() + "\r\n" +
		"--rel--\r\n",

	// An attachment with an RFC 2231 file name.
	"From: \"Contabilidade Lda.\" <faturas@contabilidade.pt>\r\n" +
		"To: suporte@empresa.pt\r\n" +
		"Subject: Fatura em falta no sistema\r\n" +
		"Date: Mon, 23 Nov 2026 11:30:00 +0000\r\n" +
		"Message-ID: <fatura-2026-311@contabilidade.pt>\r\n" +
		"MIME-Version: 1.0\r\n" +
		"Content-Type: multipart/mixed; boundary=\"mix\"\r\n\r\n" +
		"--mix\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n" +
		"Segue em anexo a fatura que não aparece no sistema.\r\n" +
		"--mix\r\nContent-Type: application/pdf\r\n" +
		"Content-Disposition: attachment; filename*=UTF-8''fatura%20mar%C3%A7o.pdf\r\n" +
		"Content-Transfer-Encoding: base64\r\n\r\n" +
		"JVBERi0xLjQKJcOkw7zDtsOfCjEgMCBvYmoKPDwvVHlwZS9DYXRhbG9nPj4KZW5kb2JqCnRyYWlsZXIKPDwvUm9vdCAxIDAgUj4+CiUlRU9GCg==\r\n" +
		"--mix--\r\n",

	// A reply to the first mail (Outlook style, RES: prefix, References chain).
	"From: =?ISO-8859-1?Q?Jo=E3o_Gon=E7alves?= <joao.goncalves@cliente.pt>\r\n" +
		"To: Suporte <suporte@empresa.pt>\r\n" +
		"Subject: =?UTF-8?Q?RES:_Impressora_do_2=C2=BA_andar_n=C3=A3o_imprime?=\r\n" +
		"Date: Mon, 23 Nov 2026 14:40:10 +0000\r\n" +
		"Message-ID: <impressora-2andar-res1@cliente.pt>\r\n" +
		"In-Reply-To: <impressora-2andar@cliente.pt>\r\n" +
		"References: <impressora-2andar@cliente.pt>\r\n" +
		"MIME-Version: 1.0\r\n" +
		"Content-Type: text/plain; charset=utf-8\r\n\r\n" +
		"Entretanto reiniciei a impressora e continua igual.\r\n\r\n> Bom dia,\r\n> A impressora do 2º andar não imprime\r\n",

	// An out-of-office auto-reply (RFC 3834).
	"From: Pedro Costa <pedro.costa@cliente.pt>\r\n" +
		"To: suporte@empresa.pt\r\n" +
		"Subject: =?UTF-8?Q?Aus=C3=AAncia_tempor=C3=A1ria:_Erro_ao_aceder_ao_portal?=\r\n" +
		"Date: Mon, 23 Nov 2026 15:00:00 +0000\r\n" +
		"Message-ID: <ooo-7781@cliente.pt>\r\n" +
		"Auto-Submitted: auto-replied\r\n" +
		"X-Auto-Response-Suppress: All\r\n" +
		"MIME-Version: 1.0\r\n" +
		"Content-Type: text/plain; charset=utf-8\r\n\r\n" +
		"Estou ausente até 30 de novembro, sem acesso ao e-mail.\r\n",

	// Mail nested deeper than this host accepts: quarantined, then replayed by the admin.
	"From: Reencaminhador <fwd@parceiro.com.br>\r\n" +
		"To: suporte@empresa.pt\r\n" +
		"Subject: Fwd: Fwd: Fwd: pedido antigo\r\n" +
		"Date: Mon, 23 Nov 2026 16:20:00 +0000\r\n" +
		"Message-ID: <aninhado-42@parceiro.com.br>\r\n" +
		"MIME-Version: 1.0\r\n" + nested(12),
}
