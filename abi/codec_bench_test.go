package abi

import (
	"encoding/json"
	"testing"
)

func BenchmarkDecodeDecisionInput(b *testing.B) {
	in := sampleInput()
	buf := AppendDecisionInput(nil, &in)
	b.SetBytes(int64(len(buf)))
	b.ReportAllocs()
	var x DecisionInput
	for b.Loop() {
		if err := DecodeDecisionInput(buf, &x); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkAppendDecisionInput(b *testing.B) {
	in := sampleInput()
	buf := make([]byte, 0, 512)
	b.ReportAllocs()
	for b.Loop() {
		buf = AppendDecisionInput(buf[:0], &in)
	}
}

func BenchmarkDecodeDecision(b *testing.B) {
	d := Decision{Status: 429, Error: "rate_limited", Description: "too many", RetryAfter: 30, Annotations: []KV{{Key: "a", Value: "b"}}}
	buf := AppendDecision(nil, &d)
	b.ReportAllocs()
	var x Decision
	for b.Loop() {
		if err := DecodeDecision(buf, &x); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecodeDecisionInputView(b *testing.B) {
	in := sampleInput()
	buf := AppendDecisionInput(nil, &in)
	b.SetBytes(int64(len(buf)))
	b.ReportAllocs()
	var x DecisionInput
	for b.Loop() {
		if err := DecodeDecisionInputView(buf, &x); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkAppendDecision(b *testing.B) {
	d := Allowed()
	buf := make([]byte, 0, 64)
	b.ReportAllocs()
	for b.Loop() {
		buf = AppendDecision(buf[:0], &d)
	}
}

// BenchmarkJSONDecisionInput is the alternative we rejected, for the
// record in RATIONALE-plugins.md: encoding/json decode of the same input.
func BenchmarkJSONDecisionInput(b *testing.B) {
	in := sampleInput()
	buf, _ := json.Marshal(&in)
	b.SetBytes(int64(len(buf)))
	b.ReportAllocs()
	for b.Loop() {
		var x DecisionInput
		if err := json.Unmarshal(buf, &x); err != nil {
			b.Fatal(err)
		}
	}
}
