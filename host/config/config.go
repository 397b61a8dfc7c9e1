// Package config is the typed form of authority.yaml: one struct, defaults in
// one place (Default), environment overrides for secrets and DSNs
// (ApplyEnv), and validation whose every error names the offending key
// (Validate). Load refuses unknown keys.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"stellaops.org/authority/host/pluginspec"
)

// Config is the whole authority.yaml document.
type Config struct {
	// Issuer is the public URL of the plain listener as written in the
	// file. Code that emits or compares an issuer uses IssuerID, never this
	// field: the two differ by trailing slashes.
	Issuer string `yaml:"issuer"`
	// MTLSIssuer is the public URL of the HTTPS listener (the RFC 8705
	// mtls_endpoint_aliases base) as written; see MTLSAlias. Empty when the
	// HTTPS listener is off.
	MTLSIssuer string `yaml:"mtlsIssuer"`

	Listen    Listen    `yaml:"listen"`
	TLS       TLS       `yaml:"tls"`
	Signing   Signing   `yaml:"signing"`
	Tokens    Tokens    `yaml:"tokens"`
	Storage   Storage   `yaml:"storage"`
	Security  Security  `yaml:"security"`
	Logging   Logging   `yaml:"logging"`
	Telemetry Telemetry `yaml:"telemetry"`
	Limits    Limits    `yaml:"limits"`
	Plugins   Plugins   `yaml:"plugins"`
	Audit     Audit     `yaml:"audit"`
	Admin     Admin     `yaml:"admin"`
	Tenants   []Tenant  `yaml:"tenants"`
}

// IssuerID is the one issuer identifier of this server (RFC 8414 §2):
// issuer without trailing slashes. It is the metadata `issuer`, the `iss`
// of every access token, introspection answer and fresh-auth
// confirmation, and the base of every endpoint URL on the plain listener,
// so all of them are identical character for character (RFC 8414 §3.3).
func (c *Config) IssuerID() string { return strings.TrimRight(c.Issuer, "/") }

// MTLSAlias is the base URL of the endpoints on the HTTPS listener
// (mtlsIssuer without trailing slashes): the base of the RFC 8705 §5
// mtls_endpoint_aliases and of the DPoP htu there. It is empty when no
// HTTPS listener is configured (listen.https empty), whatever mtlsIssuer
// says, since nothing would answer at that URL.
func (c *Config) MTLSAlias() string {
	if c.Listen.HTTPS == "" {
		return ""
	}
	return strings.TrimRight(c.MTLSIssuer, "/")
}

// Audit configures the durable, hash-chained audit trail (docs/audit.md).
type Audit struct {
	// Sink is where records go: "auto" (the default: postgres when
	// storage.tokens is postgres, else file when file is set, else log),
	// "postgres" (table authority_audit of storage.postgres), "file"
	// (JSON lines at file) or "log" (the structured log only: nothing
	// durable, no chain; development).
	Sink string `yaml:"sink"`
	// File is the JSON-lines file of the file sink; one node per file.
	File string `yaml:"file"`
	// Node names this node's chain: unique among the nodes sharing a sink,
	// stable across restarts. Default: the host name.
	Node string `yaml:"node"`
	// SigningKeyFile holds the Ed25519 private key (PKCS#8 PEM) that signs
	// chain checkpoints; GenerateKey creates one when missing
	// (development). VerifyKeys are further public keys (PKIX PEM) that
	// audit verify trusts: other nodes', retired ones.
	SigningKeyFile string   `yaml:"signingKeyFile"`
	GenerateKey    bool     `yaml:"generateKey"`
	VerifyKeys     []string `yaml:"verifyKeys"`
	// OnFailure is what /token does while the sink fails or its queue is
	// full: "continue" (issue, count the lost records; /readyz notes it)
	// or "refuse" (503 with Retry-After until the issuance record can be
	// made durable; /readyz fails). Regulated tenants want refuse.
	OnFailure string `yaml:"onFailure"`
	// Retention is how long records are kept (0: forever); PurgeInterval
	// how often older ones are deleted (whole chain segments, from a
	// checkpoint on, so what is left still verifies).
	Retention     Duration `yaml:"retention"`
	PurgeInterval Duration `yaml:"purgeInterval"`
	// QueueSize bounds the records waiting to be written; BatchMax is the
	// most written in one transaction or fsync.
	QueueSize int `yaml:"queueSize"`
	BatchMax  int `yaml:"batchMax"`
	// BatchWait is how long a batch may gather after its first record:
	// the most a record waits before its write starts, and under load one
	// write (a commit, an fsync) per wait instead of one per record.
	BatchWait Duration `yaml:"batchWait"`
	// CheckpointInterval is how often a signed checkpoint is written.
	CheckpointInterval Duration `yaml:"checkpointInterval"`
	// WriteTimeout bounds one batch write.
	WriteTimeout Duration `yaml:"writeTimeout"`
}

