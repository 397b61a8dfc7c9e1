package mtls_test

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"testing"
	"time"

	"stellaops.org/authority/host/mtls"
	"stellaops.org/authority/host/mtls/mtlstest"
)

func proxyRequest(remote string, h map[string][]string) *http.Request {
	r := httptest.NewRequest(http.MethodPost, "/token", nil)
	r.RemoteAddr = remote
	for k, vs := range h {
		r.Header[http.CanonicalHeaderKey(k)] = vs
	}
	return r
}

// TestRFC9440_2_4_HeaderFromTrustedProxy: a trusted TLS-terminating proxy's
// certificate header stands in for our own handshake, and the chain it
// forwards is used for path building.
func TestRFC9440_2_4_HeaderFromTrustedProxy(t *testing.T) {
	root := mtlstest.NewCA(t, "tenant root")
	inter := root.Intermediate(t, "tenant issuing")
	leaf := inter.Leaf(t, mtlstest.Options{URIs: []string{mtls.StellaOpsClientURI("svc")}})
	ext := &mtls.Extractor{TrustedProxies: []netip.Prefix{
		netip.MustParsePrefix("10.0.0.0/8"),
		netip.MustParsePrefix("fd00::/8"),
	}}
	cc := mtls.FormatClientCertHeader(leaf.Cert)
	chain := mtls.FormatClientCertChainHeader(leaf.Chain)
	cases := []struct {
		name      string
		remote    string
		h         map[string][]string
		wantChain int
	}{
		{"Client-Cert + chain, IPv4", "10.1.2.3:4567", map[string][]string{"Client-Cert": {cc}, "Client-Cert-Chain": {chain}}, 1},
		{"chain split over field lines", "10.1.2.3:4567", map[string][]string{"Client-Cert": {cc}, "Client-Cert-Chain": {chain, chain}}, 2},
		{"IPv6 proxy", "[fd00::5]:443", map[string][]string{"Client-Cert": {cc}, "Client-Cert-Chain": {chain}}, 1},
		{"IPv4-mapped IPv6 peer", "[::ffff:10.9.9.9]:443", map[string][]string{"Client-Cert": {cc}, "Client-Cert-Chain": {chain}}, 1},
		{"X-SSL-Client-Cert (nginx)", "10.0.0.1:1", map[string][]string{"X-SSL-Client-Cert": {nginxEscape(string(leaf.CertPEM))}}, 0},
		{"Client-Cert preferred over X-SSL-Client-Cert", "10.0.0.1:1", map[string][]string{"Client-Cert": {cc}, "Client-Cert-Chain": {chain}, "X-SSL-Client-Cert": {"garbage"}}, 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p, err := ext.FromRequest(proxyRequest(tc.remote, tc.h))
			if err != nil {
				t.Fatal(err)
			}
			if p.Source != mtls.SourceProxyHeader || !p.TLS || p.Leaf == nil || !p.Leaf.Equal(leaf.Cert) || p.IgnoredUntrustedHeader {
				t.Fatalf("Presented = %+v", p)
			}
			if len(p.Chain) != tc.wantChain {
				t.Fatalf("chain has %d certs, want %d", len(p.Chain), tc.wantChain)
			}
			if tc.wantChain > 0 {
				err := mtls.Authenticate(p, mtls.ClientRule{Method: mtls.MethodTLSClientAuth, SANURI: mtls.StellaOpsClientURI("svc")},
					&mtls.TrustStore{Roots: root.Pool()}, mtls.AllSANTypes(), time.Now())
				if err != nil {
					t.Fatalf("Authenticate with the forwarded chain: %v", err)
				}
			}
		})
	}

	t.Run("blank header is no certificate", func(t *testing.T) {
		p, err := ext.FromRequest(proxyRequest("10.0.0.1:1", map[string][]string{"X-SSL-Client-Cert": {""}, "Client-Cert": {"  "}}))
		if err != nil || p.Leaf != nil || p.TLS || p.IgnoredUntrustedHeader {
			t.Fatalf("Presented = %+v, err = %v", p, err)
		}
	})
}

