package mtls

import (
	"strings"
	"testing"
)

// TestRFC4514_MultiValuedRDNIsASet: the attributes of a multi-valued RDN
// compare as a set (any order), and an RDN is never confused with one
// attribute whose value spells several: "+" inside a value is data.
func TestRFC4514_MultiValuedRDNIsASet(t *testing.T) {
	cases := []struct {
		a, b  string
		equal bool
	}{
		{"CN=a+O=b,C=DE", "O=b+CN=a,C=DE", true},
		{"CN=a+O=b+UID=7,C=DE", "UID=7+CN=a+O=b,C=DE", true},
		{"cn=A + o=B", "O=b+CN=a", true},
		{"CN=a+O=b", "CN=a,O=b", false},
		{"CN=a+O=b", "CN=a", false},
		{"CN=a+O=b", "CN=a+O=b+O=b", false},
		{"CN=a+C=b", `CN=a\+2.5.4.6=s:b`, false},
		{"CN=a+C=b", `CN=a\2b2.5.4.6=s:b`, false},
		{`CN=a\+b`, `CN=a\2bb`, true},
	}
	for _, tc := range cases {
		a, err := parseDNString(tc.a)
		if err != nil {
			t.Fatalf("%q: %v", tc.a, err)
		}
		b, err := parseDNString(tc.b)
		if err != nil {
			t.Fatalf("%q: %v", tc.b, err)
		}
		if a.equal(b) != tc.equal || b.equal(a) != tc.equal {
			t.Errorf("%q vs %q: equal = %v, want %v", tc.a, tc.b, a.equal(b), tc.equal)
		}
	}
}

// TestRFC4514_DottedOIDMustBeValid: a numericoid attribute type must be an
// OID a certificate can carry (X.660 first and second arcs, 31-bit arcs).
func TestRFC4514_DottedOIDMustBeValid(t *testing.T) {
	for _, typ := range []string{"0.9.2342.19200300.100.1.1", "1.2.840.113549.1.9.1", "2.5.4.3", "2.999.1", "1.39", "0.0"} {
		if _, err := parseDNString(typ + "=x"); err != nil {
			t.Errorf("%s refused: %v", typ, err)
		}
	}
	for _, typ := range []string{"3.1", "9.2.5", "1.40", "0.40.1", "2.5.4.2147483648", "2.5.4.99999999999999999999",
		"2", "2.", ".2.5", "2..5", "02.5", "2.05", "2.5.-4", "2.5.+4", "2.5.4.3a", "oid.2.5.4.3", "2.5.4.٣"} {
		if _, err := parseDNString(typ + "=x"); err == nil {
			t.Errorf("%s accepted", typ)
		}
	}
}

// A parsed DN renders to an RFC 4514 string that parses back to it.
func TestRFC4514_NormalizedDNStringRoundTrip(t *testing.T) {
	for _, s := range []string{
		"CN=client-1,OU=Platform,O=Stella Ops,C=DE",
		`CN=a\,b\+c\;d\<e\>f\"g\\h,O=Ünïcode GmbH`,
		`CN=\#hash,O=\ lead,OU=trail\ `,
		`CN=nul\00byte`,
		"CN=#1308636c69656e742d31+2.5.4.45=#030200ff",
		"CN=",
	} {
		dn, err := parseDNString(s)
		if err != nil {
			t.Fatalf("%q: %v", s, err)
		}
		again, err := parseDNString(dn.String())
		if err != nil || !again.equal(dn) {
			t.Errorf("%q rendered %q: %v %v", s, dn.String(), again, err)
		}
		if strings.Contains(dn.String(), "=s:") || strings.Contains(dn.String(), "=b:") {
			t.Errorf("%q rendered with comparison prefixes: %q", s, dn.String())
		}
	}
}
