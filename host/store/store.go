// Package store defines the token store of the Authority: the source of truth
// for introspection and revocation of the access and refresh tokens it issues.
//
// Access tokens are self-contained JWTs, but a resource server or the
// Authority itself must still be able to ask "is this jti active, and what is
// it bound to?". TokenStore answers that. Two implementations exist: Memory
// (this package, for a single node or a laptop) and host/store/postgres (for
// several nodes). Both pass the contract suite in host/store/storetest.
package store

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Status is the lifecycle state of a stored token.
type Status string

// Token statuses. A token only ever moves from StatusActive to
// StatusRevoked or StatusRotated, and never back.
const (
	StatusActive  Status = "active"
	StatusRevoked Status = "revoked"
	// StatusRotated: a refresh token that was used (Rotate). Presenting it
	// again is reuse, which revokes its family (RFC 9700 §4.14.2).
	StatusRotated Status = "rotated"
)

// Kind says what a token is used for.
type Kind string

// Token kinds.
const (
	KindAccessToken  Kind = "access_token"
	KindRefreshToken Kind = "refresh_token"
)

// Sender-constraint values for Token.SenderConstraint.
const (
	ConstraintNone     = "none"
	ConstraintDPoP     = "dpop"
	ConstraintMTLS     = "mtls"
	ConstraintDPoPMTLS = "dpop+mtls"
)

// MaxIDLength is the largest token ID (JWT jti) a store accepts, in bytes.
const MaxIDLength = 128

// Token is one issued token as the store records it.
//
// Stores keep tokens in canonical form (see Canonical): times in UTC with
// microsecond precision, empty slices as nil, an empty Status as
// StatusActive and an empty SenderConstraint as ConstraintNone.
type Token struct {
	ID                string // the JWT jti; opaque, 1..MaxIDLength bytes
	Kind              Kind
	Tenant            string
	ClientID          string
	Subject           string
	Scopes            []string
	Audiences         []string
	IssuedAt          time.Time
	ExpiresAt         time.Time
	Status            Status
	RevokedAt         time.Time // when it stopped being active (revoked or rotated); zero while active
	SenderConstraint  string    // ConstraintNone, ConstraintDPoP, ConstraintMTLS or ConstraintDPoPMTLS
	KeyThumbprint     string    // DPoP cnf.jkt; "" unless the constraint includes dpop
	SenderCertificate string    // mTLS cnf x5t#S256; "" unless the constraint includes mtls
	ParentID          string    // the token this one was derived from (refresh lineage); "" if none
	// AuthTime is when the subject (or, without one, the client)
	// authenticated for the grant this token comes from; a refresh-token
	// family's absolute lifetime counts from it. Zero when not recorded.
	AuthTime time.Time
}

// Errors returned by every TokenStore. Implementations wrap them with %w, so
// compare with errors.Is.
var (
	// ErrNotFound: no token with that ID is stored (never issued, or purged
	// after it expired).
	ErrNotFound = errors.New("store: token not found")
	// ErrDuplicate: a token with that ID is already stored; the stored one is
	// left unchanged.
	ErrDuplicate = errors.New("store: duplicate token id")
	// ErrInvalidToken: the token fails Canonical's checks; nothing was stored.
	ErrInvalidToken = errors.New("store: invalid token")
	// ErrClosed: the store has been closed.
	ErrClosed = errors.New("store: closed")
	// ErrBusy means the store refused the call at once rather than queue
	// it behind work it cannot finish in time (a full write queue): a
	// retryable condition, answered 503 with Retry-After.
	ErrBusy = errors.New("store: busy")
	// ErrNotActive: Rotate found the token revoked or already rotated.
	ErrNotActive = errors.New("store: token not active")
)

// TokenStore records issued tokens and their revocation. All methods are safe
// for concurrent use.
type TokenStore interface {
	// Put stores a canonical copy of t. It returns nil only once the token is
	// durable for that implementation (for PostgreSQL: committed). It returns
	// an error wrapping ErrDuplicate if the ID is already stored,
	// ErrInvalidToken if t fails Canonical, or ctx.Err() if ctx ends first
	// (see the implementation for whether the token may still be stored in
	// that case). With an already-ended ctx nothing is stored. The caller
	// may modify t after Put returns.
	Put(ctx context.Context, t *Token) error
	// Get returns a copy of the stored token, in canonical form, or an error
	// wrapping ErrNotFound. The caller owns the copy. A token past its
	// ExpiresAt may still be returned until it is purged: callers decide
	// activity from Status and ExpiresAt.
	Get(ctx context.Context, id string) (*Token, error)
	// Revoke marks the token revoked at `at` (canonicalized). It is
	// idempotent: revoking a revoked token reports true and keeps the first
	// RevokedAt. It reports false, with a nil error, if no such token is
	// stored.
	Revoke(ctx context.Context, id string, at time.Time) (revoked bool, err error)
	// RevokeByParent revokes, at `at`, every active token descended from
	// parentID (its children, their children, and so on; not parentID
	// itself) and reports how many it revoked. It is how a refresh-token
	// family is invalidated when reuse is detected.
	RevokeByParent(ctx context.Context, parentID string, at time.Time) (int64, error)
	// Rotate uses up an active token: it moves it to StatusRotated at `at`
	// (canonicalized) and returns it as it was before the call. Of
	// concurrent calls for one token, on any number of nodes, exactly one
	// succeeds. A token that is not active is returned unchanged with an
	// error wrapping ErrNotActive (its Status says whether it was revoked
	// or rotated); an unknown one gives ErrNotFound. Rotate does not look
	// at ExpiresAt: the caller decides expiry.
	Rotate(ctx context.Context, id string, at time.Time) (*Token, error)
	// Ping reports whether the store can serve requests (for /readyz).
	Ping(ctx context.Context) error
	// Close releases the store's resources after finishing accepted writes.
	// Calling it more than once is safe; other methods then return ErrClosed.
	Close() error
}

