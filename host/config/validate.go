package config

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"stellaops.org/authority/host/pluginspec"
	"stellaops.org/authority/host/users"
)

// KeyError is a validation failure that names the offending key, e.g.
// `security.senderConstraints.dpop.replayWindow: must be >= ...`.
type KeyError struct {
	Key string
	Msg string
}

func (e *KeyError) Error() string { return e.Key + ": " + e.Msg }

// Known value sets.
var (
	knownAlgorithms = []string{"ES256", "ES384", "ES512", "PS256", "PS384", "PS512", "RS256", "RS384", "RS512", "EdDSA", "Ed25519"}
	knownGrants     = []string{"client_credentials", "password", "refresh_token"}
	knownAuth       = []string{"client_secret_basic", "client_secret_post", "tls_client_auth", "self_signed_tls_client_auth", "none"}
	knownSANTypes   = []string{"dns", "uri", "ip", "email"}
	knownLevels     = []string{"debug", "info", "warn", "error"}
)

// DigestSecret returns the stored form of a client secret:
// "sha256:" + hex(SHA-256(secret)). Client secrets are high-entropy, so a
// fast digest compared in constant time is the right tool; a slow password
// KDF would dominate the token path.
func DigestSecret(secret string) string {
	sum := sha256.Sum256([]byte(secret))
	return "sha256:" + hex.EncodeToString(sum[:])
}

