// Package devpki generates, on first run, the development PKI that lets
// `make run` serve HTTPS with client certificates and no manual steps: a CA,
// a server certificate for 127.0.0.1 and localhost, and the demo-mtls client
// certificate (SAN URI urn:stellaops:client:demo-mtls). Files are
// unencrypted PEM; existing files are reused, never overwritten. Development
// only: the CA key sits beside the certificates.
package devpki

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"time"

	"stellaops.org/authority/host/keys"
)

// File names inside the PKI directory.
const (
	CACert         = "ca.crt"
	CAKey          = "ca.key"
	ServerCert     = "server.crt"
	ServerKey      = "server.key"
	DemoClientCert = "demo-mtls.crt"
	DemoClientKey  = "demo-mtls.key"
	// DemoClientURI is the SAN URI of the demo client certificate, in the
	// StellaOps convention urn:stellaops:client:{client_id}.
	DemoClientURI = "urn:stellaops:client:demo-mtls"
)

// PKI is the loaded development PKI.
type PKI struct {
	Dir        string
	CA         *x509.Certificate
	Server     tls.Certificate
	DemoClient *x509.Certificate
}

// Ensure loads the PKI in dir, generating whatever is missing. If the CA
// is regenerated, every certificate it signed is regenerated too.
func Ensure(dir string, now time.Time) (*PKI, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("tls.devPki: %w", err)
	}
	p := func(n string) string { return filepath.Join(dir, n) }
	caKey, caCert, fresh, err := ensureCA(p(CACert), p(CAKey), now)
	if err != nil {
		return nil, fmt.Errorf("tls.devPki: %w", err)
	}
	if fresh {
		for _, n := range []string{ServerCert, ServerKey, DemoClientCert, DemoClientKey} {
			_ = os.Remove(p(n))
		}
	}
	if err := ensureLeaf(p(ServerCert), p(ServerKey), caCert, caKey, now, func(t *x509.Certificate) {
		t.Subject = pkix.Name{CommonName: "authority dev server"}
		t.DNSNames = []string{"localhost"}
		t.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback}
		t.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
	}); err != nil {
		return nil, fmt.Errorf("tls.devPki: server certificate: %w", err)
	}
	if err := ensureLeaf(p(DemoClientCert), p(DemoClientKey), caCert, caKey, now, func(t *x509.Certificate) {
		u, _ := url.Parse(DemoClientURI)
		t.Subject = pkix.Name{CommonName: "demo-mtls", Organization: []string{"StellaOps demo"}}
		t.URIs = []*url.URL{u}
		t.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	}); err != nil {
		return nil, fmt.Errorf("tls.devPki: demo client certificate: %w", err)
	}
	srv, err := tls.LoadX509KeyPair(p(ServerCert), p(ServerKey))
	if err != nil {
		return nil, fmt.Errorf("tls.devPki: %w", err)
	}
	demo, err := readCert(p(DemoClientCert))
	if err != nil {
		return nil, fmt.Errorf("tls.devPki: %w", err)
	}
	return &PKI{Dir: dir, CA: caCert, Server: srv, DemoClient: demo}, nil
}

func ensureCA(certPath, keyPath string, now time.Time) (*ecdsa.PrivateKey, *x509.Certificate, bool, error) {
	if c, err := readCert(certPath); err == nil {
		if raw, kerr := os.ReadFile(keyPath); kerr == nil {
			if k, perr := keys.ParsePrivateKey(raw); perr == nil && now.Before(c.NotAfter) {
				return k, c, false, nil
			}
		}
	}
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, false, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: "authority dev CA", Organization: []string{"StellaOps development"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.AddDate(5, 0, 0),
		IsCA:                  true,
		BasicConstraintsValid: true,
		MaxPathLen:            1,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		return nil, nil, false, err
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, false, err
	}
	if err := writeKey(keyPath, k); err != nil {
		return nil, nil, false, err
	}
	if err := keys.WriteFileAtomic(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		return nil, nil, false, err
	}
	return k, c, true, nil
}

func ensureLeaf(certPath, keyPath string, ca *x509.Certificate, caKey *ecdsa.PrivateKey, now time.Time, shape func(*x509.Certificate)) error {
	if c, err := readCert(certPath); err == nil && now.Before(c.NotAfter) && c.CheckSignatureFrom(ca) == nil {
		if _, err := os.Stat(keyPath); err == nil {
			return nil
		}
	}
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.AddDate(1, 0, 0),
		KeyUsage:     x509.KeyUsageDigitalSignature,
	}
	shape(tmpl)
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &k.PublicKey, caKey)
	if err != nil {
		return err
	}
	if err := writeKey(keyPath, k); err != nil {
		return err
	}
	return keys.WriteFileAtomic(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
}

func writeKey(path string, k *ecdsa.PrivateKey) error {
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		return err
	}
	return keys.WriteFileAtomic(path, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600)
}

func readCert(path string) (*x509.Certificate, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	blk, _ := pem.Decode(raw)
	if blk == nil || blk.Type != "CERTIFICATE" {
		return nil, errors.New(path + ": no CERTIFICATE PEM block")
	}
	return x509.ParseCertificate(blk.Bytes)
}

func serial() *big.Int {
	n, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	return n
}
