package oauth

import (
	"context"
	"encoding/json"
	"errors"
	"strings"

	"stellaops.org/authority/abi"
	"stellaops.org/authority/host/store"
)

// Introspection is the RFC 7662 §2.2 response. Inactive tokens answer
// exactly {"active": false}.
type Introspection struct {
	Active    bool     `json:"active"`
	Scope     string   `json:"scope,omitempty"`
	ClientID  string   `json:"client_id,omitempty"`
	Sub       string   `json:"sub,omitempty"`
	Aud       []string `json:"aud,omitempty"`
	Iss       string   `json:"iss,omitempty"`
	Exp       int64    `json:"exp,omitempty"`
	Iat       int64    `json:"iat,omitempty"`
	Nbf       int64    `json:"nbf,omitempty"`
	Jti       string   `json:"jti,omitempty"`
	TokenType string   `json:"token_type,omitempty"`
	Tenant    string   `json:"tid,omitempty"`
	Cnf       *Cnf     `json:"cnf,omitempty"`
	// SenderConstraint names the binding kind: none, dpop, mtls, dpop+mtls.
	SenderConstraint string `json:"sender_constraint,omitempty"`
}

var inactive = &Introspection{Active: false}

// Introspect handles POST /introspect (RFC 7662). The caller authenticates
// like at /token and may introspect tokens of its own tenant; expired,
// revoked, unknown and foreign tokens are inactive. When the caller is the
// token's own client, presents a certificate over mTLS and the token is
// certificate-bound to another one, the token is inactive and the mismatch
// is counted (RFC 8705 §3).
func (s *Service) Introspect(ctx context.Context, r *Request) (*Introspection, *Error) {
	if e := checkSingleValued(r.Form); e != nil {
		return nil, e
	}
	cl, e := s.authenticate(ctx, r)
	if e != nil {
		return nil, e
	}
	if cl.AuthMethod == MethodNone {
		// RFC 7662 §2.1: the caller must be authorized; a public client
		// has no credential to authorize.
		return nil, errCertificateClient("public-client-introspection")
	}
	raw := r.Form.Get("token")
	if raw == "" {
		return nil, ErrInvalidRequest("token is required")
	}
	rec, e := s.lookupAny(ctx, raw)
	if e != nil {
		return nil, e
	}
	if rec == nil || rec.Tenant != cl.Tenant || rec.Status != store.StatusActive || !s.now().Before(rec.ExpiresAt) {
		return inactive, nil
	}
	// A token whose client a reload removed (or moved to another tenant)
	// is inactive: nothing may rely on a credential the configuration no
	// longer grants, and /fresh-auth refuses it the same way.
	if owner, ok := s.Registry.Client(rec.ClientID); !ok || owner.Tenant != rec.Tenant {
		return inactive, nil
	}
	if rec.SenderCertificate != "" && rec.ClientID == cl.ID && (r.ViaMTLS || r.Peer.TLS) {
		if !s.certificateMatches(ctx, r, rec, "/introspect") {
			return inactive, nil
		}
	}
	if e := s.decide(ctx, r, policyFacts{endpoint: abi.HookIntrospect, subject: rec.Subject, client: cl,
		scopes: rec.Scopes, audiences: rec.Audiences,
		b: binding{cnf: Cnf{JKT: rec.KeyThumbprint, X5tS256: rec.SenderCertificate}}}); e != nil {
		return nil, e
	}
	out := &Introspection{
		Active:           true,
		Scope:            strings.Join(rec.Scopes, " "),
		ClientID:         rec.ClientID,
		Sub:              rec.Subject,
		Aud:              rec.Audiences,
		Iss:              s.sender.issuer,
		Exp:              rec.ExpiresAt.Unix(),
		Iat:              rec.IssuedAt.Unix(),
		Nbf:              rec.IssuedAt.Unix(),
		Jti:              rec.ID,
		TokenType:        "Bearer",
		Tenant:           rec.Tenant,
		SenderConstraint: rec.SenderConstraint,
	}
	if rec.KeyThumbprint != "" || rec.SenderCertificate != "" {
		out.Cnf = &Cnf{JKT: rec.KeyThumbprint, X5tS256: rec.SenderCertificate}
	}
	if rec.KeyThumbprint != "" {
		out.TokenType = "DPoP"
	}
	if rec.Kind == store.KindRefreshToken {
		// RFC 7662 token_type is an access token's type (RFC 6749 §7.1);
		// a refresh token has none, and its store ID is not a jti.
		out.TokenType, out.Jti = "", ""
		out.Nbf = 0
	}
	return out, nil
}

