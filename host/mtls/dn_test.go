package mtls

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/hex"
	"encoding/pem"
	"os"
	"slices"
	"strconv"
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

// FuzzParseDNString: the RFC 4514 parser never panics; what it accepts is a
// non-empty DN of non-empty, sorted RDNs with no more attributes than the
// string has '='; its rendering parses back to the same DN and renders the
// same again; and a certificate subject carrying exactly those attributes
// normalizes to the same DN, so a rule can match the certificate it names.
func FuzzParseDNString(f *testing.F) {
	for _, s := range []string{
		"CN=client-1,OU=Platform,O=Stella Ops,C=DE", "cn=CLIENT-1, ou = platform ,o=Stella   Ops , c=de",
		"CN=multi+UID=42,O=Stella Ops", "UID=42 + CN=multi;O=Stella Ops", `CN=a\,b\+c,O=\c3\9cn\c3\afcode GmbH`,
		"CN=#1308636c69656e742d31", "2.5.4.45=#030200ff", "0.9.2342.19200300.100.1.25=example", `CN=\#x\ ,O=\00`,
		"CN=", "EMAILADDRESS=a@example.com+SERIALNUMBER=1,POSTALCODE=1,STREET=x,L=y,ST=z,DC=q",
		"", " ", "CN", "CN=a,", "CN=a,,O=b", `CN=\`, `CN=\zz`, "CN=#", "CN=#zz", "CN=#0c", `CN="q"`, "CN=<", "XX=a",
		"3.1=a", "1.40=a", "2.5.4.99999999999=a", "CN=\xff", "CN=a+", "+CN=a",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		dn, err := parseDNString(s)
		if err != nil {
			if dn != nil {
				t.Fatal("DN returned with an error")
			}
			return
		}
		checkShape(t, dn, strings.Count(s, "="))
		r := dn.String()
		again, err := parseDNString(r)
		if err != nil || !again.equal(dn) {
			t.Fatalf("%q rendered as %q parses to %q, %v; want %q", s, r, again, err, dn)
		}
		if r2 := again.String(); r2 != r {
			t.Fatalf("rendering not stable: %q then %q", r, r2)
		}
		der, err := subjectDER(dn)
		if err != nil {
			t.Fatalf("%q: no certificate subject for %q: %v", s, dn, err)
		}
		got, err := parseRawSubject(der)
		if err != nil || !got.equal(dn) {
			t.Fatalf("%q: certificate subject normalizes to %q, %v; want %q", s, got, err, dn)
		}
	})
}

// FuzzParseRawSubject: the DER subject parser never panics; what it accepts
// has one entry per RDN, each sorted; and unless the subject is empty or has
// an empty RDN (which no RFC 4514 string expresses), its rendering is a
// valid rule that parses back to the same DN, so a certificate can be
// named by the string of its own subject.
func FuzzParseRawSubject(f *testing.F) {
	add := func(n pkix.RDNSequence) {
		b, err := asn1.Marshal(n)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	add(pkix.Name{CommonName: "client-1", Organization: []string{"Stella Ops"}, Country: []string{"DE"}}.ToRDNSequence())
	add(pkix.Name{CommonName: "a+2.5.4.6=s:b", Organization: []string{"Ünïcode GmbH"}}.ToRDNSequence())
	add(pkix.RDNSequence{{{Type: asn1.ObjectIdentifier{2, 5, 4, 3}, Value: "multi"},
		{Type: asn1.ObjectIdentifier{0, 9, 2342, 19200300, 100, 1, 1}, Value: "42"}}})
	add(pkix.RDNSequence{{{Type: asn1.ObjectIdentifier{2, 5, 4, 45}, Value: asn1.BitString{Bytes: []byte{0xff}, BitLength: 8}}}})
	add(pkix.RDNSequence{})
	add(pkix.RDNSequence{{}})
	if raw, err := os.ReadFile("testdata/vector-cert.pem"); err == nil {
		if b, _ := pem.Decode(raw); b != nil {
			if c, err := x509.ParseCertificate(b.Bytes); err == nil {
				f.Add(c.RawSubject)
			}
		}
	}
	for _, s := range []string{"", "30", "3000", "3100", "300431023000", "30053103300100", "300b3109300706035504030c00",
		"300c310a300806035504031e0100", "300d310b300906035504031c0200"} {
		b, _ := hex.DecodeString(s)
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, der []byte) {
		dn, err := parseRawSubject(der)
		if err != nil {
			return
		}
		checkShape(t, dn, len(der))
		if len(dn) == 0 || slices.ContainsFunc(dn, func(rdn []string) bool { return len(rdn) == 0 }) {
			return
		}
		r := dn.String()
		again, err := parseDNString(r)
		if err != nil || !again.equal(dn) {
			t.Fatalf("subject %x rendered as %q parses to %q, %v; want %q", der, r, again, err, dn)
		}
	})
}

// checkShape checks what both DN parsers promise: RDNs with sorted
// attributes, no more attributes in all than max.
func checkShape(t *testing.T, dn normalizedDN, max int) {
	t.Helper()
	n := 0
	for _, rdn := range dn {
		if !slices.IsSorted(rdn) {
			t.Fatalf("RDN %q not sorted", rdn)
		}
		n += len(rdn)
	}
	if n > max {
		t.Fatalf("%d attributes, at most %d possible", n, max)
	}
}

// subjectDER encodes dn as a certificate's subject: string values as
// UTF8String, the others as the DER they were given in.
func subjectDER(dn normalizedDN) ([]byte, error) {
	seq := make([]rawRDNSET, 0, len(dn))
	for i := len(dn) - 1; i >= 0; i-- {
		var set rawRDNSET
		for _, key := range dn[i] {
			oidText, v, _ := strings.Cut(key, "=")
			var oid asn1.ObjectIdentifier
			for _, arc := range strings.Split(oidText, ".") {
				n, err := strconv.Atoi(arc)
				if err != nil {
					return nil, err
				}
				oid = append(oid, n)
			}
			var val asn1.RawValue
			if b, ok := strings.CutPrefix(v, "b:"); ok {
				raw, err := hex.DecodeString(b)
				if err != nil {
					return nil, err
				}
				val.FullBytes = raw
			} else {
				val = asn1.RawValue{Class: asn1.ClassUniversal, Tag: asn1.TagUTF8String, Bytes: []byte(strings.TrimPrefix(v, "s:"))}
			}
			set = append(set, rawAVA{Type: oid, Value: val})
		}
		seq = append(seq, set)
	}
	return asn1.Marshal(seq)
}
