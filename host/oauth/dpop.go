package oauth

import (
	"context"
	"errors"
	"net/http"
	"strings"

	"stellaops.org/authority/abi"
	"stellaops.org/authority/host/audit"
	"stellaops.org/authority/host/dpop"
)

// proofCheck is one DPoP proof check (RFC 9449 §4.3). At the token
// endpoint (token == "") the proof's key becomes the new token's binding.
// At a protected resource (/fresh-auth) the proof must carry the ath of
// token and be signed by boundJKT (§7.1), and every refusal is a 401 with a
// DPoP challenge.
type proofCheck struct {
	// endpoint is the path the proof is checked for, for the log.
	endpoint string
	// auds are the token's audiences: they decide whether a nonce is
	// required and partition the nonces.
	auds []string
	// token and boundJKT are the presented access token and its cnf.jkt.
	token, boundJKT string
}

func (pc proofCheck) resource() bool { return pc.token != "" }

// proofResult is what a DPoP check concluded.
type proofResult struct {
	// result is the authority.dpop_result label (valid, missing, invalid,
	// replay, nonce_miss, bypass).
	result string
	// jkt and alg are the verified proof's key thumbprint and algorithm.
	jkt, alg string
	// nonce is the DPoP-Nonce for the success response ("" for none).
	nonce string
	// nonceStatus is abi.NonceValid or abi.NonceNone for a verified proof.
	nonceStatus string
}

// checkProof is the one DPoP path of the service: it verifies r's proof for
// cl as pc says, logs authority.dpop.request once, counts
// authority_dpop_proofs_total at the token endpoint, audits replays and
// nonce misses, and returns the result or the OAuth error to answer with
// (always carrying a usable DPoP-Nonce when nonces are on and the client is
// a DPoP client).
func (s *Service) checkProof(ctx context.Context, r *Request, cl *Client, pc proofCheck) (proofResult, *Error) {
	p := &s.sender
	var out proofResult
	nonceRequired := p.requiresNonce(cl, pc.auds)
	scope := nonceScope(cl, pc.auds)
	withNonce := s.nonceAttacher(ctx, r, scope)
	done := func(result, nonceStatus, proofJKT string) {
		out.result = result
		cnf := pc.boundJKT
		if !pc.resource() {
			cnf = proofJKT // the key the new token is bound to
			// Token requests only: the nonce-miss ratio's denominator (RATIONALE "Metrics").
			s.metrics.DPoPResult(ctx, cl.Tenant, result)
		}
		s.log.InfoContext(ctx, "authority.dpop.request", "tenant", cl.Tenant, "client", cl.ID, "endpoint", pc.endpoint,
			"cnf_jkt", cnf, "proof_jkt", proofJKT, "nonce_status", nonceStatus, "dpop_result", result,
			"correlation_id", r.CorrelationID)
	}

	if len(r.DPoP) == 0 {
		switch {
		case pc.resource():
			done("missing", "not-checked", "")
			e := &Error{Status: http.StatusUnauthorized, Code: CodeInvalidDPoPProof, Reason: "dpop-missing",
				Description: "a DPoP proof is required"}
			return out, withNonce(e.WithHeader("WWW-Authenticate", dpopChallenge(e, p.algs)), "")
		case p.bypass:
			done("bypass", "not-checked", "")
			s.log.WarnContext(ctx, "authority.dpop.proof.bypass", "tenant", cl.Tenant, "client", cl.ID,
				"authority.dpop_result", "bypass", "correlation_id", r.CorrelationID)
			s.audit.Record(ctx, audit.Event{Type: abi.EventDPoPBypass, Outcome: audit.OutcomeSuccess,
				Tenant: cl.Tenant, Client: cl.ID, Reason: "allowTemporaryBypass", CorrelationID: r.CorrelationID,
				RemoteAddr: r.RemoteAddr, UserAgent: r.UserAgent})
			return out, nil
		case nonceRequired:
			done("missing", "missing", "")
			s.metrics.NonceMiss(ctx)
			s.nonceMiss(ctx, r, cl, abi.NonceMissing, nil)
			return out, withNonce(&Error{Status: 400, Code: CodeUseDPoPNonce, Reason: "dpop-missing",
				Description: "a DPoP proof with a server-provided nonce is required"}, "")
		default:
			done("missing", "not-required", "")
			return out, withNonce(&Error{Status: 400, Code: CodeInvalidDPoPProof, Reason: "dpop-missing",
				Description: "a DPoP proof is required"}, "")
		}
	}

	vctx, span := s.tracing.Start(ctx, "dpop.verify")
	res, err := s.dpop.Verify(vctx, dpop.Request{
		Header:        r.DPoP,
		Method:        r.Method,
		URL:           p.publicURL(r),
		AccessToken:   pc.token,
		BoundJKT:      pc.boundJKT,
		NonceRequired: nonceRequired,
		IssueNonce:    p.nonces,
		NonceScope:    scope,
		ReplayScope:   replayScope(cl),
	})
	span.End()
	if err != nil {
		return out, s.proofFailure(ctx, r, cl, pc, err, withNonce, done)
	}
	nonceStatus := "not-required"
	out.nonceStatus = abi.NonceNone
	if nonceRequired {
		nonceStatus, out.nonceStatus = "valid", abi.NonceValid
	}
	out.jkt, out.alg, out.nonce = res.Proof.JKT, res.Proof.Alg, res.NextNonce
	done("valid", nonceStatus, res.Proof.JKT)
	return out, nil
}

