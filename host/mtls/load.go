package mtls

import (
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
)

// ParseCertificates parses a PEM document of certificates: every block
// must be a CERTIFICATE (a private key or anything else in a file that is
// meant to hold certificates is a mistake worth an error) and at least one
// must be present. Text outside the blocks is ignored, as in CA bundles.
func ParseCertificates(pemBytes []byte) ([]*x509.Certificate, error) {
	var out []*x509.Certificate
	for rest := pemBytes; ; {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("PEM block %d is %q, want CERTIFICATE", len(out), b.Type)
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("certificate %d: %w", len(out), err)
		}
		out = append(out, c)
	}
	if len(out) == 0 {
		return nil, errors.New("no CERTIFICATE PEM block")
	}
	return out, nil
}

// ReadCertificates reads a PEM file of certificates (see ParseCertificates).
func ReadCertificates(path string) ([]*x509.Certificate, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return ParseCertificates(raw)
}

// ReadJWKSCertificates reads the leaf certificate (the first x5c entry,
// base64 DER, RFC 7517 §4.7) of every key of a JWK Set file: the
// registration form RFC 8705 §2.2.2 gives self_signed_tls_client_auth.
// Keys without x5c are skipped; a set where none has one is an error.
func ReadJWKSCertificates(path string) ([]*x509.Certificate, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var set struct {
		Keys []struct {
			X5c []string `json:"x5c"`
		} `json:"keys"`
	}
	if err := json.Unmarshal(raw, &set); err != nil {
		return nil, fmt.Errorf("not a JWK Set: %w", err)
	}
	var out []*x509.Certificate
	for i, k := range set.Keys {
		if len(k.X5c) == 0 {
			continue
		}
		der, err := base64.StdEncoding.DecodeString(k.X5c[0])
		if err != nil {
			return nil, fmt.Errorf("keys[%d].x5c[0]: %w", i, err)
		}
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return nil, fmt.Errorf("keys[%d].x5c[0]: %w", i, err)
		}
		out = append(out, c)
	}
	if len(out) == 0 {
		return nil, errors.New("no key carries an x5c certificate")
	}
	return out, nil
}

// NewTrustStore returns a store whose anchors are roots (none: it trusts
// nothing, never the system roots).
func NewTrustStore(roots ...*x509.Certificate) *TrustStore {
	ts := &TrustStore{Roots: x509.NewCertPool()}
	for _, c := range roots {
		ts.Roots.AddCert(c)
	}
	return ts
}
