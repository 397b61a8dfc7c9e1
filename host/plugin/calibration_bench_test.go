package plugin

import (
	"context"
	"os"
	"testing"
	"time"

	"stellaops.org/authority/abi"
	"stellaops.org/authority/host/plugin/meter"
)

// BenchmarkBudgetCalibration runs each runaway pattern of the hostile
// suite until its work budget (limits.callTimeout × UnitsPerMillisecond)
// is spent and reports the wall time that took, per unit and as a
// fraction of the deadline. DefaultUnitsPerMillisecond is chosen so that
// the costliest pattern per unit spends its budget in at most its deadline
// on an idle core (deadline-ratio ≤ 1; the target is ≤ 2): the budget, not
// the clock, stops a runaway, and on a saturated core it still stops in
// proportion to the CPU it gets.
func BenchmarkBudgetCalibration(b *testing.B) {
	loop := []byte{0x03, 0x40, 0x0c, 0x00, 0x0b}
	goSpin := func(t *testing.T) Spec {
		path := GuestPaths["misbehave"]
		if path == "" {
			t.Skip("guest not built")
		}
		b, _ := os.ReadFile(path)
		return Spec{Name: "spin", Path: path, SHA256: Digest(b), Hooks: []string{abi.HookToken}}
	}
	cases := []struct {
		name   string
		spec   func(t *testing.T) Spec
		client string
	}{
		{"go-guest-spin", goSpin, "spin"},
		{"tight-loop", mod(abiModule(1, cat(loop, i64c(0)))), ""},
		{"binary-recursion", file("binrec", nil), ""},
		{"memory-fill", file("bulkfill", nil), ""},
		{"host-calls", file("hostloop", []string{GrantClock}), ""},
		{"cache-miss-and-divide", file("chase", nil), ""},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			t := &testing.T{}
			s := c.spec(t)
			s.Limits.CallTimeout = 100 * time.Millisecond
			m, err := NewManager(context.Background(), RuntimeOptions{}, map[string][]Spec{"a": {s}}, Deps{})
			if err != nil {
				b.Fatal(err)
			}
			defer m.Close(context.Background())
			budget := m.Runtime().unitsFor(s.Limits.CallTimeout)
			var total time.Duration
			for b.Loop() {
				t0 := time.Now()
				if _, err := m.Decide(context.Background(), "a", &abi.DecisionInput{Endpoint: abi.HookToken, Client: c.client}); err == nil {
					b.Fatal("runaway not stopped")
				}
				total += time.Since(t0)
				m.bg.Wait()
			}
			per := float64(total.Nanoseconds()) / float64(b.N)
			b.ReportMetric(per/float64(budget), "ns/unit")
			b.ReportMetric(per/float64(s.Limits.CallTimeout.Nanoseconds()), "deadline-ratio")
		})
	}
}

// BenchmarkRewriteGoGuest is the metering pass over the realistic Go guest
// (~3.4 MB): a cost every start and reload pays per distinct module.
func BenchmarkRewriteGoGuest(b *testing.B) {
	wasm, err := os.ReadFile(GuestPaths["realistic"])
	if err != nil {
		b.Skip("guest not built")
	}
	b.SetBytes(int64(len(wasm)))
	for b.Loop() {
		if _, err := meter.Rewrite(wasm, meter.DefaultOptions()); err != nil {
			b.Fatal(err)
		}
	}
}
