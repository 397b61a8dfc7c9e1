// Package keys holds the ES256 keys that sign access tokens: loading (or
// generating, for development) PEM files, publishing every key at /jwks,
// signing with the one active key, and verifying tokens signed by any
// published key. Rotation is configuration: add the new key, make it active,
// keep the old one published until the tokens it signed have expired.
package keys

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"sync"
)

// Key is one P-256 signing key.
type Key struct {
	KID     string
	Private *ecdsa.PrivateKey
}

// Set is an immutable set of keys with exactly one active key.
type Set struct {
	active *Key
	byKID  map[string]*Key
	jwks   []byte
	// headers caches the encoded protected header per typ.
	headers sync.Map
}

// Spec describes one key to load.
type Spec struct {
	KID      string
	File     string
	Active   bool
	Generate bool
}

// Load reads (or, with Generate, creates) every key file. Exactly one spec
// must be active.
func Load(specs []Spec) (*Set, error) {
	keys := make([]*Key, 0, len(specs))
	var active *Key
	for i, s := range specs {
		priv, err := loadOrGenerate(s.File, s.Generate)
		if err != nil {
			return nil, fmt.Errorf("signing.keys[%d].file: %w", i, err)
		}
		k := &Key{KID: s.KID, Private: priv}
		if k.KID == "" {
			k.KID = Thumbprint(&priv.PublicKey)
		}
		keys = append(keys, k)
		if s.Active {
			active = k
		}
	}
	return NewSet(keys, active)
}

// NewSet builds a set; active must be one of keys.
func NewSet(keys []*Key, active *Key) (*Set, error) {
	if active == nil {
		return nil, errors.New("signing.keys: no active key")
	}
	s := &Set{active: active, byKID: map[string]*Key{}}
	type jwk struct {
		Kty string `json:"kty"`
		Crv string `json:"crv"`
		X   string `json:"x"`
		Y   string `json:"y"`
		Kid string `json:"kid"`
		Use string `json:"use"`
		Alg string `json:"alg"`
	}
	var doc struct {
		Keys []jwk `json:"keys"`
	}
	for _, k := range keys {
		if k.Private.Curve != elliptic.P256() {
			return nil, fmt.Errorf("signing key %q: only P-256 (ES256) keys are supported", k.KID)
		}
		if _, dup := s.byKID[k.KID]; dup {
			return nil, fmt.Errorf("signing key %q: duplicate kid", k.KID)
		}
		s.byKID[k.KID] = k
		x, y := coords(&k.Private.PublicKey)
		doc.Keys = append(doc.Keys, jwk{Kty: "EC", Crv: "P-256", X: x, Y: y, Kid: k.KID, Use: "sig", Alg: "ES256"})
	}
	var err error
	if s.jwks, err = json.Marshal(doc); err != nil {
		return nil, err
	}
	return s, nil
}

// JWKS returns the RFC 7517 JWK Set of every published public key.
func (s *Set) JWKS() []byte { return s.jwks }

// ActiveKID names the key that signs new tokens.
func (s *Set) ActiveKID() string { return s.active.KID }

// Public returns the public key for kid.
func (s *Set) Public(kid string) (*ecdsa.PublicKey, bool) {
	k, ok := s.byKID[kid]
	if !ok {
		return nil, false
	}
	return &k.Private.PublicKey, true
}

var b64 = base64.RawURLEncoding

// Sign produces a compact JWS (ES256) over claims with the header
// {"alg":"ES256","kid":...,"typ":typ}.
func (s *Set) Sign(typ string, claims any) (string, error) {
	payload, err := json.Marshal(claims)
	if err != nil {
		return "", err
	}
	hdr, err := s.header(typ)
	if err != nil {
		return "", err
	}
	n := len(hdr) + b64.EncodedLen(len(payload))
	buf := make([]byte, n, n+1+b64.EncodedLen(64))
	copy(buf, hdr)
	b64.Encode(buf[len(hdr):], payload)
	digest := sha256.Sum256(buf)
	r, sig, err := ecdsa.Sign(rand.Reader, s.active.Private, digest[:])
	if err != nil {
		return "", err
	}
	var raw [64]byte
	r.FillBytes(raw[:32])
	sig.FillBytes(raw[32:])
	buf = append(buf, '.')
	buf = b64.AppendEncode(buf, raw[:])
	return string(buf), nil
}

// header returns the encoded protected header for typ followed by '.',
// built once per typ (it only depends on the active key and typ).
func (s *Set) header(typ string) (string, error) {
	if h, ok := s.headers.Load(typ); ok {
		return h.(string), nil
	}
	raw, err := json.Marshal(struct {
		Alg string `json:"alg"`
		Kid string `json:"kid"`
		Typ string `json:"typ"`
	}{"ES256", s.active.KID, typ})
	if err != nil {
		return "", err
	}
	h := b64.EncodeToString(raw) + "."
	s.headers.Store(typ, h)
	return h, nil
}

