// Package nginxauth runs an authentication service of nginx's mail
// auth_http protocol for tests: service.py, written as such services are
// written for nginx (it URL-decodes Auth-User and Auth-Pass and answers
// only in headers), in a Python process of its own. A test gives it a
// table of users and reads back the headers of every request it got.
package nginxauth
