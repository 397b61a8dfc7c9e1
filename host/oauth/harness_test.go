package oauth_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"log/slog"
	"net/url"
	"sync"
	"testing"
	"time"

	"stellaops.org/authority/host/audit"
	"stellaops.org/authority/host/config"
	"stellaops.org/authority/host/dpop"
	"stellaops.org/authority/host/dpop/dpoptest"
	"stellaops.org/authority/host/keys"
	"stellaops.org/authority/host/mtls"
	"stellaops.org/authority/host/mtls/mtlstest"
	"stellaops.org/authority/host/oauth"
	"stellaops.org/authority/host/store"
)

const issuer = "https://as.test"

// fixture is a Service on memory stores with a settable clock, and what it
// logged and audited: the oauth package on its own, no HTTP.
type fixture struct {
	t     *testing.T
	cfg   *config.Config
	svc   *oauth.Service
	now   time.Time
	logs  bytes.Buffer
	audit recorder
	ca    *mtlstest.CA
	// selfCert is the certificate registered for client "self".
	selfCert *mtlstest.Cert
}

// recorder is an audit sink that keeps what it is given.
type recorder struct {
	mu     sync.Mutex
	events []audit.Event
}

func (r *recorder) Record(_ context.Context, e audit.Event) {
	r.mu.Lock()
	r.events = append(r.events, e)
	r.mu.Unlock()
}

func (r *recorder) types() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]string, len(r.events))
	for i, e := range r.events {
		out[i] = e.Type
	}
	return out
}

func digest(secret string) string {
	s := sha256.Sum256([]byte(secret))
	return "sha256:" + hex.EncodeToString(s[:])
}

// testConfig has one tenant with a client per way in, and a second tenant.
func testConfig() *config.Config {
	cfg := config.Default()
	cfg.Issuer = issuer
	cfg.MTLSIssuer = "https://mtls.as.test"
	cfg.Listen.HTTPS = "127.0.0.1:8443"
	cfg.TLS.CertFile, cfg.TLS.KeyFile = "unused-cert.pem", "unused-key.pem" // the Service reads no file
	cfg.Signing.Keys = []config.SigningKey{{KID: "k1", File: "unused.pem", Active: true}}
	rw := []string{"read", "write"}
	cfg.Tenants = []config.Tenant{{ID: "t1", TrustRoots: []string{"unused-root.pem"}, Clients: []config.Client{
		{ID: "bearer", SecretDigest: digest("bearer-secret"), AuthMethod: "client_secret_basic",
			Grants: []string{"client_credentials"}, Scopes: rw, Audiences: []string{"api", "other-api"}},
		{ID: "post", SecretDigest: digest("post-secret"), AuthMethod: "client_secret_post",
			Grants: []string{"client_credentials"}, Scopes: rw, Audiences: []string{"api"}},
		{ID: "dpop", SecretDigest: digest("dpop-secret"), AuthMethod: "client_secret_basic",
			Grants: []string{"client_credentials"}, Scopes: rw, Audiences: []string{"api"},
			SenderConstraint: &config.SenderPolicy{RequireDPoP: true, RequireDPoPNonce: true}},
		{ID: "dpop-opt", SecretDigest: digest("dpop-opt-secret"), AuthMethod: "client_secret_basic",
			Grants: []string{"client_credentials"}, Scopes: rw, Audiences: []string{"api"}},
		{ID: "cert", AuthMethod: "tls_client_auth", Grants: []string{"client_credentials"}, Scopes: rw,
			Audiences: []string{"api"}, TLS: config.ClientTLS{SANDNS: "svc.t1.test"}},
		{ID: "self", AuthMethod: "self_signed_tls_client_auth", Grants: []string{"client_credentials"}, Scopes: rw,
			Audiences: []string{"api"}, TLS: config.ClientTLS{Certificates: []string{"registered.pem"}}},
		{ID: "no-grant", SecretDigest: digest("no-grant-secret"), AuthMethod: "client_secret_basic",
			Grants: []string{"password"}, Scopes: rw, Audiences: []string{"api"}},
	}}, {ID: "t2", Clients: []config.Client{
		{ID: "other", SecretDigest: digest("other-secret"), AuthMethod: "client_secret_basic",
			Grants: []string{"client_credentials"}, Scopes: rw, Audiences: []string{"api"}},
	}}}
	return cfg
}

