package mtls

import "crypto/tls"

// ServerTLSConfig returns a listener configuration for an authorization
// server or resource server that accepts mutual TLS (RFC 8705 §6.1, §7.3):
//
//   - TLS 1.2 minimum (BCP 195); TLS 1.3 uses Go's default suites, which are
//     all AEAD and not configurable;
//   - for TLS 1.2, only ECDHE key exchange with AEAD ciphers (AES-GCM,
//     ChaCha20-Poly1305), so every session has forward secrecy;
//   - ClientAuth is tls.RequestClientCert: the server asks for a certificate
//     but the handshake neither requires nor verifies one against any CA.
//     Trust is per tenant and decided by Authenticate and CheckBinding after
//     the handshake. RFC 8705 §6.1: mutual TLS stays optional when other
//     client authentication methods are offered, and self-signed
//     certificates must get through the handshake. The handshake still
//     checks the client's CertificateVerify signature, i.e. possession of
//     the private key, which is what lets a token be bound to it.
//
// The result is a new value; callers may add NextProtos or further
// certificates before use.
func ServerTLSConfig(cert tls.Certificate) *tls.Config {
	return &tls.Config{
		Certificates: []tls.Certificate{cert},
		MinVersion:   tls.VersionTLS12,
		CipherSuites: []uint16{
			tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
			tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
			tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
			tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
			tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
			tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
		},
		ClientAuth: tls.RequestClientCert,
	}
}
