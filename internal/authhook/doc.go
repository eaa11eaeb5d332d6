// Package authhook asks an HTTP authentication and routing service about a
// login, in the protocol of nginx's mail auth_http module, so that a
// service written for nginx works unchanged.
//
// The request is a GET with the login in headers (Auth-Method, Auth-User,
// Auth-Pass URL-encoded as nginx does, Auth-Protocol: pop3,
// Auth-Login-Attempt, Client-IP, Auth-SSL); the body of the answer is
// ignored and so is its status line, as nginx does: only the headers
// decide.
//
//	Auth-Status: OK              the login is accepted; Auth-Server and
//	Auth-Server: 198.51.100.1    Auth-Port may name the IMAP server, and
//	Auth-Port: 143               Auth-User / Auth-Pass rewrite the login
//
//	Auth-Status: Invalid login   a refusal: its text goes to the client;
//	Auth-Wait: 3                 with Auth-Wait after that many seconds and
//	                             the connection stays open, without it the
//	                             connection is closed
//
//	Auth-Status: WAIT            ask again after Auth-Wait seconds
//	Auth-Wait: 2
//
// A service that cannot be reached, answers late or answers without
// Auth-Status is an error of its own (ErrUnavailable): never a login.
package authhook
