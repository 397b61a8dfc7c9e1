package mtls

import (
	"bytes"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"net/url"
	"strings"
)

// Header names a TLS-terminating reverse proxy uses to forward the client
// certificate of its own mutually authenticated connection (RFC 8705 §6.5).
const (
	// HeaderClientCert is the RFC 9440 §2.2 field: the end-entity
	// certificate as a Structured Field Byte Sequence (":BASE64-DER:").
	HeaderClientCert = "Client-Cert"
	// HeaderClientCertChain is the RFC 9440 §2.3 field: the rest of the
	// chain as a Structured Field List of Byte Sequences, nearest issuer first.
	HeaderClientCertChain = "Client-Cert-Chain"
	// HeaderXSSLClientCert is the de facto field nginx fills from
	// $ssl_client_escaped_cert: the leaf as URL-encoded PEM.
	HeaderXSSLClientCert = "X-SSL-Client-Cert"
)

// Size limits for attacker-facing header values. They are constants, not
// configuration: Extractor.MaxHeaderBytes can only lower them.
const (
	// MaxCertificateHeaderBytes caps one certificate header value (Client-Cert
	// or X-SSL-Client-Cert) before any decoding. 16 KiB holds a leaf with an
	// RSA-8192 key and generous extensions, URL-encoded.
	MaxCertificateHeaderBytes = 16 << 10
	// MaxChainHeaderBytes caps the Client-Cert-Chain value before decoding.
	MaxChainHeaderBytes = 64 << 10
	// MaxChainCertificates caps the number of certificates in
	// Client-Cert-Chain; real PKI paths are far shorter.
	MaxChainCertificates = 8
)

// ErrHeaderTooLarge is wrapped by the parsers when a value exceeds its cap.
var ErrHeaderTooLarge = errors.New("mtls: certificate header value too large")

// ParseClientCertHeader decodes an RFC 9440 §2.2 Client-Cert value: one
// Structured Field Item (RFC 8941 §3.3) whose bare item is a Byte Sequence
// (RFC 8941 §3.3.5) holding the DER of exactly one certificate. Parameters on
// the item are syntax-checked and ignored, as RFC 8941 requires of unknown
// parameters. The value is rejected, never truncated, when longer than
// MaxCertificateHeaderBytes. It never panics, whatever the input.
func ParseClientCertHeader(value string) (*x509.Certificate, error) {
	if len(value) > MaxCertificateHeaderBytes {
		return nil, fmt.Errorf("%w: %d bytes > %d", ErrHeaderTooLarge, len(value), MaxCertificateHeaderBytes)
	}
	p := sfParser{s: value}
	p.skipSP()
	der, err := p.item()
	if err != nil {
		return nil, fmt.Errorf("mtls: Client-Cert: %w", err)
	}
	p.skipSP()
	if !p.done() {
		return nil, fmt.Errorf("mtls: Client-Cert: trailing characters at offset %d", p.i)
	}
	return parseDER(der)
}

// ParseClientCertChainHeader decodes an RFC 9440 §2.3 Client-Cert-Chain
// value: a Structured Field List (RFC 8941 §3.1) whose members are Byte
// Sequences, each the DER of one certificate, in the order the proxy received
// them (each certifying the one before; the leaf itself is not included).
// Inner lists and non-byte-sequence members are rejected, as are more than
// MaxChainCertificates members or a value longer than MaxChainHeaderBytes.
// An empty value is an empty list. It never panics, whatever the input.
func ParseClientCertChainHeader(value string) ([]*x509.Certificate, error) {
	if len(value) > MaxChainHeaderBytes {
		return nil, fmt.Errorf("%w: %d bytes > %d", ErrHeaderTooLarge, len(value), MaxChainHeaderBytes)
	}
	p := sfParser{s: value}
	p.skipSP()
	var chain []*x509.Certificate
	for !p.done() {
		if len(chain) == MaxChainCertificates {
			return nil, fmt.Errorf("mtls: Client-Cert-Chain: more than %d certificates", MaxChainCertificates)
		}
		der, err := p.item()
		if err != nil {
			return nil, fmt.Errorf("mtls: Client-Cert-Chain member %d: %w", len(chain), err)
		}
		c, err := parseDER(der)
		if err != nil {
			return nil, fmt.Errorf("mtls: Client-Cert-Chain member %d: %w", len(chain), err)
		}
		chain = append(chain, c)
		p.skipOWS()
		if p.done() {
			break
		}
		if !p.consume(',') {
			return nil, fmt.Errorf("mtls: Client-Cert-Chain: expected ',' at offset %d", p.i)
		}
		p.skipOWS()
		if p.done() {
			return nil, errors.New("mtls: Client-Cert-Chain: trailing ','")
		}
	}
	return chain, nil
}

