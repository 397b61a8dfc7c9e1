// Package dpoptest builds DPoP proofs (RFC 9449 §4.2) for tests: an ES256
// client key and proofs whose every claim a test can set or spoil.
package dpoptest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"
	"time"
)

// Key is a client's P-256 DPoP key.
type Key struct {
	Private *ecdsa.PrivateKey
	// JWK is the public key as the proof header's jwk members.
	JWK map[string]string
}

// NewKey returns a fresh key.
func NewKey(t testing.TB) *Key {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := k.PublicKey.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	b := base64.RawURLEncoding
	return &Key{Private: k, JWK: map[string]string{"kty": "EC", "crv": "P-256", "x": b.EncodeToString(raw[1:33]), "y": b.EncodeToString(raw[33:])}}
}

// Thumbprint is the key's RFC 7638 SHA-256 thumbprint (cnf.jkt).
func (k *Key) Thumbprint() string {
	j := `{"crv":"P-256","kty":"EC","x":"` + k.JWK["x"] + `","y":"` + k.JWK["y"] + `"}`
	s := sha256.Sum256([]byte(j))
	return base64.RawURLEncoding.EncodeToString(s[:])
}

// Proof says what a proof claims. Zero fields take defaults: HTM POST, Typ
// dpop+jwt, a random JTI, the key's own JWK; empty Nonce and ATH are left
// out. IAT is required (a zero time is sent as such).
type Proof struct {
	HTM, HTU, Nonce, JTI, ATH, Typ string
	IAT                            time.Time
	// JWK replaces the header's key (the signature stays the Key's).
	JWK map[string]string
}

// Proof signs a proof with p's claims.
func (k *Key) Proof(t testing.TB, p Proof) string {
	t.Helper()
	if p.HTM == "" {
		p.HTM = "POST"
	}
	if p.Typ == "" {
		p.Typ = "dpop+jwt"
	}
	if p.JTI == "" {
		var b [12]byte
		_, _ = rand.Read(b[:])
		p.JTI = base64.RawURLEncoding.EncodeToString(b[:])
	}
	jwk := p.JWK
	if jwk == nil {
		jwk = k.JWK
	}
	hdr, _ := json.Marshal(map[string]any{"typ": p.Typ, "alg": "ES256", "jwk": jwk})
	claims := map[string]any{"jti": p.JTI, "htm": p.HTM, "htu": p.HTU, "iat": p.IAT.Unix()}
	if p.Nonce != "" {
		claims["nonce"] = p.Nonce
	}
	if p.ATH != "" {
		claims["ath"] = p.ATH
	}
	pl, _ := json.Marshal(claims)
	b := base64.RawURLEncoding
	in := b.EncodeToString(hdr) + "." + b.EncodeToString(pl)
	d := sha256.Sum256([]byte(in))
	r, s, err := ecdsa.Sign(rand.Reader, k.Private, d[:])
	if err != nil {
		t.Fatal(err)
	}
	var sig [64]byte
	r.FillBytes(sig[:32])
	s.FillBytes(sig[32:])
	return in + "." + b.EncodeToString(sig[:])
}

// ATH is the ath claim for an access token (RFC 9449 §4.2).
func ATH(token string) string {
	s := sha256.Sum256([]byte(token))
	return base64.RawURLEncoding.EncodeToString(s[:])
}

// Claims decodes the payload of a JWT (an access token's claims, cnf
// included) without verifying it.
func Claims(t testing.TB, tok string) map[string]any {
	t.Helper()
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		t.Fatalf("not a JWS: %q", tok)
	}
	raw, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	return m
}
