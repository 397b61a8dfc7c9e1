package oauth

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"time"

	"stellaops.org/authority/abi"
	"stellaops.org/authority/host/audit"
	"stellaops.org/authority/host/dpop"
	"stellaops.org/authority/host/mtls"
	"stellaops.org/authority/host/store"
)

// FreshAuthResponse confirms that the holder of a sender-constrained token
// proved possession again at AuthTime. Confirmation is the same facts as a
// signed JWT (typ fresh-auth+jwt) a downstream service can verify with /jwks.
type FreshAuthResponse struct {
	Subject      string      `json:"sub"`
	ClientID     string      `json:"client_id"`
	Tenant       string      `json:"tid"`
	AuthTime     int64       `json:"auth_time"`
	ExpiresAt    int64       `json:"exp"`
	Cnf          *Cnf        `json:"cnf"`
	Confirmation string      `json:"confirmation"`
	Header       http.Header `json:"-"`
}

// CountIgnoredCertHeader counts a client-certificate header that came from
// a peer that is not a trusted proxy (and was therefore ignored).
func (s *Service) CountIgnoredCertHeader() { s.sender.metrics.IgnoredCertHeader(context.Background()) }

// invalidToken is RFC 6750 §3.1 invalid_token with the challenge of scheme.
func invalidToken(scheme, desc, reason, algs string) *Error {
	e := &Error{Status: http.StatusUnauthorized, Code: CodeInvalidToken, Description: desc, Reason: reason}
	ch := scheme + ` error="invalid_token", error_description="` + SafeDescription(desc) + `"`
	if scheme == "DPoP" {
		ch += fmt.Sprintf(`, algs=%q`, algs)
	}
	return e.WithHeader("WWW-Authenticate", ch)
}

