package plugin

import (
	"crypto/ed25519"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
)

// Module signatures. A guild (the people who approve plugins) signs the
// exact bytes of a module with Ed25519; the detached signature is stored,
// base64 (standard alphabet, padded), in FILE.sig beside FILE. The host
// trusts the public keys of RuntimeOptions.GuildKeys (PEM "PUBLIC KEY",
// PKIX). At load, after the sha256 pin and before compilation:
//
//   - a FILE.sig that exists must verify under one of the guild keys, or
//     the module is refused (a signature that cannot be checked, or does
//     not verify, means the file is not what the guild approved);
//   - with Spec.RequireSignature, a module without a valid FILE.sig is
//     refused.

// SignatureSuffix is appended to a module's path to find its signature.
const SignatureSuffix = ".sig"

// ErrNoSignature reports a module without a FILE.sig.
var ErrNoSignature = errors.New("no signature file")

// Sign returns the base64 (standard, padded) Ed25519 signature of wasm by
// priv: the content of FILE.sig.
func Sign(wasm []byte, priv ed25519.PrivateKey) string {
	return base64.StdEncoding.EncodeToString(ed25519.Sign(priv, wasm))
}

// VerifySignature checks sigB64 (surrounding white space ignored) over
// wasm against keys and returns the index of the first key it verifies
// under. The error says why it does not verify.
func VerifySignature(wasm []byte, sigB64 string, keys []ed25519.PublicKey) (keyIndex int, err error) {
	sig, err := base64.StdEncoding.DecodeString(strings.TrimSpace(sigB64))
	if err != nil {
		return -1, errors.New("signature is not standard base64")
	}
	if len(sig) != ed25519.SignatureSize {
		return -1, fmt.Errorf("signature has %d bytes, an Ed25519 signature has %d", len(sig), ed25519.SignatureSize)
	}
	if len(keys) == 0 {
		return -1, errors.New("no guild keys configured to verify it")
	}
	for i, k := range keys {
		if len(k) == ed25519.PublicKeySize && ed25519.Verify(k, wasm, sig) {
			return i, nil
		}
	}
	return -1, fmt.Errorf("signature does not verify under any of the %d guild keys (module modified or signed by another key)", len(keys))
}

// CheckSignatureFile verifies wasmPath+".sig" over wasm. It returns
// ErrNoSignature (wrapped) when the file does not exist, the index of the
// verifying key, or the reason the signature is invalid.
func CheckSignatureFile(wasmPath string, wasm []byte, keys []ed25519.PublicKey) (keyIndex int, err error) {
	sigPath := wasmPath + SignatureSuffix
	b, err := os.ReadFile(sigPath)
	if errors.Is(err, fs.ErrNotExist) {
		return -1, fmt.Errorf("%s: %w", sigPath, ErrNoSignature)
	}
	if err != nil {
		return -1, err
	}
	i, err := VerifySignature(wasm, string(b), keys)
	if err != nil {
		return -1, fmt.Errorf("%s: %w", sigPath, err)
	}
	return i, nil
}

// checkSignature applies the signature rules of a Spec at load.
func (r *Runtime) checkSignature(spec Spec, b []byte, digest string) error {
	err := r.signatureOf(spec.Path, b, digest)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, ErrNoSignature):
		if spec.RequireSignature {
			return fmt.Errorf("plugin %q: module %s: requireSignature is set and %s%s does not exist", spec.Name, spec.Path, spec.Path, SignatureSuffix)
		}
		return nil
	default:
		return fmt.Errorf("plugin %q: module %s: invalid signature: %w", spec.Name, spec.Path, err)
	}
}

// LoadGuildKeys reads Ed25519 public keys from PEM files (each may hold
// several "PUBLIC KEY" blocks, PKIX). The error names the file. Keys are
// returned in file then block order: VerifySignature's index refers to it.
func LoadGuildKeys(paths []string) ([]ed25519.PublicKey, error) {
	var keys []ed25519.PublicKey
	for _, path := range paths {
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("guild key %s: %w", path, err)
		}
		n := 0
		for {
			var blk *pem.Block
			blk, b = pem.Decode(b)
			if blk == nil {
				break
			}
			if blk.Type != "PUBLIC KEY" {
				return nil, fmt.Errorf("guild key %s: PEM block %q, want \"PUBLIC KEY\"", path, blk.Type)
			}
			k, err := x509.ParsePKIXPublicKey(blk.Bytes)
			if err != nil {
				return nil, fmt.Errorf("guild key %s: %w", path, err)
			}
			ek, ok := k.(ed25519.PublicKey)
			if !ok {
				return nil, fmt.Errorf("guild key %s: %T is not an Ed25519 key", path, k)
			}
			keys = append(keys, ek)
			n++
		}
		if n == 0 {
			return nil, fmt.Errorf("guild key %s: no PEM \"PUBLIC KEY\" block", path)
		}
	}
	return keys, nil
}

// LoadPrivateKey reads an Ed25519 private key from a PEM "PRIVATE KEY"
// (PKCS#8) file; the error names the file.
func LoadPrivateKey(path string) (ed25519.PrivateKey, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("signing key %s: %w", path, err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "PRIVATE KEY" {
		return nil, fmt.Errorf("signing key %s: no PEM \"PRIVATE KEY\" (PKCS#8) block", path)
	}
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("signing key %s: %w", path, err)
	}
	ek, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("signing key %s: %T is not an Ed25519 key", path, k)
	}
	return ek, nil
}

// MarshalPublicKeyPEM and MarshalPrivateKeyPEM encode keys in the formats
// LoadGuildKeys and LoadPrivateKey read.
func MarshalPublicKeyPEM(pub ed25519.PublicKey) ([]byte, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), nil
}

// MarshalPrivateKeyPEM: see MarshalPublicKeyPEM.
func MarshalPrivateKeyPEM(priv ed25519.PrivateKey) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// signatureOf is CheckSignatureFile's verdict on path, checked once per
// path and module digest for the runtime's life (a module a thousand
// tenants load is verified once: Ed25519 hashes the whole module).
func (r *Runtime) signatureOf(path string, b []byte, digest string) error {
	key := path + "\x00" + digest
	r.sigMu.Lock()
	err, ok := r.sigs[key]
	r.sigMu.Unlock()
	if ok {
		return err
	}
	_, err = CheckSignatureFile(path, b, r.opts.GuildKeys)
	r.sigMu.Lock()
	if r.sigs == nil {
		r.sigs = map[string]error{}
	}
	r.sigs[key] = err
	r.sigMu.Unlock()
	return err
}
