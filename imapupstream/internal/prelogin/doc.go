// Package prelogin speaks the part of an IMAP client's conversation that
// go-imap v2 cannot: the ID command (RFC 2971) with Dovecot's
// x-originating-ip and friends, which imap.IDData has no room for. Run works
// on the bare connection (after implicit TLS) before imapclient takes it:
//
//   - it reads the greeting itself;
//   - with Options.StartTLS it runs STARTTLS and the TLS handshake, then
//     asks CAPABILITY over TLS (RFC 3501 section 6.2.1: what the server said
//     before TLS is forgotten), which go-imap would have asked anyway;
//   - when the greeting advertised ID and Options.ID is set, it sends ID:
//     pipelined with that CAPABILITY after STARTTLS (no extra round trip);
//     without STARTTLS, in front of the login's write when Options.Ahead
//     says the server takes that (aheadConn, which reads the ID's answer
//     off before imapclient sees it), or else as one round trip of its own;
//   - it returns a connection for imapclient that first replays a greeting:
//     the server's own (its capabilities are still true: ID changes none),
//     or after STARTTLS one carrying the capabilities the server gave over
//     TLS, so that imapclient needs no CAPABILITY round trip of its own.
//
// A greeting without a capability list gets no ID: finding out whether the
// server knows ID would cost a round trip of its own.
package prelogin
