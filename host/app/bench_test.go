package app_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"stellaops.org/authority/host/config"
	"stellaops.org/authority/internal/testenv"
)

// The benchmarks drive the real handler chain in-process (routing, form
// parsing, client authentication, DPoP verification, signing, the store)
// without the network, as the issues' speed targets are stated.

var tokenBody = "grant_type=client_credentials"

func tokenRequest(id string, dpop string) *http.Request {
	r := httptest.NewRequest(http.MethodPost, "/token", strings.NewReader(tokenBody))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	r.SetBasicAuth(id, secrets[id])
	if dpop != "" {
		r.Header.Set("DPoP", dpop)
	}
	return r
}

// BenchmarkTokenIssuanceParallel issues client_credentials tokens from 32
// concurrent clients (GOMAXPROCS × 16) with each token store; the
// PostgreSQL figure must reach 70% of the memory figure of the same run.
func BenchmarkTokenIssuanceParallel(b *testing.B) {
	for _, backend := range []string{"memory", "postgres"} {
		b.Run(backend, func(b *testing.B) {
			o := envOptions{quiet: true}
			if backend == "postgres" {
				o.postgres, o.pgSchema = testenv.FreshSchema(b)
				o.mutate = func(c *config.Config) {
					// BENCH_PG_BATCH="max,wait,batchers" explores group-commit settings.
					if v := strings.Split(os.Getenv("BENCH_PG_BATCH"), ","); len(v) == 3 {
						c.Storage.Postgres.BatchMax, _ = strconv.Atoi(v[0])
						w, _ := time.ParseDuration(v[1])
						c.Storage.Postgres.BatchWait = config.Duration(w)
						c.Storage.Postgres.Batchers, _ = strconv.Atoi(v[2])
					}
				}
			}
			issueParallel(b, newEnv(b, o))
		})
	}
}

// issueParallel issues demo-bearer tokens from GOMAXPROCS × 16 callers
// and reports tokens/s.
func issueParallel(b *testing.B, e *env) {
	h := e.a.Server.Handler()
	b.SetParallelism(16)
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			w := httptest.NewRecorder()
			h.ServeHTTP(w, tokenRequest("demo-bearer", ""))
			if w.Code != 200 {
				b.Errorf("status %d: %s", w.Code, w.Body.String())
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "tokens/s")
}

// BenchmarkTokenIssuanceAudit is what the durable audit trail costs
// /token (target: at most 5% of throughput): each token store with the
// log-only sink, with its durable sink (the file beside memory tokens,
// authority_audit beside PostgreSQL ones), and with audit.onFailure
// refuse, where every response waits for its record's commit.
func BenchmarkTokenIssuanceAudit(b *testing.B) {
	for _, c := range []struct{ tokens, sink, onFailure string }{
		{"memory", "log", "continue"}, {"memory", "file", "continue"}, {"memory", "file", "refuse"},
		{"postgres", "log", "continue"}, {"postgres", "postgres", "continue"}, {"postgres", "postgres", "refuse"},
	} {
		b.Run(c.tokens+"/"+c.sink+"/"+c.onFailure, func(b *testing.B) {
			o := envOptions{quiet: true, mutate: func(cfg *config.Config) {
				cfg.Audit.Sink, cfg.Audit.OnFailure = c.sink, c.onFailure
			}}
			if c.tokens == "postgres" {
				o.postgres, o.pgSchema = testenv.FreshSchema(b)
			}
			issueParallel(b, newEnv(b, o))
		})
	}
}

// BenchmarkDPoPToken is the CPU cost of one DPoP-bound token (nonce
// required, memory state): proof verification, replay and nonce checks,
// signing, storing. ES256Sign and ES256Verify measure the floor in the same
// run: the target is DPoPToken <= 2 × (ES256Verify + ES256Sign).
func BenchmarkDPoPToken(b *testing.B) {
	b.Run("ES256Sign", func(b *testing.B) {
		k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		d := sha256.Sum256([]byte("x"))
		b.ReportAllocs()
		for b.Loop() {
			if _, _, err := ecdsa.Sign(rand.Reader, k, d[:]); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("ES256Verify", func(b *testing.B) {
		k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		d := sha256.Sum256([]byte("x"))
		r, s, _ := ecdsa.Sign(rand.Reader, k, d[:])
		b.ReportAllocs()
		for b.Loop() {
			if !ecdsa.Verify(&k.PublicKey, d[:], r, s) {
				b.Fatal("verify")
			}
		}
	})
	b.Run("BearerToken", func(b *testing.B) {
		e := newEnv(b, envOptions{quiet: true})
		h := e.a.Server.Handler()
		b.ReportAllocs()
		for b.Loop() {
			w := httptest.NewRecorder()
			h.ServeHTTP(w, tokenRequest("demo-bearer", ""))
			if w.Code != 200 {
				b.Fatalf("status %d: %s", w.Code, w.Body.String())
			}
		}
	})
	b.Run("DPoPToken", func(b *testing.B) {
		e := newEnv(b, envOptions{quiet: true})
		h := e.a.Server.Handler()
		k := newDPoPKey(b)
		htu := e.cfg.Issuer + "/token"
		w := httptest.NewRecorder()
		h.ServeHTTP(w, tokenRequest("demo-dpop", k.proof(b, proofOpts{htu: htu, iat: time.Now()})))
		nonce := w.Header().Get("DPoP-Nonce")
		// Proofs are made before the timer runs: signing them is the
		// client's cost, not the server's.
		const batch = 512
		proofs := make([]string, 0, batch)
		b.ReportAllocs()
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			if len(proofs) == 0 {
				b.StopTimer()
				for j := 0; j < batch; j++ {
					proofs = append(proofs, k.proof(b, proofOpts{htu: htu, iat: e.clock.Now(), nonce: nonce}))
				}
				b.StartTimer()
			}
			p := proofs[len(proofs)-1]
			proofs = proofs[:len(proofs)-1]
			w := httptest.NewRecorder()
			h.ServeHTTP(w, tokenRequest("demo-dpop", p))
			if w.Code != 200 {
				b.Fatalf("status %d: %s", w.Code, w.Body.String())
			}
		}
	})
}
