package plugin_test

import (
	"context"
	"os"
	"slices"
	"testing"
	"time"

	"stellaops.org/authority/abi"
	"stellaops.org/authority/host/plugin"
)

func realisticInput() *abi.DecisionInput {
	return &abi.DecisionInput{
		Endpoint: abi.HookToken, CorrelationID: "01HZX3J9Q5T8Y2K4M6N8P0R2S4",
		Time:   time.Date(2025, 11, 7, 12, 0, 0, 0, time.UTC),
		Client: "svc-billing", ClientAuthMethod: "tls_client_auth", Grant: "client_credentials",
		Subject: "svc-billing", Scopes: []string{"billing.read", "billing.write", "read"},
		Audiences:  []string{"https://api.example.com", "https://bank.example.com"},
		RemoteAddr: "203.0.113.7", UserAgent: "Go-http-client/2.0 billing-batch/1.4.2",
		SenderConstraint: "mtls",
		DPoP:             abi.DPoP{Present: true, Valid: true, Result: "ok", JKT: "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I", Alg: "ES256", NonceStatus: "valid"},
		MTLS:             abi.MTLS{Present: true, Result: "ok", Thumbprint: "A4DtL2JmUMhAsvJj5tKyn64SqzmuXbMrJa0n761y5v0"},
	}
}

func realisticSpec(t testing.TB) plugin.Spec {
	s := spec(t, "realistic")
	s.Config = map[string]any{
		"deniedClients": []any{"evil", "legacy-1", "legacy-2"}, "mtlsAudiences": []any{"https://bank.example.com"},
		"dpopAudiences": []any{"https://api.example.com"}, "requiredScopes": []any{"read"}, "allowedAlgs": []any{"ES256", "EdDSA"},
	}
	return s
}

// benchDecide measures Decide through the manager and reports p50/p99
// latency (custom metrics) besides ns/op.
func benchDecide(b *testing.B, specs []plugin.Spec, in *abi.DecisionInput) {
	m := newManager(b, map[string][]plugin.Spec{"a": specs}, plugin.Deps{})
	ctx := context.Background()
	if d, err := m.Decide(ctx, "a", in); err != nil || !d.Allow {
		b.Fatalf("warm-up: %+v %v", d, err)
	}
	durs := make([]time.Duration, 0, 1<<22) // preallocated: growing it would put host GC in the tail
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		t0 := time.Now()
		d, err := m.Decide(ctx, "a", in)
		durs = append(durs, time.Since(t0))
		if err != nil || !d.Allow {
			b.Fatalf("%+v %v", d, err)
		}
	}
	b.StopTimer()
	slices.Sort(durs)
	b.ReportMetric(float64(durs[len(durs)/2].Nanoseconds()), "p50-ns")
	b.ReportMetric(float64(durs[len(durs)*99/100].Nanoseconds()), "p99-ns")
	b.ReportMetric(float64(durs[len(durs)*999/1000].Nanoseconds()), "p99.9-ns")
	b.ReportMetric(float64(durs[len(durs)-1].Nanoseconds()), "max-ns")
}

func BenchmarkDecideNoop(b *testing.B) {
	benchDecide(b, []plugin.Spec{spec(b, "noop")}, realisticInput())
}

func BenchmarkDecideRealistic(b *testing.B) {
	benchDecide(b, []plugin.Spec{realisticSpec(b)}, realisticInput())
}

func BenchmarkDecideThreePlugins(b *testing.B) {
	s1, s2, s3 := realisticSpec(b), realisticSpec(b), realisticSpec(b)
	s1.Name, s2.Name, s3.Name = "sec2", "sec3", "sec5"
	benchDecide(b, []plugin.Spec{s1, s2, s3}, realisticInput())
}

func BenchmarkDecideNoPlugins(b *testing.B) {
	m := newManager(b, map[string][]plugin.Spec{"a": {spec(b, "noop")}}, plugin.Deps{})
	in := realisticInput()
	b.ReportAllocs()
	for b.Loop() {
		m.Decide(context.Background(), "other-tenant", in)
	}
}

func BenchmarkDecideRealisticParallel(b *testing.B) {
	m := newManager(b, map[string][]plugin.Spec{"a": {realisticSpec(b)}}, plugin.Deps{})
	in := realisticInput()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if d, err := m.Decide(context.Background(), "a", in); err != nil || !d.Allow {
				b.Errorf("%+v %v", d, err)
				return
			}
		}
	})
}

// BenchmarkInstantiate measures one new instance (instantiate,
// _initialize, ABI check) and reports its linear memory.
func BenchmarkInstantiate(b *testing.B) {
	m := newManager(b, map[string][]plugin.Spec{"a": {realisticSpec(b)}}, plugin.Deps{})
	var size uint32
	for b.Loop() {
		closeFn, sz, err := m.NewTestInstance("a")
		if err != nil {
			b.Fatal(err)
		}
		size = sz
		closeFn()
	}
	b.ReportMetric(float64(size)/(1<<20), "MiB/instance")
}

func BenchmarkCompileNoCache(b *testing.B) {
	wasm, err := os.ReadFile(guests["realistic"])
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	for b.Loop() {
		rt, err := plugin.NewRuntime(ctx, plugin.RuntimeOptions{})
		if err != nil {
			b.Fatal(err)
		}
		if _, err := rt.Compile(ctx, wasm, 0); err != nil {
			b.Fatal(err)
		}
		rt.Close(ctx)
	}
}

// BenchmarkCompileDiskCache is a restart with a warm compilation cache:
// new runtime, compile (cache hit), close.
func BenchmarkCompileDiskCache(b *testing.B) {
	wasm, err := os.ReadFile(guests["realistic"])
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	dir := b.TempDir()
	warm := func() {
		rt, err := plugin.NewRuntime(ctx, plugin.RuntimeOptions{CacheDir: dir})
		if err != nil {
			b.Fatal(err)
		}
		if _, err := rt.Compile(ctx, wasm, 0); err != nil {
			b.Fatal(err)
		}
		rt.Close(ctx)
	}
	warm()
	for b.Loop() {
		warm()
	}
}

// BenchmarkStartupWarmCache is NewManager (load, verify, compile from the
// disk cache, one instance started) for one tenant.
func BenchmarkStartupWarmCache(b *testing.B) {
	s := realisticSpec(b)
	ctx := context.Background()
	for b.Loop() {
		m, err := plugin.NewManager(ctx, cached(plugin.RuntimeOptions{}), map[string][]plugin.Spec{"a": {s}}, plugin.Deps{})
		if err != nil {
			b.Fatal(err)
		}
		m.Close(ctx)
	}
}
