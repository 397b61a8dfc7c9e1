package app_test

import (
	"context"
	"net/http"
	"net/url"
	"sync"
	"testing"
	"time"

	"stellaops.org/authority/abi"
	"stellaops.org/authority/host/config"
	"stellaops.org/authority/host/mtls"
	"stellaops.org/authority/host/mtls/mtlstest"
	"stellaops.org/authority/host/store/postgres"
	"stellaops.org/authority/host/users"
	"stellaops.org/authority/internal/testenv"
)

// cheapKDF are the cheapest Argon2id parameters validation accepts: the
// grant's rules, not the KDF's cost, are under test here.
var cheapKDF = users.Params{MemoryKiB: 7168, Iterations: 5, Parallelism: 1}

var userHashes = func() map[string]string {
	out := map[string]string{}
	for _, u := range []string{"alice", "bob", "carol"} {
		h, err := users.Hash([]byte(u+"-password"), cheapKDF)
		if err != nil {
			panic(err)
		}
		out[u] = h
	}
	return out
}()

func init() {
	secrets["app-confidential"] = "app-confidential-secret"
	secrets["pw-only"] = "pw-only-secret"
}

// withUsers adds the tenant "users": alice, bob (disabled) and carol
// (limited to demo.read); a confidential client, a public DPoP client, a
// public client bound by its certificate, a certificate client, and a
// client allowed the password grant without refresh tokens.
func withUsers(more ...func(*config.Config)) func(*config.Config) {
	return func(c *config.Config) {
		c.Security.Passwords.Argon2id = config.Argon2id{MemoryKiB: cheapKDF.MemoryKiB, Iterations: cheapKDF.Iterations, Parallelism: cheapKDF.Parallelism}
		both := []string{"password", "refresh_token"}
		scopes, auds := []string{"demo.read", "demo.write"}, []string{"demo-api"}
		var roots []string
		for _, t := range c.Tenants {
			if t.ID == "demo-mtls" {
				roots = t.TrustRoots
			}
		}
		c.Tenants = append(c.Tenants, config.Tenant{
			ID:         "users",
			TrustRoots: roots,
			Users: []config.User{
				{Username: "alice", PasswordHash: userHashes["alice"]},
				{Username: "bob", PasswordHash: userHashes["bob"], Disabled: true},
				{Username: "carol", PasswordHash: userHashes["carol"], Scopes: []string{"demo.read"}},
			},
			Clients: []config.Client{
				{ID: "app-confidential", SecretDigest: config.DigestSecret(secrets["app-confidential"]), AuthMethod: "client_secret_basic",
					Grants: both, Scopes: scopes, Audiences: auds},
				{ID: "app-public", AuthMethod: "none", Grants: both, Scopes: scopes, Audiences: auds,
					SenderConstraint: &config.SenderPolicy{RequireDPoP: true}},
				{ID: "app-public-mtls", AuthMethod: "none", Grants: both, Scopes: scopes, Audiences: auds},
				{ID: "app-cert", AuthMethod: "tls_client_auth", TLS: config.ClientTLS{SANURI: "urn:stellaops:client:app-cert"},
					Grants: both, Scopes: scopes, Audiences: auds},
				{ID: "pw-only", SecretDigest: config.DigestSecret(secrets["pw-only"]), AuthMethod: "client_secret_basic",
					Grants: []string{"password"}, Scopes: scopes, Audiences: auds},
			},
		})
		for _, m := range more {
			m(c)
		}
	}
}

// grantReq is a password or refresh request of client id (secret clients
// with Basic, public clients with client_id), over plain HTTP unless cert
// is set, with a DPoP proof when k is set.
type grantReq struct {
	client string
	form   url.Values
	k      *dpopKey
	nonce  string
	cert   *mtlstest.Cert
}

