package mtls_test

import (
	"crypto/x509"
	"encoding/base64"
	"errors"
	"net/url"
	"strings"
	"testing"

	"stellaops.org/authority/host/mtls"
	"stellaops.org/authority/host/mtls/mtlstest"
)

// TestRFC9440_2_2_ClientCertHeader: Client-Cert is one sf Byte Sequence
// holding one DER certificate; anything else is refused.
func TestRFC9440_2_2_ClientCertHeader(t *testing.T) {
	c := mtlstest.NewCA(t, "root").Leaf(t, mtlstest.Options{}).Cert
	b64 := base64.StdEncoding.EncodeToString(c.Raw)
	raw := base64.RawStdEncoding.EncodeToString(c.Raw)
	withTrailing := base64.StdEncoding.EncodeToString(append(append([]byte{}, c.Raw...), 0))
	cases := []struct {
		name, value string
		ok          bool
	}{
		{"canonical", ":" + b64 + ":", true},
		{"Format round trip", mtls.FormatClientCertHeader(c), true},
		{"surrounding spaces", "  :" + b64 + ":  ", true},
		{"padding omitted (RFC 8941 §4.2.7)", ":" + raw + ":", true},
		{"unknown parameters ignored", ":" + b64 + `:;a=1;b;c="x\"y";d=?0;e=tok/1:2;f=-1.5;g=:AA==:`, true},
		{"empty", "", false},
		{"empty byte sequence", "::", false},
		{"no colons", b64, false},
		{"unterminated", ":" + b64, false},
		{"base64url alphabet", ":" + strings.NewReplacer("+", "-", "/", "_").Replace(b64) + ":", strings.IndexAny(b64, "+/") < 0},
		{"whitespace inside", ":" + b64[:10] + " " + b64[10:] + ":", false},
		{"trailing garbage", ":" + b64 + ":x", false},
		{"list, not item", ":" + b64 + ":, :" + b64 + ":", false},
		{"trailing bytes after DER", ":" + withTrailing + ":", false},
		{"not a certificate", ":" + base64.StdEncoding.EncodeToString([]byte("hello")) + ":", false},
		{"bad parameter key", ":" + b64 + ":;A=1", false},
		{"bad parameter value", ":" + b64 + ":;a=", false},
		{"decimal parameter, 12.3 digits", ":" + b64 + ":;a=123456789012.123", true},
		{"decimal parameter, 4 fractional digits (RFC 8941 §4.2.4)", ":" + b64 + ":;a=1.1234", false},
		{"decimal parameter, 13 integer digits", ":" + b64 + ":;a=1234567890123.1", false},
		{"integer parameter, 16 digits", ":" + b64 + ":;a=1234567890123456", false},
		{"PEM instead", string(mtlstest.SelfSigned(t, mtlstest.Options{}).CertPEM), false},
		{"oversized", ":" + strings.Repeat("A", mtls.MaxCertificateHeaderBytes) + ":", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := mtls.ParseClientCertHeader(tc.value)
			if tc.ok {
				if err != nil {
					t.Fatalf("err = %v", err)
				}
				if !got.Equal(c) {
					t.Fatal("parsed a different certificate")
				}
			} else if err == nil {
				t.Fatal("accepted")
			}
		})
	}
	_, err := mtls.ParseClientCertHeader(":" + strings.Repeat("A", mtls.MaxCertificateHeaderBytes) + ":")
	if !errors.Is(err, mtls.ErrHeaderTooLarge) {
		t.Fatalf("oversized: err = %v, want ErrHeaderTooLarge", err)
	}
}

