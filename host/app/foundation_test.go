package app_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"math/big"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"stellaops.org/authority/host/config"
)

func TestClientCredentialsIssuesRFC9068AccessToken(t *testing.T) {
	e := newEnv(t, envOptions{})
	r := e.token("demo-bearer", nil)
	if r.status != 200 {
		t.Fatalf("status %d: %s", r.status, r.raw)
	}
	if r.header.Get("Cache-Control") != "no-store" || r.header.Get("Pragma") != "no-cache" {
		t.Fatalf("token response must not be cached: %v", r.header)
	}
	if r.str("token_type") != "Bearer" || r.body["expires_in"].(float64) != 300 || r.str("scope") != "demo.read demo.write" {
		t.Fatalf("body: %s", r.raw)
	}
	tok := r.str("access_token")
	h := header(t, tok)
	if h["typ"] != "at+jwt" || h["alg"] != "ES256" || h["kid"] != "k1" {
		t.Fatalf("JOSE header %v", h)
	}
	c := claims(t, tok)
	for _, k := range []string{"iss", "sub", "aud", "exp", "iat", "jti", "client_id", "scope", "tid"} {
		if _, ok := c[k]; !ok {
			t.Errorf("claim %s missing (RFC 9068 §2.2)", k)
		}
	}
	if c["iss"] != e.cfg.Issuer || c["tid"] != "demo" || c["client_id"] != "demo-bearer" || c["sub"] != "demo-bearer" {
		t.Fatalf("claims %v", c)
	}
	if _, bound := c["cnf"]; bound {
		t.Fatal("an unconstrained client got a cnf claim")
	}
	verifyWithJWKS(t, e, tok)
}

// verifyWithJWKS checks tok's ES256 signature with the key /jwks publishes.
func verifyWithJWKS(t *testing.T, e *env, tok string) {
	t.Helper()
	r := e.do("/jwks", reqOpts{method: http.MethodGet})
	var set struct {
		Keys []map[string]string `json:"keys"`
	}
	if err := json.Unmarshal([]byte(r.raw), &set); err != nil {
		t.Fatal(err)
	}
	kid := header(t, tok)["kid"]
	for _, k := range set.Keys {
		if k["kid"] != kid {
			continue
		}
		if k["kty"] != "EC" || k["crv"] != "P-256" || k["alg"] != "ES256" || k["use"] != "sig" {
			t.Fatalf("jwk %v", k)
		}
		if _, private := k["d"]; private {
			t.Fatal("/jwks leaks a private key")
		}
		x, _ := base64.RawURLEncoding.DecodeString(k["x"])
		y, _ := base64.RawURLEncoding.DecodeString(k["y"])
		pub, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), append(append([]byte{4}, x...), y...))
		if err != nil {
			t.Fatal(err)
		}
		parts := strings.Split(tok, ".")
		sig, _ := base64.RawURLEncoding.DecodeString(parts[2])
		d := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
		if !ecdsa.Verify(pub, d[:], new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:])) {
			t.Fatal("token signature does not verify with the published key")
		}
		return
	}
	t.Fatalf("kid %v not published at /jwks", kid)
}

func TestClientSecretPost(t *testing.T) {
	e := newEnv(t, envOptions{})
	r := e.do("/token", reqOpts{form: url.Values{"grant_type": {"client_credentials"}, "client_id": {"demo-bearer-2"}, "client_secret": {secrets["demo-bearer-2"]}}})
	if r.status != 200 {
		t.Fatalf("status %d: %s", r.status, r.raw)
	}
}

