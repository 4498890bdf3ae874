package webhook

import (
	"fmt"
	"net/netip"
	"strings"
)

// A range that deliveries may not reach, and the word for it in a refusal.
type refusedRange struct {
	prefix netip.Prefix
	reason string
}

// Ranges that are not a public address, beyond what netip's predicates name (loopback,
// private, link-local, multicast, unspecified). IPv4 comes first; the order only matters
// for the reason given.
var refusedRanges = []refusedRange{
	{netip.MustParsePrefix("0.0.0.0/8"), "unspecified"},                              // "this network"; Linux dials it as this host
	{netip.MustParsePrefix("100.64.0.0/10"), "shared address space (100.64.0.0/10)"}, // CGNAT, RFC 6598
	{netip.MustParsePrefix("192.0.0.0/24"), "reserved (192.0.0.0/24, IETF protocol assignments)"},
	{netip.MustParsePrefix("192.0.2.0/24"), "documentation (192.0.2.0/24)"},
	{netip.MustParsePrefix("198.51.100.0/24"), "documentation (198.51.100.0/24)"},
	{netip.MustParsePrefix("203.0.113.0/24"), "documentation (203.0.113.0/24)"},
	{netip.MustParsePrefix("192.88.99.0/24"), "reserved (192.88.99.0/24, 6to4 relay anycast)"},
	{netip.MustParsePrefix("198.18.0.0/15"), "benchmarking (198.18.0.0/15)"},
	{netip.MustParsePrefix("255.255.255.255/32"), "broadcast"},
	{netip.MustParsePrefix("240.0.0.0/4"), "reserved (240.0.0.0/4)"},

	{netip.MustParsePrefix("2001::/32"), "Teredo (2001::/32, whose embedded client address is obscured)"},
	{netip.MustParsePrefix("2001:2::/48"), "benchmarking (2001:2::/48)"},
	{netip.MustParsePrefix("2001:db8::/32"), "documentation (2001:db8::/32)"},
	{netip.MustParsePrefix("3fff::/20"), "documentation (3fff::/20)"},
	{netip.MustParsePrefix("2001::/23"), "reserved (2001::/23, IETF protocol assignments)"},
	{netip.MustParsePrefix("64:ff9b:1::/48"), "NAT64 local-use (64:ff9b:1::/48, embeds an IPv4 address)"},
	{netip.MustParsePrefix("fec0::/10"), "site-local"},
	{netip.MustParsePrefix("fc00::/7"), "private (unique local fc00::/7)"},
}

// Prefixes of IPv6 addresses that embed an IPv4 address, which is judged in their stead.
var (
	ipv4Compatible = netip.MustParsePrefix("::/96")        // deprecated, RFC 4291
	nat64          = netip.MustParsePrefix("64:ff9b::/96") // NAT64 well-known prefix, RFC 6052
	sixToFour      = netip.MustParsePrefix("2002::/16")    // 6to4, RFC 3056: 2002:AABB:CCDD::
	globalUnicast  = netip.MustParsePrefix("2000::/3")     // the only IPv6 space allocated for public use
)

// RefusedReason is the one rule for which addresses a webhook may be sent to, applied both
// to a URL's literal address and to every address a name resolves to when it is dialled.
// It names the range ip is in ("loopback", "private", "documentation (192.0.2.0/24)", ...),
// or returns "" for a public address deliveries may reach.
//
// Refused: unspecified and "this network" (0.0.0.0/8), loopback, private (RFC 1918 and
// unique local fc00::/7), link-local, multicast, broadcast, shared address space
// 100.64.0.0/10, documentation, benchmarking and reserved ranges, site-local fec0::/10,
// Teredo 2001::/32 and the rest of 2001::/23, NAT64 local-use 64:ff9b:1::/48, and any IPv6
// address outside global unicast 2000::/3. IPv6 forms that embed an IPv4 address (mapped
// ::ffff:a.b.c.d, compatible ::a.b.c.d, NAT64 64:ff9b::a.b.c.d, 6to4 2002:aabb:ccdd::) are
// judged by the IPv4 address they embed, so that none of them reaches what the IPv4 address
// itself may not.
func RefusedReason(ip netip.Addr) string {
	ip = ip.WithZone("")
	if !ip.IsValid() {
		return "invalid"
	}
	if ip.Is4In6() {
		return embedded(ip.Unmap(), "IPv4-mapped")
	}
	if ip.Is6() {
		switch {
		case ip.IsUnspecified():
			return "unspecified"
		case ip.IsLoopback():
			return "loopback"
		case ipv4Compatible.Contains(ip):
			return embedded(last32(ip), "IPv4-compatible")
		case nat64.Contains(ip):
			return embedded(last32(ip), "NAT64")
		case sixToFour.Contains(ip):
			b := ip.As16()
			return embedded(netip.AddrFrom4([4]byte{b[2], b[3], b[4], b[5]}), "6to4")
		}
	}
	switch {
	case ip.IsUnspecified():
		return "unspecified"
	case ip.IsLoopback():
		return "loopback"
	case ip.IsLinkLocalUnicast():
		return "link-local"
	case ip.IsLinkLocalMulticast():
		return "link-local multicast"
	case ip.IsMulticast():
		return "multicast"
	}
	for _, r := range refusedRanges {
		if r.prefix.Contains(ip) {
			return r.reason
		}
	}
	if ip.IsPrivate() {
		return "private"
	}
	if ip.Is6() && !globalUnicast.Contains(ip) {
		return "reserved (outside 2000::/3)"
	}
	return ""
}

// embedded judges the IPv4 address v4 embedded in an IPv6 address of the given form.
func embedded(v4 netip.Addr, form string) string {
	if reason := RefusedReason(v4); reason != "" {
		return fmt.Sprintf("%s (%s IPv6 embedding %s)", reason, form, v4)
	}
	return ""
}

// last32 is the IPv4 address in the low 32 bits of an IPv6 address.
func last32(ip netip.Addr) netip.Addr {
	b := ip.As16()
	return netip.AddrFrom4([4]byte{b[12], b[13], b[14], b[15]})
}

// numericHost reports whether a host that is not a canonical IP address would still be read
// as an IPv4 address by some resolvers and dialers (inet_aton and the URL standard):
// its last label is a decimal, octal or hexadecimal number, as in 0x7f000001, 2130706433,
// 127.1, 017700000001 and 0177.0.0.1. No top-level domain is numeric, so no name is lost.
func numericHost(host string) bool {
	host = strings.TrimSuffix(host, ".")
	last := host[strings.LastIndex(host, ".")+1:]
	if last == "" {
		return false
	}
	digits := last
	if len(last) >= 2 && last[0] == '0' && (last[1] == 'x' || last[1] == 'X') {
		digits = last[2:]
		return strings.Trim(digits, "0123456789abcdefABCDEF") == ""
	}
	return strings.Trim(digits, "0123456789") == ""
}
