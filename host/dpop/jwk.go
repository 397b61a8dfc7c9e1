package dpop

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"math/big"
)

// RSA modulus bounds. The lower bound is NIST SP 800-131A's; the upper bound
// keeps the cost of one verification bounded (an attacker chooses the key).
const (
	minRSABits = 2048
	maxRSABits = 8192
)

// privateJWKMembers returns the JWK members that carry private or symmetric
// key material (RFC 7518 §6.2.2, §6.3.2, §6.4.1; RFC 8037 §2). Any of them in
// a proof's jwk refuses the proof (RFC 9449 §4.3 (7)).
func privateJWKMembers() [8]string {
	return [8]string{"d", "p", "q", "dp", "dq", "qi", "oth", "k"}
}

// publicKey is a parsed proof key with its RFC 7638 thumbprint.
type publicKey struct {
	key crypto.PublicKey
	jkt string
}

// parseJWK implements RFC 9449 §4.3 (7) and the key half of (5): raw is the
// jwk header member; the key must be public, well formed and of the type and
// curve alg requires. Members are matched by exact name (RFC 7517 §4).
func parseJWK(raw json.RawMessage, alg algorithm) (publicKey, *Error) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil || m == nil {
		return publicKey{}, refuse(CheckJWKInvalid, "the jwk header is not a JSON object")
	}
	for _, name := range privateJWKMembers() {
		if _, ok := m[name]; ok {
			return publicKey{}, refuse(CheckJWKPrivate, "the jwk header must not contain private key material")
		}
	}
	kty, ok := jsonString(m, "kty")
	if !ok {
		return publicKey{}, refuse(CheckJWKInvalid, "the jwk header has no kty")
	}
	if kty == "oct" {
		return publicKey{}, refuse(CheckJWKPrivate, "the jwk header must not be a symmetric key")
	}
	if kty != alg.kty {
		return publicKey{}, refuse(CheckJWKAlgMismatch, "the jwk key type does not match alg")
	}
	switch kty {
	case "EC":
		return parseECJWK(m, alg)
	case "RSA":
		return parseRSAJWK(m)
	case "OKP":
		return parseOKPJWK(m)
	}
	return publicKey{}, refuse(CheckJWKInvalid, "unsupported jwk key type")
}

func parseECJWK(m map[string]json.RawMessage, alg algorithm) (publicKey, *Error) {
	crv, ok := jsonString(m, "crv")
	if !ok || crv != alg.crv {
		return publicKey{}, refuse(CheckJWKAlgMismatch, "the jwk curve does not match alg")
	}
	var curve elliptic.Curve
	switch crv {
	case "P-256":
		curve = elliptic.P256()
	case "P-384":
		curve = elliptic.P384()
	case "P-521":
		curve = elliptic.P521()
	}
	size := alg.size
	x, okx := jsonBase64(m, "x")
	y, oky := jsonBase64(m, "y")
	// RFC 7518 §6.2.1.2-3: coordinates are full length, leading zeros kept.
	if !okx || !oky || len(x) != size || len(y) != size {
		return publicKey{}, refuse(CheckJWKInvalid, "the jwk EC coordinates are malformed")
	}
	point := make([]byte, 1+2*size)
	point[0] = 4
	copy(point[1:], x)
	copy(point[1+size:], y)
	// ParseUncompressedPublicKey refuses points not on the curve.
	pub, err := ecdsa.ParseUncompressedPublicKey(curve, point)
	if err != nil {
		return publicKey{}, refuse(CheckJWKInvalid, "the jwk EC point is not on the curve")
	}
	return publicKey{key: pub, jkt: ecThumbprint(crv, x, y)}, nil
}

func parseRSAJWK(m map[string]json.RawMessage) (publicKey, *Error) {
	n, okn := jsonBase64(m, "n")
	e, oke := jsonBase64(m, "e")
	if !okn || !oke || len(n) == 0 || len(e) == 0 {
		return publicKey{}, refuse(CheckJWKInvalid, "the jwk RSA members are malformed")
	}
	n = trimLeadingZeros(n)
	e = trimLeadingZeros(e)
	if len(e) == 0 || len(e) > 4 {
		return publicKey{}, refuse(CheckJWKInvalid, "the jwk RSA exponent is out of range")
	}
	var exp int64
	for _, b := range e {
		exp = exp<<8 | int64(b)
	}
	if exp < 3 || exp%2 == 0 || exp > 1<<31-1 {
		return publicKey{}, refuse(CheckJWKInvalid, "the jwk RSA exponent is out of range")
	}
	modulus := new(big.Int).SetBytes(n)
	if bits := modulus.BitLen(); bits < minRSABits || bits > maxRSABits {
		return publicKey{}, refuse(CheckJWKAlgMismatch, "the jwk RSA modulus must be 2048 to 8192 bits")
	}
	pub := &rsa.PublicKey{N: modulus, E: int(exp)}
	return publicKey{key: pub, jkt: rsaThumbprint(e, n)}, nil
}