// FreshAuth handles POST /fresh-auth: the holder of a sender-constrained
// access token proves possession again. A DPoP-bound token must come as
// `Authorization: DPoP` with a proof carrying `ath` and signed by the bound
// key (RFC 9449 §7); a certificate-bound token must come over TLS with the
// bound certificate (RFC 8705 §3); a token bound both ways needs both. A
// DPoP-bound token presented as Bearer is refused (RFC 9449 §7.2).
func (s *Service) FreshAuth(ctx context.Context, r *Request) (*FreshAuthResponse, *Error) {
	sc := s.sender
	scheme, tok, ok := strings.Cut(strings.TrimSpace(r.Authorization), " ")
	tok = strings.TrimSpace(tok)
	switch {
	case !ok || tok == "":
		e := &Error{Status: http.StatusUnauthorized, Code: CodeInvalidToken, Description: "an access token is required", Reason: "no-token"}
		return nil, e.WithHeader("WWW-Authenticate", fmt.Sprintf(`Bearer, DPoP algs=%q`, sc.algs))
	case strings.EqualFold(scheme, "DPoP"):
		scheme = "DPoP"
	case strings.EqualFold(scheme, "Bearer"):
		scheme = "Bearer"
	default:
		return nil, invalidToken("Bearer", "unsupported authorization scheme", "bad-scheme", sc.algs)
	}
	rec, e := s.lookup(ctx, tok)
	if e != nil {
		return nil, e
	}
	now := s.now()
	if rec == nil || rec.Status != store.StatusActive || !now.Before(rec.ExpiresAt) {
		return nil, invalidToken(scheme, "the access token is not active", "inactive", sc.algs)
	}
	cl, ok := s.Registry.Client(rec.ClientID)
	if !ok || cl.Tenant != rec.Tenant {
		return nil, invalidToken(scheme, "the access token is not active", "unknown-client", sc.algs)
	}
	if rec.KeyThumbprint == "" && rec.SenderCertificate == "" {
		return nil, invalidToken(scheme, "the access token is not sender-constrained", "unbound", sc.algs)
	}
	resp := &FreshAuthResponse{}
	var freshProof *dpop.Proof // the verified proof, for the policy input
	var freshNonce string
	if rec.KeyThumbprint != "" {
		if scheme != "DPoP" {
			return nil, invalidToken("DPoP", "a DPoP-bound token must be presented with the DPoP scheme", "dpop-bound-as-bearer", sc.algs)
		}
		if sc.dpop == nil {
			return nil, invalidToken("DPoP", "DPoP is disabled", "dpop-disabled", sc.algs)
		}
		d := s.cfg.Security.SenderConstraints.DPoP
		nonceRequired := d.Nonce.Enabled && (cl.Policy.RequireDPoPNonce || intersects(rec.Audiences, d.Nonce.RequiredAudiences))
		scope := nonceScope(cl, rec.Audiences)
		withNonce := sc.nonceAttacher(ctx, r, scope)
		logReq := func(result, nonceStatus, jkt string) {
			sc.log.InfoContext(ctx, "authority.dpop.request", "tenant", cl.Tenant, "client", cl.ID, "cnf_jkt", rec.KeyThumbprint,
				"proof_jkt", jkt, "nonce_status", nonceStatus, "dpop_result", result, "endpoint", "/fresh-auth", "correlation_id", r.CorrelationID)
		}
		if len(r.DPoP) == 0 {
			logReq("missing", "not-checked", "")
			e := &Error{Status: http.StatusUnauthorized, Code: CodeInvalidDPoPProof, Description: "a DPoP proof is required", Reason: "dpop-missing"}
			e = e.WithHeader("WWW-Authenticate", fmt.Sprintf(`DPoP error="invalid_dpop_proof", error_description="a DPoP proof is required", algs=%q`, sc.algs))
			return nil, withNonce(e, "")
		}
		vctx, span := sc.tracing.Start(ctx, "dpop.verify")
		res, err := sc.dpop.Verify(vctx, dpop.Request{
			Header: r.DPoP, Method: r.Method, URL: publicURL(s.cfg, r),
			AccessToken: tok, BoundJKT: rec.KeyThumbprint,
			NonceRequired: nonceRequired, IssueNonce: d.Nonce.Enabled, NonceScope: scope, ReplayScope: replayScope(cl),
		})
		span.End()
		if err != nil {
			return nil, sc.dpopFailure(ctx, r, cl, err, withNonce, logReq, true)
		}
		logReq("valid", map[bool]string{true: "valid", false: "not-required"}[nonceRequired], res.Proof.JKT)
		freshProof = res.Proof
		freshNonce = map[bool]string{true: abi.NonceValid, false: abi.NonceNone}[nonceRequired]
		if res.NextNonce != "" {
			resp.Header = http.Header{"Dpop-Nonce": {res.NextNonce}}
		}
	} else if scheme != "Bearer" {
		return nil, invalidToken("Bearer", "the token is not DPoP-bound; use the Bearer scheme", "bearer-as-dpop", sc.algs)
	}
	if rec.SenderCertificate != "" {
		if !sc.certificateMatches(ctx, r, rec, "/fresh-auth") {
			return nil, invalidToken("Bearer", "the client certificate does not match the token", "mtls-mismatch", sc.algs)
		}
	}
	facts := policyFacts{endpoint: abi.HookFreshAuth, subject: rec.Subject, client: cl, scopes: rec.Scopes,
		audiences: rec.Audiences, dpopPresent: len(r.DPoP) > 0,
		b: binding{cnf: Cnf{JKT: rec.KeyThumbprint, X5tS256: rec.SenderCertificate}}}
	if rec.KeyThumbprint != "" && freshProof != nil {
		facts.b.dpopResult, facts.b.alg, facts.b.nonceStatus = "valid", freshProof.Alg, freshNonce
	}
	if e := s.decide(ctx, r, facts); e != nil {
		return nil, e
	}
	life := s.cfg.Tokens.FreshAuthLifetime.D()
	authTime := now.Truncate(time.Second)
	resp.Subject, resp.ClientID, resp.Tenant = rec.Subject, rec.ClientID, rec.Tenant
	resp.AuthTime, resp.ExpiresAt = authTime.Unix(), authTime.Add(life).Unix()
	resp.Cnf = &Cnf{JKT: rec.KeyThumbprint, X5tS256: rec.SenderCertificate}
	conf, err := s.keys.Sign("fresh-auth+jwt", struct {
		Iss      string `json:"iss"`
		Sub      string `json:"sub"`
		ClientID string `json:"client_id"`
		Tid      string `json:"tid"`
		AuthTime int64  `json:"auth_time"`
		Iat      int64  `json:"iat"`
		Exp      int64  `json:"exp"`
		Jti      string `json:"jti"`
		Ati      string `json:"ati"`
		Cnf      *Cnf   `json:"cnf"`
	}{s.cfg.IssuerID(), rec.Subject, rec.ClientID, rec.Tenant, resp.AuthTime, resp.AuthTime, resp.ExpiresAt, newID(), rec.ID, resp.Cnf})
	if err != nil {
		return nil, ErrServer(err)
	}
	resp.Confirmation = conf
	s.log.InfoContext(ctx, "authority.fresh_auth.confirmed", "tenant", rec.Tenant, "client", rec.ClientID, "jti", rec.ID, "correlation_id", r.CorrelationID)
	return resp, nil
}

// certificateMatches enforces the RFC 8705 §3 binding of rec for a request
// at endpoint, counting and logging every mismatch.
func (sc *senderConstraints) certificateMatches(ctx context.Context, r *Request, rec *store.Token, endpoint string) bool {
	ok, reason := mtls.CheckBinding(r.Peer, rec.SenderCertificate)
	if ok {
		return true
	}
	sc.metrics.MTLSMismatch(ctx, rec.Tenant, string(reason))
	sc.log.WarnContext(ctx, "authority.security.senderConstraint", "kind", "mtls", "outcome", "mismatch", "reason", string(reason),
		"endpoint", endpoint, "tenant", rec.Tenant, "client", rec.ClientID, "jti", rec.ID,
		"cnf_x5t_s256", rec.SenderCertificate, "correlation_id", r.CorrelationID)
	sc.audit.Record(ctx, audit.Event{Type: abi.EventMTLSBindingMismatch, Outcome: audit.OutcomeFailure,
		Tenant: rec.Tenant, Client: rec.ClientID, Subject: rec.Subject, TokenID: rec.ID, Reason: string(reason),
		CorrelationID: r.CorrelationID, RemoteAddr: r.RemoteAddr, UserAgent: r.UserAgent,
		SenderConstraint: map[string]string{"x5t#S256": rec.SenderCertificate, "endpoint": endpoint}})
	return false
}
