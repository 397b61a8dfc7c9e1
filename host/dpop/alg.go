package dpop

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"math/big"
)

type family uint8

const (
	familyECDSA family = iota + 1
	familyRSAPKCS1
	familyRSAPSS
	familyEdDSA
)

// algorithm describes one JWS alg this package can verify: all are
// asymmetric signature algorithms registered in IANA JOSE (RFC 7518 §3.1,
// RFC 8037 §3.1, RFC 9864 §2.2).
type algorithm struct {
	name   string
	family family
	hash   crypto.Hash // zero for EdDSA, which signs the message itself
	kty    string      // JWK key type the alg requires
	crv    string      // EC curve the alg requires ("" for RSA)
	size   int         // EC coordinate size in octets
}

// lookupAlgorithm returns the description of a supported alg. "none", the
// HMAC algorithms and anything unknown are not supported: they can never be
// allowed, whatever the configuration says (RFC 9449 §4.3 (5)).
func lookupAlgorithm(name string) (algorithm, bool) {
	switch name {
	case "ES256":
		return algorithm{name, familyECDSA, crypto.SHA256, "EC", "P-256", 32}, true
	case "ES384":
		return algorithm{name, familyECDSA, crypto.SHA384, "EC", "P-384", 48}, true
	case "ES512":
		return algorithm{name, familyECDSA, crypto.SHA512, "EC", "P-521", 66}, true
	case "RS256":
		return algorithm{name, familyRSAPKCS1, crypto.SHA256, "RSA", "", 0}, true
	case "RS384":
		return algorithm{name, familyRSAPKCS1, crypto.SHA384, "RSA", "", 0}, true
	case "RS512":
		return algorithm{name, familyRSAPKCS1, crypto.SHA512, "RSA", "", 0}, true
	case "PS256":
		return algorithm{name, familyRSAPSS, crypto.SHA256, "RSA", "", 0}, true
	case "PS384":
		return algorithm{name, familyRSAPSS, crypto.SHA384, "RSA", "", 0}, true
	case "PS512":
		return algorithm{name, familyRSAPSS, crypto.SHA512, "RSA", "", 0}, true
	case "EdDSA", "Ed25519": // RFC 8037 polymorphic name, RFC 9864 fully specified name
		return algorithm{name, familyEdDSA, 0, "OKP", "Ed25519", 32}, true
	}
	return algorithm{}, false
}

// verifySignature implements RFC 9449 §4.3 (6): sig over signingInput
// (ASCII "header.payload", RFC 7515 §5.2) verifies with key under alg. key
// comes from parseJWK for the same alg, so its type is known to fit.
func verifySignature(alg algorithm, key crypto.PublicKey, signingInput, sig []byte) bool {
	switch alg.family {
	case familyEdDSA:
		pub, ok := key.(ed25519.PublicKey)
		return ok && len(sig) == ed25519.SignatureSize && ed25519.Verify(pub, signingInput, sig)
	case familyECDSA:
		pub, ok := key.(*ecdsa.PublicKey)
		// RFC 7518 §3.4: R || S, each exactly the coordinate size.
		if !ok || len(sig) != 2*alg.size {
			return false
		}
		digest := hashOf(alg.hash, signingInput)
		r := new(big.Int).SetBytes(sig[:alg.size])
		s := new(big.Int).SetBytes(sig[alg.size:])
		return ecdsa.Verify(pub, digest, r, s)
	case familyRSAPKCS1:
		pub, ok := key.(*rsa.PublicKey)
		return ok && rsa.VerifyPKCS1v15(pub, alg.hash, hashOf(alg.hash, signingInput), sig) == nil
	case familyRSAPSS:
		pub, ok := key.(*rsa.PublicKey)
		// RFC 7518 §3.5: salt length equals the hash output length.
		opts := rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash, Hash: alg.hash}
		return ok && rsa.VerifyPSS(pub, alg.hash, hashOf(alg.hash, signingInput), sig, &opts) == nil
	}
	return false
}

func hashOf(h crypto.Hash, msg []byte) []byte {
	switch h {
	case crypto.SHA256:
		sum := sha256.Sum256(msg)
		return sum[:]
	case crypto.SHA384:
		sum := sha512.Sum384(msg)
		return sum[:]
	default:
		sum := sha512.Sum512(msg)
		return sum[:]
	}
}
