package app_test

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"stellaops.org/authority/host/config"
)

func (e *env) dpopToken(id string, proof string) response {
	e.t.Helper()
	return e.do("/token", reqOpts{basic: basic(id), form: url.Values{"grant_type": {"client_credentials"}},
		headers: map[string][]string{"DPoP": {proof}}})
}

// replayedProof gets a demo-dpop token with a proof, then sends the same
// proof again and returns that answer.
func (e *env) replayedProof() response {
	e.t.Helper()
	k := newDPoPKey(e.t)
	_, nonce := e.boundToken(k)
	proof := k.proof(e.t, proofOpts{htu: e.cfg.Issuer + "/token", iat: e.clock.Now(), nonce: nonce})
	if r := e.dpopToken("demo-dpop", proof); r.status != 200 {
		e.t.Fatalf("first use: %d %s", r.status, r.raw)
	}
	return e.dpopToken("demo-dpop", proof)
}

// boundToken runs the nonce dance and returns a DPoP-bound token.
func (e *env) boundToken(k *dpopKey) (tok, nonce string) {
	e.t.Helper()
	htu := e.cfg.Issuer + "/token"
	r := e.dpopToken("demo-dpop", k.proof(e.t, proofOpts{htu: htu, iat: e.clock.Now()}))
	if r.status != 400 || r.str("error") != "use_dpop_nonce" {
		e.t.Fatalf("first attempt: %d %s", r.status, r.raw)
	}
	r = e.dpopToken("demo-dpop", k.proof(e.t, proofOpts{htu: htu, iat: e.clock.Now(), nonce: r.header.Get("DPoP-Nonce")}))
	if r.status != 200 {
		e.t.Fatalf("nonce retry: %d %s", r.status, r.raw)
	}
	return r.str("access_token"), r.header.Get("DPoP-Nonce")
}

// Seed verification matrix: "DPoP required w/out proof → 400 with use_dpop_nonce".
func TestDPoPRequiresProof(t *testing.T) {
	e := newEnv(t, envOptions{})
	r := e.token("demo-dpop", nil)
	if r.status != 400 || r.str("error") != "use_dpop_nonce" {
		t.Fatalf("got %d %s", r.status, r.raw)
	}
	if n := r.header.Values("DPoP-Nonce"); len(n) != 1 || n[0] == "" {
		t.Fatalf("exactly one DPoP-Nonce header required, got %v", n)
	}
	if !strings.Contains(e.metrics(), "authority_dpop_nonce_miss_total 1") {
		t.Fatal("nonce miss not counted")
	}
	// Without a nonce requirement the answer is invalid_dpop_proof.
	r = e.token("dpop-plain", nil)
	if r.status != 400 || r.str("error") != "invalid_dpop_proof" {
		t.Fatalf("dpop-plain without proof: %d %s", r.status, r.raw)
	}
}

// Phase 1 integration test AuthorityTokenTests.DPoPNonceRequired.
func TestDPoPNonceRequired(t *testing.T) {
	e := newEnv(t, envOptions{})
	k := newDPoPKey(t)
	htu := e.cfg.Issuer + "/token"
	r := e.dpopToken("demo-dpop", k.proof(t, proofOpts{htu: htu, iat: e.clock.Now()}))
	if r.status != 400 || r.str("error") != "use_dpop_nonce" || r.header.Get("DPoP-Nonce") == "" {
		t.Fatalf("proof without nonce: %d %s", r.status, r.raw)
	}
	nonce := r.header.Get("DPoP-Nonce")
	r = e.dpopToken("demo-dpop", k.proof(t, proofOpts{htu: htu, iat: e.clock.Now(), nonce: "made-up-nonce"}))
	if r.status != 400 || r.str("error") != "use_dpop_nonce" || r.header.Get("DPoP-Nonce") == "" {
		t.Fatalf("unknown nonce: %d %s", r.status, r.raw)
	}
	r = e.dpopToken("demo-dpop", k.proof(t, proofOpts{htu: htu, iat: e.clock.Now(), nonce: nonce}))
	if r.status != 200 {
		t.Fatalf("valid nonce: %d %s", r.status, r.raw)
	}
	if r.str("token_type") != "DPoP" || r.header.Get("DPoP-Nonce") == "" {
		t.Fatalf("success must be token_type DPoP with a DPoP-Nonce: %s %v", r.raw, r.header)
	}
	if !strings.Contains(e.metrics(), "authority_dpop_nonce_miss_total 2") {
		t.Fatal("each use_dpop_nonce answer must count")
	}
	// An expired nonce is refused with a fresh one.
	e.clock.Advance(301 * time.Second)
	r = e.dpopToken("demo-dpop", k.proof(t, proofOpts{htu: htu, iat: e.clock.Now(), nonce: nonce}))
	if r.status != 400 || r.str("error") != "use_dpop_nonce" {
		t.Fatalf("expired nonce: %d %s", r.status, r.raw)
	}
	if n := r.header.Get("DPoP-Nonce"); n == "" || n == nonce {
		t.Fatalf("expired nonce must be answered with a new one, got %q", n)
	}
	if !strings.Contains(e.logs.String(), `"msg":"authority.dpop.request"`) {
		t.Fatal("authority.dpop.request not logged")
	}
}

