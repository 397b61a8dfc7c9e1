package oauth_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"stellaops.org/authority/host/config"
	"stellaops.org/authority/host/mtls"
	"stellaops.org/authority/host/mtls/mtlstest"
	"stellaops.org/authority/host/oauth"
)

// certReq is a token request from certificate client id presenting c over
// the mTLS listener (nil: no certificate).
func certReq(id string, c *mtlstest.Cert) *oauth.Request {
	r := &oauth.Request{Form: cc("client_id", id), Method: "POST", Path: "/token", ViaMTLS: true,
		Creds: oauth.Credentials{PostID: id}, Peer: oauth.Peer{TLS: true}}
	if c != nil {
		r.Peer.Leaf = c.Cert
	}
	return r
}

// RFC 8705 §2 client authentication and §3 token binding, rule by rule.
func TestRFC8705_2_CertificateClientAuthentication(t *testing.T) {
	cases := []struct {
		name   string
		client string
		cert   func(f *fixture) *mtlstest.Cert
		ok     bool
	}{
		{"§2.1 chain to the tenant root and the registered SAN", "cert", func(f *fixture) *mtlstest.Cert {
			return f.ca.Leaf(t, mtlstest.Options{DNSNames: []string{"svc.t1.test"}})
		}, true},
		{"§2.1.2 another SAN", "cert", func(f *fixture) *mtlstest.Cert {
			return f.ca.Leaf(t, mtlstest.Options{DNSNames: []string{"evil.t1.test"}})
		}, false},
		{"§2.1 a root the tenant does not trust", "cert", func(*fixture) *mtlstest.Cert {
			return mtlstest.NewCA(t, "elsewhere").Leaf(t, mtlstest.Options{DNSNames: []string{"svc.t1.test"}})
		}, false},
		{"§2.1 no certificate", "cert", func(*fixture) *mtlstest.Cert { return nil }, false},
		{"§2.2 the registered self-signed certificate", "self", func(f *fixture) *mtlstest.Cert { return f.selfCert }, true},
		{"§2.2 an unregistered self-signed certificate", "self", func(*fixture) *mtlstest.Cert {
			return mtlstest.SelfSigned(t, mtlstest.Options{CommonName: "self"})
		}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, nil)
			c := tc.cert(f)
			resp, e := f.svc.Token(context.Background(), certReq(tc.client, c))
			if !tc.ok {
				// No Authorization header was used: 400, not 401 (RFC 6749 §5.2).
				wantError(t, e, 400, oauth.CodeInvalidClient)
				return
			}
			if e != nil {
				t.Fatalf("refused: %v (%s)", e, e.Reason)
			}
			cnf, _ := claims(t, resp.AccessToken)["cnf"].(map[string]any)
			if cnf["x5t#S256"] != mtls.Thumbprint(c.Cert) {
				t.Fatalf("RFC 8705 §3.1: cnf %v", cnf)
			}
		})
	}
}

// RFC 8705 §3 with enforceForAudiences: a secret client asking for an
// enforced audience must present a certificate, and its token is bound.
func TestRFC8705_3_EnforcedAudienceNeedsACertificate(t *testing.T) {
	f := newFixture(t, func(c *config.Config) { c.Security.SenderConstraints.MTLS.EnforceForAudiences = []string{"api"} })
	_, e := f.svc.Token(context.Background(), basic("bearer", "bearer-secret", cc("resource", "api")))
	wantError(t, e, 400, oauth.CodeInvalidRequest)
	c := f.ca.Leaf(t, mtlstest.Options{DNSNames: []string{"anything"}})
	r := basic("bearer", "bearer-secret", cc("resource", "api"))
	r.Peer, r.ViaMTLS = oauth.Peer{Leaf: c.Cert, TLS: true}, true
	resp, e := f.svc.Token(context.Background(), r)
	if e != nil {
		t.Fatal(e)
	}
	if cnf, _ := claims(t, resp.AccessToken)["cnf"].(map[string]any); cnf["x5t#S256"] != mtls.Thumbprint(c.Cert) {
		t.Fatalf("cnf %v", cnf)
	}
	// Another audience needs no certificate.
	if _, e := f.svc.Token(context.Background(), basic("bearer", "bearer-secret", cc("resource", "other-api"))); e != nil {
		t.Fatal(e)
	}
}

