package mtls_test

import (
	"net/http"
	"net/http/httptest"
	"net/netip"
	"slices"
	"testing"

	"stellaops.org/authority/host/mtls"
	"stellaops.org/authority/host/mtls/mtlstest"
)

// TestRFC8705_3_BoundTokenAcceptsItsCertificate: the certificate the token is
// bound to passes, whether it arrives over our TLS or from a trusted proxy.
func TestRFC8705_3_BoundTokenAcceptsItsCertificate(t *testing.T) {
	holder := mtlstest.SelfSigned(t, mtlstest.Options{})
	bound := mtls.Thumbprint(holder.Cert)

	h := newTLSHarness(t, &mtls.Extractor{})
	p, err := h.present(t, holder, nil)
	if err != nil {
		t.Fatal(err)
	}
	if ok, reason := mtls.CheckBinding(p, bound); !ok || reason != "" {
		t.Fatalf("over TLS: CheckBinding = %v, %q", ok, reason)
	}

	ext := &mtls.Extractor{TrustedProxies: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}}
	r := httptest.NewRequest(http.MethodPost, "/fresh-auth", nil)
	r.RemoteAddr = "10.0.0.2:40000"
	r.Header.Set(mtls.HeaderClientCert, mtls.FormatClientCertHeader(holder.Cert))
	p, err = ext.FromRequest(r)
	if err != nil {
		t.Fatal(err)
	}
	if ok, reason := mtls.CheckBinding(p, bound); !ok || reason != "" {
		t.Fatalf("via proxy: CheckBinding = %v, %q", ok, reason)
	}
}

// TestRFC8705_3_BoundTokenRejectsOtherCertificate: anything but the bound
// certificate is refused, with the metric reason saying why.
func TestRFC8705_3_BoundTokenRejectsOtherCertificate(t *testing.T) {
	holder := mtlstest.SelfSigned(t, mtlstest.Options{CommonName: "svc"})
	thief := mtlstest.SelfSigned(t, mtlstest.Options{CommonName: "svc"}) // same subject, other key
	bound := mtls.Thumbprint(holder.Cert)
	h := newTLSHarness(t, &mtls.Extractor{})

	plain := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, err := (&mtls.Extractor{}).FromRequest(r)
		if err != nil {
			t.Error(err)
		}
		_, reason := mtls.CheckBinding(p, bound)
		w.Header().Set("X-Reason", string(reason))
	}))
	defer plain.Close()

	cases := []struct {
		name  string
		get   func(t *testing.T) mtls.Presented
		bound string
		want  mtls.MismatchReason
	}{
		{"other certificate over TLS", func(t *testing.T) mtls.Presented {
			p, _ := h.present(t, thief, nil)
			return p
		}, bound, mtls.MismatchThumbprint},
		{"TLS without certificate", func(t *testing.T) mtls.Presented {
			p, _ := h.present(t, nil, nil)
			return p
		}, bound, mtls.MismatchMissingCertificate},
		{"holder, but token bound to nothing", func(t *testing.T) mtls.Presented {
			p, _ := h.present(t, holder, nil)
			return p
		}, "", mtls.MismatchThumbprint},
		{"holder, thumbprint in other case", func(t *testing.T) mtls.Presented {
			p, _ := h.present(t, holder, nil)
			return p
		}, swapCase(bound), mtls.MismatchThumbprint},
		{"zero Presented", func(*testing.T) mtls.Presented { return mtls.Presented{} }, bound, mtls.MismatchContextMissing},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ok, reason := mtls.CheckBinding(tc.get(t), tc.bound)
			if ok || reason != tc.want {
				t.Fatalf("CheckBinding = %v, %q; want false, %q", ok, reason, tc.want)
			}
		})
	}
	t.Run("plain HTTP", func(t *testing.T) {
		resp, err := http.Get(plain.URL)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if got := resp.Header.Get("X-Reason"); got != string(mtls.MismatchContextMissing) {
			t.Fatalf("reason = %q, want %q", got, mtls.MismatchContextMissing)
		}
	})
}

func swapCase(s string) string {
	b := []byte(s)
	for i, c := range b {
		switch {
		case c >= 'a' && c <= 'z':
			b[i] = c - 32
		case c >= 'A' && c <= 'Z':
			b[i] = c + 32
		}
	}
	return string(b)
}

// TestRFC8705_3_MismatchReasons: the metric labels are exactly the three the
// rollout plan names, and AllMismatchReasons lists each once.
func TestRFC8705_3_MismatchReasons(t *testing.T) {
	want := []mtls.MismatchReason{"context-missing", "missing-certificate", "thumbprint-mismatch"}
	got := mtls.AllMismatchReasons()
	if !slices.Equal(got, want) {
		t.Fatalf("AllMismatchReasons() = %q, want %q", got, want)
	}
	got[0] = "mutated"
	if mtls.AllMismatchReasons()[0] != "context-missing" {
		t.Fatal("AllMismatchReasons shares its backing array")
	}
}
