package dpop

import (
	"context"
	"crypto"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strings"
	"time"
)

// maxJTILength bounds the jti claim: RFC 9449 §4.2 asks for 96 random bits
// (16 base64url characters) or a UUID (36); 256 leaves room for any sane
// encoding while keeping hostile input small.
const maxJTILength = 256

// Config is the Verifier's policy. Zero values are not defaults: the caller
// passes validated values and NewVerifier refuses anything unsafe.
type Config struct {
	// AllowedAlgorithms is the alg allow-list (RFC 9449 §4.3 (5)), a
	// non-empty subset of ES256 ES384 ES512 PS256 PS384 PS512 RS256 RS384
	// RS512 EdDSA Ed25519. "none" and HS* are refused by NewVerifier.
	AllowedAlgorithms []string
	// ProofLifetime is how far in the past iat may be.
	ProofLifetime time.Duration
	// AllowedClockSkew is how far in the future iat may be.
	AllowedClockSkew time.Duration
	// ReplayWindow is how long a jti is remembered; at least
	// ProofLifetime+AllowedClockSkew, so an entry never expires while its
	// proof could still be accepted.
	ReplayWindow time.Duration
	// MaxProofBytes caps the DPoP header value before any decoding.
	MaxProofBytes int
	// Now is the clock.
	Now func() time.Time
}

// Verifier checks DPoP proofs against RFC 9449 §4.3. It is safe for
// concurrent use; its configuration is fixed at construction.
type Verifier struct {
	algs     map[string]algorithm
	lifetime time.Duration
	skew     time.Duration
	window   time.Duration
	maxBytes int
	now      func() time.Time
	state    State
}

// NewVerifier validates cfg and returns a Verifier using state for replay
// detection and nonces. Errors name the offending Config field.
func NewVerifier(cfg Config, state State) (*Verifier, error) {
	if len(cfg.AllowedAlgorithms) == 0 {
		return nil, errors.New("dpop: Config.AllowedAlgorithms: must not be empty")
	}
	algs := make(map[string]algorithm, len(cfg.AllowedAlgorithms))
	for _, name := range cfg.AllowedAlgorithms {
		a, ok := lookupAlgorithm(name)
		if !ok {
			return nil, fmt.Errorf("dpop: Config.AllowedAlgorithms: %q is not a supported asymmetric signature algorithm", name)
		}
		algs[name] = a
	}
	switch {
	case cfg.ProofLifetime <= 0:
		return nil, errors.New("dpop: Config.ProofLifetime: must be > 0")
	case cfg.AllowedClockSkew < 0:
		return nil, errors.New("dpop: Config.AllowedClockSkew: must be >= 0")
	case cfg.ReplayWindow < cfg.ProofLifetime+cfg.AllowedClockSkew:
		return nil, errors.New("dpop: Config.ReplayWindow: must be >= ProofLifetime + AllowedClockSkew")
	case cfg.MaxProofBytes <= 0:
		return nil, errors.New("dpop: Config.MaxProofBytes: must be > 0")
	case cfg.Now == nil:
		return nil, errors.New("dpop: Config.Now: must be set (time.Now in production)")
	case state == nil:
		return nil, errors.New("dpop: state: must not be nil")
	}
	return &Verifier{
		algs:     algs,
		lifetime: cfg.ProofLifetime,
		skew:     cfg.AllowedClockSkew,
		window:   cfg.ReplayWindow,
		maxBytes: cfg.MaxProofBytes,
		now:      cfg.Now,
		state:    state,
	}, nil
}

