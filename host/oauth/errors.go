// Package oauth implements the grants, client authentication, issuance,
// introspection and revocation of the Authority, independent of HTTP
// routing: handlers in host/server turn requests into the typed requests of
// this package and render its typed errors.
package oauth

import (
	"context"
	"errors"
	"net/http"

	"stellaops.org/authority/host/store"
)

// Error is an OAuth error response (RFC 6749 §5.2, RFC 6750 §3, RFC 9449
// §7.1): HTTP status, error code, a description safe to show the client,
// and response headers that belong with it (WWW-Authenticate, DPoP-Nonce,
// Retry-After). Internal causes are logged by the caller, never sent.
type Error struct {
	Status      int
	Code        string
	Description string
	// Header holds extra response headers.
	Header http.Header
	// Reason is a short stable identifier for logs and metrics, never sent.
	Reason string
	// Cause is the internal error, logged, never sent.
	Cause error
}

func (e *Error) Error() string {
	if e.Description != "" {
		return e.Code + ": " + e.Description
	}
	return e.Code
}

// Unwrap exposes the internal cause to errors.Is/As.
func (e *Error) Unwrap() error { return e.Cause }

// WithHeader sets a response header and returns e.
func (e *Error) WithHeader(k, v string) *Error {
	if e.Header == nil {
		e.Header = http.Header{}
	}
	e.Header.Set(k, v)
	return e
}

// RFC 6749 §5.2, RFC 7009 §2.2.1, RFC 9449 §12.2 error codes.
const (
	CodeInvalidRequest         = "invalid_request"
	CodeInvalidClient          = "invalid_client"
	CodeInvalidGrant           = "invalid_grant"
	CodeUnauthorizedClient     = "unauthorized_client"
	CodeUnsupportedGrantType   = "unsupported_grant_type"
	CodeInvalidScope           = "invalid_scope"
	CodeInvalidTarget          = "invalid_target"
	CodeInvalidToken           = "invalid_token"
	CodeInvalidDPoPProof       = "invalid_dpop_proof"
	CodeUseDPoPNonce           = "use_dpop_nonce"
	CodeServerError            = "server_error"
	CodeTemporarilyUnavailable = "temporarily_unavailable"
	CodeUnsupportedTokenType   = "unsupported_token_type"
	CodeAccessDenied           = "access_denied"
)

// ErrInvalidRequest is a 400 invalid_request with a description.
func ErrInvalidRequest(desc string) *Error {
	return &Error{Status: http.StatusBadRequest, Code: CodeInvalidRequest, Description: desc, Reason: "invalid-request"}
}

// ErrInvalidClient is RFC 6749 §5.2 invalid_client: 401 with a
// WWW-Authenticate challenge for the Basic scheme.
func ErrInvalidClient(reason string) *Error {
	e := &Error{Status: http.StatusUnauthorized, Code: CodeInvalidClient, Description: "client authentication failed", Reason: reason}
	return e.WithHeader("WWW-Authenticate", `Basic realm="authority", charset="UTF-8"`)
}

// ErrServer is a 500 server_error; cause is logged, never sent.
func ErrServer(cause error) *Error {
	return &Error{Status: http.StatusInternalServerError, Code: CodeServerError, Description: "internal error", Reason: "internal", Cause: cause}
}

// RetryAfterSeconds is the Retry-After of every 503 the host itself
// answers (a store or state failure, a full queue, a request limit): the
// condition is expected to clear within the per-request deadline, and one
// second keeps a retrying fleet from re-arriving all at once faster than
// the store can recover.
const RetryAfterSeconds = "1"

// ErrUnavailable is a 503 temporarily_unavailable with Retry-After; cause
// is logged. reason is a short stable identifier (store-timeout,
// store-busy, store-error, dpop-state, ...) for logs and metrics.
func ErrUnavailable(reason string, cause error) *Error {
	e := &Error{Status: http.StatusServiceUnavailable, Code: CodeTemporarilyUnavailable, Description: "the service is temporarily unavailable", Reason: reason, Cause: cause}
	return e.WithHeader("Retry-After", RetryAfterSeconds)
}

// storeUnavailable is the 503 for a failed token-store call, with the
// reason naming why: the per-request deadline passed (store-timeout), the
// store refused at once (store-busy, store-closed), or it failed.
func storeUnavailable(err error) *Error {
	switch {
	case errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled):
		return ErrUnavailable("store-timeout", err)
	case errors.Is(err, store.ErrBusy):
		return ErrUnavailable("store-busy", err)
	case errors.Is(err, store.ErrClosed):
		return ErrUnavailable("store-closed", err)
	}
	return ErrUnavailable("store-error", err)
}
