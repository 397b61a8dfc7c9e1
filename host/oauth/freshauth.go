package oauth

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"time"

	"stellaops.org/authority/abi"
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
	algs := s.sender.algs
	scheme, tok, ok := strings.Cut(strings.TrimSpace(r.Authorization), " ")
	tok = strings.TrimSpace(tok)
	switch {
	case !ok || tok == "":
		e := &Error{Status: http.StatusUnauthorized, Code: CodeInvalidToken, Description: "an access token is required", Reason: "no-token"}
		return nil, e.WithHeader("WWW-Authenticate", fmt.Sprintf(`Bearer, DPoP algs=%q`, algs))
	case strings.EqualFold(scheme, "DPoP"):
		scheme = "DPoP"
	case strings.EqualFold(scheme, "Bearer"):
		scheme = "Bearer"
	default:
		return nil, invalidToken("Bearer", "unsupported authorization scheme", "bad-scheme", algs)
	}
	rec, e := s.lookup(ctx, tok)
	if e != nil {
		return nil, e
	}
	now := s.now()
	if rec == nil || rec.Status != store.StatusActive || !now.Before(rec.ExpiresAt) {
		return nil, invalidToken(scheme, "the access token is not active", "inactive", algs)
	}
	cl, ok := s.Registry.Client(rec.ClientID)
	if !ok || cl.Tenant != rec.Tenant {
		return nil, invalidToken(scheme, "the access token is not active", "unknown-client", algs)
	}
	if rec.KeyThumbprint == "" && rec.SenderCertificate == "" {
		return nil, invalidToken(scheme, "the access token is not sender-constrained", "unbound", algs)
	}
	resp := &FreshAuthResponse{}
	facts := policyFacts{endpoint: abi.HookFreshAuth, subject: rec.Subject, client: cl, scopes: rec.Scopes,
		audiences: rec.Audiences, dpopPresent: len(r.DPoP) > 0,
		b: binding{cnf: Cnf{JKT: rec.KeyThumbprint, X5tS256: rec.SenderCertificate}}}
	if rec.KeyThumbprint != "" {
		if scheme != "DPoP" {
			return nil, invalidToken("DPoP", "a DPoP-bound token must be presented with the DPoP scheme", "dpop-bound-as-bearer", algs)
		}
		if !s.sender.dpop {
			return nil, invalidToken("DPoP", "DPoP is disabled", "dpop-disabled", algs)
		}
		pr, e := s.checkProof(ctx, r, cl, proofCheck{endpoint: "/fresh-auth", auds: rec.Audiences, token: tok, boundJKT: rec.KeyThumbprint})
		if e != nil {
			return nil, e
		}
		facts.b.dpopResult, facts.b.alg, facts.b.nonceStatus = pr.result, pr.alg, pr.nonceStatus
		if pr.nonce != "" {
			resp.Header = http.Header{"Dpop-Nonce": {pr.nonce}}
		}
	} else if scheme != "Bearer" {
		return nil, invalidToken("Bearer", "the token is not DPoP-bound; use the Bearer scheme", "bearer-as-dpop", algs)
	}
	if rec.SenderCertificate != "" && !s.certificateMatches(ctx, r, rec, "/fresh-auth") {
		return nil, invalidToken("Bearer", "the client certificate does not match the token", "mtls-mismatch", algs)
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
	}{s.sender.issuer, rec.Subject, rec.ClientID, rec.Tenant, resp.AuthTime, resp.AuthTime, resp.ExpiresAt, newID(), rec.ID, resp.Cnf})
	if err != nil {
		return nil, ErrServer(err)
	}
	resp.Confirmation = conf
	s.log.InfoContext(ctx, "authority.fresh_auth.confirmed", "tenant", rec.Tenant, "client", rec.ClientID, "jti", rec.ID, "correlation_id", r.CorrelationID)
	return resp, nil
}
