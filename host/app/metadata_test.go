package app_test

import (
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"

	"stellaops.org/authority/host/config"
)

var wellKnownPaths = []string{"/.well-known/oauth-authorization-server", "/.well-known/openid-configuration"}

// metadata GETs a well-known document from the plain listener, or from the
// HTTPS listener (no client certificate) when secure.
func (e *env) metadata(path string, secure bool) response {
	e.t.Helper()
	o := reqOpts{method: http.MethodGet}
	if secure {
		o.client, o.base = e.tlsClient(nil), e.secure.URL
	}
	r := e.do(path, o)
	if r.status != http.StatusOK || r.header.Get("Content-Type") != "application/json" {
		e.t.Fatalf("GET %s (secure %v): %d %s %s", path, secure, r.status, r.header.Get("Content-Type"), r.raw)
	}
	return r
}

// RFC 8414 §3.3: the metadata `issuer` is identical to the issuer
// identifier in the tokens; RFC 8414 §2 makes it one string. Configured with
// a trailing slash, the issuer loses it everywhere: in the metadata, in the
// `iss` of tokens minted on either listener, of introspection answers and
// of fresh-auth confirmations, and in the DPoP htu (the metadata's own
// token_endpoint is the URL a proof names).
func TestRFC8414_3_3_MetadataIssuerEqualsTokenIss(t *testing.T) {
	e := newEnv(t, envOptions{mutate: func(c *config.Config) {
		c.Issuer += "/"
		c.MTLSIssuer += "/"
	}})
	if !strings.HasSuffix(e.cfg.Issuer, "/") {
		t.Fatal("the test needs an issuer configured with a trailing slash")
	}
	want := strings.TrimSuffix(e.cfg.Issuer, "/")
	for _, secure := range []bool{false, true} {
		if md := e.metadata(wellKnownPaths[0], secure); md.str("issuer") != want {
			t.Fatalf("metadata issuer %q (secure %v), want %q", md.str("issuer"), secure, want)
		}
	}
	md := e.metadata(wellKnownPaths[0], false)
	iss := md.str("issuer")

	tok := e.mustToken("demo-bearer")
	if got := claims(t, tok)["iss"]; got != iss {
		t.Fatalf("access token iss %q, metadata issuer %q", got, iss)
	}
	if in := e.introspect("demo-bearer", tok); in.body["active"] != true || in.str("iss") != iss {
		t.Fatalf("introspection iss %q, metadata issuer %q: %s", in.str("iss"), iss, in.raw)
	}

	// A token minted on the mTLS listener has the same issuer: the alias is
	// another address of the same authorization server (RFC 8705 §5).
	cert := e.demoMTLSCert()
	r := e.mtlsToken("demo-mtls", &cert.TLS, nil)
	if r.status != 200 {
		t.Fatalf("mTLS token: %d %s", r.status, r.raw)
	}
	if got := claims(t, r.str("access_token"))["iss"]; got != iss {
		t.Fatalf("mTLS-listener token iss %q, metadata issuer %q", got, iss)
	}

	// DPoP: the proof names the advertised endpoints, the confirmation the
	// advertised issuer.
	k := newDPoPKey(t)
	r = e.dpopToken("dpop-plain", k.proof(t, proofOpts{htu: md.str("token_endpoint"), iat: e.clock.Now()}))
	if r.status != 200 {
		t.Fatalf("DPoP token with htu = metadata token_endpoint: %d %s", r.status, r.raw)
	}
	dtok := r.str("access_token")
	if got := claims(t, dtok)["iss"]; got != iss {
		t.Fatalf("DPoP token iss %q, metadata issuer %q", got, iss)
	}
	fr := e.do("/fresh-auth", reqOpts{headers: map[string][]string{"Authorization": {"DPoP " + dtok},
		"DPoP": {k.proof(t, proofOpts{htu: md.str("fresh_auth_endpoint"), iat: e.clock.Now(), nonce: r.header.Get("DPoP-Nonce"), ath: ath(dtok)})}}})
	if fr.status != 200 {
		t.Fatalf("fresh-auth with htu = metadata fresh_auth_endpoint: %d %s", fr.status, fr.raw)
	}
	if got := claims(t, fr.str("confirmation"))["iss"]; got != iss {
		t.Fatalf("fresh-auth confirmation iss %q, metadata issuer %q", got, iss)
	}
}

