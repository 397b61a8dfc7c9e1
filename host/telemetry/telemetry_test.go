package telemetry

import (
	"context"
	"io"
	"net/http/httptest"
	"strings"
	"testing"
)

func scrape(t *testing.T, m *Metrics) string {
	t.Helper()
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	b, _ := io.ReadAll(rec.Body)
	return string(b)
}

func TestSeedCountersExportedAtZeroFromStartup(t *testing.T) {
	m, err := New([]string{"demo"}, "memory")
	if err != nil {
		t.Fatal(err)
	}
	out := scrape(t, m)
	for _, want := range []string{
		"authority_dpop_nonce_miss_total 0",
		`authority_mtls_mismatch_total{reason="context-missing"} 0`,
		`authority_mtls_mismatch_total{reason="missing-certificate"} 0`,
		`authority_mtls_mismatch_total{reason="thumbprint-mismatch"} 0`,
		`authority_dpop_proofs_total{authority_dpop_result="bypass",tenant="demo"} 0`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("scrape lacks %q\n%s", want, out)
		}
	}
}

func TestCountersMove(t *testing.T) {
	m, err := New(nil, "memory")
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	m.NonceMiss(ctx)
	m.MTLSMismatch(ctx, "thumbprint-mismatch")
	m.MTLSMismatch(ctx, "thumbprint-mismatch")
	out := scrape(t, m)
	for _, want := range []string{"authority_dpop_nonce_miss_total 1", `authority_mtls_mismatch_total{reason="thumbprint-mismatch"} 2`} {
		if !strings.Contains(out, want) {
			t.Errorf("scrape lacks %q\n%s", want, out)
		}
	}
}
