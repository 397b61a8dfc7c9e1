package oauth

import (
	"context"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"slices"
	"strings"
	"time"

	"stellaops.org/authority/abi"
	"stellaops.org/authority/host/audit"
	"stellaops.org/authority/host/config"
	"stellaops.org/authority/host/dpop"
	"stellaops.org/authority/host/mtls"
	"stellaops.org/authority/host/telemetry"
)

// Peer is the client-certificate context of a request (RFC 8705).
type Peer = mtls.Presented

// SenderOptions are the dependencies of the native sender-constraint
// checks. DPoP is nil when security.senderConstraints.dpop.enabled is false.
type SenderOptions struct {
	DPoP    *dpop.Verifier
	Metrics *telemetry.Metrics
	Tracing *telemetry.Tracing
	// Audit receives every security event: the log and the plugins.
	Audit audit.Sink
	// Trail is the durable audit trail (nil with audit.sink log); every
	// event goes to it too. With RefuseWithoutTrail (audit.onFailure
	// refuse), no token is handed out before its issuance record is
	// durable in it.
	Trail              Trail
	RefuseWithoutTrail bool
	// TrailTimeout bounds the wait for an issuance record under
	// RefuseWithoutTrail.
	TrailTimeout time.Duration
	// DevCA, when set, is trusted for tls_client_auth by tenants that
	// configure no trustRoots (tls.devPki only).
	DevCA *x509.Certificate
}

// Trail is the durable audit trail (audit.Writer).
type Trail interface {
	audit.Sink
	// Admit says whether a record would be taken now.
	Admit() error
	// RecordDurable returns once e is durable, or why it is not.
	RecordDurable(ctx context.Context, e audit.Event) error
}

// senderConstraints holds the native DPoP and mTLS enforcement. Plugins
// never reach into it: they see its results and may only deny more.
type senderConstraints struct {
	cfg      *config.Config
	dpop     *dpop.Verifier
	metrics  *telemetry.Metrics
	tracing  *telemetry.Tracing
	audit    audit.Sink // everything: others and the trail
	others   audit.Sink // the log and the plugins
	trail    Trail
	refuse   bool
	trailTTL time.Duration
	log      *slog.Logger
	now      func() time.Time
	trust    map[string]*mtls.TrustStore
	rules    map[string]mtls.ClientRule
	sanTypes mtls.SANTypes
	algs     string
}

