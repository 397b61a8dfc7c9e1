package mtls_test

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"net/netip"
	"strings"
	"testing"
	"time"

	"stellaops.org/authority/host/mtls"
	"stellaops.org/authority/host/mtls/mtlstest"
)

// TestRFC8705_2_CertificateFromTLSConnection: the certificate (and the chain
// the client sent) is read from the connection's handshake.
func TestRFC8705_2_CertificateFromTLSConnection(t *testing.T) {
	root := mtlstest.NewCA(t, "tenant root")
	inter := root.Intermediate(t, "tenant issuing")
	leaf := inter.Leaf(t, mtlstest.Options{CommonName: "c1"})
	h := newTLSHarness(t, &mtls.Extractor{})

	p, err := h.present(t, leaf, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !p.TLS || p.Source != mtls.SourceTLS || p.Leaf == nil || !p.Leaf.Equal(leaf.Cert) {
		t.Fatalf("Presented = %+v, want the leaf from TLS", p)
	}
	if len(p.Chain) != 1 || !p.Chain[0].Equal(inter.Cert.Cert) {
		t.Fatalf("Chain = %d certs, want the intermediate", len(p.Chain))
	}
	if p.Source.String() != "tls" {
		t.Errorf("Source.String() = %q", p.Source.String())
	}
}

// TestRFC8705_2_1_TLSClientAuthChainsToTenantRoot: tls_client_auth accepts a
// certificate only when it chains to the tenant's roots, for clientAuth, and
// is inside its validity period.
func TestRFC8705_2_1_TLSClientAuthChainsToTenantRoot(t *testing.T) {
	root := mtlstest.NewCA(t, "tenant root")
	inter := root.Intermediate(t, "tenant issuing")
	other := mtlstest.NewCA(t, "other tenant root")
	now := time.Now()
	uri := mtls.StellaOpsClientURI("svc-a")
	opts := func(mod func(*mtlstest.Options)) mtlstest.Options {
		o := mtlstest.Options{CommonName: "svc-a", URIs: []string{uri}}
		if mod != nil {
			mod(&o)
		}
		return o
	}
	good := inter.Leaf(t, opts(nil))
	interPool := x509.NewCertPool()
	interPool.AddCert(inter.Cert.Cert)

	cases := []struct {
		name   string
		client *mtlstest.Cert
		trust  *mtls.TrustStore
		want   string
	}{
		{"leaf issued by root", root.Leaf(t, opts(nil)), &mtls.TrustStore{Roots: root.Pool()}, ""},
		{"intermediate sent by client", good, &mtls.TrustStore{Roots: root.Pool()}, ""},
		{"intermediate configured, not sent", withoutChain(good), &mtls.TrustStore{Roots: root.Pool(), Intermediates: interPool}, ""},
		{"intermediate neither sent nor configured", withoutChain(good), &mtls.TrustStore{Roots: root.Pool()}, mtls.ReasonUntrusted},
		{"other tenant's CA", other.Leaf(t, opts(nil)), &mtls.TrustStore{Roots: root.Pool()}, mtls.ReasonUntrusted},
		{"self-signed", mtlstest.SelfSigned(t, opts(nil)), &mtls.TrustStore{Roots: root.Pool()}, mtls.ReasonUntrusted},
		{"tenant without roots", good, &mtls.TrustStore{}, mtls.ReasonUntrusted},
		{"nil trust store", good, nil, mtls.ReasonUntrusted},
		{"expired", inter.Leaf(t, opts(func(o *mtlstest.Options) {
			o.NotBefore, o.NotAfter = now.Add(-48*time.Hour), now.Add(-time.Hour)
		})), &mtls.TrustStore{Roots: root.Pool()}, mtls.ReasonExpired},
		{"not yet valid", inter.Leaf(t, opts(func(o *mtlstest.Options) {
			o.NotBefore, o.NotAfter = now.Add(time.Hour), now.Add(48*time.Hour)
		})), &mtls.TrustStore{Roots: root.Pool()}, mtls.ReasonNotYetValid},
		{"serverAuth-only EKU", inter.Leaf(t, opts(func(o *mtlstest.Options) {
			o.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		})), &mtls.TrustStore{Roots: root.Pool()}, mtls.ReasonWrongUsage},
		{"no EKU extension", inter.Leaf(t, opts(func(o *mtlstest.Options) { o.NoExtKeyUsage = true })),
			&mtls.TrustStore{Roots: root.Pool()}, mtls.ReasonWrongUsage},
		{"wrong SAN URI", inter.Leaf(t, opts(func(o *mtlstest.Options) {
			o.URIs = []string{mtls.StellaOpsClientURI("svc-b")}
		})), &mtls.TrustStore{Roots: root.Pool()}, mtls.ReasonSubjectMismatch},
		{"no certificate", nil, &mtls.TrustStore{Roots: root.Pool()}, mtls.ReasonNoCertificate},
	}
	h := newTLSHarness(t, &mtls.Extractor{})
	rule := mtls.ClientRule{Method: mtls.MethodTLSClientAuth, SANURI: uri}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p, err := h.present(t, tc.client, nil)
			if err != nil {
				t.Fatal(err)
			}
			err = mtls.Authenticate(p, rule, tc.trust, mtls.AllSANTypes(), now)
			if got := reasonOf(t, err); got != tc.want {
				t.Fatalf("reason = %q, want %q (err: %v)", got, tc.want, err)
			}
		})
	}
}

