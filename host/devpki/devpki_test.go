package devpki

import (
	"crypto/x509"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestEnsureGeneratesThenReuses(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "pki")
	now := time.Now()
	p1, err := Ensure(dir, now)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{CACert, CAKey, ServerCert, ServerKey, DemoClientCert, DemoClientKey} {
		if _, err := os.Stat(filepath.Join(dir, n)); err != nil {
			t.Fatalf("%s: %v", n, err)
		}
	}
	if st, _ := os.Stat(filepath.Join(dir, DemoClientKey)); st.Mode().Perm() != 0o600 {
		t.Fatalf("private keys must be 0600, got %v", st.Mode().Perm())
	}
	roots := x509.NewCertPool()
	roots.AddCert(p1.CA)
	if _, err := p1.DemoClient.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Fatalf("demo client certificate does not chain for clientAuth: %v", err)
	}
	if len(p1.DemoClient.URIs) != 1 || p1.DemoClient.URIs[0].String() != DemoClientURI {
		t.Fatalf("demo client SAN URI %v", p1.DemoClient.URIs)
	}
	leaf, err := x509.ParseCertificate(p1.Server.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	if err := leaf.VerifyHostname("127.0.0.1"); err != nil {
		t.Fatal(err)
	}
	if err := leaf.VerifyHostname("localhost"); err != nil {
		t.Fatal(err)
	}
	p2, err := Ensure(dir, now)
	if err != nil {
		t.Fatal(err)
	}
	if !p2.CA.Equal(p1.CA) || !p2.DemoClient.Equal(p1.DemoClient) {
		t.Fatal("a second run must reuse the files")
	}
	// A missing leaf is regenerated under the same CA.
	os.Remove(filepath.Join(dir, ServerCert))
	p3, err := Ensure(dir, now)
	if err != nil || !p3.CA.Equal(p1.CA) {
		t.Fatalf("regenerate server cert: %v", err)
	}
	// An expired CA is replaced together with everything it signed.
	p4, err := Ensure(dir, now.AddDate(6, 0, 0))
	if err != nil || p4.CA.Equal(p1.CA) || p4.DemoClient.Equal(p1.DemoClient) {
		t.Fatalf("expired CA not replaced: %v", err)
	}
}