// RFC 8705 §5: the mTLS endpoint aliases are other addresses of the same
// server, so the HTTPS listener serves the very document of the plain one:
// the same issuer, the same endpoints, mtls_endpoint_aliases included, and
// the same bytes and headers at both well-known paths.
func TestRFC8705_5_BothListenersServeIdenticalMetadata(t *testing.T) {
	e := newEnv(t, envOptions{})
	ref := e.metadata(wellKnownPaths[0], false)
	for _, p := range wellKnownPaths {
		for _, secure := range []bool{false, true} {
			r := e.metadata(p, secure)
			if r.raw != ref.raw {
				t.Fatalf("GET %s (secure %v) differs from the plain listener's document:\n%s\nvs\n%s", p, secure, r.raw, ref.raw)
			}
			if r.header.Get("Cache-Control") != ref.header.Get("Cache-Control") {
				t.Fatalf("GET %s (secure %v): Cache-Control %q vs %q", p, secure, r.header.Get("Cache-Control"), ref.header.Get("Cache-Control"))
			}
		}
	}
	if ref.str("issuer") != e.cfg.Issuer || ref.str("token_endpoint") != e.cfg.Issuer+"/token" {
		t.Fatalf("the document names the plain issuer: %s", ref.raw)
	}
	aliases, _ := ref.body["mtls_endpoint_aliases"].(map[string]any)
	for k, path := range map[string]string{"token_endpoint": "/token", "introspection_endpoint": "/introspect",
		"revocation_endpoint": "/revoke", "fresh_auth_endpoint": "/fresh-auth"} {
		if aliases[k] != e.cfg.MTLSIssuer+path {
			t.Fatalf("mtls_endpoint_aliases.%s = %v, want %s", k, aliases[k], e.cfg.MTLSIssuer+path)
		}
	}
	if ref.body["tls_client_certificate_bound_access_tokens"] != true {
		t.Fatalf("tls_client_certificate_bound_access_tokens missing: %s", ref.raw)
	}
}

// oidcOnly are OpenID Connect Discovery 1.0 §3 metadata fields with no
// meaning in plain OAuth 2.0 (and endpoints this server does not have).
var oidcOnly = []string{
	"userinfo_endpoint", "id_token_signing_alg_values_supported", "id_token_encryption_alg_values_supported",
	"id_token_encryption_enc_values_supported", "subject_types_supported", "userinfo_signing_alg_values_supported",
	"userinfo_encryption_alg_values_supported", "userinfo_encryption_enc_values_supported", "acr_values_supported",
	"claims_supported", "claim_types_supported", "claims_parameter_supported", "claims_locales_supported",
	"request_parameter_supported", "request_uri_parameter_supported", "require_request_uri_registration",
	"request_object_signing_alg_values_supported", "display_values_supported", "end_session_endpoint",
	"check_session_iframe", "frontchannel_logout_supported", "backchannel_logout_supported",
	"authorization_endpoint", "registration_endpoint",
}

