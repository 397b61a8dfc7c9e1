package oauth

import (
	"context"
	"errors"
	"slices"
	"strings"

	"stellaops.org/authority/abi"
	"stellaops.org/authority/host/config"
	"stellaops.org/authority/host/mtls"
)

// senderPolicy is security.senderConstraints (and the public URLs proofs
// name), resolved once when the Service is built: no request reads the
// configuration tree.
type senderPolicy struct {
	// mtls: security.senderConstraints.mtls.enabled.
	mtls bool
	// mtlsAudiences: ...mtls.enforceForAudiences.
	mtlsAudiences []string
	// sanTypes: ...mtls.allowedSanTypes.
	sanTypes mtls.SANTypes
	// dpop: ...dpop.enabled.
	dpop bool
	// bypass: ...dpop.allowTemporaryBypass.
	bypass bool
	// nonces: ...dpop.nonce.enabled; nonceAudiences: ...nonce.requiredAudiences.
	nonces         bool
	nonceAudiences []string
	// algs is ...dpop.allowedAlgorithms as a challenge's algs parameter.
	algs string
	// issuer and mtlsAlias are the public bases of the two listeners
	// (issuer identifier and mtls_endpoint_aliases).
	issuer, mtlsAlias string
}

func resolveSenderPolicy(cfg *config.Config) senderPolicy {
	sc := cfg.Security.SenderConstraints
	p := senderPolicy{
		mtls: sc.MTLS.Enabled, mtlsAudiences: slices.Clone(sc.MTLS.EnforceForAudiences),
		dpop: sc.DPoP.Enabled, bypass: sc.DPoP.AllowTemporaryBypass,
		nonces: sc.DPoP.Nonce.Enabled, nonceAudiences: slices.Clone(sc.DPoP.Nonce.RequiredAudiences),
		algs:   strings.Join(sc.DPoP.AllowedAlgorithms, " "),
		issuer: cfg.IssuerID(), mtlsAlias: cfg.MTLSAlias(),
	}
	for _, t := range sc.MTLS.AllowedSANTypes {
		switch t {
		case "dns":
			p.sanTypes.DNS = true
		case "uri":
			p.sanTypes.URI = true
		case "ip":
			p.sanTypes.IP = true
		case "email":
			p.sanTypes.Email = true
		}
	}
	return p
}

// requiresNonce says whether a DPoP proof for cl's tokens to auds must
// carry a server-provided nonce (RFC 9449 §8).
func (p *senderPolicy) requiresNonce(cl *Client, auds []string) bool {
	return p.nonces && (cl.Policy.RequireDPoPNonce || intersects(auds, p.nonceAudiences))
}

// publicURL is the configured public URL of the endpoint that took the
// request: the issuer or the mTLS alias, never the client's Host header.
func (p *senderPolicy) publicURL(r *Request) string {
	if r.ViaMTLS && p.mtlsAlias != "" {
		return p.mtlsAlias + r.Path
	}
	return p.issuer + r.Path
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

func intersects(a, b []string) bool {
	for _, x := range a {
		if slices.Contains(b, x) {
			return true
		}
	}
	return false
}

// bindToken runs the native sender-constraint checks of a token request and
// returns the binding the token must carry: the presented certificate
// (RFC 8705 §3) and the DPoP proof's key (RFC 9449 §6).
func (s *Service) bindToken(ctx context.Context, r *Request, cl *Client, auds []string) (binding, *Error) {
	var b binding
	p := &s.sender
	if p.mtls {
		// A public client's tokens are bound to any certificate it
		// presents (RFC 8705 §4): it has no other proof of possession.
		certClient := isCertificateMethod(cl.AuthMethod) || cl.AuthMethod == MethodNone
		required := cl.Policy.RequireMTLS || intersects(auds, p.mtlsAudiences)
		switch {
		case r.Peer.Leaf != nil && (required || certClient):
			b.cnf.X5tS256 = mtls.Thumbprint(r.Peer.Leaf)
		case required:
			s.log.InfoContext(ctx, "authority.security.senderConstraint", "tenant", cl.Tenant, "client", cl.ID,
				"kind", "mtls", "outcome", "refused", "reason", "certificate-required", "correlation_id", r.CorrelationID)
			return b, &Error{Status: 400, Code: CodeInvalidRequest, Reason: "mtls-required",
				Description: "a client certificate is required (use the mtls_endpoint_aliases token endpoint)"}
		}
	}
	if !p.dpop || (len(r.DPoP) == 0 && !cl.Policy.RequireDPoP) {
		return b, nil
	}
	pr, e := s.checkProof(ctx, r, cl, proofCheck{endpoint: "/token", auds: auds})
	b.dpopResult = pr.result
	if e != nil {
		return b, e
	}
	b.cnf.JKT, b.alg, b.nonce, b.nonceStatus = pr.jkt, pr.alg, pr.nonce, pr.nonceStatus
	return b, nil
}

var errNoVerifier = errors.New("security.senderConstraints.dpop.enabled: no DPoP verifier was configured")