func (e *env) grant(g grantReq) response {
	e.t.Helper()
	o := reqOpts{form: g.form}
	if _, ok := secrets[g.client]; ok {
		o.basic = basic(g.client)
	} else {
		o.form.Set("client_id", g.client)
	}
	htu := e.cfg.Issuer + "/token"
	if g.cert != nil {
		o.client, o.base = e.tlsClient(&g.cert.TLS), e.secure.URL
		htu = e.cfg.MTLSIssuer + "/token"
	}
	if g.k != nil {
		o.headers = map[string][]string{"DPoP": {g.k.proof(e.t, proofOpts{htu: htu, iat: e.clock.Now(), nonce: g.nonce})}}
	}
	return e.do("/token", o)
}

func password(user, pw string) url.Values {
	return url.Values{"grant_type": {"password"}, "username": {user}, "password": {pw}}
}

func refresh(rt string) url.Values {
	return url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}}
}

func (e *env) mustGrant(g grantReq) response {
	e.t.Helper()
	r := e.grant(g)
	if r.status != 200 {
		e.t.Fatalf("%s %s: %d %s", g.client, g.form.Get("grant_type"), r.status, r.raw)
	}
	return r
}

func expectInvalidGrant(t *testing.T, r response, what string) {
	t.Helper()
	if r.status != 400 || r.str("error") != "invalid_grant" {
		t.Fatalf("%s: %d %s, want 400 invalid_grant", what, r.status, r.raw)
	}
}

// RFC 6749 §4.3: the password grant issues an access token for the user
// and, for a client allowed the refresh_token grant, a refresh token.
func TestRFC6749_4_3_PasswordGrantIssuesTokens(t *testing.T) {
	e := newEnv(t, envOptions{mutate: withUsers()})
	r := e.mustGrant(grantReq{client: "app-confidential", form: password("alice", "alice-password")})
	c := claims(t, r.str("access_token"))
	if c["sub"] != "alice" || c["client_id"] != "app-confidential" || c["tid"] != "users" || r.str("token_type") != "Bearer" {
		t.Fatalf("claims %v, response %s", c, r.raw)
	}
	if rt := r.str("refresh_token"); len(rt) != 43 {
		t.Fatalf("refresh token %q, want 43 base64url characters", rt)
	}
	if r.header.Get("Cache-Control") != "no-store" {
		t.Fatalf("Cache-Control %q (RFC 6749 §5.1)", r.header.Get("Cache-Control"))
	}
	// A client without the refresh_token grant gets no refresh token.
	if r := e.mustGrant(grantReq{client: "pw-only", form: password("alice", "alice-password")}); r.str("refresh_token") != "" {
		t.Fatalf("pw-only got a refresh token: %s", r.raw)
	}
	// A client without the password grant may not use it (§5.2).
	if r := e.do("/token", reqOpts{basic: basic("demo-bearer"), form: password("alice", "alice-password")}); r.str("error") != "unauthorized_client" {
		t.Fatalf("demo-bearer password grant: %d %s", r.status, r.raw)
	}
	// Users are per tenant: alice is not a user of the demo tenant's clients.
	if r := e.grant(grantReq{client: "app-confidential", form: password("alice", "")}); r.str("error") != "invalid_request" {
		t.Fatalf("empty password: %d %s", r.status, r.raw)
	}
}

// RFC 6749 §5.2: a wrong password, an unknown user and a disabled user are
// the same invalid_grant to the client; the audit record tells them apart
// and carries the user's pseudonym (SEC3 counts failures per subject).
func TestRFC6749_5_2_PasswordFailuresAreOneInvalidGrant(t *testing.T) {
	e := newEnv(t, envOptions{mutate: withUsers()})
	var descs []string
	for _, f := range []url.Values{password("alice", "wrong"), password("mallory", "alice-password"), password("bob", "bob-password")} {
		r := e.grant(grantReq{client: "app-confidential", form: f})
		expectInvalidGrant(t, r, f.Get("username"))
		descs = append(descs, r.str("error_description"))
	}
	if descs[0] != descs[1] || descs[1] != descs[2] {
		t.Fatalf("descriptions differ, telling users apart: %q", descs)
	}
	// carol may not have demo.write, but only a right password learns so.
	if r := e.grant(grantReq{client: "app-confidential", form: password("carol", "wrong")}); r.str("error") != "invalid_grant" {
		t.Fatalf("carol, wrong password: %s", r.raw)
	}
	f := password("carol", "carol-password")
	f.Set("scope", "demo.write")
	if r := e.grant(grantReq{client: "app-confidential", form: f}); r.str("error") != "invalid_scope" {
		t.Fatalf("carol, demo.write: %s", r.raw)
	}
	if r := e.mustGrant(grantReq{client: "app-confidential", form: password("carol", "carol-password")}); r.str("scope") != "demo.read" {
		t.Fatalf("carol's default scope: %s", r.raw)
	}
	recs := byType(e.auditRecords(), abi.EventTokenDenied)
	want := map[string]string{"bad-password": "alice", "unknown-user": "mallory", "user-disabled": "bob"}
	for _, rec := range recs {
		if u, ok := want[rec.Reason]; ok {
			if rec.Subject != e.tenantPseudonym("users", u) {
				t.Errorf("%s: subject %q, want the pseudonym of %s", rec.Reason, rec.Subject, u)
			}
			delete(want, rec.Reason)
		}
	}
	if len(want) != 0 {
		t.Fatalf("no audit record for %v", want)
	}
}

