package app_test

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"stellaops.org/authority/host/config"
	"stellaops.org/authority/host/mtls"
	"stellaops.org/authority/host/mtls/mtlstest"
)

func (e *env) demoMTLSCert() *mtlstest.Cert {
	return e.ca.Leaf(e.t, mtlstest.Options{CommonName: "demo-mtls", URIs: []string{"urn:stellaops:client:demo-mtls"}})
}

// mtlsToken asks the HTTPS listener for a token as a certificate client.
func (e *env) mtlsToken(id string, cert *tls.Certificate, extra map[string][]string) response {
	e.t.Helper()
	return e.do("/token", reqOpts{client: e.tlsClient(cert), base: e.secure.URL,
		form: url.Values{"grant_type": {"client_credentials"}, "client_id": {id}}, headers: extra})
}

func TestRFC8705TLSClientAuthIssuesCertificateBoundToken(t *testing.T) {
	e := newEnv(t, envOptions{})
	cert := e.demoMTLSCert()
	r := e.mtlsToken("demo-mtls", &cert.TLS, nil)
	if r.status != 200 || r.str("token_type") != "Bearer" {
		t.Fatalf("%d %s", r.status, r.raw)
	}
	tok := r.str("access_token")
	cnf := claims(t, tok)["cnf"].(map[string]any)
	if cnf["x5t#S256"] != mtls.Thumbprint(cert.Cert) {
		t.Fatalf("cnf %v, want x5t#S256 %s", cnf, mtls.Thumbprint(cert.Cert))
	}
	// Introspection by the token's own client with its certificate.
	in := e.do("/introspect", reqOpts{client: e.tlsClient(&cert.TLS), base: e.secure.URL,
		form: url.Values{"token": {tok}, "client_id": {"demo-mtls"}}})
	if in.body["active"] != true || in.body["cnf"].(map[string]any)["x5t#S256"] != mtls.Thumbprint(cert.Cert) {
		t.Fatalf("introspection: %s", in.raw)
	}
	if e.a.Store != nil {
		if rec, err := e.a.Store.Get(t.Context(), claims(t, tok)["jti"].(string)); err != nil || rec.SenderCertificate != mtls.Thumbprint(cert.Cert) {
			t.Fatalf("sender_certificate not stored: %+v %v", rec, err)
		}
	}
}

func TestRFC8705ClientCertificateRefusals(t *testing.T) {
	e := newEnv(t, envOptions{})
	other := mtlstest.NewCA(t, "someone else's CA")
	cases := map[string]*mtlstest.Cert{
		"WrongSAN":      e.ca.Leaf(t, mtlstest.Options{URIs: []string{"urn:stellaops:client:intruder"}}),
		"Expired":       e.ca.Leaf(t, mtlstest.Options{URIs: []string{"urn:stellaops:client:demo-mtls"}, NotBefore: time.Now().Add(-48 * time.Hour), NotAfter: time.Now().Add(-24 * time.Hour)}),
		"NotYetValid":   e.ca.Leaf(t, mtlstest.Options{URIs: []string{"urn:stellaops:client:demo-mtls"}, NotBefore: time.Now().Add(24 * time.Hour), NotAfter: time.Now().Add(48 * time.Hour)}),
		"WrongUsage":    e.ca.Leaf(t, mtlstest.Options{URIs: []string{"urn:stellaops:client:demo-mtls"}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}),
		"Untrusted":     other.Leaf(t, mtlstest.Options{URIs: []string{"urn:stellaops:client:demo-mtls"}}),
		"SelfSigned":    mtlstest.SelfSigned(t, mtlstest.Options{URIs: []string{"urn:stellaops:client:demo-mtls"}}),
		"NoCertificate": nil,
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			var tc *tls.Certificate
			if c != nil {
				tc = &c.TLS
			}
			r := e.mtlsToken("demo-mtls", tc, nil)
			if r.status != 400 || r.str("error") != "invalid_client" || r.header.Get("WWW-Authenticate") != "" {
				t.Fatalf("%d %s", r.status, r.raw)
			}
		})
	}
	t.Run("PlainListenerHasNoCertificate", func(t *testing.T) {
		r := e.do("/token", reqOpts{form: url.Values{"grant_type": {"client_credentials"}, "client_id": {"demo-mtls"}}})
		if r.status != 400 || r.str("error") != "invalid_client" || r.header.Get("WWW-Authenticate") != "" {
			t.Fatalf("%d %s", r.status, r.raw)
		}
	})
}