// lookupAny finds an access token (a JWT of ours) or a refresh token (an
// opaque value, found by its hash). The two never look alike, so
// token_type_hint (RFC 7009 §2.1, RFC 7662 §2.1) is not needed to tell
// them apart and is ignored, as both RFCs allow.
func (s *Service) lookupAny(ctx context.Context, raw string) (*store.Token, *Error) {
	if strings.Count(raw, ".") == 2 {
		return s.lookup(ctx, raw)
	}
	if len(raw) != 43 {
		return nil, nil // not one of our refresh tokens (256 bits, base64url)
	}
	rec, err := s.store.Get(ctx, refreshID(raw))
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, storeUnavailable(err)
	}
	if rec.Kind != store.KindRefreshToken {
		return nil, nil
	}
	return rec, nil
}

// lookup verifies a token's signature with the published keys and loads
// its record; nil (no error) when the token is not one of ours or unknown.
func (s *Service) lookup(ctx context.Context, raw string) (*store.Token, *Error) {
	payload, err := s.keys.Verify(raw, TokenTypeJWT)
	if err != nil {
		return nil, nil
	}
	var c struct {
		Jti string `json:"jti"`
		Tid string `json:"tid"`
	}
	if json.Unmarshal(payload, &c) != nil || c.Jti == "" {
		return nil, nil
	}
	rec, err := s.store.Get(ctx, c.Jti)
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, storeUnavailable(err)
	}
	if rec.Tenant != c.Tid {
		return nil, nil
	}
	return rec, nil
}

// Revoke handles POST /revoke (RFC 7009). Invalid, unknown, expired and
// foreign-tenant tokens answer 200 (§2.2); a token of the caller's tenant
// issued to another client is refused with unauthorized_client (§2.1).
func (s *Service) Revoke(ctx context.Context, r *Request) *Error {
	if e := checkSingleValued(r.Form); e != nil {
		return e
	}
	cl, e := s.authenticate(ctx, r)
	if e != nil {
		return e
	}
	raw := r.Form.Get("token")
	if raw == "" {
		return ErrInvalidRequest("token is required")
	}
	// Any token_type_hint is accepted and ignored (RFC 7009 §2.1: the hint
	// is only a hint; lookupAny tells the kinds apart).
	rec, e := s.lookupAny(ctx, raw)
	if e != nil {
		return e
	}
	if rec == nil || rec.Tenant != cl.Tenant {
		return nil
	}
	if rec.ClientID != cl.ID {
		return &Error{Status: 400, Code: CodeUnauthorizedClient, Description: "the token was not issued to this client", Reason: "revoke-foreign-client"}
	}
	if rec.Kind == store.KindRefreshToken {
		// RFC 7009 §2.1: revoking a refresh token also invalidates the
		// access tokens of the same grant: the whole family goes.
		n, err := s.revokeFamily(ctx, rec)
		if err != nil {
			return storeUnavailable(err)
		}
		s.log.InfoContext(ctx, "authority.token.revoked", "tenant", rec.Tenant, "client", cl.ID, "kind", "refresh_token",
			"family", familyOf(rec), "revoked", n, "correlation_id", r.CorrelationID)
		return nil
	}
	if _, err := s.store.Revoke(ctx, rec.ID, s.now()); err != nil {
		return storeUnavailable(err)
	}
	s.log.InfoContext(ctx, "authority.token.revoked", "tenant", rec.Tenant, "client", cl.ID, "jti", rec.ID, "correlation_id", r.CorrelationID)
	return nil
}