func TestTokenEndpointErrors(t *testing.T) {
	e := newEnv(t, envOptions{})
	cc := url.Values{"grant_type": {"client_credentials"}}
	cases := []struct {
		name   string
		o      reqOpts
		status int
		code   string
	}{
		{"RFC6749_5_2_BadSecretIsInvalidClient", reqOpts{basic: [2]string{"demo-bearer", "wrong"}, form: cc}, 401, "invalid_client"},
		{"RFC6749_5_2_UnknownClientIsInvalidClient", reqOpts{basic: [2]string{"nobody", "whatever-secret"}, form: cc}, 401, "invalid_client"},
		{"RFC6749_5_2_NoCredentialsIsInvalidClient", reqOpts{form: cc}, 401, "invalid_client"},
		{"RFC6749_2_3_OnlyOneAuthMethod", reqOpts{basic: basic("demo-bearer"), form: url.Values{"grant_type": {"client_credentials"}, "client_secret": {"x"}}}, 400, "invalid_request"},
		{"RFC6749_5_2_MissingGrantType", reqOpts{basic: basic("demo-bearer"), form: url.Values{}}, 400, "invalid_request"},
		{"RFC6749_5_2_UnsupportedGrantType", reqOpts{basic: basic("demo-bearer"), form: url.Values{"grant_type": {"urn:nope"}}}, 400, "unsupported_grant_type"},
		{"RFC6749_5_2_GrantNotAllowedIsUnauthorizedClient", reqOpts{basic: basic("demo-bearer"), form: url.Values{"grant_type": {"password"}}}, 400, "unauthorized_client"},
		{"RFC6749_3_3_UnregisteredScopeIsInvalidScope", reqOpts{basic: basic("demo-bearer"), form: url.Values{"grant_type": {"client_credentials"}, "scope": {"admin"}}}, 400, "invalid_scope"},
		{"RFC8707_UnregisteredAudienceIsInvalidTarget", reqOpts{basic: basic("demo-bearer"), form: url.Values{"grant_type": {"client_credentials"}, "audience": {"evil-api"}}}, 400, "invalid_target"},
		{"RFC6749_3_2_RepeatedParameter", reqOpts{basic: basic("demo-bearer"), rawBody: "grant_type=client_credentials&grant_type=client_credentials"}, 400, "invalid_request"},
		{"WrongContentType", reqOpts{basic: basic("demo-bearer"), rawBody: `{"grant_type":"client_credentials"}`, ctype: "application/json"}, 400, "invalid_request"},
		{"MalformedBasic", reqOpts{form: cc, headers: map[string][]string{"Authorization": {"Basic !!!"}}}, 401, "invalid_client"},
		{"BodyTooLarge", reqOpts{basic: basic("demo-bearer"), rawBody: "grant_type=client_credentials&pad=" + strings.Repeat("a", 70<<10)}, 413, "invalid_request"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := e.do("/token", tc.o)
			if r.status != tc.status || r.str("error") != tc.code {
				t.Fatalf("got %d %s, want %d %s", r.status, r.raw, tc.status, tc.code)
			}
			if r.header.Get("Cache-Control") != "no-store" {
				t.Fatal("error responses must be no-store")
			}
			if tc.status == 401 && !strings.HasPrefix(r.header.Get("WWW-Authenticate"), "Basic") {
				t.Fatalf("401 invalid_client needs a WWW-Authenticate challenge (RFC 6749 §5.2), got %q", r.header.Get("WWW-Authenticate"))
			}
		})
	}
	t.Run("QueryParametersRefused", func(t *testing.T) {
		r := e.do("/token?client_secret=x", reqOpts{basic: basic("demo-bearer"), form: cc})
		if r.status != 400 || r.str("error") != "invalid_request" {
			t.Fatalf("got %d %s", r.status, r.raw)
		}
	})
	t.Run("GetIsMethodNotAllowed", func(t *testing.T) {
		r := e.do("/token", reqOpts{method: http.MethodGet})
		if r.status != 405 {
			t.Fatalf("got %d", r.status)
		}
	})
	t.Run("SecretNeverLogged", func(t *testing.T) {
		if strings.Contains(e.logs.String(), secrets["demo-bearer"]) {
			t.Fatal("a client secret reached the logs")
		}
	})
}

func TestRequestedScopesAndAudiencesAreNarrowed(t *testing.T) {
	e := newEnv(t, envOptions{})
	r := e.token("demo-bearer", url.Values{"scope": {"demo.write demo.read demo.read"}, "resource": {"other-api"}})
	if r.status != 200 {
		t.Fatalf("%d %s", r.status, r.raw)
	}
	c := claims(t, r.str("access_token"))
	if c["scope"] != "demo.read demo.write" {
		t.Fatalf("scope %v", c["scope"])
	}
	if aud := c["aud"].([]any); len(aud) != 1 || aud[0] != "other-api" {
		t.Fatalf("aud %v", aud)
	}
}

func TestRFC7662IntrospectionOfOwnTenantTokens(t *testing.T) {
	e := newEnv(t, envOptions{})
	tok := e.mustToken("demo-bearer")
	r := e.introspect("demo-bearer-2", tok) // same tenant, another client: allowed
	if r.status != 200 || r.body["active"] != true {
		t.Fatalf("%d %s", r.status, r.raw)
	}
	if r.str("client_id") != "demo-bearer" || r.str("tid") != "demo" || r.str("token_type") != "Bearer" || r.str("scope") != "demo.read demo.write" {
		t.Fatalf("introspection %s", r.raw)
	}
	if r.header.Get("Cache-Control") != "no-store" {
		t.Fatal("introspection must be no-store")
	}
}

