package plugin

import (
	"context"
	"errors"
	"testing"
	"time"

	"stellaops.org/authority/abi"
)

// newTimeManager runs the hostile module name for tenant "t" on hooks,
// with grants and the injected clock.
func newTimeManager(t *testing.T, name string, hooks []string, clock Clock, grants ...string) *Manager {
	t.Helper()
	s := hostileFile(t, name)
	s.Hooks = hooks
	s.Grants = grants
	m, err := NewManager(context.Background(), RuntimeOptions{}, map[string][]Spec{"t": {s}}, Deps{Clock: clock})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close(context.Background()) })
	return m
}

// TestHostileTimeBombNeedsClockGrant: without the clock grant a module
// cannot see the date, through the WASI realtime clock or the time of its
// input, so a time bomb cannot go off in production and stay silent under
// a reviewer's vectors; monotonic time still works (the module traps
// otherwise). With the grant it sees the injected clock and the input time.
func TestHostileTimeBombNeedsClockGrant(t *testing.T) {
	after := time.Date(2031, 1, 1, 0, 0, 0, 0, time.UTC)  // the bomb is set for 2030-01-01
	before := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC) // a clock before it
	cases := []struct {
		name      string
		clock     time.Time
		grants    []string
		wantDeny  string // decision description; "" allow
		wantEvent bool   // authority_event reports the date (guest error)
	}{
		{"no grant: epoch realtime, input and event time unset", after, nil, "", false},
		{"no grant, other grants", after, []string{GrantLog, GrantConfig}, "", false},
		{"clock grant: realtime is the injected clock", after, []string{GrantClock}, "wall clock", true},
		{"clock grant: input time passes through", before, []string{GrantClock}, "input time", true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m := newTimeManager(t, "timebomb", []string{abi.HookToken, abi.HookEvents}, newTestClock(c.clock), c.grants...)
			d, err := m.Decide(context.Background(), "t", &abi.DecisionInput{Endpoint: abi.HookToken, Tenant: "t", Time: after})
			if err != nil {
				t.Fatalf("decide failed: %v", err)
			}
			if c.wantDeny == "" && !d.Allow || c.wantDeny != "" && (d.Allow || d.Description != c.wantDeny) {
				t.Fatalf("decision %+v, want deny %q", d, c.wantDeny)
			}
			err = m.EmitSync(context.Background(), "t", abi.Event{Type: "authority.token.issued", Time: after})
			var f *Failure
			if got := errors.As(err, &f) && f.Kind == KindGuestError; got != c.wantEvent {
				t.Fatalf("event saw the date: %v (err %v), want %v", got, err, c.wantEvent)
			}
		})
	}
}

// TestPollRealtimeWithoutClockGrant: an absolute sleep on the realtime
// clock is measured against the guest's clock (the epoch without the
// grant), not the host's, so its length cannot reveal the wall time.
func TestPollRealtimeWithoutClockGrant(t *testing.T) {
	clock := newTestClock(time.Date(2031, 1, 1, 0, 0, 0, 0, time.UTC))
	// Without the grant, 1 s after the epoch is 1 s away: past the 100 ms deadline.
	m := newTimeManager(t, "pollrealtime", []string{abi.HookToken}, clock)
	_, err := m.Decide(context.Background(), "t", &abi.DecisionInput{Endpoint: abi.HookToken})
	var f *Failure
	if !errors.As(err, &f) || f.Kind != KindTimeout {
		t.Fatalf("without the clock grant: %v, want a timeout", err)
	}
	// With it, the moment is 61 years before the injected clock: no sleep.
	m = newTimeManager(t, "pollrealtime", []string{abi.HookToken}, clock, GrantClock)
	if d, err := m.Decide(context.Background(), "t", &abi.DecisionInput{Endpoint: abi.HookToken}); err != nil || !d.Allow {
		t.Fatalf("with the clock grant: %+v %v", d, err)
	}
}