// TestRFC9440_HeaderIgnoredFromUntrustedPeer: certificate headers from any
// peer outside TrustedProxies are ignored (and reported), whether the
// request is plain HTTP or TLS.
func TestRFC9440_HeaderIgnoredFromUntrustedPeer(t *testing.T) {
	victim := mtlstest.NewCA(t, "tenant root").Leaf(t, mtlstest.Options{})
	spoof := map[string][]string{
		"Client-Cert":       {mtls.FormatClientCertHeader(victim.Cert)},
		"X-SSL-Client-Cert": {nginxEscape(string(victim.CertPEM))},
	}
	trusted10 := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}
	cases := []struct {
		name    string
		proxies []netip.Prefix
		remote  string
	}{
		{"no proxies configured", nil, "10.0.0.1:1"},
		{"peer outside prefix", trusted10, "203.0.113.9:1234"},
		{"IPv6 peer", trusted10, "[2001:db8::1]:1234"},
		{"unparseable RemoteAddr", trusted10, "somewhere"},
		{"empty RemoteAddr", trusted10, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ext := &mtls.Extractor{TrustedProxies: tc.proxies}
			p, err := ext.FromRequest(proxyRequest(tc.remote, spoof))
			if err != nil {
				t.Fatal(err)
			}
			if p.Leaf != nil || p.TLS || p.Source != mtls.SourceNone || !p.IgnoredUntrustedHeader {
				t.Fatalf("Presented = %+v, want nothing and IgnoredUntrustedHeader", p)
			}
			if ok, reason := mtls.CheckBinding(p, mtls.Thumbprint(victim.Cert)); ok || reason != mtls.MismatchContextMissing {
				t.Fatalf("CheckBinding = %v, %q", ok, reason)
			}
		})
	}

	// Over a real TLS connection from a non-proxy peer: the spoofed header
	// loses to the handshake, or leaves "TLS without certificate".
	h := newTLSHarness(t, &mtls.Extractor{TrustedProxies: trusted10})
	own := mtlstest.SelfSigned(t, mtlstest.Options{})
	p, err := h.present(t, own, spoof)
	if err != nil {
		t.Fatal(err)
	}
	if p.Source != mtls.SourceTLS || !p.Leaf.Equal(own.Cert) || !p.IgnoredUntrustedHeader {
		t.Fatalf("with own certificate: Presented = %+v", p)
	}
	p, err = h.present(t, nil, spoof)
	if err != nil {
		t.Fatal(err)
	}
	if p.Leaf != nil || !p.TLS || !p.IgnoredUntrustedHeader {
		t.Fatalf("without certificate: Presented = %+v", p)
	}
	if _, reason := mtls.CheckBinding(p, mtls.Thumbprint(victim.Cert)); reason != mtls.MismatchMissingCertificate {
		t.Fatalf("reason = %q", reason)
	}
}

// TestRFC9440_2_4_TLSPeerCertificateOutranksProxyHeader: when the
// connection itself carries a client certificate, even a trusted peer's
// header is not consulted (even where headers over TLS are trusted).
func TestRFC9440_2_4_TLSPeerCertificateOutranksProxyHeader(t *testing.T) {
	other := mtlstest.SelfSigned(t, mtlstest.Options{})
	own := mtlstest.SelfSigned(t, mtlstest.Options{})
	h := newTLSHarness(t, &mtls.Extractor{TrustedProxies: []netip.Prefix{
		netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128"),
	}, TrustOverTLS: true})
	p, err := h.present(t, own, http.Header{"Client-Cert": {mtls.FormatClientCertHeader(other.Cert)}})
	if err != nil {
		t.Fatal(err)
	}
	if p.Source != mtls.SourceTLS || !p.Leaf.Equal(own.Cert) || p.IgnoredUntrustedHeader {
		t.Fatalf("Presented = %+v", p)
	}
}