// FormatClientCertHeader encodes cert as an RFC 9440 Client-Cert value
// (":BASE64-DER:"), the inverse of ParseClientCertHeader. Tests and proxy
// simulators use it.
func FormatClientCertHeader(cert *x509.Certificate) string {
	return ":" + base64.StdEncoding.EncodeToString(cert.Raw) + ":"
}

// FormatClientCertChainHeader encodes chain as an RFC 9440
// Client-Cert-Chain value, the inverse of ParseClientCertChainHeader.
func FormatClientCertChainHeader(chain []*x509.Certificate) string {
	parts := make([]string, len(chain))
	for i, c := range chain {
		parts[i] = FormatClientCertHeader(c)
	}
	return strings.Join(parts, ", ")
}

const (
	pemBegin = "-----BEGIN CERTIFICATE-----"
	pemEnd   = "-----END CERTIFICATE-----"
)

// ParseXSSLClientCert decodes an X-SSL-Client-Cert value: one PEM
// "CERTIFICATE" block, either URL-encoded (nginx $ssl_client_escaped_cert;
// decoded with path unescaping so a literal '+' of base64 stays '+') or raw
// with its line breaks replaced by spaces or tabs (what several proxies send
// because header values cannot contain newlines). Whitespace inside the
// base64 body is ignored; anything other than whitespace around the block,
// a second block, or PEM headers inside it are rejected. The value is
// rejected when longer than MaxCertificateHeaderBytes before or after
// unescaping. It never panics, whatever the input.
func ParseXSSLClientCert(value string) (*x509.Certificate, error) {
	if len(value) > MaxCertificateHeaderBytes {
		return nil, fmt.Errorf("%w: %d bytes > %d", ErrHeaderTooLarge, len(value), MaxCertificateHeaderBytes)
	}
	s := value
	if strings.Contains(s, "%") {
		u, err := url.PathUnescape(s)
		if err != nil {
			return nil, fmt.Errorf("mtls: X-SSL-Client-Cert: bad URL encoding: %w", err)
		}
		s = u
	}
	s = strings.TrimSpace(s)
	rest, ok := strings.CutPrefix(s, pemBegin)
	if !ok {
		return nil, errors.New("mtls: X-SSL-Client-Cert: no " + pemBegin + " marker at the start")
	}
	body, tail, ok := strings.Cut(rest, pemEnd)
	if !ok {
		return nil, errors.New("mtls: X-SSL-Client-Cert: no " + pemEnd + " marker")
	}
	if strings.TrimSpace(tail) != "" {
		return nil, errors.New("mtls: X-SSL-Client-Cert: data after the certificate")
	}
	b64 := strings.Map(func(r rune) rune {
		switch r {
		case ' ', '\t', '\r', '\n':
			return -1
		}
		return r
	}, body)
	der, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		return nil, fmt.Errorf("mtls: X-SSL-Client-Cert: bad base64: %w", err)
	}
	return parseDER(der)
}

// parseDER parses exactly one DER certificate; x509.ParseCertificate rejects
// trailing bytes.
func parseDER(der []byte) (*x509.Certificate, error) {
	if len(der) == 0 {
		return nil, errors.New("mtls: empty certificate")
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("mtls: %w", err)
	}
	return c, nil
}

// sfParser is the subset of the RFC 8941 §4.2 parsing algorithms the two
// RFC 9440 fields need: Items whose bare item is a Byte Sequence, their
// Parameters (any bare item type, checked then discarded), and List
// separators. Inner Lists are not accepted: neither field uses them.
type sfParser struct {
	s string
	i int
}

func (p *sfParser) done() bool { return p.i >= len(p.s) }

func (p *sfParser) peek() byte {
	if p.done() {
		return 0
	}
	return p.s[p.i]
}

func (p *sfParser) consume(c byte) bool {
	if !p.done() && p.s[p.i] == c {
		p.i++
		return true
	}
	return false
}

func (p *sfParser) skipSP() {
	for !p.done() && p.s[p.i] == ' ' {
		p.i++
	}
}

func (p *sfParser) skipOWS() {
	for !p.done() && (p.s[p.i] == ' ' || p.s[p.i] == '\t') {
		p.i++
	}
}

// item parses sf-item = bare-item parameters, where the bare item must be a
// Byte Sequence; it returns the decoded bytes.
func (p *sfParser) item() ([]byte, error) {
	b, err := p.byteSequence()
	if err != nil {
		return nil, err
	}
	return b, p.parameters()
}

