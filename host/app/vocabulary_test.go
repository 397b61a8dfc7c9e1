package app_test

import (
	"net/url"
	"strings"
	"testing"
	"time"

	"stellaops.org/authority/abi"
	"stellaops.org/authority/host/config"
	"stellaops.org/authority/host/mtls"
	"stellaops.org/authority/host/mtls/mtlstest"
	"stellaops.org/authority/host/plugin"
)

// echoEnv runs the echo guest (host/plugin/testdata/guests/echo) on every
// hook of every tenant: it reports each decision input as annotations and
// each event as a plugin audit record.
func echoEnv(t *testing.T) *env {
	t.Helper()
	spec := pluginSpec(t, "stellaops.org/authority/host/plugin/testdata/guests/echo", "echo", nil, plugin.Limits{})
	spec.Hooks = []string{abi.HookToken, abi.HookIntrospect, abi.HookFreshAuth, abi.HookEvents}
	spec.Grants = []string{plugin.GrantAudit}
	byTenant := map[string][]plugin.Spec{}
	for _, id := range []string{"demo", "demo-dpop", "dpop-no-nonce", "demo-mtls"} {
		byTenant[id] = []plugin.Spec{spec}
	}
	return newEnv(t, envOptions{mutate: func(c *config.Config) { withPlugins(t, byTenant)(c) }})
}

// lastAnnotations returns the echo annotations of the last audit record of
// type typ for client, or of the last plugin deny log line (introspect and
// fresh-auth have no per-request audit record).
func lastAnnotations(t *testing.T, e *env, msg, typ, client string) map[string]any {
	t.Helper()
	var ann map[string]any
	for _, r := range logRecords(t, e.logs.String(), msg) {
		if (typ == "" || r["event_type"] == typ) && r["client"] == client {
			ann, _ = r["annotations"].(map[string]any)
		}
	}
	if ann == nil {
		t.Fatalf("no %s %s record with annotations for %s", msg, typ, client)
	}
	return ann
}

func wantAnnotations(t *testing.T, what string, got map[string]any, want map[string]string) {
	t.Helper()
	for k, v := range want {
		if got["echo."+k] != v {
			t.Errorf("%s: %s = %q, want %q", what, k, got["echo."+k], v)
		}
	}
}

const noDPoP, noMTLS = "present=false valid=false result= jkt= alg= nonce=", "present=false result= x5t="

