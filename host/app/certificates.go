package app

import (
	"crypto/x509"
	"fmt"
	"time"

	"stellaops.org/authority/host/config"
	"stellaops.org/authority/host/mtls"
	"stellaops.org/authority/host/oauth"
)

// clientCertificates loads what mTLS client authentication checks against:
// each tenant's trustRoots (tls.devPki's CA for a tenant that configures
// none) and the rule of every certificate client, its registered
// certificates read from certificates, jwksFile and previousCertificates.
// Every error names the configuration key of the file or field at fault, so
// `check` reports what `serve` would refuse; oauth.NewService then refuses a
// rule that could never match, naming the client's key.
func clientCertificates(cfg *config.Config, devCA *x509.Certificate) (oauth.Certificates, error) {
	out := oauth.Certificates{Trust: map[string]*mtls.TrustStore{}, Rules: map[string]mtls.ClientRule{}}
	grace := cfg.Security.SenderConstraints.MTLS.RotationGrace.D()
	for ti := range cfg.Tenants {
		t := &cfg.Tenants[ti]
		var roots []*x509.Certificate
		for ri, f := range t.TrustRoots {
			certs, err := mtls.ReadCertificates(config.ResolvePath(f))
			if err != nil {
				return out, fmt.Errorf("tenants[%d].trustRoots[%d]: %w", ti, ri, err)
			}
			roots = append(roots, certs...)
		}
		if len(t.TrustRoots) == 0 && devCA != nil {
			roots = append(roots, devCA)
		}
		out.Trust[t.ID] = mtls.NewTrustStore(roots...)
		for ci := range t.Clients {
			cl := &t.Clients[ci]
			key := fmt.Sprintf("tenants[%d].clients[%d].tls", ti, ci)
			var rule mtls.ClientRule
			switch cl.AuthMethod {
			case string(mtls.MethodTLSClientAuth):
				rule = mtls.ClientRule{Method: mtls.MethodTLSClientAuth, SubjectDN: cl.TLS.SubjectDN,
					SANDNS: cl.TLS.SANDNS, SANURI: cl.TLS.SANURI, SANIP: cl.TLS.SANIP, SANEmail: cl.TLS.SANEmail}
			case string(mtls.MethodSelfSignedTLSClientAuth):
				var err error
				if rule, err = selfSignedRule(cl.TLS, key, grace); err != nil {
					return out, err
				}
			default:
				continue
			}
			out.Rules[cl.ID] = rule // validated, naming key, by oauth.NewService
		}
	}
	return out, nil
}

// selfSignedRule registers a self_signed_tls_client_auth client's
// certificates (RFC 8705 §2.2.2): the current ones for as long as they are
// valid, the rotated-out ones until rotatedAt + rotationGrace.
func selfSignedRule(tc config.ClientTLS, key string, grace time.Duration) (mtls.ClientRule, error) {
	rule := mtls.ClientRule{Method: mtls.MethodSelfSignedTLSClientAuth}
	register := func(certs []*x509.Certificate, until time.Time) {
		for _, c := range certs {
			rule.Registered = append(rule.Registered, mtls.RegisterCertificate(c, until))
		}
	}
	for i, f := range tc.Certificates {
		certs, err := mtls.ReadCertificates(config.ResolvePath(f))
		if err != nil {
			return rule, fmt.Errorf("%s.certificates[%d]: %w", key, i, err)
		}
		register(certs, time.Time{})
	}
	if tc.JWKSFile != "" {
		certs, err := mtls.ReadJWKSCertificates(config.ResolvePath(tc.JWKSFile))
		if err != nil {
			return rule, fmt.Errorf("%s.jwksFile: %w", key, err)
		}
		register(certs, time.Time{})
	}
	if len(tc.PreviousCertificates) > 0 && tc.RotatedAt.IsZero() {
		return rule, fmt.Errorf("%s.rotatedAt: required with previousCertificates", key)
	}
	for i, f := range tc.PreviousCertificates {
		certs, err := mtls.ReadCertificates(config.ResolvePath(f))
		if err != nil {
			return rule, fmt.Errorf("%s.previousCertificates[%d]: %w", key, i, err)
		}
		register(certs, tc.RotatedAt.Add(grace))
	}
	return rule, nil
}