// TenantAudit is a tenant's choice of how its records hold the client
// address: "hash" (the default: a keyed pseudonym) or "truncate" (the
// network: IPv4Prefix bits of an IPv4 address, IPv6Prefix of an IPv6 one).
type TenantAudit struct {
	Network    string `yaml:"network"`
	IPv4Prefix int    `yaml:"ipv4Prefix"`
	IPv6Prefix int    `yaml:"ipv6Prefix"`
}

// Admin protects the administrative endpoint POST /admin/reload.
type Admin struct {
	// TokenDigest is "sha256:" + hex(SHA-256(token)) of the bearer token that
	// authorizes /admin/reload; empty disables the endpoint.
	// AUTHORITY_ADMIN_TOKEN (the token itself) overrides it.
	TokenDigest string `yaml:"tokenDigest"`
	// PprofAddr, when set, serves Go's profiler (net/http/pprof) on its
	// own listener at this loopback address (127.0.0.1:6060, [::1]:6060),
	// never on the public ones; empty (the default) serves nothing.
	PprofAddr string `yaml:"pprofAddr"`
}

// Plugins configures the WebAssembly plugin runtime shared by every
// tenant's plugin chain (tenants[].plugins).
type Plugins struct {
	// CacheDir holds compiled modules, so a restart does not recompile.
	// It must not be writable by group or others; every entry is sealed
	// with a keyed digest (HMAC-SHA-256) and one that does not verify is
	// discarded, never run.
	CacheDir string `yaml:"cacheDir"`
	// CacheKeyFile holds the key of those digests, outside CacheDir
	// (mode 0600, neither group nor others may read it); created with a
	// random key when missing. Empty: CacheDir + ".key".
	CacheKeyFile string `yaml:"cacheKeyFile"`
	// EventQueueSize bounds each tenant's telemetry queue; overflow is
	// dropped and counted, never blocking a request.
	EventQueueSize int `yaml:"eventQueueSize"`
	// MaxInstances is the node's instance budget across every tenant and
	// plugin: instances are created on first use, the least recently used
	// idle one is closed to make room, and a call that finds every
	// instance busy takes its plugin's failure mode.
	MaxInstances int `yaml:"maxInstances"`
	// BreakerThreshold consecutive failures open a plugin's circuit for
	// BreakerCooldown.
	BreakerThreshold int      `yaml:"breakerThreshold"`
	BreakerCooldown  Duration `yaml:"breakerCooldown"`
	// PseudonymSecretFile holds the host secret from which each tenant's
	// pseudonymization key is derived (HMAC-SHA256(secret, tenant)); with
	// GenerateSecret a random one is created when missing (development).
	// AUTHORITY_PSEUDONYM_SECRET (hex) overrides the file.
	PseudonymSecretFile string `yaml:"pseudonymSecretFile"`
	GenerateSecret      bool   `yaml:"generateSecret"`
	// State is where the counters and key-value host functions keep their
	// data: "memory" (per node) or "redis" (storage.redis, shared by every
	// node: the SEC3 rate limits and lockouts need this behind a load
	// balancer).
	State string `yaml:"state"`
	// GuildKeys are PEM files of Ed25519 public keys trusted to sign
	// modules: a module with FILE.sig beside it must verify under one of
	// them (before compilation), and a plugin with requireSignature must
	// have such a signature.
	GuildKeys []string `yaml:"guildKeys"`
	// Audit is the budget of the audit_emit host function per (tenant,
	// plugin); records beyond it are refused and counted.
	Audit PluginAudit `yaml:"audit"`
}

// PluginAudit bounds what a plugin may write to the audit log: at most
// RecordsPerCall records and BytesPerCall encoded bytes in one hook call,
// and Rate records per second with bursts of Burst per (tenant, plugin).
type PluginAudit struct {
	RecordsPerCall int     `yaml:"recordsPerCall"`
	BytesPerCall   int     `yaml:"bytesPerCall"`
	Rate           float64 `yaml:"rate"`
	Burst          int     `yaml:"burst"`
}

