package plugin_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"stellaops.org/authority/abi"
	"stellaops.org/authority/host/plugin"
)

func budgetManager(t *testing.T, max int, tenants ...string) *plugin.Manager {
	t.Helper()
	specs := map[string][]plugin.Spec{}
	for _, tn := range tenants {
		s := spec(t, "noop")
		s.Limits.PoolSize = 2
		specs[tn] = []plugin.Spec{s}
	}
	opts := cached(plugin.RuntimeOptions{MaxInstances: max})
	m, err := plugin.NewManager(context.Background(), opts, specs, plugin.Deps{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Close(context.Background()) })
	return m
}

func live(m *plugin.Manager) map[string]int {
	out := map[string]int{}
	for _, p := range m.Health().Plugins {
		out[p.Tenant] = p.LiveInstances
	}
	return out
}

// The node's budget holds across tenants: a tenant served after the budget
// is full takes the slot of the idle instance used least recently, in any
// tenant, and the budget's count never exceeds its maximum.
func TestInstanceBudgetEvictsLeastRecentlyUsedAcrossTenants(t *testing.T) {
	m := budgetManager(t, 2, "a", "b", "c")
	ctx := context.Background()
	decide := func(tenant string) {
		t.Helper()
		if d, err := m.Decide(ctx, tenant, input("x")); err != nil || !d.Allow {
			t.Fatalf("%s: %+v %v", tenant, d, err)
		}
		time.Sleep(2 * time.Millisecond) // distinct last-use times
	}
	decide("a")
	decide("b")
	decide("a") // a is now the most recent
	decide("c") // full: b's instance (the oldest idle) goes
	if l := live(m); l["a"] != 1 || l["b"] != 0 || l["c"] != 1 {
		t.Fatalf("live instances %v, want a and c", l)
	}
	decide("b") // now a's is the oldest
	if l := live(m); l["a"] != 0 || l["b"] != 1 || l["c"] != 1 {
		t.Fatalf("live instances %v, want b and c", l)
	}
	h := m.Health().Budget
	if h.Max != 2 || h.Live != 2 || h.Evictions < 2 || h.Refusals != 0 {
		t.Fatalf("budget %+v", h)
	}
}

// When every instance the budget allows is busy, a tenant that needs a
// new one is refused at once: the failure (kind budget) takes the plugin's
// failure mode (closed: 503) and does not count against its breaker; once
// an instance is free again the tenant is served.
func TestInstanceBudgetExhaustedTakesTheFailureMode(t *testing.T) {
	m := budgetManager(t, 1, "a", "b")
	ctx := context.Background()
	// An instance of a's, held outside its pool, is a busy instance.
	closeBusy, _, err := m.NewTestInstance("a")
	if err != nil {
		t.Fatal(err)
	}
	// NewManager's start-up check left an idle instance too: make sure
	// the budget is held by the busy one only.
	m.EvictIdle(time.Now().Add(24 * time.Hour))
	for range 6 {
		d, err := m.Decide(ctx, "b", input("x"))
		var f *plugin.Failure
		if d.Allow || d.Status != 503 || d.Error != abi.ErrorTemporarilyUnavailable || !errors.As(err, &f) || f.Kind != plugin.KindBudget {
			t.Fatalf("b with the budget used up: %+v %v", d, err)
		}
	}
	h := m.Health()
	if h.Budget.Refusals < 6 || h.Budget.Live != 1 {
		t.Fatalf("budget %+v", h.Budget)
	}
	for _, p := range h.Plugins {
		if p.Tenant == "b" && p.Breaker != plugin.BreakerClosed {
			t.Fatalf("the budget opened b's breaker: %+v", p)
		}
	}
	closeBusy()
	if d, err := m.Decide(ctx, "b", input("x")); err != nil || !d.Allow {
		t.Fatalf("b once an instance is free: %+v %v", d, err)
	}
}

// Closing a manager whose context has already ended, while a guest call is
// still running (asleep in poll_oneoff until its deadline): the runtime,
// which unmaps the instances' linear memory, closes only after the call
// has ended, so the call's last writes never hit unmapped memory.
func TestCloseNowWaitsForRunningCalls(t *testing.T) {
	s := spec(t, "misbehave")
	s.Limits.CallTimeout = 300 * time.Millisecond
	m, err := plugin.NewManager(context.Background(), cached(plugin.RuntimeOptions{}), map[string][]plugin.Spec{"a": {s}}, plugin.Deps{})
	if err != nil {
		t.Fatal(err)
	}
	started := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		close(started)
		_, _ = m.Decide(context.Background(), "a", input("sleep"))
	}()
	<-started
	time.Sleep(50 * time.Millisecond) // the guest is asleep
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	t0 := time.Now()
	_ = m.Close(ctx) // the context is over: closeNow
	// The call sleeps until its deadline, 300 ms after it started (at
	// least 250 ms after Close began): Close must have waited for it.
	if took := time.Since(t0); took < 150*time.Millisecond || took > 5*time.Second {
		t.Fatalf("close took %s: it must outwait the running call (about 250 ms), no more than its deadline allows", took)
	}
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("the sleeping call never returned")
	}
}