// TestABIVocabularyDecisionInputs asserts, field by field, what a policy
// plugin receives on each endpoint for each kind of client, in the words
// of abi/SPEC.md §4.2-4.4 (abi/vocab.go).
func TestABIVocabularyDecisionInputs(t *testing.T) {
	e := echoEnv(t)
	tokenRec := func(client string) map[string]any {
		return lastAnnotations(t, e, "authority.audit", abi.EventTokenIssued, client)
	}

	if r := e.token("demo-bearer", nil); r.status != 200 {
		t.Fatalf("bearer: %d %s", r.status, r.raw)
	}
	wantAnnotations(t, "bearer token", tokenRec("demo-bearer"), map[string]string{
		"endpoint": abi.HookToken, "tenant": "demo", "client": "demo-bearer", "auth": "client_secret_basic",
		"grant": "client_credentials", "sc": abi.ConstraintNone, "dpop": noDPoP, "mtls": noMTLS,
		"remote": "true", "cid": "true", "scopes": "demo.read,demo.write", "audiences": "demo-api,other-api"})

	k := newDPoPKey(t)
	tok, nonce := e.boundToken(k)
	wantAnnotations(t, "DPoP token, nonce required", tokenRec("demo-dpop"), map[string]string{
		"sc": abi.ConstraintDPoP, "dpop": "present=true valid=true result=ok jkt=" + k.thumbprint() + " alg=ES256 nonce=valid", "mtls": noMTLS})

	plain := newDPoPKey(t)
	if r := e.dpopToken("dpop-plain", plain.proof(t, proofOpts{htu: e.cfg.Issuer + "/token", iat: e.clock.Now()})); r.status != 200 {
		t.Fatalf("dpop-plain: %d %s", r.status, r.raw)
	}
	wantAnnotations(t, "DPoP token, nonce not required", tokenRec("dpop-plain"), map[string]string{
		"sc": abi.ConstraintDPoP, "dpop": "present=true valid=true result=ok jkt=" + plain.thumbprint() + " alg=ES256 nonce=none"})

	cert := e.demoMTLSCert()
	if r := e.mtlsToken("demo-mtls", &cert.TLS, nil); r.status != 200 {
		t.Fatalf("mtls: %d %s", r.status, r.raw)
	}
	x5t := mtls.Thumbprint(cert.Cert)
	wantAnnotations(t, "mTLS token", tokenRec("demo-mtls"), map[string]string{
		"auth": "tls_client_auth", "sc": abi.ConstraintMTLS, "dpop": noDPoP, "mtls": "present=true result=ok x5t=" + x5t})

	both := e.ca.Leaf(t, mtlstest.Options{DNSNames: []string{"both.client.test"}})
	bk := newDPoPKey(t)
	r := e.mtlsToken("both", &both.TLS, map[string][]string{"DPoP": {bk.proof(t, proofOpts{htu: e.cfg.MTLSIssuer + "/token", iat: e.clock.Now()})}})
	r = e.mtlsToken("both", &both.TLS, map[string][]string{"DPoP": {bk.proof(t, proofOpts{htu: e.cfg.MTLSIssuer + "/token", iat: e.clock.Now(), nonce: r.header.Get("DPoP-Nonce")})}})
	if r.status != 200 {
		t.Fatalf("dpop+mtls: %d %s", r.status, r.raw)
	}
	wantAnnotations(t, "DPoP and mTLS token", tokenRec("both"), map[string]string{
		"sc": abi.ConstraintDPoPMTLS, "dpop": "present=true valid=true result=ok jkt=" + bk.thumbprint() + " alg=ES256 nonce=valid",
		"mtls": "present=true result=ok x5t=" + mtls.Thumbprint(both.Cert)})

	// fresh-auth: the echo guest denies there, so the host logs the
	// annotations with authority.plugin.denied.
	fresh := e.do("/fresh-auth", reqOpts{headers: map[string][]string{"Authorization": {"DPoP " + tok},
		"DPoP": {k.proof(t, proofOpts{htu: e.cfg.Issuer + "/fresh-auth", iat: e.clock.Now(), nonce: nonce, ath: ath(tok)})}}})
	if fresh.status != 403 {
		t.Fatalf("fresh-auth: %d %s", fresh.status, fresh.raw)
	}
	wantAnnotations(t, "fresh-auth", lastAnnotations(t, e, "authority.plugin.denied", "", "demo-dpop"), map[string]string{
		"endpoint": abi.HookFreshAuth, "sc": abi.ConstraintDPoP, "subject": "demo-dpop",
		"dpop": "present=true valid=true result=ok jkt=" + k.thumbprint() + " alg=ES256 nonce=valid"})

	in := e.do("/introspect", e.authed("demo-dpop", url.Values{"token": {tok}}))
	if in.status != 403 {
		t.Fatalf("introspect: %d %s", in.status, in.raw)
	}
	wantAnnotations(t, "introspect", lastAnnotations(t, e, "authority.plugin.denied", "", "demo-dpop"), map[string]string{
		"endpoint": abi.HookIntrospect, "client": "demo-dpop"})
}

