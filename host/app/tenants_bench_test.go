package app_test

import (
	"fmt"
	"math/rand"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"stellaops.org/authority/abi"
	"stellaops.org/authority/host/config"
	"stellaops.org/authority/host/plugin"
)

// BenchmarkTenantsAtScale is plugin tenancy at scale: AUTHORITY_BENCH_TENANTS
// tenants (default 100; the full size is 1,000, scripts/bench-tenants.sh)
// with three plugins each (three copies of the denyrule example, each with
// its own configuration), one client each, and b.N client_credentials
// requests whose tenant is Zipf-distributed (s = 1.1), 16 in flight, after
// every (tenant, plugin) pair has been served once. It reports the time to
// ready with a cold and a warm compilation cache, the process RSS after
// every pair was served and at the end, the live instances (the node's
// budget, plugins.maxInstances), instantiations per second during the
// run, and /token p50 and p99 with the plugins and without them (the same
// tenants, no plugins):
//
//	go test ./host/app -run '^$' -bench TenantsAtScale -benchtime 20000x
func BenchmarkTenantsAtScale(b *testing.B) {
	n := 100
	if v, err := strconv.Atoi(os.Getenv("AUTHORITY_BENCH_TENANTS")); err == nil && v > 0 {
		n = v
	}
	spec := pluginSpec(b, "stellaops.org/authority/examples/plugins/denyrule", "deny", nil, plugin.Limits{CallTimeout: benchCallTimeout()})
	spec.Hooks = []string{abi.HookToken}
	const secret = "tenant-bench-secret-0123456789"
	tenants := func(withPlugins bool, cache string) func(*config.Config) {
		return func(c *config.Config) {
			c.Plugins.CacheDir = cache
			for i := range n {
				t := config.Tenant{ID: fmt.Sprintf("t%04d", i), Clients: []config.Client{{ID: fmt.Sprintf("c%04d", i),
					SecretDigest: config.DigestSecret(secret), AuthMethod: "client_secret_basic",
					Grants: []string{"client_credentials"}, Scopes: []string{"read"}, Audiences: []string{"api"}}}}
				if withPlugins {
					for j, name := range []string{"deny-a", "deny-b", "deny-c"} {
						s := spec
						s.Name = name
						s.Config = map[string]any{"deniedClients": []any{fmt.Sprintf("nobody-%d-%d", i, j)}}
						t.Plugins = append(t.Plugins, s)
					}
				}
				c.Tenants = append(c.Tenants, t)
			}
		}
	}
	request := func(i int) *http.Request {
		r := httptest.NewRequest(http.MethodPost, "/token", strings.NewReader(tokenBody))
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		r.SetBasicAuth(fmt.Sprintf("c%04d", i), secret)
		return r
	}
	run := func(b *testing.B, e *env, served bool) (p50, p99 time.Duration) {
		h := e.a.Server.Handler()
		if !served { // every tenant once: every (tenant, plugin) pair used
			for i := range n {
				w := httptest.NewRecorder()
				h.ServeHTTP(w, request(i))
				if w.Code != 200 {
					b.Fatalf("tenant %d: %d %s", i, w.Code, w.Body.String())
				}
			}
		}
		lat := make([]time.Duration, b.N)
		tenantOf := make([]int, b.N) // request k's tenant
		z := rand.NewZipf(rand.New(rand.NewSource(1)), 1.1, 1, uint64(n-1))
		for k := range tenantOf {
			tenantOf[k] = int(z.Uint64())
		}
		next := make(chan int, b.N)
		for k := range b.N {
			next <- k
		}
		close(next)
		done := make(chan struct{})
		for range 16 {
			go func() {
				defer func() { done <- struct{}{} }()
				for k := range next {
					t := tenantOf[k]
					start := time.Now()
					w := httptest.NewRecorder()
					h.ServeHTTP(w, request(t))
					lat[k] = time.Since(start)
					if w.Code != 200 && w.Code != 503 {
						b.Errorf("status %d: %s", w.Code, w.Body.String())
					}
				}
			}()
		}
		for range 16 {
			<-done
		}
		slices.Sort(lat)
		return lat[len(lat)/2], lat[len(lat)*99/100]
	}
	cache := filepath.Join(b.TempDir(), "compiled")
	start := time.Now()
	cold := newEnv(b, envOptions{quiet: true, mutate: tenants(true, cache)})
	readyCold := time.Since(start)
	cold.a.Close()
	start = time.Now()
	e := newEnv(b, envOptions{quiet: true, mutate: tenants(true, cache)})
	readyWarm := time.Since(start)
	before := instantiations(e)
	b.ResetTimer()
	t0 := time.Now()
	p50, p99 := run(b, e, false)
	elapsed := time.Since(t0)
	b.StopTimer()
	rssServed := rssMiB()
	b.ReportMetric(readyCold.Seconds(), "ready-cold-s")
	b.ReportMetric(readyWarm.Seconds(), "ready-warm-s")
	b.ReportMetric(rssServed, "rss-MiB")
	b.ReportMetric(float64(e.a.Plugins().Health().Budget.Live), "live-instances")
	b.ReportMetric(float64(instantiations(e)-before)/elapsed.Seconds(), "instantiations/s")
	b.ReportMetric(float64(p50.Microseconds()), "p50-µs")
	b.ReportMetric(float64(p99.Microseconds()), "p99-µs")
	e.a.Close()
	bare := newEnv(b, envOptions{quiet: true, mutate: tenants(false, cache)})
	q50, q99 := run(b, bare, false)
	b.ReportMetric(float64(q50.Microseconds()), "bare-p50-µs")
	b.ReportMetric(float64(q99.Microseconds()), "bare-p99-µs")
}

func instantiations(e *env) uint64 {
	var n uint64
	for _, p := range e.a.Plugins().Health().Plugins {
		n += p.Instantiations
	}
	return n
}

// rssMiB is the process's resident set (VmRSS), MiB.
func rssMiB() float64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			kb, _ := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 64)
			return kb / 1024
		}
	}
	return 0
}
