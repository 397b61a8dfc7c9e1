package mtls

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
)

// Thumbprint returns the RFC 8705 §3.1 "x5t#S256" value of cert: the
// base64url encoding, without padding, of the SHA-256 digest of the
// certificate's DER encoding (cert.Raw). The result is always 43 characters.
// It is the value stored in a token's cnf claim and in the token store's
// sender_certificate column, and compared by CheckBinding.
func Thumbprint(cert *x509.Certificate) string {
	return ThumbprintDER(cert.Raw)
}

// ThumbprintDER is Thumbprint over an already-encoded certificate, for
// callers holding DER bytes (for example a JWK "x5c" entry after base64
// decoding). It does not check that der is a certificate.
func ThumbprintDER(der []byte) string {
	sum := sha256.Sum256(der)
	return base64.RawURLEncoding.EncodeToString(sum[:])
}
