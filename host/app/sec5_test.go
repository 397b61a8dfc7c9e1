package app_test

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"stellaops.org/authority/abi"
	"stellaops.org/authority/host/config"
	"stellaops.org/authority/host/plugin"
	"stellaops.org/authority/internal/testenv"
)

// sec5Spec is SEC5 as an operator configures it: every policy hook and
// the events hook, the grants it needs. Events are delivered inline here
// so that a test sees an alert as soon as the request that raised it has
// its answer.
func sec5Spec(t testing.TB, cfg map[string]any) plugin.Spec {
	s := pluginSpec(t, "stellaops.org/authority/plugins/sec5", "sec5", cfg, plugin.Limits{PoolSize: 4})
	s.Hooks = []string{abi.HookToken, abi.HookIntrospect, abi.HookFreshAuth, abi.HookEvents}
	s.Grants = []string{plugin.GrantConfig, plugin.GrantClock, plugin.GrantCounters, plugin.GrantAudit}
	s.EventDelivery = plugin.EventsInline
	return s
}

// SEC5's rules at the real host: an mTLS-bound token for an audience that
// requires DPoP is refused at /token (400 invalid_dpop_proof naming the
// rule, annotated in the token.denied record), a bearer token for a
// high-assurance audience is refused at /introspect (403, with SEC5's own
// record), and other audiences are not touched.
func TestSEC5RefusesByRuleAtTheHost(t *testing.T) {
	rules := sec5Spec(t, map[string]any{"audiences": []any{
		map[string]any{"audience": "demo-api", "require": []any{"dpop"}},
	}})
	vault := sec5Spec(t, map[string]any{"audiences": []any{
		map[string]any{"audience": "other-api", "highAssurance": true},
	}})
	vault.Hooks, vault.EventDelivery = []string{abi.HookIntrospect}, ""
	e := newEnv(t, envOptions{mutate: withPlugins(t, map[string][]plugin.Spec{"demo-mtls": {rules}, "demo": {vault}})})

	cert := e.demoMTLSCert()
	r := e.mtlsToken("demo-mtls", &cert.TLS, nil)
	if r.status != 400 || r.str("error") != "invalid_dpop_proof" ||
		r.str("error_description") != "sec5 rule require-dpop (audiences[0]): audience demo-api takes only DPoP-bound tokens" {
		t.Fatalf("mTLS token for a DPoP audience: %d %s", r.status, r.raw)
	}

	other := e.mustToken("demo-bearer") // both audiences, no binding: issued (no token hook)
	r = e.introspect("demo-bearer", other)
	if r.status != 403 || r.str("error") != "access_denied" || !strings.HasPrefix(r.str("error_description"), "sec5 rule unbound-high-assurance (audiences[0]): ") {
		t.Fatalf("introspection of an unbound token for a high-assurance audience: %d %s", r.status, r.raw)
	}
	only := e.token("demo-bearer", url.Values{"audience": {"demo-api"}}).str("access_token")
	if r := e.introspect("demo-bearer", only); r.status != 200 || r.body["active"] != true {
		t.Fatalf("introspection of a token for another audience: %d %s", r.status, r.raw)
	}

	recs := e.auditRecords()
	denied := byType(recs, abi.EventTokenDenied)
	if len(denied) != 1 || denied[0].Tenant != "demo-mtls" || denied[0].Properties["annotation.sec5.rule"] != "require-dpop" ||
		denied[0].Properties["annotation.sec5.rule.key"] != "audiences[0]" || denied[0].Reason != "plugin-deny" {
		t.Fatalf("token.denied records: %+v", denied)
	}
	refused := byType(recs, "authority.security.refused")
	if len(refused) != 1 || refused[0].Source != "plugin:sec5" || refused[0].Tenant != "demo" || refused[0].Reason != "unbound-high-assurance" ||
		refused[0].Properties["sec5.endpoint"] != abi.HookIntrospect {
		t.Fatalf("SEC5 refusal records: %+v", refused)
	}
}