// ErrInvalidToken is returned by Verify for anything that is not a token
// this server signed with a published key.
var ErrInvalidToken = errors.New("keys: invalid token")

// Verify checks a compact JWS signed by one of the set's keys with the
// expected typ and returns its decoded payload. It does not look at claims.
func (s *Set) Verify(token, typ string) ([]byte, error) {
	if len(token) > 16<<10 {
		return nil, ErrInvalidToken
	}
	h, rest, ok := strings.Cut(token, ".")
	if !ok {
		return nil, ErrInvalidToken
	}
	p, sigPart, ok := strings.Cut(rest, ".")
	if !ok || strings.Contains(sigPart, ".") {
		return nil, ErrInvalidToken
	}
	hdrRaw, err := b64.DecodeString(h)
	if err != nil {
		return nil, ErrInvalidToken
	}
	var hdr struct {
		Alg  string   `json:"alg"`
		Kid  string   `json:"kid"`
		Typ  string   `json:"typ"`
		Crit []string `json:"crit"`
	}
	if err := json.Unmarshal(hdrRaw, &hdr); err != nil || hdr.Alg != "ES256" || hdr.Typ != typ || hdr.Crit != nil {
		return nil, ErrInvalidToken
	}
	pub, ok := s.Public(hdr.Kid)
	if !ok {
		return nil, ErrInvalidToken
	}
	sig, err := b64.DecodeString(sigPart)
	if err != nil || len(sig) != 64 {
		return nil, ErrInvalidToken
	}
	digest := sha256.Sum256([]byte(token[:len(h)+1+len(p)]))
	r := new(big.Int).SetBytes(sig[:32])
	ss := new(big.Int).SetBytes(sig[32:])
	if !ecdsa.Verify(pub, digest[:], r, ss) {
		return nil, ErrInvalidToken
	}
	payload, err := b64.DecodeString(p)
	if err != nil {
		return nil, ErrInvalidToken
	}
	return payload, nil
}

// Thumbprint is the RFC 7638 SHA-256 thumbprint of a P-256 public key.
func Thumbprint(pub *ecdsa.PublicKey) string {
	x, y := coords(pub)
	var b bytes.Buffer
	b.WriteString(`{"crv":"P-256","kty":"EC","x":"`)
	b.WriteString(x)
	b.WriteString(`","y":"`)
	b.WriteString(y)
	b.WriteString(`"}`)
	sum := sha256.Sum256(b.Bytes())
	return b64.EncodeToString(sum[:])
}

func coords(pub *ecdsa.PublicKey) (string, string) {
	raw, err := pub.Bytes() // 0x04 || X || Y, fixed width
	if err != nil || len(raw) != 65 {
		return "", ""
	}
	return b64.EncodeToString(raw[1:33]), b64.EncodeToString(raw[33:])
}

func loadOrGenerate(path string, generate bool) (*ecdsa.PrivateKey, error) {
	raw, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) && generate {
		k, gerr := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if gerr != nil {
			return nil, gerr
		}
		der, gerr := x509.MarshalPKCS8PrivateKey(k)
		if gerr != nil {
			return nil, gerr
		}
		if gerr := os.MkdirAll(filepath.Dir(path), 0o700); gerr != nil {
			return nil, gerr
		}
		if gerr := WriteFileAtomic(path, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); gerr != nil {
			return nil, gerr
		}
		return k, nil
	}
	if err != nil {
		return nil, err
	}
	return ParsePrivateKey(raw)
}

// ParsePrivateKey reads a PKCS#8 or SEC 1 EC private key PEM.
func ParsePrivateKey(raw []byte) (*ecdsa.PrivateKey, error) {
	blk, _ := pem.Decode(raw)
	if blk == nil {
		return nil, errors.New("no PEM block")
	}
	var k crypto.PrivateKey
	var err error
	switch blk.Type {
	case "PRIVATE KEY":
		k, err = x509.ParsePKCS8PrivateKey(blk.Bytes)
	case "EC PRIVATE KEY":
		k, err = x509.ParseECPrivateKey(blk.Bytes)
	default:
		return nil, fmt.Errorf("unsupported PEM type %q", blk.Type)
	}
	if err != nil {
		return nil, err
	}
	ec, ok := k.(*ecdsa.PrivateKey)
	if !ok {
		return nil, errors.New("not an EC private key")
	}
	return ec, nil
}

// WriteFileAtomic writes data to a temporary file beside path and renames it
// into place, so a crash never leaves a half-written key or certificate.
func WriteFileAtomic(path string, data []byte, perm os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".tmp-"+filepath.Base(path))
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(perm); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