// Listen names the addresses the server binds.
type Listen struct {
	// HTTP is the plain listener (issuer URL). Required.
	HTTP string `yaml:"http"`
	// HTTPS is the listener that requests client certificates. Empty disables it.
	HTTPS string `yaml:"https"`
	// ShutdownTimeout bounds graceful shutdown.
	ShutdownTimeout Duration `yaml:"shutdownTimeout"`
}

// TLS configures the HTTPS listener's server certificate.
type TLS struct {
	CertFile string `yaml:"certFile"`
	KeyFile  string `yaml:"keyFile"`
	// DevPKI, when set, names a directory where a development CA, a server
	// certificate and the demo mTLS client certificate are generated on first
	// run (and reused afterwards). Never use it in production.
	DevPKI string `yaml:"devPki"`
}

// Signing configures the access-token signing keys.
type Signing struct {
	// Keys are published at /jwks; exactly one is active (signs new tokens).
	Keys []SigningKey `yaml:"keys"`
}

// SigningKey is one ES256 key in PEM (PKCS#8 or SEC 1) form.
type SigningKey struct {
	// KID is the JWS `kid`; defaults to the key's RFC 7638 thumbprint.
	KID string `yaml:"kid"`
	// File holds the private key PEM.
	File string `yaml:"file"`
	// Active marks the key that signs new tokens.
	Active bool `yaml:"active"`
	// Generate creates File with a fresh P-256 key when it does not exist
	// (development only).
	Generate bool `yaml:"generate"`
}

// Tokens holds token lifetimes.
type Tokens struct {
	AccessTokenLifetime Duration `yaml:"accessTokenLifetime"`
	// RefreshToken bounds the refresh tokens of the password grant.
	RefreshToken      RefreshTokens `yaml:"refreshToken"`
	FreshAuthLifetime Duration      `yaml:"freshAuthLifetime"`
}

// RefreshTokens are the lifetimes of a refresh-token family: every
// rotation's token lives IdleLifetime (a family unused that long ends), and
// no token of the family outlives AbsoluteLifetime after the user
// authenticated.
type RefreshTokens struct {
	IdleLifetime     Duration `yaml:"idleLifetime"`
	AbsoluteLifetime Duration `yaml:"absoluteLifetime"`
}

// Passwords configures the password grant's KDF.
type Passwords struct {
	// Argon2id is the cost of new hashes (authority-host hash-password) and
	// of the dummy hash unknown users are checked against.
	Argon2id Argon2id `yaml:"argon2id"`
	// MaxConcurrent KDF evaluations run at once; 0: one per four cores
	// (at least one). Each holds argon2id.memoryKiB and one core.
	MaxConcurrent int `yaml:"maxConcurrent"`
	// MaxWaiting password checks may queue for a KDF slot; more are
	// answered 503 at once.
	MaxWaiting int `yaml:"maxWaiting"`
	// WaitTimeout bounds a check's wait for a slot and for CPU budget
	// (then 503).
	WaitTimeout Duration `yaml:"waitTimeout"`
	// MaxCPUShare is the share of the cores (GOMAXPROCS) password hashing
	// may use on average, whatever the load: a password flood leaves the
	// rest to every other request.
	MaxCPUShare float64 `yaml:"maxCpuShare"`
}

// Argon2id are the RFC 9106 cost parameters.
type Argon2id struct {
	MemoryKiB   uint32 `yaml:"memoryKiB"`
	Iterations  uint32 `yaml:"iterations"`
	Parallelism uint8  `yaml:"parallelism"`
}

// User is a resource owner of the password grant, from configuration.
type User struct {
	// Username is the login name and the tokens' sub.
	Username string `yaml:"username"`
	// PasswordHash is an Argon2id PHC string (authority-host hash-password).
	PasswordHash string `yaml:"passwordHash"`
	// Scopes, when set, limits the user's tokens to these scopes.
	Scopes   []string `yaml:"scopes"`
	Disabled bool     `yaml:"disabled"`
}