// TestRFC8705_2_1_2_ExactlyOneIdentifier: a tls_client_auth client has
// exactly one of the five identifiers; Validate names the fields.
func TestRFC8705_2_1_2_ExactlyOneIdentifier(t *testing.T) {
	tp := mtls.Thumbprint(mtlstest.SelfSigned(t, mtlstest.Options{}).Cert)
	cases := []struct {
		name    string
		rule    mtls.ClientRule
		wantErr string // substring; "" = valid
	}{
		{"subject DN", mtls.ClientRule{Method: mtls.MethodTLSClientAuth, SubjectDN: "CN=a,O=b"}, ""},
		{"SAN DNS", mtls.ClientRule{Method: mtls.MethodTLSClientAuth, SANDNS: "a.example"}, ""},
		{"SAN URI", mtls.ClientRule{Method: mtls.MethodTLSClientAuth, SANURI: mtls.StellaOpsClientURI("a")}, ""},
		{"SAN IP", mtls.ClientRule{Method: mtls.MethodTLSClientAuth, SANIP: "2001:db8::1"}, ""},
		{"SAN email", mtls.ClientRule{Method: mtls.MethodTLSClientAuth, SANEmail: "a@example.com"}, ""},
		{"none", mtls.ClientRule{Method: mtls.MethodTLSClientAuth}, "exactly one of"},
		{"two", mtls.ClientRule{Method: mtls.MethodTLSClientAuth, SANDNS: "a", SANURI: "urn:x"}, "[SANDNS SANURI]"},
		{"bad DN", mtls.ClientRule{Method: mtls.MethodTLSClientAuth, SubjectDN: "CN"}, "SubjectDN (tls_client_auth_subject_dn)"},
		{"DN with an impossible OID", mtls.ClientRule{Method: mtls.MethodTLSClientAuth, SubjectDN: "3.1=a"}, "SubjectDN (tls_client_auth_subject_dn)"},
		{"bad IP", mtls.ClientRule{Method: mtls.MethodTLSClientAuth, SANIP: "10.0.0.300"}, "SANIP (tls_client_auth_san_ip)"},
		{"bad email", mtls.ClientRule{Method: mtls.MethodTLSClientAuth, SANEmail: "nobody"}, "SANEmail (tls_client_auth_san_email)"},
		{"bad URI", mtls.ClientRule{Method: mtls.MethodTLSClientAuth, SANURI: "relative/path"}, "SANURI (tls_client_auth_san_uri)"},
		{"PKI with registered certs", mtls.ClientRule{Method: mtls.MethodTLSClientAuth, SANDNS: "a", Registered: []mtls.RegisteredCert{{Thumbprint: tp}}}, "Registered"},
		{"self-signed", mtls.ClientRule{Method: mtls.MethodSelfSignedTLSClientAuth, Registered: []mtls.RegisteredCert{{Thumbprint: tp}}}, ""},
		{"self-signed without certs", mtls.ClientRule{Method: mtls.MethodSelfSignedTLSClientAuth}, "Registered"},
		{"self-signed bad thumbprint", mtls.ClientRule{Method: mtls.MethodSelfSignedTLSClientAuth, Registered: []mtls.RegisteredCert{{Thumbprint: "abc"}}}, "Registered[0].Thumbprint"},
		{"self-signed with identifier", mtls.ClientRule{Method: mtls.MethodSelfSignedTLSClientAuth, SANDNS: "a", Registered: []mtls.RegisteredCert{{Thumbprint: tp}}}, "SANDNS"},
		{"unknown method", mtls.ClientRule{Method: "client_secret_basic"}, "Method"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.rule.Validate()
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("Validate() = %v, want nil", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Fatalf("Validate() = %v, want error containing %q", err, tc.wantErr)
			}
		})
	}
	// Authenticate refuses an invalid rule rather than guessing.
	leaf := mtlstest.SelfSigned(t, mtlstest.Options{})
	err := mtls.Authenticate(mtls.Presented{Leaf: leaf.Cert, TLS: true}, mtls.ClientRule{Method: mtls.MethodTLSClientAuth}, nil, mtls.AllSANTypes(), time.Now())
	if got := reasonOf(t, err); got != mtls.ReasonInvalidRule {
		t.Fatalf("reason = %q, want %q", got, mtls.ReasonInvalidRule)
	}
}

