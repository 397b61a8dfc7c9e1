package main

import (
	"context"
	"testing"
	"time"

	"stellaops.org/authority/abi"
	"stellaops.org/authority/sdk/sdktest"
)

// BenchmarkDecide is one token decision of SEC5 through the host runtime
// (encode, guest call, decision decode and validation): what SEC5 adds to
// a /token request above the host's own work. SEC5 makes no host call on
// the policy hooks.
//
//	go test ./plugins/sec5 -run '^$' -bench 'Decide|Event' -benchtime 20000x
func BenchmarkDecide(b *testing.B) {
	clock := sdktest.NewFakeClock(time.Date(2026, 12, 3, 14, 30, 0, 0, time.UTC))
	for _, c := range []struct {
		name string
		in   *abi.DecisionInput
	}{
		{"dpop-bound/no-rule-matches", tokenInput("c", abi.ConstraintDPoP, "other-api")},
		{"dpop+mtls/four-rules-match", tokenInput("c", abi.ConstraintDPoPMTLS, "payments-api", "ledger-api", "reports-api", "vault-api")},
		{"bypass/inside-drill", tokenInput("drill-client", abi.ConstraintBypass, "reports-api")},
	} {
		b.Run(c.name, func(b *testing.B) {
			p := sdktest.Run(b, module(b), opts("test", rulesCfg, clock))
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				d, err := p.Decide(*c.in)
				if err != nil || !d.Allow {
					b.Fatalf("%+v %v", d, err)
				}
			}
		})
	}
}

// BenchmarkEvent is one events-hook call of SEC5 (a DPoP token request
// counted in its window, the alert evaluated) with in-memory counters:
// what an event costs off the request path (queued delivery) or on it
// (inline).
func BenchmarkEvent(b *testing.B) {
	clock := sdktest.NewFakeClock(time.Date(2026, 12, 3, 14, 30, 0, 0, time.UTC))
	p := sdktest.Run(b, module(b), opts("test", map[string]any{}, clock))
	ev := abi.Event{Type: abi.EventTokenIssued, Outcome: abi.OutcomeSuccess, Client: "c", Time: clock.Now(),
		SenderConstraint: abi.ConstraintDPoP, DPoP: abi.DPoP{Present: true, Valid: true, Result: abi.DPoPOK}}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := p.Manager.EmitSync(context.Background(), "test", ev); err != nil {
			b.Fatal(err)
		}
	}
}
