// Package mtlstest generates X.509 certificates for tests of mutual-TLS code:
// a root CA, intermediates, client and server leaves, and self-signed client
// certificates, each returned in every form a test needs (a tls.Certificate
// ready for a tls.Config, the parsed *x509.Certificate, and PEM bytes).
//
// Keys are ECDSA P-256 so that generation stays fast. Nothing here is
// suitable for production: keys are created on the fly and never protected.
package mtlstest

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/netip"
	"net/url"
	"testing"
	"time"
)

// Cert is one generated certificate with its key, in every form a test needs.
type Cert struct {
	// TLS holds the leaf followed by the issuing intermediates (never the
	// root), so a peer configured with it sends the whole chain.
	TLS tls.Certificate
	// Cert is the parsed certificate itself.
	Cert *x509.Certificate
	// Chain holds the intermediates between Cert and the root, nearest first.
	Chain []*x509.Certificate
	// Key is the private key of Cert.
	Key crypto.Signer
	// CertPEM is Cert alone, PEM-encoded ("CERTIFICATE" block).
	CertPEM []byte
	// ChainPEM is Cert followed by Chain, PEM-encoded.
	ChainPEM []byte
	// KeyPEM is Key as a PKCS #8 "PRIVATE KEY" PEM block.
	KeyPEM []byte
}

// CA is a certificate authority (a root or an intermediate) that can issue
// leaves and further intermediates.
type CA struct {
	Cert
}

// Pool returns a new pool holding only this CA's certificate, for use as
// tls.Config.RootCAs or a trust store's roots.
func (ca *CA) Pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.Cert.Cert)
	return p
}

// Options describes a leaf certificate. The zero value gives a certificate
// valid from one hour ago to 24 hours from now, for client authentication
// only, with the subject CN "client".
type Options struct {
	// Subject overrides the subject name; when nil, CommonName is used.
	Subject *pkix.Name
	// CommonName is the subject CN when Subject is nil ("client" if empty).
	CommonName string
	// RawSubject, when set, is used verbatim as the DER subject, overriding
	// Subject and CommonName (for multi-valued RDNs or unusual string types).
	RawSubject []byte
	DNSNames   []string
	// URIs are SAN URIs, parsed with url.Parse (test input must be valid).
	URIs   []string
	IPs    []netip.Addr
	Emails []string
	// ExtKeyUsage defaults to [ClientAuth]; set NoExtKeyUsage to omit the
	// extension entirely.
	ExtKeyUsage   []x509.ExtKeyUsage
	NoExtKeyUsage bool
	// NotBefore and NotAfter default to now-1h and now+24h.
	NotBefore, NotAfter time.Time
}

// NewCA returns a self-signed root CA valid from one hour ago for ten years.
func NewCA(t testing.TB, commonName string) *CA {
	t.Helper()
	key := newKey(t)
	tmpl := caTemplate(t, commonName, 10)
	return &CA{Cert: sign(t, tmpl, tmpl, key, key, nil)}
}

// Intermediate returns a CA certificate issued by ca, valid from one hour ago
// for five years. Its TLS and Chain fields carry the path up to (excluding)
// the root.
func (ca *CA) Intermediate(t testing.TB, commonName string) *CA {
	t.Helper()
	key := newKey(t)
	return &CA{Cert: sign(t, caTemplate(t, commonName, 5), ca.Cert.Cert, key, ca.Key, ca.issuedChain())}
}

