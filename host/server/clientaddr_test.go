package server

import (
	"net/http/httptest"
	"net/netip"
	"testing"
)

func TestClientAddrBelievesXForwardedForOnlyFromTrustedProxies(t *testing.T) {
	s := &Server{proxies: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}}
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