func TestRFC8705SelfSignedTLSClientAuth(t *testing.T) {
	self := mtlstest.SelfSigned(t, mtlstest.Options{CommonName: "self-signed"})
	e := newEnv(t, envOptions{selfCert: self})
	r := e.mtlsToken("self-signed", &self.TLS, nil)
	if r.status != 200 {
		t.Fatalf("%d %s", r.status, r.raw)
	}
	if claims(t, r.str("access_token"))["cnf"].(map[string]any)["x5t#S256"] != mtls.Thumbprint(self.Cert) {
		t.Fatal("self-signed client tokens are bound too")
	}
	stranger := mtlstest.SelfSigned(t, mtlstest.Options{CommonName: "self-signed"})
	if r := e.mtlsToken("self-signed", &stranger.TLS, nil); r.status != 400 || r.str("error") != "invalid_client" || r.header.Get("WWW-Authenticate") != "" {
		t.Fatalf("unregistered self-signed: %d %s", r.status, r.raw)
	}
}

// Seed verification matrix: "mTLS mismatch: reuse token with different cert → 401 + metric increment".
func TestMTLSMismatchAtFreshAuthIs401AndCounted(t *testing.T) {
	e := newEnv(t, envOptions{})
	cert := e.demoMTLSCert()
	tok := e.mtlsToken("demo-mtls", &cert.TLS, nil).str("access_token")
	fresh := func(client *http.Client, base string) response {
		return e.do("/fresh-auth", reqOpts{client: client, base: base, headers: map[string][]string{"Authorization": {"Bearer " + tok}}})
	}
	if r := fresh(e.tlsClient(&cert.TLS), e.secure.URL); r.status != 200 || r.body["cnf"].(map[string]any)["x5t#S256"] != mtls.Thumbprint(cert.Cert) {
		t.Fatalf("own certificate: %d %s", r.status, r.raw)
	}
	another := e.demoMTLSCert()
	for _, tc := range []struct {
		reason string
		client *http.Client
		base   string
	}{
		{"thumbprint-mismatch", e.tlsClient(&another.TLS), e.secure.URL},
		{"missing-certificate", e.tlsClient(nil), e.secure.URL},
		{"context-missing", e.httpClient(), e.plain.URL},
	} {
		r := fresh(tc.client, tc.base)
		if r.status != 401 || r.str("error") != "invalid_token" || r.header.Get("WWW-Authenticate") == "" ||
			!strings.HasPrefix(r.header.Get("WWW-Authenticate"), `Bearer error="invalid_token"`) {
			t.Fatalf("%s: %d %s %v", tc.reason, r.status, r.raw, r.header)
		}
		if !strings.Contains(e.metrics(), `authority_mtls_mismatch_total{reason="`+tc.reason+`",tenant="demo-mtls"} 1`) {
			t.Fatalf("%s not counted:\n%s", tc.reason, e.metrics())
		}
	}
	if !strings.Contains(e.logs.String(), `"msg":"authority.security.senderConstraint"`) {
		t.Fatal("authority.security.senderConstraint not logged")
	}
}

func TestRFC8705IntrospectionByOwnClientWithOtherCertificateIsInactive(t *testing.T) {
	e := newEnv(t, envOptions{})
	cert := e.demoMTLSCert()
	tok := e.mtlsToken("demo-mtls", &cert.TLS, nil).str("access_token")
	// A second certificate that also authenticates the client (same SAN).
	rotated := e.demoMTLSCert()
	r := e.do("/introspect", reqOpts{client: e.tlsClient(&rotated.TLS), base: e.secure.URL,
		form: url.Values{"token": {tok}, "client_id": {"demo-mtls"}}})
	if r.status != 200 || r.raw != `{"active":false}` {
		t.Fatalf("%d %s", r.status, r.raw)
	}
	if !strings.Contains(e.metrics(), `authority_mtls_mismatch_total{reason="thumbprint-mismatch",tenant="demo-mtls"} 1`) {
		t.Fatal("mismatch at /introspect not counted")
	}
}

