package audit

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"
)

var nasty = []string{"", "plain", `q"uote\back`, "<script>&amp;", "\x00\x01\b\f\n\r\t\x1f\x7f", "é日本\u2028\u2029",
	"\xff\xfe bad utf8 \xc3", "x5t#S256", "\U0001F600"}

func sampleRecords() []*Record {
	at := time.Date(2026, 12, 2, 17, 40, 1, 123456789, time.UTC)
	var out []*Record
	for i, s := range nasty {
		out = append(out, &Record{Node: "n" + s, Seq: uint64(i + 1), Prev: s, Source: s, EventType: s, OccurredAt: at.Add(time.Duration(i) * time.Nanosecond),
			CorrelationID: s, Tenant: s, Outcome: s, Reason: s, Subject: s, Client: s,
			Scopes:           []string{s, "b"},
			Network:          &Network{IP: s, UserAgent: s + "ua"},
			SenderConstraint: &SenderConstraint{Kind: s, JKT: s, X5tS256: s, Alg: s, Nonce: s, DPoP: s, MTLS: s},
			Properties:       map[string]string{s: s, "z": "1", "a" + s: ""},
			Checkpoint:       &Checkpoint{KeyID: s, Final: i%2 == 0, Signature: s}})
	}
	out = append(out, &Record{Node: "n", Seq: 1, OccurredAt: at}, &Record{Network: &Network{}, SenderConstraint: &SenderConstraint{},
		Properties: map[string]string{}, Scopes: []string{}, Checkpoint: &Checkpoint{}})
	return out
}

// TestAppendRecordIsJSON: the hand-written encoder writes exactly what
// encoding/json writes for the struct, for every field and every kind of
// string (escapes, HTML characters, invalid UTF-8, U+2028).
func TestAppendRecordIsJSON(t *testing.T) {
	for _, r := range sampleRecords() {
		want, err := json.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		if got := appendRecord(nil, r); !bytes.Equal(got, want) {
			t.Fatalf("appendRecord:\n%s\nencoding/json:\n%s", got, want)
		}
	}
}

// FuzzAppendRecord compares the encoder with encoding/json on arbitrary
// strings (a plugin's record carries attacker-chosen text).
func FuzzAppendRecord(f *testing.F) {
	for _, s := range nasty {
		f.Add(s, s)
	}
	f.Fuzz(func(t *testing.T, a, b string) {
		r := &Record{Node: a, Seq: 7, Prev: b, Source: a, EventType: b, OccurredAt: time.Unix(1, 5).UTC(), Subject: a,
			Scopes: []string{a, b}, Network: &Network{IP: b}, Properties: map[string]string{a: b, b: a}}
		want, err := json.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		if got := appendRecord(nil, r); !bytes.Equal(got, want) {
			t.Fatalf("appendRecord %q, encoding/json %q", got, want)
		}
	})
}

func BenchmarkMarshalRecord(b *testing.B) {
	r := sampleRecords()[1]
	b.Run("appendRecord", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_, _ = MarshalRecord(r)
		}
	})
	b.Run("encoding/json", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_, _ = json.Marshal(r)
		}
	})
}
