package oauth

import (
	"encoding/json"
	"slices"

	"stellaops.org/authority/host/config"
	"stellaops.org/authority/host/mtls"
)

// Metadata is the RFC 8414 authorization server metadata document. It is
// built from one configuration (NewMetadata) and advertises only what the
// Service built from that same configuration serves; a reload builds a new
// Service, and with it a new document.
//
// The document is plain OAuth 2.0: it is also served at
// /.well-known/openid-configuration (where clients look by habit), but it
// claims no OpenID Connect feature (no ID tokens, no subject types, no
// `openid` scope), because none is implemented.
type Metadata struct {
	// Issuer is config.IssuerID: identical to the `iss` of every token and
	// introspection answer (RFC 8414 §3.3).
	Issuer                string `json:"issuer"`
	TokenEndpoint         string `json:"token_endpoint"`
	IntrospectionEndpoint string `json:"introspection_endpoint"`
	RevocationEndpoint    string `json:"revocation_endpoint"`
	JWKSURI               string `json:"jwks_uri"`
	// FreshAuthEndpoint is this server's POST /fresh-auth (not an RFC
	// 8414 name).
	FreshAuthEndpoint string `json:"fresh_auth_endpoint"`
	// ResponseTypesSupported is required by RFC 8414 §2 and empty: there
	// is no authorization endpoint.
	ResponseTypesSupported                    []string             `json:"response_types_supported"`
	GrantTypesSupported                       []string             `json:"grant_types_supported"`
	TokenEndpointAuthMethodsSupported         []string             `json:"token_endpoint_auth_methods_supported"`
	IntrospectionEndpointAuthMethodsSupported []string             `json:"introspection_endpoint_auth_methods_supported"`
	RevocationEndpointAuthMethodsSupported    []string             `json:"revocation_endpoint_auth_methods_supported"`
	DPoPSigningAlgValuesSupported             []string             `json:"dpop_signing_alg_values_supported,omitempty"`
	TLSClientCertificateBoundAccessTokens     bool                 `json:"tls_client_certificate_bound_access_tokens,omitempty"`
	MTLSEndpointAliases                       *MTLSEndpointAliases `json:"mtls_endpoint_aliases,omitempty"`
}

// MTLSEndpointAliases are the RFC 8705 §5 endpoint URLs on the HTTPS
// listener (config.MTLSAlias).
type MTLSEndpointAliases struct {
	TokenEndpoint         string `json:"token_endpoint"`
	IntrospectionEndpoint string `json:"introspection_endpoint"`
	RevocationEndpoint    string `json:"revocation_endpoint"`
	FreshAuthEndpoint     string `json:"fresh_auth_endpoint"`
}

// servedGrants are the grant types the token endpoint implements. A
// grant a client is configured with but that is not listed here is
// refused with unsupported_grant_type, and is not advertised.
var servedGrants = []string{"client_credentials", "password", "refresh_token"}

// ServedGrantTypes lists the grant types POST /token implements, in the
// order the metadata advertises them.
func ServedGrantTypes() []string { return slices.Clone(servedGrants) }

// AuthMethods lists the client authentication methods the server
// implements and cfg enables (the same at /token, /introspect and
// /revoke): both secret methods always, and the RFC 8705 §2 certificate
// methods when mTLS is enabled and an HTTPS listener is configured.
// certAuth refuses the certificate methods with mTLS disabled, and
// validation refuses certificate clients without listen.https, so
// advertising them then would be a lie.
func AuthMethods(cfg *config.Config) []string {
	out := []string{MethodSecretBasic, MethodSecretPost}
	if mtlsServed(cfg) {
		out = append(out, string(mtls.MethodTLSClientAuth), string(mtls.MethodSelfSignedTLSClientAuth))
	}
	return out
}

func hasPublicClient(cfg *config.Config) bool {
	for _, t := range cfg.Tenants {
		for _, c := range t.Clients {
			if c.AuthMethod == MethodNone {
				return true
			}
		}
	}
	return false
}

// mtlsServed reports whether cfg serves RFC 8705: mTLS enabled, and an
// HTTPS listener (with its mtlsIssuer alias) a certificate can reach.
func mtlsServed(cfg *config.Config) bool {
	return cfg.Security.SenderConstraints.MTLS.Enabled && cfg.MTLSAlias() != ""
}

// NewMetadata builds the metadata document of cfg:
//   - every URL starts with config.IssuerID, so `issuer` equals the `iss`
//     of the tokens (RFC 8414 §3.3);
//   - grant_types_supported is ServedGrantTypes;
//   - the *_auth_methods_supported lists are AuthMethods;
//   - dpop_signing_alg_values_supported is the DPoP alg allow-list when
//     DPoP is enabled (RFC 9449 §5.1); both are restart-only settings, so
//     after a reload cfg holds the running values;
//   - tls_client_certificate_bound_access_tokens (RFC 8705 §3.3) and
//     mtls_endpoint_aliases (RFC 8705 §5) are present only when mTLS is
//     enabled and an HTTPS listener is configured (listen.https): an alias
//     nothing listens on would send clients nowhere, and a mtlsIssuer
//     without listen.https is such an alias.
func NewMetadata(cfg *config.Config) *Metadata {
	base := cfg.IssuerID()
	methods := AuthMethods(cfg)
	md := &Metadata{
		Issuer:                            base,
		TokenEndpoint:                     base + "/token",
		IntrospectionEndpoint:             base + "/introspect",
		RevocationEndpoint:                base + "/revoke",
		JWKSURI:                           base + "/jwks",
		FreshAuthEndpoint:                 base + "/fresh-auth",
		ResponseTypesSupported:            []string{},
		GrantTypesSupported:               ServedGrantTypes(),
		TokenEndpointAuthMethodsSupported: methods,
		IntrospectionEndpointAuthMethodsSupported: slices.Clone(methods),
		RevocationEndpointAuthMethodsSupported:    slices.Clone(methods),
	}
	if hasPublicClient(cfg) {
		// Public clients use /token and /revoke (RFC 7009 §2.1) with their
		// client_id alone; /introspect needs an authenticated client.
		md.TokenEndpointAuthMethodsSupported = append(md.TokenEndpointAuthMethodsSupported, MethodNone)
		md.RevocationEndpointAuthMethodsSupported = append(md.RevocationEndpointAuthMethodsSupported, MethodNone)
	}
	if d := cfg.Security.SenderConstraints.DPoP; d.Enabled {
		md.DPoPSigningAlgValuesSupported = slices.Clone(d.AllowedAlgorithms)
	}
	if mtlsServed(cfg) {
		alias := cfg.MTLSAlias()
		md.TLSClientCertificateBoundAccessTokens = true
		md.MTLSEndpointAliases = &MTLSEndpointAliases{
			TokenEndpoint:         alias + "/token",
			IntrospectionEndpoint: alias + "/introspect",
			RevocationEndpoint:    alias + "/revoke",
			FreshAuthEndpoint:     alias + "/fresh-auth",
		}
	}
	return md
}

// MetadataJSON is the encoded metadata document of the Service's
// configuration, built once with the Service. Both listeners and both
// well-known paths serve these bytes; callers must not modify them.
func (s *Service) MetadataJSON() []byte { return s.metadata }

func encodeMetadata(cfg *config.Config) ([]byte, error) {
	return json.Marshal(NewMetadata(cfg))
}
