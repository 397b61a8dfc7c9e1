package app_test

import (
	"context"
	"io"
	"net/http"
	"path/filepath"
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
