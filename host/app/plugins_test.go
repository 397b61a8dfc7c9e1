package app_test

import (
	"crypto/ed25519"
	"encoding/json"
	"io"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"stellaops.org/authority/abi"
	"stellaops.org/authority/host/app"
	"stellaops.org/authority/host/config"
	"stellaops.org/authority/host/plugin"
	"stellaops.org/authority/sdk/sdktest"
)

// pluginSpec builds a guest package and returns a spec pinned to its digest.
func pluginSpec(t testing.TB, pkg, name string, cfg map[string]any, limits plugin.Limits) plugin.Spec {
	t.Helper()
	wasm := sdktest.Build(t, pkg)
	raw, err := os.ReadFile(wasm)
	if err != nil {
		t.Fatal(err)
	}
	return plugin.Spec{Name: name, Path: wasm, SHA256: plugin.Digest(raw),
		Hooks:  []string{abi.HookToken, abi.HookIntrospect, abi.HookFreshAuth},
		Grants: []string{plugin.GrantConfig}, Config: cfg, Limits: limits}
}

func withPlugins(t *testing.T, byTenant map[string][]plugin.Spec) func(*config.Config) {
	return func(c *config.Config) {
		// Shared across tests: compiled code is keyed by module digest.
		c.Plugins.CacheDir = filepath.Join(sdktest.CacheDir(), "app-compiled")
		for i := range c.Tenants {
			c.Tenants[i].Plugins = byTenant[c.Tenants[i].ID]
		}
	}
}

// One module, two tenants: the plugin takes part in /token decisions for
// one tenant and not the other.
func TestPluginDeniesForOneTenantNotAnother(t *testing.T) {
	const pkg = "stellaops.org/authority/examples/plugins/denyrule"
	deny := pluginSpec(t, pkg, "denyrule", map[string]any{"deniedClients": []any{"demo-bearer"}}, plugin.Limits{})
	allow := pluginSpec(t, pkg, "denyrule", map[string]any{"deniedClients": []any{"someone-else"}}, plugin.Limits{})
	e := newEnv(t, envOptions{mutate: withPlugins(t, map[string][]plugin.Spec{"demo": {deny}, "other": {allow}})})
	r := e.token("demo-bearer", nil)
	if r.status != 403 || r.str("error") != "access_denied" {
		t.Fatalf("tenant demo: %d %s", r.status, r.raw)
	}
	if r := e.token("other-client", nil); r.status != 200 {
		t.Fatalf("tenant other: %d %s", r.status, r.raw)
	}
	m := e.metrics()
	for _, want := range []string{
		`authority_plugin_calls_total{hook="token",outcome="ok",plugin="denyrule",tenant="demo"} 1`,
		`authority_plugin_calls_total{hook="token",outcome="ok",plugin="denyrule",tenant="other"} 1`,
		`authority_plugin_circuit_open{plugin="denyrule",tenant="demo"} 0`,
		`authority_tokens_denied_total{authority_dpop_result="none",error="access_denied",grant_type="client_credentials",tenant="demo"} 1`,
	} {
		if !strings.Contains(m, want) {
			t.Errorf("scrape lacks %s", want)
		}
	}
	if !strings.Contains(e.logs.String(), `"reason":"plugin-deny"`) {
		t.Fatal("the plugin deny is not in the audit record")
	}
}

// A plugin never loosens a native check: with an allow-all plugin, a
// DPoP-required client without a proof is still refused, and a bad secret
// is still invalid_client.
func TestPluginCannotLoosenNativeChecks(t *testing.T) {
	allowAll := pluginSpec(t, "stellaops.org/authority/examples/plugins/denyrule", "denyrule", map[string]any{}, plugin.Limits{})
	e := newEnv(t, envOptions{mutate: withPlugins(t, map[string][]plugin.Spec{"demo-dpop": {allowAll}, "demo": {allowAll}})})
	if r := e.token("demo-dpop", nil); r.status != 400 || r.str("error") != "use_dpop_nonce" {
		t.Fatalf("%d %s", r.status, r.raw)
	}
	r := e.do("/token", reqOpts{basic: [2]string{"demo-bearer", "wrong"}, form: url.Values{"grant_type": {"client_credentials"}}})
	if r.status != 401 {
		t.Fatalf("%d %s", r.status, r.raw)
	}
}

