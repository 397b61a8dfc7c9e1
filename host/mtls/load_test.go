package mtls_test

import (
	"crypto/x509"
	"encoding/base64"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"stellaops.org/authority/host/mtls"
	"stellaops.org/authority/host/mtls/mtlstest"
)

func writeFile(t *testing.T, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// A certificate file holds certificates and nothing else; text around the
// blocks (a bundle's comments) is allowed.
func TestReadCertificates(t *testing.T) {
	a := mtlstest.SelfSigned(t, mtlstest.Options{CommonName: "a"})
	b := mtlstest.SelfSigned(t, mtlstest.Options{CommonName: "b"})
	bundle := append(append([]byte("# roots of the test\n"), a.CertPEM...), b.CertPEM...)
	certs, err := mtls.ReadCertificates(writeFile(t, "bundle.pem", bundle))
	if err != nil || len(certs) != 2 || !certs[0].Equal(a.Cert) || !certs[1].Equal(b.Cert) {
		t.Fatalf("bundle: %d certificates, %v", len(certs), err)
	}
	for _, tc := range []struct {
		name string
		data []byte
		want string
	}{
		{"a private key", a.KeyPEM, `"PRIVATE KEY", want CERTIFICATE`},
		{"a key after a certificate", append(append([]byte{}, a.CertPEM...), a.KeyPEM...), "PEM block 1"},
		{"no PEM at all", []byte("not a certificate"), "no CERTIFICATE PEM block"},
		{"a corrupt certificate", []byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"), "certificate 0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := mtls.ReadCertificates(writeFile(t, "x.pem", tc.data))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to say %q", err, tc.want)
			}
		})
	}
	if _, err := mtls.ReadCertificates(filepath.Join(t.TempDir(), "missing.pem")); !os.IsNotExist(err) {
		t.Fatalf("missing file: %v", err)
	}
}

// RFC 8705 §2.2.2: a self-signed client registers its certificate as the
// x5c of a JWK; the leaf (first entry) of every key that has one counts.
func TestRFC8705_2_2_2_JWKSCertificates(t *testing.T) {
	a := mtlstest.SelfSigned(t, mtlstest.Options{CommonName: "a"})
	x5c := base64.StdEncoding.EncodeToString(a.Cert.Raw)
	certs, err := mtls.ReadJWKSCertificates(writeFile(t, "jwks.json",
		[]byte(`{"keys":[{"kty":"EC"},{"kty":"EC","x5c":["`+x5c+`"]}]}`)))
	if err != nil || len(certs) != 1 || !certs[0].Equal(a.Cert) {
		t.Fatalf("%d certificates, %v", len(certs), err)
	}
	for _, tc := range []struct{ name, doc, want string }{
		{"not JSON", `{`, "not a JWK Set"},
		{"no x5c anywhere", `{"keys":[{"kty":"EC"}]}`, "no key carries an x5c"},
		{"x5c not base64", `{"keys":[{"x5c":["***"]}]}`, "keys[0].x5c[0]"},
		{"x5c not a certificate", `{"keys":[{},{"x5c":["AAAA"]}]}`, "keys[1].x5c[0]"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := mtls.ReadJWKSCertificates(writeFile(t, "jwks.json", []byte(tc.doc)))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to say %q", err, tc.want)
			}
		})
	}
}

// A trust store trusts exactly its roots: an empty one trusts nothing.
func TestNewTrustStore(t *testing.T) {
	ca := mtlstest.NewCA(t, "tenant root")
	leaf := ca.Leaf(t, mtlstest.Options{CommonName: "svc"})
	other := mtlstest.NewCA(t, "other root").Leaf(t, mtlstest.Options{CommonName: "svc"})
	ts := mtls.NewTrustStore(ca.Cert.Cert)
	if _, err := leaf.Cert.Verify(x509Opts(ts)); err != nil {
		t.Fatalf("leaf of the root: %v", err)
	}
	if _, err := other.Cert.Verify(x509Opts(ts)); err == nil {
		t.Fatal("a leaf of another root verified")
	}
	if _, err := leaf.Cert.Verify(x509Opts(mtls.NewTrustStore())); err == nil {
		t.Fatal("an empty store trusted a leaf")
	}
}

func x509Opts(ts *mtls.TrustStore) x509.VerifyOptions {
	return x509.VerifyOptions{Roots: ts.Roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
}