// Request is what the caller knows about the HTTP request a proof came with.
type Request struct {
	// Header holds all values of the DPoP header
	// (http.Header.Values("DPoP")); exactly one is required.
	Header []string
	// Method is the request method, compared to htm case-sensitively.
	Method string
	// URL is the endpoint's configured public URL (never derived from the
	// Host header), compared to htu after normalization; its own query and
	// fragment are ignored too.
	URL string
	// AccessToken, when not empty, requires ath = base64url(SHA-256(token)).
	AccessToken string
	// BoundJKT, when not empty, requires the proof key's RFC 7638
	// thumbprint to equal it (the token's cnf.jkt).
	BoundJKT string
	// NonceRequired requires a valid server nonce for NonceScope and makes
	// Verify return the next nonce.
	NonceRequired bool
	// IssueNonce makes Verify return a next nonce for NonceScope even when
	// NonceRequired is false, in the same state call (nonces enabled but
	// optional for this request).
	IssueNonce bool
	// NonceScope partitions nonces (tenant, client, audience...).
	NonceScope string
	// ReplayScope is who the proof's replay entry counts against (tenant
	// and client), for per-client quotas of the replay cache.
	ReplayScope string
}

// Proof is a verified DPoP proof.
type Proof struct {
	// JKT is the RFC 7638 SHA-256 thumbprint of Key, for cnf.jkt.
	JKT string
	// JTI, HTM, HTU (as sent, not normalized), Alg and Nonce are the
	// proof's claims and header alg.
	JTI, HTU, HTM, Alg, Nonce string
	// IssuedAt is the iat claim.
	IssuedAt time.Time
	// Key is the public key: *ecdsa.PublicKey, *rsa.PublicKey or
	// ed25519.PublicKey.
	Key crypto.PublicKey
}

// Result is a successful verification.
type Result struct {
	// Proof is the verified proof.
	Proof *Proof
	// NextNonce, when Request.NonceRequired, is a currently valid nonce for
	// the scope, for the DPoP-Nonce response header.
	NextNonce string
}

// Nonce returns a currently valid nonce for scope, for responses that carry
// no verified proof (for example a missing DPoP header when nonces are
// required). Errors are infrastructure errors.
func (v *Verifier) Nonce(ctx context.Context, scope string) (string, error) {
	n, err := v.state.Nonce(ctx, scope)
	if err != nil {
		return "", fmt.Errorf("dpop: issuing nonce: %w", err)
	}
	return n, nil
}

