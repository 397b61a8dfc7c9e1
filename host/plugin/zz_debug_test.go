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

func benchRaw(b *testing.B, closeOnDone bool, fn string) {
	ctx := context.Background()
	wasm, _ := os.ReadFile(os.Getenv("GUEST"))
	rt := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfig().WithCloseOnContextDone(closeOnDone))
	instantiateHostModule(ctx, rt)
	instantiateWASI(ctx, rt, time.Now())
	cm, err := rt.CompileModule(ctx, wasm)
	if err != nil {
		b.Fatal(err)
	}
	mod, err := rt.InstantiateModule(ctx, cm, wazero.NewModuleConfig().WithStartFunctions("_initialize"))
	if err != nil {
		b.Fatal(err)
	}
	in := abi.DecisionInput{Endpoint: "token", Tenant: "a", Client: "svc-billing", Scopes: []string{"a", "b"}, Audiences: []string{"x"}, UserAgent: "Go-http-client/2.0 billing-batch/1.4.2"}
	payload := abi.AppendDecisionInput(nil, &in)
	st := []uint64{uint64(len(payload)), 0}
	mod.ExportedFunction("authority_alloc").CallWithStack(ctx, st)
	ptr := uint32(st[0])
	mod.Memory().Write(ptr, payload)
	f := mod.ExportedFunction(fn)
	cctx, cancel := context.WithTimeout(ctx, time.Hour)
	defer cancel()
	durs := make([]time.Duration, 0, 1<<22)
	b.ResetTimer()
	for b.Loop() {
		t0 := time.Now()
		st[0], st[1] = uint64(ptr), uint64(len(payload))
		if err := f.CallWithStack(cctx, st); err != nil {
			b.Fatal(err)
		}
		durs = append(durs, time.Since(t0))
	}
	slices.Sort(durs)
	b.ReportMetric(float64(durs[len(durs)/2]), "p50")
	b.ReportMetric(float64(durs[len(durs)*99/100]), "p99")
	b.ReportMetric(float64(durs[len(durs)-1]), "max")
}

func BenchmarkRawVersionNoDeadline(b *testing.B) { benchRaw(b, false, "authority_abi_version") }
func BenchmarkRawVersionDeadline(b *testing.B)   { benchRaw(b, true, "authority_abi_version") }
func BenchmarkRawDecideNoDeadline(b *testing.B)  { benchRaw(b, false, "authority_decide") }
func BenchmarkRawDecideDeadline(b *testing.B)    { benchRaw(b, true, "authority_decide") }
