package app_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"stellaops.org/authority/host/app"
	"stellaops.org/authority/host/audit"
	"stellaops.org/authority/host/config"
	"stellaops.org/authority/host/dpop"
	"stellaops.org/authority/host/dpop/dpoptest"
	"stellaops.org/authority/host/mtls"
	"stellaops.org/authority/host/mtls/mtlstest"
	"stellaops.org/authority/internal/testenv"
	"stellaops.org/authority/sdk/sdktest"
)

// env is a running Authority on two loopback listeners, like `make run`.
type env struct {
	t      testing.TB
	cfg    *config.Config
	a      *app.Authority
	plain  *httptest.Server
	secure *httptest.Server
	clock  *sdktest.FakeClock
	ca     *mtlstest.CA
	logs   *testenv.SyncBuffer
	doc    string // the YAML the configuration was parsed from
}

// writeConfig writes the environment's configuration to a file, with edit
// applied to its YAML, and makes it the file Reload reads.
func (e *env) writeConfig(edit func(doc string) string) string {
	e.t.Helper()
	head := "issuer: " + e.cfg.Issuer + "\nmtlsIssuer: " + e.cfg.MTLSIssuer + "\nlisten:\n  http: " + e.cfg.Listen.HTTP +
		"\n  https: " + e.cfg.Listen.HTTPS + "\ntls:\n  devPki: " + e.cfg.TLS.DevPKI + "\n"
	p := filepath.Join(e.t.TempDir(), "authority.yaml")
	if err := os.WriteFile(p, []byte(head+edit(e.doc)), 0o600); err != nil {
		e.t.Fatal(err)
	}
	e.a.ConfigPath = p
	return p
}

const testConfig = `
signing:
  keys:
    - kid: k1
      file: KEYDIR/k1.pem
      active: true
      generate: true
tenants:
  - id: demo
    clients:
      - id: demo-bearer
        secretDigest: SECRET1
        authMethod: client_secret_basic
        grants: [client_credentials]
        scopes: [demo.read, demo.write]
        audiences: [demo-api, other-api]
      - id: demo-bearer-2
        secretDigest: SECRET2
        authMethod: client_secret_post
        grants: [client_credentials]
        scopes: [demo.read]
        audiences: [demo-api]
  - id: other
    clients:
      - id: other-client
        secretDigest: SECRET3
        authMethod: client_secret_basic
        grants: [client_credentials]
        scopes: [x]
        audiences: [demo-api]
  - id: demo-dpop
    senderConstraint:
      requireDPoP: true
      requireDPoPNonce: true
    clients:
      - id: demo-dpop
        secretDigest: SECRET4
        authMethod: client_secret_basic
        grants: [client_credentials]
        scopes: [demo.read]
        audiences: [demo-api]
  - id: dpop-no-nonce
    senderConstraint:
      requireDPoP: true
    clients:
      - id: dpop-plain
        secretDigest: SECRET5
        authMethod: client_secret_basic
        grants: [client_credentials]
        scopes: [demo.read]
        audiences: [demo-api]
  - id: demo-mtls
    senderConstraint:
      requireMTLS: true
    trustRoots: [CADIR/ca.pem]
    clients:
      - id: demo-mtls
        authMethod: tls_client_auth
        tls:
          sanUri: urn:stellaops:client:demo-mtls
        grants: [client_credentials]
        scopes: [demo.read]
        audiences: [demo-api]
      - id: both
        authMethod: tls_client_auth
        senderConstraint:
          requireMTLS: true
          requireDPoP: true
          requireDPoPNonce: true
        tls:
          sanDns: both.client.test
        grants: [client_credentials]
        scopes: [demo.read]
        audiences: [demo-api]
      - id: self-signed
        authMethod: self_signed_tls_client_auth
        tls:
          certificates: [CADIR/self.pem]
        grants: [client_credentials]
        scopes: [demo.read]
        audiences: [demo-api]
`

var secrets = map[string]string{
	"demo-bearer":   "demo-bearer-secret",
	"demo-bearer-2": "demo-bearer-2-secret",
	"other-client":  "other-client-secret",
	"demo-dpop":     "demo-dpop-secret",
	"dpop-plain":    "dpop-plain-secret",
}

type envOptions struct {
	mutate   func(*config.Config)
	selfCert *mtlstest.Cert
	noTLS    bool
	postgres string // DSN; memory store when empty
	pgSchema string
	redis    string // address; DPoP nonces and replay cache in memory when empty
	redisPfx string
	// redisCold leaves the DPoP state epoch unset: the first proofs are
	// answered as after a state loss. Otherwise the harness records "no
	// loss known" under the prefix, as a long-running deployment has.
	redisCold bool
	keyDir    string // shared signing-key directory (two nodes); a temp dir when empty
	quiet     bool   // format logs but discard them (benchmarks)
	startTime time.Time
	// auditStore replaces the audit file (fault injection).
	auditStore audit.Store
}

