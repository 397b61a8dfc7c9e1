package dpop

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"time"
)

// ErrCapacity is returned (wrapped) by the memory stores when they hold
// their configured maximum of unexpired entries. It is an infrastructure
// error, never an *Error: the store refuses new work rather than grow
// without bound or forget entries that are still needed for replay safety.
var ErrCapacity = errors.New("dpop: state store is full")

// DefaultNonceTTL is the nonce lifetime used when NonceOptions.TTL is zero.
const DefaultNonceTTL = 300 * time.Second

// ReplayKey identifies one proof for RFC 9449 §11.1 replay detection: the
// SHA-256 of (key thumbprint, normalized htu, jti). Only the hash is stored.
type ReplayKey [32]byte

// NewReplayKey derives the replay key of a proof. Each part is length-
// prefixed so that no two different triples share an encoding.
func NewReplayKey(jkt, htu, jti string) ReplayKey {
	h := sha256.New()
	var n [4]byte
	for _, s := range [3]string{jkt, htu, jti} {
		binary.BigEndian.PutUint32(n[:], uint32(len(s)))
		h.Write(n[:])
		h.Write([]byte(s))
	}
	var k ReplayKey
	h.Sum(k[:0])
	return k
}

// ReplayCache remembers proofs for RFC 9449 §11.1.
type ReplayCache interface {
	// Remember atomically records key for ttl unless it is already
	// recorded. It returns true when the key was new (the proof may be
	// accepted) and false when it was already present and unexpired (a
	// replay). Across every client of one shared cache, at most one
	// concurrent caller sees true for the same key within ttl.
	Remember(ctx context.Context, key ReplayKey, ttl time.Duration) (bool, error)
}

// NonceStore is the seed's DPoPNonceStore: server-provided nonces of RFC 9449
// §8 and §9, partitioned by scope (tenant, client, audience...).
//
// A nonce returned by Issue is accepted by Validate for the same scope, on
// every node sharing the store, until its TTL ends. Nonces are 22 base64url
// characters (16 random bytes), a subset of RFC 9449's 1*NQCHAR.
//
// Default mode: each scope has one current nonce, replaced by a fresh one
// once half the TTL has passed; the replaced nonce stays valid until its own
// TTL ends. Storage is proportional to the number of active scopes, not to
// the request rate.
//
// SingleUse mode: Issue mints a new nonce every call and Validate spends it:
// exactly one Validate call sees true for it. Storage is proportional to
// the issue rate times the TTL.
type NonceStore interface {
	// Issue returns a nonce currently valid for scope.
	Issue(ctx context.Context, scope string) (string, error)
	// Validate reports whether nonce is currently valid for scope; in
	// SingleUse mode a valid nonce is atomically spent.
	Validate(ctx context.Context, scope, nonce string) (bool, error)
}

// NonceOptions configures a NonceStore.
type NonceOptions struct {
	// TTL is how long a nonce stays valid; 0 means DefaultNonceTTL.
	TTL time.Duration
	// SingleUse mints one nonce per Issue and spends it on first use.
	SingleUse bool
}

func (o NonceOptions) ttl() time.Duration {
	if o.TTL <= 0 {
		return DefaultNonceTTL
	}
	return o.TTL
}

// StateCheck is everything the Verifier asks of shared state for one proof
// whose cryptographic and claim checks all passed.
type StateCheck struct {
	// ReplayKey and ReplayTTL: record the proof, or report it as a replay.
	ReplayKey ReplayKey
	ReplayTTL time.Duration
	// ReplayScope is who the entry counts against (the client's tenant and
	// id): a memory store refuses a scope over its quota alone.
	ReplayScope string
	// Route is the proof key's thumbprint: a sharded store (RedisState on
	// a Redis Cluster) keeps the call's keys in its shard, so that every
	// replay of a proof meets its first use.
	Route string
	// NonceRequired: validate Nonce in NonceScope and issue the next nonce.
	NonceRequired bool
	// IssueNonce: issue the next nonce for NonceScope even when the nonce
	// is not required (every DPoP response carries one), in the same call.
	IssueNonce bool
	NonceScope string
	// Nonce is the proof's nonce claim ("" when absent).
	Nonce string
	// IssuedAt is the proof's iat, for stores that detect a loss of their
	// state (RedisState): a proof dated before the loss + LossMargin gets
	// StateLost unless its nonce is valid in the new state. Zero skips it.
	IssuedAt   time.Time
	LossMargin time.Duration
}

// StateResult is the outcome of one State.Check.
type StateResult struct {
	// Replayed: the replay key was already recorded. Nothing else was
	// changed (a single-use nonce is not spent by a replayed proof).
	Replayed bool
	// NonceValid: the presented nonce was valid for the scope (and, in
	// single-use mode, is now spent). Meaningful only when NonceRequired
	// and not Replayed.
	NonceValid bool
	// NextNonce is a currently valid nonce for the scope when NonceRequired
	// (or IssueNonce, or StateLost).
	NextNonce string
	// StateLost: the store lost its state (replay entries included) and
	// cannot tell whether this proof was used before; nothing was recorded.
	// The proof is not a replay: the client is asked for a nonce.
	StateLost bool
}

// State is the shared state a Verifier needs: the replay cache and the
// nonce store behind one call, so that a networked implementation answers
// a request in one round trip.
type State interface {
	// Check records the replay key (replay detection first), then, only if
	// the proof is not a replay and NonceRequired, validates (and in
	// single-use mode spends) the nonce, and issues the next nonce. The
	// whole check is atomic with respect to other Checks on the same keys.
	Check(ctx context.Context, c StateCheck) (StateResult, error)
	// Nonce returns a nonce currently valid for scope (NonceStore.Issue).
	Nonce(ctx context.Context, scope string) (string, error)
}

// nonceLen is the length of the nonces this package mints.
const nonceLen = 22

// newNonce returns base64url(16 random bytes) and the raw bytes.
func newNonce() (string, [16]byte) {
	var raw [16]byte
	_, _ = rand.Read(raw[:]) // crypto/rand.Read never fails (Go 1.24+)
	return base64.RawURLEncoding.EncodeToString(raw[:]), raw
}

// parseNonce reports whether s has the shape of a nonce minted here and
// returns its raw bytes. Other values can never be valid: they are refused
// without touching the store.
func parseNonce(s string) ([16]byte, bool) {
	var raw [16]byte
	if len(s) != nonceLen {
		return raw, false
	}
	b, ok := decodeB64(s)
	if !ok || len(b) != 16 {
		return raw, false
	}
	copy(raw[:], b)
	return raw, true
}

// scopeID is a fixed-size, pointer-free identifier of a nonce scope.
func scopeID(scope string) [16]byte {
	sum := sha256.Sum256([]byte(scope))
	var id [16]byte
	copy(id[:], sum[:16])
	return id
}