// Storage selects the token store and the shared Redis.
type Storage struct {
	// Tokens is "memory" or "postgres".
	Tokens string `yaml:"tokens"`
	// Users is where password-grant users live: "config" (tenants[].users)
	// or "postgres" (the authority_users table; needs tokens: postgres).
	Users string `yaml:"users"`
	// PurgeInterval is how often expired tokens are deleted from the store;
	// Retention is how long after expiry they are kept (a late
	// introspection still answers from the store, audits can join on them).
	PurgeInterval Duration `yaml:"purgeInterval"`
	Retention     Duration `yaml:"retention"`
	Postgres      Postgres `yaml:"postgres"`
	Redis         Redis    `yaml:"redis"`
}

// Postgres configures the PostgreSQL token store.
type Postgres struct {
	// DSN; overridden by AUTHORITY_POSTGRES_DSN.
	DSN            string `yaml:"dsn"`
	Schema         string `yaml:"schema"`
	MaxConns       int32  `yaml:"maxConns"`
	MigrateOnStart bool   `yaml:"migrateOnStart"`
	// Group commit: concurrent token writes are inserted together, up to
	// BatchMax per transaction, by Batchers concurrent writers; a writer
	// that finds fewer than BatchMax waiting waits up to BatchWait for more.
	// Larger batches cost the database less CPU per token, a longer wait
	// adds latency. Zero values take the store's defaults.
	BatchMax  int      `yaml:"batchMax"`
	BatchWait Duration `yaml:"batchWait"`
	Batchers  int      `yaml:"batchers"`
	// RequestTimeout bounds every token-store call of a request, queue
	// wait included, and is each connection's statement_timeout and
	// lock_timeout: past it the request gets 503 with Retry-After.
	RequestTimeout Duration `yaml:"requestTimeout"`
}

// Redis is a shared Redis connection (nonces, replay cache, counters).
type Redis struct {
	// Addr is host:port of a server or of a Redis Cluster node, or a
	// comma-separated list of a cluster's nodes (the host tags keys per
	// shard on a cluster: no braces in KeyPrefix); overridden by
	// AUTHORITY_REDIS_ADDR.
	Addr string `yaml:"addr"`
	// Password; overridden by AUTHORITY_REDIS_PASSWORD.
	Password  string `yaml:"password"`
	DB        int    `yaml:"db"`
	KeyPrefix string `yaml:"keyPrefix"`
}

// Security holds the seed's security.senderConstraints section.
type Security struct {
	SenderConstraints SenderConstraints `yaml:"senderConstraints"`
	Passwords         Passwords         `yaml:"passwords"`
	// TrustedProxies are CIDRs whose forwarded headers are believed: the
	// client certificate (RFC 9440 Client-Cert, X-SSL-Client-Cert) and the
	// client address (X-Forwarded-For, used for logs, plugins and rate
	// limits). Nobody else's are.
	TrustedProxies []string `yaml:"trustedProxies"`
	// TrustProxyHeadersOnHTTPS makes the HTTPS listener believe those
	// headers from TrustedProxies too. Off (the default), a request that
	// arrived over TLS presents only what its own handshake proved, and
	// its client address is the TCP peer's; turn it on only behind a
	// proxy that terminates the client's TLS and re-encrypts to this
	// listener.
	TrustProxyHeadersOnHTTPS bool `yaml:"trustProxyHeadersOnHTTPS"`
}

// SenderConstraints is security.senderConstraints.
type SenderConstraints struct {
	DPoP DPoP `yaml:"dpop"`
	MTLS MTLS `yaml:"mtls"`
}

// DPoP is security.senderConstraints.dpop (RFC 9449).
type DPoP struct {
	Enabled           bool     `yaml:"enabled"`
	AllowedAlgorithms []string `yaml:"allowedAlgorithms"`
	// ProofLifetime is how old a proof's iat may be.
	ProofLifetime Duration `yaml:"proofLifetime"`
	// AllowedClockSkew is how far in the future a proof's iat may be.
	AllowedClockSkew Duration `yaml:"allowedClockSkew"`
	// ReplayWindow is how long a jti is remembered; >= lifetime + skew.
	ReplayWindow  Duration  `yaml:"replayWindow"`
	MaxProofBytes int       `yaml:"maxProofBytes"`
	Nonce         DPoPNonce `yaml:"nonce"`
	// AllowTemporaryBypass issues unbound tokens to clients that must use
	// DPoP (sealed recap drills only). Default off.
	AllowTemporaryBypass bool `yaml:"allowTemporaryBypass"`
}

