package mtls_test

import (
	"crypto/tls"
	"net/http"
	"strings"
	"testing"

	"stellaops.org/authority/host/mtls"
	"stellaops.org/authority/host/mtls/mtlstest"
)

// TestRFC8705_7_3_TLSVersionsAndCipherSuites: TLS 1.2 minimum, and for 1.2
// only ECDHE key exchange with AEAD ciphers (BCP 195).
func TestRFC8705_7_3_TLSVersionsAndCipherSuites(t *testing.T) {
	cfg := mtls.ServerTLSConfig(mtlstest.NewCA(t, "r").Server(t).TLS)
	if cfg.MinVersion != tls.VersionTLS12 {
		t.Fatalf("MinVersion = %x", cfg.MinVersion)
	}
	secure := map[uint16]bool{}
	for _, cs := range tls.CipherSuites() {
		secure[cs.ID] = true
	}
	if len(cfg.CipherSuites) == 0 {
		t.Fatal("no TLS 1.2 cipher suites pinned")
	}
	for _, id := range cfg.CipherSuites {
		name := tls.CipherSuiteName(id)
		if !secure[id] || !strings.HasPrefix(name, "TLS_ECDHE_") || !(strings.Contains(name, "_GCM_") || strings.Contains(name, "CHACHA20_POLY1305")) {
			t.Errorf("cipher suite %s is not ECDHE+AEAD", name)
		}
	}

	h := newTLSHarness(t, &mtls.Extractor{})
	client := mtlstest.SelfSigned(t, mtlstest.Options{})
	for _, v := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
		c := h.clientConfig(client)
		c.MinVersion, c.MaxVersion = v, v
		p, err := h.presentWith(t, c, nil)
		if err != nil || p.Leaf == nil {
			t.Fatalf("TLS %x: Presented = %+v, err = %v", v, p, err)
		}
	}
	for _, tc := range []struct {
		name   string
		mutate func(*tls.Config)
	}{
		{"TLS 1.1", func(c *tls.Config) { c.MinVersion, c.MaxVersion = tls.VersionTLS10, tls.VersionTLS11 }},
		{"TLS 1.2 CBC suite", func(c *tls.Config) {
			c.MaxVersion = tls.VersionTLS12
			c.CipherSuites = []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := h.clientConfig(client)
			tc.mutate(c)
			tr := &http.Transport{TLSClientConfig: c}
			defer tr.CloseIdleConnections()
			if resp, err := (&http.Client{Transport: tr}).Get(h.srv.URL); err == nil {
				resp.Body.Close()
				t.Fatal("handshake succeeded")
			}
		})
	}
}

// TestRFC8705_6_1_HandshakeAcceptsAnyOrNoClientCertificate: mutual TLS is
// optional at the handshake and no CA is imposed there; trust is decided
// afterwards per tenant.
func TestRFC8705_6_1_HandshakeAcceptsAnyOrNoClientCertificate(t *testing.T) {
	cfg := mtls.ServerTLSConfig(mtlstest.NewCA(t, "r").Server(t).TLS)
	if cfg.ClientAuth != tls.RequestClientCert {
		t.Fatalf("ClientAuth = %v, want RequestClientCert", cfg.ClientAuth)
	}
	h := newTLSHarness(t, &mtls.Extractor{})
	unknownCA := mtlstest.NewCA(t, "unknown").Leaf(t, mtlstest.Options{})
	noEKU := mtlstest.SelfSigned(t, mtlstest.Options{ExtKeyUsage: nil, NoExtKeyUsage: true})
	for name, c := range map[string]*mtlstest.Cert{
		"none":          nil,
		"self-signed":   mtlstest.SelfSigned(t, mtlstest.Options{}),
		"unknown CA":    unknownCA,
		"no EKU at all": noEKU,
	} {
		t.Run(name, func(t *testing.T) {
			p, err := h.present(t, c, nil)
			if err != nil {
				t.Fatal(err)
			}
			if !p.TLS || (c == nil) != (p.Leaf == nil) {
				t.Fatalf("Presented = %+v", p)
			}
		})
	}
}
