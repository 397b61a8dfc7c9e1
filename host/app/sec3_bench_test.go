package app_test

import (
	"net/http/httptest"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"stellaops.org/authority/host/config"
	"stellaops.org/authority/host/plugin"
	"stellaops.org/authority/internal/testenv"
)

// BenchmarkTokenSEC3 is client_credentials throughput without and with
// SEC3 (a permit limit no request reaches and a lockout: every request
// reads two lock keys, increments its window and pseudonymizes its
// address; failures are delivered inline), with plugin state in memory
// and in Redis. Run with -count so that off and on alternate:
//
//	go test ./host/app -run '^$' -bench TokenSEC3 -benchtime 3s -count 5
func BenchmarkTokenSEC3(b *testing.B) {
	cfg := map[string]any{"token": map[string]any{"permitLimit": 1_000_000_000, "window": "1m"},
		"lockout": map[string]any{"maxFailures": 5, "window": "15m", "lockoutDuration": "15m"}}
	for _, state := range []string{"memory", "redis"} {
		for _, on := range []bool{false, true} {
			b.Run(state+"/"+map[bool]string{false: "off", true: "on"}[on], func(b *testing.B) {
				var chain []plugin.Spec
				if on {
					s := sec3Spec(b, cfg)
					s.Limits.CallTimeout = benchCallTimeout()
					chain = []plugin.Spec{s}
				}
				dir := b.TempDir()
				e := newEnv(b, envOptions{quiet: true, mutate: func(c *config.Config) {
					c.Plugins.CacheDir = filepath.Join(dir, "compiled")
					c.Tenants[0].Plugins = chain
					if state == "redis" {
						withRedisPluginState(c, testenv.RedisAddr(b), testenv.Prefix("sec3-bench"), dir)
					}
				}})
				h := e.a.Server.Handler()
				var wg sync.WaitGroup
				for range 16 { // grow the pools before measuring
					wg.Add(1)
					go func() {
						defer wg.Done()
						for range 10 {
							h.ServeHTTP(httptest.NewRecorder(), tokenRequest("demo-bearer", ""))
						}
					}()
				}
				wg.Wait()
				b.SetParallelism(8)
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
			})
		}
	}
}
