package main

// sampleMails are realistic messages a helpdesk mailbox receives.
var sampleMails = []string{
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
		"iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==\r\n" +
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
}