// A runaway policy plugin fails closed (503 temporarily_unavailable), the
// host keeps serving other tenants, and the failure is counted.
func TestRunawayPolicyPluginFailsClosed(t *testing.T) {
	spin := pluginSpec(t, "../plugin/testdata/guests/misbehave", "misbehave", nil, plugin.Limits{CallTimeout: 20 * time.Millisecond})
	spin.Grants = nil
	e := newEnv(t, envOptions{mutate: func(c *config.Config) {
		withPlugins(t, map[string][]plugin.Spec{"spin": {spin}})(c)
		c.Tenants = append(c.Tenants, config.Tenant{ID: "spin", Plugins: []plugin.Spec{spin}, Clients: []config.Client{{
			ID: "spin", SecretDigest: config.DigestSecret("spin-client-secret"), AuthMethod: "client_secret_basic",
			Grants: []string{"client_credentials"}, Audiences: []string{"api"}}}})
	}})
	r := e.do("/token", reqOpts{basic: [2]string{"spin", "spin-client-secret"}, form: url.Values{"grant_type": {"client_credentials"}}})
	if r.status != 503 || r.str("error") != "temporarily_unavailable" {
		t.Fatalf("%d %s", r.status, r.raw)
	}
	if r := e.token("demo-bearer", nil); r.status != 200 {
		t.Fatalf("another tenant: %d %s", r.status, r.raw)
	}
	if !strings.Contains(e.metrics(), `authority_plugin_failures_total{hook="token",plugin="misbehave",reason="timeout",tenant="spin"} 1`) {
		t.Fatal("timeout not counted")
	}
}

// BenchmarkTokenWithPlugins issues tokens from 32 concurrent clients with
// no plugin and with a chain of three realistic policy plugins (SEC5-like
// rule sets, per-call deadline on): the target is that three plugins cost
// at most 15% of /token throughput.
func BenchmarkTokenWithPlugins(b *testing.B) {
	for _, n := range []int{0, 3} {
		b.Run(map[int]string{0: "none", 3: "three"}[n], func(b *testing.B) {
			var chain []plugin.Spec
			if n > 0 {
				wasm := sdktest.Build(b, "../plugin/testdata/guests/realistic")
				raw, err := os.ReadFile(wasm)
				if err != nil {
					b.Fatal(err)
				}
				for i := range n {
					chain = append(chain, plugin.Spec{Name: "rules" + string(rune('a'+i)), Path: wasm, SHA256: plugin.Digest(raw),
						Hooks: []string{abi.HookToken}, Grants: []string{plugin.GrantConfig},
						Config: map[string]any{"deniedClients": []any{"legacy"}, "requiredScopes": []any{"demo.read"}, "allowedAlgs": []any{"ES256"}},
						Limits: plugin.Limits{PoolSize: 8, CallTimeout: benchCallTimeout()}})
				}
			}
			e := newEnv(b, envOptions{quiet: os.Getenv("BENCH_LOGS") == "", mutate: func(c *config.Config) {
				c.Plugins.CacheDir = filepath.Join(sdktest.CacheDir(), "app-compiled")
				c.Tenants[0].Plugins = chain
			}})
			h := e.a.Server.Handler()
			// Grow the pools to their working size before measuring: lazy
			// instantiation (10-16 ms each) belongs to start-up, not to the
			// steady state measured here.
			var wg sync.WaitGroup
			for range 32 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for range 20 {
						h.ServeHTTP(httptest.NewRecorder(), tokenRequest("demo-bearer", ""))
					}
				}()
			}
			wg.Wait()
			b.SetParallelism(16)
			b.ReportAllocs()
			b.ResetTimer()
			start := time.Now()
			var unavailable atomic.Int64
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					w := httptest.NewRecorder()
					h.ServeHTTP(w, tokenRequest("demo-bearer", ""))
					switch w.Code {
					case 200:
					case 503: // a plugin call reached its deadline: fail closed, counted below
						unavailable.Add(1)
					default:
						b.Errorf("status %d: %s", w.Code, w.Body.String())
						return
					}
				}
			})
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "tokens/s")
			b.ReportMetric(float64(unavailable.Load())/float64(b.N), "503s/op")
		})
	}
}

// benchCallTimeout is the per-call deadline of the benchmark's plugins:
// the default, or BENCH_PLUGIN_TIMEOUT (a Go duration) to separate the cost
// of the calls from the cost of replacing instances whose deadline fired
// while their goroutine waited for a CPU.
func benchCallTimeout() time.Duration {
	d, _ := time.ParseDuration(os.Getenv("BENCH_PLUGIN_TIMEOUT"))
	return d
}