// Phase 1 integration test AuthorityTokenTests.DPoPMustMatchCnF.
func TestDPoPMustMatchCnF(t *testing.T) {
	e := newEnv(t, envOptions{})
	k := newDPoPKey(t)
	tok, nonce := e.boundToken(k)
	c := claims(t, tok)
	cnf, _ := c["cnf"].(map[string]any)
	if cnf["jkt"] != k.thumbprint() {
		t.Fatalf("cnf.jkt = %v, want %s", cnf["jkt"], k.thumbprint())
	}
	in := e.introspect("demo-dpop", tok)
	if in.str("token_type") != "DPoP" || in.body["cnf"].(map[string]any)["jkt"] != k.thumbprint() {
		t.Fatalf("introspection must expose cnf.jkt: %s", in.raw)
	}
	fresh := func(key *dpopKey, scheme string, o proofOpts) response {
		o.htu, o.iat = e.cfg.Issuer+"/fresh-auth", e.clock.Now()
		if o.nonce == "" {
			o.nonce = nonce
		}
		return e.do("/fresh-auth", reqOpts{headers: map[string][]string{
			"Authorization": {scheme + " " + tok}, "DPoP": {key.proof(t, o)}}})
	}
	r := fresh(k, "DPoP", proofOpts{ath: ath(tok)})
	if r.status != 200 || r.str("sub") != "demo-dpop" || r.body["auth_time"] == nil || r.body["exp"] == nil {
		t.Fatalf("fresh-auth with the bound key: %d %s", r.status, r.raw)
	}
	other := newDPoPKey(t)
	r = fresh(other, "DPoP", proofOpts{ath: ath(tok)})
	if r.status != 401 || !strings.HasPrefix(r.header.Get("WWW-Authenticate"), "DPoP ") {
		t.Fatalf("another key: %d %s %v", r.status, r.raw, r.header)
	}
	r = fresh(k, "DPoP", proofOpts{})
	if r.status != 401 || !strings.Contains(r.header.Get("WWW-Authenticate"), `error="invalid_dpop_proof"`) {
		t.Fatalf("proof without ath: %d %s", r.status, r.raw)
	}
	r = fresh(k, "DPoP", proofOpts{ath: ath("another token")})
	if r.status != 401 {
		t.Fatalf("wrong ath: %d %s", r.status, r.raw)
	}
	// RFC 9449 §7.2: a DPoP-bound token presented as Bearer is refused.
	r = fresh(k, "Bearer", proofOpts{ath: ath(tok)})
	if r.status != 401 || !strings.Contains(r.header.Get("WWW-Authenticate"), `invalid_token`) {
		t.Fatalf("DPoP token as Bearer: %d %s", r.status, r.raw)
	}
}