// DPoPNonce is security.senderConstraints.dpop.nonce.
type DPoPNonce struct {
	Enabled   bool     `yaml:"enabled"`
	TTL       Duration `yaml:"ttl"`
	SingleUse bool     `yaml:"singleUse"`
	// Store is "memory" or "redis" (storage.redis).
	Store             string   `yaml:"store"`
	RequiredAudiences []string `yaml:"requiredAudiences"`
}

// MTLS is security.senderConstraints.mtls (RFC 8705).
type MTLS struct {
	Enabled bool `yaml:"enabled"`
	// EnforceForAudiences: token requests for these audiences without a
	// client certificate are refused.
	EnforceForAudiences []string `yaml:"enforceForAudiences"`
	// AllowedSANTypes limits which SAN kinds tls_client_auth may match:
	// dns, uri, ip, email.
	AllowedSANTypes []string `yaml:"allowedSanTypes"`
	// RotationGrace is how long a client's previous certificate stays
	// accepted after rotation.
	RotationGrace Duration `yaml:"rotationGrace"`
}

// Logging configures the slog JSON logger.
type Logging struct {
	Level string `yaml:"level"`
}

// Telemetry configures traces and the optional OTLP export. Metrics are
// always served at /metrics.
type Telemetry struct {
	ServiceName string `yaml:"serviceName"`
	// SampleRatio of new traces recorded, 0..1 (a caller's sampled
	// traceparent is always honoured).
	SampleRatio float64 `yaml:"sampleRatio"`
	OTLP        OTLP    `yaml:"otlp"`
}

// OTLP is an OTLP/HTTP collector.
type OTLP struct {
	// Endpoint host:port; empty disables export. Overridden by
	// AUTHORITY_OTLP_ENDPOINT.
	Endpoint string `yaml:"endpoint"`
	Insecure bool   `yaml:"insecure"`
	// MetricInterval is how often metrics are pushed.
	MetricInterval Duration `yaml:"metricInterval"`
}

// Limits are request limits.
type Limits struct {
	MaxBodyBytes int64 `yaml:"maxBodyBytes"`
	// MaxInFlight caps the OAuth requests (POST /token, /introspect,
	// /revoke, /fresh-auth) one node works on at once; beyond it a request
	// is answered 503 with Retry-After at once. 0: no cap.
	MaxInFlight int `yaml:"maxInFlight"`
}

// HTTPWriteTimeout is both listeners' write timeout: a request must be
// answered within it or the connection is closed without an answer, so
// every deadline inside a request stays well below it.
const HTTPWriteTimeout = 30 * time.Second

// Tenant groups clients under one policy.
type Tenant struct {
	ID string `yaml:"id"`
	// SenderConstraint is the tenant's default policy for its clients.
	SenderConstraint SenderPolicy `yaml:"senderConstraint"`
	// TrustRoots are PEM files of CAs that tls_client_auth chains to.
	TrustRoots []string `yaml:"trustRoots"`
	Clients    []Client `yaml:"clients"`
	// Plugins is the tenant's ordered plugin chain: policy decisions combine
	// deny-overrides, and no plugin can loosen a native check.
	Plugins []pluginspec.Spec `yaml:"plugins"`
	// Audit is how the tenant's audit records hold personal data.
	Audit TenantAudit `yaml:"audit"`
	// Users are the tenant's password-grant users (storage.users config).
	Users []User `yaml:"users"`
}

// SenderPolicy says which sender constraints a client must use.
type SenderPolicy struct {
	RequireDPoP      bool `yaml:"requireDPoP"`
	RequireDPoPNonce bool `yaml:"requireDPoPNonce"`
	RequireMTLS      bool `yaml:"requireMTLS"`
}

// Client is one registered OAuth client.
type Client struct {
	ID string `yaml:"id"`
	// SecretDigest is "sha256:" + hex(SHA-256(secret)). Clear secrets are
	// never read from the file; AUTHORITY_CLIENT_SECRET_<ID> (ID upper-cased,
	// non-alphanumerics as _) supplies one from the environment instead.
	SecretDigest string `yaml:"secretDigest"`
	// AuthMethod: client_secret_basic, client_secret_post, tls_client_auth,
	// self_signed_tls_client_auth, or none (a public client: client_id
	// only; password and refresh_token grants, its refresh tokens bound to
	// its DPoP key or certificate). A client authenticates only with this
	// method.
	AuthMethod string   `yaml:"authMethod"`
	Grants     []string `yaml:"grants"`
	Scopes     []string `yaml:"scopes"`
	Audiences  []string `yaml:"audiences"`
	// SenderConstraint overrides the tenant's policy when set.
	SenderConstraint *SenderPolicy `yaml:"senderConstraint"`
	// TLS identifies the client's certificate for the tls_client_auth methods.
	TLS ClientTLS `yaml:"tls"`
}

