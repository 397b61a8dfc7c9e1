package main

import "net/netip"

// truncateAddr returns the network of the client address s, with the
// first v4Bits (IPv4) or v6Bits (IPv6) bits kept, as a prefix in CIDR
// notation: "203.0.113.7" with 24 gives "203.0.113.0/24", "2001:db8:1:2::5"
// with 48 gives "2001:db8:1::/48". An IPv4-mapped IPv6 address counts as
// IPv4, a zone is dropped, and an address with a port ("203.0.113.7:443",
// "[2001:db8::1]:443") loses its port. ok is false when s is not an
// address: the caller must then hash or omit it, never keep it.
func truncateAddr(s string, v4Bits, v6Bits int) (prefix string, ok bool) {
	a, err := netip.ParseAddr(s)
	if err != nil {
		ap, err := netip.ParseAddrPort(s)
		if err != nil {
			return "", false
		}
		a = ap.Addr()
	}
	a = a.Unmap().WithZone("")
	bits := v6Bits
	if a.Is4() {
		bits = v4Bits
	}
	p, err := a.Prefix(bits)
	if err != nil {
		return "", false
	}
	return p.String(), true
}
