// Package clientip turns a client's address into the key that per-source limits count: an
// IPv4 address as it is, an IPv6 address by its /64 network, since one subscriber usually holds
// a whole /64 and could otherwise step through 2^64 addresses to escape a limit.
package clientip

import "net/netip"

// Key is the limit key of address ip ("" or unparsable: the text itself).
func Key(ip string) string {
	a, err := netip.ParseAddr(ip)
	if err != nil {
		return ip
	}
	a = a.Unmap()
	if a.Is4() {
		return a.String()
	}
	p, err := a.WithZone("").Prefix(64)
	if err != nil {
		return ip
	}
	return p.String()
}
