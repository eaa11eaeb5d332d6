package daemon

import (
	"fmt"
	"net"
)

// ipNets is a list of networks from the configuration (a listener's
// legacy lane, limits.trusted_proxies), each given as a CIDR or a single
// address.
type ipNets []*net.IPNet

// parseIPNets parses CIDRs and addresses; an address is a network of one.
func parseIPNets(list []string) (ipNets, error) {
	nets := make(ipNets, 0, len(list))
	for _, n := range list {
		_, ipnet, err := net.ParseCIDR(n)
		if err != nil {
			ip := net.ParseIP(n)
			if ip == nil {
				return nil, fmt.Errorf("%q is neither an IP address nor a CIDR", n)
			}
			bits := 8 * net.IPv6len
			if ip4 := ip.To4(); ip4 != nil {
				ip, bits = ip4, 8*net.IPv4len
			}
			ipnet = &net.IPNet{IP: ip, Mask: net.CIDRMask(bits, bits)}
		}
		nets = append(nets, ipnet)
	}
	return nets, nil
}

// contains reports whether addr's IP is in one of the networks. IPv4
// addresses in IPv6 form (::ffff:192.0.2.1) count as IPv4.
func (ns ipNets) contains(addr net.Addr) bool {
	var ip net.IP
	switch a := addr.(type) {
	case *net.TCPAddr:
		ip = a.IP
	case nil:
		return false
	default:
		host, _, err := net.SplitHostPort(addr.String())
		if err != nil {
			return false
		}
		ip = net.ParseIP(host)
	}
	if ip == nil {
		return false
	}
	if ip4 := ip.To4(); ip4 != nil {
		ip = ip4
	}
	for _, n := range ns {
		if n.Contains(ip) {
			return true
		}
	}
	return false
}