// Hot reload swaps the plugin set after compiling and warming the new one;
// a set whose module digest does not match is refused and the old set
// keeps deciding.
func TestReloadSwapsThePluginSet(t *testing.T) {
	deny := pluginSpec(t, "stellaops.org/authority/examples/plugins/denyrule", "denyrule",
		map[string]any{"deniedClients": []any{"demo-bearer"}}, plugin.Limits{})
	e := newEnv(t, envOptions{mutate: func(c *config.Config) {
		withPlugins(t, map[string][]plugin.Spec{"demo": {deny}})(c)
		c.Admin.TokenDigest = config.DigestSecret(adminToken)
	}})
	if r := e.token("demo-bearer", nil); r.status != 403 {
		t.Fatalf("before reload: %d %s", r.status, r.raw)
	}
	pluginYAML := func(digest string) string {
		return "\n    plugins:\n      - name: denyrule\n        path: " + deny.Path + "\n        sha256: " + digest +
			"\n        hooks: [token]\n        grants: [config]\n        config: {deniedClients: [someone-else]}\n"
	}
	withPlugin := func(digest string) func(string) string {
		return func(d string) string {
			return strings.Replace(d, "  - id: demo\n", "  - id: demo"+pluginYAML(digest), 1) +
				"\nplugins:\n  cacheDir: " + e.cfg.Plugins.CacheDir + "\n"
		}
	}
	// A wrong digest: refused, naming the module and both digests; the old set serves.
	e.writeConfig(withPlugin(strings.Repeat("0", 64)))
	r := e.adminReload(adminToken)
	if r.status != 409 || !strings.Contains(r.raw, deny.SHA256) {
		t.Fatalf("bad digest: %d %s", r.status, r.raw)
	}
	if r := e.token("demo-bearer", nil); r.status != 403 {
		t.Fatalf("the old plugin set must keep deciding: %d", r.status)
	}
	e.writeConfig(withPlugin(deny.SHA256))
	if r := e.adminReload(adminToken); r.status != 200 {
		t.Fatalf("reload: %d %s", r.status, r.raw)
	}
	if r := e.token("demo-bearer", nil); r.status != 200 {
		t.Fatalf("after reload the new rule applies: %d %s", r.status, r.raw)
	}
}

// plugins.guildKeys + requireSignature: a module signed by a guild key
// loads; the same module with a signature by another key refuses to start,
// naming the module.
func TestGuildSignedPluginLoadsOthersRefused(t *testing.T) {
	spec := pluginSpec(t, "stellaops.org/authority/examples/plugins/denyrule", "denyrule", map[string]any{}, plugin.Limits{})
	dir := t.TempDir()
	raw, err := os.ReadFile(spec.Path)
	if err != nil {
		t.Fatal(err)
	}
	spec.Path = filepath.Join(dir, "denyrule.wasm")
	if err := os.WriteFile(spec.Path, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	spec.RequireSignature = true
	guildPub, guildPriv, _ := ed25519.GenerateKey(nil)
	_, otherPriv, _ := ed25519.GenerateKey(nil)
	keyFile := filepath.Join(dir, "guild.pub")
	pemKey, err := plugin.MarshalPublicKeyPEM(guildPub)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pemKey, 0o600); err != nil {
		t.Fatal(err)
	}
	mutate := func(c *config.Config) {
		withPlugins(t, map[string][]plugin.Spec{"demo": {spec}})(c)
		c.Plugins.GuildKeys = []string{keyFile}
	}
	if err := os.WriteFile(spec.Path+plugin.SignatureSuffix, []byte(plugin.Sign(raw, guildPriv)), 0o600); err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, envOptions{mutate: mutate})
	if r := e.token("demo-bearer", nil); r.status != 200 {
		t.Fatalf("signed module: %d %s", r.status, r.raw)
	}
	if err := os.WriteFile(spec.Path+plugin.SignatureSuffix, []byte(plugin.Sign(raw, otherPriv)), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Parse([]byte(e.doc))
	if err != nil {
		t.Fatal(err)
	}
	*cfg = *e.cfg
	cfg.Audit.File = filepath.Join(t.TempDir(), "audit.jsonl") // e's node holds its own
	mutate(cfg)
	_, err = app.Build(t.Context(), cfg, app.NewLogger(io.Discard, "info"), app.Options{})
	if err == nil || !strings.Contains(err.Error(), "denyrule") {
		t.Fatalf("a module signed by an untrusted key must refuse to start, naming it: %v", err)
	}
}

