package dpop

import (
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"math/big"
	"testing"
	"time"
)

// BenchmarkVerifyES256 is a full Verify (parse, jwk, signature, claims,
// htu normalization, thumbprint, replay + rotating nonce in MemoryState).
func BenchmarkVerifyES256(b *testing.B) {
	s := newSigner(b, "ES256")
	v := newTestVerifier(b, testConfig("ES256"), MemoryOptions{})
	nonce, _ := v.Nonce(bg, testScope)
	proofs := make([]string, b.N)
	for i := range proofs {
		proofs[i] = s.proof(b, func(h, c map[string]any) { c["nonce"] = nonce })
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		r := tokenRequest(proofs[i])
		r.NonceRequired = true
		if _, err := v.Verify(bg, r); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkES256VerifyRaw is one bare ECDSA P-256 verification, the floor
// Verify is compared to.
func BenchmarkES256VerifyRaw(b *testing.B) {
	s := newSigner(b, "ES256")
	k := s.key.(*ecdsa.PrivateKey)
	digest := sha256.Sum256([]byte("signing input"))
	r, sv, _ := ecdsa.Sign(rand.Reader, k, digest[:])
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if !ecdsa.Verify(&k.PublicKey, digest[:], new(big.Int).Set(r), sv) {
			b.Fatal("verify")
		}
	}
}

// BenchmarkES256SignRaw is one bare ECDSA P-256 signature (the access token
// signing cost in the token request budget).
func BenchmarkES256SignRaw(b *testing.B) {
	s := newSigner(b, "ES256")
	k := s.key.(*ecdsa.PrivateKey)
	digest := sha256.Sum256([]byte("signing input"))
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if _, err := ecdsa.SignASN1(rand.Reader, k, digest[:]); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRedisStateCheck is one RedisState.Check (replay + rotating nonce
// validation + next nonce): one EVALSHA round trip to 127.0.0.1:6379.
func BenchmarkRedisStateCheck(b *testing.B) {
	for _, single := range []bool{false, true} {
		b.Run(fmt.Sprintf("singleUse=%v", single), func(b *testing.B) {
			c := redisClient(b)
			st := NewRedisState(c, uniquePrefix(b, c), NonceOptions{TTL: time.Minute, SingleUse: single})
			n, err := st.Nonce(bg, testScope)
			if err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				res, err := st.Check(bg, StateCheck{ReplayKey: seqKey(i), ReplayTTL: 90 * time.Second, NonceRequired: true, NonceScope: testScope, Nonce: n})
				if err != nil || res.Replayed || !res.NonceValid {
					b.Fatalf("%+v %v", res, err)
				}
				n = res.NextNonce
			}
		})
	}
}

// BenchmarkMemoryStateSustained inserts a replay entry and a single-use
// nonce per op while a fake clock advances 100 µs per op (10k req/s) with
// 2-3 s TTLs: the stores reach a steady size, and ns/op stays flat as b.N
// (and the number of expired entries) grows; compare the sub-benchmarks.
func BenchmarkMemoryStateSustained(b *testing.B) {
	for _, warm := range []int{0, 100_000, 1_000_000} {
		b.Run(fmt.Sprintf("after=%d", warm), func(b *testing.B) {
			clock := &fakeClock{t: testNow}
			s := NewMemoryState(MemoryOptions{Now: clock.Now, Nonce: NonceOptions{TTL: 2 * time.Second, SingleUse: true}})
			op := func(i int) {
				clock.Advance(100 * time.Microsecond)
				res, err := s.Check(bg, StateCheck{ReplayKey: seqKey(i), ReplayTTL: 3 * time.Second, NonceRequired: true, NonceScope: "s"})
				if err != nil || res.Replayed {
					b.Fatal(err)
				}
			}
			for i := 0; i < warm; i++ {
				op(i)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				op(warm + i)
			}
		})
	}
}