// newFixture builds the Service of testConfig with edit applied.
func newFixture(t *testing.T, edit func(*config.Config)) *fixture {
	t.Helper()
	f := &fixture{t: t, cfg: testConfig(), now: time.Now().Truncate(time.Second)}
	if edit != nil {
		edit(f.cfg)
	}
	if err := f.cfg.Validate(); err != nil {
		t.Fatalf("test configuration: %v", err)
	}
	now := func() time.Time { return f.now }
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	k := &keys.Key{KID: "k1", Private: priv}
	ks, err := keys.NewSet([]*keys.Key{k}, k)
	if err != nil {
		t.Fatal(err)
	}
	d := f.cfg.Security.SenderConstraints.DPoP
	v, err := dpop.NewVerifier(dpop.Config{AllowedAlgorithms: d.AllowedAlgorithms, ProofLifetime: d.ProofLifetime.D(),
		AllowedClockSkew: d.AllowedClockSkew.D(), ReplayWindow: d.ReplayWindow.D(), MaxProofBytes: d.MaxProofBytes, Now: now},
		dpop.NewMemoryState(dpop.MemoryOptions{Nonce: dpop.NonceOptions{TTL: d.Nonce.TTL.D()}, Now: now}))
	if err != nil {
		t.Fatal(err)
	}
	f.ca = mtlstest.NewCA(t, "t1 root")
	f.selfCert = mtlstest.SelfSigned(t, mtlstest.Options{CommonName: "self"})
	certs := oauth.Certificates{
		Trust: map[string]*mtls.TrustStore{"t1": mtls.NewTrustStore(f.ca.Cert.Cert), "t2": mtls.NewTrustStore()},
		Rules: map[string]mtls.ClientRule{
			"cert": {Method: mtls.MethodTLSClientAuth, SANDNS: "svc.t1.test"},
			"self": {Method: mtls.MethodSelfSignedTLSClientAuth,
				Registered: []mtls.RegisteredCert{mtls.RegisterCertificate(f.selfCert.Cert, time.Time{})}},
		},
	}
	f.svc, err = oauth.NewService(oauth.Options{Config: f.cfg, Keys: ks, Now: now,
		Store:  store.NewMemory(store.MemoryOptions{Now: now}),
		Logger: slog.New(slog.NewJSONHandler(&f.logs, nil)), Audit: &f.audit,
		DPoP: v, Certificates: certs})
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// basic is a token request from a client_secret_basic client.
func basic(id, secret string, form url.Values) *oauth.Request {
	return &oauth.Request{Form: form, Method: "POST", Path: "/token",
		Creds: oauth.Credentials{Basic: true, BasicID: id, BasicPass: secret, PostID: form.Get("client_id")}}
}

// cc is a client_credentials form with extra parameters.
func cc(kv ...string) url.Values {
	f := url.Values{"grant_type": {"client_credentials"}}
	for i := 0; i+1 < len(kv); i += 2 {
		f.Add(kv[i], kv[i+1])
	}
	return f
}

// withProof adds DPoP header values to r.
func withProof(r *oauth.Request, proofs ...string) *oauth.Request {
	r.DPoP = proofs
	return r
}

// proofFor is a proof of k for the token endpoint at the fixture's time.
func (f *fixture) proofFor(k *dpoptest.Key, nonce string) string {
	return k.Proof(f.t, dpoptest.Proof{HTU: issuer + "/token", IAT: f.now, Nonce: nonce})
}

// wantError asserts e's status and code.
func wantError(t *testing.T, e *oauth.Error, status int, code string) {
	t.Helper()
	if e == nil {
		t.Fatalf("no error, want %d %s", status, code)
	}
	if e.Status != status || e.Code != code {
		t.Fatalf("error %d %s (%s, reason %s), want %d %s", e.Status, e.Code, e.Description, e.Reason, status, code)
	}
}

// claims decodes a JWT payload without verifying it.
func claims(t *testing.T, tok string) map[string]any { return dpoptest.Claims(t, tok) }

// logLines are the fixture's log records with message msg.
func (f *fixture) logLines(msg string) []map[string]any {
	var out []map[string]any
	for _, line := range bytes.Split(f.logs.Bytes(), []byte("\n")) {
		var m map[string]any
		if json.Unmarshal(line, &m) == nil && m["msg"] == msg {
			out = append(out, m)
		}
	}
	return out
}
