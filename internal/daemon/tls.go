package daemon

import (
	"bytes"
	"crypto/tls"
	"fmt"
	"net"
	"sync/atomic"

	"github.com/popbridge/popbridge/internal/config"
)

var tlsVersions = map[string]uint16{
	"1.0": tls.VersionTLS10, "1.1": tls.VersionTLS11, "1.2": tls.VersionTLS12, "1.3": tls.VersionTLS13,
}

// loadCertificate loads tls.cert_file and tls.key_file, or returns nil when
// no certificate is configured.
func loadCertificate(tc config.TLS) (*tls.Certificate, error) {
	if tc.CertFile == "" {
		return nil, nil
	}
	cert, err := tls.LoadX509KeyPair(tc.CertFile, tc.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("tls.cert_file/tls.key_file: %w", err)
	}
	return &cert, nil
}

// tlsCerts is the server certificate and tls.min_version in force. The TLS
// configurations of the listeners read them at every handshake, so that a
// reload reaches the next TLS connection at once.
type tlsCerts struct {
	cert atomic.Pointer[tls.Certificate]
	min  atomic.Uint32 // tls.min_version
}

func newTLSCerts(tc config.TLS) (*tlsCerts, error) {
	cert, err := loadCertificate(tc)
	if err != nil {
		return nil, err
	}
	t := &tlsCerts{}
	t.set(cert, tlsVersions[tc.MinVersion])
	return t, nil
}

// set puts cert and the minimum version in force and reports whether the
// certificate changed.
func (t *tlsCerts) set(cert *tls.Certificate, minVersion uint16) (changed bool) {
	t.min.Store(uint32(minVersion))
	old := t.cert.Swap(cert)
	switch {
	case old == nil || cert == nil:
		return old != cert
	case len(old.Certificate) == 0 || len(cert.Certificate) == 0:
		return true
	}
	return !bytes.Equal(old.Certificate[0], cert.Certificate[0])
}

func (t *tlsCerts) getCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	if c := t.cert.Load(); c != nil {
		return c, nil
	}
	return nil, fmt.Errorf("no server certificate configured (tls.cert_file)")
}

// listenerConfig is the TLS configuration of one listener: the certificate
// in force, at least tls.min_version, except for clients in the networks of
// the listener's legacy lane (lane may be nil), who may use the lane's
// older version and the RSA key exchange old devices often need.
//
// Go's crypto/tls still implements TLS 1.0 and 1.1 as a server. Only its
// defaults exclude them (since Go 1.22; GODEBUG=tls10server=1 would restore
// them for every client): an explicit MinVersion, as set here for the lane
// alone, needs no GODEBUG. Likewise the RSA key exchange cipher suites are
// out of the defaults (GODEBUG tlsrsakex) but allowed when listed
// explicitly, as here. 3DES is not offered (GODEBUG tls3des only affects
// the defaults).
func (t *tlsCerts) listenerConfig(lane *legacyLane) *tls.Config {
	return &tls.Config{
		GetCertificate: t.getCertificate,
		MinVersion:     tls.VersionTLS12,
		GetConfigForClient: func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
			// Session ticket keys stay the listener's (crypto/tls uses the
			// parent's when the returned Config sets none).
			min := uint16(t.min.Load())
			c := &tls.Config{GetCertificate: t.getCertificate, MinVersion: min}
			if lane != nil && lane.tlsMin != 0 && lane.tlsMin < min && hello.Conn != nil && lane.contains(hello.Conn.RemoteAddr()) {
				c.MinVersion = lane.tlsMin
				c.CipherSuites = legacyCipherSuites
			}
			return c, nil
		},
	}
}

// legacyCipherSuites are every suite crypto/tls implements and does not
// call insecure: the defaults plus the RSA key exchange ones.
var legacyCipherSuites = func() []uint16 {
	var ids []uint16
	for _, s := range tls.CipherSuites() {
		ids = append(ids, s.ID)
	}
	return ids
}()

// legacyLane is a listener's legacy: section, parsed.
type legacyLane struct {
	tlsMin    uint16 // 0: TLS as for everyone
	plaintext bool
	nets      ipNets
}

// newLegacyLanes parses the lanes of the listeners that have one, by
// listener address.
func newLegacyLanes(ls []config.Listener) (map[string]*legacyLane, error) {
	lanes := make(map[string]*legacyLane)
	for _, l := range ls {
		if !l.Legacy.Enabled() {
			continue
		}
		nets, err := parseIPNets(l.Legacy.Networks)
		if err != nil {
			return nil, fmt.Errorf("listener %s: legacy network %w", l.Address, err)
		}
		lanes[l.Address] = &legacyLane{tlsMin: tlsVersions[l.Legacy.MinTLSVersion], plaintext: l.Legacy.AllowPlaintext, nets: nets}
	}
	return lanes, nil
}

// contains reports whether addr's IP is in one of the lane's networks. On
// a proxy_protocol listener addr is the client's address from the PROXY
// header: the lane is for the old devices, not for the load balancer.
func (l *legacyLane) contains(addr net.Addr) bool { return l.nets.contains(addr) }