// RFC 6749 §6 and RFC 9700 §4.14.2: a refresh returns a new refresh token
// and uses up the old one; presenting the old one again is reuse, which
// revokes the whole family, the tokens issued after it included.
func TestRFC9700_4_14_2_RefreshRotationAndReuseRevokesFamily(t *testing.T) {
	e := newEnv(t, envOptions{mutate: withUsers()})
	first := e.mustGrant(grantReq{client: "app-confidential", form: password("alice", "alice-password")})
	rt1 := first.str("refresh_token")
	second := e.mustGrant(grantReq{client: "app-confidential", form: refresh(rt1)})
	rt2 := second.str("refresh_token")
	if rt2 == "" || rt2 == rt1 {
		t.Fatalf("refresh returned refresh token %q (old %q)", rt2, rt1)
	}
	if c := claims(t, second.str("access_token")); c["sub"] != "alice" || second.str("scope") != "demo.read demo.write" {
		t.Fatalf("refreshed token: %v %s", c, second.raw)
	}
	at2 := second.str("access_token")
	if r := e.introspect("app-confidential", at2); r.body["active"] != true {
		t.Fatalf("refreshed access token: %s", r.raw)
	}
	expectInvalidGrant(t, e.grant(grantReq{client: "app-confidential", form: refresh(rt1)}), "reuse of the rotated token")
	expectInvalidGrant(t, e.grant(grantReq{client: "app-confidential", form: refresh(rt2)}), "the family's newest token after reuse")
	for name, tok := range map[string]string{"first access token": first.str("access_token"), "second access token": at2} {
		if r := e.introspect("app-confidential", tok); r.raw != `{"active":false}` {
			t.Fatalf("%s after reuse: %s", name, r.raw)
		}
	}
	recs := byType(e.auditRecords(), abi.EventRefreshReused)
	if len(recs) != 1 || recs[0].Subject != e.tenantPseudonym("users", "alice") || recs[0].Client != "app-confidential" {
		t.Fatalf("reuse audit records: %+v", recs)
	}
}

// Two refreshes of one token at once: at most one succeeds, and the family
// ends either way (the loser is reuse).
func TestRFC9700_4_14_2_ConcurrentRefreshIsReuse(t *testing.T) {
	e := newEnv(t, envOptions{mutate: withUsers()})
	rt := e.mustGrant(grantReq{client: "app-confidential", form: password("alice", "alice-password")}).str("refresh_token")
	var wg sync.WaitGroup
	rs := make([]response, 2)
	for i := range rs {
		wg.Add(1)
		go func() { defer wg.Done(); rs[i] = e.grant(grantReq{client: "app-confidential", form: refresh(rt)}) }()
	}
	wg.Wait()
	ok := 0
	for _, r := range rs {
		if r.status == 200 {
			ok++
			expectInvalidGrant(t, e.grant(grantReq{client: "app-confidential", form: refresh(r.str("refresh_token"))}), "the winner's token after reuse")
		} else if r.str("error") != "invalid_grant" {
			t.Fatalf("loser: %d %s", r.status, r.raw)
		}
	}
	if ok > 1 {
		t.Fatalf("%d of 2 concurrent refreshes of one token succeeded", ok)
	}
}

