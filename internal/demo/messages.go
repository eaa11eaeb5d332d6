package demo

import "strings"

// Messages are the sample messages the demo upstream starts with. They
// cover what POP3 framing must get right: plain ASCII, 8-bit UTF-8 with
// RFC 2047 headers, a MIME attachment, and body lines that begin with ".".
func Messages() [][]byte {
	crlf := func(s string) []byte { return []byte(strings.ReplaceAll(s, "\n", "\r\n")) }
	return [][]byte{
		crlf(`From: Alice Example <alice@example.org>
To: Demo User <demo@example.org>
Subject: Welcome to popbridge
Date: Wed, 25 Nov 2026 09:00:00 +0000
Message-ID: <welcome-1@popbridge.example>
Content-Type: text/plain; charset=us-ascii

Hello!

This message lives on an IMAP server. You are reading it over POP3,
through popbridge. Try UIDL: the ids stay the same in every session.
`),
		crlf(`From: =?UTF-8?Q?Bj=C3=B6rn_=C3=85ngstr=C3=B6m?= <bjorn@example.se>
To: demo@example.org
Subject: =?UTF-8?B?R3LDvMOfZSBhdXMgTcO8bmNoZW4g4pyJ?=
Date: Wed, 25 Nov 2026 09:05:00 +0100
Message-ID: <utf8-2@popbridge.example>
MIME-Version: 1.0
Content-Type: text/plain; charset=utf-8
Content-Transfer-Encoding: 8bit

Grüße aus München! Ærøskøbing, Žluťoučký kůň, 日本語のテキスト.
8-bit bytes pass through popbridge unchanged.
`),
		crlf(`From: Reports <reports@example.org>
To: demo@example.org
Subject: Monthly report (with attachment)
Date: Wed, 25 Nov 2026 10:00:00 +0000
Message-ID: <mime-3@popbridge.example>
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="b1"

This is a multi-part message in MIME format.

--b1
Content-Type: text/plain; charset=us-ascii

The report is attached.

--b1
Content-Type: text/csv; name="report.csv"
Content-Disposition: attachment; filename="report.csv"
Content-Transfer-Encoding: base64

bW9udGgsbWVzc2FnZXMKb2N0b2JlciwxMjAwCm5vdmVtYmVyLDEzNDAK
--b1--
`),
		crlf(`From: Dot Tester <dots@example.org>
To: demo@example.org
Subject: Lines that start with a dot
Date: Wed, 25 Nov 2026 11:00:00 +0000
Message-ID: <dots-4@popbridge.example>

The next line is a single dot; POP3 must dot-stuff it:
.
..two dots
.leading dot
The end.
`),
		crlf(`From: Carol <carol@example.org>
To: demo@example.org
Subject: Short note
Date: Wed, 25 Nov 2026 12:00:00 +0000
Message-ID: <short-5@popbridge.example>

DELE me and QUIT: I will be gone from the IMAP mailbox too.
`),
	}
}