// Validate checks every key and returns all problems at once, each naming
// its key. A config that fails validation must not start a server.
func (c *Config) Validate() error {
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, &KeyError{Key: key, Msg: fmt.Sprintf(format, args...)})
	}

	checkURL := func(key, v string, required bool) {
		if v == "" {
			if required {
				bad(key, "required")
			}
			return
		}
		u, err := url.Parse(v)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
			bad(key, "must be an absolute http(s) URL without query or fragment, got %q", v)
		}
	}
	checkURL("issuer", c.Issuer, true)
	checkURL("mtlsIssuer", c.MTLSIssuer, false)
	if c.MTLSIssuer != "" && !strings.HasPrefix(c.MTLSIssuer, "https://") {
		bad("mtlsIssuer", "must be an https URL")
	}

	checkAddr := func(key, v string, required bool) {
		if v == "" {
			if required {
				bad(key, "required")
			}
			return
		}
		if _, _, err := net.SplitHostPort(v); err != nil {
			bad(key, "must be host:port, got %q", v)
		}
	}
	checkAddr("listen.http", c.Listen.HTTP, true)
	checkAddr("listen.https", c.Listen.HTTPS, false)
	if c.Listen.ShutdownTimeout <= 0 {
		bad("listen.shutdownTimeout", "must be > 0")
	}
	if c.Listen.HTTPS != "" {
		if c.MTLSIssuer == "" {
			bad("mtlsIssuer", "required when listen.https is set")
		}
		if c.TLS.DevPKI == "" && (c.TLS.CertFile == "" || c.TLS.KeyFile == "") {
			bad("tls.certFile", "tls.certFile and tls.keyFile (or tls.devPki) are required when listen.https is set")
		}
	}

	if len(c.Signing.Keys) == 0 {
		bad("signing.keys", "at least one key is required")
	}
	active := 0
	kids := map[string]int{}
	for i, k := range c.Signing.Keys {
		key := fmt.Sprintf("signing.keys[%d]", i)
		if k.File == "" {
			bad(key+".file", "required")
		}
		if k.Active {
			active++
		}
		if k.KID != "" {
			if j, dup := kids[k.KID]; dup {
				bad(key+".kid", "duplicate of signing.keys[%d].kid %q", j, k.KID)
			}
			kids[k.KID] = i
		}
	}
	if len(c.Signing.Keys) > 0 && active != 1 {
		bad("signing.keys", "exactly one key must be active, found %d", active)
	}

	if c.Tokens.AccessTokenLifetime <= 0 {
		bad("tokens.accessTokenLifetime", "must be > 0")
	}
	if c.Tokens.FreshAuthLifetime <= 0 {
		bad("tokens.freshAuthLifetime", "must be > 0")
	}
	if rt := c.Tokens.RefreshToken; rt.IdleLifetime <= 0 {
		bad("tokens.refreshToken.idleLifetime", "must be > 0")
	} else if rt.AbsoluteLifetime < rt.IdleLifetime {
		bad("tokens.refreshToken.absoluteLifetime", "must be >= idleLifetime (%s), got %s", rt.IdleLifetime.D(), rt.AbsoluteLifetime.D())
	}
	validatePasswords(bad, c.Security.Passwords)
	switch c.Storage.Users {
	case "config":
	case "postgres":
		if c.Storage.Tokens != "postgres" {
			bad("storage.users", "postgres needs storage.tokens postgres (the users table lives beside the tokens)")
		}
	default:
		bad("storage.users", "must be config or postgres, got %q", c.Storage.Users)
	}

	if c.Storage.PurgeInterval.D() < time.Second {
		bad("storage.purgeInterval", "must be >= 1s")
	}
	if c.Storage.Retention < 0 {
		bad("storage.retention", "must be >= 0")
	}
	switch c.Storage.Tokens {
	case "memory":
	case "postgres":
		if c.Storage.Postgres.DSN == "" {
			bad("storage.postgres.dsn", "required when storage.tokens is postgres (or set AUTHORITY_POSTGRES_DSN)")
		}
		if c.Storage.Postgres.MaxConns <= 0 {
			bad("storage.postgres.maxConns", "must be > 0")
		}
		if c.Storage.Postgres.BatchMax < 0 || c.Storage.Postgres.BatchMax > 1000 {
			bad("storage.postgres.batchMax", "must be between 0 (default) and 1000")
		}
		if c.Storage.Postgres.BatchWait < 0 || c.Storage.Postgres.BatchWait.D() > 100*time.Millisecond {
			bad("storage.postgres.batchWait", "must be between 0 and 100ms")
		}
		if b := c.Storage.Postgres.Batchers; b < 0 || (b > 0 && int32(b) > max(1, c.Storage.Postgres.MaxConns/2)) {
			bad("storage.postgres.batchers", "must be between 0 (default) and maxConns/2")
		}
		if d := c.Storage.Postgres.RequestTimeout.D(); d < 100*time.Millisecond || d > HTTPWriteTimeout/2 {
			bad("storage.postgres.requestTimeout", "must be between 100ms and %s (half the HTTP write timeout, so every request is answered), got %s", HTTPWriteTimeout/2, d)
		}
	default:
		bad("storage.tokens", "must be memory or postgres, got %q", c.Storage.Tokens)
	}

	for i, p := range c.Security.TrustedProxies {
		if _, err := parsePrefix(p); err != nil {
			bad(fmt.Sprintf("security.trustedProxies[%d]", i), "not an IP or CIDR: %q", p)
		}
	}

	d := c.Security.SenderConstraints.DPoP
	const dk = "security.senderConstraints.dpop"
	if len(d.AllowedAlgorithms) == 0 && d.Enabled {
		bad(dk+".allowedAlgorithms", "must list at least one algorithm")
	}
	for i, a := range d.AllowedAlgorithms {
		if !slices.Contains(knownAlgorithms, a) {
			bad(fmt.Sprintf("%s.allowedAlgorithms[%d]", dk, i), "%q is not an asymmetric JWS algorithm this server supports (one of %s)", a, strings.Join(knownAlgorithms, ", "))
		}
	}
	if d.ProofLifetime <= 0 {
		bad(dk+".proofLifetime", "must be > 0")
	}
	if d.AllowedClockSkew < 0 {
		bad(dk+".allowedClockSkew", "must be >= 0")
	}
	if d.ReplayWindow < d.ProofLifetime+d.AllowedClockSkew {
		bad(dk+".replayWindow", "must be >= proofLifetime + allowedClockSkew (%s), got %s",
			(d.ProofLifetime + d.AllowedClockSkew).D(), d.ReplayWindow.D())
	}
	if d.MaxProofBytes < 512 || d.MaxProofBytes > 64<<10 {
		bad(dk+".maxProofBytes", "must be between 512 and 65536, got %d", d.MaxProofBytes)
	}
	if d.Nonce.TTL <= 0 {
		bad(dk+".nonce.ttl", "must be > 0")
	}
	switch d.Nonce.Store {
	case "memory":
	case "redis":
		if c.Storage.Redis.Addr == "" {
			bad("storage.redis.addr", "required when %s.nonce.store is redis (or set AUTHORITY_REDIS_ADDR)", dk)
		}
	default:
		bad(dk+".nonce.store", "must be memory or redis, got %q", d.Nonce.Store)
	}

	m := c.Security.SenderConstraints.MTLS
	const mk = "security.senderConstraints.mtls"
	for i, s := range m.AllowedSANTypes {
		if !slices.Contains(knownSANTypes, s) {
			bad(fmt.Sprintf("%s.allowedSanTypes[%d]", mk, i), "must be one of dns, uri, ip, email, got %q", s)
		}
	}
	if m.RotationGrace < 0 {
		bad(mk+".rotationGrace", "must be >= 0")
	}
	if len(m.EnforceForAudiences) > 0 && c.Listen.HTTPS == "" {
		bad(mk+".enforceForAudiences", "needs listen.https (no listener could receive client certificates)")
	}

	if !slices.Contains(knownLevels, c.Logging.Level) {
		bad("logging.level", "must be one of debug, info, warn, error, got %q", c.Logging.Level)
	}
	if c.Telemetry.SampleRatio < 0 || c.Telemetry.SampleRatio > 1 {
		bad("telemetry.sampleRatio", "must be between 0 and 1, got %v", c.Telemetry.SampleRatio)
	}
	if c.Telemetry.ServiceName == "" {
		bad("telemetry.serviceName", "required")
	}
	if e := c.Telemetry.OTLP.Endpoint; e != "" {
		if _, _, err := net.SplitHostPort(e); err != nil {
			bad("telemetry.otlp.endpoint", "must be host:port, got %q", e)
		}
	}
	if c.Telemetry.OTLP.MetricInterval.D() < time.Second {
		bad("telemetry.otlp.metricInterval", "must be >= 1s")
	}
	if c.Admin.TokenDigest != "" && !validDigest(c.Admin.TokenDigest) {
		bad("admin.tokenDigest", "must be \"sha256:\" followed by 64 hex digits (or set AUTHORITY_ADMIN_TOKEN)")
	}
	if a := c.Admin.PprofAddr; a != "" {
		host, _, err := net.SplitHostPort(a)
		ip := net.ParseIP(host)
		switch {
		case err != nil:
			bad("admin.pprofAddr", "must be host:port, got %q", a)
		case ip == nil || !ip.IsLoopback():
			bad("admin.pprofAddr", "must be a loopback address (127.0.0.1:6060 or [::1]:6060): the profiler shows memory and goroutines, got %q", a)
		case a == c.Listen.HTTP || a == c.Listen.HTTPS:
			bad("admin.pprofAddr", "must differ from listen.http and listen.https")
		}
	}
	switch c.Plugins.State {
	case "memory":
	case "redis":
		if c.Storage.Redis.Addr == "" {
			bad("storage.redis.addr", "required when plugins.state is redis (or set AUTHORITY_REDIS_ADDR)")
		}
	default:
		bad("plugins.state", "must be memory or redis, got %q", c.Plugins.State)
	}
	if c.Plugins.CacheDir != "" && c.hasPlugins() {
		dir := ResolvePath(c.Plugins.CacheDir)
		if err := pluginspec.CheckCacheDir(dir); err != nil {
			bad("plugins.cacheDir", "%v", err)
		}
		keyFile := ResolvePath(c.Plugins.CacheKeyFile)
		if keyFile == "" {
			keyFile = pluginspec.DefaultCacheKeyFile(dir)
		}
		if rel, err := filepath.Rel(dir, keyFile); err == nil && rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
			bad("plugins.cacheKeyFile", "%s is inside plugins.cacheDir; the key must live outside the cache directory", keyFile)
		} else if err := pluginspec.CheckCacheKeyFile(keyFile); err != nil {
			bad("plugins.cacheKeyFile", "%v", err)
		}
	}
	if c.Plugins.EventQueueSize < 1 {
		bad("plugins.eventQueueSize", "must be >= 1")
	}
	if c.Plugins.MaxInstances < 1 || c.Plugins.MaxInstances > 1_000_000 {
		bad("plugins.maxInstances", "must be from 1 to 1000000")
	}
	if c.Plugins.BreakerThreshold < 1 {
		bad("plugins.breakerThreshold", "must be >= 1")
	}
	if c.Plugins.BreakerCooldown.D() < time.Second {
		bad("plugins.breakerCooldown", "must be >= 1s")
	}
	if a := c.Plugins.Audit; a.RecordsPerCall < 1 || a.RecordsPerCall > 32 {
		bad("plugins.audit.recordsPerCall", "must be 1-32 (the ABI ceiling), got %d", a.RecordsPerCall)
	}
	if a := c.Plugins.Audit; a.BytesPerCall < 1024 || a.BytesPerCall > 2<<20 {
		bad("plugins.audit.bytesPerCall", "must be 1024-2097152 bytes, got %d", a.BytesPerCall)
	}
	if a := c.Plugins.Audit; !(a.Rate > 0) || a.Rate > 10000 {
		bad("plugins.audit.rate", "must be > 0 and <= 10000 records per second, got %v", a.Rate)
	}
	if a := c.Plugins.Audit; a.Burst < 1 || a.Burst > 100000 {
		bad("plugins.audit.burst", "must be 1-100000, got %d", a.Burst)
	}
	if c.Limits.MaxBodyBytes < 1024 {
		bad("limits.maxBodyBytes", "must be >= 1024")
	}
	if c.Limits.MaxInFlight < 0 {
		bad("limits.maxInFlight", "must be >= 0 (0: no cap), got %d", c.Limits.MaxInFlight)
	}

	c.validateAudit(bad)

	if len(c.Tenants) == 0 {
		bad("tenants", "at least one tenant is required")
	}
	tenantIDs := map[string]int{}
	clientIDs := map[string]string{}
	secretEnvs := map[string]struct{ id, key string }{} // AUTHORITY_CLIENT_SECRET_<ID> -> first client
	for ti, t := range c.Tenants {
		tk := fmt.Sprintf("tenants[%d]", ti)
		if !validID(t.ID) {
			bad(tk+".id", "must be 1-64 characters of a-z, A-Z, 0-9, '-', '_', '.', got %q", t.ID)
		}
		if j, dup := tenantIDs[t.ID]; dup {
			bad(tk+".id", "duplicate of tenants[%d].id %q", j, t.ID)
		}
		tenantIDs[t.ID] = ti
		validatePolicy(bad, c, tk+".senderConstraint", t.SenderConstraint)
		validateTenantAudit(bad, tk+".audit", t.Audit)
		if len(t.Plugins) > 0 {
			if err := pluginspec.ValidateTenant(tk+".plugins", t.Plugins); err != nil {
				errs = append(errs, err)
			}
			for pi, ps := range t.Plugins {
				if ps.RequireSignature && len(c.Plugins.GuildKeys) == 0 {
					bad(fmt.Sprintf("%s.plugins[%d].requireSignature", tk, pi), "needs plugins.guildKeys (no key could verify the signature)")
				}
			}
			if c.Plugins.PseudonymSecretFile == "" && usesGrant(t.Plugins, pluginspec.GrantPseudonymize) {
				bad("plugins.pseudonymSecretFile", "required: a plugin of tenant %q is granted %s", t.ID, pluginspec.GrantPseudonymize)
			}
		}
		for ci, cl := range t.Clients {
			ck := fmt.Sprintf("%s.clients[%d]", tk, ci)
			if !validID(cl.ID) {
				bad(ck+".id", "must be 1-64 characters of a-z, A-Z, 0-9, '-', '_', '.', got %q", cl.ID)
			}
			if prev, dup := clientIDs[cl.ID]; dup {
				bad(ck+".id", "duplicate client id %q (already at %s)", cl.ID, prev)
			}
			clientIDs[cl.ID] = ck
			if !slices.Contains(knownAuth, cl.AuthMethod) {
				bad(ck+".authMethod", "must be one of %s, got %q", strings.Join(knownAuth, ", "), cl.AuthMethod)
			}
			switch cl.AuthMethod {
			case "client_secret_basic", "client_secret_post":
				if !validDigest(cl.SecretDigest) {
					bad(ck+".secretDigest", "must be \"sha256:\" followed by 64 hex digits (or set %s)", ClientSecretEnv(cl.ID))
				}
			case "none":
				if cl.SecretDigest != "" {
					bad(ck+".secretDigest", "not allowed for a public client (authMethod none): it has no secret (remove the key, and unset %s if it is set)", ClientSecretEnv(cl.ID))
				}
				if slices.Contains(cl.Grants, "client_credentials") {
					bad(ck+".grants", "client_credentials is for confidential clients only (RFC 6749 §4.4); a public client (authMethod none) may use password and refresh_token")
				}
			case "tls_client_auth", "self_signed_tls_client_auth":
				if cl.SecretDigest != "" {
					bad(ck+".secretDigest", "not allowed for %s: a certificate client authenticates with its certificate only (remove the key, and unset %s if it is set)", cl.AuthMethod, ClientSecretEnv(cl.ID))
				}
			}
			if prev, dup := secretEnvs[ClientSecretEnv(cl.ID)]; dup {
				bad(ck+".id", "client ids %q (%s) and %q map to the same environment variable %s: rename one", prev.id, prev.key, cl.ID, ClientSecretEnv(cl.ID))
			} else {
				secretEnvs[ClientSecretEnv(cl.ID)] = struct{ id, key string }{cl.ID, ck}
			}
			switch cl.AuthMethod {
			case "tls_client_auth":
				if c.Listen.HTTPS == "" {
					bad(ck+".authMethod", "tls_client_auth needs listen.https")
				}
				n := 0
				for _, v := range []string{cl.TLS.SubjectDN, cl.TLS.SANDNS, cl.TLS.SANURI, cl.TLS.SANIP, cl.TLS.SANEmail} {
					if v != "" {
						n++
					}
				}
				if n != 1 {
					bad(ck+".tls", "tls_client_auth needs exactly one of subjectDn, sanDns, sanUri, sanIp, sanEmail (RFC 8705 §2.1.2), found %d", n)
				}
				if cl.TLS.SANIP != "" {
					if _, err := netip.ParseAddr(cl.TLS.SANIP); err != nil {
						bad(ck+".tls.sanIp", "not an IP address: %q", cl.TLS.SANIP)
					}
				}
				if len(t.TrustRoots) == 0 && c.TLS.DevPKI == "" {
					bad(tk+".trustRoots", "required: client %q uses tls_client_auth", cl.ID)
				}
			case "self_signed_tls_client_auth":
				if c.Listen.HTTPS == "" {
					bad(ck+".authMethod", "self_signed_tls_client_auth needs listen.https")
				}
				if len(cl.TLS.PreviousCertificates) > 0 && cl.TLS.RotatedAt.IsZero() {
					bad(ck+".tls.rotatedAt", "required with tls.previousCertificates (the grace period counts from it)")
				}
				if len(cl.TLS.Certificates) == 0 && cl.TLS.JWKSFile == "" {
					bad(ck+".tls.certificates", "self_signed_tls_client_auth needs at least one registered certificate (tls.certificates or tls.jwksFile)")
				}
			}
			if len(cl.Grants) == 0 {
				bad(ck+".grants", "at least one grant is required")
			}
			for gi, g := range cl.Grants {
				if !slices.Contains(knownGrants, g) {
					bad(fmt.Sprintf("%s.grants[%d]", ck, gi), "must be one of %s, got %q", strings.Join(knownGrants, ", "), g)
				}
			}
			for si, s := range cl.Scopes {
				if !validScopeToken(s) {
					bad(fmt.Sprintf("%s.scopes[%d]", ck, si), "not a valid scope token (RFC 6749 §3.3): %q", s)
				}
			}
			for ai, a := range cl.Audiences {
				if a == "" || strings.ContainsAny(a, " \t\r\n") {
					bad(fmt.Sprintf("%s.audiences[%d]", ck, ai), "must be non-empty without whitespace")
				}
			}
			if slices.Contains(cl.Grants, "refresh_token") && !slices.Contains(cl.Grants, "password") {
				bad(ck+".grants", "refresh_token needs password: the password grant is the one that issues refresh tokens")
			}
			if cl.SenderConstraint != nil {
				validatePolicy(bad, c, ck+".senderConstraint", *cl.SenderConstraint)
			}
		}
		validateUsers(bad, c, tk, t.Users)
	}
	return errors.Join(errs...)
}

