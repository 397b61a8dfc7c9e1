package oauth

import (
	"context"
	"errors"
	"fmt"

	"stellaops.org/authority/abi"
	"stellaops.org/authority/host/audit"
	"stellaops.org/authority/host/config"
	"stellaops.org/authority/host/mtls"
	"stellaops.org/authority/host/store"
)

// Peer is the client-certificate context of a request (RFC 8705).
type Peer = mtls.Presented

// Certificates is what mutual-TLS client authentication checks against,
// loaded by the caller from configuration (host/app, with host/mtls's
// readers): nothing here reads a file.
type Certificates struct {
	// Trust holds each tenant's trust anchors for tls_client_auth, by
	// tenant ID. A tenant without an entry trusts no certificate.
	Trust map[string]*mtls.TrustStore
	// Rules holds the rule of every client whose authMethod is
	// tls_client_auth or self_signed_tls_client_auth, by client ID.
	// NewService refuses a certificate client without one.
	Rules map[string]mtls.ClientRule
}

// checkCertificates refuses certificate material that leaves a certificate
// client without a rule, or holds a rule Authenticate could never satisfy,
// naming the client's configuration key.
func checkCertificates(cfg *config.Config, certs Certificates) error {
	for ti := range cfg.Tenants {
		for ci, cl := range cfg.Tenants[ti].Clients {
			if !isCertificateMethod(cl.AuthMethod) {
				continue
			}
			key := fmt.Sprintf("tenants[%d].clients[%d].tls", ti, ci)
			rule, ok := certs.Rules[cl.ID]
			if !ok {
				return fmt.Errorf("%s: no certificate rule was loaded for %s client %q", key, cl.AuthMethod, cl.ID)
			}
			if string(rule.Method) != cl.AuthMethod {
				return fmt.Errorf("%s: the loaded rule is for %s, the client uses %s", key, rule.Method, cl.AuthMethod)
			}
			if err := rule.Validate(); err != nil {
				return fmt.Errorf("%s: %w", key, err)
			}
		}
	}
	return nil
}

// certAuth implements tls_client_auth and self_signed_tls_client_auth
// (RFC 8705 §2). Every failure is invalid_client; the reason is logged.
func (s *Service) certAuth(ctx context.Context, r *Request, cl *Client) *Error {
	if !s.sender.mtls {
		return errCertificateClient("mtls-disabled")
	}
	rule, ok := s.certs.Rules[cl.ID]
	if !ok {
		return errCertificateClient("no-certificate-rule")
	}
	err := mtls.Authenticate(r.Peer, rule, s.certs.Trust[cl.Tenant], s.sender.sanTypes, s.now())
	if err != nil {
		reason := "certificate"
		var ae *mtls.AuthError
		if errors.As(err, &ae) {
			reason = ae.Reason
		}
		s.log.InfoContext(ctx, "authority.mtls.client_auth.failed", "tenant", cl.Tenant, "client", cl.ID, "reason", reason,
			"detail", err.Error(), "correlation_id", r.CorrelationID)
		return errCertificateClient("mtls-" + reason)
	}
	return nil
}

// certificateMatches enforces the RFC 8705 §3 binding of rec for a request
// at endpoint, counting and logging every mismatch.
func (s *Service) certificateMatches(ctx context.Context, r *Request, rec *store.Token, endpoint string) bool {
	ok, reason := mtls.CheckBinding(r.Peer, rec.SenderCertificate)
	if ok {
		return true
	}
	s.metrics.MTLSMismatch(ctx, rec.Tenant, string(reason))
	s.log.WarnContext(ctx, "authority.security.senderConstraint", "kind", "mtls", "outcome", "mismatch", "reason", string(reason),
		"endpoint", endpoint, "tenant", rec.Tenant, "client", rec.ClientID, "jti", rec.ID,
		"cnf_x5t_s256", rec.SenderCertificate, "correlation_id", r.CorrelationID)
	s.audit.Record(ctx, audit.Event{Type: abi.EventMTLSBindingMismatch, Outcome: audit.OutcomeFailure,
		Tenant: rec.Tenant, Client: rec.ClientID, Subject: rec.Subject, TokenID: rec.ID, Reason: string(reason),
		CorrelationID: r.CorrelationID, RemoteAddr: r.RemoteAddr, UserAgent: r.UserAgent,
		SenderConstraint: map[string]string{"x5t#S256": rec.SenderCertificate, "endpoint": endpoint}})
	return false
}

// peerThumbprint is the x5t#S256 of the request's client certificate, if any.
func peerThumbprint(r *Request) string {
	if r.Peer.Leaf == nil {
		return ""
	}
	return mtls.Thumbprint(r.Peer.Leaf)
}

// CountIgnoredCertHeader counts a client-certificate header that came from
// a peer that is not a trusted proxy (and was therefore ignored).
func (s *Service) CountIgnoredCertHeader() { s.metrics.IgnoredCertHeader(context.Background()) }