// The emergency bypass (allowTemporaryBypass) under SEC5: refused and
// recorded without a drill or outside it, issued (unbound, annotated with
// the drill) inside the declared window for a listed client.
func TestSEC5BypassOnlyInsideTheDrill(t *testing.T) {
	now := time.Now().UTC().Truncate(time.Second)
	drill := func(start, end time.Time, clients ...any) map[string]any {
		return map[string]any{"bypassDrill": map[string]any{"name": "recap", "start": start.Format(time.RFC3339),
			"end": end.Format(time.RFC3339), "clients": clients}}
	}
	for _, tc := range []struct {
		name   string
		cfg    map[string]any
		issued bool
	}{
		{"no drill", map[string]any{}, false},
		{"drill over", drill(now.Add(-2*time.Hour), now.Add(-time.Hour), "demo-dpop"), false},
		{"drill ahead", drill(now.Add(time.Hour), now.Add(2*time.Hour), "demo-dpop"), false},
		{"another client's drill", drill(now.Add(-time.Hour), now.Add(time.Hour), "someone-else"), false},
		{"inside the drill", drill(now.Add(-time.Hour), now.Add(time.Hour), "demo-dpop"), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, envOptions{startTime: now, mutate: func(c *config.Config) {
				c.Security.SenderConstraints.DPoP.AllowTemporaryBypass = true
				withPlugins(t, map[string][]plugin.Spec{"demo-dpop": {sec5Spec(t, tc.cfg)}})(c)
			}})
			r := e.token("demo-dpop", nil)
			if tc.issued {
				if r.status != 200 || r.str("token_type") != "Bearer" {
					t.Fatalf("%d %s", r.status, r.raw)
				}
				recs := e.auditRecords()
				if iss := byType(recs, abi.EventTokenIssued); len(iss) != 1 || iss[0].Properties["annotation.sec5.drill"] != "recap" {
					t.Fatalf("issued records: %+v", iss)
				}
				return
			}
			if r.status != 400 || r.str("error") != "invalid_dpop_proof" || !strings.HasPrefix(r.str("error_description"), "sec5 rule bypass-outside-drill (bypassDrill): ") {
				t.Fatalf("%d %s", r.status, r.raw)
			}
			recs := e.auditRecords()
			refused := byType(recs, "authority.security.refused")
			if len(refused) != 1 || refused[0].Reason != "bypass-outside-drill" || refused[0].SenderConstraint == nil || refused[0].SenderConstraint.Kind != abi.ConstraintBypass {
				t.Fatalf("refusal records: %+v", refused)
			}
			// The host's own record of the refused request says it was a
			// bypass and which rule refused it.
			d := byType(recs, abi.EventTokenDenied)
			if len(d) != 1 || d[0].SenderConstraint == nil || d[0].SenderConstraint.DPoP != abi.DPoPBypass || d[0].Properties["annotation.sec5.rule"] != "bypass-outside-drill" {
				t.Fatalf("token.denied records: %+v", d)
			}
		})
	}
}

// Alerts from real traffic: the nonce dance's first answer is a nonce
// miss, 1 of 1 DPoP token requests, and raises the tenant's nonce-miss
// alert; the token that follows does not raise another; a certificate
// mismatch at /fresh-auth raises the mismatch alert. The alerts are SEC5's
// records in the trail, tenant and rule named.
func TestSEC5AlertsFromRealTraffic(t *testing.T) {
	spec := sec5Spec(t, map[string]any{})
	e := newEnv(t, envOptions{mutate: withPlugins(t, map[string][]plugin.Spec{"demo-dpop": {spec}, "demo-mtls": {spec}})})
	k := newDPoPKey(t)
	e.boundToken(k) // use_dpop_nonce, then a token
	cert := e.demoMTLSCert()
	tok := e.mtlsToken("demo-mtls", &cert.TLS, nil).str("access_token")
	another := e.demoMTLSCert()
	r := e.do("/fresh-auth", reqOpts{client: e.tlsClient(&another.TLS), base: e.secure.URL,
		headers: map[string][]string{"Authorization": {"Bearer " + tok}}})
	if r.status != http.StatusUnauthorized {
		t.Fatalf("fresh-auth with another certificate: %d %s", r.status, r.raw)
	}
	alerts := byType(e.auditRecords(), "authority.security.alert")
	if len(alerts) != 2 {
		t.Fatalf("%d alerts, want 2: %+v", len(alerts), alerts)
	}
	n, m := alerts[0], alerts[1]
	if n.Tenant != "demo-dpop" || n.Reason != "dpop-nonce-miss-ratio" || n.Source != "plugin:sec5" ||
		n.Properties["sec5.nonce_misses"] != "1" || n.Properties["sec5.dpop_requests"] != "1" {
		t.Fatalf("nonce alert: %+v", n)
	}
	if m.Tenant != "demo-mtls" || m.Reason != "mtls-mismatch" || m.Properties["sec5.mtls_result"] != abi.MTLSThumbprintMismatch {
		t.Fatalf("mismatch alert: %+v", m)
	}
}

