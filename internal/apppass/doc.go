// Package apppass is popbridge's own passwords for POP3 devices whose
// upstream login is OAuth2 (internal/grants): a scanner or a fetchmail
// script cannot do OAuth2, so at enrolment it is given an app password, and
// the upstream password never reaches it. A user may have several, one per
// device, each with a label, listed and revoked one by one
// (`popbridge oauth2 passwords USER`).
//
// popbridge generates them (20 random base32 characters, 100 bits, in
// groups of four for typing into a device's settings) and keeps only an
// argon2id hash (golang.org/x/crypto/argon2, RFC 9106, in the PHC string
// format with its parameters, so that they can be raised later without
// invalidating older hashes). The first group is the password's ID, stored
// in clear: a login hashes once, against that password's hash, however
// many devices the user has, and the ID names the device in lists and
// logs. The rest is the secret. A wrong password costs the same hashing as
// a right one, also when no password has that ID. At most GOMAXPROCS hashes
// run at once: each takes the parameters' memory (19 MiB by default), and
// devices tend to poll on the same minute.
package apppass
