package app_test

import (
	"net/http/httptest"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"stellaops.org/authority/host/config"
	"stellaops.org/authority/host/plugin"
	"stellaops.org/authority/internal/testenv"
)

// BenchmarkTokenSEC3 is client_credentials throughput without and with
// SEC3 (a permit limit no request reaches and a lockout: every request
// reads two lock keys and increments its window in one counter batch,
// and pseudonymizes its address, from SEC3's cache after the first
// request; failures are delivered inline), with plugin state in memory
// and in Redis. Run with -count so that off and on alternate:
//
//	go test ./host/app -run '^$' -bench TokenSEC3 -benchtime 3s -count 5
func BenchmarkTokenSEC3(b *testing.B) {
	cfg := map[string]any{"token": map[string]any{"permitLimit": 1_000_000_000, "window": "1m"},
		"lockout": map[string]any{"maxFailures": 5, "window": "15m", "lockoutDuration": "15m"}}
	benchTokenWithPlugin(b, "sec3-bench", func(b *testing.B) plugin.Spec { return sec3Spec(b, cfg) })
}

// BenchmarkTokenSEC5 is the same with SEC5 (two audience rules, neither
// matching the request's audience, an algorithm list, the default
// alerts): a decision without host calls, and an event per token, queued
// (the operator's default) or inline:
//
//	go test ./host/app -run '^$' -bench TokenSEC5 -benchtime 3s -count 5
func BenchmarkTokenSEC5(b *testing.B) {
	cfg := map[string]any{"audiences": []any{map[string]any{"audience": "payments-api", "require": []any{"mtls"}},
		map[string]any{"audience": "vault-api", "highAssurance": true}}, "dpop": map[string]any{"algorithms": []any{"ES256"}}}
	for _, delivery := range []string{plugin.EventsQueued, plugin.EventsInline} {
		b.Run(delivery, func(b *testing.B) {
			benchTokenWithPlugin(b, "sec5-bench", func(b *testing.B) plugin.Spec {
				s := sec5Spec(b, cfg)
				s.EventDelivery = delivery
				return s
			})
		})
	}
}

// benchTokenWithPlugin runs client_credentials throughput for tenant demo
// without and with the plugin spec makes, with plugin state in memory and
// in Redis; run with -count so that off and on alternate.
func benchTokenWithPlugin(b *testing.B, prefix string, spec func(*testing.B) plugin.Spec) {
	for _, state := range []string{"memory", "redis"} {
		for _, on := range []bool{false, true} {
			b.Run(state+"/"+map[bool]string{false: "off", true: "on"}[on], func(b *testing.B) {
				var chain []plugin.Spec
				if on {
					s := spec(b)
					s.Limits.CallTimeout = benchCallTimeout()
					chain = []plugin.Spec{s}
				}
				dir := b.TempDir()
				e := newEnv(b, envOptions{quiet: true, mutate: func(c *config.Config) {
					c.Plugins.CacheDir = filepath.Join(dir, "compiled")
					c.Tenants[0].Plugins = chain
					if state == "redis" {
						withRedisPluginState(c, testenv.RedisAddr(b), testenv.Prefix(prefix), dir)
					}
				}})
				h := e.a.Server.Handler()
				// Steady state: grow the pools to their working size and let
				// each instance's guest heap reach its size (memory.grow
				// copies linear memory) before measuring; both belong to
				// start-up.
				var wg sync.WaitGroup
				warm := time.Now().Add(500 * time.Millisecond)
				for range 16 {
					wg.Add(1)
					go func() {
						defer wg.Done()
						for time.Now().Before(warm) {
							h.ServeHTTP(httptest.NewRecorder(), tokenRequest("demo-bearer", ""))
						}
					}()
				}
				wg.Wait()
				b.SetParallelism(8)
				b.ResetTimer()
				start := time.Now()
				var unavailable atomic.Int64
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						w := httptest.NewRecorder()
						h.ServeHTTP(w, tokenRequest("demo-bearer", ""))
						switch w.Code {
						case 200:
						case 503: // a call's deadline fired while the machine was busy: fail closed, counted
							unavailable.Add(1)
						default:
							b.Errorf("status %d: %s", w.Code, w.Body.String())
							return
						}
					}
				})
				b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "tokens/s")
				b.ReportMetric(float64(unavailable.Load())/float64(b.N), "503s/op")
			})
		}
	}
}