func newSenderConstraints(cfg *config.Config, o SenderOptions, now func() time.Time, log *slog.Logger) (*senderConstraints, error) {
	sc := &senderConstraints{
		cfg: cfg, dpop: o.DPoP, metrics: o.Metrics, tracing: o.Tracing, audit: o.Audit, log: log, now: now,
		trust: map[string]*mtls.TrustStore{}, rules: map[string]mtls.ClientRule{},
		algs: strings.Join(cfg.Security.SenderConstraints.DPoP.AllowedAlgorithms, " "),
	}
	if sc.audit == nil {
		sc.audit = audit.LogSink{Logger: log}
	}
	sc.others = sc.audit
	if o.Trail != nil {
		sc.trail, sc.refuse, sc.trailTTL = o.Trail, o.RefuseWithoutTrail, o.TrailTimeout
		sc.audit = audit.Multi{sc.others, o.Trail}
		if sc.trailTTL <= 0 {
			sc.trailTTL = 5 * time.Second
		}
	}
	if cfg.Security.SenderConstraints.DPoP.Enabled && sc.dpop == nil {
		return nil, errors.New("security.senderConstraints.dpop.enabled: no DPoP verifier was configured")
	}
	for _, t := range cfg.Security.SenderConstraints.MTLS.AllowedSANTypes {
		switch t {
		case "dns":
			sc.sanTypes.DNS = true
		case "uri":
			sc.sanTypes.URI = true
		case "ip":
			sc.sanTypes.IP = true
		case "email":
			sc.sanTypes.Email = true
		}
	}
	grace := cfg.Security.SenderConstraints.MTLS.RotationGrace.D()
	for ti := range cfg.Tenants {
		t := &cfg.Tenants[ti]
		ts := &mtls.TrustStore{Roots: x509.NewCertPool()}
		for ri, f := range t.TrustRoots {
			certs, err := readCerts(config.ResolvePath(f))
			if err != nil {
				return nil, fmt.Errorf("tenants[%d].trustRoots[%d]: %w", ti, ri, err)
			}
			for _, c := range certs {
				ts.Roots.AddCert(c)
			}
		}
		if len(t.TrustRoots) == 0 && o.DevCA != nil {
			ts.Roots.AddCert(o.DevCA)
		}
		sc.trust[t.ID] = ts
		for ci := range t.Clients {
			cl := &t.Clients[ci]
			key := fmt.Sprintf("tenants[%d].clients[%d].tls", ti, ci)
			switch cl.AuthMethod {
			case "tls_client_auth":
				sc.rules[cl.ID] = mtls.ClientRule{Method: mtls.MethodTLSClientAuth,
					SubjectDN: cl.TLS.SubjectDN, SANDNS: cl.TLS.SANDNS, SANURI: cl.TLS.SANURI, SANIP: cl.TLS.SANIP, SANEmail: cl.TLS.SANEmail}
			case "self_signed_tls_client_auth":
				rule := mtls.ClientRule{Method: mtls.MethodSelfSignedTLSClientAuth}
				for i, f := range cl.TLS.Certificates {
					certs, err := readCerts(config.ResolvePath(f))
					if err != nil {
						return nil, fmt.Errorf("%s.certificates[%d]: %w", key, i, err)
					}
					for _, c := range certs {
						rule.Registered = append(rule.Registered, mtls.RegisterCertificate(c, time.Time{}))
					}
				}
				if cl.TLS.JWKSFile != "" {
					certs, err := readJWKSCerts(config.ResolvePath(cl.TLS.JWKSFile))
					if err != nil {
						return nil, fmt.Errorf("%s.jwksFile: %w", key, err)
					}
					for _, c := range certs {
						rule.Registered = append(rule.Registered, mtls.RegisterCertificate(c, time.Time{}))
					}
				}
				for i, f := range cl.TLS.PreviousCertificates {
					certs, err := readCerts(config.ResolvePath(f))
					if err != nil {
						return nil, fmt.Errorf("%s.previousCertificates[%d]: %w", key, i, err)
					}
					if cl.TLS.RotatedAt.IsZero() {
						return nil, fmt.Errorf("%s.rotatedAt: required with previousCertificates", key)
					}
					for _, c := range certs {
						rule.Registered = append(rule.Registered, mtls.RegisterCertificate(c, cl.TLS.RotatedAt.Add(grace)))
					}
				}
				sc.rules[cl.ID] = rule
			default:
				continue
			}
			if err := sc.rules[cl.ID].Validate(); err != nil {
				return nil, fmt.Errorf("%s: %w", key, err)
			}
		}
	}
	return sc, nil
}

func readCerts(path string) ([]*x509.Certificate, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var out []*x509.Certificate
	for {
		var blk *pem.Block
		blk, raw = pem.Decode(raw)
		if blk == nil {
			break
		}
		if blk.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	if len(out) == 0 {
		return nil, errors.New("no CERTIFICATE PEM block")
	}
	return out, nil
}

// readJWKSCerts reads the leaf certificate (first x5c entry, base64 DER,
// RFC 7517 §4.7) of every key in a JWK Set file.
func readJWKSCerts(path string) ([]*x509.Certificate, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var set struct {
		Keys []struct {
			X5c []string `json:"x5c"`
		} `json:"keys"`
	}
	if err := json.Unmarshal(raw, &set); err != nil {
		return nil, fmt.Errorf("not a JWK Set: %w", err)
	}
	var out []*x509.Certificate
	for i, k := range set.Keys {
		if len(k.X5c) == 0 {
			continue
		}
		der, err := base64.StdEncoding.DecodeString(k.X5c[0])
		if err != nil {
			return nil, fmt.Errorf("keys[%d].x5c[0]: %w", i, err)
		}
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return nil, fmt.Errorf("keys[%d].x5c[0]: %w", i, err)
		}
		out = append(out, c)
	}
	if len(out) == 0 {
		return nil, errors.New("no key carries an x5c certificate")
	}
	return out, nil
}

// certAuth implements tls_client_auth and self_signed_tls_client_auth
// (RFC 8705 §2). Every failure is invalid_client; the reason is logged.
func (sc *senderConstraints) certAuth(ctx context.Context, r *Request, cl *Client) *Error {
	if !sc.cfg.Security.SenderConstraints.MTLS.Enabled {
		return errCertificateClient("mtls-disabled")
	}
	rule, ok := sc.rules[cl.ID]
	if !ok {
		return errCertificateClient("no-certificate-rule")
	}
	err := mtls.Authenticate(r.Peer, rule, sc.trust[cl.Tenant], sc.sanTypes, sc.now())
	if err != nil {
		reason := "certificate"
		var ae *mtls.AuthError
		if errors.As(err, &ae) {
			reason = ae.Reason
		}
		sc.log.InfoContext(ctx, "authority.mtls.client_auth.failed", "tenant", cl.Tenant, "client", cl.ID, "reason", reason,
			"detail", err.Error(), "correlation_id", r.CorrelationID)
		return errCertificateClient("mtls-" + reason)
	}
	return nil
}