// Seed verification matrix: "Nonce replay: replay previous proof within window → 401 + audit log entry".
func TestDPoPReplayedProofIs401WithAuditEntry(t *testing.T) {
	e := newEnv(t, envOptions{})
	r := e.replayedProof()
	if r.status != 401 || r.str("error") != "invalid_dpop_proof" {
		t.Fatalf("replay: %d %s", r.status, r.raw)
	}
	if r.header.Get("DPoP-Nonce") == "" {
		t.Fatal("every DPoP response carries a nonce, errors included")
	}
	if !strings.Contains(e.logs.String(), `"event_type":"authority.dpop.proof.replay"`) {
		t.Fatal("replay must write an audit entry")
	}
	if !strings.Contains(e.metrics(), `authority_dpop_proofs_total{authority_dpop_result="replay",tenant="demo-dpop"} 1`) {
		t.Fatal("replay not counted")
	}
}

func TestDPoPInvalidProofsAtTokenEndpoint(t *testing.T) {
	e := newEnv(t, envOptions{})
	k := newDPoPKey(t)
	_, nonce := e.boundToken(k)
	htu := e.cfg.Issuer + "/token"
	now := e.clock.Now()
	private := map[string]string{}
	for kk, v := range k.JWK {
		private[kk] = v
	}
	private["d"] = "AAAA"
	cases := map[string]string{
		"RFC9449_4_3_WrongHTU":          k.proof(t, proofOpts{htu: e.cfg.Issuer + "/other", iat: now, nonce: nonce}),
		"RFC9449_4_3_WrongHTM":          k.proof(t, proofOpts{htm: "GET", htu: htu, iat: now, nonce: nonce}),
		"RFC9449_4_3_WrongTyp":          k.proof(t, proofOpts{typ: "JWT", htu: htu, iat: now, nonce: nonce}),
		"RFC9449_4_3_IatTooOld":         k.proof(t, proofOpts{htu: htu, iat: now.Add(-time.Hour), nonce: nonce}),
		"RFC9449_4_3_IatInFuture":       k.proof(t, proofOpts{htu: htu, iat: now.Add(time.Hour), nonce: nonce}),
		"RFC9449_4_3_PrivateJWKRefused": k.proof(t, proofOpts{htu: htu, iat: now, nonce: nonce, jwk: private}),
		"NotAJWS":                       "not.a.jws",
	}
	for name, proof := range cases {
		t.Run(name, func(t *testing.T) {
			r := e.dpopToken("demo-dpop", proof)
			if r.status != 400 || r.str("error") != "invalid_dpop_proof" {
				t.Fatalf("%d %s", r.status, r.raw)
			}
			if r.header.Get("DPoP-Nonce") == "" {
				t.Fatal("error responses carry a DPoP-Nonce")
			}
		})
	}
	t.Run("RFC9449_4_3_OneDPoPHeaderOnly", func(t *testing.T) {
		p := k.proof(t, proofOpts{htu: htu, iat: now, nonce: nonce})
		r := e.do("/token", reqOpts{basic: basic("demo-dpop"), form: url.Values{"grant_type": {"client_credentials"}},
			headers: map[string][]string{"DPoP": {p, p}}})
		if r.status != 400 || r.str("error") != "invalid_dpop_proof" {
			t.Fatalf("%d %s", r.status, r.raw)
		}
	})
	t.Run("HTUIgnoresQueryFragmentAndHostCase", func(t *testing.T) {
		u := strings.Replace(htu, "127.0.0.1", "127.0.0.1", 1) + "?x=1#frag"
		r := e.dpopToken("demo-dpop", k.proof(t, proofOpts{htu: strings.ToUpper(u[:4]) + u[4:], iat: now, nonce: nonce}))
		if r.status != 200 {
			t.Fatalf("%d %s", r.status, r.raw)
		}
	})
}

func TestDPoPHTUIsTheConfiguredIssuerNotTheHostHeader(t *testing.T) {
	e := newEnv(t, envOptions{})
	k := newDPoPKey(t)
	_, nonce := e.boundToken(k)
	// A proof for the URL the client reached through a different Host is refused.
	proof := k.proof(t, proofOpts{htu: "http://evil.example/token", iat: e.clock.Now(), nonce: nonce})
	r := e.do("/token", reqOpts{basic: basic("demo-dpop"), form: url.Values{"grant_type": {"client_credentials"}},
		headers: map[string][]string{"DPoP": {proof}, "Host": {"evil.example"}, "X-Forwarded-Host": {"evil.example"}}})
	if r.status != 400 || r.str("error") != "invalid_dpop_proof" {
		t.Fatalf("%d %s", r.status, r.raw)
	}
}