func TestRFC7662InactiveAnswersAreExactlyActiveFalse(t *testing.T) {
	e := newEnv(t, envOptions{})
	tok := e.mustToken("demo-bearer")
	forged := tok[:len(tok)-4] + "AAAA"
	for name, tc := range map[string]struct{ caller, tok string }{
		"foreign tenant":   {"other-client", tok},
		"unknown":          {"demo-bearer", "not-a-token"},
		"bad signature":    {"demo-bearer", forged},
		"other issuer jwt": {"demo-bearer", "eyJhbGciOiJub25lIn0.eyJqdGkiOiJ4In0."},
	} {
		r := e.introspect(tc.caller, tc.tok)
		if r.status != 200 || r.raw != `{"active":false}` {
			t.Errorf("%s: %d %s", name, r.status, r.raw)
		}
	}
	// Expired.
	e.clock.Advance(301 * time.Second)
	if r := e.introspect("demo-bearer", tok); r.raw != `{"active":false}` {
		t.Fatalf("expired token: %s", r.raw)
	}
}

func TestRFC7662CallerMustAuthenticate(t *testing.T) {
	e := newEnv(t, envOptions{})
	tok := e.mustToken("demo-bearer")
	r := e.do("/introspect", reqOpts{form: url.Values{"token": {tok}}})
	if r.status != 401 || r.str("error") != "invalid_client" {
		t.Fatalf("%d %s", r.status, r.raw)
	}
	r = e.do("/introspect", reqOpts{basic: basic("demo-bearer"), form: url.Values{}})
	if r.status != 400 || r.str("error") != "invalid_request" {
		t.Fatalf("missing token: %d %s", r.status, r.raw)
	}
}

func TestRFC7009Revocation(t *testing.T) {
	e := newEnv(t, envOptions{})
	tok := e.mustToken("demo-bearer")
	// §2.1: a token of another client of the tenant is refused.
	r := e.do("/revoke", e.authed("demo-bearer-2", url.Values{"token": {tok}}))
	if r.status != 400 || r.str("error") != "unauthorized_client" {
		t.Fatalf("foreign client revoke: %d %s", r.status, r.raw)
	}
	// A foreign tenant's attempt is answered like an invalid token and changes nothing.
	r = e.do("/revoke", reqOpts{basic: basic("other-client"), form: url.Values{"token": {tok}}})
	if r.status != 200 {
		t.Fatalf("foreign tenant revoke: %d %s", r.status, r.raw)
	}
	if e.introspect("demo-bearer", tok).body["active"] != true {
		t.Fatal("a foreign revoke changed the token")
	}
	r = e.do("/revoke", reqOpts{basic: basic("demo-bearer"), form: url.Values{"token": {tok}, "token_type_hint": {"access_token"}}})
	if r.status != 200 || r.header.Get("Cache-Control") != "no-store" {
		t.Fatalf("revoke: %d %s", r.status, r.raw)
	}
	if got := e.introspect("demo-bearer", tok).raw; got != `{"active":false}` {
		t.Fatalf("revoked token introspects as %s", got)
	}
	// §2.2: invalid tokens and repeated revocation answer 200.
	for _, tk := range []string{tok, "garbage"} {
		if r := e.do("/revoke", reqOpts{basic: basic("demo-bearer"), form: url.Values{"token": {tk}}}); r.status != 200 {
			t.Fatalf("revoke %q: %d %s", tk, r.status, r.raw)
		}
	}
	if r := e.do("/revoke", reqOpts{basic: [2]string{"demo-bearer", "bad"}, form: url.Values{"token": {tok}}}); r.status != 401 {
		t.Fatalf("unauthenticated revoke: %d", r.status)
	}
}