// byteSequence implements RFC 8941 §4.2.7.
func (p *sfParser) byteSequence() ([]byte, error) {
	if !p.consume(':') {
		return nil, fmt.Errorf("expected byte sequence ':' at offset %d", p.i)
	}
	end := strings.IndexByte(p.s[p.i:], ':')
	if end < 0 {
		return nil, errors.New("unterminated byte sequence")
	}
	b64 := p.s[p.i : p.i+end]
	p.i += end + 1
	for i := 0; i < len(b64); i++ {
		c := b64[i]
		if !(isAlpha(c) || isDigit(c) || c == '+' || c == '/' || c == '=') {
			return nil, fmt.Errorf("invalid base64 character %q", c)
		}
	}
	// RFC 8941 §4.2.7: parsers SHOULD NOT fail when "=" padding is absent.
	enc := base64.StdEncoding
	if len(b64)%4 != 0 && !strings.Contains(b64, "=") {
		enc = base64.RawStdEncoding
	}
	out, err := enc.DecodeString(b64)
	if err != nil {
		return nil, fmt.Errorf("bad base64: %w", err)
	}
	return out, nil
}

// parameters implements RFC 8941 §4.2.3.2, discarding the result.
func (p *sfParser) parameters() error {
	for p.consume(';') {
		p.skipSP()
		if err := p.key(); err != nil {
			return err
		}
		if p.consume('=') {
			if err := p.bareItem(); err != nil {
				return err
			}
		}
	}
	return nil
}

// key implements RFC 8941 §4.2.3.3.
func (p *sfParser) key() error {
	c := p.peek()
	if p.done() || !(isLCAlpha(c) || c == '*') {
		return fmt.Errorf("expected parameter key at offset %d", p.i)
	}
	for !p.done() {
		c = p.s[p.i]
		if !(isLCAlpha(c) || isDigit(c) || c == '_' || c == '-' || c == '.' || c == '*') {
			break
		}
		p.i++
	}
	return nil
}

// bareItem implements RFC 8941 §4.2.3.1 for parameter values, discarding
// the value.
func (p *sfParser) bareItem() error {
	c := p.peek()
	switch {
	case p.done():
		return errors.New("missing parameter value")
	case c == '-' || isDigit(c):
		return p.number()
	case c == '"':
		return p.str()
	case c == ':':
		_, err := p.byteSequence()
		return err
	case c == '?':
		p.i++
		if !p.consume('0') && !p.consume('1') {
			return fmt.Errorf("bad boolean at offset %d", p.i)
		}
		return nil
	case isAlpha(c) || c == '*':
		p.i++
		for !p.done() && (isTChar(p.s[p.i]) || p.s[p.i] == ':' || p.s[p.i] == '/') {
			p.i++
		}
		return nil
	}
	return fmt.Errorf("unexpected %q at offset %d", c, p.i)
}

// number implements RFC 8941 §4.2.4 (integer or decimal) syntax only: an
// integer has at most 15 digits, a decimal at most 12 before the "." and 1
// to 3 after it.
func (p *sfParser) number() error {
	p.consume('-')
	start, digits, dot := p.i, 0, false
scan:
	for !p.done() {
		c := p.s[p.i]
		switch {
		case isDigit(c):
			digits++
		case c == '.' && !dot && digits > 0 && digits <= 12:
			dot = true
		default:
			break scan
		}
		p.i++
	}
	n := p.i - start
	frac := 0
	if dot {
		frac = n - 1 - strings.IndexByte(p.s[start:p.i], '.')
	}
	switch {
	case digits == 0 || p.s[p.i-1] == '.':
		return fmt.Errorf("bad number at offset %d", start)
	case !dot && n > 15, dot && frac > 3:
		return fmt.Errorf("number too long at offset %d", start)
	}
	return nil
}

// str implements RFC 8941 §4.2.5 syntax only.
func (p *sfParser) str() error {
	p.i++ // opening DQUOTE
	for !p.done() {
		c := p.s[p.i]
		p.i++
		switch {
		case c == '\\':
			if p.done() || (p.s[p.i] != '"' && p.s[p.i] != '\\') {
				return errors.New("bad escape in string")
			}
			p.i++
		case c == '"':
			return nil
		case c < 0x20 || c > 0x7e:
			return errors.New("invalid character in string")
		}
	}
	return errors.New("unterminated string")
}

func isAlpha(c byte) bool   { return (c|0x20) >= 'a' && (c|0x20) <= 'z' }
func isLCAlpha(c byte) bool { return c >= 'a' && c <= 'z' }
func isDigit(c byte) bool   { return c >= '0' && c <= '9' }

// isTChar reports RFC 9110 tchar.
func isTChar(c byte) bool {
	return isAlpha(c) || isDigit(c) || bytes.IndexByte([]byte("!#$%&'*+-.^_`|~"), c) >= 0
}