// RFC 6749 §6: the refresh token is bound to its client, and the scope of
// a refresh must not exceed the original grant.
func TestRFC6749_6_RefreshIsBoundToClientAndScope(t *testing.T) {
	e := newEnv(t, envOptions{mutate: withUsers()})
	f := password("alice", "alice-password")
	f.Set("scope", "demo.read")
	rt := e.mustGrant(grantReq{client: "app-confidential", form: f}).str("refresh_token")
	expectInvalidGrant(t, e.grant(grantReq{client: "app-public-mtls", form: refresh(rt)}), "another client's refresh token")
	wider := refresh(rt)
	wider.Set("scope", "demo.read demo.write")
	if r := e.grant(grantReq{client: "app-confidential", form: wider}); r.str("error") != "invalid_scope" {
		t.Fatalf("wider scope: %d %s", r.status, r.raw)
	}
	// Neither refusal used the token up.
	if r := e.mustGrant(grantReq{client: "app-confidential", form: refresh(rt)}); r.str("scope") != "demo.read" {
		t.Fatalf("scope after refresh: %s", r.raw)
	}
	expectInvalidGrant(t, e.grant(grantReq{client: "app-confidential", form: refresh("not-a-refresh-token")}), "unknown refresh token")

	// A refresh that asks for less narrows the access token only: the new
	// refresh token keeps the scope of the old one ("identical", §6).
	full := e.mustGrant(grantReq{client: "app-confidential", form: password("alice", "alice-password")})
	if full.str("scope") != "demo.read demo.write" {
		t.Fatalf("full grant: %s", full.raw)
	}
	narrow := refresh(full.str("refresh_token"))
	narrow.Set("scope", "demo.read")
	r := e.mustGrant(grantReq{client: "app-confidential", form: narrow})
	if r.str("scope") != "demo.read" {
		t.Fatalf("narrowed refresh: %s", r.raw)
	}
	if r := e.mustGrant(grantReq{client: "app-confidential", form: refresh(r.str("refresh_token"))}); r.str("scope") != "demo.read demo.write" {
		t.Fatalf("the next refresh lost the original scope: %s", r.raw)
	}
}

// RFC 9449 §5: a public client's refresh token is bound to the DPoP key of
// the request that got it; a refresh with another key is invalid_grant and
// does not use the token up.
func TestRFC9449_5_PublicClientRefreshTokenIsBoundToItsDPoPKey(t *testing.T) {
	e := newEnv(t, envOptions{mutate: withUsers()})
	k1, k2 := newDPoPKey(t), newDPoPKey(t)
	r := e.mustGrant(grantReq{client: "app-public", form: password("alice", "alice-password"), k: k1})
	if r.str("token_type") != "DPoP" || r.str("refresh_token") == "" {
		t.Fatalf("public DPoP client: %s", r.raw)
	}
	rt := r.str("refresh_token")
	if in := e.introspect("demo-bearer", rt); in.raw != `{"active":false}` {
		t.Fatalf("another tenant's client must see the token as inactive: %s", in.raw)
	}
	if in := e.introspect("app-confidential", rt); in.body["active"] != true || in.str("sender_constraint") != "dpop" {
		t.Fatalf("introspection within the tenant: %s", in.raw)
	}
	expectInvalidGrant(t, e.grant(grantReq{client: "app-public", form: refresh(rt), k: k2}), "refresh with another key")
	if r := e.grant(grantReq{client: "app-public", form: refresh(rt)}); r.status != 400 || r.str("error") != "invalid_dpop_proof" {
		t.Fatalf("refresh without a proof: %d %s", r.status, r.raw)
	}
	r = e.mustGrant(grantReq{client: "app-public", form: refresh(rt), k: k1})
	cnf, _ := claims(t, r.str("access_token"))["cnf"].(map[string]any)
	if cnf["jkt"] != k1.thumbprint() {
		t.Fatalf("refreshed access token cnf %v, want jkt of k1", cnf)
	}
	recs := byType(e.auditRecords(), abi.EventTokenDenied)
	found := false
	for _, rec := range recs {
		found = found || rec.Reason == "refresh-dpop-key-mismatch"
	}
	if !found {
		t.Fatal("the refresh with another key left no audit record")
	}
}

