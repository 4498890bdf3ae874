package agent

import (
	"fmt"
	"net"
	"strings"

	"github.com/modelplane/modelplane/agent/runtime"
)

// ResolveReplicaHost checks a replica host (the agent's --replica-host): the address this
// host's model servers listen on and gateways reach them at. It must be an IP address, or a
// host name, without a port, and an address of this host: a loopback address or one of its
// interfaces'. A host name is resolved once, here, to the first of its addresses that is this
// host's; that address is returned, so that what the agent records needs no name lookup.
// Empty is runtime.DefaultHost.
func ResolveReplicaHost(host string) (string, error) {
	if host == "" {
		return runtime.DefaultHost, nil
	}
	if ip := net.ParseIP(host); ip != nil {
		return localIP(ip)
	}
	if _, port, err := net.SplitHostPort(host); err == nil {
		return "", fmt.Errorf("%q has a port (%s): give the address alone; each replica gets a port of its own", host, port)
	}
	if strings.HasPrefix(host, "[") {
		return "", fmt.Errorf("%q: give an IPv6 address without brackets", host)
	}
	if !validHostName(host) {
		return "", fmt.Errorf("%q is neither an IP address nor a host name", host)
	}
	ips, err := net.LookupIP(host)
	if err != nil {
		return "", fmt.Errorf("host name %q: %w", host, err)
	}
	for _, ip := range ips {
		if addr, err := localIP(ip); err == nil {
			return addr, nil
		}
	}
	return "", fmt.Errorf("host name %q resolves to %v, none of which is an address of this host", host, ips)
}

// localIP returns ip as text if this host has it.
func localIP(ip net.IP) (string, error) {
	switch {
	case ip.IsUnspecified():
		return "", fmt.Errorf("%s means every address, which gateways cannot connect to: give this host's address on the network gateways reach it on", ip)
	case ip.IsLoopback():
		return ip.String(), nil
	}
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return "", fmt.Errorf("listing this host's addresses: %w", err)
	}
	for _, a := range addrs {
		var have net.IP
		switch a := a.(type) {
		case *net.IPNet:
			have = a.IP
		case *net.IPAddr:
			have = a.IP
		}
		if have != nil && have.Equal(ip) {
			return ip.String(), nil
		}
	}
	return "", fmt.Errorf("%s is not an address of this host (its interfaces have %s): model servers could not listen on it", ip, addressList(addrs))
}

func addressList(addrs []net.Addr) string {
	if len(addrs) == 0 {
		return "none"
	}
	out := make([]string, len(addrs))
	for i, a := range addrs {
		out[i] = a.String()
	}
	return strings.Join(out, ", ")
}

// validHostName reports whether s is a DNS host name: dot-separated labels of letters, digits
// and hyphens, neither starting nor ending with a hyphen.
func validHostName(s string) bool {
	s = strings.TrimSuffix(s, ".")
	if s == "" || len(s) > 253 {
		return false
	}
	for _, label := range strings.Split(s, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, c := range label {
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
				return false
			}
		}
	}
	return true
}
