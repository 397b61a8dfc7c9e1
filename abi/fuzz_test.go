package abi

import (
	"bytes"
	"strings"
	"testing"
)

// FuzzDecodeDecision feeds arbitrary bytes to the decoder of plugin output
// (attacker-controlled): it must never panic, and whatever it accepts must
// re-encode to exactly the same bytes (canonical encoding).
func FuzzDecodeDecision(f *testing.F) {
	seeds := []Decision{Allowed(), Denied(429, "rate_limited", "slow down"),
		{Status: 423, Error: "locked", RetryAfter: 900, Annotations: []KV{{Key: "k", Value: "v"}}}}
	for i := range seeds {
		f.Add(AppendDecision(nil, &seeds[i]))
	}
	f.Add([]byte{})
	f.Add([]byte{2, 1, 1, 0, 0, 0, 0, 0x80})
	f.Fuzz(func(t *testing.T, b []byte) {
		var d Decision
		if err := DecodeDecision(b, &d); err != nil {
			return
		}
		_ = d.Validate()
		if re := AppendDecision(nil, &d); !bytes.Equal(re, b) {
			t.Fatalf("accepted non-canonical input %x, re-encodes as %x", b, re)
		}
	})
}

// FuzzDecodeEvent covers the decoder of events a plugin sends to audit_emit.
func FuzzDecodeEvent(f *testing.F) {
	ev := sampleEvent()
	f.Add(AppendEvent(nil, &ev))
	f.Add([]byte{3, 1})
	f.Fuzz(func(t *testing.T, b []byte) {
		var v Event
		verr := DecodeEventView(b, &v)
		var e Event
		err := DecodeEvent(b, &e)
		if (err == nil) != (verr == nil) {
			t.Fatalf("copying decoder: %v, view decoder: %v", err, verr)
		}
		if err != nil {
			return
		}
		if rv := AppendEvent(nil, &v); !bytes.Equal(rv, b) {
			t.Fatalf("view decoder re-encodes %x as %x", b, rv)
		}
		_ = ValidateEvent(&e)
		if re := AppendEvent(nil, &e); !bytes.Equal(re, b) {
			t.Fatalf("accepted non-canonical input %x, re-encodes as %x", b, re)
		}
	})
}

// FuzzDecodeDecisionInput covers the guest side of the codec.
func FuzzDecodeDecisionInput(f *testing.F) {
	in := sampleInput()
	f.Add(AppendDecisionInput(nil, &in))
	f.Add(AppendDecisionInput(nil, &DecisionInput{UserAgent: strings.Repeat("u", 200), Scopes: []string{"a"}}))
	f.Fuzz(func(t *testing.T, b []byte) {
		// The view decoder (fast path + fallback) must agree with the
		// copying decoder on acceptance and on the decoded value.
		var v DecisionInput
		verr := DecodeDecisionInputView(b, &v)
		var x DecisionInput
		err := DecodeDecisionInput(b, &x)
		if (err == nil) != (verr == nil) {
			t.Fatalf("copying decoder: %v, view decoder: %v", err, verr)
		}
		if err != nil {
			return
		}
		re := AppendDecisionInput(nil, &x)
		if !bytes.Equal(re, b) {
			t.Fatalf("accepted non-canonical input %x, re-encodes as %x", b, re)
		}
		if rv := AppendDecisionInput(nil, &v); !bytes.Equal(rv, b) {
			t.Fatalf("view decoder re-encodes %x as %x", b, rv)
		}
	})
}
