package sdktest_test

import (
	"testing"
	"time"

	"stellaops.org/authority/abi"
	"stellaops.org/authority/sdk/sdktest"
)

// TestHarness runs the host's hostcalls test guest: counters follow the
// fake clock, audit events and metrics are recorded.
func TestHarness(t *testing.T) {
	wasm := sdktest.Build(t, "../../host/plugin/testdata/guests/hostcalls")
	p := sdktest.Run(t, wasm, sdktest.Options{Tenant: "t1"})
	in := abi.DecisionInput{Client: "c", Subject: "s"}
	for i := 0; i < 3; i++ {
		if d, err := p.Decide(in); err != nil || !d.Allow {
			t.Fatalf("call %d: %+v %v", i, d, err)
		}
	}
	if d, _ := p.Decide(in); d.Status != 429 {
		t.Fatalf("fourth call within the window: %+v", d)
	}
	p.Clock.Advance(61 * time.Second)
	if d, _ := p.Decide(in); !d.Allow {
		t.Fatalf("after the window: %+v", d)
	}
	if n := len(p.Recorder.AuditEvents()); n != 5 {
		t.Fatalf("audit events = %d", n)
	}
	if p.Recorder.Metric("decisions") != 5 {
		t.Fatalf("metric = %d", p.Recorder.Metric("decisions"))
	}
}