func newEnv(t testing.TB, o envOptions) *env {
	t.Helper()
	dir := t.TempDir()
	ca := mtlstest.NewCA(t, "test client CA")
	if err := os.WriteFile(filepath.Join(dir, "ca.pem"), ca.CertPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	self := o.selfCert
	if self == nil {
		self = mtlstest.SelfSigned(t, mtlstest.Options{CommonName: "self-signed"})
	}
	if err := os.WriteFile(filepath.Join(dir, "self.pem"), self.CertPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	keyDir := o.keyDir
	if keyDir == "" {
		keyDir = dir
	}
	doc := strings.NewReplacer("KEYDIR", keyDir, "CADIR", dir,
		"SECRET1", config.DigestSecret(secrets["demo-bearer"]),
		"SECRET2", config.DigestSecret(secrets["demo-bearer-2"]),
		"SECRET3", config.DigestSecret(secrets["other-client"]),
		"SECRET4", config.DigestSecret(secrets["demo-dpop"]),
		"SECRET5", config.DigestSecret(secrets["dpop-plain"]),
	).Replace(testConfig)
	cfg, err := config.Parse([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	plainLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	secureLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg.Listen.HTTP = plainLn.Addr().String()
	cfg.Listen.HTTPS = secureLn.Addr().String()
	cfg.Issuer = "http://" + cfg.Listen.HTTP
	cfg.MTLSIssuer = "https://" + cfg.Listen.HTTPS
	cfg.TLS.DevPKI = filepath.Join(dir, "pki")
	if o.postgres != "" {
		cfg.Storage.Tokens = "postgres"
		cfg.Storage.Postgres.DSN = o.postgres
		cfg.Storage.Postgres.Schema = o.pgSchema
	}
	if o.redis != "" {
		cfg.Security.SenderConstraints.DPoP.Nonce.Store = "redis"
		cfg.Storage.Redis.Addr = o.redis
		cfg.Storage.Redis.KeyPrefix = o.redisPfx
		if !o.redisCold {
			markRedisStateClean(t, o.redis, o.redisPfx)
		}
	}
	// Every node keeps a durable audit trail: its own file (or, on
	// PostgreSQL, the table), its own chain id, the shared keys.
	cfg.Audit.File = filepath.Join(dir, "audit", "audit.jsonl")
	cfg.Audit.Node = "node-" + filepath.Base(dir)
	cfg.Audit.SigningKeyFile, cfg.Audit.GenerateKey = filepath.Join(keyDir, "audit-checkpoint.pem"), true
	if cfg.Plugins.PseudonymSecretFile == "" {
		cfg.Plugins.PseudonymSecretFile, cfg.Plugins.GenerateSecret = filepath.Join(keyDir, "pseudonym.secret"), true
	}
	if o.mutate != nil {
		o.mutate(cfg)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	start := o.startTime
	if start.IsZero() {
		start = time.Now()
	}
	clk := sdktest.NewFakeClock(start)
	logs := &testenv.SyncBuffer{}
	var sink io.Writer = logs
	if o.quiet {
		sink = io.Discard
	}
	log := app.NewLogger(sink, "info")
	a, err := app.Build(context.Background(), cfg, log, app.Options{Now: clk.Now, AuditStore: o.auditStore})
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, cfg: cfg, a: a, clock: clk, ca: ca, logs: logs, doc: doc}
	e.plain = httptest.NewUnstartedServer(a.Server.Handler())
	e.plain.Listener.Close()
	e.plain.Listener = plainLn
	e.plain.Start()
	e.secure = httptest.NewUnstartedServer(a.Server.MTLSHandler())
	e.secure.Listener.Close()
	e.secure.Listener = secureLn
	e.secure.TLS = mtls.ServerTLSConfig(a.PKI.Server)
	e.secure.StartTLS()
	t.Cleanup(func() {
		e.plain.Close()
		e.secure.Close()
		a.Close()
		if t.Failed() {
			t.Logf("server logs:\n%s", logs.String())
		}
	})
	return e
}

// httpClient returns a client for the plain listener.
func (e *env) httpClient() *http.Client { return &http.Client{Timeout: 10 * time.Second} }

// tlsClient returns a client for the HTTPS listener presenting cert (none
// when nil).
func (e *env) tlsClient(cert *tls.Certificate) *http.Client {
	pool := x509.NewCertPool()
	pool.AddCert(e.a.PKI.CA)
	cfg := &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	if cert != nil {
		cfg.Certificates = []tls.Certificate{*cert}
	}
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: cfg}}
}

type response struct {
	status int
	header http.Header
	body   map[string]any
	raw    string
}

func (r response) str(k string) string { s, _ := r.body[k].(string); return s }

type reqOpts struct {
	basic   [2]string
	form    url.Values
	headers map[string][]string
	client  *http.Client
	base    string
	method  string
	ctype   string
	rawBody string
}

func (e *env) do(path string, o reqOpts) response {
	e.t.Helper()
	if o.client == nil {
		o.client = e.httpClient()
	}
	if o.base == "" {
		o.base = e.plain.URL
	}
	if o.method == "" {
		o.method = http.MethodPost
	}
	body := o.rawBody
	if o.form != nil {
		body = o.form.Encode()
	}
	req, err := http.NewRequest(o.method, o.base+path, strings.NewReader(body))
	if err != nil {
		e.t.Fatal(err)
	}
	if o.method == http.MethodPost {
		ct := o.ctype
		if ct == "" {
			ct = "application/x-www-form-urlencoded"
		}
		req.Header.Set("Content-Type", ct)
	}
	if o.basic[0] != "" {
		req.SetBasicAuth(o.basic[0], o.basic[1])
	}
	for k, vs := range o.headers {
		for _, v := range vs {
			req.Header.Add(k, v)
		}
	}
	resp, err := o.client.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	out := response{status: resp.StatusCode, header: resp.Header, raw: string(raw)}
	_ = json.Unmarshal(raw, &out.body)
	return out
}

func basic(id string) [2]string { return [2]string{id, secrets[id]} }

// authed returns request options that authenticate secret client id with
// its registered method (Basic, or client_id and client_secret in the
// form) and send form.
func (e *env) authed(id string, form url.Values) reqOpts {
	e.t.Helper()
	for _, t := range e.cfg.Tenants {
		for _, cl := range t.Clients {
			if cl.ID == id && cl.AuthMethod == "client_secret_post" {
				f := url.Values{"client_id": {id}, "client_secret": {secrets[id]}}
				for k, v := range form {
					f[k] = v
				}
				return reqOpts{form: f}
			}
		}
	}
	return reqOpts{basic: basic(id), form: form}
}

// token gets a client_credentials token for a secret client.
func (e *env) token(id string, extra url.Values) response {
	e.t.Helper()
	f := url.Values{"grant_type": {"client_credentials"}}
	for k, v := range extra {
		f[k] = v
	}
	return e.do("/token", e.authed(id, f))
}

func (e *env) mustToken(id string) string {
	e.t.Helper()
	r := e.token(id, nil)
	if r.status != 200 {
		e.t.Fatalf("token for %s: %d %s", id, r.status, r.raw)
	}
	return r.str("access_token")
}

func (e *env) introspect(caller, tok string) response {
	e.t.Helper()
	return e.do("/introspect", e.authed(caller, url.Values{"token": {tok}}))
}

func (e *env) metrics() string {
	e.t.Helper()
	return e.do("/metrics", reqOpts{method: http.MethodGet}).raw
}

// dpopKey is a client's DPoP key with a proof builder (dpoptest's, with
// the short field names these tests use).
type dpopKey struct{ *dpoptest.Key }

func newDPoPKey(t testing.TB) *dpopKey { return &dpopKey{dpoptest.NewKey(t)} }

func (k *dpopKey) thumbprint() string { return k.Thumbprint() }

type proofOpts struct {
	htm, htu, nonce, jti, ath, typ string
	iat                            time.Time
	jwk                            map[string]string
}

func (k *dpopKey) proof(t testing.TB, o proofOpts) string {
	t.Helper()
	return k.Proof(t, dpoptest.Proof{HTM: o.htm, HTU: o.htu, Nonce: o.nonce, JTI: o.jti, ATH: o.ath, Typ: o.typ, IAT: o.iat, JWK: o.jwk})
}

func ath(tok string) string { return dpoptest.ATH(tok) }

// claims decodes a JWT payload without verifying it.
func claims(t *testing.T, tok string) map[string]any { return dpoptest.Claims(t, tok) }

func header(t *testing.T, tok string) map[string]any {
	t.Helper()
	raw, err := base64.RawURLEncoding.DecodeString(strings.Split(tok, ".")[0])
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	_ = json.Unmarshal(raw, &m)
	return m
}

// markRedisStateClean writes the DPoP state epoch "0" (no loss known) under
// prefix, unless an epoch is already there.
func markRedisStateClean(t testing.TB, addr, prefix string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if !strings.Contains(addr, ",") {
		rc := redis.NewClient(&redis.Options{Addr: addr})
		defer rc.Close()
		if err := rc.SetNX(ctx, prefix+"dpop:e", "0", 0).Err(); err != nil {
			t.Fatal(err)
		}
		return
	}
	// A cluster: every shard has its own epoch.
	rc := redis.NewClusterClient(&redis.ClusterOptions{Addrs: strings.Split(addr, ",")})
	defer rc.Close()
	for _, p := range dpop.ShardPrefixes(prefix + "dpop:") {
		if err := rc.SetNX(ctx, p+"e", "0", 0).Err(); err != nil {
			t.Fatal(err)
		}
	}
}
