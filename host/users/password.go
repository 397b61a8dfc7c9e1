// Package users holds the resource owners of the password grant: their
// records (Store: configuration or PostgreSQL) and their password hashes
// (Argon2id PHC strings, checked by a Verifier that bounds how much KDF work
// runs at once).
package users

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"golang.org/x/crypto/argon2"
)

// Params are Argon2id cost parameters (RFC 9106).
type Params struct {
	// MemoryKiB is the memory cost m in KiB.
	MemoryKiB uint32
	// Iterations is the time cost t.
	Iterations uint32
	// Parallelism is the lane count p.
	Parallelism uint8
}

// DefaultParams are OWASP's first-listed Argon2id configuration (m=19 MiB,
// t=2, p=1: about 25-40 ms of one core here).
var DefaultParams = Params{MemoryKiB: 19456, Iterations: 2, Parallelism: 1}

// Limits on what a stored hash may ask for, so a hash written by someone
// else (a database row) cannot make one check cost unbounded memory or time.
const (
	MaxMemoryKiB   = 1 << 18 // 256 MiB
	MaxIterations  = 64
	MaxParallelism = 16
	minSaltLen     = 8
	maxSaltLen     = 64
	minKeyLen      = 16
	maxKeyLen      = 64
	saltLen        = 16
	keyLen         = 32
	// MaxPasswordLen bounds the password bytes a request may make the
	// server hash.
	MaxPasswordLen = 1024
)

// CheckPolicy reports whether p meets the OWASP floor: m >= 7 MiB and
// m*t >= 35 MiB-iterations (the cheapest pair OWASP lists is m=7168 KiB,
// t=5), p >= 1, all within the limits above. The error names the field.
func (p Params) CheckPolicy() error {
	switch {
	case p.MemoryKiB < 7168 || p.MemoryKiB > MaxMemoryKiB:
		return fmt.Errorf("memoryKiB: must be 7168..%d, got %d", MaxMemoryKiB, p.MemoryKiB)
	case p.Iterations < 1 || p.Iterations > MaxIterations:
		return fmt.Errorf("iterations: must be 1..%d, got %d", MaxIterations, p.Iterations)
	case uint64(p.MemoryKiB)*uint64(p.Iterations) < 35840:
		return fmt.Errorf("iterations: memoryKiB x iterations must be at least 35840 (OWASP), got %d", uint64(p.MemoryKiB)*uint64(p.Iterations))
	case p.Parallelism < 1 || p.Parallelism > MaxParallelism:
		return fmt.Errorf("parallelism: must be 1..%d, got %d", MaxParallelism, p.Parallelism)
	}
	return nil
}

// Hash returns the Argon2id PHC string of password with a random salt:
// $argon2id$v=19$m=<m>,t=<t>,p=<p>$<salt>$<hash> (unpadded standard base64).
func Hash(password []byte, p Params) (string, error) {
	if err := p.CheckPolicy(); err != nil {
		return "", err
	}
	if len(password) == 0 || len(password) > MaxPasswordLen {
		return "", fmt.Errorf("password: must be 1..%d bytes", MaxPasswordLen)
	}
	salt := make([]byte, saltLen)
	if _, err := rand.Read(salt); err != nil {
		return "", err
	}
	key := argon2.IDKey(password, salt, p.Iterations, p.MemoryKiB, p.Parallelism, keyLen)
	return PHC{Params: p, Salt: salt, Key: key}.String(), nil
}

// PHC is a parsed Argon2id PHC string.
type PHC struct {
	Params
	Salt, Key []byte
}

var b64 = base64.RawStdEncoding.Strict()

// String encodes h in the PHC string format.
func (h PHC) String() string {
	return fmt.Sprintf("$argon2id$v=19$m=%d,t=%d,p=%d$%s$%s", h.MemoryKiB, h.Iterations, h.Parallelism,
		b64.EncodeToString(h.Salt), b64.EncodeToString(h.Key))
}

// ErrMalformedHash: a stored password hash is not an Argon2id PHC string
// this package accepts.
var ErrMalformedHash = errors.New("users: malformed password hash")

// ParsePHC parses an Argon2id PHC string strictly: only $argon2id$, version
// 19, the parameters in the order m, t, p, each a canonical decimal within
// the limits, a salt of 8-64 and a key of 16-64 bytes in unpadded standard
// base64. No other form (argon2i, bcrypt, a missing version) is accepted.
func ParsePHC(s string) (PHC, error) {
	var h PHC
	bad := func(why string) (PHC, error) { return PHC{}, fmt.Errorf("%w: %s", ErrMalformedHash, why) }
	parts := strings.Split(s, "$")
	if len(parts) != 6 || parts[0] != "" {
		return bad("want $argon2id$v=19$m=..,t=..,p=..$salt$hash")
	}
	if parts[1] != "argon2id" {
		return bad("algorithm must be argon2id")
	}
	if parts[2] != "v=19" {
		return bad("version must be v=19")
	}
	ps := strings.Split(parts[3], ",")
	if len(ps) != 3 {
		return bad("parameters must be m=..,t=..,p=..")
	}
	var vals [3]uint64
	limits := [3]uint64{MaxMemoryKiB, MaxIterations, MaxParallelism}
	for i, name := range []string{"m=", "t=", "p="} {
		v, ok := strings.CutPrefix(ps[i], name)
		if !ok || v == "" || len(v) > 10 || (len(v) > 1 && v[0] == '0') {
			return bad("parameter " + name[:1])
		}
		n, err := strconv.ParseUint(v, 10, 32)
		if err != nil || n == 0 || n > limits[i] {
			return bad("parameter " + name[:1] + " out of range")
		}
		vals[i] = n
	}
	h.MemoryKiB, h.Iterations, h.Parallelism = uint32(vals[0]), uint32(vals[1]), uint8(vals[2])
	if uint64(h.MemoryKiB) < 8*uint64(h.Parallelism) {
		return bad("m must be at least 8*p (RFC 9106 §3.1)")
	}
	var err error
	if !b64Alphabet(parts[4]) || !b64Alphabet(parts[5]) {
		return bad("salt and hash must be unpadded standard base64")
	}
	if h.Salt, err = b64.DecodeString(parts[4]); err != nil || len(h.Salt) < minSaltLen || len(h.Salt) > maxSaltLen {
		return bad("salt")
	}
	if h.Key, err = b64.DecodeString(parts[5]); err != nil || len(h.Key) < minKeyLen || len(h.Key) > maxKeyLen {
		return bad("hash")
	}
	return h, nil
}

// Matches runs the KDF on password and compares in constant time.
func (h PHC) Matches(password []byte) bool {
	got := argon2.IDKey(password, h.Salt, h.Iterations, h.MemoryKiB, h.Parallelism, uint32(len(h.Key)))
	return subtle.ConstantTimeCompare(got, h.Key) == 1
}

// b64Alphabet reports whether s holds only standard base64 letters
// (encoding/base64 skips CR and LF even in strict mode).
func b64Alphabet(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '+' || c == '/') {
			return false
		}
	}
	return true
}
