package dpop

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"math/big"
	"strings"
	"sync"
	"testing"
	"time"
)

// Test fixtures. The time is fixed: tests never depend on the wall clock
// except the Redis halves, which use Redis's own.
var testNow = time.Unix(1_700_000_000, 0)

const (
	testURL   = "https://as.example.com/token"
	testScope = "tenant-a/client-1"
)

// rsaKeys caches generated RSA keys by size (generation is slow).
var rsaKeys sync.Map

func rsaKey(t testing.TB, bits int) *rsa.PrivateKey {
	t.Helper()
	if k, ok := rsaKeys.Load(bits); ok {
		return k.(*rsa.PrivateKey)
	}
	k, err := rsa.GenerateKey(rand.Reader, bits)
	if err != nil {
		t.Fatal(err)
	}
	actual, _ := rsaKeys.LoadOrStore(bits, k)
	return actual.(*rsa.PrivateKey)
}

// signer makes proofs with one key under one alg name.
type signer struct {
	alg string
	key crypto.Signer
}

func newSigner(t testing.TB, alg string) signer {
	t.Helper()
	switch alg {
	case "ES256", "ES384", "ES512":
		curve := map[string]elliptic.Curve{"ES256": elliptic.P256(), "ES384": elliptic.P384(), "ES512": elliptic.P521()}[alg]
		k, err := ecdsa.GenerateKey(curve, rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return signer{alg, k}
	case "RS256", "RS384", "RS512", "PS256", "PS384", "PS512":
		return signer{alg, rsaKey(t, 2048)}
	case "EdDSA", "Ed25519":
		_, k, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return signer{alg, k}
	}
	t.Fatalf("no signer for %s", alg)
	return signer{}
}

func b64u(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

// publicJWK is the key's public JWK as a map (tests mutate it).
func publicJWK(pub crypto.PublicKey) map[string]any {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		raw, _ := k.Bytes()
		size := (len(raw) - 1) / 2
		crv := map[int]string{32: "P-256", 48: "P-384", 66: "P-521"}[size]
		return map[string]any{"kty": "EC", "crv": crv, "x": b64u(raw[1 : 1+size]), "y": b64u(raw[1+size:])}
	case *rsa.PublicKey:
		return map[string]any{"kty": "RSA", "n": b64u(k.N.Bytes()), "e": b64u(big.NewInt(int64(k.E)).Bytes())}
	case ed25519.PublicKey:
		return map[string]any{"kty": "OKP", "crv": "Ed25519", "x": b64u(k)}
	}
	panic("unknown key")
}

// signRaw signs input the way alg requires, in JWS form.
func signRaw(t testing.TB, alg string, key crypto.Signer, input []byte) []byte {
	t.Helper()
	a, ok := lookupAlgorithm(alg)
	if !ok { // "none", HS256...: any bytes
		return []byte("not-a-signature")
	}
	switch k := key.(type) {
	case ed25519.PrivateKey:
		return ed25519.Sign(k, input)
	case *ecdsa.PrivateKey:
		r, s, err := ecdsa.Sign(rand.Reader, k, hashOf(a.hash, input))
		if err != nil {
			t.Fatal(err)
		}
		size := (k.Curve.Params().BitSize + 7) / 8
		out := make([]byte, 2*size)
		r.FillBytes(out[:size])
		s.FillBytes(out[size:])
		return out
	case *rsa.PrivateKey:
		var sig []byte
		var err error
		if a.family == familyRSAPSS {
			sig, err = rsa.SignPSS(rand.Reader, k, a.hash, hashOf(a.hash, input), &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash})
		} else {
			sig, err = rsa.SignPKCS1v15(rand.Reader, k, a.hash, hashOf(a.hash, input))
		}
		if err != nil {
			t.Fatal(err)
		}
		return sig
	}
	t.Fatal("unknown key")
	return nil
}

func freshJTI() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return b64u(b[:])
}

// proof builds a proof: defaults are a valid token-endpoint proof at
// testNow; edit may change header and claims (delete to omit).
func (s signer) proof(t testing.TB, edit func(h, c map[string]any)) string {
	t.Helper()
	h := map[string]any{"typ": "dpop+jwt", "alg": s.alg, "jwk": publicJWK(s.key.Public())}
	c := map[string]any{"jti": freshJTI(), "htm": "POST", "htu": testURL, "iat": testNow.Unix()}
	if edit != nil {
		edit(h, c)
	}
	return s.compact(t, h, c)
}

func (s signer) compact(t testing.TB, h, c map[string]any) string {
	t.Helper()
	hj, err := json.Marshal(h)
	if err != nil {
		t.Fatal(err)
	}
	cj, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	input := b64u(hj) + "." + b64u(cj)
	alg, _ := h["alg"].(string)
	if alg == "" || !strings.HasPrefix(alg, s.alg[:2]) {
		alg = s.alg // sign with the signer's real alg whatever the header says
	}
	return input + "." + b64u(signRaw(t, alg, s.key, []byte(input)))
}

func testConfig(algs ...string) Config {
	if len(algs) == 0 {
		algs = []string{"ES256", "ES384", "ES512", "PS256", "PS384", "PS512", "RS256", "RS384", "RS512", "EdDSA", "Ed25519"}
	}
	return Config{
		AllowedAlgorithms: algs,
		ProofLifetime:     60 * time.Second,
		AllowedClockSkew:  30 * time.Second,
		ReplayWindow:      90 * time.Second,
		MaxProofBytes:     8192,
		Now:               func() time.Time { return testNow },
	}
}

// fakeClock is a manually advanced clock shared by verifier and state.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func newTestVerifier(t testing.TB, cfg Config, opts MemoryOptions) *Verifier {
	t.Helper()
	if opts.Now == nil {
		opts.Now = cfg.Now
	}
	v, err := NewVerifier(cfg, NewMemoryState(opts))
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func tokenRequest(proof string) Request {
	return Request{Header: []string{proof}, Method: "POST", URL: testURL, NonceScope: testScope}
}

// wantCheck asserts that err is an *Error with the given check.
func wantCheck(t *testing.T, err error, check string) *Error {
	t.Helper()
	if check == "" {
		if err != nil {
			t.Fatalf("want acceptance, got %v", err)
		}
		return nil
	}
	e, ok := err.(*Error)
	if !ok {
		t.Fatalf("want *Error with check %q, got %T %v", check, err, err)
	}
	if e.Check != check {
		t.Fatalf("want check %q, got %q (%s)", check, e.Check, e.Description)
	}
	wantCode := CodeInvalidProof
	if check == CheckNonceMissing || check == CheckNonceInvalid || check == CheckStateLost {
		wantCode = CodeUseNonce
	}
	if e.Code != wantCode {
		t.Fatalf("check %q: want code %q, got %q", check, wantCode, e.Code)
	}
	if strings.Contains(e.Description, "eyJ") {
		t.Fatalf("description leaks the proof: %q", e.Description)
	}
	return e
}

var bg = context.Background()

type contextT = context.Context

func mustJSON(t testing.TB, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func errorsIs(err, target error) bool { return errors.Is(err, target) }