// waitEcho waits (at most 10 s: events are delivered through a queue) for
// an echo event record whose reason contains every part of want.
func waitEcho(t *testing.T, e *env, want ...string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		for _, r := range logRecords(t, e.logs.String(), "authority.audit.plugin") {
			reason, _ := r["reason"].(string)
			ok := r["event_type"] == "authority.echo.event"
			for _, w := range want {
				ok = ok && strings.Contains(reason, w)
			}
			if ok {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no event reached the plugin with %q; plugin records:\n%v", want, logRecords(t, e.logs.String(), "authority.audit.plugin"))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestABIVocabularyEvents asserts what an events plugin receives for each
// native outcome: issued tokens of each binding, a replayed proof, a
// certificate mismatch.
func TestABIVocabularyEvents(t *testing.T) {
	e := echoEnv(t)
	if r := e.token("demo-bearer", nil); r.status != 200 {
		t.Fatalf("bearer: %d %s", r.status, r.raw)
	}
	waitEcho(t, e, "type="+abi.EventTokenIssued, "outcome="+abi.OutcomeSuccess, "sc="+abi.ConstraintNone, "dpop{"+noDPoP+"}")

	r := e.replayedProof()
	if r.status != 401 {
		t.Fatalf("replay: %d %s", r.status, r.raw)
	}
	waitEcho(t, e, "type="+abi.EventTokenIssued, "sc="+abi.ConstraintDPoP, "result=ok", "alg=ES256", "valid=true")
	waitEcho(t, e, "type="+abi.EventDPoPReplay, "outcome="+abi.OutcomeFailure, "sc="+abi.ConstraintDPoP,
		"present=true valid=false result="+abi.DPoPReplay, "alg=ES256")

	cert := e.demoMTLSCert()
	mt := e.mtlsToken("demo-mtls", &cert.TLS, nil)
	if mt.status != 200 {
		t.Fatalf("mtls: %d %s", mt.status, mt.raw)
	}
	waitEcho(t, e, "type="+abi.EventTokenIssued, "sc="+abi.ConstraintMTLS, "mtls{present=true result=ok x5t="+mtls.Thumbprint(cert.Cert)+"}")
	// The certificate-bound token at fresh-auth without its certificate.
	fr := e.do("/fresh-auth", reqOpts{headers: map[string][]string{"Authorization": {"Bearer " + mt.str("access_token")}}})
	if fr.status != 401 {
		t.Fatalf("fresh-auth without the certificate: %d %s", fr.status, fr.raw)
	}
	waitEcho(t, e, "type="+abi.EventMTLSBindingMismatch, "outcome="+abi.OutcomeFailure, "sc="+abi.ConstraintMTLS,
		"mtls{present=false result="+abi.MTLSContextMissing+" x5t="+mtls.Thumbprint(cert.Cert)+"}")
}

// TestABIVocabularyPluginRateLimitIsAuditedAsRateLimited: a policy
// plugin's 429 is audited with outcome rate_limited, and the deny's
// annotations are on the record.
func TestABIVocabularyPluginRateLimitIsAuditedAsRateLimited(t *testing.T) {
	spec := pluginSpec(t, "stellaops.org/authority/host/plugin/testdata/guests/hostcalls", "hostcalls", nil, plugin.Limits{})
	spec.Hooks, spec.Grants = []string{abi.HookToken}, plugin.Grants()
	e := newEnv(t, envOptions{mutate: func(c *config.Config) {
		withPlugins(t, map[string][]plugin.Spec{"demo": {spec}})(c)
		c.Plugins.PseudonymSecretFile = t.TempDir() + "/pseudonym.secret"
		c.Plugins.GenerateSecret = true
	}})
	var r response
	for range 4 { // the guest allows three per minute
		r = e.token("demo-bearer", nil)
	}
	if r.status != 429 {
		t.Fatalf("fourth request: %d %s", r.status, r.raw)
	}
	var denied map[string]any
	for _, rec := range logRecords(t, e.logs.String(), "authority.audit") {
		if rec["event_type"] == abi.EventTokenDenied {
			denied = rec
		}
	}
	if denied == nil || denied["outcome"] != abi.OutcomeRateLimited {
		t.Fatalf("denied record: %v", denied)
	}
	if ann, _ := denied["annotations"].(map[string]any); ann["hostcalls.counter"] != "4" {
		t.Fatalf("deny annotations missing from the audit record: %v", denied)
	}
}
