package telemetry

import (
	"context"
	"io"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"
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
		`authority_mtls_mismatch_total{reason="context-missing",tenant="demo"} 0`,
		`authority_mtls_mismatch_total{reason="missing-certificate",tenant="demo"} 0`,
		`authority_mtls_mismatch_total{reason="thumbprint-mismatch",tenant="demo"} 0`,
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
	m.MTLSMismatch(ctx, "demo", "thumbprint-mismatch")
	m.MTLSMismatch(ctx, "demo", "thumbprint-mismatch")
	out := scrape(t, m)
	for _, want := range []string{"authority_dpop_nonce_miss_total 1", `authority_mtls_mismatch_total{reason="thumbprint-mismatch",tenant="demo"} 2`} {
		if !strings.Contains(out, want) {
			t.Errorf("scrape lacks %q\n%s", want, out)
		}
	}
}

// The attribute cache stops growing at its cap, whatever it is fed: past the
// cap a set is built per call and the measurement is still recorded.
func TestUnboundedLabelsAttributeCacheIsBounded(t *testing.T) {
	m, err := New([]string{"demo"}, "memory")
	if err != nil {
		t.Fatal(err)
	}
	m.attrCap = 64
	ctx := context.Background()
	for i := range 1000 {
		// Plugin counter names are bounded by the plugin runtime, not here:
		// the one label this package takes as given, so the one that can
		// exercise the cache bound.
		m.AddPluginCounter("demo", "p", "c"+strconv.Itoa(i), 1)
		m.HTTPRequest(ctx, "/token", "INVENTED"+strconv.Itoa(i), 200, time.Millisecond)
	}
	if n := m.attrN.Load(); n > m.attrCap {
		t.Fatalf("attribute cache holds %d entries, cap %d", n, m.attrCap)
	}
	n := 0
	m.attrs.Range(func(any, any) bool { n++; return true })
	if int64(n) > m.attrCap {
		t.Fatalf("attribute cache holds %d entries, cap %d", n, m.attrCap)
	}
	out := scrape(t, m)
	if !strings.Contains(out, `authority_plugin_metric_total{name="c999",plugin="p",tenant="demo"} 1`) {
		t.Fatal("a measurement past the cache cap was not recorded")
	}
	if !strings.Contains(out, `authority_http_request_duration_seconds_count{method="_OTHER",route="/token",status_class="2xx"} 1000`) {
		t.Fatalf("invented methods not recorded as _OTHER:\n%s", out)
	}
}

// The default cap is in place: New does not leave the cache unbounded.
func TestUnboundedLabelsDefaultCacheCap(t *testing.T) {
	m, err := New(nil, "memory")
	if err != nil {
		t.Fatal(err)
	}
	if m.attrCap <= 0 || m.attrCap > 1<<16 {
		t.Fatalf("attribute cache cap %d", m.attrCap)
	}
}

// Methods outside the standard set, in any case or length, become _OTHER;
// the span's method_original is short and printable.
func TestUnboundedLabelsHTTPMethod(t *testing.T) {
	for _, m := range HTTPMethods {
		if HTTPMethod(m) != m {
			t.Errorf("HTTPMethod(%q) = %q", m, HTTPMethod(m))
		}
	}
	for _, m := range []string{"", "get", "Post", "PROPFIND", "BREW", strings.Repeat("X", 20000), "GET ", "G\x00T"} {
		if got := HTTPMethod(m); got != MethodOther {
			t.Errorf("HTTPMethod(%.20q) = %q, want %q", m, got, MethodOther)
		}
		o := MethodOriginal(m)
		if len(o) > maxMethodOriginal {
			t.Errorf("MethodOriginal(%.20q) is %d bytes", m, len(o))
		}
		for i := 0; i < len(o); i++ {
			if o[i] < 0x21 || o[i] > 0x7e {
				t.Errorf("MethodOriginal(%.20q) = %q: unprintable byte", m, o)
			}
		}
	}
}

// Every request-derived label is mapped onto its fixed set: an invented
// grant type, error code, sender constraint, DPoP result, mismatch reason,
// store operation, plugin hook or failure reason is counted as "other".
func TestUnboundedLabelsMappedToOther(t *testing.T) {
	m, err := New([]string{"demo"}, "memory")
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	const x = "invented-by-client"
	m.Token(ctx, TokenOutcome{Tenant: "demo", GrantType: x, SenderConstraint: x, DPoPResult: x})
	m.Token(ctx, TokenOutcome{Tenant: "demo", GrantType: x, DPoPResult: x, Error: x})
	m.Token(ctx, TokenOutcome{Tenant: "demo", GrantType: "client_credentials", Error: "invalid_client"})
	m.DPoPResult(ctx, "demo", x)
	m.MTLSMismatch(ctx, "demo", x)
	m.StoreOperation(ctx, "memory", x, time.Millisecond, nil)
	m.PluginCall("demo", "p", x, time.Millisecond, x)
	out := scrape(t, m)
	if strings.Contains(out, x) {
		t.Fatalf("an invented value became a label:\n%s", out)
	}
	for _, want := range []string{
		`authority_tokens_issued_total{authority_dpop_result="other",grant_type="other",sender_constraint="other",tenant="demo"} 1`,
		`authority_tokens_denied_total{authority_dpop_result="other",error="other",grant_type="other",tenant="demo"} 1`,
		`authority_tokens_denied_total{authority_dpop_result="none",error="invalid_client",grant_type="client_credentials",tenant="demo"} 1`,
		`authority_dpop_proofs_total{authority_dpop_result="other",tenant="demo"} 1`,
		`authority_mtls_mismatch_total{reason="other",tenant="demo"} 1`,
		`authority_store_operation_duration_seconds_count{operation="other",store="memory"} 1`,
		`authority_plugin_failures_total{hook="other",plugin="p",reason="other",tenant="demo"} 1`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("scrape lacks %s", want)
		}
	}
	if t.Failed() {
		t.Log(out)
	}
}
