package mtls

import "crypto/subtle"

// MismatchReason says why a certificate-bound token was refused. The values
// are the reason label of the authority_mtls_mismatch_total metric.
type MismatchReason string

const (
	// MismatchContextMissing: the request did not arrive over TLS at all
	// (neither our handshake nor a trusted proxy's certificate header).
	MismatchContextMissing MismatchReason = "context-missing"
	// MismatchMissingCertificate: TLS, but the client presented no certificate.
	MismatchMissingCertificate MismatchReason = "missing-certificate"
	// MismatchThumbprint: the presented certificate is not the one the token
	// is bound to.
	MismatchThumbprint MismatchReason = "thumbprint-mismatch"
)

// AllMismatchReasons returns every reason CheckBinding can report, in a fixed
// order, so a metric can be pre-registered with each label value. The slice
// is new on each call.
func AllMismatchReasons() []MismatchReason {
	return []MismatchReason{MismatchContextMissing, MismatchMissingCertificate, MismatchThumbprint}
}

// CheckBinding enforces RFC 8705 §3: a token whose confirmation claim
// carries "x5t#S256" = boundThumbprint may only be used by a client
// presenting that very certificate. It returns (true, "") when the
// presented leaf's thumbprint equals boundThumbprint, compared in constant
// time, and otherwise false with the reason. An empty boundThumbprint never
// matches (fail closed): callers decide beforehand whether a token is bound.
// Only the leaf counts and nothing else about it is checked (no chain, no
// validity period): the binding is to that exact certificate, whose key the
// TLS handshake proved, and the token's own lifetime bounds its use. A
// client that rotates its certificate needs a new token (RFC 8705 §6.3).
func CheckBinding(p Presented, boundThumbprint string) (ok bool, reason MismatchReason) {
	if p.Leaf == nil {
		if p.TLS {
			return false, MismatchMissingCertificate
		}
		return false, MismatchContextMissing
	}
	got := Thumbprint(p.Leaf)
	if boundThumbprint == "" || subtle.ConstantTimeCompare([]byte(got), []byte(boundThumbprint)) != 1 {
		return false, MismatchThumbprint
	}
	return true, ""
}
