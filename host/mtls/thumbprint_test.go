package mtls_test

import (
	"crypto/x509"
	"encoding/pem"
	"os"
	"strings"
	"testing"

	"stellaops.org/authority/host/mtls"
	"stellaops.org/authority/host/mtls/mtlstest"
)

// TestRFC8705_3_1_ThumbprintIsBase64urlSHA256OfDER checks x5t#S256 against a
// value computed independently with
//
//	openssl x509 -in testdata/vector-cert.pem -outform DER |
//	  openssl dgst -sha256 -binary | base64 | tr '+/' '-_' | tr -d '='
func TestRFC8705_3_1_ThumbprintIsBase64urlSHA256OfDER(t *testing.T) {
	const want = "ma2PUyU6Sw_BziSROm53IOoli4RQLiJB2rrrMwiH1pA"
	raw, err := os.ReadFile("testdata/vector-cert.pem")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := pem.Decode(raw)
	cert, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if got := mtls.Thumbprint(cert); got != want {
		t.Errorf("Thumbprint = %q, want %q", got, want)
	}
	if got := mtls.ThumbprintDER(cert.Raw); got != want {
		t.Errorf("ThumbprintDER = %q, want %q", got, want)
	}

	// Shape over generated certificates: 43 characters, URL alphabet, no padding.
	for range 20 {
		tp := mtls.Thumbprint(mtlstest.SelfSigned(t, mtlstest.Options{}).Cert)
		if len(tp) != 43 || strings.ContainsAny(tp, "+/=") {
			t.Fatalf("thumbprint %q is not unpadded base64url of 32 bytes", tp)
		}
	}
}