// RFC 8705 §3: a certificate-bound token is used only with its certificate
// (fresh-auth 401 invalid_token; the mismatch is audited).
func TestRFC8705_3_BoundTokenNeedsItsCertificate(t *testing.T) {
	f := newFixture(t, nil)
	c := f.ca.Leaf(t, mtlstest.Options{DNSNames: []string{"svc.t1.test"}})
	resp, e := f.svc.Token(context.Background(), certReq("cert", c))
	if e != nil {
		t.Fatal(e)
	}
	fresh := func(with *mtlstest.Cert) (*oauth.FreshAuthResponse, *oauth.Error) {
		r := &oauth.Request{Method: "POST", Path: "/fresh-auth", Authorization: "Bearer " + resp.AccessToken,
			ViaMTLS: true, Peer: oauth.Peer{TLS: true}}
		if with != nil {
			r.Peer.Leaf = with.Cert
		}
		return f.svc.FreshAuth(context.Background(), r)
	}
	if fr, e := fresh(c); e != nil || fr.Cnf.X5tS256 != mtls.Thumbprint(c.Cert) {
		t.Fatalf("%+v %v", fr, e)
	}
	other := f.ca.Leaf(t, mtlstest.Options{DNSNames: []string{"svc.t1.test"}})
	for name, with := range map[string]*mtlstest.Cert{"another certificate": other, "no certificate": nil} {
		_, e := fresh(with)
		wantError(t, e, 401, oauth.CodeInvalidToken)
		if e.Reason != "mtls-mismatch" {
			t.Fatalf("%s: reason %q", name, e.Reason)
		}
	}
	types := f.audit.types()
	if n := count(types, "authority.mtls.binding.mismatch"); n != 2 {
		t.Fatalf("audit %v: %d mismatch records, want 2", types, n)
	}
}

func count(xs []string, x string) int {
	n := 0
	for _, v := range xs {
		if v == x {
			n++
		}
	}
	return n
}

// Certificate material that leaves a certificate client without a usable
// rule is refused when the Service is built, naming the client's key.
func TestNewServiceRefusesMissingCertificateRules(t *testing.T) {
	f := newFixture(t, nil)
	f.cfg.Security.SenderConstraints.DPoP.Enabled = false // no verifier needed
	self := mtls.ClientRule{Method: mtls.MethodSelfSignedTLSClientAuth,
		Registered: []mtls.RegisteredCert{mtls.RegisterCertificate(f.selfCert.Cert, time.Time{})}}
	cert := mtls.ClientRule{Method: mtls.MethodTLSClientAuth, SANDNS: "svc.t1.test"}
	for _, tc := range []struct {
		name  string
		rules map[string]mtls.ClientRule
		want  string
	}{
		{"no rule", map[string]mtls.ClientRule{"self": self},
			`tenants[0].clients[4].tls: no certificate rule was loaded for tls_client_auth client "cert"`},
		{"a rule of the other method", map[string]mtls.ClientRule{"cert": self, "self": self},
			"tenants[0].clients[4].tls: the loaded rule is for self_signed_tls_client_auth, the client uses tls_client_auth"},
		{"a rule that cannot match", map[string]mtls.ClientRule{"cert": cert,
			"self": {Method: mtls.MethodSelfSignedTLSClientAuth}}, "tenants[0].clients[5].tls: "},
	} {
		_, err := oauth.NewService(oauth.Options{Config: f.cfg, Certificates: oauth.Certificates{Rules: tc.rules}})
		if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
			t.Fatalf("%s: err = %v, want %q", tc.name, err, tc.want)
		}
	}
	if _, err := oauth.NewService(oauth.Options{Config: f.cfg,
		Certificates: oauth.Certificates{Rules: map[string]mtls.ClientRule{"cert": cert, "self": self}}}); err != nil {
		t.Fatalf("complete material refused: %v", err)
	}
}