// proofFailure maps a Verify error to the answer at pc's endpoint.
func (s *Service) proofFailure(ctx context.Context, r *Request, cl *Client, pc proofCheck, err error,
	withNonce func(*Error, string) *Error, done func(result, nonceStatus, proofJKT string)) *Error {
	var de *dpop.Error
	if !errors.As(err, &de) {
		done("invalid", "unavailable", "")
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
		if pc.resource() {
			e.Status = http.StatusUnauthorized
			e = e.WithHeader("WWW-Authenticate", dpopChallenge(e, s.sender.algs))
		}
		return e
	}
	switch {
	case de.Replay:
		done("replay", "not-checked", jkt)
		ev := audit.Event{Type: abi.EventDPoPReplay, Outcome: audit.OutcomeFailure, Tenant: cl.Tenant,
			Client: cl.ID, Reason: "jti-reused", CorrelationID: r.CorrelationID, RemoteAddr: r.RemoteAddr, UserAgent: r.UserAgent}
		if de.Proof != nil {
			ev.SenderConstraint = map[string]string{"jkt": de.Proof.JKT, "jti": de.Proof.JTI, "htu": de.Proof.HTU, "alg": de.Proof.Alg}
		}
		s.audit.Record(ctx, ev)
		// The rollout plan answers a replay with 401 at /token too, and
		// RFC 9110 §15.5.2 requires a challenge on every 401.
		e := &Error{Status: http.StatusUnauthorized, Code: CodeInvalidDPoPProof, Reason: "dpop-replay",
			Description: "the DPoP proof was already used"}
		return challenge(withNonce(e.WithHeader("WWW-Authenticate", dpopChallenge(e, s.sender.algs)), de.NextNonce))
	case de.Check == dpop.CheckStateLost:
		// The replay state was lost and this proof may predate the loss:
		// not a replay (no audit record), a request for a fresh nonce,
		// which the store always mints here, nonces enabled or not.
		done("nonce_miss", "state-lost", jkt)
		s.log.WarnContext(ctx, "authority.dpop.state.lost", "tenant", cl.Tenant, "client", cl.ID,
			"reason", "state-lost", "correlation_id", r.CorrelationID)
		if de.NextNonce == "" {
			return ErrUnavailable("state-lost", err) // counted with the 503s
		}
		s.metrics.NonceMiss(ctx)
		s.metrics.Degraded(ctx, "state-lost")
		e := &Error{Status: 400, Code: CodeUseDPoPNonce, Reason: "dpop-state-lost", Description: de.Description}
		return challenge(e.WithHeader("DPoP-Nonce", de.NextNonce))
	case de.Code == dpop.CodeUseNonce:
		status, abiStatus := "invalid", abi.NonceStale
		if de.Check == dpop.CheckNonceMissing {
			status, abiStatus = "missing", abi.NonceMissing
		}
		done("nonce_miss", status, jkt)
		s.metrics.NonceMiss(ctx)
		s.nonceMiss(ctx, r, cl, abiStatus, de.Proof)
		return challenge(withNonce(&Error{Status: 400, Code: CodeUseDPoPNonce, Reason: "dpop-" + de.Check,
			Description: de.Description}, de.NextNonce))
	default:
		done("invalid", "not-checked", jkt)
		code := CodeInvalidDPoPProof
		if de.Check == dpop.CheckJKTMismatch && pc.resource() {
			code = CodeInvalidToken // RFC 9449 §7.1: the token is not this key's
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

// nonceAttacher returns a function that adds a currently valid DPoP-Nonce
// for scope to an error answer (n when set, else a freshly issued one), so a
// DPoP client is never left without a nonce. Without nonces it is a no-op.
func (s *Service) nonceAttacher(ctx context.Context, r *Request, scope string) func(*Error, string) *Error {
	return func(e *Error, n string) *Error {
		if !s.sender.nonces {
			return e
		}
		if n == "" {
			var err error
			if n, err = s.dpop.Nonce(ctx, scope); err != nil {
				// A DPoP answer that cannot carry its nonce would leave the
				// client with a 4xx it cannot act on: a retryable 503 instead.
				s.log.ErrorContext(ctx, "authority.dpop.nonce.unavailable", "error", err.Error(), "correlation_id", r.CorrelationID)
				return ErrUnavailable("dpop-nonce-unavailable", err)
			}
		}
		return e.WithHeader("DPoP-Nonce", n)
	}
}

// nonceMiss records a DPoP nonce miss: a required nonce absent (no proof,
// or a proof without one) or stale.
func (s *Service) nonceMiss(ctx context.Context, r *Request, cl *Client, status string, p *dpop.Proof) {
	sc := map[string]string{"nonce": status, "present": "false"}
	if p != nil {
		sc["present"], sc["jkt"], sc["alg"] = "true", p.JKT, p.Alg
	}
	s.audit.Record(ctx, audit.Event{Type: abi.EventDPoPNonceMiss, Outcome: audit.OutcomeFailure, Tenant: cl.Tenant,
		Client: cl.ID, Reason: "nonce-" + status, CorrelationID: r.CorrelationID, RemoteAddr: r.RemoteAddr,
		UserAgent: r.UserAgent, SenderConstraint: sc})
}

// dpopChallenge is the RFC 9449 §7.1 WWW-Authenticate challenge for e.
func dpopChallenge(e *Error, algs string) string {
	return `DPoP error="` + e.Code + `", error_description="` + SafeDescription(e.Description) + `", algs="` + algs + `"`
}

// replayScope is what a client's replay entries count against.
func replayScope(cl *Client) string { return cl.Tenant + "\x1f" + cl.ID }

// nonceScope partitions DPoP nonces per tenant, client and audience set.
func nonceScope(cl *Client, auds []string) string {
	return cl.Tenant + "\x1f" + cl.ID + "\x1f" + strings.Join(auds, ",")
}