func TestDPoPOptionalProofBindsUnconstrainedClient(t *testing.T) {
	e := newEnv(t, envOptions{})
	k := newDPoPKey(t)
	r := e.do("/token", reqOpts{basic: basic("demo-bearer"), form: url.Values{"grant_type": {"client_credentials"}},
		headers: map[string][]string{"DPoP": {k.proof(t, proofOpts{htu: e.cfg.Issuer + "/token", iat: e.clock.Now()})}}})
	if r.status != 200 || r.str("token_type") != "DPoP" {
		t.Fatalf("%d %s", r.status, r.raw)
	}
	if claims(t, r.str("access_token"))["cnf"].(map[string]any)["jkt"] != k.thumbprint() {
		t.Fatal("a client that sends a proof gets a bound token (RFC 9449 §5)")
	}
}

func TestDPoPTemporaryBypassIssuesUnboundTokens(t *testing.T) {
	e := newEnv(t, envOptions{mutate: func(c *config.Config) {
		c.Security.SenderConstraints.DPoP.AllowTemporaryBypass = true
	}})
	r := e.token("demo-dpop", nil)
	if r.status != 200 || r.str("token_type") != "Bearer" {
		t.Fatalf("%d %s", r.status, r.raw)
	}
	if _, bound := claims(t, r.str("access_token"))["cnf"]; bound {
		t.Fatal("bypass tokens carry no cnf, so downstream services see the relaxation")
	}
	if !strings.Contains(e.logs.String(), `"msg":"authority.dpop.proof.bypass"`) {
		t.Fatal("authority.dpop.proof.bypass not logged")
	}
	if !strings.Contains(e.metrics(), `authority_dpop_proofs_total{authority_dpop_result="bypass",tenant="demo-dpop"} 1`) {
		t.Fatal("authority.dpop_result=bypass not counted")
	}
	in := e.introspect("demo-dpop", r.str("access_token"))
	if in.body["cnf"] != nil || in.str("sender_constraint") != "none" {
		t.Fatalf("introspection of a bypass token: %s", in.raw)
	}
}

func TestDPoPFreshAuthNeedsAuthorization(t *testing.T) {
	e := newEnv(t, envOptions{})
	r := e.do("/fresh-auth", reqOpts{})
	if r.status != 401 || r.header.Get("WWW-Authenticate") == "" {
		t.Fatalf("%d %s", r.status, r.raw)
	}
	tok := e.mustToken("demo-bearer")
	r = e.do("/fresh-auth", reqOpts{headers: map[string][]string{"Authorization": {"Bearer " + tok}}})
	if r.status != 401 || r.str("error") != "invalid_token" {
		t.Fatalf("an unbound token cannot prove possession: %d %s", r.status, r.raw)
	}
	_ = http.MethodPost
}

// Every DPoP response, success or error, carries a currently valid nonce
// (when nonces are enabled), even for clients that do not require one.
func TestDPoPEveryResponseCarriesANonce(t *testing.T) {
	e := newEnv(t, envOptions{})
	k := newDPoPKey(t)
	if r := e.token("dpop-plain", nil); r.header.Get("DPoP-Nonce") == "" {
		t.Fatalf("missing proof: no DPoP-Nonce (%d %s)", r.status, r.raw)
	}
	r := e.dpopToken("dpop-plain", k.proof(t, proofOpts{htu: e.cfg.Issuer + "/token", iat: e.clock.Now()}))
	if r.status != 200 || r.header.Get("DPoP-Nonce") == "" {
		t.Fatalf("success without required nonce: %d %s %v", r.status, r.raw, r.header)
	}
	// The nonce it got is accepted.
	r = e.dpopToken("dpop-plain", k.proof(t, proofOpts{htu: e.cfg.Issuer + "/token", iat: e.clock.Now(), nonce: r.header.Get("DPoP-Nonce")}))
	if r.status != 200 {
		t.Fatalf("%d %s", r.status, r.raw)
	}
}
