package mtls

import (
	"crypto/x509"
	"fmt"
	"net/http"
	"net/netip"
	"strings"
)

// Source says where a presented client certificate came from.
type Source int

const (
	// SourceNone: no certificate was presented (or none could be trusted).
	SourceNone Source = iota
	// SourceTLS: the certificate came from this server's own TLS handshake
	// (r.TLS.PeerCertificates), so the handshake proved key possession.
	SourceTLS
	// SourceProxyHeader: a trusted TLS-terminating proxy forwarded the
	// certificate of its own mutually authenticated connection in a header
	// (RFC 8705 §6.5, RFC 9440); the proxy vouches for key possession.
	SourceProxyHeader
)

// String returns "none", "tls" or "proxy-header", for logs and metric labels.
func (s Source) String() string {
	switch s {
	case SourceTLS:
		return "tls"
	case SourceProxyHeader:
		return "proxy-header"
	default:
		return "none"
	}
}

// Presented is what a request offers for mutual-TLS decisions. The zero
// value means "plain HTTP, no certificate".
type Presented struct {
	// Leaf is the client's end-entity certificate, nil when none was presented.
	Leaf *x509.Certificate
	// Chain holds the further certificates the client (or the proxy on its
	// behalf) sent, nearest issuer first. They are untrusted input: only
	// candidates for path building in Authenticate.
	Chain []*x509.Certificate
	// Source says where Leaf came from.
	Source Source
	// TLS is true when the client reached us over TLS: this server's own
	// connection state exists, or a trusted proxy forwarded a certificate
	// (which it can only have obtained over TLS).
	TLS bool
	// IgnoredUntrustedHeader is true when a certificate header arrived from
	// a peer outside Extractor.TrustedProxies and was ignored. The request is
	// still processed; callers count it because it usually means a client
	// is trying to spoof a certificate, or a proxy is missing from the
	// trusted list.
	IgnoredUntrustedHeader bool
}

// HeaderError reports a certificate header from a trusted proxy that could
// not be parsed. A trusted proxy sending garbage is a deployment fault or a
// sanitisation failure, so the request must fail rather than silently
// proceed without a certificate. Callers answer invalid_client (token
// endpoint) or invalid_token (resources) and log Err.
type HeaderError struct {
	// Header is the canonical header name (HeaderClientCert, ...).
	Header string
	// Err is the parse failure.
	Err error
}

func (e *HeaderError) Error() string {
	return fmt.Sprintf("mtls: malformed %s header from trusted proxy: %v", e.Header, e.Err)
}

func (e *HeaderError) Unwrap() error { return e.Err }

// Extractor finds the client certificate of a request. Its zero value trusts
// no proxy, so only the server's own TLS handshake counts. It holds
// configuration only and is safe for concurrent use.
type Extractor struct {
	// TrustedProxies lists the networks of TLS-terminating proxies whose
	// certificate headers are believed. The proxies MUST remove those headers
	// from incoming client requests (RFC 9440 §2.4); trust is decided on the
	// direct peer address (r.RemoteAddr) only, never on X-Forwarded-For, so
	// RemoteAddr must not be rewritten before FromRequest runs.
	TrustedProxies []netip.Prefix
	// TrustOverTLS makes TrustedProxies' headers count on requests that
	// arrived over TLS too. Off (the default), a request on a TLS connection
	// presents only what its own handshake proved: a direct TLS client
	// inside a proxy network cannot name a certificate it does not hold by
	// sending it in a header. Set it only for a proxy that terminates the
	// client's TLS and re-encrypts to this listener.
	TrustOverTLS bool
	// MaxHeaderBytes, when > 0, lowers the per-header size cap below
	// MaxCertificateHeaderBytes / MaxChainHeaderBytes. It cannot raise them.
	MaxHeaderBytes int
}

// FromRequest returns the certificate r presents, in this order:
//
//  1. the peer certificates of this server's TLS connection
//     (r.TLS.PeerCertificates), when there are any;
//  2. only when r.RemoteAddr is inside TrustedProxies and r came over
//     plain HTTP (or TrustOverTLS is set): the RFC 9440
//     Client-Cert header with the optional Client-Cert-Chain, or else the
//     X-SSL-Client-Cert header (URL-encoded or space-folded PEM);
//  3. nothing.
//
// Certificate headers from any other peer are ignored and reported through
// Presented.IgnoredUntrustedHeader. A malformed, duplicated or oversized
// header from a trusted proxy yields a *HeaderError. FromRequest verifies
// nothing about the certificate itself: that is Authenticate's and
// CheckBinding's job.
func (e *Extractor) FromRequest(r *http.Request) (Presented, error) {
	var p Presented
	if r.TLS != nil {
		p.TLS = true
		if certs := r.TLS.PeerCertificates; len(certs) > 0 {
			p.Leaf, p.Chain, p.Source = certs[0], certs[1:], SourceTLS
		}
	}
	hasHeader := headerPresent(r.Header, HeaderClientCert) ||
		headerPresent(r.Header, HeaderClientCertChain) ||
		headerPresent(r.Header, HeaderXSSLClientCert)
	if !hasHeader {
		return p, nil
	}
	if !e.TrustsPeer(r) {
		p.IgnoredUntrustedHeader = true
		return p, nil
	}
	if p.Leaf != nil {
		// Our own handshake outranks anything a proxy says.
		return p, nil
	}
	leaf, chain, err := e.fromHeaders(r.Header)
	if err != nil {
		return p, err
	}
	if leaf != nil {
		p.Leaf, p.Chain, p.Source, p.TLS = leaf, chain, SourceProxyHeader, true
	}
	return p, nil
}