// RFC 9449 §5: a confidential client's refresh token is bound through its
// authentication, so its new access token is bound to the key presented
// on the refresh (key rotation without a new login).
func TestRFC9449_5_ConfidentialRefreshBindsTheNewKey(t *testing.T) {
	e := newEnv(t, envOptions{mutate: withUsers()})
	k1, k2 := newDPoPKey(t), newDPoPKey(t)
	rt := e.mustGrant(grantReq{client: "app-confidential", form: password("alice", "alice-password"), k: k1}).str("refresh_token")
	r := e.mustGrant(grantReq{client: "app-confidential", form: refresh(rt), k: k2})
	cnf, _ := claims(t, r.str("access_token"))["cnf"].(map[string]any)
	if cnf["jkt"] != k2.thumbprint() || r.str("token_type") != "DPoP" {
		t.Fatalf("cnf %v, want jkt of the refresh's key", cnf)
	}
}

// RFC 8705 §4: a public client's refresh token is bound to the certificate
// it presented; RFC 8705 §3 with a certificate client: the new access token
// is bound to the certificate of the refresh, so a rotated certificate
// keeps the session.
func TestRFC8705_4_RefreshTokensAndCertificates(t *testing.T) {
	e := newEnv(t, envOptions{mutate: withUsers()})
	c1 := mtlstest.SelfSigned(t, mtlstest.Options{CommonName: "device-1"})
	c2 := mtlstest.SelfSigned(t, mtlstest.Options{CommonName: "device-2"})
	r := e.mustGrant(grantReq{client: "app-public-mtls", form: password("alice", "alice-password"), cert: c1})
	rt := r.str("refresh_token")
	if rt == "" {
		t.Fatalf("no refresh token for a certificate-bound public client: %s", r.raw)
	}
	expectInvalidGrant(t, e.grant(grantReq{client: "app-public-mtls", form: refresh(rt), cert: c2}), "refresh with another certificate")
	// Without any certificate (plain listener) it is refused too.
	expectInvalidGrant(t, e.grant(grantReq{client: "app-public-mtls", form: refresh(rt)}), "refresh without a certificate")
	r = e.mustGrant(grantReq{client: "app-public-mtls", form: refresh(rt), cert: c1})
	cnf, _ := claims(t, r.str("access_token"))["cnf"].(map[string]any)
	if cnf["x5t#S256"] != mtls.Thumbprint(c1.Cert) {
		t.Fatalf("cnf %v, want the certificate's thumbprint", cnf)
	}
	// A public client that presents neither key nor certificate gets no
	// refresh token: nothing would bind it.
	if r := e.mustGrant(grantReq{client: "app-public-mtls", form: password("alice", "alice-password")}); r.str("refresh_token") != "" {
		t.Fatalf("unbound public client got a refresh token: %s", r.raw)
	}

	old := e.ca.Leaf(t, mtlstest.Options{CommonName: "app-cert", URIs: []string{"urn:stellaops:client:app-cert"}})
	rotated := e.ca.Leaf(t, mtlstest.Options{CommonName: "app-cert-2", URIs: []string{"urn:stellaops:client:app-cert"}})
	rt = e.mustGrant(grantReq{client: "app-cert", form: password("alice", "alice-password"), cert: old}).str("refresh_token")
	r = e.mustGrant(grantReq{client: "app-cert", form: refresh(rt), cert: rotated})
	cnf, _ = claims(t, r.str("access_token"))["cnf"].(map[string]any)
	if cnf["x5t#S256"] != mtls.Thumbprint(rotated.Cert) {
		t.Fatalf("after certificate rotation cnf %v, want the new certificate", cnf)
	}
}