// TestRFC8705_2_1_2_SubjectDNMatch: tls_client_auth_subject_dn is an RFC 4514
// string matched against the certificate subject RDN by RDN.
func TestRFC8705_2_1_2_SubjectDNMatch(t *testing.T) {
	root := mtlstest.NewCA(t, "tenant root")
	subject := &pkix.Name{CommonName: "client-1", Organization: []string{"Stella Ops"}, OrganizationalUnit: []string{"Platform"}, Country: []string{"DE"}}
	special := &pkix.Name{CommonName: "a,b+c", Organization: []string{"Ünïcode GmbH"}}
	// A multi-valued RDN (CN=multi + UID=42), which pkix.Name cannot express.
	multiRaw, err := asn1.Marshal(pkix.RDNSequence{
		{{Type: asn1.ObjectIdentifier{2, 5, 4, 10}, Value: "Stella Ops"}},
		{
			{Type: asn1.ObjectIdentifier{2, 5, 4, 3}, Value: "multi"},
			{Type: asn1.ObjectIdentifier{0, 9, 2342, 19200300, 100, 1, 1}, Value: "42"},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	// CN=a + C=b, and a single CN whose value spells the same attributes.
	pairRaw, err := asn1.Marshal(pkix.RDNSequence{{
		{Type: asn1.ObjectIdentifier{2, 5, 4, 3}, Value: "a"},
		{Type: asn1.ObjectIdentifier{2, 5, 4, 6}, Value: "b"},
	}})
	if err != nil {
		t.Fatal(err)
	}
	h := newTLSHarness(t, &mtls.Extractor{})
	present := func(o mtlstest.Options) mtls.Presented {
		p, err := h.present(t, root.Leaf(t, o), nil)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	plain := present(mtlstest.Options{Subject: subject})
	esc := present(mtlstest.Options{Subject: special})
	multi := present(mtlstest.Options{RawSubject: multiRaw})
	pair := present(mtlstest.Options{RawSubject: pairRaw})
	lookalike := present(mtlstest.Options{Subject: &pkix.Name{CommonName: "a+2.5.4.6=s:b"}})

	cases := []struct {
		name string
		p    mtls.Presented
		dn   string
		ok   bool
	}{
		{"canonical string", plain, "CN=client-1,OU=Platform,O=Stella Ops,C=DE", true},
		{"Go's own String()", plain, plain.Leaf.Subject.String(), true},
		{"case and insignificant spaces", plain, "cn=CLIENT-1, ou = platform ,o=Stella   Ops , c=de", true},
		{"dotted OID", plain, "2.5.4.3=client-1,2.5.4.11=Platform,2.5.4.10=Stella Ops,2.5.4.6=DE", true},
		{"hex-encoded value", plain, "CN=#1308636c69656e742d31,OU=Platform,O=Stella Ops,C=DE", true},
		{"RDN order differs", plain, "CN=client-1,O=Stella Ops,OU=Platform,C=DE", false},
		{"RDN missing", plain, "CN=client-1,OU=Platform,O=Stella Ops", false},
		{"extra RDN", plain, "CN=client-1,OU=Platform,O=Stella Ops,C=DE,DC=example", false},
		{"other CN", plain, "CN=client-2,OU=Platform,O=Stella Ops,C=DE", false},
		{"CN as prefix", plain, "CN=client,OU=Platform,O=Stella Ops,C=DE", false},
		{"escaped specials", esc, `CN=a\,b\+c,O=Ünïcode GmbH`, true},
		{"hex-pair escapes", esc, `CN=a\2cb\2bc,O=\c3\9cn\c3\afcode GmbH`, true},
		{"unescaped plus makes a multi-valued RDN", esc, `CN=a\,b+CN=c,O=Ünïcode GmbH`, false},
		{"multi-valued RDN", multi, "CN=multi+UID=42,O=Stella Ops", true},
		{"multi-valued RDN, other order", multi, "UID=42+CN=multi,O=Stella Ops", true},
		{"multi-valued RDN split", multi, "CN=multi,UID=42,O=Stella Ops", false},
		{"multi-valued RDN", pair, "C=b+CN=a", true},
		{"one value spelling a multi-valued RDN is not that RDN", lookalike, "CN=a+C=b", false},
		{"a multi-valued RDN is not one value spelling it", pair, `CN=a\+2.5.4.6=s:b`, false},
		{"escaped plus in a value", lookalike, `CN=a\+2.5.4.6=s:b`, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rule := mtls.ClientRule{Method: mtls.MethodTLSClientAuth, SubjectDN: tc.dn}
			err := mtls.Authenticate(tc.p, rule, &mtls.TrustStore{Roots: root.Pool()}, mtls.SANTypes{}, time.Now())
			want := ""
			if !tc.ok {
				want = mtls.ReasonSubjectMismatch
			}
			if got := reasonOf(t, err); got != want {
				t.Fatalf("DN %q against %q: reason %q, want %q (%v)", tc.dn, tc.p.Leaf.Subject, got, want, err)
			}
		})
	}
}

// TestRFC8705_2_1_2_SANMatch: SAN identifiers match exactly, with the
// comparison rules of each name type, and only SAN types the deployment
// allows can be used.
func TestRFC8705_2_1_2_SANMatch(t *testing.T) {
	root := mtlstest.NewCA(t, "tenant root")
	leaf := root.Leaf(t, mtlstest.Options{
		DNSNames: []string{"Client.Example.COM"},
		URIs:     []string{mtls.StellaOpsClientURI("svc-a"), "https://example.com/a%2Fb"},
		IPs:      []netip.Addr{netip.MustParseAddr("10.0.0.7"), netip.MustParseAddr("2001:db8::1")},
		Emails:   []string{"Ops.Team@Example.COM"},
	})
	h := newTLSHarness(t, &mtls.Extractor{})
	p, err := h.present(t, leaf, nil)
	if err != nil {
		t.Fatal(err)
	}
	rule := func(mod func(*mtls.ClientRule)) mtls.ClientRule {
		r := mtls.ClientRule{Method: mtls.MethodTLSClientAuth}
		mod(&r)
		return r
	}
	cases := []struct {
		name    string
		rule    mtls.ClientRule
		allowed mtls.SANTypes
		want    string
	}{
		{"DNS case-insensitive", rule(func(r *mtls.ClientRule) { r.SANDNS = "client.example.com" }), mtls.AllSANTypes(), ""},
		{"DNS other name", rule(func(r *mtls.ClientRule) { r.SANDNS = "other.example.com" }), mtls.AllSANTypes(), mtls.ReasonSubjectMismatch},
		{"DNS no wildcard expansion", rule(func(r *mtls.ClientRule) { r.SANDNS = "*.example.com" }), mtls.AllSANTypes(), mtls.ReasonSubjectMismatch},
		{"URI StellaOps convention", rule(func(r *mtls.ClientRule) { r.SANURI = "urn:stellaops:client:svc-a" }), mtls.AllSANTypes(), ""},
		{"URI exact bytes", rule(func(r *mtls.ClientRule) { r.SANURI = "https://example.com/a%2Fb" }), mtls.AllSANTypes(), ""},
		{"URI unescaped form differs", rule(func(r *mtls.ClientRule) { r.SANURI = "https://example.com/a/b" }), mtls.AllSANTypes(), mtls.ReasonSubjectMismatch},
		{"URI case-sensitive", rule(func(r *mtls.ClientRule) { r.SANURI = "urn:stellaops:client:SVC-A" }), mtls.AllSANTypes(), mtls.ReasonSubjectMismatch},
		{"URI prefix", rule(func(r *mtls.ClientRule) { r.SANURI = "urn:stellaops:client:svc" }), mtls.AllSANTypes(), mtls.ReasonSubjectMismatch},
		{"IPv4", rule(func(r *mtls.ClientRule) { r.SANIP = "10.0.0.7" }), mtls.AllSANTypes(), ""},
		{"IPv4-mapped IPv6", rule(func(r *mtls.ClientRule) { r.SANIP = "::ffff:10.0.0.7" }), mtls.AllSANTypes(), ""},
		{"IPv6 uncompressed", rule(func(r *mtls.ClientRule) { r.SANIP = "2001:0db8:0:0:0:0:0:1" }), mtls.AllSANTypes(), ""},
		{"IP other address", rule(func(r *mtls.ClientRule) { r.SANIP = "10.0.0.8" }), mtls.AllSANTypes(), mtls.ReasonSubjectMismatch},
		{"email domain case-insensitive", rule(func(r *mtls.ClientRule) { r.SANEmail = "Ops.Team@example.com" }), mtls.AllSANTypes(), ""},
		{"email local part exact", rule(func(r *mtls.ClientRule) { r.SANEmail = "ops.team@Example.COM" }), mtls.AllSANTypes(), mtls.ReasonSubjectMismatch},
		{"DNS not allowed", rule(func(r *mtls.ClientRule) { r.SANDNS = "client.example.com" }), mtls.SANTypes{URI: true, IP: true, Email: true}, mtls.ReasonSANTypeNotAllowed},
		{"URI not allowed", rule(func(r *mtls.ClientRule) { r.SANURI = "urn:stellaops:client:svc-a" }), mtls.SANTypes{DNS: true}, mtls.ReasonSANTypeNotAllowed},
		{"IP not allowed", rule(func(r *mtls.ClientRule) { r.SANIP = "10.0.0.7" }), mtls.SANTypes{}, mtls.ReasonSANTypeNotAllowed},
		{"email not allowed", rule(func(r *mtls.ClientRule) { r.SANEmail = "Ops.Team@example.com" }), mtls.SANTypes{}, mtls.ReasonSANTypeNotAllowed},
		{"subject DN always allowed", rule(func(r *mtls.ClientRule) { r.SubjectDN = "CN=client" }), mtls.SANTypes{}, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := mtls.Authenticate(p, tc.rule, &mtls.TrustStore{Roots: root.Pool()}, tc.allowed, time.Now())
			if got := reasonOf(t, err); got != tc.want {
				t.Fatalf("reason = %q, want %q (%v)", got, tc.want, err)
			}
		})
	}
}

func TestStellaOpsClientURI(t *testing.T) {
	if got := mtls.StellaOpsClientURI("svc-a"); got != "urn:stellaops:client:svc-a" {
		t.Fatalf("StellaOpsClientURI = %q", got)
	}
}

// TestRFC8705_2_2_SelfSignedMatchesRegistered: self_signed_tls_client_auth
// accepts exactly the registered certificates, with no chain check, while
// they are valid and their registration has not lapsed.
func TestRFC8705_2_2_SelfSignedMatchesRegistered(t *testing.T) {
	now := time.Now()
	current := mtlstest.SelfSigned(t, mtlstest.Options{CommonName: "svc-s"})
	rotated := mtlstest.SelfSigned(t, mtlstest.Options{CommonName: "svc-s"})
	lapsed := mtlstest.SelfSigned(t, mtlstest.Options{CommonName: "svc-s"})
	expired := mtlstest.SelfSigned(t, mtlstest.Options{NotBefore: now.Add(-48 * time.Hour), NotAfter: now.Add(-time.Minute)})
	future := mtlstest.SelfSigned(t, mtlstest.Options{NotBefore: now.Add(time.Hour), NotAfter: now.Add(48 * time.Hour)})
	stranger := mtlstest.SelfSigned(t, mtlstest.Options{CommonName: "svc-s"}) // same subject, other key
	caIssued := mtlstest.NewCA(t, "any root").Leaf(t, mtlstest.Options{})

	fromPEM, err := mtls.ParseCertificates(append(append([]byte{}, current.CertPEM...), caIssued.CertPEM...))
	if err != nil {
		t.Fatal(err)
	}
	rule := mtls.ClientRule{
		Method: mtls.MethodSelfSignedTLSClientAuth,
		Registered: append([]mtls.RegisteredCert{mtls.RegisterCertificate(fromPEM[0], time.Time{}), mtls.RegisterCertificate(fromPEM[1], time.Time{})},
			mtls.RegisterCertificate(rotated.Cert, now.Add(time.Hour)),
			mtls.RegisterCertificate(lapsed.Cert, now.Add(-time.Second)),
			mtls.RegisterCertificate(expired.Cert, time.Time{}),
			mtls.RegisterCertificate(future.Cert, time.Time{}),
		),
	}
	cases := []struct {
		name   string
		client *mtlstest.Cert
		want   string
	}{
		{"registered (PEM)", current, ""},
		{"CA-issued but registered: no chain check", caIssued, ""},
		{"rotated out, inside AcceptUntil", rotated, ""},
		{"rotated out, AcceptUntil passed", lapsed, mtls.ReasonRegistrationExpired},
		{"not registered", stranger, mtls.ReasonNotRegistered},
		{"registered but expired", expired, mtls.ReasonExpired},
		{"registered but not yet valid", future, mtls.ReasonNotYetValid},
		{"no certificate", nil, mtls.ReasonNoCertificate},
	}
	h := newTLSHarness(t, &mtls.Extractor{})
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p, err := h.present(t, tc.client, nil)
			if err != nil {
				t.Fatal(err)
			}
			// Trust store and SAN policy are irrelevant to this method.
			err = mtls.Authenticate(p, rule, nil, mtls.SANTypes{}, now)
			if got := reasonOf(t, err); got != tc.want {
				t.Fatalf("reason = %q, want %q (%v)", got, tc.want, err)
			}
		})
	}
}

func TestAuthErrorIsForLogsOnly(t *testing.T) {
	err := mtls.Authenticate(mtls.Presented{}, mtls.ClientRule{}, nil, mtls.SANTypes{}, time.Now())
	if err == nil || !strings.Contains(err.Error(), mtls.ReasonNoCertificate) {
		t.Fatalf("err = %v", err)
	}
}
