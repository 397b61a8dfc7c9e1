package mtls

import (
	"crypto/subtle"
	"crypto/x509"
	"encoding/asn1"
	"encoding/base64"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"
)

// Method is an RFC 8705 §2 token endpoint authentication method, spelled as
// in the token_endpoint_auth_method client metadata.
type Method string

const (
	// MethodTLSClientAuth is the PKI method (RFC 8705 §2.1): the certificate
	// chains to a tenant trust anchor and carries the registered identifier.
	MethodTLSClientAuth Method = "tls_client_auth"
	// MethodSelfSignedTLSClientAuth is the self-signed method (RFC 8705
	// §2.2): the certificate is one the client registered.
	MethodSelfSignedTLSClientAuth Method = "self_signed_tls_client_auth"
)

// StellaOpsClientURIPrefix starts the SAN URI StellaOps issues to clients.
const StellaOpsClientURIPrefix = "urn:stellaops:client:"

// StellaOpsClientURI returns the SAN URI the StellaOps convention puts in a
// client certificate, "urn:stellaops:client:{client_id}", for use as
// ClientRule.SANURI. The client id is inserted verbatim.
func StellaOpsClientURI(clientID string) string {
	return StellaOpsClientURIPrefix + clientID
}

// ClientRule is one client's registered mutual-TLS authentication setting.
type ClientRule struct {
	Method Method

	// For tls_client_auth, exactly one of these is set (RFC 8705 §2.1.2);
	// the comment names the client metadata parameter each one mirrors.
	SubjectDN string // tls_client_auth_subject_dn: RFC 4514 string
	SANDNS    string // tls_client_auth_san_dns
	SANURI    string // tls_client_auth_san_uri
	SANIP     string // tls_client_auth_san_ip: IPv4 or IPv6 text form
	SANEmail  string // tls_client_auth_san_email

	// For self_signed_tls_client_auth, the certificates registered for the
	// client (RFC 8705 §2.2.2: from its jwks "x5c" or a PEM upload).
	Registered []RegisteredCert
}

// RegisteredCert is one certificate registered for a self-signed client.
type RegisteredCert struct {
	// Thumbprint is the certificate's x5t#S256 (see Thumbprint).
	Thumbprint string
	// AcceptUntil, when non-zero, ends acceptance of a rotated-out
	// certificate: it is refused at any instant after AcceptUntil.
	AcceptUntil time.Time
}

// RegisterCertificate returns the registration of cert, accepted until
// acceptUntil (zero: for as long as the certificate itself is valid).
func RegisterCertificate(cert *x509.Certificate, acceptUntil time.Time) RegisteredCert {
	return RegisteredCert{Thumbprint: Thumbprint(cert), AcceptUntil: acceptUntil}
}

// Validate reports a rule that Authenticate could never satisfy or that
// RFC 8705 forbids, naming the offending field and its metadata parameter:
// tls_client_auth needs exactly one well-formed identifier and no registered
// certificates; self_signed_tls_client_auth needs at least one registered
// certificate with a well-formed thumbprint and no identifier.
func (r ClientRule) Validate() error {
	ids := r.identifiers()
	switch r.Method {
	case MethodTLSClientAuth:
		if len(ids) != 1 {
			names := make([]string, len(ids))
			for i, id := range ids {
				names[i] = id.field
			}
			return fmt.Errorf("mtls: tls_client_auth: exactly one of SubjectDN, SANDNS, SANURI, SANIP, SANEmail must be set, got %d %v", len(ids), names)
		}
		if len(r.Registered) > 0 {
			return errors.New("mtls: Registered: only for self_signed_tls_client_auth")
		}
		return ids[0].check()
	case MethodSelfSignedTLSClientAuth:
		if len(ids) > 0 {
			return fmt.Errorf("mtls: %s: only for tls_client_auth", ids[0].field)
		}
		if len(r.Registered) == 0 {
			return errors.New("mtls: Registered: self_signed_tls_client_auth needs at least one registered certificate")
		}
		for i, rc := range r.Registered {
			if b, err := base64.RawURLEncoding.DecodeString(rc.Thumbprint); err != nil || len(b) != 32 {
				return fmt.Errorf("mtls: Registered[%d].Thumbprint: not a base64url SHA-256 x5t#S256", i)
			}
		}
		return nil
	default:
		return fmt.Errorf("mtls: Method: %q is not tls_client_auth or self_signed_tls_client_auth", r.Method)
	}
}

