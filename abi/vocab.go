package abi

// The vocabulary of the string fields the host fills (abi/SPEC.md §4.2-4.6).
// The wire fields stay strings: a plugin built against this version must
// still decode a value a later host adds, and compare it with these
// constants rather than with literals of its own.

// DPoP.Result values.
const (
	DPoPOK        = "ok"         // the native check accepted the proof
	DPoPMissing   = "missing"    // no DPoP header where one is required
	DPoPInvalid   = "invalid"    // the proof failed an RFC 9449 §4.3 check
	DPoPReplay    = "replay"     // the proof's jti was already used (§11.1)
	DPoPNonceMiss = "nonce-miss" // answered use_dpop_nonce (§8)
	DPoPBypass    = "bypass"     // no proof, allowTemporaryBypass issued an unbound token
)

// DPoP.NonceStatus values.
const (
	NonceNone    = "none"    // no nonce was required
	NonceValid   = "valid"   // the required nonce was valid
	NonceMissing = "missing" // a required nonce was absent
	NonceStale   = "stale"   // a nonce was present but unknown, expired or spent
)

// MTLS.Result values.
const (
	MTLSOK                 = "ok"                  // a certificate authenticated the client or matched the token
	MTLSContextMissing     = "context-missing"     // no TLS or trusted-proxy context to read a certificate from
	MTLSMissingCertificate = "missing-certificate" // a certificate-bound token came without a certificate
	MTLSThumbprintMismatch = "thumbprint-mismatch" // the certificate is not the one the token is bound to
)

// SenderConstraint values (DecisionInput and Event).
const (
	ConstraintNone     = "none"
	ConstraintDPoP     = "dpop"
	ConstraintMTLS     = "mtls"
	ConstraintDPoPMTLS = "dpop+mtls" // bound to a DPoP key and a certificate (RFC 9449 and RFC 8705 together)
	ConstraintBypass   = "bypass"
)

// Event.Outcome values.
const (
	OutcomeSuccess     = "success"
	OutcomeFailure     = "failure"
	OutcomeLockedOut   = "locked_out"
	OutcomeRateLimited = "rate_limited"
	OutcomeError       = "error"
)

// Event.Type values the host emits.
const (
	EventTokenIssued         = "authority.token.issued"
	EventTokenDenied         = "authority.token.denied"
	EventDPoPReplay          = "authority.dpop.proof.replay"
	EventDPoPBypass          = "authority.dpop.proof.bypass"
	EventMTLSBindingMismatch = "authority.mtls.binding.mismatch"
	// EventDPoPNonceMiss: a proof without the server nonce, or with a stale
	// one, where one was required (400 use_dpop_nonce).
	EventDPoPNonceMiss = "authority.dpop.nonce.miss"
	// EventRefreshReused: a refresh token presented again after its
	// rotation; its whole family was revoked.
	EventRefreshReused = "authority.token.refresh.reused"
)

// HostOnlyEventPrefix starts the types of the host's own audit trail
// records (its chain checkpoints): audit_emit refuses them (HostInvalid).
const HostOnlyEventPrefix = "authority.audit."

// The sets, for validation and tests.
var (
	DPoPResults       = []string{DPoPOK, DPoPMissing, DPoPInvalid, DPoPReplay, DPoPNonceMiss, DPoPBypass}
	NonceStatuses     = []string{NonceNone, NonceValid, NonceMissing, NonceStale}
	MTLSResults       = []string{MTLSOK, MTLSContextMissing, MTLSMissingCertificate, MTLSThumbprintMismatch}
	SenderConstraints = []string{ConstraintNone, ConstraintDPoP, ConstraintMTLS, ConstraintDPoPMTLS, ConstraintBypass}
	Outcomes          = []string{OutcomeSuccess, OutcomeFailure, OutcomeLockedOut, OutcomeRateLimited, OutcomeError}
	HostEventTypes    = []string{EventTokenIssued, EventTokenDenied, EventDPoPReplay, EventDPoPBypass, EventMTLSBindingMismatch, EventDPoPNonceMiss, EventRefreshReused}
)