// binding is the sender constraint a new token carries.
type binding struct {
	cnf Cnf
	// nonce is the DPoP-Nonce to return with the response.
	nonce string
	// dpopResult is the authority.dpop_result of the request ("" if DPoP
	// played no part).
	dpopResult string
	// nonceStatus is abi.NonceNone (not required) or abi.NonceValid.
	nonceStatus string
	// alg is the verified proof's JWS algorithm.
	alg string
}

// abiDPoPResult maps the rollout plan's authority.dpop_result label (logs,
// metrics) onto the ABI's DPoP.Result vocabulary (abi/SPEC.md §4.2).
func abiDPoPResult(label string) string {
	switch label {
	case "valid":
		return abi.DPoPOK
	case "nonce_miss":
		return abi.DPoPNonceMiss
	}
	return label // missing, invalid, replay, bypass: the same words
}

// peerThumbprint is the x5t#S256 of the request's client certificate, if any.
func peerThumbprint(r *Request) string {
	if r.Peer.Leaf == nil {
		return ""
	}
	return mtls.Thumbprint(r.Peer.Leaf)
}

func (b binding) kind() string {
	switch {
	case b.cnf.JKT != "" && b.cnf.X5tS256 != "":
		return abi.ConstraintDPoPMTLS
	case b.cnf.JKT != "":
		return abi.ConstraintDPoP
	case b.cnf.X5tS256 != "":
		return abi.ConstraintMTLS
	}
	return abi.ConstraintNone
}

func intersects(a, b []string) bool {
	for _, x := range a {
		if slices.Contains(b, x) {
			return true
		}
	}
	return false
}

// replayScope is what a client's replay entries count against.
func replayScope(cl *Client) string { return cl.Tenant + "\x1f" + cl.ID }

// nonceScope partitions DPoP nonces per tenant, client and audience set.
func nonceScope(cl *Client, auds []string) string {
	return cl.Tenant + "\x1f" + cl.ID + "\x1f" + strings.Join(auds, ",")
}

