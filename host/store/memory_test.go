package store_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"stellaops.org/authority/host/store"
	"stellaops.org/authority/host/store/storetest"
)

func TestMemoryContract(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.TokenStore {
		return store.NewMemory(store.MemoryOptions{})
	})
}

func tokenExpiring(id string, exp time.Time) *store.Token {
	return &store.Token{ID: id, Kind: store.KindAccessToken, IssuedAt: exp.Add(-time.Hour), ExpiresAt: exp}
}

func TestMemorySweepRemovesOnlyExpired(t *testing.T) {
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	m := store.NewMemory(store.MemoryOptions{Now: func() time.Time { return now }, PurgePerWrite: -1})
	ctx := context.Background()
	for i := range 10 {
		if err := m.Put(ctx, tokenExpiring(fmt.Sprint("t", i), now.Add(time.Duration(i)*time.Minute))); err != nil {
			t.Fatal(err)
		}
	}
	if n := m.Sweep(now.Add(4*time.Minute + time.Second)); n != 5 {
		t.Fatalf("Sweep removed %d, want 5", n)
	}
	if _, err := m.Get(ctx, "t4"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("t4 should be purged: %v", err)
	}
	if _, err := m.Get(ctx, "t5"); err != nil {
		t.Fatalf("t5 should remain: %v", err)
	}
	if m.Len() != 5 {
		t.Fatalf("Len = %d, want 5", m.Len())
	}
}

func TestMemoryPurgesIncrementallyOnWrite(t *testing.T) {
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	clock := now
	m := store.NewMemory(store.MemoryOptions{Now: func() time.Time { return clock }, PurgePerWrite: 2})
	ctx := context.Background()
	for i := range 6 {
		if err := m.Put(ctx, tokenExpiring(fmt.Sprint("old", i), now.Add(time.Second))); err != nil {
			t.Fatal(err)
		}
	}
	clock = now.Add(time.Minute)
	if err := m.Put(ctx, tokenExpiring("new", now.Add(time.Hour))); err != nil {
		t.Fatal(err)
	}
	if m.Len() != 5 { // 6 old - 2 purged + 1 new
		t.Fatalf("Len = %d, want 5 (two purged by the write)", m.Len())
	}
}

func TestMemoryRetentionKeepsRecentlyExpired(t *testing.T) {
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	m := store.NewMemory(store.MemoryOptions{Now: func() time.Time { return now }, Retention: time.Hour})
	ctx := context.Background()
	if err := m.Put(ctx, tokenExpiring("a", now.Add(-time.Minute))); err != nil {
		t.Fatal(err)
	}
	if n := m.Sweep(now); n != 0 {
		t.Fatalf("Sweep within retention removed %d", n)
	}
	if n := m.Sweep(now.Add(2 * time.Hour)); n != 1 {
		t.Fatalf("Sweep after retention removed %d, want 1", n)
	}
}
