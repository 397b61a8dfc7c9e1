package main

import (
	"context"
	"sync/atomic"
	"testing"

	"stellaops.org/authority/abi"
	"stellaops.org/authority/host/plugin"
)

// countingSink counts records and keeps none (a benchmark writes many).
type countingSink struct{ n atomic.Int64 }

func (s *countingSink) Audit(context.Context, string, abi.Event) error {
	s.n.Add(1)
	return nil
}

// benchEvent runs one event per iteration through the host runtime's
// events hook (encode, guest decode, SEC2, pseudonymize and audit_emit
// host calls, record decode and validation), with an audit budget too
// large to refuse anything.
func benchEvent(b *testing.B, cfg map[string]any, ev abi.Event, wantRecords bool) {
	sink := &countingSink{}
	m := newManager(b, plugin.RuntimeOptions{AuditRate: 1e12, AuditBurst: 1 << 30},
		plugin.Deps{Secrets: plugin.StaticSecrets{"test": []byte("bench-key")}, Audit: sink}, cfg)
	ctx := context.Background()
	if err := m.EmitSync(ctx, "test", ev); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := m.EmitSync(ctx, "test", ev); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	if got := sink.n.Load(); wantRecords && got != int64(b.N)+1 || !wantRecords && got != 0 {
		b.Fatalf("%d records for %d events", got, b.N+1)
	}
}

func benchInput() abi.Event {
	return abi.Event{Type: abi.EventTokenIssued, CorrelationID: "01HZX3J9Q5T8", Outcome: "success",
		Subject: "user-42", Client: "svc-billing", Scopes: []string{"openid", "billing.write", "billing.read"},
		RemoteAddr: "203.0.113.7", UserAgent: "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
		SenderConstraint: abi.ConstraintDPoP,
		DPoP:             abi.DPoP{Present: true, Valid: true, Result: abi.DPoPOK, JKT: "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I", Alg: "ES256"},
		Attributes:       []abi.KV{{Key: "jti", Value: "at-1"}, {Key: "annotation.sec5.rule", Value: "r1"}}}
}

// BenchmarkEventHash: the default configuration, three pseudonyms.
func BenchmarkEventHash(b *testing.B) { benchEvent(b, nil, benchInput(), true) }

// BenchmarkEventTruncate: network truncated, client hashed, properties.
func BenchmarkEventTruncate(b *testing.B) {
	benchEvent(b, map[string]any{"network": "truncate", "client": "hash",
		"properties": map[string]any{"regulation": "gdpr", "data-controller": "acme-eu"}}, benchInput(), true)
}

// BenchmarkEventNotSelected: an event the configuration does not select
// (the cost of the hook call itself).
func BenchmarkEventNotSelected(b *testing.B) {
	benchEvent(b, map[string]any{"events": []any{"authority.dpop.*"}}, benchInput(), false)
}
