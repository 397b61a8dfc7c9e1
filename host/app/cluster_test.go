package app_test

import (
	"context"
	"net/url"
	"path/filepath"
	"testing"

	"github.com/jackc/pgx/v5"

	"stellaops.org/authority/abi"
	"stellaops.org/authority/host/config"
	"stellaops.org/authority/host/mtls"
	"stellaops.org/authority/host/plugin"
	"stellaops.org/authority/internal/testenv"
)

// The token lifecycle against the real PostgreSQL store, including the
// sender-constraint columns of authority_tokens.
func TestPostgresTokenStoreEndToEnd(t *testing.T) {
	dsn, schema := testenv.FreshSchema(t)
	e := newEnv(t, envOptions{postgres: dsn, pgSchema: schema})
	tok := e.mustToken("demo-bearer")
	if r := e.introspect("demo-bearer", tok); r.body["active"] != true {
		t.Fatalf("introspect: %s", r.raw)
	}
	k := newDPoPKey(t)
	dtok, _ := e.boundToken(k)
	cert := e.demoMTLSCert()
	mtok := e.mtlsToken("demo-mtls", &cert.TLS, nil).str("access_token")
	if r := e.do("/revoke", reqOpts{basic: basic("demo-bearer"), form: url.Values{"token": {tok}}}); r.status != 200 {
		t.Fatalf("revoke: %d %s", r.status, r.raw)
	}
	if r := e.introspect("demo-bearer", tok); r.raw != `{"active":false}` {
		t.Fatalf("revoked: %s", r.raw)
	}
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	row := func(jti string) (status, kind, jkt, cert string) {
		t.Helper()
		err := conn.QueryRow(ctx, "SELECT status, sender_constraint, coalesce(key_thumbprint, ''), coalesce(sender_certificate, '') FROM "+
			pgx.Identifier{schema, "authority_tokens"}.Sanitize()+" WHERE id = $1", jti).Scan(&status, &kind, &jkt, &cert)
		if err != nil {
			t.Fatalf("row %s: %v", jti, err)
		}
		return
	}
	if st, kind, _, _ := row(claims(t, tok)["jti"].(string)); st != "revoked" || kind != "none" {
		t.Fatalf("bearer row: %s %s", st, kind)
	}
	if _, kind, jkt, _ := row(claims(t, dtok)["jti"].(string)); kind != "dpop" || jkt != k.thumbprint() {
		t.Fatalf("dpop row: %s %s", kind, jkt)
	}
	if _, kind, _, c := row(claims(t, mtok)["jti"].(string)); kind != "mtls" || c != mtls.Thumbprint(cert.Cert) {
		t.Fatalf("mtls row (sender_certificate): %s %s", kind, c)
	}
}

// Two nodes on one Redis behave as one: a nonce minted by node A is
// accepted by node B, and a proof used at A is a replay at B.
func TestTwoNodesShareNoncesAndReplayCacheThroughRedis(t *testing.T) {
	addr := testenv.RedisAddr(t)
	prefix := testenv.Prefix("cluster")
	keyDir := t.TempDir()
	a := newEnv(t, envOptions{redis: addr, redisPfx: prefix, keyDir: keyDir})
	b := newEnv(t, envOptions{redis: addr, redisPfx: prefix, keyDir: keyDir})
	k := newDPoPKey(t)
	r := a.dpopToken("demo-dpop", k.proof(t, proofOpts{htu: a.cfg.Issuer + "/token", iat: a.clock.Now()}))
	nonce := r.header.Get("DPoP-Nonce")
	if r.status != 400 || nonce == "" {
		t.Fatalf("node A challenge: %d %s", r.status, r.raw)
	}
	// Node B has its own issuer URL in this test; the proof names it.
	proof := k.proof(t, proofOpts{htu: b.cfg.Issuer + "/token", iat: b.clock.Now(), nonce: nonce})
	if r := b.dpopToken("demo-dpop", proof); r.status != 200 {
		t.Fatalf("node B must accept node A's nonce: %d %s", r.status, r.raw)
	}
	// The same proof replayed at node B is detected through the shared cache.
	if r := b.dpopToken("demo-dpop", proof); r.status != 401 || r.str("error") != "invalid_dpop_proof" {
		t.Fatalf("replay across the cluster: %d %s", r.status, r.raw)
	}
}

// With plugins.state: redis, a plugin's counters are shared by every node:
// a per-client limit of 3 tokens a minute (the hostcalls test guest) holds
// across two nodes, answered 429 with Retry-After.
func TestTwoNodesSharePluginCountersThroughRedis(t *testing.T) {
	addr := testenv.RedisAddr(t)
	prefix := testenv.Prefix("plugin-state")
	shared := t.TempDir()
	spec := pluginSpec(t, "../plugin/testdata/guests/hostcalls", "limits", nil, plugin.Limits{})
	spec.Hooks = []string{abi.HookToken}
	spec.Grants = plugin.Grants()
	mutate := func(c *config.Config) {
		withPlugins(t, map[string][]plugin.Spec{"demo": {spec}})(c)
		withRedisPluginState(c, addr, prefix, shared)
	}
	keyDir := t.TempDir()
	a := newEnv(t, envOptions{keyDir: keyDir, mutate: mutate})
	b := newEnv(t, envOptions{keyDir: keyDir, mutate: mutate})
	for i, e := range []*env{a, b, a} {
		if r := e.token("demo-bearer", nil); r.status != 200 {
			t.Fatalf("token %d: %d %s", i+1, r.status, r.raw)
		}
	}
	r := b.token("demo-bearer", nil)
	if r.status != 429 || r.header.Get("Retry-After") == "" {
		t.Fatalf("the 4th token across two nodes must be rate limited: %d %s %v", r.status, r.raw, r.header)
	}
}

// withRedisPluginState puts plugin state (counters, KV) in Redis at addr
// under prefix, with the pseudonym secret in dir: nodes given the same
// three share counters and pseudonyms.
func withRedisPluginState(c *config.Config, addr, prefix, dir string) {
	c.Plugins.State = "redis"
	c.Storage.Redis.Addr, c.Storage.Redis.KeyPrefix = addr, prefix
	c.Plugins.PseudonymSecretFile, c.Plugins.GenerateSecret = filepath.Join(dir, "pseudonym.key"), true
}