// CanonicalTime returns t in UTC truncated to microseconds, the precision
// every store keeps. The zero time stays zero.
func CanonicalTime(t time.Time) time.Time {
	if t.IsZero() {
		return time.Time{}
	}
	return t.UTC().Truncate(time.Microsecond)
}

// Canonical checks t and returns a deep copy in canonical form, or an error
// wrapping ErrInvalidToken that names the offending field. The checks:
// ID is 1..MaxIDLength bytes; Kind is known; IssuedAt and ExpiresAt are set
// and ExpiresAt is not before IssuedAt; Status is known (empty means active);
// RevokedAt is set exactly when the token is revoked; SenderConstraint is
// known (empty means none) and KeyThumbprint / SenderCertificate are set
// exactly when it includes dpop / mtls; ParentID differs from ID.
func Canonical(t *Token) (*Token, error) {
	if t == nil {
		return nil, fmt.Errorf("%w: nil token", ErrInvalidToken)
	}
	c := t.Clone()
	c.IssuedAt = CanonicalTime(c.IssuedAt)
	c.ExpiresAt = CanonicalTime(c.ExpiresAt)
	c.RevokedAt = CanonicalTime(c.RevokedAt)
	c.AuthTime = CanonicalTime(c.AuthTime)
	if c.Status == "" {
		c.Status = StatusActive
	}
	if c.SenderConstraint == "" {
		c.SenderConstraint = ConstraintNone
	}
	if len(c.Scopes) == 0 {
		c.Scopes = nil
	}
	if len(c.Audiences) == 0 {
		c.Audiences = nil
	}
	if err := c.validate(); err != nil {
		return nil, fmt.Errorf("%w: %s", ErrInvalidToken, err.Error())
	}
	return c, nil
}

func (t *Token) validate() error {
	switch {
	case t.ID == "":
		return errors.New("id: must not be empty")
	case len(t.ID) > MaxIDLength:
		return fmt.Errorf("id: longer than %d bytes", MaxIDLength)
	case t.Kind != KindAccessToken && t.Kind != KindRefreshToken:
		return fmt.Errorf("kind: unknown value %q", t.Kind)
	case t.IssuedAt.IsZero():
		return errors.New("issuedAt: must be set")
	case t.ExpiresAt.IsZero():
		return errors.New("expiresAt: must be set")
	case t.ExpiresAt.Before(t.IssuedAt):
		return errors.New("expiresAt: before issuedAt")
	case t.ParentID == t.ID:
		return errors.New("parentId: must differ from id")
	}
	switch t.Status {
	case StatusActive:
		if !t.RevokedAt.IsZero() {
			return errors.New("revokedAt: must be zero for an active token")
		}
	case StatusRevoked, StatusRotated:
		if t.RevokedAt.IsZero() {
			return fmt.Errorf("revokedAt: must be set for a %s token", t.Status)
		}
	default:
		return fmt.Errorf("status: unknown value %q", t.Status)
	}
	var dpop, mtls bool
	switch t.SenderConstraint {
	case ConstraintNone:
	case ConstraintDPoP:
		dpop = true
	case ConstraintMTLS:
		mtls = true
	case ConstraintDPoPMTLS:
		dpop, mtls = true, true
	default:
		return fmt.Errorf("senderConstraint: unknown value %q", t.SenderConstraint)
	}
	if dpop != (t.KeyThumbprint != "") {
		return fmt.Errorf("keyThumbprint: must be set exactly when senderConstraint includes dpop (senderConstraint %q)", t.SenderConstraint)
	}
	if mtls != (t.SenderCertificate != "") {
		return fmt.Errorf("senderCertificate: must be set exactly when senderConstraint includes mtls (senderConstraint %q)", t.SenderConstraint)
	}
	return nil
}

// Clone returns a deep copy of t (nil for nil) sharing no slices with it.
func (t *Token) Clone() *Token {
	if t == nil {
		return nil
	}
	c := *t
	c.Scopes = cloneStrings(t.Scopes)
	c.Audiences = cloneStrings(t.Audiences)
	return &c
}

func cloneStrings(s []string) []string {
	if s == nil {
		return nil
	}
	return append(make([]string, 0, len(s)), s...)
}