// /.well-known/openid-configuration exists (clients probe it) and serves
// the RFC 8414 document unchanged: it claims no OpenID Connect feature, no
// OIDC-only field, no `openid` scope and no id_token response type, and a
// request for the openid scope is refused like any unknown scope.
func TestOpenIDConfigurationIsTheRFC8414DocumentWithoutOIDCClaims(t *testing.T) {
	e := newEnv(t, envOptions{})
	oidc := e.metadata("/.well-known/openid-configuration", false)
	if oauth := e.metadata("/.well-known/oauth-authorization-server", false); oidc.raw != oauth.raw {
		t.Fatalf("openid-configuration is not the RFC 8414 document:\n%s\nvs\n%s", oidc.raw, oauth.raw)
	}
	for _, k := range oidcOnly {
		if v, ok := oidc.body[k]; ok {
			t.Errorf("OIDC-only field %s = %v advertised", k, v)
		}
	}
	if v, ok := oidc.body["scopes_supported"]; ok && slices.Contains(toStrings(v), "openid") {
		t.Errorf("scopes_supported claims openid: %v", v)
	}
	for _, rt := range toStrings(oidc.body["response_types_supported"]) {
		if strings.Contains(rt, "id_token") {
			t.Errorf("response_types_supported claims %q", rt)
		}
	}
	if r := e.token("demo-bearer", url.Values{"scope": {"openid"}}); r.status != 400 || r.str("error") != "invalid_scope" {
		t.Fatalf("scope=openid: %d %s", r.status, r.raw)
	}
}

// RFC 8414 §2: the metadata describes the running server. A reload that
// changes an advertised value (here mTLS turned off, and back on) shows in
// the document on both listeners without a restart; a restart-only value the
// new file changes (the DPoP algorithms) keeps its running, advertised
// value, because the running verifier still enforces it.
func TestRFC8414MetadataFollowsReload(t *testing.T) {
	e := newEnv(t, envOptions{mutate: func(c *config.Config) { c.Admin.TokenDigest = config.DigestSecret(adminToken) }})
	before := e.metadata(wellKnownPaths[0], false)
	algs := toStrings(before.body["dpop_signing_alg_values_supported"])
	if before.body["tls_client_certificate_bound_access_tokens"] != true || before.body["mtls_endpoint_aliases"] == nil ||
		!slices.Contains(toStrings(before.body["token_endpoint_auth_methods_supported"]), "tls_client_auth") || len(algs) < 2 {
		t.Fatalf("before the reload: %s", before.raw)
	}

	e.writeConfig(func(d string) string {
		// Tenants that require mTLS are not valid with mTLS off.
		d = d[:strings.Index(d, "  - id: demo-mtls")]
		return d + "security:\n  senderConstraints:\n    mtls:\n      enabled: false\n    dpop:\n      allowedAlgorithms: [ES256]\n"
	})
	if r := e.adminReload(adminToken); r.status != http.StatusOK {
		t.Fatalf("reload: %d %s", r.status, r.raw)
	}
	for _, p := range wellKnownPaths {
		for _, secure := range []bool{false, true} {
			md := e.metadata(p, secure)
			for _, k := range []string{"tls_client_certificate_bound_access_tokens", "mtls_endpoint_aliases"} {
				if _, ok := md.body[k]; ok {
					t.Fatalf("GET %s (secure %v) after mTLS was turned off still advertises %s: %s", p, secure, k, md.raw)
				}
			}
			for _, list := range []string{"token_endpoint_auth_methods_supported", "introspection_endpoint_auth_methods_supported", "revocation_endpoint_auth_methods_supported"} {
				if got := toStrings(md.body[list]); !slices.Equal(got, []string{"client_secret_basic", "client_secret_post"}) {
					t.Fatalf("GET %s (secure %v): %s = %v after mTLS was turned off", p, secure, list, got)
				}
			}
			if got := toStrings(md.body["dpop_signing_alg_values_supported"]); !slices.Equal(got, algs) {
				t.Fatalf("dpop_signing_alg_values_supported %v, want the running %v (restart-only)", got, algs)
			}
		}
	}
	if !strings.Contains(e.logs.String(), "security.senderConstraints.dpop") {
		t.Fatal("the ignored DPoP change is not named in the restart_required warning")
	}

	e.writeConfig(func(d string) string { return d })
	if r := e.adminReload(adminToken); r.status != http.StatusOK {
		t.Fatalf("second reload: %d %s", r.status, r.raw)
	}
	if after := e.metadata(wellKnownPaths[0], true); after.raw != before.raw {
		t.Fatalf("mTLS back on: the document differs from the original:\n%s\nvs\n%s", after.raw, before.raw)
	}
}
