package app_test

import (
	"net/http"
	"net/url"
	"strings"
	"testing"

	"stellaops.org/authority/host/config"
	"stellaops.org/authority/host/mtls"
)

// TestRFC7591ClientAuthenticatesOnlyWithItsRegisteredMethod: a client's
// token_endpoint_auth_method is the only way it authenticates. A
// certificate client offered a secret (Basic or form) is refused before any
// certificate is looked at, and the two secret methods do not stand in for
// each other.
func TestRFC7591ClientAuthenticatesOnlyWithItsRegisteredMethod(t *testing.T) {
	e := newEnv(t, envOptions{})
	cc := url.Values{"grant_type": {"client_credentials"}}
	cert := e.demoMTLSCert()
	cases := []struct {
		name string
		o    reqOpts
	}{
		{"CertificateClientWithBasicSecret", reqOpts{basic: [2]string{"demo-mtls", "any-secret-at-all"}, form: cc}},
		{"CertificateClientWithBasicSecretAndCertificate", reqOpts{basic: [2]string{"demo-mtls", "any-secret-at-all"}, form: cc,
			client: e.tlsClient(&cert.TLS), base: e.secure.URL}},
		{"CertificateClientWithFormSecret", reqOpts{form: url.Values{"grant_type": {"client_credentials"},
			"client_id": {"demo-mtls"}, "client_secret": {"any-secret-at-all"}}}},
		{"BasicClientWithFormSecret", reqOpts{form: url.Values{"grant_type": {"client_credentials"},
			"client_id": {"demo-bearer"}, "client_secret": {secrets["demo-bearer"]}}}},
		{"PostClientWithBasic", reqOpts{basic: basic("demo-bearer-2"), form: cc}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := e.do("/token", tc.o)
			if r.status != http.StatusUnauthorized || r.str("error") != "invalid_client" || r.header.Get("WWW-Authenticate") == "" {
				t.Fatalf("%d %v %s", r.status, r.header, r.raw)
			}
		})
	}
	if !strings.Contains(e.logs.String(), `"reason":"method-not-registered"`) {
		t.Fatal("the refusal reason is not logged")
	}
	// Each client still works with its own method.
	if r := e.token("demo-bearer-2", nil); r.status != 200 {
		t.Fatalf("post client with its method: %d %s", r.status, r.raw)
	}
	if r := e.mtlsToken("demo-mtls", &cert.TLS, nil); r.status != 200 {
		t.Fatalf("certificate client with its certificate: %d %s", r.status, r.raw)
	}
}

// TestRFC6749_5_2_CertificateClientFailureIs400WithoutChallenge: a failed
// tls_client_auth used no Authorization header, so invalid_client is 400 and
// carries no WWW-Authenticate (there is no scheme the client could answer).
func TestRFC6749_5_2_CertificateClientFailureIs400WithoutChallenge(t *testing.T) {
	e := newEnv(t, envOptions{})
	r := e.mtlsToken("demo-mtls", nil, nil)
	if r.status != http.StatusBadRequest || r.str("error") != "invalid_client" || r.header.Get("WWW-Authenticate") != "" {
		t.Fatalf("%d %v %s", r.status, r.header, r.raw)
	}
}

