package server

import (
	"crypto/tls"
	"net/http/httptest"
	"net/netip"
	"testing"

	"stellaops.org/authority/host/mtls"
)

func TestClientAddrBelievesXForwardedForOnlyFromTrustedProxies(t *testing.T) {
	proxies := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}
	s := &Server{extractor: &mtls.Extractor{TrustedProxies: proxies}}
	cases := []struct {
		peer, xff, want string
	}{
		{"203.0.113.9:5555", "198.51.100.1", "203.0.113.9"},                  // untrusted peer: header ignored
		{"10.0.0.2:5555", "198.51.100.1", "198.51.100.1"},                    // trusted proxy
		{"10.0.0.2:5555", "6.6.6.6, 198.51.100.1, 10.0.0.3", "198.51.100.1"}, // right-most untrusted hop
		{"10.0.0.2:5555", "", "10.0.0.2"},                                    // no header
		{"10.0.0.2:5555", "garbage, 198.51.100.1", "198.51.100.1"},
		{"10.0.0.2:5555", "198.51.100.1, garbage", "10.0.0.2"}, // unparsable nearest hop: stop at the proxy
		{"[::ffff:10.0.0.2]:5555", "2001:db8::1", "2001:db8::1"},
	}
	for _, tc := range cases {
		r := httptest.NewRequest("POST", "/token", nil)
		r.RemoteAddr = tc.peer
		if tc.xff != "" {
			r.Header.Set("X-Forwarded-For", tc.xff)
		}
		if got := s.clientAddr(r); got != tc.want {
			t.Errorf("peer %s xff %q: got %s, want %s", tc.peer, tc.xff, got, tc.want)
		}
	}
}

// TestClientAddrOnHTTPSListenerIsTheTCPPeer: a request that arrived over
// TLS is a direct client (proxy header trust is per listener), so its
// X-Forwarded-For is ignored even from a proxy network, unless
// security.trustProxyHeadersOnHTTPS says a re-encrypting proxy sits in front.
func TestClientAddrOnHTTPSListenerIsTheTCPPeer(t *testing.T) {
	proxies := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}
	for _, overTLS := range []bool{false, true} {
		s := &Server{extractor: &mtls.Extractor{TrustedProxies: proxies, TrustOverTLS: overTLS}}
		r := httptest.NewRequest("POST", "/token", nil)
		r.RemoteAddr = "10.0.0.2:5555"
		r.TLS = &tls.ConnectionState{}
		r.Header.Set("X-Forwarded-For", "198.51.100.1")
		want := "10.0.0.2"
		if overTLS {
			want = "198.51.100.1"
		}
		if got := s.clientAddr(r); got != want {
			t.Errorf("TrustOverTLS=%v: got %s, want %s", overTLS, got, want)
		}
	}
}

// The client address and the certificate headers trust proxies by one rule
// (mtls.Extractor.TrustsProxy): a zoned IPv6 hop of a trusted link-local
// proxy network is a proxy for both, so it is skipped, not taken for the
// client.
func TestClientAddrTrustsZonedProxiesAsTheCertificateHeadersDo(t *testing.T) {
	proxies := []netip.Prefix{netip.MustParsePrefix("fe80::/10")}
	e := &mtls.Extractor{TrustedProxies: proxies}
	s := &Server{extractor: e}
	r := httptest.NewRequest("POST", "/token", nil)
	r.RemoteAddr = "[fe80::2%eth0]:5555"
	r.Header.Set("X-Forwarded-For", "2001:db8::7, fe80::3%eth0")
	if !e.TrustsPeer(r) {
		t.Fatal("the zoned peer of a trusted network is not trusted")
	}
	if got := s.clientAddr(r); got != "2001:db8::7" {
		t.Fatalf("client address %s, want 2001:db8::7 (fe80::3%%eth0 is a trusted proxy hop)", got)
	}
}
