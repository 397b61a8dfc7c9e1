// Package dpop verifies OAuth 2.0 DPoP proofs (RFC 9449) and holds the
// shared state they need: the jti replay cache and the server nonce store,
// each with a single-node memory implementation and a Redis implementation.
//
// # Using it
//
// Build one Verifier per process with NewVerifier(Config, State), where
// State is NewMemoryState (one node) or NewRedisState (several nodes behind
// a load balancer). Per request call Verify with every DPoP header value,
// the method, and the endpoint's configured public URL (never the Host
// header). A *Error means the proof is refused: its Code is the OAuth error
// (invalid_dpop_proof or use_dpop_nonce), Check names the rule, Description
// is safe for the client, NextNonce goes in DPoP-Nonce. Any other error is
// infrastructure (Redis down) and must not be reported as a proof problem.
// When there is no proof at all (Check "missing"), the caller decides the
// answer and may call Verifier.Nonce for a DPoP-Nonce header.
//
// # RFC 9449 §4.3 checks and where they are implemented
//
// Verify (verify.go) runs the checks in this order, parsing the JWS once
// and verifying its signature once:
//
//	§4.3 (1)  one DPoP header              Verify: CheckMissing, CheckHeaderCount
//	          size cap before decoding     Verify: CheckSize (Config.MaxProofBytes)
//	§4.3 (2)  a single well-formed JWT     Verify + decodeB64 (jwk.go): CheckMalformed, CheckHeader
//	§4.3 (4)  typ is dpop+jwt (exact)      Verify: CheckTyp
//	§4.3 (5)  alg asymmetric, registered,  lookupAlgorithm (alg.go) and the
//	          not none, allowed            Config.AllowedAlgorithms set: CheckAlg
//	          no crit extensions           Verify: CheckCrit (RFC 7515 §4.1.11)
//	§4.3 (7)  jwk holds no private key     parseJWK (jwk.go): CheckJWKMissing, CheckJWKPrivate
//	§4.3 (5)  key type and curve fit alg,  parseJWK, parseECJWK, parseRSAJWK,
//	          RSA 2048-8192 bits, point    parseOKPJWK (jwk.go): CheckJWKAlgMismatch,
//	          on the curve                 CheckJWKInvalid
//	§4.3 (6)  signature verifies with jwk  verifySignature (alg.go): CheckSignature
//	§4.3 (3)  jti, htm, htu, iat present   Verify, jsonString, jsonNumericDate: CheckClaims,
//	                                       CheckJTI, CheckHTM, CheckHTU, CheckIAT
//	§4.3 (8)  htm is the request method    Verify: CheckHTM
//	§4.3 (9)  htu is the request URI,      normalizeHTU (htu.go), RFC 3986 §6.2.2-6.2.3:
//	          no query/fragment            CheckHTU
//	§4.3 (11) iat in [now-lifetime,        Verify: CheckIATTooOld, CheckIATInFuture
//	          now+skew]
//	§4.3 (12) ath = hash of access token   Verify, AccessTokenHash (jwk.go): CheckATH
//	§4.3 (12) key matches token's cnf.jkt  Verify, Thumbprint (jwk.go, RFC 7638): CheckJKTMismatch
//	§11.1     jti not seen for key+URI     State.Check, ReplayKey (state.go): CheckReplay
//	§4.3 (10) nonce is a server nonce      State.Check, NonceStore (state.go, memory.go,
//	          (checked after replay)       redis.go): CheckNonceMissing, CheckNonceInvalid
//
// # Shared state
//
// State.Check does replay detection, nonce validation and next-nonce issue
// in one call. RedisState runs it as one Lua script (EVALSHA): one round
// trip per request, atomic across nodes; every key has a TTL. The memory
// stores expire entries with a timing wheel (wheel.go) instead of scanning,
// keep pointer-free maps so the garbage collector does not walk them, and
// refuse work with ErrCapacity at a fixed cap rather than grow.
//
// Nothing in this package holds package-level mutable state; there is no
// init.
package dpop
