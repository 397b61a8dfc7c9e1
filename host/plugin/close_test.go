package plugin

import (
	"context"
	"errors"
	"testing"
	"time"

	"stellaops.org/authority/abi"
)

// slowEvents returns a Manager whose tenant "t" has the slowevent module
// (200 ms per event) as its events plugin, with n events queued.
func slowEvents(t *testing.T, n int) *Manager {
	t.Helper()
	s := hostileFile(t, "slowevent")
	s.Hooks = []string{abi.HookEvents}
	s.Limits.CallTimeout = time.Second
	m, err := NewManager(context.Background(), RuntimeOptions{}, map[string][]Spec{"t": {s}}, Deps{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close(context.Background()) })
	for i := 0; i < n; i++ {
		if !m.Emit(context.Background(), "t", abi.Event{Type: "authority.token.issued"}) {
			t.Fatalf("event %d not queued", i)
		}
	}
	return m
}

// TestCloseHonoursContext: behind a slow events plugin, Close returns when
// its context ends instead of working off the whole queue (20 events x
// 200 ms), and the events it gives up on are counted as dropped.
func TestCloseHonoursContext(t *testing.T) {
	const queued = 20
	m := slowEvents(t, queued)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := m.Close(ctx)
	if el := time.Since(start); el > 1500*time.Millisecond {
		t.Fatalf("Close took %s with a 300ms context", el)
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Close: %v, want the context's error", err)
	}
	h := m.Health()
	if h.Ready {
		t.Fatal("closed manager reports ready")
	}
	// At most ~2 events fit in 300 ms; the cut-short delivery counts as dropped.
	if d := h.Plugins[0].EventsDropped; d < queued-3 || d > queued {
		t.Fatalf("EventsDropped = %d, want about %d", d, queued)
	}
	if m.Emit(context.Background(), "t", abi.Event{Type: "authority.token.issued"}) {
		t.Fatal("Emit after Close queued an event")
	}
}

// TestCloseDeliversQueuedEvents: with time to spare, Close delivers what
// was queued before it and drops nothing.
func TestCloseDeliversQueuedEvents(t *testing.T) {
	m := slowEvents(t, 2)
	if err := m.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	h := m.Health().Plugins[0]
	if h.EventsDropped != 0 || h.Calls != 2 || h.Failures != 0 {
		t.Fatalf("%+v", h)
	}
}