// TestProxyHeadersOverTLSNeedTrustOverTLS: on a TLS connection the
// handshake is the only source of a certificate, even from a trusted proxy
// network: a direct TLS client that presented none cannot authenticate as
// another client by sending that client's public certificate in
// Client-Cert. Only TrustOverTLS (a proxy that re-encrypts to this
// listener) makes the header count there.
func TestProxyHeadersOverTLSNeedTrustOverTLS(t *testing.T) {
	victim := mtlstest.SelfSigned(t, mtlstest.Options{})
	loopback := []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")}
	hdr := http.Header{"Client-Cert": {mtls.FormatClientCertHeader(victim.Cert)}}

	h := newTLSHarness(t, &mtls.Extractor{TrustedProxies: loopback})
	p, err := h.present(t, nil, hdr)
	if err != nil {
		t.Fatal(err)
	}
	if p.Leaf != nil || !p.TLS || !p.IgnoredUntrustedHeader {
		t.Fatalf("default: Presented = %+v", p)
	}
	if _, reason := mtls.CheckBinding(p, mtls.Thumbprint(victim.Cert)); reason != mtls.MismatchMissingCertificate {
		t.Fatalf("default: reason = %q", reason)
	}

	h = newTLSHarness(t, &mtls.Extractor{TrustedProxies: loopback, TrustOverTLS: true})
	p, err = h.present(t, nil, hdr)
	if err != nil {
		t.Fatal(err)
	}
	if p.Source != mtls.SourceProxyHeader || !p.Leaf.Equal(victim.Cert) {
		t.Fatalf("TrustOverTLS: Presented = %+v", p)
	}
}

// TestRFC9440_2_4_MalformedHeaderFromTrustedProxy: a trusted proxy sending a
// header that does not parse fails the request with *HeaderError.
func TestRFC9440_2_4_MalformedHeaderFromTrustedProxy(t *testing.T) {
	leaf := mtlstest.SelfSigned(t, mtlstest.Options{})
	cc := mtls.FormatClientCertHeader(leaf.Cert)
	ext := &mtls.Extractor{TrustedProxies: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}}
	small := &mtls.Extractor{TrustedProxies: ext.TrustedProxies, MaxHeaderBytes: 64}
	justFits := &mtls.Extractor{TrustedProxies: ext.TrustedProxies, MaxHeaderBytes: len(cc)}
	cases := []struct {
		name       string
		ext        *mtls.Extractor
		h          map[string][]string
		wantHeader string
		tooLarge   bool
	}{
		{"garbage Client-Cert", ext, map[string][]string{"Client-Cert": {"not-a-cert"}}, mtls.HeaderClientCert, false},
		{"two Client-Cert lines", ext, map[string][]string{"Client-Cert": {cc, cc}}, mtls.HeaderClientCert, false},
		{"garbage chain", ext, map[string][]string{"Client-Cert": {cc}, "Client-Cert-Chain": {":AAAA:"}}, mtls.HeaderClientCertChain, false},
		{"chain without Client-Cert", ext, map[string][]string{"Client-Cert-Chain": {cc}}, mtls.HeaderClientCertChain, false},
		{"garbage X-SSL-Client-Cert", ext, map[string][]string{"X-SSL-Client-Cert": {"-----BEGIN CERTIFICATE----- !!! -----END CERTIFICATE-----"}}, mtls.HeaderXSSLClientCert, false},
		{"two X-SSL-Client-Cert lines", ext, map[string][]string{"X-SSL-Client-Cert": {string(leaf.CertPEM), string(leaf.CertPEM)}}, mtls.HeaderXSSLClientCert, false},
		{"over MaxHeaderBytes", small, map[string][]string{"Client-Cert": {cc}}, mtls.HeaderClientCert, true},
		{"chain over MaxHeaderBytes", justFits, map[string][]string{"Client-Cert": {cc}, "Client-Cert-Chain": {cc + ", " + cc}}, mtls.HeaderClientCertChain, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := tc.ext.FromRequest(proxyRequest("10.0.0.1:1", tc.h))
			var he *mtls.HeaderError
			if !errors.As(err, &he) {
				t.Fatalf("err = %v (%T), want *HeaderError", err, err)
			}
			if he.Header != tc.wantHeader {
				t.Fatalf("HeaderError.Header = %q, want %q", he.Header, tc.wantHeader)
			}
			if tc.tooLarge && !errors.Is(err, mtls.ErrHeaderTooLarge) {
				t.Fatalf("err = %v, want ErrHeaderTooLarge", err)
			}
		})
	}
}

func TestSourceString(t *testing.T) {
	for s, want := range map[mtls.Source]string{mtls.SourceNone: "none", mtls.SourceTLS: "tls", mtls.SourceProxyHeader: "proxy-header", 42: "none"} {
		if got := s.String(); got != want {
			t.Errorf("Source(%d).String() = %q, want %q", s, got, want)
		}
	}
}