// RFC 7009 §2.1: revoking a refresh token revokes the access tokens of
// the same grant; RFC 7662: a refresh token can be introspected.
func TestRFC7009_2_1_RevokingARefreshTokenRevokesItsFamily(t *testing.T) {
	e := newEnv(t, envOptions{mutate: withUsers()})
	r := e.mustGrant(grantReq{client: "app-confidential", form: password("alice", "alice-password")})
	rt, at := r.str("refresh_token"), r.str("access_token")
	in := e.do("/introspect", e.authed("app-confidential", url.Values{"token": {rt}, "token_type_hint": {"access_token"}}))
	if in.body["active"] != true || in.str("client_id") != "app-confidential" || in.str("sub") != "alice" ||
		in.str("scope") != "demo.read demo.write" || in.str("token_type") != "" || in.str("jti") != "" {
		t.Fatalf("introspection of a refresh token (with a wrong hint): %s", in.raw)
	}
	if r := e.do("/introspect", reqOpts{form: url.Values{"client_id": {"app-public"}, "token": {rt}}}); r.status != 400 || r.str("error") != "invalid_client" {
		t.Fatalf("a public client may not introspect: %d %s", r.status, r.raw)
	}
	if r := e.do("/revoke", e.authed("app-confidential", url.Values{"token": {rt}, "token_type_hint": {"refresh_token"}})); r.status != 200 {
		t.Fatalf("revoke: %d %s", r.status, r.raw)
	}
	if r := e.introspect("app-confidential", at); r.raw != `{"active":false}` {
		t.Fatalf("access token of a revoked family: %s", r.raw)
	}
	if r := e.introspect("app-confidential", rt); r.raw != `{"active":false}` {
		t.Fatalf("revoked refresh token: %s", r.raw)
	}
	expectInvalidGrant(t, e.grant(grantReq{client: "app-confidential", form: refresh(rt)}), "refresh after revocation")
	// A public client revokes its own tokens with its client_id (RFC 7009 §2.1).
	k := newDPoPKey(t)
	prt := e.mustGrant(grantReq{client: "app-public", form: password("alice", "alice-password"), k: k}).str("refresh_token")
	if r := e.do("/revoke", reqOpts{form: url.Values{"client_id": {"app-public"}, "token": {prt}}}); r.status != 200 {
		t.Fatalf("public revoke: %d %s", r.status, r.raw)
	}
	expectInvalidGrant(t, e.grant(grantReq{client: "app-public", form: refresh(prt), k: k}), "public refresh after revocation")
}

// tokens.refreshToken: every rotation's token lives idleLifetime, and no
// token of a family outlives absoluteLifetime after the login.
func TestRefreshIdleAndAbsoluteLifetimes(t *testing.T) {
	e := newEnv(t, envOptions{mutate: withUsers(func(c *config.Config) {
		c.Tokens.RefreshToken = config.RefreshTokens{IdleLifetime: config.Duration(time.Hour), AbsoluteLifetime: config.Duration(3 * time.Hour)}
	})})
	rt := e.mustGrant(grantReq{client: "app-confidential", form: password("alice", "alice-password")}).str("refresh_token")
	e.clock.Advance(61 * time.Minute)
	expectInvalidGrant(t, e.grant(grantReq{client: "app-confidential", form: refresh(rt)}), "refresh after the idle lifetime")

	rt = e.mustGrant(grantReq{client: "app-confidential", form: password("alice", "alice-password")}).str("refresh_token")
	for i := range 3 {
		e.clock.Advance(50 * time.Minute)
		r := e.grant(grantReq{client: "app-confidential", form: refresh(rt)})
		if i < 3 && r.status == 200 {
			rt = r.str("refresh_token")
			continue
		}
		t.Fatalf("rotation %d within the absolute lifetime: %d %s", i+1, r.status, r.raw)
	}
	// 150 minutes in; the last token expires at the absolute end (180), not 150+60.
	e.clock.Advance(31 * time.Minute)
	expectInvalidGrant(t, e.grant(grantReq{client: "app-confidential", form: refresh(rt)}), "refresh after the absolute lifetime")
}