func TestRFC8414MetadataAtBothWellKnownPaths(t *testing.T) {
	e := newEnv(t, envOptions{})
	for _, p := range []string{"/.well-known/oauth-authorization-server", "/.well-known/openid-configuration"} {
		r := e.do(p, reqOpts{method: http.MethodGet})
		if r.status != 200 {
			t.Fatalf("%s: %d", p, r.status)
		}
		if r.str("issuer") != e.cfg.Issuer || r.str("token_endpoint") != e.cfg.Issuer+"/token" || r.str("jwks_uri") != e.cfg.Issuer+"/jwks" {
			t.Fatalf("%s: %s", p, r.raw)
		}
		if r.body["tls_client_certificate_bound_access_tokens"] != true {
			t.Fatal("tls_client_certificate_bound_access_tokens missing")
		}
		aliases, _ := r.body["mtls_endpoint_aliases"].(map[string]any)
		for _, k := range []string{"token_endpoint", "introspection_endpoint", "revocation_endpoint"} {
			if aliases[k] != e.cfg.MTLSIssuer+"/"+map[string]string{"token_endpoint": "token", "introspection_endpoint": "introspect", "revocation_endpoint": "revoke"}[k] {
				t.Fatalf("mtls_endpoint_aliases.%s = %v", k, aliases[k])
			}
		}
		methods := toStrings(r.body["token_endpoint_auth_methods_supported"])
		for _, m := range []string{"client_secret_basic", "client_secret_post", "tls_client_auth", "self_signed_tls_client_auth"} {
			if !slices.Contains(methods, m) {
				t.Fatalf("auth method %s not advertised", m)
			}
		}
		algs := toStrings(r.body["dpop_signing_alg_values_supported"])
		if !slices.Contains(algs, "ES256") || !slices.Contains(algs, "EdDSA") || !slices.Contains(algs, "Ed25519") {
			t.Fatalf("dpop algs %v", algs)
		}
	}
}

func toStrings(v any) []string {
	var out []string
	for _, x := range v.([]any) {
		out = append(out, x.(string))
	}
	return out
}

func TestHealthAndReadiness(t *testing.T) {
	e := newEnv(t, envOptions{})
	if r := e.do("/healthz", reqOpts{method: http.MethodGet}); r.status != 200 {
		t.Fatal(r.raw)
	}
	if r := e.do("/readyz", reqOpts{method: http.MethodGet}); r.status != 200 || r.body["ready"] != true {
		t.Fatal(r.raw)
	}
}

func TestReadinessFailsWhenRedisIsUnreachable(t *testing.T) {
	e := newEnv(t, envOptions{mutate: func(c *config.Config) {
		c.Security.SenderConstraints.DPoP.Nonce.Store = "redis"
		c.Storage.Redis.Addr = "127.0.0.1:1" // nothing listens there
	}})
	r := e.do("/readyz", reqOpts{method: http.MethodGet})
	if r.status != 503 || r.body["ready"] != false {
		t.Fatalf("%d %s", r.status, r.raw)
	}
}

func TestCorrelationIDEchoedAndGenerated(t *testing.T) {
	e := newEnv(t, envOptions{})
	r := e.do("/healthz", reqOpts{method: http.MethodGet, headers: map[string][]string{"X-Correlation-ID": {"abc-123-xyz"}}})
	if r.header.Get("X-Correlation-ID") != "abc-123-xyz" {
		t.Fatal("correlation id not echoed")
	}
	r = e.do("/healthz", reqOpts{method: http.MethodGet, headers: map[string][]string{"X-Correlation-ID": {"bad id with spaces"}}})
	if id := r.header.Get("X-Correlation-ID"); id == "" || strings.Contains(id, " ") {
		t.Fatalf("invalid id must be replaced, got %q", id)
	}
	if !strings.Contains(e.logs.String(), `"correlation_id":"abc-123-xyz"`) {
		t.Fatal("request log lacks the correlation id")
	}
}

func TestSigningKeyRotationKeepsOldTokensVerifiable(t *testing.T) {
	dir := t.TempDir()
	e1 := newEnv(t, envOptions{mutate: func(c *config.Config) {
		c.Signing.Keys[0].File = dir + "/old.pem"
		c.Signing.Keys[0].KID = "old"
	}})
	old := e1.mustToken("demo-bearer")
	e2 := newEnv(t, envOptions{mutate: func(c *config.Config) {
		c.Signing.Keys = []config.SigningKey{
			{KID: "old", File: dir + "/old.pem"},
			{KID: "new", File: dir + "/new.pem", Active: true, Generate: true},
		}
	}})
	fresh := e2.mustToken("demo-bearer")
	if header(t, fresh)["kid"] != "new" {
		t.Fatalf("new tokens must be signed by the active key")
	}
	r := e2.do("/jwks", reqOpts{method: http.MethodGet})
	if !strings.Contains(r.raw, `"kid":"old"`) || !strings.Contains(r.raw, `"kid":"new"`) {
		t.Fatalf("both keys must be published: %s", r.raw)
	}
	// A token signed before the rotation still verifies with what /jwks publishes.
	verifyWithJWKS(t, e2, old)
}
