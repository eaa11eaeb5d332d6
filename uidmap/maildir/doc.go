// Package maildir reads what `popbridge import-uidl -dovecot-uidlist` needs
// of a Dovecot maildir: its dovecot-uidlist (UIDVALIDITY, UIDs, the POP3
// UIDLs Dovecot saved, sizes) and, where the records lack them, sizes and
// headers from the message files around it. Source turns them into the
// uidmap.ImportSource that uidmap's importer matches with the upstream.
package maildir
