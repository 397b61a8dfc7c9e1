package plugin

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func newKey(t *testing.T) (ed25519.PublicKey, ed25519.PrivateKey) {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return pub, priv
}

// signedModule writes a loadable module and, with priv non-nil, its .sig.
func signedModule(t *testing.T, priv ed25519.PrivateKey) (Spec, []byte) {
	t.Helper()
	s := writeModule(t, abiModule(1, i64c(0)))
	b, err := os.ReadFile(s.Path)
	if err != nil {
		t.Fatal(err)
	}
	if priv != nil {
		if err := os.WriteFile(s.Path+SignatureSuffix, []byte(Sign(b, priv)+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return s, b
}

func loadWith(s Spec, keys ...ed25519.PublicKey) error {
	m, err := NewManager(context.Background(), RuntimeOptions{GuildKeys: keys}, map[string][]Spec{"a": {s}}, Deps{})
	if err == nil {
		m.Close(context.Background())
	}
	return err
}

func TestSignatureValidLoads(t *testing.T) {
	other, _ := newKey(t)
	pub, priv := newKey(t)
	s, b := signedModule(t, priv)
	s.RequireSignature = true
	if err := loadWith(s, other, pub); err != nil {
		t.Fatal(err)
	}
	sig, _ := os.ReadFile(s.Path + SignatureSuffix)
	if i, err := VerifySignature(b, string(sig), []ed25519.PublicKey{other, pub}); err != nil || i != 1 {
		t.Fatalf("key index %d, %v", i, err)
	}
}

func TestSignatureUnsignedLoadsWhenNotRequired(t *testing.T) {
	pub, _ := newKey(t)
	s, _ := signedModule(t, nil)
	if err := loadWith(s, pub); err != nil {
		t.Fatal(err)
	}
	if err := loadWith(s); err != nil {
		t.Fatal(err)
	}
}

func TestSignatureMissingWhenRequiredRefused(t *testing.T) {
	pub, _ := newKey(t)
	s, _ := signedModule(t, nil)
	s.RequireSignature = true
	err := loadWith(s, pub)
	if err == nil || !strings.Contains(err.Error(), `plugin "hostile"`) || !strings.Contains(err.Error(), s.Path) ||
		!strings.Contains(err.Error(), "requireSignature") {
		t.Fatalf("error = %v", err)
	}
}

// TestSignatureTamperedModuleRefused: the module changed after signing
// (and the operator re-pinned the new digest): the signature no longer
// verifies.
func TestSignatureTamperedModuleRefused(t *testing.T) {
	pub, priv := newKey(t)
	s, b := signedModule(t, priv)
	tampered := abiModule(1, i64c(1)).bytes()
	if err := os.WriteFile(s.Path, tampered, 0o644); err != nil {
		t.Fatal(err)
	}
	s.SHA256 = Digest(tampered)
	err := loadWith(s, pub)
	if err == nil || !strings.Contains(err.Error(), "invalid signature") || !strings.Contains(err.Error(), "does not verify") ||
		!strings.Contains(err.Error(), s.Path) {
		t.Fatalf("error = %v", err)
	}
	// Required or not: a present signature is always checked.
	if _, err := VerifySignature(b, Sign(b, priv), []ed25519.PublicKey{pub}); err != nil {
		t.Fatal(err)
	}
}

func TestSignatureWrongKeyRefused(t *testing.T) {
	_, priv := newKey(t)
	other, _ := newKey(t)
	s, _ := signedModule(t, priv)
	err := loadWith(s, other)
	if err == nil || !strings.Contains(err.Error(), "does not verify under any of the 1 guild keys") {
		t.Fatalf("error = %v", err)
	}
	// A signature with no guild key to check it against is refused too.
	err = loadWith(s)
	if err == nil || !strings.Contains(err.Error(), "no guild keys configured") {
		t.Fatalf("error = %v", err)
	}
}

func TestSignatureMalformedRefused(t *testing.T) {
	pub, _ := newKey(t)
	s, _ := signedModule(t, nil)
	for _, sig := range []string{"not base64!", "AAAA"} {
		os.WriteFile(s.Path+SignatureSuffix, []byte(sig), 0o644)
		if err := loadWith(s, pub); err == nil || !strings.Contains(err.Error(), "invalid signature") {
			t.Fatalf("%q: error = %v", sig, err)
		}
	}
}

// TestSignatureCheckedBeforeCompilation: bytes that do not even compile
// are refused for their signature, never handed to the compiler; and the
// sha256 pin is checked before the signature.
func TestSignatureCheckedBeforeCompilation(t *testing.T) {
	pub, priv := newKey(t)
	_, other := newKey(t)
	garbage := []byte("\x00asm\x01\x00\x00\x00\xff\xff")
	path := filepath.Join(t.TempDir(), "g.wasm")
	os.WriteFile(path, garbage, 0o644)
	os.WriteFile(path+SignatureSuffix, []byte(Sign(garbage, other)), 0o644)
	s := Spec{Name: "g", Path: path, SHA256: Digest(garbage), Hooks: []string{"token"}}
	err := loadWith(s, pub)
	if err == nil || !strings.Contains(err.Error(), "invalid signature") || strings.Contains(err.Error(), "compile") || strings.Contains(err.Error(), "metering") {
		t.Fatalf("error = %v", err)
	}
	os.WriteFile(path+SignatureSuffix, []byte(Sign(garbage, priv)), 0o644)
	if err := loadWith(s, pub); err == nil || !strings.Contains(err.Error(), "refused by the metering pass") {
		t.Fatalf("validly signed garbage: error = %v", err)
	}
	s.SHA256 = strings.Repeat("0", 64)
	if err := loadWith(s, pub); err == nil || !strings.Contains(err.Error(), "sha256 mismatch") {
		t.Fatalf("error = %v", err)
	}
}

func TestLoadGuildKeys(t *testing.T) {
	dir := t.TempDir()
	pub1, priv := newKey(t)
	pub2, _ := newKey(t)
	p1, _ := MarshalPublicKeyPEM(pub1)
	p2, _ := MarshalPublicKeyPEM(pub2)
	both := filepath.Join(dir, "both.pem")
	os.WriteFile(both, append(p1, p2...), 0o644)
	keys, err := LoadGuildKeys([]string{both})
	if err != nil || len(keys) != 2 || !keys[0].Equal(pub1) || !keys[1].Equal(pub2) {
		t.Fatalf("%v %v", keys, err)
	}
	privPEM, _ := MarshalPrivateKeyPEM(priv)
	privPath := filepath.Join(dir, "k.key")
	os.WriteFile(privPath, privPEM, 0o600)
	got, err := LoadPrivateKey(privPath)
	if err != nil || !got.Equal(priv) {
		t.Fatalf("%v", err)
	}
	bad := map[string][]byte{
		"private.pem": privPEM,
		"empty.pem":   nil,
		"junk.pem":    []byte("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n"),
	}
	for name, content := range bad {
		path := filepath.Join(dir, name)
		os.WriteFile(path, content, 0o644)
		if _, err := LoadGuildKeys([]string{both, path}); err == nil || !strings.Contains(err.Error(), path) {
			t.Errorf("%s: error = %v", name, err)
		}
	}
	if _, err := LoadGuildKeys([]string{filepath.Join(dir, "missing.pem")}); err == nil || !strings.Contains(err.Error(), "missing.pem") {
		t.Errorf("missing: %v", err)
	}
	if _, err := LoadPrivateKey(both); err == nil || !strings.Contains(err.Error(), both) {
		t.Errorf("public key as private: %v", err)
	}
}
