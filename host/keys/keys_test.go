package keys

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func newSet(t testing.TB, kids ...string) *Set {
	t.Helper()
	var ks []*Key
	for _, kid := range kids {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		ks = append(ks, &Key{KID: kid, Private: k})
	}
	s, err := NewSet(ks, ks[len(ks)-1])
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestSignVerifyRoundTrip(t *testing.T) {
	s := newSet(t, "old", "new")
	tok, err := s.Sign("at+jwt", map[string]any{"jti": "x"})
	if err != nil {
		t.Fatal(err)
	}
	payload, err := s.Verify(tok, "at+jwt")
	if err != nil || string(payload) != `{"jti":"x"}` {
		t.Fatalf("%s %v", payload, err)
	}
	if _, err := s.Verify(tok, "fresh-auth+jwt"); err == nil {
		t.Fatal("a token of another typ must not verify")
	}
	tampered := tok[:len(tok)-2] + "AA"
	if _, err := s.Verify(tampered, "at+jwt"); err == nil {
		t.Fatal("a tampered signature verified")
	}
	other := newSet(t, "new")
	if _, err := other.Verify(tok, "at+jwt"); err == nil {
		t.Fatal("a token signed by another key with the same kid verified")
	}
}

func TestVerifyRefusesNoneAndCrit(t *testing.T) {
	s := newSet(t, "k")
	b := base64.RawURLEncoding
	for _, hdr := range []string{`{"alg":"none","kid":"k","typ":"at+jwt"}`, `{"alg":"ES256","kid":"k","typ":"at+jwt","crit":["exp"]}`, `{"alg":"HS256","kid":"k","typ":"at+jwt"}`} {
		tok := b.EncodeToString([]byte(hdr)) + "." + b.EncodeToString([]byte(`{}`)) + "." + b.EncodeToString(make([]byte, 64))
		if _, err := s.Verify(tok, "at+jwt"); err == nil {
			t.Fatalf("accepted %s", hdr)
		}
	}
}

func TestRotationPublishesEveryKeySignsWithActive(t *testing.T) {
	s := newSet(t, "a", "b")
	var doc struct {
		Keys []map[string]string `json:"keys"`
	}
	if err := json.Unmarshal(s.JWKS(), &doc); err != nil || len(doc.Keys) != 2 {
		t.Fatalf("%s %v", s.JWKS(), err)
	}
	for _, k := range doc.Keys {
		if _, ok := k["d"]; ok {
			t.Fatal("private key published")
		}
	}
	tok, _ := s.Sign("at+jwt", struct{}{})
	if !strings.HasPrefix(tok, base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"ES256","kid":"b"`))[:20]) {
		t.Fatalf("header of %s", tok)
	}
}

// RFC 9449 §4.1's example key has the RFC 7638 thumbprint the RFC states.
func TestRFC7638ThumbprintOfRFC9449ExampleKey(t *testing.T) {
	b := base64.RawURLEncoding
	x, _ := b.DecodeString("l8tFrhx-34tV3hRICRDY9zCkDlpBhF42UQUfWVAWBFs")
	y, _ := b.DecodeString("9VE4jf_Ok_o64zbTTlcuNJajHmt6v9TDVrU0CdvGRDA")
	pub := &ecdsa.PublicKey{Curve: elliptic.P256(), X: new(big.Int).SetBytes(x), Y: new(big.Int).SetBytes(y)}
	if got := Thumbprint(pub); got != "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I" {
		t.Fatal(got)
	}
}

func TestLoadGeneratesOnceThenReuses(t *testing.T) {
	p := filepath.Join(t.TempDir(), "sub", "k.pem")
	s1, err := Load([]Spec{{File: p, Active: true, Generate: true}})
	if err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(p)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("key file %v %v", st, err)
	}
	s2, err := Load([]Spec{{File: p, Active: true, Generate: true}})
	if err != nil || s1.ActiveKID() != s2.ActiveKID() {
		t.Fatalf("a generated key must be reused: %s vs %s (%v)", s1.ActiveKID(), s2.ActiveKID(), err)
	}
	if _, err := Load([]Spec{{File: filepath.Join(t.TempDir(), "missing.pem"), Active: true}}); err == nil || !strings.Contains(err.Error(), "signing.keys[0].file") {
		t.Fatalf("missing key without generate: %v", err)
	}
}

// FuzzVerify feeds attacker-controlled tokens (the introspection and
// revocation `token` parameter) to Verify: it must never panic, and
// anything it accepts must carry a valid signature by the set's key.
func FuzzVerify(f *testing.F) {
	s := newSet(f, "k")
	good, _ := s.Sign("at+jwt", map[string]any{"jti": "abc"})
	f.Add(good)
	f.Add("a.b.c")
	f.Add("..")
	f.Add(good + ".")
	f.Add(strings.Repeat("A", 100))
	f.Fuzz(func(t *testing.T, tok string) {
		payload, err := s.Verify(tok, "at+jwt")
		if err == nil && tok != good && string(payload) != `{"jti":"abc"}` {
			t.Fatalf("accepted a token it did not sign: %q", tok)
		}
	})
}

func BenchmarkSign(b *testing.B) {
	s := newSet(b, "k")
	claims := map[string]any{"iss": "http://127.0.0.1:8080", "sub": "demo", "jti": "x"}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.Sign("at+jwt", claims); err != nil {
			b.Fatal(err)
		}
	}
}
