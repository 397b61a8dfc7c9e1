package app

import (
	"context"
	"errors"
	"io"
	"os"
	"testing"
	"time"

	"stellaops.org/authority/host/config"
	"stellaops.org/authority/host/store"
)

func TestExpiredTokensArePurgedAfterRetention(t *testing.T) {
	cfg := config.Default()
	dir := t.TempDir()
	cfg.Signing.Keys = []config.SigningKey{{File: dir + "/k.pem", Active: true, Generate: true}}
	cfg.Tenants = []config.Tenant{{ID: "t"}}
	cfg.Storage.PurgeInterval = config.Duration(20 * time.Millisecond)
	cfg.Storage.Retention = config.Duration(time.Minute)
	log := NewLogger(io.Discard, "info")
	a, err := Build(context.Background(), cfg, log, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	now := time.Now()
	put := func(id string, expired time.Duration) {
		if err := a.Store.Put(context.Background(), &store.Token{ID: id, Kind: store.KindAccessToken, Tenant: "t",
			IssuedAt: now.Add(-expired - time.Minute), ExpiresAt: now.Add(-expired)}); err != nil {
			t.Fatal(err)
		}
	}
	put("long-expired", 2*time.Minute) // beyond retention: purged
	put("just-expired", time.Second)   // within retention: kept
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { a.purgeExpired(ctx, log); close(done) }()
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, err := a.Store.Get(context.Background(), "long-expired"); errors.Is(err, store.ErrNotFound) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("expired token not purged")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if _, err := a.Store.Get(context.Background(), "just-expired"); err != nil {
		t.Fatalf("a token within retention was purged: %v", err)
	}
	cancel()
	<-done
}

// TestPurgeLoopDoesNotRaceReload: the purge loop and Reload run at once
// (Reload replaces a.Config); under -race this fails if the loop reads the
// configuration unguarded.
func TestPurgeLoopDoesNotRaceReload(t *testing.T) {
	cfg := config.Default()
	dir := t.TempDir()
	cfg.Signing.Keys = []config.SigningKey{{File: dir + "/k.pem", Active: true, Generate: true}}
	cfg.Tenants = []config.Tenant{{ID: "t"}}
	cfg.Storage.PurgeInterval = config.Duration(time.Millisecond)
	log := NewLogger(io.Discard, "info")
	a, err := Build(context.Background(), cfg, log, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	p := dir + "/authority.yaml"
	doc := "signing:\n  keys: [{file: " + dir + "/k.pem, active: true}]\ntenants: [{id: t}]\n"
	if err := os.WriteFile(p, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	a.ConfigPath = p
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { a.purgeExpired(ctx, log); close(done) }()
	for range 20 {
		if err := a.Reload(context.Background()); err != nil {
			t.Fatal(err)
		}
		time.Sleep(2 * time.Millisecond)
	}
	cancel()
	<-done
}
