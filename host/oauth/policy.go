package oauth

import (
	"context"
	"net/http"
	"strconv"

	"stellaops.org/authority/abi"
)

// PolicyDecider asks a tenant's plugin chain for a decision. It is called
// only after every native check of the endpoint has passed, and its answer
// can only refuse the request: nothing it returns loosens a native check.
type PolicyDecider interface {
	// Has reports whether tenant has a policy plugin for endpoint (a hook
	// name); without one, no input is built and Decide is not called.
	Has(tenant, endpoint string) bool
	Decide(ctx context.Context, tenant string, in *abi.DecisionInput) (abi.Decision, error)
}

// policyFacts are the native results a plugin decision sees.
type policyFacts struct {
	endpoint, grant, subject string
	client                   *Client
	scopes, audiences        []string
	b                        binding
	dpopPresent              bool
	// annotations, when set, receives the chain's annotations (keys
	// prefixed "<plugin>.", failure annotations included) for the
	// request's audit record.
	annotations *[]abi.KV
}

// decide runs the plugin chain (when configured) and turns a deny into an
// OAuth error. A plugin failure has already been turned into a decision by
// the failure mode of the plugin (closed: 503; open: allow).
func (s *Service) decide(ctx context.Context, r *Request, f policyFacts) *Error {
	if s.plugins == nil || !s.plugins.Has(f.client.Tenant, f.endpoint) {
		return nil
	}
	ctx, span := s.tracing.Start(ctx, "plugins."+f.endpoint)
	defer span.End()
	peerCert := peerThumbprint(r) // x5t#S256 of the presented certificate, if any
	in := &abi.DecisionInput{
		Endpoint:         f.endpoint,
		CorrelationID:    r.CorrelationID,
		Time:             s.now().UTC(),
		Client:           f.client.ID,
		ClientAuthMethod: f.client.AuthMethod,
		Grant:            f.grant,
		Subject:          f.subject,
		Scopes:           f.scopes,
		Audiences:        f.audiences,
		RemoteAddr:       r.RemoteAddr,
		UserAgent:        r.UserAgent,
		SenderConstraint: f.b.kind(),
		DPoP: abi.DPoP{Present: f.dpopPresent, Valid: f.b.cnf.JKT != "", Result: abiDPoPResult(f.b.dpopResult),
			JKT: f.b.cnf.JKT, Alg: f.b.alg, NonceStatus: f.b.nonceStatus},
		MTLS: abi.MTLS{Present: peerCert != "", Thumbprint: peerCert},
	}
	if f.b.dpopResult == "bypass" && in.SenderConstraint == abi.ConstraintNone {
		in.SenderConstraint = abi.ConstraintBypass // unbound (a certificate binding stays "mtls")
	}
	// A presented certificate that matched the token's binding, or
	// authenticated the client, passed the native check.
	if peerCert != "" && (peerCert == f.b.cnf.X5tS256 || isCertificateMethod(f.client.AuthMethod)) {
		in.MTLS.Result = abi.MTLSOK
	}
	d, err := s.plugins.Decide(ctx, f.client.Tenant, in)
	if err != nil {
		s.log.WarnContext(ctx, "authority.plugin.failed", "tenant", f.client.Tenant, "endpoint", f.endpoint,
			"error", err.Error(), "correlation_id", r.CorrelationID)
	}
	if f.annotations != nil {
		*f.annotations = d.Annotations
	}
	if d.Allow {
		return nil
	}
	e := &Error{Status: d.Status, Code: d.Error, Description: d.Description, Reason: "plugin-deny"}
	if e.Status < 400 || (e.Status > 499 && e.Status != http.StatusServiceUnavailable) {
		e.Status = http.StatusForbidden // the codec refuses these; keep a deny a deny regardless
	}
	if e.Code == "" {
		e.Code = CodeAccessDenied
	}
	if d.RetryAfter > 0 {
		e.WithHeader("Retry-After", strconv.Itoa(d.RetryAfter))
	}
	s.log.InfoContext(ctx, "authority.plugin.denied", "tenant", f.client.Tenant, "client", f.client.ID,
		"endpoint", f.endpoint, "status", e.Status, "error", e.Code, "correlation_id", r.CorrelationID,
		"annotations", annotationMap(d.Annotations))
	return e
}

// annotationMap turns plugin annotations into an audit record's
// annotations (nil when there are none; a repeated key keeps its last
// value).
func annotationMap(kvs []abi.KV) map[string]string {
	if len(kvs) == 0 {
		return nil
	}
	m := make(map[string]string, len(kvs))
	for _, kv := range kvs {
		m[kv.Key] = kv.Value
	}
	return m
}