// TestRFC9440_2_3_ClientCertChainHeader: Client-Cert-Chain is an sf List of
// Byte Sequences.
func TestRFC9440_2_3_ClientCertChainHeader(t *testing.T) {
	root := mtlstest.NewCA(t, "root")
	i1 := root.Intermediate(t, "i1")
	i2 := i1.Intermediate(t, "i2")
	one := mtls.FormatClientCertHeader(i2.Cert.Cert)
	cases := []struct {
		name, value string
		n           int // -1: error
	}{
		{"empty list", "", 0},
		{"one", one, 1},
		{"two via Format", mtls.FormatClientCertChainHeader([]*x509.Certificate{i2.Cert.Cert, i1.Cert.Cert}), 2},
		{"OWS around commas", one + " ,\t" + one, 2},
		{"no space", one + "," + one, 2},
		{"with parameters", one + ";x=1, " + one, 2},
		{"trailing comma", one + ",", -1},
		{"leading comma", "," + one, -1},
		{"inner list", "(" + one + ")", -1},
		{"token member", "abc", -1},
		{"too many", strings.TrimSuffix(strings.Repeat(one+",", mtls.MaxChainCertificates+1), ","), -1},
		{"garbage member", one + ", :AAAA:", -1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := mtls.ParseClientCertChainHeader(tc.value)
			if tc.n < 0 {
				if err == nil {
					t.Fatal("accepted")
				}
				return
			}
			if err != nil || len(got) != tc.n {
				t.Fatalf("got %d certs, err %v; want %d", len(got), err, tc.n)
			}
		})
	}
}

// nginxEscape mimics ngx_escape_uri(NGX_ESCAPE_URI_COMPONENT), which fills
// $ssl_client_escaped_cert: everything but unreserved characters is %XX.
func nginxEscape(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("-._~", c) >= 0 {
			b.WriteByte(c)
			continue
		}
		b.WriteString("%" + strings.ToUpper(hex2(c)))
	}
	return b.String()
}

func hex2(c byte) string {
	const digits = "0123456789abcdef"
	return string([]byte{digits[c>>4], digits[c&15]})
}

// TestXSSLClientCertForms: the forms proxies actually send in
// X-SSL-Client-Cert.
func TestXSSLClientCertForms(t *testing.T) {
	cert := mtlstest.NewCA(t, "root").Leaf(t, mtlstest.Options{})
	pemText := string(cert.CertPEM)
	two := pemText + pemText
	cases := []struct {
		name, value string
		ok          bool
	}{
		{"nginx $ssl_client_escaped_cert", nginxEscape(pemText), true},
		{"url.PathEscape", url.PathEscape(pemText), true},
		{"newlines as spaces", strings.ReplaceAll(pemText, "\n", " "), true},
		{"newlines as tabs (continuation style)", strings.ReplaceAll(strings.TrimSpace(pemText), "\n", "\t"), true},
		{"plain PEM", pemText, true},
		{"CRLF PEM", strings.ReplaceAll(pemText, "\n", "\r\n"), true},
		{"empty", "", false},
		{"base64 DER without markers", base64.StdEncoding.EncodeToString(cert.Cert.Raw), false},
		{"two certificates", strings.ReplaceAll(two, "\n", " "), false},
		{"text before", "x" + pemText, false},
		{"text after", pemText + "x", false},
		{"bad percent escape", "%zz" + pemText, false},
		{"query-escaped (+ for space) is not nginx's form", url.QueryEscape(pemText), false},
		{"private key block", strings.ReplaceAll(string(cert.KeyPEM), "\n", " "), false},
		{"truncated", pemText[:len(pemText)/2], false},
		{"oversized", pemText + strings.Repeat(" ", mtls.MaxCertificateHeaderBytes), false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := mtls.ParseXSSLClientCert(tc.value)
			if tc.ok {
				if err != nil {
					t.Fatalf("err = %v", err)
				}
				if !got.Equal(cert.Cert) {
					t.Fatal("parsed a different certificate")
				}
			} else if err == nil {
				t.Fatal("accepted")
			}
		})
	}
}

// FuzzParseClientCertHeader: the RFC 9440 parser never panics, respects its
// size cap, and whatever it accepts round-trips through the formatter.
func FuzzParseClientCertHeader(f *testing.F) {
	leaf := mtlstest.NewCA(f, "root").Leaf(f, mtlstest.Options{DNSNames: []string{"a.example"}})
	good := mtls.FormatClientCertHeader(leaf.Cert)
	for _, s := range []string{
		good, " " + good + " ", good + ";a=1;b=?1", strings.TrimRight(good, "=:") + ":",
		"", ":", "::", ":AAAA:", ":====:", good + ",", good + `;a="`, good + ";a=-", good + ";a=1.",
		":" + base64.StdEncoding.EncodeToString([]byte{0x30, 0x82, 0xff, 0xff}) + ":",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, value string) {
		c, err := mtls.ParseClientCertHeader(value)
		if err != nil {
			if c != nil {
				t.Fatal("certificate returned with an error")
			}
			return
		}
		if len(value) > mtls.MaxCertificateHeaderBytes {
			t.Fatal("accepted an oversized value")
		}
		again, err := mtls.ParseClientCertHeader(mtls.FormatClientCertHeader(c))
		if err != nil || !again.Equal(c) {
			t.Fatalf("round trip failed: %v", err)
		}
		_ = mtls.Thumbprint(c)
	})
}