// identifier is one configured tls_client_auth identifier.
type identifier struct {
	field, param, value string
}

func (r ClientRule) identifiers() []identifier {
	var ids []identifier
	for _, id := range []identifier{
		{"SubjectDN", "tls_client_auth_subject_dn", r.SubjectDN},
		{"SANDNS", "tls_client_auth_san_dns", r.SANDNS},
		{"SANURI", "tls_client_auth_san_uri", r.SANURI},
		{"SANIP", "tls_client_auth_san_ip", r.SANIP},
		{"SANEmail", "tls_client_auth_san_email", r.SANEmail},
	} {
		if id.value != "" {
			ids = append(ids, id)
		}
	}
	return ids
}

func (id identifier) check() error {
	var err error
	switch id.field {
	case "SubjectDN":
		_, err = parseDNString(id.value)
	case "SANIP":
		_, err = netip.ParseAddr(id.value)
	case "SANEmail":
		if local, domain, ok := strings.Cut(id.value, "@"); !ok || local == "" || domain == "" || strings.Contains(domain, "@") {
			err = errors.New("not an addr-spec local@domain")
		}
	case "SANURI":
		if !strings.Contains(id.value, ":") {
			err = errors.New("not an absolute URI")
		}
	}
	if err != nil {
		return fmt.Errorf("mtls: %s (%s): %w", id.field, id.param, err)
	}
	return nil
}

// TrustStore holds one tenant's trust anchors for tls_client_auth.
type TrustStore struct {
	// Roots are the trust anchors. A nil pool trusts nothing (it never
	// falls back to the system roots).
	Roots *x509.CertPool
	// Intermediates are configured intermediate CAs, used in addition to
	// those the client sends. May be nil.
	Intermediates *x509.CertPool
}

// SANTypes says which subject alternative name types a deployment lets
// tls_client_auth clients register (subject DN matching is always allowed).
type SANTypes struct {
	DNS, URI, IP, Email bool
}

// AllSANTypes allows every SAN type.
func AllSANTypes() SANTypes { return SANTypes{DNS: true, URI: true, IP: true, Email: true} }

// Reasons carried by AuthError. Every one of them means OAuth
// "invalid_client" (RFC 6749 §5.2); they exist for logs and metrics only and
// must not be shown to the client.
const (
	ReasonNoCertificate       = "no-certificate"
	ReasonExpired             = "expired"
	ReasonNotYetValid         = "not-yet-valid"
	ReasonWrongUsage          = "wrong-usage"
	ReasonUntrusted           = "untrusted"
	ReasonSubjectMismatch     = "subject-mismatch"
	ReasonSANTypeNotAllowed   = "san-type-not-allowed"
	ReasonNotRegistered       = "not-registered"
	ReasonRegistrationExpired = "registration-expired"
	ReasonInvalidRule         = "invalid-rule"
)

// AuthError is the only error Authenticate returns. Callers map every
// AuthError to invalid_client; Reason (one of the Reason* constants) and Err
// are for logs.
type AuthError struct {
	Reason string
	Err    error // detail, may be nil
}

func (e *AuthError) Error() string {
	if e.Err == nil {
		return "mtls: client authentication failed: " + e.Reason
	}
	return "mtls: client authentication failed: " + e.Reason + ": " + e.Err.Error()
}

func (e *AuthError) Unwrap() error { return e.Err }

func authErr(reason string, format string, args ...any) *AuthError {
	if format == "" {
		return &AuthError{Reason: reason}
	}
	return &AuthError{Reason: reason, Err: fmt.Errorf(format, args...)}
}

