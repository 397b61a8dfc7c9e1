// Package mtls implements OAuth 2.0 mutual-TLS client authentication and
// certificate-bound tokens (RFC 8705), and the reading of client
// certificates forwarded by TLS-terminating proxies (RFC 9440). It is pure
// logic over crypto/x509 and net/http values: it holds no state, performs no
// I/O and knows nothing of tenants' storage, so the HTTP layer calls it with
// what it has and maps the typed results to OAuth errors.
//
// # Rule map
//
// Each rule is enforced by one function and tested by the test named in
// brackets (tests live in this directory).
//
//	RFC 8705 §2     the client certificate comes from the TLS connection     Extractor.FromRequest
//	                [TestRFC8705_2_CertificateFromTLSConnection]
//	RFC 8705 §2.1   tls_client_auth: chain to the tenant's trust anchors      Authenticate (authenticatePKI)
//	                with clientAuth usage, inside the validity period
//	                [TestRFC8705_2_1_TLSClientAuthChainsToTenantRoot]
//	RFC 8705 §2.1.2 exactly one of subject DN, SAN DNS/URI/IP/email           ClientRule.Validate
//	                [TestRFC8705_2_1_2_ExactlyOneIdentifier]
//	RFC 8705 §2.1.2 the registered identifier matches the certificate         Authenticate (matchIdentifier, dn.go)
//	                [TestRFC8705_2_1_2_SubjectDNMatch, TestRFC8705_2_1_2_SANMatch]
//	RFC 4514        subject DN strings: multi-valued RDNs compared as sets,   parseDNString, parseRawSubject
//	                dotted OIDs only in X.660 form
//	                [TestRFC4514_MultiValuedRDNIsASet, TestRFC4514_DottedOIDMustBeValid,
//	                 FuzzParseDNString, FuzzParseRawSubject]
//	RFC 8705 §2.2   self_signed_tls_client_auth: the certificate is one       Authenticate (authenticateSelfSigned)
//	                the client registered (x5c / PEM), no chain check
//	                [TestRFC8705_2_2_SelfSignedMatchesRegistered]
//	RFC 8705 §3     a bound token is usable only with its certificate         CheckBinding
//	                [TestRFC8705_3_BoundTokenAcceptsItsCertificate,
//	                 TestRFC8705_3_BoundTokenRejectsOtherCertificate,
//	                 TestRFC8705_3_MismatchReasons]
//	RFC 8705 §3.1   x5t#S256 = base64url(SHA-256(DER)), no padding            Thumbprint
//	                [TestRFC8705_3_1_ThumbprintIsBase64urlSHA256OfDER]
//	RFC 8705 §6.1   mutual TLS optional; self-signed certificates pass the    ServerTLSConfig
//	                handshake; trust decided after it
//	                [TestRFC8705_6_1_HandshakeAcceptsAnyOrNoClientCertificate]
//	RFC 8705 §6.5   TLS terminated at a proxy: certificate forwarded by it    Extractor.FromRequest
//	RFC 8705 §7.3   TLS 1.2+, BCP 195 cipher suites                           ServerTLSConfig
//	                [TestRFC8705_7_3_TLSVersionsAndCipherSuites]
//	RFC 9440 §2.2   Client-Cert: sf Byte Sequence of the leaf DER             ParseClientCertHeader
//	                [TestRFC9440_2_2_ClientCertHeader, FuzzParseClientCertHeader]
//	RFC 9440 §2.3   Client-Cert-Chain: sf List of Byte Sequences              ParseClientCertChainHeader
//	                [TestRFC9440_2_3_ClientCertChainHeader, FuzzParseClientCertChainHeader]
//	RFC 9440 §2.4   headers believed only from a trusted proxy; a malformed   Extractor.FromRequest
//	                one from it fails the request
//	                [TestRFC9440_2_4_HeaderFromTrustedProxy,
//	                 TestRFC9440_HeaderIgnoredFromUntrustedPeer,
//	                 TestRFC9440_2_4_TLSPeerCertificateOutranksProxyHeader,
//	                 TestRFC9440_2_4_MalformedHeaderFromTrustedProxy]
//	(de facto)      X-SSL-Client-Cert: URL-encoded or space-folded PEM        ParseXSSLClientCert
//	                [TestXSSLClientCertForms, FuzzParseXSSLClientCert]
//
// # Errors
//
// Authenticate returns only *AuthError; every Reason maps to the OAuth
// error invalid_client (RFC 6749 §5.2) and is meant for logs, never for the
// client. CheckBinding returns a MismatchReason, the label of
// authority_mtls_mismatch_total; callers answer 401 invalid_token (RFC 8705
// §3). FromRequest returns *HeaderError for a malformed header from a
// trusted proxy.
//
// # Trust boundaries
//
// Certificates, certificate headers and their chains are attacker input. The
// header parsers cap sizes before decoding and never panic (fuzzed); chain
// certificates are only path-building candidates; proxy headers are believed
// only from TrustedProxies, judged on the direct peer address.
//
// Package mtlstest (a subdirectory) generates CAs, intermediates and leaves
// for tests in this and other packages.
package mtls