// caTemplate is a CA certificate valid from one hour ago for years years.
func caTemplate(t testing.TB, commonName string, years int) *x509.Certificate {
	now := time.Now()
	return &x509.Certificate{
		SerialNumber:          serial(t),
		Subject:               pkix.Name{CommonName: commonName, Organization: []string{"StellaOps Test"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.AddDate(years, 0, 0),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
}

// Leaf returns an end-entity certificate issued by ca as described by opts.
func (ca *CA) Leaf(t testing.TB, opts Options) *Cert {
	t.Helper()
	key := newKey(t)
	tmpl := leafTemplate(t, opts)
	c := sign(t, tmpl, ca.Cert.Cert, key, ca.Key, ca.issuedChain())
	return &c
}

// SelfSigned returns a self-signed end-entity certificate described by opts,
// as used by RFC 8705 self_signed_tls_client_auth clients.
func SelfSigned(t testing.TB, opts Options) *Cert {
	t.Helper()
	key := newKey(t)
	tmpl := leafTemplate(t, opts)
	c := sign(t, tmpl, tmpl, key, key, nil)
	return &c
}

// issuedChain is the chain a certificate issued by ca carries: ca itself
// (unless it is a root) followed by ca's own chain.
func (ca *CA) issuedChain() []*x509.Certificate {
	if isSelfIssued(ca.Cert.Cert) {
		return nil
	}
	return append([]*x509.Certificate{ca.Cert.Cert}, ca.Chain...)
}

func isSelfIssued(c *x509.Certificate) bool {
	return string(c.RawIssuer) == string(c.RawSubject) && c.CheckSignatureFrom(c) == nil
}

func leafTemplate(t testing.TB, opts Options) *x509.Certificate {
	t.Helper()
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:   serial(t),
		NotBefore:      now.Add(-time.Hour),
		NotAfter:       now.Add(24 * time.Hour),
		KeyUsage:       x509.KeyUsageDigitalSignature,
		DNSNames:       opts.DNSNames,
		EmailAddresses: opts.Emails,
		ExtKeyUsage:    []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	if opts.Subject != nil {
		tmpl.Subject = *opts.Subject
	} else {
		cn := opts.CommonName
		if cn == "" {
			cn = "client"
		}
		tmpl.Subject = pkix.Name{CommonName: cn}
	}
	tmpl.RawSubject = opts.RawSubject
	for _, s := range opts.URIs {
		u, err := url.Parse(s)
		if err != nil {
			t.Fatalf("mtlstest: SAN URI %q: %v", s, err)
		}
		tmpl.URIs = append(tmpl.URIs, u)
	}
	for _, ip := range opts.IPs {
		tmpl.IPAddresses = append(tmpl.IPAddresses, net.IP(ip.AsSlice()))
	}
	if opts.ExtKeyUsage != nil {
		tmpl.ExtKeyUsage = opts.ExtKeyUsage
	}
	if opts.NoExtKeyUsage {
		tmpl.ExtKeyUsage = nil
	}
	if !opts.NotBefore.IsZero() {
		tmpl.NotBefore = opts.NotBefore
	}
	if !opts.NotAfter.IsZero() {
		tmpl.NotAfter = opts.NotAfter
	}
	return tmpl
}

func sign(t testing.TB, tmpl, parent *x509.Certificate, key, parentKey crypto.Signer, chain []*x509.Certificate) Cert {
	t.Helper()
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, key.Public(), parentKey)
	if err != nil {
		t.Fatalf("mtlstest: create certificate %q: %v", tmpl.Subject.CommonName, err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatalf("mtlstest: parse certificate: %v", err)
	}
	pkcs8, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatalf("mtlstest: marshal key: %v", err)
	}
	c := Cert{
		TLS:     tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: cert},
		Cert:    cert,
		Chain:   chain,
		Key:     key,
		CertPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		KeyPEM:  pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pkcs8}),
	}
	c.ChainPEM = append([]byte(nil), c.CertPEM...)
	for _, ic := range chain {
		c.TLS.Certificate = append(c.TLS.Certificate, ic.Raw)
		c.ChainPEM = append(c.ChainPEM, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ic.Raw})...)
	}
	return c
}

func newKey(t testing.TB) crypto.Signer {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatalf("mtlstest: generate key: %v", err)
	}
	return k
}

func serial(t testing.TB) *big.Int {
	t.Helper()
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		t.Fatalf("mtlstest: serial: %v", err)
	}
	return n.Add(n, big.NewInt(1))
}

// Server returns a TLS server certificate issued by ca for "localhost",
// 127.0.0.1 and ::1, for test servers whose clients trust ca.Pool().
func (ca *CA) Server(t testing.TB) *Cert {
	t.Helper()
	return ca.Leaf(t, Options{
		CommonName:  "localhost",
		DNSNames:    []string{"localhost"},
		IPs:         []netip.Addr{netip.MustParseAddr("127.0.0.1"), netip.IPv6Loopback()},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	})
}
