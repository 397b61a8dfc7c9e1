package main

// Tests of the compiled module under the real host runtime (host/plugin
// through sdk/sdktest): real counter_incr, pseudonymize and audit_emit.

import (
	"context"
	"sync"
	"testing"
	"time"

	"stellaops.org/authority/abi"
	"stellaops.org/authority/host/plugin"
	"stellaops.org/authority/sdk/sdktest"
)

// grants are the grants SEC3 needs.
var grants = []string{plugin.GrantCounters, plugin.GrantPseudonymize, plugin.GrantConfig, plugin.GrantAudit}

var (
	buildOnce sync.Once
	wasmPath  string
	buildErr  error
)

func module(tb testing.TB) string {
	tb.Helper()
	buildOnce.Do(func() { wasmPath, buildErr = sdktest.BuildModule(".") })
	if buildErr != nil {
		tb.Fatalf("build: %v", buildErr)
	}
	return wasmPath
}

func opts(tenant string, cfg map[string]any) sdktest.Options {
	return sdktest.Options{Tenant: tenant, Name: "sec3", Hooks: []string{abi.HookToken, abi.HookEvents}, Grants: grants, Config: cfg}
}

var demoCfg = map[string]any{
	"token":   map[string]any{"permitLimit": 4, "window": "1m"},
	"lockout": map[string]any{"maxFailures": 3, "window": "10m", "lockoutDuration": "5m"},
}

func decide(t *testing.T, p *sdktest.Plugin, tenant string, in abi.DecisionInput) abi.Decision {
	t.Helper()
	d, err := p.DecideFor(tenant, in)
	if err != nil {
		t.Fatalf("decide: %v", err)
	}
	return d
}

func emit(t *testing.T, p *sdktest.Plugin, tenant string, ev abi.Event) {
	t.Helper()
	if err := p.Manager.EmitSync(context.Background(), tenant, ev); err != nil {
		t.Fatalf("event: %v", err)
	}
}

// TestModuleLimitsAndLocksThroughTheHost: the compiled module under the
// real runtime answers the permitLimit+1st request 429 and a locked
// subject 423, with the host's own counter windows in Retry-After, and
// records exactly one lockout per locked key.
func TestModuleLimitsAndLocksThroughTheHost(t *testing.T) {
	p, err := sdktest.StartTenants(module(t), map[string]sdktest.Options{"a": opts("a", demoCfg)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Manager.Close(context.Background()) })
	in := abi.DecisionInput{Client: "svc", RemoteAddr: "203.0.113.7", Grant: "client_credentials", Subject: "svc"}
	for i := range 4 {
		if d := decide(t, p, "a", in); !d.Allow {
			t.Fatalf("request %d: %+v", i+1, d)
		}
	}
	d := decide(t, p, "a", in)
	if d.Allow || d.Status != 429 || d.Error != "slow_down" || d.RetryAfter < 1 || d.RetryAfter > 60 {
		t.Fatalf("5th request: %+v", d)
	}
	pw := abi.DecisionInput{Client: "app", RemoteAddr: "198.51.100.1", Grant: "password", Subject: "alice"}
	for range 3 {
		emit(t, p, "a", abi.Event{Type: abi.EventTokenDenied, Outcome: abi.OutcomeFailure, Reason: "bad-password",
			Client: "app", Subject: "alice", RemoteAddr: "198.51.100.1"})
	}
	other := abi.DecisionInput{Client: "app2", RemoteAddr: "192.0.2.1", Grant: "password", Subject: "alice"}
	if d := decide(t, p, "a", other); d.Allow || d.Status != 423 || d.Error != "access_denied" || d.RetryAfter < 299 || d.RetryAfter > 300 {
		t.Fatalf("locked subject: %+v", d)
	}
	if d := decide(t, p, "a", pw); d.Allow || d.Status != 423 {
		t.Fatalf("locked: %+v", d)
	}
	recs := p.Recorder.AuditEvents()
	if len(recs) != 3 {
		t.Fatalf("lockout records: %+v", recs)
	}
	// The record carries the event's subject and address as the host sent
	// them: the host pseudonymizes both when it writes a plugin's record
	// (abi/SPEC.md §5), into the same pseudonyms as its own records.
	for i, scope := range []string{"subject", "client", "ip"} {
		r := recs[i]
		if r.Type != "authority.lockout."+scope || r.Outcome != abi.OutcomeLockedOut || r.Client != "app" || r.Subject != "alice" ||
			len(r.Attributes) != 3 || r.Attributes[0].Value != "3" || r.Attributes[1].Value != "300" || r.Attributes[2].Value != "bad-password" {
			t.Fatalf("record %d: %+v", i, r)
		}
	}
	p.Clock.Advance(5*time.Minute + time.Second)
	if d := decide(t, p, "a", other); !d.Allow {
		t.Fatalf("after the lockout: %+v", d)
	}
}

// TestTenantIsolation: tenant a's lockouts, limits and configuration
// never touch tenant b, whatever the names.
func TestTenantIsolation(t *testing.T) {
	strict := map[string]any{"token": map[string]any{"permitLimit": 1, "window": "1m"},
		"lockout": map[string]any{"maxFailures": 1, "window": "10m", "lockoutDuration": "5m"}}
	lax := map[string]any{"token": map[string]any{"permitLimit": 100, "window": "1m"},
		"lockout": map[string]any{"maxFailures": 50, "window": "10m", "lockoutDuration": "5m"}}
	p, err := sdktest.StartTenants(module(t), map[string]sdktest.Options{"a": opts("a", strict), "b": opts("b", lax)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Manager.Close(context.Background()) })
	in := abi.DecisionInput{Client: "app", RemoteAddr: "198.51.100.1", Grant: "password", Subject: "alice"}
	emit(t, p, "a", abi.Event{Type: abi.EventTokenDenied, Outcome: abi.OutcomeFailure, Reason: "bad-password",
		Client: "app", Subject: "alice", RemoteAddr: "198.51.100.1"})
	if d := decide(t, p, "a", in); d.Status != 423 {
		t.Fatalf("a: %+v", d)
	}
	for i := range 10 {
		if d := decide(t, p, "b", in); !d.Allow {
			t.Fatalf("b request %d: %+v (tenant a's lockout or limit leaked)", i+1, d)
		}
	}
	in.Subject, in.Client = "bob", "svc"
	if d := decide(t, p, "a", abi.DecisionInput{Client: "svc", RemoteAddr: "192.0.2.1"}); !d.Allow {
		t.Fatalf("a first: %+v", d)
	}
	if d := decide(t, p, "a", abi.DecisionInput{Client: "svc", RemoteAddr: "192.0.2.1"}); d.Status != 429 {
		t.Fatalf("a second: %+v", d)
	}
}