func (e *Extractor) fromHeaders(h http.Header) (*x509.Certificate, []*x509.Certificate, error) {
	if headerPresent(h, HeaderClientCert) {
		v, err := e.single(h, HeaderClientCert, MaxCertificateHeaderBytes)
		if err != nil {
			return nil, nil, err
		}
		leaf, err := ParseClientCertHeader(v)
		if err != nil {
			return nil, nil, &HeaderError{Header: HeaderClientCert, Err: err}
		}
		var chain []*x509.Certificate
		if vs := h.Values(HeaderClientCertChain); len(vs) > 0 {
			// RFC 9110 §5.3: a List field split over several lines is
			// the comma-joined concatenation.
			v := strings.Join(vs, ", ")
			if err := e.checkSize(HeaderClientCertChain, v, MaxChainHeaderBytes); err != nil {
				return nil, nil, err
			}
			if chain, err = ParseClientCertChainHeader(v); err != nil {
				return nil, nil, &HeaderError{Header: HeaderClientCertChain, Err: err}
			}
		}
		return leaf, chain, nil
	}
	if headerPresent(h, HeaderClientCertChain) {
		return nil, nil, &HeaderError{Header: HeaderClientCertChain, Err: fmt.Errorf("present without %s", HeaderClientCert)}
	}
	if headerPresent(h, HeaderXSSLClientCert) {
		v, err := e.single(h, HeaderXSSLClientCert, MaxCertificateHeaderBytes)
		if err != nil {
			return nil, nil, err
		}
		leaf, err := ParseXSSLClientCert(v)
		if err != nil {
			return nil, nil, &HeaderError{Header: HeaderXSSLClientCert, Err: err}
		}
		return leaf, nil, nil
	}
	return nil, nil, nil
}

// single returns the one value of an Item header; several field lines would
// combine into an invalid Item (RFC 8941 §4.2), so they are an error.
func (e *Extractor) single(h http.Header, name string, limit int) (string, error) {
	vs := h.Values(name)
	if len(vs) != 1 {
		return "", &HeaderError{Header: name, Err: fmt.Errorf("%d field lines, want 1", len(vs))}
	}
	return vs[0], e.checkSize(name, vs[0], limit)
}

func (e *Extractor) checkSize(name, v string, limit int) error {
	if e.MaxHeaderBytes > 0 && e.MaxHeaderBytes < limit {
		limit = e.MaxHeaderBytes
	}
	if len(v) > limit {
		return &HeaderError{Header: name, Err: fmt.Errorf("%w: %d bytes > %d", ErrHeaderTooLarge, len(v), limit)}
	}
	return nil
}

// TrustsPeer reports whether r's forwarded headers may be believed: its
// direct peer is one of TrustedProxies, and r did not arrive over TLS
// unless TrustOverTLS is set. The same rule decides whose X-Forwarded-For
// is believed, so one listener never trusts a peer for one header and not
// for another.
func (e *Extractor) TrustsPeer(r *http.Request) bool {
	if r.TLS != nil && !e.TrustOverTLS {
		return false
	}
	return e.trusted(r.RemoteAddr)
}

// trusted reports whether the direct peer is a configured proxy.
func (e *Extractor) trusted(remoteAddr string) bool {
	if len(e.TrustedProxies) == 0 {
		return false
	}
	var ip netip.Addr
	if ap, err := netip.ParseAddrPort(remoteAddr); err == nil {
		ip = ap.Addr()
	} else if a, err := netip.ParseAddr(remoteAddr); err == nil {
		ip = a
	} else {
		return false
	}
	return e.TrustsProxy(ip)
}

// TrustsProxy reports whether ip is one of TrustedProxies: IPv4-mapped
// IPv6 addresses are compared as IPv4 and zones are dropped. It is the one
// rule, for the direct peer here and for the X-Forwarded-For hops the
// server walks (host/server), so the two never disagree about an address.
func (e *Extractor) TrustsProxy(ip netip.Addr) bool {
	ip = ip.WithZone("").Unmap()
	for _, pfx := range e.TrustedProxies {
		if pfx.Contains(ip) {
			return true
		}
	}
	return false
}

// headerPresent treats a field whose every line is blank as absent: proxies
// commonly send an empty value when the client offered no certificate.
func headerPresent(h http.Header, name string) bool {
	for _, v := range h.Values(name) {
		if strings.TrimSpace(v) != "" {
			return true
		}
	}
	return false
}
