package app_test

import (
	"context"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"stellaops.org/authority/host/app"
)

// Run serves both listeners and shuts down gracefully when its context ends.
func TestRunServesAndShutsDownGracefully(t *testing.T) {
	e := newEnv(t, envOptions{}) // for a valid configuration with free ports
	cfg := *e.cfg
	cfg.Audit.File = filepath.Join(t.TempDir(), "audit.jsonl") // e's node holds its own
	e.plain.Close()
	e.secure.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- app.Run(ctx, "", &cfg, app.NewLogger(io.Discard, "info")) }()
	deadline := time.Now().Add(5 * time.Second)
	for {
		resp, err := http.Get(cfg.Issuer + "/healthz")
		if err == nil {
			resp.Body.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("server did not come up: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(cfg.Listen.ShutdownTimeout.D() + 2*time.Second):
		t.Fatal("no graceful shutdown")
	}
	if _, err := http.Get(cfg.Issuer + "/healthz"); err == nil {
		t.Fatal("still serving after shutdown")
	}
}

// admin.pprofAddr serves Go's profiler on its own loopback listener, and
// the public listener serves no /debug/pprof; without it nothing listens.
func TestPprofOnlyOnItsOwnLoopbackListener(t *testing.T) {
	e := newEnv(t, envOptions{})
	cfg := *e.cfg
	cfg.Audit.File = filepath.Join(t.TempDir(), "audit.jsonl")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg.Admin.PprofAddr = ln.Addr().String()
	ln.Close()
	e.plain.Close()
	e.secure.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- app.Run(ctx, "", &cfg, app.NewLogger(io.Discard, "info")) }()
	defer func() { cancel(); <-done }()
	get := func(url string) (int, string) {
		deadline := time.Now().Add(5 * time.Second)
		for {
			resp, err := http.Get(url)
			if err == nil {
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				return resp.StatusCode, string(b)
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: %v", url, err)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	if code, body := get("http://" + cfg.Admin.PprofAddr + "/debug/pprof/"); code != 200 || !strings.Contains(body, "goroutine") {
		t.Fatalf("pprof listener: %d %.200s", code, body)
	}
	if code, _ := get(cfg.Issuer + "/debug/pprof/"); code != 404 {
		t.Fatalf("the public listener answers /debug/pprof/ with %d", code)
	}
	// Refused off loopback, or on a public listener's address.
	for _, bad := range []string{"0.0.0.0:6060", "10.0.0.1:6060", "localhost", cfg.Listen.HTTP} {
		c := cfg
		c.Admin.PprofAddr = bad
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "admin.pprofAddr") {
			t.Errorf("%q: %v", bad, err)
		}
	}
}
