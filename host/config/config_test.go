package config

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

const minimal = `
signing:
  keys:
    - file: k.pem
      active: true
tenants:
  - id: t1
    clients:
      - id: c1
        secretDigest: sha256:b8c219274beea7b2dc1e24ad8fc6ac58c77f7de06c8a902d1690d890ca8ff93f
        authMethod: client_secret_basic
        grants: [client_credentials]
        audiences: [api]
`

func parseValidate(t *testing.T, doc string) error {
	t.Helper()
	cfg, err := Parse([]byte(doc))
	if err != nil {
		return err
	}
	return cfg.Validate()
}

func TestExampleConfigIsValid(t *testing.T) {
	cfg, err := Load(filepath.Join("..", "..", "examples", "authority.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	// The README's demo tenants, in order; new demo tenants come after them.
	var ids []string
	for _, t := range cfg.Tenants {
		ids = append(ids, t.ID)
	}
	if want := []string{"demo", "demo-dpop", "demo-mtls", "demo-users", "demo-sec3", "demo-sec5"}; !slices.Equal(ids, want) {
		t.Fatalf("tenants %v, want %v", ids, want)
	}
}

func TestMinimalConfigGetsDefaults(t *testing.T) {
	cfg, err := Parse([]byte(minimal))
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	d := cfg.Security.SenderConstraints.DPoP
	if d.ProofLifetime.D().Seconds() != 60 || d.AllowedClockSkew.D().Seconds() != 30 || d.Nonce.TTL.D().Seconds() != 300 {
		t.Fatalf("dpop defaults: %+v", d)
	}
	if d.AllowTemporaryBypass {
		t.Fatal("allowTemporaryBypass must default to false")
	}
	if d.Nonce.SingleUse || d.Nonce.Store != "memory" {
		t.Fatalf("nonce defaults: %+v", d.Nonce)
	}
	if a := cfg.Plugins.Audit; a != (PluginAudit{RecordsPerCall: 8, BytesPerCall: 16 << 10, Rate: 10, Burst: 50}) {
		t.Fatalf("plugins.audit defaults: %+v", a)
	}
}

func TestUnknownKeyIsAnError(t *testing.T) {
	err := parseValidate(t, minimal+"\nsecurity:\n  senderConstraints:\n    dpop:\n      replayWindw: 90s\n")
	if err == nil || !strings.Contains(err.Error(), "replayWindw") {
		t.Fatalf("err = %v, want unknown field replayWindw", err)
	}
}

func TestValidationNamesTheKey(t *testing.T) {
	cases := []struct {
		name, extra, key string
	}{
		{"replayWindow below lifetime+skew", "security:\n  senderConstraints:\n    dpop:\n      replayWindow: 10s\n", "security.senderConstraints.dpop.replayWindow"},
		{"unknown alg", "security:\n  senderConstraints:\n    dpop:\n      allowedAlgorithms: [HS256]\n", "security.senderConstraints.dpop.allowedAlgorithms[0]"},
		{"none alg", "security:\n  senderConstraints:\n    dpop:\n      allowedAlgorithms: [none]\n", "security.senderConstraints.dpop.allowedAlgorithms[0]"},
		{"nonce ttl", "security:\n  senderConstraints:\n    dpop:\n      nonce:\n        ttl: 0s\n", "security.senderConstraints.dpop.nonce.ttl"},
		{"nonce store", "security:\n  senderConstraints:\n    dpop:\n      nonce:\n        store: etcd\n", "security.senderConstraints.dpop.nonce.store"},
		{"redis nonce needs addr", "security:\n  senderConstraints:\n    dpop:\n      nonce:\n        store: redis\n", "storage.redis.addr"},
		{"san type", "security:\n  senderConstraints:\n    mtls:\n      allowedSanTypes: [x400]\n", "security.senderConstraints.mtls.allowedSanTypes[0]"},
		{"storage kind", "storage:\n  tokens: sqlite\n", "storage.tokens"},
		{"postgres dsn", "storage:\n  tokens: postgres\n", "storage.postgres.dsn"},
		{"issuer", "issuer: ftp://x\n", "issuer"},
		{"trusted proxy", "security:\n  trustedProxies: [nonsense]\n", "security.trustedProxies[0]"},
		{"log level", "logging:\n  level: loud\n", "logging.level"},
		{"audit records per call", "plugins:\n  audit:\n    recordsPerCall: 33\n", "plugins.audit.recordsPerCall"},
		{"audit records per call zero", "plugins:\n  audit:\n    recordsPerCall: 0\n", "plugins.audit.recordsPerCall"},
		{"audit bytes per call", "plugins:\n  audit:\n    bytesPerCall: 100\n", "plugins.audit.bytesPerCall"},
		{"audit rate", "plugins:\n  audit:\n    rate: 0\n", "plugins.audit.rate"},
		{"audit burst", "plugins:\n  audit:\n    burst: -1\n", "plugins.audit.burst"},
		{"refresh idle", "tokens:\n  refreshToken:\n    idleLifetime: 0s\n", "tokens.refreshToken.idleLifetime"},
		{"refresh absolute below idle", "tokens:\n  refreshToken:\n    idleLifetime: 48h\n    absoluteLifetime: 24h\n", "tokens.refreshToken.absoluteLifetime"},
		{"argon2id memory below OWASP", "security:\n  passwords:\n    argon2id:\n      memoryKiB: 4096\n", "security.passwords.argon2id.memoryKiB"},
		{"argon2id m*t below OWASP", "security:\n  passwords:\n    argon2id:\n      iterations: 1\n", "security.passwords.argon2id.iterations"},
		{"argon2id parallelism", "security:\n  passwords:\n    argon2id:\n      parallelism: 0\n", "security.passwords.argon2id.parallelism"},
		{"kdf concurrency", "security:\n  passwords:\n    maxConcurrent: -1\n", "security.passwords.maxConcurrent"},
		{"kdf wait", "security:\n  passwords:\n    waitTimeout: 1m\n", "security.passwords.waitTimeout"},
		{"users store", "storage:\n  users: ldap\n", "storage.users"},
		{"postgres users need postgres tokens", "storage:\n  users: postgres\n", "storage.users"},
		{"mtls audiences need https", "security:\n  senderConstraints:\n    mtls:\n      enforceForAudiences: [api]\n", "security.senderConstraints.mtls.enforceForAudiences"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := parseValidate(t, minimal+tc.extra)
			if err == nil {
				t.Fatal("accepted")
			}
			if !strings.Contains(err.Error(), tc.key+":") {
				t.Fatalf("error %q does not name %s", err, tc.key)
			}
		})
	}
}

func TestPasswordGrantConfigErrorsNameTheKey(t *testing.T) {
	doc := `
signing:
  keys: [{file: k.pem, active: true}]
tenants:
  - id: t1
    users:
      - username: alice
        passwordHash: $2a$10$bcryptisnotaccepted
      - username: alice
        passwordHash: "$argon2id$v=19$m=65536,t=2,p=1$c29tZXNhbHQ$CTFhFdXPJO1aFaMaO6Mm5c8y7cJHAph8ArZWb2GRPPc"
        scopes: ["two words"]
      - username: ""
        passwordHash: "$argon2id$v=19$m=65536,t=2,p=1$c29tZXNhbHQ$CTFhFdXPJO1aFaMaO6Mm5c8y7cJHAph8ArZWb2GRPPc"
    clients:
      - id: public-app
        authMethod: none
        secretDigest: sha256:b8c219274beea7b2dc1e24ad8fc6ac58c77f7de06c8a902d1690d890ca8ff93f
        grants: [client_credentials, password]
      - id: refresh-only
        secretDigest: sha256:b8c219274beea7b2dc1e24ad8fc6ac58c77f7de06c8a902d1690d890ca8ff93f
        authMethod: client_secret_basic
        grants: [refresh_token]
`
	err := parseValidate(t, doc)
	if err == nil {
		t.Fatal("accepted")
	}
	for _, key := range []string{
		"tenants[0].users[0].passwordHash:",
		"tenants[0].users[1].username:",
		"tenants[0].users[1].scopes[0]:",
		"tenants[0].users[2].username:",
		"tenants[0].clients[0].secretDigest:",
		"tenants[0].clients[0].grants:",
		"tenants[0].clients[1].grants:",
	} {
		if !strings.Contains(err.Error(), key) {
			t.Errorf("error does not name %s:\n%v", key, err)
		}
	}
	if strings.Contains(err.Error(), "tenants[0].users[1].passwordHash") {
		t.Errorf("the reference Argon2id hash was refused:\n%v", err)
	}
}

func TestClientValidationNamesTheKey(t *testing.T) {
	doc := `
signing:
  keys: [{file: k.pem, active: true}]
tenants:
  - id: t1
    clients:
      - id: c1
        secretDigest: sha256:nothex
        authMethod: client_secret_basic
        grants: [implicit]
        scopes: ["bad scope"]
      - id: c1
        authMethod: tls_client_auth
        grants: [client_credentials]
  - id: t1
`
	err := parseValidate(t, doc)
	if err == nil {
		t.Fatal("accepted")
	}
	for _, key := range []string{
		"tenants[0].clients[0].secretDigest:",
		"tenants[0].clients[0].grants[0]:",
		"tenants[0].clients[0].scopes[0]:",
		"tenants[0].clients[1].id:",
		"tenants[0].clients[1].tls:",
		"tenants[0].clients[1].authMethod:",
		"tenants[1].id:",
	} {
		if !strings.Contains(err.Error(), key) {
			t.Errorf("error does not name %s:\n%v", key, err)
		}
	}
	var ke *KeyError
	if !errors.As(err, &ke) {
		t.Fatalf("errors are not *KeyError: %T", err)
	}
}

func TestSigningKeysExactlyOneActive(t *testing.T) {
	doc := strings.Replace(minimal, "active: true", "active: false", 1)
	err := parseValidate(t, doc)
	if err == nil || !strings.Contains(err.Error(), "signing.keys: exactly one key must be active") {
		t.Fatalf("err = %v", err)
	}
}

func TestEnvironmentOverridesSecretsAndDSNs(t *testing.T) {
	cfg, err := Parse([]byte(minimal + "storage:\n  tokens: postgres\naudit:\n  signingKeyFile: k.pem\nplugins:\n  pseudonymSecretFile: p.secret\n"))
	if err != nil {
		t.Fatal(err)
	}
	env := map[string]string{
		"AUTHORITY_POSTGRES_DSN":     "postgres://x@h/db",
		"AUTHORITY_REDIS_ADDR":       "10.0.0.1:6379",
		"AUTHORITY_CLIENT_SECRET_C1": "a-new-long-client-secret",
	}
	if err := cfg.ApplyEnv(func(k string) (string, bool) { v, ok := env[k]; return v, ok }); err != nil {
		t.Fatal(err)
	}
	if cfg.Storage.Postgres.DSN != "postgres://x@h/db" || cfg.Storage.Redis.Addr != "10.0.0.1:6379" {
		t.Fatalf("overrides not applied: %+v", cfg.Storage)
	}
	if got := cfg.Tenants[0].Clients[0].SecretDigest; got != DigestSecret("a-new-long-client-secret") {
		t.Fatalf("secret digest = %s", got)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
}

func TestClientSecretEnvName(t *testing.T) {
	if got := ClientSecretEnv("demo-bearer.v2"); got != "AUTHORITY_CLIENT_SECRET_DEMO_BEARER_V2" {
		t.Fatal(got)
	}
}

func TestLoadNamesTheFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "a.yaml")
	if err := os.WriteFile(p, []byte("issuer: 3\nbogus: 1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Load(p)
	if err == nil || !strings.Contains(err.Error(), p) || !strings.Contains(err.Error(), "bogus") {
		t.Fatalf("err = %v", err)
	}
}

func TestResolvePathAgainstWorkingDirectory(t *testing.T) {
	wd, _ := os.Getwd()
	if got := ResolvePath("var/x"); got != filepath.Join(wd, "var/x") {
		t.Fatal(got)
	}
	if ResolvePath("/abs") != "/abs" || ResolvePath("") != "" {
		t.Fatal("absolute or empty paths must stay")
	}
}

// TestPluginsCacheDirPermissions: compiled code is native code, so a cache
// directory group or others can write and a key file they can read are
// config errors naming their key, reported with the other errors.
func TestPluginsCacheDirPermissions(t *testing.T) {
	base := t.TempDir()
	withPlugin := minimal + `    plugins:
      - name: p
        path: p.wasm
        sha256: ` + strings.Repeat("a", 64) + `
        hooks: [token]
`
	doc := func(dir, key string) string {
		return withPlugin + "plugins:\n  eventQueueSize: -1\n  cacheDir: " + dir + "\n  cacheKeyFile: " + key + "\n"
	}
	shared := filepath.Join(base, "shared")
	if err := os.Mkdir(shared, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(shared, 0o775); err != nil {
		t.Fatal(err)
	}
	readable := filepath.Join(base, "readable.key")
	if err := os.WriteFile(readable, []byte(strings.Repeat("ab", 32)), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(readable, 0o644); err != nil {
		t.Fatal(err)
	}
	err := parseValidate(t, doc(shared, readable))
	for _, want := range []string{
		"plugins.cacheDir: " + shared + " is writable by group or others (mode 0775)",
		"plugins.cacheKeyFile: " + readable + " is accessible to group or others (mode 0644)",
		"plugins.eventQueueSize:",
	} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v does not contain %q", err, want)
		}
	}

	private := filepath.Join(base, "private")
	if err := parseValidate(t, doc(private, filepath.Join(private, "k"))); err == nil || !strings.Contains(err.Error(), "plugins.cacheKeyFile: ") {
		t.Errorf("key inside the cache directory: %v", err)
	}
	if err := parseValidate(t, withPlugin+"plugins:\n  cacheDir: "+private+"\n"); err != nil {
		t.Errorf("missing private directory and default key file: %v", err)
	}
	// Without plugins the cache is never opened: not checked.
	if err := parseValidate(t, minimal+"plugins:\n  cacheDir: "+shared+"\n"); err != nil {
		t.Errorf("no plugins: %v", err)
	}
}

// TestPluginStateQuotasPassThrough: the per-plugin state quotas decode
// from tenants[].plugins[].limits and are validated under their full key.
func TestPluginStateQuotasPassThrough(t *testing.T) {
	plugins := func(limits string) string {
		return minimal + `    plugins:
      - name: rl
        path: rl.wasm
        sha256: ` + strings.Repeat("ab", 32) + `
        hooks: [token]
        grants: [counters, kv]
        limits: {` + limits + `}
`
	}
	cfg, err := Parse([]byte(plugins("counterKeys: 50000, kvEntries: 500, kvBytes: 1048576")))
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	if l := cfg.Tenants[0].Plugins[0].Limits; l.CounterKeys != 50000 || l.KVEntries != 500 || l.KVBytes != 1<<20 {
		t.Fatalf("limits %+v", l)
	}
	err = parseValidate(t, plugins("counterKeys: -1, kvEntries: 2000000, kvBytes: 2147483648"))
	for _, key := range []string{
		"tenants[0].plugins[0].limits.counterKeys:",
		"tenants[0].plugins[0].limits.kvEntries:",
		"tenants[0].plugins[0].limits.kvBytes:",
	} {
		if err == nil || !strings.Contains(err.Error(), key) {
			t.Errorf("error does not name %s:\n%v", key, err)
		}
	}
}

// TestRFC8705CertificateClientSecretDigestIsAConfigError: a tls_client_auth
// or self_signed_tls_client_auth client authenticates with its certificate
// only, so a secretDigest on one (from the file or from its
// AUTHORITY_CLIENT_SECRET_<ID> variable) is refused, naming the key.
func TestRFC8705CertificateClientSecretDigestIsAConfigError(t *testing.T) {
	doc := `
listen: {https: "127.0.0.1:8443"}
tls: {devPki: pki}
mtlsIssuer: https://mtls.test
signing:
  keys: [{file: k.pem, active: true}]
tenants:
  - id: t1
    trustRoots: [ca.pem]
    clients:
      - id: svc-a
        authMethod: tls_client_auth
        tls: {sanDns: svc-a.test}
        grants: [client_credentials]
`
	cfg, err := Parse([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatalf("certificate client without a secret: %v", err)
	}
	env := map[string]string{"AUTHORITY_CLIENT_SECRET_SVC_A": "a-secret-meant-for-someone-else"}
	if err := cfg.ApplyEnv(func(k string) (string, bool) { v, ok := env[k]; return v, ok }); err != nil {
		t.Fatal(err)
	}
	err = cfg.Validate()
	if err == nil || !strings.Contains(err.Error(), "tenants[0].clients[0].secretDigest:") ||
		!strings.Contains(err.Error(), "AUTHORITY_CLIENT_SECRET_SVC_A") {
		t.Fatalf("err = %v", err)
	}
	for _, m := range []string{"tls_client_auth", "self_signed_tls_client_auth"} {
		d := strings.Replace(doc, "authMethod: tls_client_auth", "authMethod: "+m+"\n        secretDigest: "+DigestSecret("s"), 1)
		err := parseValidate(t, d)
		if err == nil || !strings.Contains(err.Error(), "tenants[0].clients[0].secretDigest:") {
			t.Fatalf("%s with secretDigest in the file: %v", m, err)
		}
	}
}

// TestClientIDsSharingASecretVariableAreAConfigError: svc-a, svc_a, svc.a
// and SVC-A all map to AUTHORITY_CLIENT_SECRET_SVC_A, so one tenant's secret
// would become another tenant's client's credential. Two such clients are a
// config error naming both.
func TestClientIDsSharingASecretVariableAreAConfigError(t *testing.T) {
	for _, other := range []string{"svc_a", "svc.a", "SVC-A"} {
		doc := `
signing:
  keys: [{file: k.pem, active: true}]
tenants:
  - id: t1
    clients:
      - id: svc-a
        secretDigest: ` + DigestSecret("one") + `
        authMethod: client_secret_basic
        grants: [client_credentials]
  - id: t2
    clients:
      - id: ` + other + `
        secretDigest: ` + DigestSecret("two") + `
        authMethod: client_secret_post
        grants: [client_credentials]
`
		err := parseValidate(t, doc)
		if err == nil || !strings.Contains(err.Error(), "tenants[1].clients[0].id:") ||
			!strings.Contains(err.Error(), `"svc-a"`) || !strings.Contains(err.Error(), `"`+other+`"`) ||
			!strings.Contains(err.Error(), "AUTHORITY_CLIENT_SECRET_SVC_A") {
			t.Fatalf("%s: err = %v", other, err)
		}
	}
}

// RFC 8414 §2: the issuer identifier is one string; a trailing slash in the
// file does not make a second one.
func TestRFC8414_2_IssuerIDIsCanonical(t *testing.T) {
	cases := []struct{ issuer, mtlsIssuer, https, id, alias string }{
		{"https://as.test", "https://mtls.as.test", "127.0.0.1:8443", "https://as.test", "https://mtls.as.test"},
		{"https://as.test/", "https://mtls.as.test/", "127.0.0.1:8443", "https://as.test", "https://mtls.as.test"},
		{"https://as.test/tenant//", "https://mtls.as.test/tenant/", "127.0.0.1:8443", "https://as.test/tenant", "https://mtls.as.test/tenant"},
		// No HTTPS listener: no alias, whatever mtlsIssuer says.
		{"https://as.test/", "https://mtls.as.test", "", "https://as.test", ""},
	}
	for _, c := range cases {
		cfg := &Config{Issuer: c.issuer, MTLSIssuer: c.mtlsIssuer, Listen: Listen{HTTPS: c.https}}
		if got := cfg.IssuerID(); got != c.id {
			t.Errorf("IssuerID(%q) = %q, want %q", c.issuer, got, c.id)
		}
		if got := cfg.MTLSAlias(); got != c.alias {
			t.Errorf("MTLSAlias(%q, https %q) = %q, want %q", c.mtlsIssuer, c.https, got, c.alias)
		}
	}
}

// A durable audit sink (PostgreSQL when the tokens are there, a file when
// audit.file is set) needs its checkpoint key and the pseudonym secret;
// each missing one is named.
func TestAuditDurableSinkNeedsKeys(t *testing.T) {
	for _, doc := range []string{
		minimal + "storage:\n  tokens: postgres\n  postgres:\n    dsn: postgres://x@h/db\n",
		minimal + "audit:\n  file: var/audit.jsonl\n",
	} {
		err := parseValidate(t, doc)
		if err == nil || !strings.Contains(err.Error(), "audit.signingKeyFile: required") ||
			!strings.Contains(err.Error(), "plugins.pseudonymSecretFile: required") {
			t.Fatalf("err = %v", err)
		}
	}
	cfg, err := Parse([]byte(minimal))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.AuditSink() != "log" {
		t.Fatalf("memory tokens and no audit.file: sink %s, want log", cfg.AuditSink())
	}
}

func TestAuditConfigErrorsNameTheKey(t *testing.T) {
	keys := "audit:\n  signingKeyFile: k.pem\n  file: a.jsonl\nplugins:\n  pseudonymSecretFile: p.secret\n"
	cases := map[string]string{
		"audit.sink":                  strings.Replace(keys, "audit:\n", "audit:\n  sink: syslog\n", 1),
		"audit.onFailure":             strings.Replace(keys, "audit:\n", "audit:\n  onFailure: maybe\n", 1),
		"audit.retention":             strings.Replace(keys, "audit:\n", "audit:\n  retention: 30s\n", 1),
		"audit.queueSize":             strings.Replace(keys, "audit:\n", "audit:\n  queueSize: 0\n", 1),
		"audit.batchMax":              strings.Replace(keys, "audit:\n", "audit:\n  batchMax: 0\n", 1),
		"audit.checkpointInterval":    strings.Replace(keys, "audit:\n", "audit:\n  checkpointInterval: 10ms\n", 1),
		"audit.writeTimeout":          strings.Replace(keys, "audit:\n", "audit:\n  writeTimeout: 1m\n", 1),
		"audit.node":                  strings.Replace(keys, "audit:\n", "audit:\n  node: \"a b\"\n", 1),
		"tenants[0].audit.network":    keys + "TENANT_AUDIT:    audit: {network: keep}\n",
		"tenants[0].audit.ipv4Prefix": keys + "TENANT_AUDIT:    audit: {network: truncate, ipv4Prefix: 32}\n",
		"tenants[0].audit.ipv6Prefix": keys + "TENANT_AUDIT:    audit: {network: truncate, ipv6Prefix: 8}\n",
	}
	for key, extra := range cases {
		t.Run(key, func(t *testing.T) {
			doc := minimal + extra
			if i := strings.Index(extra, "TENANT_AUDIT:"); i >= 0 {
				line := strings.TrimPrefix(extra[i:], "TENANT_AUDIT:")
				doc = strings.Replace(minimal, "    clients:", line+"    clients:", 1) + extra[:i]
			}
			err := parseValidate(t, doc)
			if err == nil || !strings.Contains(err.Error(), key+":") {
				t.Fatalf("err = %v, want one naming %s\n%s", err, key, doc)
			}
		})
	}
	// refuse needs a durable sink.
	err := parseValidate(t, minimal+"audit:\n  onFailure: refuse\n")
	if err == nil || !strings.Contains(err.Error(), "audit.onFailure: refuse needs a durable sink") {
		t.Fatalf("err = %v", err)
	}
}

// Every decode error names the YAML path and line of the mistake, an
// unknown key suggests the closest known one, and every mistake of the
// document is reported at once.
func TestDecodeErrorsNameTheYAMLPath(t *testing.T) {
	for _, tc := range []struct {
		name, doc string
		want      []string
	}{
		{"unknown key with a suggestion", "tokens:\n  accessTokenLifetme: 5m\n",
			[]string{"tokens.accessTokenLifetme (line 2): unknown key; did you mean accessTokenLifetime?"}},
		{"unknown key far from any", "tokens:\n  zebra: 1\n", []string{"tokens.zebra (line 2): unknown key"}},
		{"bad duration", "tokens:\n  accessTokenLifetime: five minutes\n",
			[]string{`tokens.accessTokenLifetime (line 2): "five minutes" is not a duration`}},
		{"wrong type", "storage:\n  postgres:\n    maxConns: many\n",
			[]string{"storage.postgres.maxConns (line 3): cannot unmarshal !!str `many` into int32"}},
		{"inside a list", "tenants:\n  - id: a\n    clients:\n      - id: c\n        secretDigst: x\n",
			[]string{"tenants[0].clients[0].secretDigst (line 5): unknown key; did you mean secretDigest?"}},
		{"plugin limits, two mistakes", "tenants:\n  - id: a\n    plugins:\n      - name: p\n        limits: {poolSiz: 3, callTimeout: soon}\n",
			[]string{"tenants[0].plugins[0].limits.poolSiz (line 5): unknown key; did you mean poolSize?",
				"tenants[0].plugins[0].limits.callTimeout (line 5): cannot unmarshal !!str `soon` into time.Duration"}},
		{"not a mapping", "- a\n", []string{"the document (line 1): cannot unmarshal !!seq"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.doc))
			if err == nil {
				t.Fatal("accepted")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("%v\nlacks %q", err, w)
				}
			}
		})
	}
	// What the decoder walks keeps the defaults of what the document does
	// not set, and a plugin's free-form config decodes as YAML.
	cfg, err := Parse([]byte("tenants:\n  - id: a\n    plugins:\n      - name: p\n        config: {deny: [x, y], n: 2}\n"))
	if err != nil || cfg.Tokens.AccessTokenLifetime.D() != 5*time.Minute || len(cfg.Tenants) != 1 ||
		cfg.Tenants[0].Plugins[0].Config["n"] != 2 || len(cfg.Tenants[0].Plugins[0].Config["deny"].([]any)) != 2 {
		t.Fatalf("%+v %v", cfg, err)
	}
}