// Verify checks one request's DPoP proof. It returns a Result only when
// every check below passed, an *Error naming the first failed check, or
// another error (wrapped with %w) when shared state could not be reached.
//
// The checks run in this order; the proof is parsed once and its signature
// verified once. Numbers refer to the list in RFC 9449 §4.3.
func (v *Verifier) Verify(ctx context.Context, r Request) (Result, error) {
	// (1) exactly one DPoP header.
	switch len(r.Header) {
	case 0:
		return Result{}, refuse(CheckMissing, "a DPoP proof is required")
	case 1:
	default:
		return Result{}, refuse(CheckHeaderCount, "exactly one DPoP header is allowed")
	}
	value := r.Header[0]
	if value == "" {
		return Result{}, refuse(CheckMissing, "a DPoP proof is required")
	}
	// Size cap before any decoding.
	if len(value) > v.maxBytes {
		return Result{}, refuse(CheckSize, "the DPoP proof is too large")
	}

	// (2) one compact JWS: three base64url parts (RFC 7515 §7.1).
	dot1 := strings.IndexByte(value, '.')
	dot2 := -1
	if dot1 >= 0 {
		if i := strings.IndexByte(value[dot1+1:], '.'); i >= 0 {
			dot2 = dot1 + 1 + i
		}
	}
	if dot1 <= 0 || dot2 < 0 || dot2 == dot1+1 || dot2 == len(value)-1 ||
		strings.IndexByte(value[dot2+1:], '.') >= 0 {
		return Result{}, refuse(CheckMalformed, "the DPoP proof is not a compact JWS")
	}
	headerJSON, ok1 := decodeB64(value[:dot1])
	payloadJSON, ok2 := decodeB64(value[dot1+1 : dot2])
	sig, ok3 := decodeB64(value[dot2+1:])
	if !ok1 || !ok2 || !ok3 {
		return Result{}, refuse(CheckMalformed, "the DPoP proof is not base64url encoded")
	}
	var header map[string]json.RawMessage
	if json.Unmarshal(headerJSON, &header) != nil || header == nil {
		return Result{}, refuse(CheckHeader, "the DPoP proof header is not a JSON object")
	}

	// (4) typ is exactly dpop+jwt (RFC 8725 §3.11 explicit typing).
	if typ, _ := jsonString(header, "typ"); typ != "dpop+jwt" {
		return Result{}, refuse(CheckTyp, "the DPoP proof typ must be dpop+jwt")
	}
	// (5) alg is asymmetric, registered, not none, and allowed here.
	algName, _ := jsonString(header, "alg")
	alg, ok := v.algs[algName]
	if !ok {
		return Result{}, refuse(CheckAlg, "the DPoP proof alg is not allowed")
	}
	// No JWS extension is understood, so a crit header cannot be honoured.
	if _, ok := header["crit"]; ok {
		return Result{}, refuse(CheckCrit, "the DPoP proof must not use critical header extensions")
	}
	// (7) and key half of (5): jwk present, public only, fits alg.
	rawJWK, ok := header["jwk"]
	if !ok {
		return Result{}, refuse(CheckJWKMissing, "the DPoP proof header has no jwk")
	}
	key, kerr := parseJWK(rawJWK, alg)
	if kerr != nil {
		return Result{}, kerr
	}
	// (6) the signature verifies with that key.
	if !verifySignature(alg, key.key, []byte(value[:dot2]), sig) {
		return Result{}, refuse(CheckSignature, "the DPoP proof signature is invalid")
	}

	// From here on the content is authentic: errors carry the proof.
	proof := &Proof{JKT: key.jkt, Alg: algName, Key: key.key}
	fail := func(e *Error) (Result, error) {
		e.Proof = proof
		return Result{}, e
	}

	// (3) required claims: jti, htm, htu, iat.
	var claims map[string]json.RawMessage
	if json.Unmarshal(payloadJSON, &claims) != nil || claims == nil {
		return fail(refuse(CheckClaims, "the DPoP proof payload is not a JSON object"))
	}
	jti, ok := jsonString(claims, "jti")
	if !ok || jti == "" || len(jti) > maxJTILength {
		return fail(refuse(CheckJTI, "the DPoP proof needs a jti of 1 to 256 characters"))
	}
	proof.JTI = jti
	htm, ok := jsonString(claims, "htm")
	if !ok {
		return fail(refuse(CheckHTM, "the DPoP proof has no htm"))
	}
	proof.HTM = htm
	htu, ok := jsonString(claims, "htu")
	if !ok {
		return fail(refuse(CheckHTU, "the DPoP proof has no htu"))
	}
	proof.HTU = htu
	iat, ok := jsonNumericDate(claims, "iat")
	if !ok {
		return fail(refuse(CheckIAT, "the DPoP proof needs a numeric iat"))
	}
	proof.IssuedAt = iat
	if n, ok := jsonString(claims, "nonce"); ok {
		proof.Nonce = n
	}

	// (8) htm is the request method.
	if htm != r.Method {
		return fail(refuse(CheckHTM, "the DPoP proof htm does not match the request method"))
	}
	// (9) htu is this endpoint, after normalization, without query/fragment.
	normHTU, ok := normalizeHTU(htu)
	if !ok {
		return fail(refuse(CheckHTU, "the DPoP proof htu is not an absolute http(s) URI"))
	}
	normURL, ok := normalizeHTU(r.URL)
	if !ok || normHTU != normURL {
		return fail(refuse(CheckHTU, "the DPoP proof htu does not match the request URI"))
	}
	// (11) iat within [now - lifetime, now + skew].
	now := v.now()
	if iat.Before(now.Add(-v.lifetime)) {
		return fail(refuse(CheckIATTooOld, "the DPoP proof is too old"))
	}
	if iat.After(now.Add(v.skew)) {
		return fail(refuse(CheckIATInFuture, "the DPoP proof is issued in the future"))
	}
	// (12) ath is the hash of the presented access token.
	if r.AccessToken != "" {
		ath, ok := jsonString(claims, "ath")
		if !ok || subtle.ConstantTimeCompare([]byte(ath), []byte(AccessTokenHash(r.AccessToken))) != 1 {
			return fail(refuse(CheckATH, "the DPoP proof ath does not match the access token"))
		}
	}
	// (12) the proof key is the key the token is bound to.
	if r.BoundJKT != "" && subtle.ConstantTimeCompare([]byte(key.jkt), []byte(r.BoundJKT)) != 1 {
		return fail(refuse(CheckJKTMismatch, "the DPoP proof key does not match the token binding"))
	}

	// §11.1 replay, then (10) nonce: one State call.
	res, err := v.state.Check(ctx, StateCheck{
		ReplayKey:     NewReplayKey(key.jkt, normHTU, jti),
		ReplayTTL:     v.replayTTL(iat, now),
		ReplayScope:   r.ReplayScope,
		Route:         key.jkt,
		NonceRequired: r.NonceRequired,
		IssueNonce:    r.IssueNonce,
		NonceScope:    r.NonceScope,
		Nonce:         proof.Nonce,
		IssuedAt:      iat,
		LossMargin:    2*v.skew + lossMarginFloor,
	})
	if err != nil {
		return Result{}, fmt.Errorf("dpop: checking replay and nonce state: %w", err)
	}
	if res.StateLost {
		// Not a replay: the store cannot tell. A nonce minted after the
		// loss proves the next proof is fresh (RFC 9449 §8).
		return fail(&Error{Code: CodeUseNonce, Check: CheckStateLost,
			Description: "a server-provided nonce is required in the DPoP proof", NextNonce: res.NextNonce})
	}
	if res.Replayed {
		e := refuse(CheckReplay, "the DPoP proof was already used")
		e.Replay = true
		e.NextNonce = res.NextNonce
		return fail(e)
	}
	if r.NonceRequired {
		if proof.Nonce == "" {
			return fail(&Error{Code: CodeUseNonce, Check: CheckNonceMissing,
				Description: "a server-provided nonce is required in the DPoP proof", NextNonce: res.NextNonce})
		}
		if !res.NonceValid {
			return fail(&Error{Code: CodeUseNonce, Check: CheckNonceInvalid,
				Description: "the DPoP proof nonce is invalid or expired", NextNonce: res.NextNonce})
		}
	}
	return Result{Proof: proof, NextNonce: res.NextNonce}, nil
}