// FuzzParseXSSLClientCert: the X-SSL-Client-Cert parser never panics,
// respects its size cap, and accepts what it produces from a parsed cert.
func FuzzParseXSSLClientCert(f *testing.F) {
	leaf := mtlstest.NewCA(f, "root").Leaf(f, mtlstest.Options{})
	pemText := string(leaf.CertPEM)
	for _, s := range []string{
		nginxEscape(pemText), strings.ReplaceAll(pemText, "\n", " "), pemText,
		"", "%", "%%", "-----BEGIN CERTIFICATE-----", "-----BEGIN CERTIFICATE----------END CERTIFICATE-----",
		"-----BEGIN CERTIFICATE----- AAAA -----END CERTIFICATE-----", strings.Repeat("%41", 100),
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, value string) {
		c, err := mtls.ParseXSSLClientCert(value)
		if err != nil {
			if c != nil {
				t.Fatal("certificate returned with an error")
			}
			return
		}
		if len(value) > mtls.MaxCertificateHeaderBytes {
			t.Fatal("accepted an oversized value")
		}
		_ = mtls.Thumbprint(c)
	})
}

// FuzzParseClientCertChainHeader: the RFC 9440 §2.3 list parser never
// panics, never returns certificates with an error, respects its size and
// member caps (and cannot return more members than the value has byte
// sequences), and whatever it accepts round-trips through the formatter.
func FuzzParseClientCertChainHeader(f *testing.F) {
	root := mtlstest.NewCA(f, "root")
	a := root.Leaf(f, mtlstest.Options{DNSNames: []string{"a.example"}}).Cert
	b := root.Leaf(f, mtlstest.Options{DNSNames: []string{"b.example"}}).Cert
	one := mtls.FormatClientCertHeader(a)
	two := mtls.FormatClientCertChainHeader([]*x509.Certificate{a, b})
	nine := mtls.FormatClientCertChainHeader([]*x509.Certificate{a, a, a, a, a, a, a, a, a})
	for _, s := range []string{
		"", " ", one, two, " " + two + " \t", one + ";p=1, " + one + `;q="x"`, strings.ReplaceAll(two, ", ", ",\t"),
		nine, one + ",", one + ", ", "," + one, one + ",," + one, "(" + one + ")", one + " " + one,
		":", ":AAAA:", ":AAAA:, :BBBB:", one + ", tok", one + ";a=1.2345",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, value string) {
		chain, err := mtls.ParseClientCertChainHeader(value)
		if err != nil {
			if chain != nil {
				t.Fatalf("%d certificates returned with an error: %v", len(chain), err)
			}
			return
		}
		if len(value) > mtls.MaxChainHeaderBytes {
			t.Fatal("accepted an oversized value")
		}
		if len(chain) > mtls.MaxChainCertificates || len(chain) > strings.Count(value, ":")/2 {
			t.Fatalf("%d certificates from a value with %d colons", len(chain), strings.Count(value, ":"))
		}
		for i, c := range chain {
			if c == nil {
				t.Fatalf("member %d is nil", i)
			}
			_ = mtls.Thumbprint(c)
		}
		again, err := mtls.ParseClientCertChainHeader(mtls.FormatClientCertChainHeader(chain))
		if err != nil || len(again) != len(chain) {
			t.Fatalf("round trip: %d certificates, err %v; want %d", len(again), err, len(chain))
		}
		for i := range chain {
			if !again[i].Equal(chain[i]) {
				t.Fatalf("round trip changed member %d", i)
			}
		}
	})
}