// Authenticate decides whether the certificate p presents authenticates the
// client registered with rule, at instant now, against the tenant's trust
// store and SAN policy. It returns nil on success and otherwise an
// *AuthError. Checks, in order:
//
//   - a certificate is present (ReasonNoCertificate);
//   - the rule is valid (ReasonInvalidRule; see ClientRule.Validate);
//   - the leaf is within its validity period at now (ReasonNotYetValid,
//     ReasonExpired), for self-signed certificates too although no chain is
//     verified for them: a registered certificate stops working when it
//     expires, as its holder would expect;
//
// then for tls_client_auth (RFC 8705 §2.1):
//
//   - the registered identifier's SAN type is allowed (ReasonSANTypeNotAllowed);
//   - the leaf lists the clientAuth extended key usage explicitly
//     (ReasonWrongUsage): a certificate without the extension is refused
//     even though RFC 5280 would let it serve any purpose;
//   - x509 path validation at now to trust.Roots, using trust.Intermediates
//     and p.Chain as candidate intermediates, for clientAuth
//     (ReasonUntrusted, ReasonExpired for an expired issuer, ReasonWrongUsage
//     for an issuer constrained to other usages);
//   - the one registered identifier matches exactly (ReasonSubjectMismatch):
//     subject DN by normalized RDN comparison (see dn.go), SAN dNSName
//     case-insensitively, SAN URI byte-for-byte as encoded in the
//     certificate, SAN iPAddress by address equality (IPv4-mapped IPv6 equals
//     IPv4), SAN rfc822Name with the local part exact and the domain
//     case-insensitive. No wildcard expansion is done anywhere.
//
// and for self_signed_tls_client_auth (RFC 8705 §2.2):
//
//   - no chain validation; the leaf's x5t#S256 equals a registered
//     thumbprint (ReasonNotRegistered), compared in constant time, whose
//     AcceptUntil has not passed (ReasonRegistrationExpired).
//
// Proof of possession of the private key is not checked here: the TLS
// handshake (ours, or the trusted proxy's) did it.
func Authenticate(p Presented, rule ClientRule, trust *TrustStore, allowed SANTypes, now time.Time) error {
	leaf := p.Leaf
	if leaf == nil {
		return authErr(ReasonNoCertificate, "")
	}
	if err := rule.Validate(); err != nil {
		return &AuthError{Reason: ReasonInvalidRule, Err: err}
	}
	if now.Before(leaf.NotBefore) {
		return authErr(ReasonNotYetValid, "certificate valid from %s", leaf.NotBefore.UTC().Format(time.RFC3339))
	}
	if now.After(leaf.NotAfter) {
		return authErr(ReasonExpired, "certificate expired at %s", leaf.NotAfter.UTC().Format(time.RFC3339))
	}
	switch rule.Method {
	case MethodTLSClientAuth:
		return authenticatePKI(p, rule, trust, allowed, now)
	default: // MethodSelfSignedTLSClientAuth; Validate rejected anything else
		return authenticateSelfSigned(leaf, rule.Registered, now)
	}
}

// authenticatePKI implements RFC 8705 §2.1.
func authenticatePKI(p Presented, rule ClientRule, trust *TrustStore, allowed SANTypes, now time.Time) error {
	id := rule.identifiers()[0]
	if !sanAllowed(id.field, allowed) {
		return authErr(ReasonSANTypeNotAllowed, "%s is not an allowed SAN type for this deployment", id.param)
	}
	leaf := p.Leaf
	if !hasClientAuthEKU(leaf) {
		return authErr(ReasonWrongUsage, "certificate does not list the clientAuth extended key usage")
	}
	if trust == nil || trust.Roots == nil {
		return authErr(ReasonUntrusted, "no trust anchors configured")
	}
	inter := x509.NewCertPool()
	if trust.Intermediates != nil {
		inter = trust.Intermediates.Clone()
	}
	for i, c := range p.Chain {
		if i == MaxChainCertificates {
			break
		}
		inter.AddCert(c)
	}
	_, err := leaf.Verify(x509.VerifyOptions{
		Roots:         trust.Roots,
		Intermediates: inter,
		CurrentTime:   now,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	})
	if err != nil {
		var inv x509.CertificateInvalidError
		if errors.As(err, &inv) {
			switch inv.Reason {
			case x509.Expired:
				return &AuthError{Reason: ReasonExpired, Err: err}
			case x509.IncompatibleUsage:
				return &AuthError{Reason: ReasonWrongUsage, Err: err}
			}
		}
		return &AuthError{Reason: ReasonUntrusted, Err: err}
	}
	if !matchIdentifier(leaf, id) {
		return authErr(ReasonSubjectMismatch, "certificate does not carry the registered %s", id.param)
	}
	return nil
}