// lossMarginFloor is added to 2 x allowedClockSkew after a state loss: the
// epoch is Redis's clock and the proof was judged by a node's, so a
// margin must remain for their drift even with a skew of 0.
const lossMarginFloor = 5 * time.Second

// replayTTL is how long the replay entry of a proof issued at iat and
// accepted at now must live: until iat + lifetime + skew by this node's
// clock, never less than the replay window. Any node whose clock is within
// allowedClockSkew of this one refuses the proof as too old (iat older than
// its now - lifetime) before the entry expires, so drift between nodes (and
// the gap between this node's clock and the store's TTL countdown) up to the
// skew cannot reopen a replay. A window of exactly lifetime + skew would
// leave no margin for a proof dated at the future edge (iat = now + skew).
func (v *Verifier) replayTTL(iat, now time.Time) time.Duration {
	return max(v.window, iat.Add(v.lifetime+v.skew).Sub(now))
}

// jsonNumericDate returns a NumericDate claim (RFC 7519 §2): a JSON number
// of seconds since the epoch, possibly fractional. Strings, null and values
// outside ±2^53 are refused.
func jsonNumericDate(m map[string]json.RawMessage, name string) (time.Time, bool) {
	raw, ok := m[name]
	if !ok || len(raw) == 0 || (raw[0] != '-' && (raw[0] < '0' || raw[0] > '9')) {
		return time.Time{}, false
	}
	var f float64
	if json.Unmarshal(raw, &f) != nil || math.IsNaN(f) || math.Abs(f) > 1<<53 {
		return time.Time{}, false
	}
	sec, frac := math.Modf(f)
	return time.Unix(int64(sec), int64(frac*1e9)), true
}