// ClientTLS identifies a client certificate (RFC 8705 §2.1.2 metadata).
type ClientTLS struct {
	SubjectDN string `yaml:"subjectDn"`
	SANDNS    string `yaml:"sanDns"`
	SANURI    string `yaml:"sanUri"`
	SANIP     string `yaml:"sanIp"`
	SANEmail  string `yaml:"sanEmail"`
	// Certificates are PEM files registered for self_signed_tls_client_auth.
	Certificates []string `yaml:"certificates"`
	// JWKSFile is the client's JWK Set (RFC 7517) whose keys' x5c leaf
	// certificates are registered for self_signed_tls_client_auth
	// (RFC 8705 §2.2: jwks / jwks_uri client metadata).
	JWKSFile string `yaml:"jwksFile"`
	// PreviousCertificates stay accepted for mtls.rotationGrace after
	// RotatedAt.
	PreviousCertificates []string  `yaml:"previousCertificates"`
	RotatedAt            time.Time `yaml:"rotatedAt"`
}

// Duration is a time.Duration written as "60s", "5m".
type Duration time.Duration

// D returns the value as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// UnmarshalYAML accepts Go duration strings.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	var s string
	if err := n.Decode(&s); err != nil {
		return fmt.Errorf("line %d: duration must be a string like \"60s\"", n.Line)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("line %d: %q is not a duration (use e.g. \"60s\", \"5m\")", n.Line, s)
	}
	*d = Duration(v)
	return nil
}

// MarshalYAML writes the duration back as a string.
func (d Duration) MarshalYAML() (any, error) { return time.Duration(d).String(), nil }

// Load reads path, overlays it on Default, applies environment overrides,
// resolves relative paths against the working directory and validates.
// Unknown keys are errors.
func Load(path string) (*Config, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	cfg, err := Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	if err := cfg.ApplyEnv(os.LookupEnv); err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	return cfg, nil
}

// Parse decodes YAML over Default without applying the environment or
// validating.
func Parse(raw []byte) (*Config, error) {
	cfg := Default()
	var doc yaml.Node
	if err := yaml.NewDecoder(bytes.NewReader(raw)).Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return cfg, nil
		}
		return nil, err
	}
	if err := decodeNode(&doc, cfg); err != nil {
		return nil, err
	}
	return cfg, nil
}

// Default is the one place defaults live.
func Default() *Config {
	return &Config{
		Issuer: "http://127.0.0.1:8080",
		Listen: Listen{
			HTTP:            "127.0.0.1:8080",
			ShutdownTimeout: Duration(10 * time.Second),
		},
		Tokens: Tokens{
			AccessTokenLifetime: Duration(5 * time.Minute),
			FreshAuthLifetime:   Duration(5 * time.Minute),
			RefreshToken:        RefreshTokens{IdleLifetime: Duration(7 * 24 * time.Hour), AbsoluteLifetime: Duration(30 * 24 * time.Hour)},
		},
		Storage: Storage{
			Tokens:        "memory",
			Users:         "config",
			PurgeInterval: Duration(10 * time.Minute),
			Retention:     Duration(time.Hour),
			Postgres:      Postgres{MaxConns: 16, MigrateOnStart: true, RequestTimeout: Duration(3 * time.Second)},
			Redis:         Redis{KeyPrefix: "authority:"},
		},
		Security: Security{Passwords: Passwords{Argon2id: Argon2id{MemoryKiB: 19456, Iterations: 2, Parallelism: 1},
			MaxWaiting: 32, WaitTimeout: Duration(time.Second), MaxCPUShare: 0.15}, SenderConstraints: SenderConstraints{
			DPoP: DPoP{
				Enabled:           true,
				AllowedAlgorithms: []string{"ES256", "ES384", "PS256", "RS256", "EdDSA", "Ed25519"},
				ProofLifetime:     Duration(60 * time.Second),
				AllowedClockSkew:  Duration(30 * time.Second),
				ReplayWindow:      Duration(90 * time.Second),
				MaxProofBytes:     8192,
				Nonce: DPoPNonce{
					Enabled: true,
					TTL:     Duration(300 * time.Second),
					Store:   "memory",
				},
			},
			MTLS: MTLS{
				Enabled:         true,
				AllowedSANTypes: []string{"dns", "uri", "ip", "email"},
				RotationGrace:   Duration(24 * time.Hour),
			},
		}},
		Logging: Logging{Level: "info"},
		Plugins: Plugins{CacheDir: "var/plugin-cache", State: "memory", EventQueueSize: 1024, MaxInstances: 512, BreakerThreshold: 5,
			BreakerCooldown: Duration(30 * time.Second),
			Audit:           PluginAudit{RecordsPerCall: 8, BytesPerCall: 16 << 10, Rate: 10, Burst: 50}},
		Audit: Audit{Sink: "auto", OnFailure: "continue", Retention: Duration(365 * 24 * time.Hour),
			PurgeInterval: Duration(time.Hour), QueueSize: 4096, BatchMax: 512, BatchWait: Duration(5 * time.Millisecond),
			CheckpointInterval: Duration(time.Minute), WriteTimeout: Duration(5 * time.Second)},
		Telemetry: Telemetry{ServiceName: "authority", SampleRatio: 1,
			OTLP: OTLP{MetricInterval: Duration(30 * time.Second)}},
		Limits: Limits{MaxBodyBytes: 64 << 10},
	}
}