func TestMTLSEnforcedAudienceNeedsCertificate(t *testing.T) {
	e := newEnv(t, envOptions{mutate: func(c *config.Config) {
		c.Security.SenderConstraints.MTLS.EnforceForAudiences = []string{"other-api"}
	}})
	r := e.token("demo-bearer", url.Values{"audience": {"other-api"}})
	if r.status != 400 || r.str("error") != "invalid_request" {
		t.Fatalf("%d %s", r.status, r.raw)
	}
	if r := e.token("demo-bearer", url.Values{"audience": {"demo-api"}}); r.status != 200 {
		t.Fatalf("other audiences unaffected: %d %s", r.status, r.raw)
	}
}

func TestDPoPAndMTLSBothBindAndBothAreChecked(t *testing.T) {
	e := newEnv(t, envOptions{})
	cert := e.ca.Leaf(t, mtlstest.Options{DNSNames: []string{"both.client.test"}})
	k := newDPoPKey(t)
	alias := e.cfg.MTLSIssuer + "/token"
	r := e.mtlsToken("both", &cert.TLS, nil)
	if r.status != 400 || r.str("error") != "use_dpop_nonce" {
		t.Fatalf("no proof: %d %s", r.status, r.raw)
	}
	nonce := r.header.Get("DPoP-Nonce")
	// The htu is the alias URL, not the issuer's.
	r = e.mtlsToken("both", &cert.TLS, map[string][]string{"DPoP": {k.proof(t, proofOpts{htu: e.cfg.Issuer + "/token", iat: e.clock.Now(), nonce: nonce})}})
	if r.status != 400 || r.str("error") != "invalid_dpop_proof" {
		t.Fatalf("issuer htu on the alias: %d %s", r.status, r.raw)
	}
	r = e.mtlsToken("both", &cert.TLS, map[string][]string{"DPoP": {k.proof(t, proofOpts{htu: alias, iat: e.clock.Now(), nonce: nonce})}})
	if r.status != 200 || r.str("token_type") != "DPoP" {
		t.Fatalf("%d %s", r.status, r.raw)
	}
	tok := r.str("access_token")
	cnf := claims(t, tok)["cnf"].(map[string]any)
	if cnf["jkt"] != k.thumbprint() || cnf["x5t#S256"] != mtls.Thumbprint(cert.Cert) {
		t.Fatalf("cnf %v", cnf)
	}
	nonce = r.header.Get("DPoP-Nonce")
	fresh := func(c *tls.Certificate) response {
		p := k.proof(t, proofOpts{htu: e.cfg.MTLSIssuer + "/fresh-auth", iat: e.clock.Now(), nonce: nonce, ath: ath(tok)})
		return e.do("/fresh-auth", reqOpts{client: e.tlsClient(c), base: e.secure.URL,
			headers: map[string][]string{"Authorization": {"DPoP " + tok}, "DPoP": {p}}})
	}
	if r := fresh(&cert.TLS); r.status != 200 {
		t.Fatalf("both proofs: %d %s", r.status, r.raw)
	}
	other := e.ca.Leaf(t, mtlstest.Options{DNSNames: []string{"both.client.test"}})
	if r := fresh(&other.TLS); r.status != 401 {
		t.Fatalf("valid DPoP, wrong certificate: %d %s", r.status, r.raw)
	}
}

func TestRFC9440ClientCertHeaderFromTrustedProxyOnly(t *testing.T) {
	e := newEnv(t, envOptions{mutate: func(c *config.Config) {
		c.Security.TrustedProxies = []string{"127.0.0.1/32"}
	}})
	cert := e.demoMTLSCert()
	hdr := map[string][]string{"Client-Cert": {mtls.FormatClientCertHeader(cert.Cert)}}
	r := e.do("/token", reqOpts{form: url.Values{"grant_type": {"client_credentials"}, "client_id": {"demo-mtls"}}, headers: hdr})
	if r.status != 200 {
		t.Fatalf("trusted proxy header: %d %s", r.status, r.raw)
	}
	// From an untrusted peer the same header is ignored and counted.
	u := newEnv(t, envOptions{})
	r = u.do("/token", reqOpts{form: url.Values{"grant_type": {"client_credentials"}, "client_id": {"demo-mtls"}}, headers: hdr})
	if r.status != 400 || r.str("error") != "invalid_client" || r.header.Get("WWW-Authenticate") != "" {
		t.Fatalf("untrusted header: %d %s", r.status, r.raw)
	}
	if !strings.Contains(u.metrics(), "authority_mtls_untrusted_cert_header_total 1") {
		t.Fatal("ignored header not counted")
	}
}