// SEC5 can only tighten: every request the native checks refuse is
// refused with the same status and error under every SEC5 configuration,
// the most permissive included (a drill open to every client, every
// algorithm, no rules), and an inactive introspection stays inactive.
func TestSEC5OnlyTightens(t *testing.T) {
	now := time.Now().UTC().Truncate(time.Second)
	everyone := []any{"demo-bearer", "demo-bearer-2", "other-client", "demo-dpop", "dpop-plain", "demo-mtls", "both", "self-signed"}
	configs := map[string]map[string]any{
		"empty": {},
		"permissive": {
			"bypassDrill": map[string]any{"start": now.Add(-time.Hour).Format(time.RFC3339), "end": now.Add(time.Hour).Format(time.RFC3339), "clients": everyone},
			"dpop":        map[string]any{"algorithms": []any{"ES256", "ES384", "ES512", "PS256", "PS384", "PS512", "RS256", "RS384", "RS512", "EdDSA", "Ed25519"}},
			"alerts":      map[string]any{"enabled": false},
		},
		"strict": {
			"audiences": []any{map[string]any{"audience": "demo-api", "require": []any{"dpop", "mtls"}, "highAssurance": true},
				map[string]any{"audience": "other-api", "highAssurance": true}},
			"dpop":   map[string]any{"algorithms": []any{"ES512"}},
			"alerts": map[string]any{"nonceMissRatio": 0.001, "mtlsMismatches": 0, "buckets": 1},
		},
	}
	// The strict rules again, after issuance only: the requests that
	// need an unbound token first get one.
	configs["strict-after-issuance"] = configs["strict"]
	// Each request is refused natively; the answer is (status, error) or,
	// for an introspection, the body. unbuildable: SEC5 refused the token
	// the request needs (strict at the token hook); strict-after-issuance
	// runs those requests.
	type answer struct {
		status int
		what   string
	}
	unbuildable := answer{-1, "the token the request needs was refused"}
	requests := []struct {
		name string
		do   func(e *env) answer
	}{
		{"bad client secret", func(e *env) answer {
			r := e.do("/token", reqOpts{basic: [2]string{"demo-bearer", "wrong"}, form: url.Values{"grant_type": {"client_credentials"}}})
			return answer{r.status, r.str("error")}
		}},
		{"scope not registered", func(e *env) answer {
			r := e.token("demo-bearer", url.Values{"scope": {"admin"}})
			return answer{r.status, r.str("error")}
		}},
		{"audience not registered", func(e *env) answer {
			r := e.token("demo-bearer", url.Values{"audience": {"vault-api"}})
			return answer{r.status, r.str("error")}
		}},
		{"DPoP required, no proof", func(e *env) answer { r := e.token("demo-dpop", nil); return answer{r.status, r.str("error")} }},
		{"DPoP proof without the nonce", func(e *env) answer {
			r := e.dpopToken("demo-dpop", newDPoPKey(t).proof(t, proofOpts{htu: e.cfg.Issuer + "/token", iat: e.clock.Now()}))
			return answer{r.status, r.str("error")}
		}},
		{"DPoP proof for another URL", func(e *env) answer {
			r := e.dpopToken("dpop-plain", newDPoPKey(t).proof(t, proofOpts{htu: "https://elsewhere.example/token", iat: e.clock.Now()}))
			return answer{r.status, r.str("error")}
		}},
		{"DPoP proof replayed", func(e *env) answer {
			// The first use may be refused by SEC5 (strict): the native
			// check has spent the proof either way.
			k, htu := newDPoPKey(t), e.cfg.Issuer+"/token"
			nonce := e.dpopToken("demo-dpop", k.proof(t, proofOpts{htu: htu, iat: e.clock.Now()})).header.Get("DPoP-Nonce")
			proof := k.proof(t, proofOpts{htu: htu, iat: e.clock.Now(), nonce: nonce})
			e.dpopToken("demo-dpop", proof)
			r := e.dpopToken("demo-dpop", proof)
			return answer{r.status, r.str("error")}
		}},
		{"mTLS client without a certificate", func(e *env) answer {
			r := e.do("/token", reqOpts{form: url.Values{"grant_type": {"client_credentials"}, "client_id": {"demo-mtls"}}})
			return answer{r.status, r.str("error")}
		}},
		{"fresh-auth with an unbound token", func(e *env) answer {
			tok := e.token("demo-bearer", nil)
			if tok.status != 200 {
				return unbuildable
			}
			r := e.do("/fresh-auth", reqOpts{headers: map[string][]string{"Authorization": {"Bearer " + tok.str("access_token")}}})
			return answer{r.status, r.str("error")}
		}},
		{"fresh-auth with another certificate", func(e *env) answer {
			cert, another := e.demoMTLSCert(), e.demoMTLSCert()
			tok := e.mtlsToken("demo-mtls", &cert.TLS, nil).str("access_token")
			r := e.do("/fresh-auth", reqOpts{client: e.tlsClient(&another.TLS), base: e.secure.URL,
				headers: map[string][]string{"Authorization": {"Bearer " + tok}}})
			return answer{r.status, r.str("error")}
		}},
		{"introspection of another tenant's token", func(e *env) answer {
			tok := e.token("demo-bearer", nil)
			if tok.status != 200 {
				return unbuildable
			}
			r := e.introspect("other-client", tok.str("access_token"))
			return answer{r.status, r.raw}
		}},
	}
	run := func(mutate func(*config.Config)) []answer {
		e := newEnv(t, envOptions{startTime: now, mutate: mutate})
		out := make([]answer, len(requests))
		for i, rq := range requests {
			out[i] = rq.do(e)
		}
		return out
	}
	native := run(nil)
	for i, a := range native {
		if a.status == 200 && !strings.Contains(a.what, `"active":false`) {
			t.Fatalf("%s: natively answered %d %s: not a refusal", requests[i].name, a.status, a.what)
		}
	}
	for name, cfg := range configs {
		t.Run(name, func(t *testing.T) {
			spec := sec5Spec(t, cfg)
			if name == "strict-after-issuance" {
				spec.Hooks = []string{abi.HookIntrospect, abi.HookFreshAuth, abi.HookEvents}
			}
			byTenant := map[string][]plugin.Spec{}
			for _, tenant := range []string{"demo", "other", "demo-dpop", "dpop-no-nonce", "demo-mtls"} {
				byTenant[tenant] = []plugin.Spec{spec}
			}
			got := run(withPlugins(t, byTenant))
			skipped := 0
			for i := range requests {
				if got[i] == unbuildable && name == "strict" {
					skipped++ // SEC5 at work: the unbound token was refused
					continue
				}
				if got[i] != native[i] {
					t.Errorf("%s: %d %s under SEC5 %s, natively %d %s", requests[i].name, got[i].status, got[i].what, name, native[i].status, native[i].what)
				}
			}
			if name == "strict" && skipped != 2 {
				t.Errorf("strict SEC5 let %d of 2 unbound tokens through", 2-skipped)
			}
		})
	}
}