// TestRFC8705ProxyCertificateHeaderIgnoredOnHTTPSListener: header trust is
// per listener. On the HTTPS listener the handshake is the only source of a
// client certificate, so a direct TLS client from a trusted proxy network
// that presented none cannot authenticate as a certificate client by sending
// that client's (public) certificate in Client-Cert. The ignored header is
// logged and counted. security.trustProxyHeadersOnHTTPS opts back in for a
// re-encrypting proxy.
func TestRFC8705ProxyCertificateHeaderIgnoredOnHTTPSListener(t *testing.T) {
	trustLoopback := func(c *config.Config) { c.Security.TrustedProxies = []string{"127.0.0.1/32", "::1/128"} }
	e := newEnv(t, envOptions{mutate: trustLoopback})
	cert := e.demoMTLSCert()
	hdr := map[string][]string{"Client-Cert": {mtls.FormatClientCertHeader(cert.Cert)}}
	r := e.mtlsToken("demo-mtls", nil, hdr)
	if r.status != http.StatusBadRequest || r.str("error") != "invalid_client" {
		t.Fatalf("header without a certificate over TLS: %d %s", r.status, r.raw)
	}
	if !strings.Contains(e.metrics(), "authority_mtls_untrusted_cert_header_total 1") {
		t.Fatal("the ignored header is not counted")
	}
	// On the plain listener the same peer is a trusted proxy.
	r = e.do("/token", reqOpts{form: url.Values{"grant_type": {"client_credentials"}, "client_id": {"demo-mtls"}}, headers: hdr})
	if r.status != 200 {
		t.Fatalf("plain listener, trusted proxy: %d %s", r.status, r.raw)
	}

	o := newEnv(t, envOptions{mutate: func(c *config.Config) {
		trustLoopback(c)
		c.Security.TrustProxyHeadersOnHTTPS = true
	}})
	cert = o.demoMTLSCert()
	hdr = map[string][]string{"Client-Cert": {mtls.FormatClientCertHeader(cert.Cert)}}
	if r := o.mtlsToken("demo-mtls", nil, hdr); r.status != 200 {
		t.Fatalf("trustProxyHeadersOnHTTPS: %d %s", r.status, r.raw)
	}
}

// TestRFC9110_15_5_2_ReplayedProofAt401CarriesDPoPChallenge: the rollout
// plan answers a replayed proof with 401, and every 401 needs a
// WWW-Authenticate challenge: DPoP error="invalid_dpop_proof".
func TestRFC9110_15_5_2_ReplayedProofAt401CarriesDPoPChallenge(t *testing.T) {
	r := newEnv(t, envOptions{}).replayedProof()
	ch := r.header.Get("WWW-Authenticate")
	if r.status != http.StatusUnauthorized || r.str("error") != "invalid_dpop_proof" ||
		!strings.HasPrefix(ch, `DPoP error="invalid_dpop_proof"`) || !strings.Contains(ch, `algs="`) {
		t.Fatalf("replay: %d %q %s", r.status, ch, r.raw)
	}
}

// TestRFC9110_15_5_2_Every401HasAChallenge sweeps the 401 answers of the
// token, introspection, revocation and fresh-auth endpoints.
func TestRFC9110_15_5_2_Every401HasAChallenge(t *testing.T) {
	e := newEnv(t, envOptions{})
	cc := url.Values{"grant_type": {"client_credentials"}}
	cases := map[string]struct {
		path string
		o    reqOpts
	}{
		"token bad secret":        {"/token", reqOpts{basic: [2]string{"demo-bearer", "wrong"}, form: cc}},
		"token unknown client":    {"/token", reqOpts{basic: [2]string{"nobody", "x"}, form: cc}},
		"token no credentials":    {"/token", reqOpts{form: cc}},
		"token form bad secret":   {"/token", reqOpts{form: url.Values{"grant_type": {"client_credentials"}, "client_id": {"demo-bearer-2"}, "client_secret": {"wrong"}}}},
		"introspect bad secret":   {"/introspect", reqOpts{basic: [2]string{"demo-bearer", "wrong"}, form: url.Values{"token": {"x"}}}},
		"revoke bad secret":       {"/revoke", reqOpts{basic: [2]string{"demo-bearer", "wrong"}, form: url.Values{"token": {"x"}}}},
		"fresh-auth no token":     {"/fresh-auth", reqOpts{form: url.Values{}}},
		"fresh-auth bogus bearer": {"/fresh-auth", reqOpts{form: url.Values{}, headers: map[string][]string{"Authorization": {"Bearer nope"}}}},
	}
	for name, tc := range cases {
		r := e.do(tc.path, tc.o)
		if r.status != http.StatusUnauthorized || r.header.Get("WWW-Authenticate") == "" {
			t.Errorf("%s: %d %q %s", name, r.status, r.header.Get("WWW-Authenticate"), r.raw)
		}
	}
}