func sanAllowed(field string, a SANTypes) bool {
	switch field {
	case "SANDNS":
		return a.DNS
	case "SANURI":
		return a.URI
	case "SANIP":
		return a.IP
	case "SANEmail":
		return a.Email
	}
	return true // SubjectDN
}

func hasClientAuthEKU(c *x509.Certificate) bool {
	for _, u := range c.ExtKeyUsage {
		if u == x509.ExtKeyUsageClientAuth {
			return true
		}
	}
	return false
}

// matchIdentifier implements the exact-match rules of RFC 8705 §2.1.2.
func matchIdentifier(leaf *x509.Certificate, id identifier) bool {
	switch id.field {
	case "SubjectDN":
		want, err := parseDNString(id.value)
		if err != nil {
			return false
		}
		got, err := parseRawSubject(leaf.RawSubject)
		if err != nil {
			return false
		}
		return want.equal(got)
	case "SANDNS":
		for _, d := range leaf.DNSNames {
			if strings.EqualFold(d, id.value) {
				return true
			}
		}
	case "SANURI":
		for _, u := range rawSANURIs(leaf) {
			if u == id.value {
				return true
			}
		}
	case "SANIP":
		want, err := netip.ParseAddr(id.value)
		if err != nil {
			return false
		}
		want = want.Unmap()
		for _, ip := range leaf.IPAddresses {
			if got, ok := netip.AddrFromSlice(ip); ok && got.Unmap() == want {
				return true
			}
		}
	case "SANEmail":
		wl, wd, _ := strings.Cut(id.value, "@")
		for _, e := range leaf.EmailAddresses {
			at := strings.LastIndexByte(e, '@')
			if at >= 0 && e[:at] == wl && strings.EqualFold(e[at+1:], wd) {
				return true
			}
		}
	}
	return false
}

// rawSANURIs returns the uniformResourceIdentifier entries of the subject
// alternative name extension exactly as encoded: x509.Certificate.URIs holds
// re-serialized url.URL values, which can differ from the issued bytes.
func rawSANURIs(c *x509.Certificate) []string {
	var out []string
	for _, ext := range c.Extensions {
		if !ext.Id.Equal(asn1.ObjectIdentifier{2, 5, 29, 17}) {
			continue
		}
		var seq asn1.RawValue
		if rest, err := asn1.Unmarshal(ext.Value, &seq); err != nil || len(rest) != 0 || !seq.IsCompound {
			return nil
		}
		for b := seq.Bytes; len(b) > 0; {
			var gn asn1.RawValue
			rest, err := asn1.Unmarshal(b, &gn)
			if err != nil {
				return nil
			}
			b = rest
			if gn.Class == asn1.ClassContextSpecific && gn.Tag == 6 && !gn.IsCompound {
				out = append(out, string(gn.Bytes))
			}
		}
	}
	return out
}

// authenticateSelfSigned implements RFC 8705 §2.2.
func authenticateSelfSigned(leaf *x509.Certificate, registered []RegisteredCert, now time.Time) error {
	tp := []byte(Thumbprint(leaf))
	var lapsed *RegisteredCert
	for i, rc := range registered {
		if subtle.ConstantTimeCompare(tp, []byte(rc.Thumbprint)) != 1 {
			continue
		}
		if rc.AcceptUntil.IsZero() || !now.After(rc.AcceptUntil) {
			return nil
		}
		lapsed = &registered[i]
	}
	if lapsed != nil {
		return authErr(ReasonRegistrationExpired, "registration accepted until %s", lapsed.AcceptUntil.UTC().Format(time.RFC3339))
	}
	return authErr(ReasonNotRegistered, "thumbprint %s is not registered", string(tp))
}