// AuditSink is the sink audit.sink selects: postgres, file or log.
func (c *Config) AuditSink() string {
	if c.Audit.Sink != "auto" && c.Audit.Sink != "" {
		return c.Audit.Sink
	}
	switch {
	case c.Storage.Tokens == "postgres":
		return "postgres"
	case c.Audit.File != "":
		return "file"
	}
	return "log"
}

// EnvLookup is os.LookupEnv's signature, injectable for tests.
type EnvLookup func(string) (string, bool)

// ApplyEnv overlays secrets and DSNs from the environment:
// AUTHORITY_POSTGRES_DSN, AUTHORITY_REDIS_ADDR, AUTHORITY_REDIS_PASSWORD and
// AUTHORITY_CLIENT_SECRET_<CLIENT_ID> (hashed on load; the clear value is
// not kept).
func (c *Config) ApplyEnv(lookup EnvLookup) error {
	if v, ok := lookup("AUTHORITY_POSTGRES_DSN"); ok && v != "" {
		c.Storage.Postgres.DSN = v
	}
	if v, ok := lookup("AUTHORITY_REDIS_ADDR"); ok && v != "" {
		c.Storage.Redis.Addr = v
	}
	if v, ok := lookup("AUTHORITY_ADMIN_TOKEN"); ok && v != "" {
		c.Admin.TokenDigest = DigestSecret(v)
	}
	if v, ok := lookup("AUTHORITY_OTLP_ENDPOINT"); ok && v != "" {
		c.Telemetry.OTLP.Endpoint = v
	}
	if v, ok := lookup("AUTHORITY_REDIS_PASSWORD"); ok {
		c.Storage.Redis.Password = v
	}
	for ti := range c.Tenants {
		for ci := range c.Tenants[ti].Clients {
			cl := &c.Tenants[ti].Clients[ci]
			if v, ok := lookup(ClientSecretEnv(cl.ID)); ok && v != "" {
				cl.SecretDigest = DigestSecret(v)
			}
		}
	}
	return nil
}

// ClientSecretEnv is the environment variable that overrides a client's
// secret: AUTHORITY_CLIENT_SECRET_ followed by the client id upper-cased with
// every other character than A-Z and 0-9 replaced by '_'.
func ClientSecretEnv(clientID string) string {
	var b strings.Builder
	b.WriteString("AUTHORITY_CLIENT_SECRET_")
	for _, r := range strings.ToUpper(clientID) {
		if (r >= 'A' && r <= 'Z') || (r >= '0' && r <= '9') {
			b.WriteRune(r)
		} else {
			b.WriteByte('_')
		}
	}
	return b.String()
}

// ResolvePath makes a configured path absolute against the working
// directory; empty stays empty.
func ResolvePath(p string) string {
	if p == "" || filepath.IsAbs(p) {
		return p
	}
	abs, err := filepath.Abs(p)
	if err != nil {
		return p
	}
	return abs
}