func validatePolicy(bad func(string, string, ...any), c *Config, key string, p SenderPolicy) {
	if (p.RequireDPoP || p.RequireDPoPNonce) && !c.Security.SenderConstraints.DPoP.Enabled {
		bad(key+".requireDPoP", "security.senderConstraints.dpop.enabled is false")
	}
	if p.RequireDPoPNonce && !p.RequireDPoP {
		bad(key+".requireDPoPNonce", "needs requireDPoP")
	}
	if p.RequireDPoPNonce && !c.Security.SenderConstraints.DPoP.Nonce.Enabled {
		bad(key+".requireDPoPNonce", "security.senderConstraints.dpop.nonce.enabled is false")
	}
	if p.RequireMTLS {
		if !c.Security.SenderConstraints.MTLS.Enabled {
			bad(key+".requireMTLS", "security.senderConstraints.mtls.enabled is false")
		}
		if c.Listen.HTTPS == "" {
			bad(key+".requireMTLS", "needs listen.https")
		}
	}
}

// hasPlugins reports whether any tenant has a plugin chain (the plugins.*
// runtime settings matter only then).
func (c *Config) hasPlugins() bool {
	for _, t := range c.Tenants {
		if len(t.Plugins) > 0 {
			return true
		}
	}
	return false
}