// TestRFC6749_5_2_ErrorDescriptionNeverEchoesRequestValues: scopes,
// audiences, grant types and parameter names a client invents are never
// copied into error_description, and every description stays within
// %x20-21 / %x23-5B / %x5D-7E.
func TestRFC6749_5_2_ErrorDescriptionNeverEchoesRequestValues(t *testing.T) {
	e := newEnv(t, envOptions{})
	evil := `x"y\z<script>` + "\u00e9"
	cases := map[string]url.Values{
		"scope":      {"grant_type": {"client_credentials"}, "scope": {evil}},
		"audience":   {"grant_type": {"client_credentials"}, "audience": {evil}},
		"resource":   {"grant_type": {"client_credentials"}, "resource": {evil}},
		"grant_type": {"grant_type": {evil}},
		"repeated":   {"grant_type": {"client_credentials"}, evil: {"1", "2"}},
	}
	for name, f := range cases {
		r := e.do("/token", reqOpts{basic: basic("demo-bearer"), form: f})
		d := r.str("error_description")
		if r.status != 400 || d == "" {
			t.Errorf("%s: %d %s", name, r.status, r.raw)
			continue
		}
		if strings.Contains(d, "script") || strings.Contains(d, `x"y`) {
			t.Errorf("%s: request value echoed: %q", name, d)
		}
		for i := 0; i < len(d); i++ {
			if c := d[i]; c < 0x20 || c > 0x7e || c == '"' || c == '\\' {
				t.Errorf("%s: byte %#x outside RFC 6749 §5.2's set in %q", name, c, d)
			}
		}
	}
}

// TestRFC7662TokenOfRemovedClientIsInactive: after a reload removes a
// client, introspection answers its tokens inactive (as /fresh-auth
// refuses them).
func TestRFC7662TokenOfRemovedClientIsInactive(t *testing.T) {
	e := newEnv(t, envOptions{mutate: func(c *config.Config) { c.Admin.TokenDigest = config.DigestSecret(adminToken) }})
	tok := e.mustToken("demo-bearer-2")
	if r := e.introspect("demo-bearer", tok); r.body["active"] != true {
		t.Fatalf("before reload: %s", r.raw)
	}
	e.writeConfig(func(d string) string {
		start := strings.Index(d, "      - id: demo-bearer-2\n")
		end := strings.Index(d[start:], "        audiences: [demo-api]\n")
		if start < 0 || end < 0 {
			t.Fatal("test config changed: demo-bearer-2 block not found")
		}
		return d[:start] + d[start+end+len("        audiences: [demo-api]\n"):]
	})
	if err := e.a.Reload(t.Context()); err != nil {
		t.Fatal(err)
	}
	if r := e.introspect("demo-bearer", tok); r.status != 200 || r.raw != `{"active":false}` {
		t.Fatalf("after the client was removed: %d %s", r.status, r.raw)
	}
	// The remaining client's tokens are unaffected.
	if r := e.introspect("demo-bearer", e.mustToken("demo-bearer")); r.body["active"] != true {
		t.Fatalf("remaining client: %s", r.raw)
	}
}

// TestRFC9449_8_JunkDPoPHeaderFromNonDPoPClientMintsNoNonce: with
// single-use nonces each nonce handed out is stored, so a client that need
// not use DPoP and sends a DPoP header that is not a proof gets its
// invalid_dpop_proof without a nonce; a client that must use DPoP and sent
// no proof still gets use_dpop_nonce with one (the rollout plan's rule).
func TestRFC9449_8_JunkDPoPHeaderFromNonDPoPClientMintsNoNonce(t *testing.T) {
	e := newEnv(t, envOptions{mutate: func(c *config.Config) {
		c.Security.SenderConstraints.DPoP.Nonce.SingleUse = true
	}})
	for i := 0; i < 20; i++ {
		o := e.authed("demo-bearer", url.Values{"grant_type": {"client_credentials"}})
		o.headers = map[string][]string{"DPoP": {"junk.junk.junk"}}
		r := e.do("/token", o)
		if r.status != 400 || r.str("error") != "invalid_dpop_proof" || r.header.Get("DPoP-Nonce") != "" {
			t.Fatalf("junk DPoP from a bearer client: %d %v %s", r.status, r.header, r.raw)
		}
	}
	r := e.token("demo-dpop", nil)
	if r.status != 400 || r.str("error") != "use_dpop_nonce" || r.header.Get("DPoP-Nonce") == "" {
		t.Fatalf("DPoP client without a proof: %d %v %s", r.status, r.header, r.raw)
	}
}