// SEC5's alert windows span nodes: on one Redis (plugins.state: redis),
// a certificate mismatch at node A and more at node B make one crossing,
// so exactly one authority.security.alert is written across both trails;
// the nonce-miss ratio likewise counts both nodes' DPoP requests.
func TestSEC5AlertsSpanTwoNodesOnRedis(t *testing.T) {
	addr := testenv.RedisAddr(t)
	prefix := testenv.Prefix("sec5")
	shared := t.TempDir()
	spec := sec5Spec(t, map[string]any{"alerts": map[string]any{"nonceMissRatio": 0.5}})
	mutate := func(c *config.Config) {
		withPlugins(t, map[string][]plugin.Spec{"demo-mtls": {spec}, "demo-dpop": {spec}})(c)
		withRedisPluginState(c, addr, prefix, shared)
	}
	keyDir := t.TempDir()
	a := newEnv(t, envOptions{keyDir: keyDir, mutate: mutate})
	b := newEnv(t, envOptions{keyDir: keyDir, mutate: mutate})
	mismatch := func(e *env) {
		cert, another := e.demoMTLSCert(), e.demoMTLSCert()
		tok := e.mtlsToken("demo-mtls", &cert.TLS, nil).str("access_token")
		r := e.do("/fresh-auth", reqOpts{client: e.tlsClient(&another.TLS), base: e.secure.URL,
			headers: map[string][]string{"Authorization": {"Bearer " + tok}}})
		if r.status != http.StatusUnauthorized {
			t.Fatalf("mismatch: %d %s", r.status, r.raw)
		}
	}
	mismatch(a)
	mismatch(b)
	mismatch(b)
	// Nonce misses: each node's first proof of a key misses (1 of 1, above
	// 0.5) and its retry succeeds; across both nodes the window holds the
	// misses and the successes together, crossing once.
	a.boundToken(newDPoPKey(t))
	b.boundToken(newDPoPKey(t))
	recs := append(a.auditRecords(), b.auditRecords()...)
	count := func(reason string) int {
		n := 0
		for _, r := range byType(recs, "authority.security.alert") {
			if r.Reason == reason {
				n++
			}
		}
		return n
	}
	if n := count("mtls-mismatch"); n != 1 {
		t.Fatalf("%d mismatch alerts across two nodes, want 1", n)
	}
	if n := count("dpop-nonce-miss-ratio"); n != 1 {
		t.Fatalf("%d nonce-miss alerts across two nodes, want 1", n)
	}
}
