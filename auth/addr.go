package auth

import (
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strings"
)

// clientIP is the address of the client of r: the peer of the connection,
// or, when that peer is a trusted proxy, the last address of
// X-Forwarded-For that is not one (a client can write the header's start,
// never its end). An address that cannot be read is the zero Addr.
func (a *Authorizer) clientIP(r *http.Request) netip.Addr {
	ip := peerIP(r.RemoteAddr)
	if !inAny(a.proxies, ip) {
		return ip
	}
	hops := r.Header.Values("X-Forwarded-For")
	for i := len(hops) - 1; i >= 0; i-- {
		list := strings.Split(hops[i], ",")
		for j := len(list) - 1; j >= 0; j-- {
			hop := hopIP(list[j])
			if !hop.IsValid() {
				return ip // a hop that cannot be read: stop at the last one known
			}
			ip = hop
			if !inAny(a.proxies, ip) {
				return ip
			}
		}
	}
	return ip
}

// trustedHops is how many trusted proxies r came through: none when its
// peer is not one; else the peer and each trusted address at the end of
// X-Forwarded-For, as clientIP walks them.
func (a *Authorizer) trustedHops(r *http.Request) int {
	if !inAny(a.proxies, peerIP(r.RemoteAddr)) {
		return 0
	}
	n := 1
	hops := r.Header.Values("X-Forwarded-For")
	for i := len(hops) - 1; i >= 0; i-- {
		list := strings.Split(hops[i], ",")
		for j := len(list) - 1; j >= 0; j-- {
			if !inAny(a.proxies, hopIP(list[j])) {
				return n
			}
			n++
		}
	}
	return n
}

// Client names the client of r as the limits count it: its address (the
// /64 of an IPv6 one), read through trusted proxies.
func (a *Authorizer) Client(r *http.Request) string { return addrName(a.clientIP(r)) }

// PeerClient names the client of r when no proxy is trusted: the address
// of its connection's peer, as Client counts it.
func PeerClient(r *http.Request) string { return addrName(peerIP(r.RemoteAddr)) }

// hopIP reads one hop of X-Forwarded-For: an address, or an address with a
// port ("192.0.2.1:5000", "[2001:db8::1]:443"), as some proxies write them.
func hopIP(s string) netip.Addr {
	s = strings.TrimSpace(s)
	if ip, err := netip.ParseAddr(s); err == nil {
		return ip.WithZone("").Unmap()
	}
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap.Addr().WithZone("").Unmap()
	}
	return netip.Addr{}
}

// peerIP reads the address of host:port.
func peerIP(hostport string) netip.Addr {
	host, _, err := net.SplitHostPort(hostport)
	if err != nil {
		host = hostport
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return netip.Addr{}
	}
	return ip.WithZone("").Unmap()
}

func inAny(prefixes []netip.Prefix, ip netip.Addr) bool {
	return ip.IsValid() && slices.ContainsFunc(prefixes, func(p netip.Prefix) bool { return p.Contains(ip) })
}

// addrName is what failures of ip are counted against: an IPv4 address, or
// the /64 of an IPv6 address, which one host usually holds whole.
func addrName(ip netip.Addr) string {
	if !ip.IsValid() {
		return "unknown"
	}
	if ip.Is4() {
		return ip.String()
	}
	p, _ := ip.Prefix(64)
	return p.String()
}
