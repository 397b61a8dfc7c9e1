package audit_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"strings"
	"testing"
	"time"

	"stellaops.org/authority/host/audit"
	"stellaops.org/authority/host/audit/audittest"
)

type linesScanner []byte

func (l linesScanner) Scan(ctx context.Context, fn func(audit.Sealed) error) error {
	return audit.ScanLines(ctx, bytes.NewReader(l), fn)
}

// FuzzVerify feeds arbitrary bytes to Verify as an audit file, the input
// an attacker who can write the sink controls: it must never panic, must
// count every line, and an untouched chain must verify.
func FuzzVerify(f *testing.F) {
	// A fixed key and no writer goroutines: every fuzz worker process
	// builds the same seed.
	key := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{7}, ed25519.SeedSize))
	pub := key.Public().(ed25519.PublicKey)
	at := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	valid := append(bytes.Join(audit.SealChain("n", key, audittest.Events("t", 2, at), at), []byte("\n")), '\n')
	f.Add(valid)
	f.Add(bytes.Replace(valid, []byte(`"seq":3`), []byte(`"seq":4`), 1))
	f.Add(bytes.Replace(valid, []byte(`"outcome":"success"`), []byte(`"outcome":"failure"`), 1))
	f.Add([]byte("{}\n{\"node\":\"n\",\"seq\":18446744073709551615,\"eventType\":\"authority.audit.checkpoint\"}\n"))
	f.Add([]byte("\n\n\xff\x00{"))
	opts := audit.VerifyOptions{Keys: []ed25519.PublicKey{pub}, Now: at.Add(time.Hour), MaxCheckpointAge: time.Minute}
	f.Fuzz(func(t *testing.T, data []byte) {
		rep, err := audit.Verify(context.Background(), linesScanner(data), opts)
		if err != nil {
			t.Fatal(err)
		}
		lines := strings.Count(string(data), "\n")
		if len(data) > 0 && data[len(data)-1] != '\n' {
			lines++
		}
		if rep.Records != lines {
			t.Fatalf("%d records for %d lines", rep.Records, lines)
		}
		if bytes.Equal(data, valid) && !rep.OK() {
			t.Fatalf("the untouched chain fails: %v", rep.Problems)
		}
		for _, p := range rep.Problems {
			if p.Position < 1 || p.Position > lines || p.Kind == "" || p.Detail == "" {
				t.Fatalf("bad problem %+v (%d lines)", p, lines)
			}
		}
	})
}
