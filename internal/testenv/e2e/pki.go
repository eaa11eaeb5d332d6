package e2e

import (
	"crypto/tls"
	"crypto/x509"
	"net"
	"os"
	"path/filepath"
	"testing"

	"github.com/popbridge/popbridge/internal/testenv"
)

// PKI is a throw-away CA and a server certificate it signed for
// 127.0.0.1, ::1 and localhost (plus extra IPs), as PEM files.
type PKI struct {
	CAFile, CertFile, KeyFile string
	pool                      *x509.CertPool
}

// NewPKI writes a new PKI to a temporary folder of t.
func NewPKI(t testing.TB, extraIPs ...net.IP) *PKI {
	t.Helper()
	pki, err := testenv.NewPKI("popbridge clients test CA", extraIPs...)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	p := &PKI{
		CAFile:   filepath.Join(dir, "ca.pem"),
		CertFile: filepath.Join(dir, "server.pem"),
		KeyFile:  filepath.Join(dir, "server.key"),
		pool:     x509.NewCertPool(),
	}
	p.pool.AddCert(pki.CA)
	for path, data := range map[string][]byte{p.CAFile: pki.CAPEM, p.CertFile: pki.CertPEM, p.KeyFile: pki.KeyPEM} {
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return p
}

// TLSConfig is a client configuration that trusts the test CA.
func (p *PKI) TLSConfig() *tls.Config {
	return &tls.Config{RootCAs: p.pool, ServerName: "localhost", MinVersion: tls.VersionTLS12}
}
