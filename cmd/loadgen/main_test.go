package main

import (
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// The generator follows nonces (a use_dpop_nonce answer is a retry, not an
// error), counts other answers as errors, and reads its own CPU time.
func TestRunFollowsNoncesAndCountsErrors(t *testing.T) {
	var reqs atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := reqs.Add(1)
		user, pass, _ := r.BasicAuth()
		proof := r.Header.Get("DPoP")
		switch {
		case user != "c" || pass != "s" || strings.Count(proof, ".") != 2:
			w.WriteHeader(http.StatusUnauthorized)
		case n%50 == 0: // an error now and then
			w.WriteHeader(http.StatusServiceUnavailable)
		case n%10 == 0: // nonce rotation
			w.Header().Set("DPoP-Nonce", "n2")
			w.WriteHeader(http.StatusBadRequest)
			_, _ = w.Write([]byte(`{"error":"use_dpop_nonce"}`))
		default:
			w.Header().Set("DPoP-Nonce", "n1")
			tt := "DPoP"
			if n%70 == 0 {
				tt = "Bearer" // an unbound token is an error too
			}
			_, _ = w.Write([]byte(`{"access_token":"x","token_type":"` + tt + `"}`))
		}
	}))
	defer srv.Close()
	r, err := run(srv.URL, "c", "s", 4, 100*time.Millisecond, 500*time.Millisecond, os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if r.Tokens == 0 || r.NonceRetries == 0 || r.Errors == 0 || r.P99Micros < r.P50Micros || r.CPUMsPer1000 <= 0 {
		t.Fatalf("%+v", r)
	}
	if !strings.HasPrefix(r.FirstError, "503") {
		t.Fatalf("first error %q", r.FirstError)
	}
}

func TestCPUTicks(t *testing.T) {
	if n, err := cpuTicks(os.Getpid()); err != nil || n < 0 {
		t.Fatalf("%d %v", n, err)
	}
	if n, err := cpuTicks(0); err != nil || n != 0 {
		t.Fatalf("pid 0: %d %v", n, err)
	}
	if _, err := cpuTicks(1 << 30); err == nil {
		t.Fatal("a missing process has CPU time")
	}
}
