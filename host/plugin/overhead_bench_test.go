package plugin

import (
	"context"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/tetratelabs/wazero"

	"stellaops.org/authority/abi"
)

// BenchmarkCallOverhead calls guest exports directly through wazero (no
// pool, no codec on the host), with and without WithCloseOnContextDone, to
// separate what the deadline costs from what the runtime adds.
func BenchmarkCallOverhead(b *testing.B) {
	for _, guest := range []string{"noop", "realistic"} {
		for _, fn := range []string{"authority_abi_version", "authority_decide"} {
			for _, deadline := range []bool{false, true} {
				name := guest + "/" + fn + "/deadline=" + map[bool]string{false: "off", true: "on"}[deadline]
				b.Run(name, func(b *testing.B) { benchRawCall(b, GuestPaths[guest], fn, deadline) })
			}
		}
	}
}

func benchRawCall(b *testing.B, path, fn string, deadline bool) {
	if path == "" {
		b.Skip("guest not built")
	}
	ctx := context.Background()
	wasm, err := os.ReadFile(path)
	if err != nil {
		b.Fatal(err)
	}
	rt := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfig().WithCloseOnContextDone(deadline))
	defer rt.Close(ctx)
	if err := instantiateHostModule(ctx, rt); err != nil {
		b.Fatal(err)
	}
	if err := instantiateWASI(ctx, rt, time.Now()); err != nil {
		b.Fatal(err)
	}
	cm, err := rt.CompileModule(ctx, wasm)
	if err != nil {
		b.Fatal(err)
	}
	mod, err := rt.InstantiateModule(ctx, cm, wazero.NewModuleConfig().WithStartFunctions("_initialize"))
	if err != nil {
		b.Fatal(err)
	}
	in := abi.DecisionInput{Endpoint: abi.HookToken, Tenant: "a", Client: "svc-billing", Grant: "client_credentials",
		Scopes: []string{"billing.read", "read"}, Audiences: []string{"https://api.example.com"},
		RemoteAddr: "203.0.113.7", UserAgent: "Go-http-client/2.0", SenderConstraint: "dpop",
		DPoP: abi.DPoP{Present: true, Valid: true, Result: "ok", Alg: "ES256"}}
	payload := abi.AppendDecisionInput(nil, &in)
	st := []uint64{uint64(len(payload)), 0}
	if err := mod.ExportedFunction("authority_alloc").CallWithStack(ctx, st); err != nil {
		b.Fatal(err)
	}
	ptr := uint32(st[0])
	mod.Memory().Write(ptr, payload)
	f := mod.ExportedFunction(fn)
	cctx, cancel := context.WithTimeout(ctx, time.Hour)
	defer cancel()
	durs := make([]time.Duration, 0, 1<<22)
	for b.Loop() {
		t0 := time.Now()
		st[0], st[1] = uint64(ptr), uint64(len(payload))
		if err := f.CallWithStack(cctx, st); err != nil {
			b.Fatal(err)
		}
		durs = append(durs, time.Since(t0))
	}
	slices.Sort(durs)
	b.ReportMetric(float64(durs[len(durs)/2].Nanoseconds()), "p50-ns")
	b.ReportMetric(float64(durs[len(durs)*99/100].Nanoseconds()), "p99-ns")
}