// bindToken runs the native sender-constraint checks of a token request and
// returns the binding the token must carry.
func (sc *senderConstraints) bindToken(ctx context.Context, r *Request, cl *Client, auds []string) (binding, *Error) {
	var b binding
	m := sc.cfg.Security.SenderConstraints.MTLS
	if m.Enabled {
		// A public client's tokens are bound to any certificate it
		// presents (RFC 8705 §4): it has no other proof of possession.
		certClient := isCertificateMethod(cl.AuthMethod) || cl.AuthMethod == MethodNone
		required := cl.Policy.RequireMTLS || intersects(auds, m.EnforceForAudiences)
		switch {
		case r.Peer.Leaf != nil && (required || certClient):
			b.cnf.X5tS256 = mtls.Thumbprint(r.Peer.Leaf)
		case required:
			sc.log.InfoContext(ctx, "authority.security.senderConstraint", "tenant", cl.Tenant, "client", cl.ID,
				"kind", "mtls", "outcome", "refused", "reason", "certificate-required", "correlation_id", r.CorrelationID)
			return b, &Error{Status: 400, Code: CodeInvalidRequest, Reason: "mtls-required",
				Description: "a client certificate is required (use the mtls_endpoint_aliases token endpoint)"}
		}
	}
	d := sc.cfg.Security.SenderConstraints.DPoP
	if !d.Enabled || (len(r.DPoP) == 0 && !cl.Policy.RequireDPoP) {
		return b, nil
	}
	nonceRequired := d.Nonce.Enabled && (cl.Policy.RequireDPoPNonce || intersects(auds, d.Nonce.RequiredAudiences))
	scope := nonceScope(cl, auds)
	withNonce := sc.nonceAttacher(ctx, r, scope)
	logReq := func(result, nonceStatus, jkt string) {
		b.dpopResult = result
		sc.metrics.DPoPResult(ctx, cl.Tenant, result)
		sc.log.InfoContext(ctx, "authority.dpop.request", "tenant", cl.Tenant, "client", cl.ID, "cnf_jkt", jkt,
			"nonce_status", nonceStatus, "dpop_result", result, "correlation_id", r.CorrelationID)
	}

	if len(r.DPoP) == 0 {
		if d.AllowTemporaryBypass {
			logReq("bypass", "not-checked", "")
			sc.log.WarnContext(ctx, "authority.dpop.proof.bypass", "tenant", cl.Tenant, "client", cl.ID,
				"authority.dpop_result", "bypass", "correlation_id", r.CorrelationID)
			sc.audit.Record(ctx, audit.Event{Type: abi.EventDPoPBypass, Outcome: audit.OutcomeSuccess,
				Tenant: cl.Tenant, Client: cl.ID, Reason: "allowTemporaryBypass", CorrelationID: r.CorrelationID,
				RemoteAddr: r.RemoteAddr, UserAgent: r.UserAgent})
			return b, nil
		}
		if nonceRequired {
			logReq("missing", "missing", "")
			sc.metrics.NonceMiss(ctx)
			sc.nonceMiss(ctx, r, cl, abi.NonceMissing, nil)
			return b, withNonce(&Error{Status: 400, Code: CodeUseDPoPNonce, Reason: "dpop-missing",
				Description: "a DPoP proof with a server-provided nonce is required"}, "")
		}
		logReq("missing", "not-required", "")
		return b, withNonce(&Error{Status: 400, Code: CodeInvalidDPoPProof, Reason: "dpop-missing",
			Description: "a DPoP proof is required"}, "")
	}

	vctx, span := sc.tracing.Start(ctx, "dpop.verify")
	res, err := sc.dpop.Verify(vctx, dpop.Request{
		Header:        r.DPoP,
		Method:        r.Method,
		URL:           publicURL(sc.cfg, r),
		NonceRequired: nonceRequired,
		IssueNonce:    d.Nonce.Enabled,
		NonceScope:    scope,
		ReplayScope:   replayScope(cl),
	})
	span.End()
	if err != nil {
		// logReq (inside dpopFailure) records b.dpopResult: call it first.
		e := sc.dpopFailure(ctx, r, cl, err, withNonce, logReq, false)
		return b, e
	}
	nonceStatus := "not-required"
	b.nonceStatus = abi.NonceNone
	if nonceRequired {
		nonceStatus, b.nonceStatus = "valid", abi.NonceValid
	}
	b.cnf.JKT = res.Proof.JKT
	b.alg = res.Proof.Alg
	b.nonce = res.NextNonce
	logReq("valid", nonceStatus, res.Proof.JKT)
	return b, nil
}

// nonceAttacher returns a function that adds a currently valid DPoP-Nonce
// for scope to an error answer (n when set, else a freshly issued one), so a
// DPoP client is never left without a nonce. Without nonces it is a no-op.
func (sc *senderConstraints) nonceAttacher(ctx context.Context, r *Request, scope string) func(*Error, string) *Error {
	return func(e *Error, n string) *Error {
		if !sc.cfg.Security.SenderConstraints.DPoP.Nonce.Enabled {
			return e
		}
		if n == "" {
			var err error
			if n, err = sc.dpop.Nonce(ctx, scope); err != nil {
				// A DPoP answer that cannot carry its nonce would leave the
				// client with a 4xx it cannot act on: a retryable 503 instead.
				sc.log.ErrorContext(ctx, "authority.dpop.nonce.unavailable", "error", err.Error(), "correlation_id", r.CorrelationID)
				return ErrUnavailable("dpop-nonce-unavailable", err)
			}
		}
		return e.WithHeader("DPoP-Nonce", n)
	}
}

