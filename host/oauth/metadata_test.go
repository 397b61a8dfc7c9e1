package oauth_test

import (
	"encoding/json"
	"slices"
	"testing"

	"stellaops.org/authority/host/config"
	"stellaops.org/authority/host/oauth"
)

func metadataConfig(mutate func(*config.Config)) *config.Config {
	cfg := config.Default()
	cfg.Issuer = "https://as.test/"
	cfg.MTLSIssuer = "https://mtls.as.test/"
	cfg.Listen.HTTPS = "127.0.0.1:8443"
	cfg.Tenants = []config.Tenant{{ID: "t", Clients: []config.Client{
		{ID: "c", AuthMethod: "client_secret_basic", Grants: []string{"client_credentials", "password", "refresh_token"}},
	}}}
	if mutate != nil {
		mutate(cfg)
	}
	return cfg
}

// RFC 8414 §2 / §3.3: every URL starts with the issuer identifier, which has
// no trailing slash however the file spells it.
func TestRFC8414_3_3_MetadataIssuerIsTheIssuerID(t *testing.T) {
	md := oauth.NewMetadata(metadataConfig(nil))
	if md.Issuer != "https://as.test" || md.TokenEndpoint != "https://as.test/token" || md.JWKSURI != "https://as.test/jwks" {
		t.Fatalf("%+v", md)
	}
	if md.MTLSEndpointAliases == nil || md.MTLSEndpointAliases.TokenEndpoint != "https://mtls.as.test/token" {
		t.Fatalf("aliases %+v", md.MTLSEndpointAliases)
	}
}

// Only grant types the token endpoint serves are advertised, whatever the
// clients are configured with.
func TestRFC8414_2_GrantTypesSupportedAreTheServedOnes(t *testing.T) {
	md := oauth.NewMetadata(metadataConfig(nil))
	if !slices.Equal(md.GrantTypesSupported, oauth.ServedGrantTypes()) || !slices.Equal(md.GrantTypesSupported, []string{"client_credentials", "password", "refresh_token"}) {
		t.Fatalf("grant_types_supported %v", md.GrantTypesSupported)
	}
}

// RFC 8705 §5: mtls_endpoint_aliases name endpoints that exist, so they are
// advertised only with an HTTPS listener; so are certificate-bound tokens
// and certificate client authentication, and only with mTLS enabled.
func TestRFC8705_5_MTLSEndpointAliasesOnlyWithAnHTTPSListener(t *testing.T) {
	certMethods := []string{"tls_client_auth", "self_signed_tls_client_auth"}
	cases := map[string]struct {
		mutate          func(*config.Config)
		aliases, bound  bool
		certAuthMethods bool
	}{
		"https listener":                  {nil, true, true, true},
		"mtlsIssuer without listen.https": {func(c *config.Config) { c.Listen.HTTPS = "" }, false, false, false},
		// Validation refuses certificate clients without listen.https,
		// trusted proxies or not.
		"no https listener, trusted proxies": {func(c *config.Config) {
			c.Listen.HTTPS = ""
			c.Security.TrustedProxies = []string{"10.0.0.0/8"}
		}, false, false, false},
		"mtls disabled": {func(c *config.Config) { c.Security.SenderConstraints.MTLS.Enabled = false }, false, false, false},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			cfg := metadataConfig(tc.mutate)
			md := oauth.NewMetadata(cfg)
			if (md.MTLSEndpointAliases != nil) != tc.aliases {
				t.Errorf("mtls_endpoint_aliases %+v, want present=%v", md.MTLSEndpointAliases, tc.aliases)
			}
			if md.TLSClientCertificateBoundAccessTokens != tc.bound {
				t.Errorf("tls_client_certificate_bound_access_tokens %v, want %v", md.TLSClientCertificateBoundAccessTokens, tc.bound)
			}
			for _, list := range [][]string{md.TokenEndpointAuthMethodsSupported, md.IntrospectionEndpointAuthMethodsSupported, md.RevocationEndpointAuthMethodsSupported} {
				for _, m := range certMethods {
					if slices.Contains(list, m) != tc.certAuthMethods {
						t.Errorf("auth methods %v: %s present=%v, want %v", list, m, !tc.certAuthMethods, tc.certAuthMethods)
					}
				}
				if !slices.Contains(list, "client_secret_basic") || !slices.Contains(list, "client_secret_post") {
					t.Errorf("auth methods %v lack the secret methods", list)
				}
			}
		})
	}
}

// RFC 9449 §5.1: the DPoP algorithms are the configured allow-list, absent
// when DPoP is off.
func TestRFC9449_5_1_DPoPAlgorithmsFollowTheConfiguration(t *testing.T) {
	md := oauth.NewMetadata(metadataConfig(func(c *config.Config) {
		c.Security.SenderConstraints.DPoP.AllowedAlgorithms = []string{"ES256"}
	}))
	if !slices.Equal(md.DPoPSigningAlgValuesSupported, []string{"ES256"}) {
		t.Fatalf("dpop_signing_alg_values_supported %v", md.DPoPSigningAlgValuesSupported)
	}
	md = oauth.NewMetadata(metadataConfig(func(c *config.Config) { c.Security.SenderConstraints.DPoP.Enabled = false }))
	raw, _ := json.Marshal(md)
	var doc map[string]any
	_ = json.Unmarshal(raw, &doc)
	if _, ok := doc["dpop_signing_alg_values_supported"]; ok {
		t.Fatalf("DPoP disabled but advertised: %s", raw)
	}
}