// security.senderConstraints.mtls.rotationGrace: a self-signed client's
// previous certificate stays accepted for the grace period after rotatedAt.
func TestMTLSRotationGraceAcceptsPreviousCertificate(t *testing.T) {
	current := mtlstest.SelfSigned(t, mtlstest.Options{CommonName: "self-signed"})
	previous := mtlstest.SelfSigned(t, mtlstest.Options{CommonName: "self-signed-old"})
	for _, tc := range []struct {
		name      string
		rotatedAt time.Duration // before now
		accepted  bool
	}{{"within grace", time.Hour, true}, {"after grace", 25 * time.Hour, false}} {
		t.Run(tc.name, func(t *testing.T) {
			prevFile := filepath.Join(t.TempDir(), "prev.pem")
			if err := os.WriteFile(prevFile, previous.CertPEM, 0o600); err != nil {
				t.Fatal(err)
			}
			e := newEnv(t, envOptions{selfCert: current, mutate: func(c *config.Config) {
				for ti := range c.Tenants {
					for ci := range c.Tenants[ti].Clients {
						if cl := &c.Tenants[ti].Clients[ci]; cl.ID == "self-signed" {
							cl.TLS.PreviousCertificates = []string{prevFile}
							cl.TLS.RotatedAt = time.Now().Add(-tc.rotatedAt)
						}
					}
				}
			}})
			if r := e.mtlsToken("self-signed", &current.TLS, nil); r.status != 200 {
				t.Fatalf("current certificate: %d %s", r.status, r.raw)
			}
			r := e.mtlsToken("self-signed", &previous.TLS, nil)
			if tc.accepted != (r.status == 200) {
				t.Fatalf("previous certificate: %d %s", r.status, r.raw)
			}
		})
	}
}

// RFC 8705 §2.2: a self-signed certificate registered through the client's
// JWK Set (x5c) authenticates the client.
func TestRFC8705_2_2_SelfSignedRegisteredInJWKS(t *testing.T) {
	self := mtlstest.SelfSigned(t, mtlstest.Options{CommonName: "jwks-client"})
	jwks := filepath.Join(t.TempDir(), "jwks.json")
	doc := `{"keys":[{"kty":"EC","x5c":["` + base64.StdEncoding.EncodeToString(self.Cert.Raw) + `"]}]}`
	if err := os.WriteFile(jwks, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, envOptions{mutate: func(c *config.Config) {
		for ti := range c.Tenants {
			for ci := range c.Tenants[ti].Clients {
				if cl := &c.Tenants[ti].Clients[ci]; cl.ID == "self-signed" {
					cl.TLS.Certificates = nil
					cl.TLS.JWKSFile = jwks
				}
			}
		}
	}})
	if r := e.mtlsToken("self-signed", &self.TLS, nil); r.status != 200 {
		t.Fatalf("%d %s", r.status, r.raw)
	}
}

// tls_client_auth authenticates at /revoke as at /token and /introspect.
func TestRFC8705TLSClientAuthAtRevocation(t *testing.T) {
	e := newEnv(t, envOptions{})
	cert := e.demoMTLSCert()
	tok := e.mtlsToken("demo-mtls", &cert.TLS, nil).str("access_token")
	other := mtlstest.NewCA(t, "other").Leaf(t, mtlstest.Options{URIs: []string{"urn:stellaops:client:demo-mtls"}})
	r := e.do("/revoke", reqOpts{client: e.tlsClient(&other.TLS), base: e.secure.URL, form: url.Values{"token": {tok}, "client_id": {"demo-mtls"}}})
	if r.status != 400 || r.str("error") != "invalid_client" || r.header.Get("WWW-Authenticate") != "" {
		t.Fatalf("untrusted certificate at /revoke: %d %s", r.status, r.raw)
	}
	r = e.do("/revoke", reqOpts{client: e.tlsClient(&cert.TLS), base: e.secure.URL, form: url.Values{"token": {tok}, "client_id": {"demo-mtls"}}})
	if r.status != 200 {
		t.Fatalf("%d %s", r.status, r.raw)
	}
	in := e.do("/introspect", reqOpts{client: e.tlsClient(&cert.TLS), base: e.secure.URL, form: url.Values{"token": {tok}, "client_id": {"demo-mtls"}}})
	if in.raw != `{"active":false}` {
		t.Fatalf("revoked token: %s", in.raw)
	}
}