// dpopFailure maps a Verify error to the token endpoint's (or, with
// resource, the protected resource's) answer.
func (sc *senderConstraints) dpopFailure(ctx context.Context, r *Request, cl *Client, err error,
	withNonce func(*Error, string) *Error, logReq func(string, string, string), resource bool) *Error {
	var de *dpop.Error
	if !errors.As(err, &de) {
		logReq("invalid", "unavailable", "")
		return ErrUnavailable("dpop-state", err)
	}
	jkt := ""
	if de.Proof != nil {
		jkt = de.Proof.JKT
	}
	challenge := func(e *Error) *Error {
		if e.Status == http.StatusServiceUnavailable {
			return e // no nonce could be had: a retryable 503 at every endpoint
		}
		if resource {
			e.Status = http.StatusUnauthorized
			e = e.WithHeader("WWW-Authenticate", dpopChallenge(e, sc.algs))
		}
		return e
	}
	switch {
	case de.Replay:
		logReq("replay", "not-checked", jkt)
		ev := audit.Event{Type: abi.EventDPoPReplay, Outcome: audit.OutcomeFailure, Tenant: cl.Tenant,
			Client: cl.ID, Reason: "jti-reused", CorrelationID: r.CorrelationID, RemoteAddr: r.RemoteAddr, UserAgent: r.UserAgent}
		if de.Proof != nil {
			ev.SenderConstraint = map[string]string{"jkt": de.Proof.JKT, "jti": de.Proof.JTI, "htu": de.Proof.HTU, "alg": de.Proof.Alg}
		}
		sc.audit.Record(ctx, ev)
		// The rollout plan answers a replay with 401 at /token too, and
		// RFC 9110 §15.5.2 requires a challenge on every 401.
		e := &Error{Status: http.StatusUnauthorized, Code: CodeInvalidDPoPProof, Reason: "dpop-replay",
			Description: "the DPoP proof was already used"}
		return challenge(withNonce(e.WithHeader("WWW-Authenticate", dpopChallenge(e, sc.algs)), de.NextNonce))
	case de.Check == dpop.CheckStateLost:
		// The replay state was lost and this proof may predate the loss:
		// not a replay (no audit record), a request for a fresh nonce,
		// which the store always mints here, nonces enabled or not.
		logReq("nonce_miss", "state-lost", jkt)
		sc.log.WarnContext(ctx, "authority.dpop.state.lost", "tenant", cl.Tenant, "client", cl.ID,
			"reason", "state-lost", "correlation_id", r.CorrelationID)
		if de.NextNonce == "" {
			return ErrUnavailable("state-lost", err) // counted with the 503s
		}
		sc.metrics.NonceMiss(ctx)
		sc.metrics.Degraded(ctx, "state-lost")
		e := &Error{Status: 400, Code: CodeUseDPoPNonce, Reason: "dpop-state-lost", Description: de.Description}
		return challenge(e.WithHeader("DPoP-Nonce", de.NextNonce))
	case de.Code == dpop.CodeUseNonce:
		status := "invalid"
		if de.Check == dpop.CheckNonceMissing {
			status = "missing"
		}
		logReq("nonce_miss", status, jkt)
		sc.metrics.NonceMiss(ctx)
		sc.nonceMiss(ctx, r, cl, map[bool]string{true: abi.NonceMissing, false: abi.NonceStale}[status == "missing"], de.Proof)
		return challenge(withNonce(&Error{Status: 400, Code: CodeUseDPoPNonce, Reason: "dpop-" + de.Check,
			Description: de.Description}, de.NextNonce))
	default:
		logReq("invalid", "not-checked", jkt)
		code := CodeInvalidDPoPProof
		if de.Check == dpop.CheckJKTMismatch && resource {
			code = CodeInvalidToken
		}
		e := &Error{Status: 400, Code: code, Reason: "dpop-" + de.Check, Description: de.Description}
		if de.Proof == nil && !cl.Policy.RequireDPoP {
			// A client that need not use DPoP sent something that is not a
			// proof (it failed before its signature was verified): no nonce
			// is minted for it, so junk DPoP headers cannot fill the nonce
			// store (single-use mode stores one per nonce issued).
			return challenge(e)
		}
		return challenge(withNonce(e, de.NextNonce))
	}
}

// nonceMiss records a DPoP nonce miss: a required nonce absent (no proof,
// or a proof without one) or stale.
func (sc *senderConstraints) nonceMiss(ctx context.Context, r *Request, cl *Client, status string, p *dpop.Proof) {
	sc2 := map[string]string{"nonce": status, "present": "false"}
	if p != nil {
		sc2["present"], sc2["jkt"], sc2["alg"] = "true", p.JKT, p.Alg
	}
	sc.audit.Record(ctx, audit.Event{Type: abi.EventDPoPNonceMiss, Outcome: audit.OutcomeFailure, Tenant: cl.Tenant,
		Client: cl.ID, Reason: "nonce-" + status, CorrelationID: r.CorrelationID, RemoteAddr: r.RemoteAddr,
		UserAgent: r.UserAgent, SenderConstraint: sc2})
}

// dpopChallenge is the RFC 9449 §7.1 WWW-Authenticate challenge for e.
func dpopChallenge(e *Error, algs string) string {
	return `DPoP error="` + e.Code + `", error_description="` + SafeDescription(e.Description) + `", algs="` + algs + `"`
}

// publicURL is the configured public URL of the endpoint that took the
// request: the issuer or the mTLS alias, never the client's Host header.
func publicURL(cfg *config.Config, r *Request) string {
	base := cfg.IssuerID()
	if alias := cfg.MTLSAlias(); r.ViaMTLS && alias != "" {
		base = alias
	}
	return base + r.Path
}
