package plugin

import (
	"context"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"

	"stellaops.org/authority/abi"
	"stellaops.org/authority/host/plugin/meter"
)

// BenchmarkCallOverhead calls guest exports directly through wazero (no
// pool, no codec on the host) in three modes: the module as built with no
// checks at all (none), with wazero's WithCloseOnContextDone (deadline,
// what the host used before the metering pass), and rewritten by the
// metering pass (metered, what the host runs), to separate what each
// sandboxing scheme costs from what the runtime adds.
func BenchmarkCallOverhead(b *testing.B) {
	for _, guest := range []string{"noop", "realistic"} {
		for _, fn := range []string{"authority_abi_version", "authority_decide"} {
			for _, mode := range []string{"none", "deadline", "metered"} {
				b.Run(guest+"/"+fn+"/"+mode, func(b *testing.B) { benchRawCall(b, GuestPaths[guest], fn, mode) })
			}
		}
	}
}

func benchRawCall(b *testing.B, path, fn string, mode string) {
	if path == "" {
		b.Skip("guest not built")
	}
	ctx := context.Background()
	wasm, err := os.ReadFile(path)
	if err != nil {
		b.Fatal(err)
	}
	if mode == "metered" {
		o := meter.DefaultOptions()
		o.StartFuel = 1 << 40
		rw, err := meter.Rewrite(wasm, o)
		if err != nil {
			b.Fatal(err)
		}
		wasm = rw.Wasm
	}
	rt := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfig().WithCloseOnContextDone(mode == "deadline"))
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
	fuel, _ := mod.ExportedGlobal(meter.FuelExport).(api.MutableGlobal)
	stack, _ := mod.ExportedGlobal(meter.StackExport).(api.MutableGlobal)
	cctx, cancel := context.WithTimeout(ctx, time.Hour)
	defer cancel()
	durs := make([]time.Duration, 0, 1<<22)
	for b.Loop() {
		t0 := time.Now()
		st[0], st[1] = uint64(ptr), uint64(len(payload))
		if fuel != nil { // as the host does before every call
			fuel.Set(1 << 40)
			stack.Set(10_000)
		}
		if err := f.CallWithStack(cctx, st); err != nil {
			b.Fatal(err)
		}
		durs = append(durs, time.Since(t0))
	}
	slices.Sort(durs)
	b.ReportMetric(float64(durs[len(durs)/2].Nanoseconds()), "p50-ns")
	b.ReportMetric(float64(durs[len(durs)*99/100].Nanoseconds()), "p99-ns")
}