// The metadata advertises the grants and, with a public client, the
// "none" method at the token and revocation endpoints only.
func TestRFC8414_2_MetadataAdvertisesPasswordAndRefresh(t *testing.T) {
	e := newEnv(t, envOptions{mutate: withUsers()})
	r := e.do("/.well-known/oauth-authorization-server", reqOpts{method: http.MethodGet})
	has := func(k, v string) bool {
		l, _ := r.body[k].([]any)
		for _, x := range l {
			if x == v {
				return true
			}
		}
		return false
	}
	if !has("grant_types_supported", "password") || !has("grant_types_supported", "refresh_token") {
		t.Fatalf("grants: %s", r.raw)
	}
	if !has("token_endpoint_auth_methods_supported", "none") || !has("revocation_endpoint_auth_methods_supported", "none") ||
		has("introspection_endpoint_auth_methods_supported", "none") {
		t.Fatalf("auth methods: %s", r.raw)
	}
}

// Users in PostgreSQL (storage.users postgres), and two nodes on one
// database: a refresh rotated on node A is reuse on node B, which revokes
// the family for both; a user disabled in the table ends their families.
func TestRFC9700_RefreshRotatedOnNodeAIsReuseOnNodeB(t *testing.T) {
	dsn, schema := testenv.FreshSchema(t)
	mutate := withUsers(func(c *config.Config) {
		c.Storage.Users = "postgres"
		for i := range c.Tenants {
			c.Tenants[i].Users = nil
		}
	})
	keyDir := t.TempDir()
	a := newEnv(t, envOptions{postgres: dsn, pgSchema: schema, keyDir: keyDir, mutate: mutate})
	b := newEnv(t, envOptions{postgres: dsn, pgSchema: schema, keyDir: keyDir, mutate: mutate})
	ctx := context.Background()
	pg, err := postgres.Open(ctx, postgres.Options{DSN: dsn, Schema: schema, SkipMigrations: true})
	if err != nil {
		t.Fatal(err)
	}
	defer pg.Close()
	for _, u := range []string{"alice", "carol"} {
		if err := pg.Users().Put(ctx, &users.User{Tenant: "users", Username: u, PasswordHash: userHashes[u]}); err != nil {
			t.Fatal(err)
		}
	}
	expectInvalidGrant(t, a.grant(grantReq{client: "app-confidential", form: password("bob", "bob-password")}), "a user only in no table")
	rt1 := a.mustGrant(grantReq{client: "app-confidential", form: password("alice", "alice-password")}).str("refresh_token")
	r := b.mustGrant(grantReq{client: "app-confidential", form: refresh(rt1)}) // rotated on B
	rt2, at2 := r.str("refresh_token"), r.str("access_token")
	expectInvalidGrant(t, a.grant(grantReq{client: "app-confidential", form: refresh(rt1)}), "reuse on node A")
	expectInvalidGrant(t, b.grant(grantReq{client: "app-confidential", form: refresh(rt2)}), "node B's token after reuse on A")
	if r := b.introspect("app-confidential", at2); r.raw != `{"active":false}` {
		t.Fatalf("node B's access token after reuse on A: %s", r.raw)
	}

	rt := a.mustGrant(grantReq{client: "app-confidential", form: password("carol", "carol-password")}).str("refresh_token")
	// A scope limit set on the user since the login applies at the next
	// refresh.
	if err := pg.Users().Put(ctx, &users.User{Tenant: "users", Username: "carol", PasswordHash: userHashes["carol"], Scopes: []string{"demo.read"}}); err != nil {
		t.Fatal(err)
	}
	r = b.mustGrant(grantReq{client: "app-confidential", form: refresh(rt)})
	if got := r.str("scope"); got != "demo.read" {
		t.Fatalf("refresh after the user was limited to demo.read: scope %q", got)
	}
	rt = r.str("refresh_token")
	if err := pg.Users().Put(ctx, &users.User{Tenant: "users", Username: "carol", PasswordHash: userHashes["carol"], Disabled: true}); err != nil {
		t.Fatal(err)
	}
	expectInvalidGrant(t, b.grant(grantReq{client: "app-confidential", form: refresh(rt)}), "refresh of a disabled user")
	expectInvalidGrant(t, a.grant(grantReq{client: "app-confidential", form: password("carol", "carol-password")}), "login of a disabled user")
}
