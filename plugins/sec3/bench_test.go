package main

import (
	"testing"

	"stellaops.org/authority/abi"
	"stellaops.org/authority/sdk/sdktest"
)

// BenchmarkDecide is one token decision of SEC3 through the host runtime
// (encode, guest call, the host calls SEC3 makes, decision decode and
// validation) with in-memory counters: what SEC3 adds to a /token request
// above the host's own work.
//
//	go test ./plugins/sec3 -run '^$' -bench Decide -benchtime 20000x
func BenchmarkDecide(b *testing.B) {
	for _, c := range []struct {
		name string
		cfg  map[string]any
		in   abi.DecisionInput
	}{
		{"rate+lockout/client_credentials", demoCfgLarge(), abi.DecisionInput{Endpoint: abi.HookToken, Client: "svc-web", Subject: "svc-web", RemoteAddr: "203.0.113.7", Grant: "client_credentials"}},
		{"rate+lockout/password", demoCfgLarge(), abi.DecisionInput{Endpoint: abi.HookToken, Client: "app", Subject: "alice", RemoteAddr: "203.0.113.7", Grant: "password"}},
		{"rate", map[string]any{"token": map[string]any{"permitLimit": 1_000_000_000, "window": "1m"}}, abi.DecisionInput{Endpoint: abi.HookToken, Client: "svc-web", Subject: "svc-web", RemoteAddr: "203.0.113.7"}},
		{"lockout-by-client", map[string]any{"lockout": map[string]any{"maxFailures": 5, "window": "15m", "lockoutDuration": "15m", "by": []any{"client"}}}, abi.DecisionInput{Endpoint: abi.HookToken, Client: "svc-web", Subject: "svc-web", RemoteAddr: "203.0.113.7"}},
	} {
		b.Run(c.name, func(b *testing.B) {
			p := sdktest.Run(b, module(b), opts("test", c.cfg))
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				d, err := p.Decide(c.in)
				if err != nil || !d.Allow {
					b.Fatalf("%+v %v", d, err)
				}
			}
		})
	}
}

func demoCfgLarge() map[string]any {
	return map[string]any{"token": map[string]any{"permitLimit": 1_000_000_000, "window": "1m"},
		"lockout": map[string]any{"maxFailures": 5, "window": "15m", "lockoutDuration": "15m"}}
}
