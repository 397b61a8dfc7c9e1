package server

import (
	"net/http"
	"net/netip"
	"strings"
)

// clientAddr is the client's IP address: the peer's, or, when the peer is a
// trusted proxy on this listener (mtls.Extractor.TrustsPeer: on the HTTPS
// listener only with security.trustProxyHeadersOnHTTPS), the right-most
// X-Forwarded-For entry that is not itself a trusted proxy (entries further
// left are client-controlled).
func (s *Server) clientAddr(req *http.Request) string {
	peer, err := netip.ParseAddrPort(req.RemoteAddr)
	if err != nil {
		return req.RemoteAddr
	}
	ip := peer.Addr().Unmap()
	if !s.extractor.TrustsPeer(req) {
		return ip.String()
	}
	hops := strings.Split(strings.Join(req.Header.Values("X-Forwarded-For"), ","), ",")
	for i := len(hops) - 1; i >= 0; i-- {
		a, err := netip.ParseAddr(strings.TrimSpace(hops[i]))
		if err != nil {
			break
		}
		a = a.Unmap()
		if !s.extractor.TrustsProxy(a) {
			return a.String()
		}
	}
	return ip.String()
}
