package dpop

// Error codes defined by RFC 9449. They are the values of the OAuth "error"
// parameter (token endpoint, RFC 6749 §5.2) and of the WWW-Authenticate
// "error" attribute (protected resources, RFC 9449 §7.1).
const (
	// CodeInvalidProof is RFC 9449 §5's invalid_dpop_proof: the proof is
	// missing, malformed, or fails one of the §4.3 checks.
	CodeInvalidProof = "invalid_dpop_proof"
	// CodeUseNonce is RFC 9449 §8's use_dpop_nonce: the proof is otherwise
	// valid but does not carry a currently valid server nonce.
	CodeUseNonce = "use_dpop_nonce"
)

// Check identifiers name the rule that refused a proof. They are stable:
// callers may switch on them, log them and count them in metrics.
const (
	CheckMissing        = "missing"          // no DPoP header at all (§4.3 (1)/(2))
	CheckHeaderCount    = "header-count"     // more than one DPoP header (§4.3 (1))
	CheckSize           = "size"             // header value larger than Config.MaxProofBytes
	CheckMalformed      = "malformed"        // not one compact JWS of three base64url parts (§4.3 (2))
	CheckHeader         = "header"           // protected header is not a JSON object (§4.3 (2))
	CheckTyp            = "typ"              // typ is not exactly "dpop+jwt" (§4.3 (4))
	CheckAlg            = "alg"              // alg missing, none, symmetric or not allowed (§4.3 (5))
	CheckCrit           = "crit"             // crit header present: no extension is understood (RFC 7515 §4.1.11)
	CheckJWKMissing     = "jwk-missing"      // no jwk header (§4.2)
	CheckJWKPrivate     = "jwk-private"      // jwk holds private or symmetric key material (§4.3 (7))
	CheckJWKInvalid     = "jwk-invalid"      // jwk is not a well-formed public key
	CheckJWKAlgMismatch = "jwk-alg-mismatch" // key type or curve does not fit alg, or RSA key too small
	CheckSignature      = "signature"        // signature does not verify with jwk (§4.3 (6))
	CheckClaims         = "claims"           // payload is not a JSON object (§4.3 (2))
	CheckJTI            = "jti"              // jti missing, not a string, empty or too long (§4.3 (3))
	CheckHTM            = "htm"              // htm missing or not the request method (§4.3 (3)/(8))
	CheckHTU            = "htu"              // htu missing, unparsable or not the endpoint URL (§4.3 (3)/(9))
	CheckIAT            = "iat"              // iat missing or not a number (§4.3 (3))
	CheckIATTooOld      = "iat-too-old"      // iat before now - ProofLifetime (§4.3 (11))
	CheckIATInFuture    = "iat-in-future"    // iat after now + AllowedClockSkew (§4.3 (11))
	CheckATH            = "ath"              // ath missing or not the access token's hash (§4.3 (12))
	CheckJKTMismatch    = "jkt-mismatch"     // proof key is not the key the token is bound to (§4.3 (12))
	CheckReplay         = "replay"           // jti already seen for this key and URL (§11.1)
	CheckNonceMissing   = "nonce-missing"    // nonce required but absent (§4.3 (10), §8)
	CheckNonceInvalid   = "nonce-invalid"    // nonce unknown, expired, spent or of another scope (§4.3 (10), §8)
	CheckStateLost      = "state-lost"       // replay state was lost; the proof may predate the loss: a nonce is required (§8)
)

// Error is a refusal of a DPoP request that the client may be told about.
//
// Every value returned by Verify that is not an *Error is an infrastructure
// failure (for example Redis unreachable) and must not be reported to the
// client as a proof problem.
type Error struct {
	// Code is CodeInvalidProof or CodeUseNonce.
	Code string
	// Check is one of the Check* constants: which rule failed.
	Check string
	// Description is a short human sentence that never contains key
	// material, internal state or the proof itself: safe for the
	// error_description parameter.
	Description string
	// Replay is true exactly when Check is CheckReplay: a proof whose jti was
	// already accepted for the same key and URL within the replay window.
	Replay bool
	// NextNonce, when not empty, is a currently valid nonce for the request's
	// scope, for the DPoP-Nonce response header. Set on nonce and replay
	// errors when Request.NonceRequired.
	NextNonce string
	// Proof is the proof as verified so far. It is set only for errors found
	// after the signature verified (claims, binding and state checks), so
	// its JKT and JTI are authentic and may go into an audit record.
	Proof *Proof
}

// Error returns "<code>: <check>: <description>".
func (e *Error) Error() string {
	return e.Code + ": " + e.Check + ": " + e.Description
}

func refuse(check, description string) *Error {
	return &Error{Code: CodeInvalidProof, Check: check, Description: description}
}
