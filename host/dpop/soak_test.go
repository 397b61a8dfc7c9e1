package dpop

import (
	"context"
	"os"
	"runtime"
	"strconv"
	"testing"
	"time"
)

// BenchmarkSoakSimulatedTenMinutes verifies proofs through a memory State
// for ten minutes of simulated time at a steady rate (SOAK_RATE proofs per
// simulated second, default 2000) with the default 90 s replay window, and
// reports the cost per proof in the first and in the last simulated minute:
// the replay cache must expire entries cheaply enough that the last minute
// costs no more than the first (issue: within 10%). Ed25519 proofs keep the
// signing cost of the test client low; the state work does not depend on
// the algorithm. Run with `make soak` (about two minutes).
func BenchmarkSoakSimulatedTenMinutes(b *testing.B) {
	if os.Getenv("SOAK") == "" {
		b.Skip("a ten-minute simulation: run it with `make soak` (SOAK=1)")
	}
	rate := 2000
	if v, err := strconv.Atoi(os.Getenv("SOAK_RATE")); err == nil && v > 0 {
		rate = v
	}
	clk := &fakeClock{t: testNow}
	cfg := testConfig("EdDSA")
	cfg.Now = clk.Now
	v := newTestVerifier(b, cfg, MemoryOptions{Now: clk.Now})
	s := newSigner(b, "EdDSA")
	step := time.Second / time.Duration(rate)
	perMinute := rate * 60
	ctx := context.Background()
	const batch = 4096
	proofs := make([]string, 0, batch)
	minuteCost := make([]time.Duration, 10)
	b.ResetTimer()
	for range b.N {
		for m := range 10 {
			var spent time.Duration
			for i := 0; i < perMinute; i++ {
				if len(proofs) == 0 {
					now := clk.Now().Unix()
					for range batch {
						proofs = append(proofs, s.proof(b, func(h, c map[string]any) { c["iat"] = now }))
					}
				}
				p := proofs[len(proofs)-1]
				proofs = proofs[:len(proofs)-1]
				start := time.Now()
				if _, err := v.Verify(ctx, tokenRequest(p)); err != nil {
					b.Fatalf("minute %d proof %d: %v", m, i, err)
				}
				spent += time.Since(start)
				clk.Advance(step)
			}
			minuteCost[m] += spent
			runtime.GC() // charge each minute its own garbage
		}
	}
	b.StopTimer()
	n := float64(b.N * perMinute)
	first, last := float64(minuteCost[0])/n, float64(minuteCost[9])/n
	for m, c := range minuteCost {
		b.ReportMetric(float64(c)/n, "ns/proof-min"+strconv.Itoa(m+1))
	}
	b.ReportMetric(last/first, "last/first")
}