// hostileSpec pins a module of host/plugin/testdata/hostile.
func hostileSpec(t *testing.T, name string, hooks []string, grants ...string) plugin.Spec {
	t.Helper()
	path, err := filepath.Abs(filepath.Join("..", "plugin", "testdata", "hostile", name+".wasm"))
	if err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return plugin.Spec{Name: name, Path: path, SHA256: plugin.Digest(raw), Hooks: hooks, Grants: grants}
}

// logRecords returns the JSON log records whose msg is msg.
func logRecords(t *testing.T, logs, msg string) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, line := range strings.Split(logs, "\n") {
		var r map[string]any
		if json.Unmarshal([]byte(line), &r) == nil && r["msg"] == msg {
			out = append(out, r)
		}
	}
	return out
}

// A plugin that forges host audit records (authority.token.issued for a
// client and subject of its choosing, another tenant, 100 times per
// /token) writes at most its budget, 8 records, each a plugin record that
// no reader of host records can take for one: log event
// authority.audit.plugin, source plugin:<name>, the request's tenant. The
// 92 refused records are counted in authority_plugin_audit_limited_total.
func TestPluginCannotForgeHostAuditRecords(t *testing.T) {
	flood := hostileSpec(t, "auditflood", []string{abi.HookToken}, plugin.GrantAudit)
	e := newEnv(t, envOptions{mutate: withPlugins(t, map[string][]plugin.Spec{"demo": {flood}})})
	if r := e.token("demo-bearer", nil); r.status != 200 {
		t.Fatalf("token: %d %s", r.status, r.raw)
	}
	logs := e.logs.String()
	host := logRecords(t, logs, "authority.audit")
	if len(host) != 1 || host[0]["source"] != "host" || host[0]["event_type"] != "authority.token.issued" || host[0]["client"] != "demo-bearer" {
		t.Fatalf("host audit records: %v", host)
	}
	forged := logRecords(t, logs, "authority.audit.plugin")
	if len(forged) != 8 {
		t.Fatalf("%d plugin records, want the budget of 8", len(forged))
	}
	for _, r := range forged {
		if r["source"] != "plugin:auditflood" || r["tenant"] != "demo" || r["client"] != "victim" || r["event_type"] != "authority.token.issued" {
			t.Fatalf("plugin record %v", r)
		}
	}
	if m := e.metrics(); !strings.Contains(m, `authority_plugin_audit_limited_total{plugin="auditflood",tenant="demo"} 92`) {
		t.Fatalf("refused records not counted:\n%s", grepLines(m, "audit_limited"))
	}
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// The hostcalls guest calls every host function and annotates its
// decision: in the server its metric_add counter is exported as
// authority_plugin_metric_total{tenant,plugin,name}, and its annotations
// (prefixed with the plugin name) are on the request's audit record.
func TestPluginMetricsAndAnnotationsReachTheServer(t *testing.T) {
	spec := pluginSpec(t, "stellaops.org/authority/host/plugin/testdata/guests/hostcalls", "hostcalls", nil, plugin.Limits{})
	spec.Hooks, spec.Grants = []string{abi.HookToken}, plugin.Grants()
	e := newEnv(t, envOptions{mutate: func(c *config.Config) {
		withPlugins(t, map[string][]plugin.Spec{"demo": {spec}})(c)
		c.Plugins.PseudonymSecretFile = filepath.Join(t.TempDir(), "pseudonym.secret")
		c.Plugins.GenerateSecret = true
	}})
	if r := e.token("demo-bearer", nil); r.status != 200 {
		t.Fatalf("token: %d %s", r.status, r.raw)
	}
	if m := e.metrics(); !strings.Contains(m, `authority_plugin_metric_total{name="decisions",plugin="hostcalls",tenant="demo"} 1`) {
		t.Fatalf("metric_add not exported:\n%s", grepLines(m, "authority_plugin_metric"))
	}
	var issued map[string]any
	for _, r := range logRecords(t, e.logs.String(), "authority.audit") {
		if r["event_type"] == "authority.token.issued" {
			issued = r
		}
	}
	ann, _ := issued["annotations"].(map[string]any)
	if ann["hostcalls.counter"] != "1" || ann["hostcalls.tenant"] != "demo" {
		t.Fatalf("annotations missing from the audit record: %v", issued)
	}
}