func usesGrant(specs []pluginspec.Spec, grant string) bool {
	for _, s := range specs {
		if slices.Contains(s.Grants, grant) {
			return true
		}
	}
	return false
}

func validID(s string) bool {
	if len(s) == 0 || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}

func validDigest(s string) bool {
	h, ok := strings.CutPrefix(s, "sha256:")
	if !ok || len(h) != 64 {
		return false
	}
	_, err := hex.DecodeString(h)
	return err == nil
}

// validScopeToken implements RFC 6749 §3.3 scope-token = 1*NQCHAR.
func validScopeToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c == 0x21 || c >= 0x23 && c <= 0x5B || c >= 0x5D && c <= 0x7E) {
			return false
		}
	}
	return true
}

// ParsePrefix accepts "10.0.0.1" or "10.0.0.0/8".
func parsePrefix(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		return netip.ParsePrefix(s)
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// TrustedProxyPrefixes returns security.trustedProxies parsed (Validate
// guarantees they parse).
func (c *Config) TrustedProxyPrefixes() []netip.Prefix {
	out := make([]netip.Prefix, 0, len(c.Security.TrustedProxies))
	for _, p := range c.Security.TrustedProxies {
		if pp, err := parsePrefix(p); err == nil {
			out = append(out, pp.Masked())
		}
	}
	return out
}

// Policy returns the effective sender-constraint policy of a client.
func (t *Tenant) Policy(cl *Client) SenderPolicy {
	if cl.SenderConstraint != nil {
		return *cl.SenderConstraint
	}
	return t.SenderConstraint
}

func (c *Config) validateAudit(bad func(key, format string, args ...any)) {
	a := c.Audit
	switch a.Sink {
	case "", "auto", "log", "file", "postgres":
	default:
		bad("audit.sink", "must be auto, postgres, file or log, got %q", a.Sink)
		return
	}
	sink := c.AuditSink()
	switch {
	case sink == "file" && a.File == "":
		bad("audit.file", "required when audit.sink is file")
	case sink == "postgres" && c.Storage.Tokens != "postgres" && c.Storage.Postgres.DSN == "":
		bad("storage.postgres.dsn", "required when audit.sink is postgres (or set AUTHORITY_POSTGRES_DSN)")
	}
	if a.OnFailure != OnFailureContinue && a.OnFailure != OnFailureRefuse {
		bad("audit.onFailure", "must be continue or refuse, got %q", a.OnFailure)
	}
	if sink == "log" {
		if a.OnFailure == OnFailureRefuse {
			bad("audit.onFailure", "refuse needs a durable sink (audit.sink postgres or file), but the sink is log")
		}
		return
	}
	if a.SigningKeyFile == "" {
		bad("audit.signingKeyFile", "required: the %s sink's chain checkpoints are signed with it (audit.generateKey creates one in development)", sink)
	}
	if c.Plugins.PseudonymSecretFile == "" {
		bad("plugins.pseudonymSecretFile", "required: the %s audit sink pseudonymizes subject, IP address and user agent with the tenants' keys derived from it", sink)
	}
	if a.Node != "" && !validID(a.Node) {
		bad("audit.node", "must be 1-64 characters of a-z, A-Z, 0-9, '-', '_', '.', got %q", a.Node)
	}
	if a.Retention.D() < 0 {
		bad("audit.retention", "must be >= 0 (0: keep forever)")
	}
	if a.Retention.D() > 0 && a.Retention.D() < 2*a.CheckpointInterval.D() {
		bad("audit.retention", "must be at least twice audit.checkpointInterval (%s)", a.CheckpointInterval.D())
	}
	if a.PurgeInterval.D() < time.Second {
		bad("audit.purgeInterval", "must be >= 1s")
	}
	if a.QueueSize < 1 || a.QueueSize > 1<<20 {
		bad("audit.queueSize", "must be 1..1048576, got %d", a.QueueSize)
	}
	if a.BatchMax < 1 || a.BatchMax > 10000 {
		bad("audit.batchMax", "must be 1..10000, got %d", a.BatchMax)
	}
	if a.BatchWait.D() < 0 || a.BatchWait.D() > time.Second {
		bad("audit.batchWait", "must be 0..1s, got %s", a.BatchWait.D())
	}
	if a.CheckpointInterval.D() < time.Second {
		bad("audit.checkpointInterval", "must be >= 1s")
	}
	if a.WriteTimeout.D() <= 0 || a.WriteTimeout.D() >= HTTPWriteTimeout {
		bad("audit.writeTimeout", "must be > 0 and < %s", HTTPWriteTimeout)
	}
}

// Audit failure policies (audit.onFailure).
const (
	OnFailureContinue = "continue"
	OnFailureRefuse   = "refuse"
)

func validateTenantAudit(bad func(key, format string, args ...any), key string, a TenantAudit) {
	switch a.Network {
	case "", "hash", "truncate":
	default:
		bad(key+".network", "must be hash or truncate, got %q", a.Network)
	}
	// At most /24 and /64: a longer prefix comes close to the address.
	if a.IPv4Prefix != 0 && (a.IPv4Prefix < 8 || a.IPv4Prefix > 24) {
		bad(key+".ipv4Prefix", "must be 8..24 (0: 24), got %d", a.IPv4Prefix)
	}
	if a.IPv6Prefix != 0 && (a.IPv6Prefix < 16 || a.IPv6Prefix > 64) {
		bad(key+".ipv6Prefix", "must be 16..64 (0: 48), got %d", a.IPv6Prefix)
	}
}

func validatePasswords(bad func(string, string, ...any), p Passwords) {
	params := users.Params{MemoryKiB: p.Argon2id.MemoryKiB, Iterations: p.Argon2id.Iterations, Parallelism: p.Argon2id.Parallelism}
	if err := params.CheckPolicy(); err != nil {
		field, msg, _ := strings.Cut(err.Error(), ": ")
		bad("security.passwords.argon2id."+field, "%s", msg)
	}
	if p.MaxConcurrent < 0 || p.MaxConcurrent > 256 {
		bad("security.passwords.maxConcurrent", "must be 0..256 (0: one per four cores), got %d", p.MaxConcurrent)
	}
	if p.MaxCPUShare < 0.01 || p.MaxCPUShare > 1 {
		bad("security.passwords.maxCpuShare", "must be 0.01..1 (the share of the cores password hashing may use), got %g", p.MaxCPUShare)
	}
	if p.MaxWaiting < 1 {
		bad("security.passwords.maxWaiting", "must be >= 1, got %d", p.MaxWaiting)
	}
	if p.WaitTimeout.D() <= 0 || p.WaitTimeout.D() > 10*time.Second {
		bad("security.passwords.waitTimeout", "must be > 0 and <= 10s (a request waits this long for a KDF slot), got %s", p.WaitTimeout.D())
	}
}

func validateUsers(bad func(string, string, ...any), c *Config, tk string, us []User) {
	if len(us) > 0 && c.Storage.Users != "config" {
		bad(tk+".users", "not allowed with storage.users %s: the users live in the authority_users table (one source, no precedence to guess)", c.Storage.Users)
		return
	}
	seen := map[string]int{}
	for ui, u := range us {
		uk := fmt.Sprintf("%s.users[%d]", tk, ui)
		if u.Username == "" || len(u.Username) > 256 {
			bad(uk+".username", "must be 1..256 bytes")
		} else if j, dup := seen[u.Username]; dup {
			bad(uk+".username", "duplicate of users[%d] %q", j, u.Username)
		}
		seen[u.Username] = ui
		if _, err := users.ParsePHC(u.PasswordHash); err != nil {
			bad(uk+".passwordHash", "must be an Argon2id PHC string from `authority-host hash-password` (%v)", err)
		}
		for si, s := range u.Scopes {
			if !validScopeToken(s) {
				bad(fmt.Sprintf("%s.scopes[%d]", uk, si), "not a valid scope token (RFC 6749 §3.3): %q", s)
			}
		}
	}
}