func parseOKPJWK(m map[string]json.RawMessage) (publicKey, *Error) {
	crv, ok := jsonString(m, "crv")
	if !ok || crv != "Ed25519" {
		return publicKey{}, refuse(CheckJWKAlgMismatch, "only the Ed25519 curve is supported for OKP keys")
	}
	x, ok := jsonBase64(m, "x")
	if !ok || len(x) != ed25519.PublicKeySize {
		return publicKey{}, refuse(CheckJWKInvalid, "the jwk Ed25519 key is malformed")
	}
	return publicKey{key: ed25519.PublicKey(x), jkt: okpThumbprint(crv, x)}, nil
}

// Thumbprint returns the RFC 7638 JWK SHA-256 thumbprint (base64url, no
// padding) of an ECDSA (P-256/384/521), RSA or Ed25519 public key: the hash
// of the required members only, in lexicographic order, EC coordinates at
// the curve's full width, RSA e and n without leading zero octets. It is the
// value of cnf.jkt (RFC 9449 §6.1). Other key types return "" and false.
func Thumbprint(key crypto.PublicKey) (string, bool) {
	switch k := key.(type) {
	case *ecdsa.PublicKey:
		var crv string
		switch k.Curve {
		case elliptic.P256():
			crv = "P-256"
		case elliptic.P384():
			crv = "P-384"
		case elliptic.P521():
			crv = "P-521"
		default:
			return "", false
		}
		raw, err := k.Bytes() // 0x04 || X || Y, fixed width
		if err != nil {
			return "", false
		}
		size := (len(raw) - 1) / 2
		return ecThumbprint(crv, raw[1:1+size], raw[1+size:]), true
	case *rsa.PublicKey:
		if k.N == nil {
			return "", false
		}
		e := big.NewInt(int64(k.E)).Bytes()
		return rsaThumbprint(e, k.N.Bytes()), true
	case ed25519.PublicKey:
		if len(k) != ed25519.PublicKeySize {
			return "", false
		}
		return okpThumbprint("Ed25519", k), true
	}
	return "", false
}

// The canonical JSON of RFC 7638 §3.2 is written by hand: the member values
// are base64url strings and fixed curve names, none of which need escaping.

func ecThumbprint(crv string, x, y []byte) string {
	buf := make([]byte, 0, 64+4*len(x))
	buf = append(buf, `{"crv":"`...)
	buf = append(buf, crv...)
	buf = append(buf, `","kty":"EC","x":"`...)
	buf = base64.RawURLEncoding.AppendEncode(buf, x)
	buf = append(buf, `","y":"`...)
	buf = base64.RawURLEncoding.AppendEncode(buf, y)
	buf = append(buf, `"}`...)
	return hashB64(buf)
}

func rsaThumbprint(e, n []byte) string {
	buf := make([]byte, 0, 32+2*len(n))
	buf = append(buf, `{"e":"`...)
	buf = base64.RawURLEncoding.AppendEncode(buf, e)
	buf = append(buf, `","kty":"RSA","n":"`...)
	buf = base64.RawURLEncoding.AppendEncode(buf, n)
	buf = append(buf, `"}`...)
	return hashB64(buf)
}

func okpThumbprint(crv string, x []byte) string {
	buf := make([]byte, 0, 96)
	buf = append(buf, `{"crv":"`...)
	buf = append(buf, crv...)
	buf = append(buf, `","kty":"OKP","x":"`...)
	buf = base64.RawURLEncoding.AppendEncode(buf, x)
	buf = append(buf, `"}`...)
	return hashB64(buf)
}

func hashB64(b []byte) string {
	sum := sha256.Sum256(b)
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// AccessTokenHash returns the ath value for an access token (RFC 9449 §4.2):
// base64url(SHA-256(ASCII token)), no padding.
func AccessTokenHash(token string) string {
	return hashB64([]byte(token))
}

func trimLeadingZeros(b []byte) []byte {
	for len(b) > 0 && b[0] == 0 {
		b = b[1:]
	}
	return b
}

// jsonString returns member name of m when it is a JSON string. null, numbers
// and other types count as absent.
func jsonString(m map[string]json.RawMessage, name string) (string, bool) {
	raw, ok := m[name]
	if !ok || len(raw) == 0 || raw[0] != '"' {
		return "", false
	}
	var s string
	if json.Unmarshal(raw, &s) != nil {
		return "", false
	}
	return s, true
}

// jsonBase64 returns the decoded value of a base64url (no padding, canonical)
// string member.
func jsonBase64(m map[string]json.RawMessage, name string) ([]byte, bool) {
	s, ok := jsonString(m, name)
	if !ok {
		return nil, false
	}
	return decodeB64(s)
}

// decodeB64 decodes base64url without padding (RFC 7515 §2) and refuses
// non-canonical trailing bits, so that one value has exactly one encoding.
func decodeB64(s string) ([]byte, bool) {
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return nil, false
	}
	if r := len(s) % 4; r != 0 {
		last := b64Value(s[len(s)-1])
		if (r == 2 && last&0x0f != 0) || (r == 3 && last&0x03 != 0) {
			return nil, false
		}
	}
	return b, true
}

func b64Value(c byte) byte {
	switch {
	case c >= 'A' && c <= 'Z':
		return c - 'A'
	case c >= 'a' && c <= 'z':
		return c - 'a' + 26
	case c >= '0' && c <= '9':
		return c - '0' + 52
	case c == '-':
		return 62
	}
	return 63 // '_'; other bytes were refused by DecodeString
}
