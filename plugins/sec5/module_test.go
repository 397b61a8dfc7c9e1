package main

// Tests of the compiled module under the real host runtime (host/plugin
// through sdk/sdktest): real counter_incr_many, clock and audit_emit.

import (
	"context"
	"strings"
	"testing"
	"time"

	"stellaops.org/authority/abi"
	"stellaops.org/authority/host/plugin"
	"stellaops.org/authority/sdk/sdktest"
)

// grants are the grants SEC5 needs.
var grants = []string{plugin.GrantConfig, plugin.GrantClock, plugin.GrantCounters, plugin.GrantAudit}

// module is the compiled plugin (sdktest caches it by source hash).
func module(tb testing.TB) string { return sdktest.Build(tb, ".") }

func opts(tenant string, cfg map[string]any, clock *sdktest.FakeClock) sdktest.Options {
	return sdktest.Options{Tenant: tenant, Name: "sec5", Grants: grants, Config: cfg, Clock: clock,
		Hooks: []string{abi.HookToken, abi.HookIntrospect, abi.HookFreshAuth, abi.HookEvents}}
}

func start(t *testing.T, tenants map[string]sdktest.Options) *sdktest.Plugin {
	t.Helper()
	p, err := sdktest.StartTenants(module(t), tenants)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Manager.Close(context.Background()) })
	return p
}

func decideFor(t *testing.T, p *sdktest.Plugin, tenant string, in *abi.DecisionInput) abi.Decision {
	t.Helper()
	in.Time = p.Clock.Now()
	d, err := p.DecideFor(tenant, *in)
	if err != nil {
		t.Fatalf("decide: %v", err)
	}
	return d
}

func emitFor(t *testing.T, p *sdktest.Plugin, tenant string, ev *abi.Event) {
	t.Helper()
	ev.Time = p.Clock.Now()
	if err := p.Manager.EmitSync(context.Background(), tenant, *ev); err != nil {
		t.Fatalf("event: %v", err)
	}
}

// The compiled module refuses by rule at every policy hook, lets a drill
// bypass through inside its window only, records what it must, and
// raises the nonce-miss and mismatch alerts from events.
func TestModuleRulesAndAlertsThroughTheHost(t *testing.T) {
	clock := sdktest.NewFakeClock(time.Date(2026, 12, 3, 14, 30, 0, 0, time.UTC))
	p := start(t, map[string]sdktest.Options{"a": opts("a", rulesCfg, clock)})

	wantDeny(t, decideFor(t, p, "a", tokenInput("c", abi.ConstraintDPoP, "payments-api")), 400, "invalid_request", ruleRequireMTLS, "audiences[0]")
	wantAllow(t, decideFor(t, p, "a", tokenInput("c", abi.ConstraintMTLS, "payments-api")))
	wantDeny(t, decideFor(t, p, "a", tokenInput("c", abi.ConstraintNone, "vault-api")), 400, "invalid_request", ruleHighAssurance, "audiences[3]")
	in := tokenInput("c", abi.ConstraintDPoP, "reports-api")
	in.Endpoint, in.DPoP.Alg = abi.HookFreshAuth, "PS256"
	wantDeny(t, decideFor(t, p, "a", in), 403, "access_denied", ruleDPoPAlg, "dpop.algorithms")
	wantAllow(t, decideFor(t, p, "a", tokenInput("drill-client", abi.ConstraintBypass, "reports-api")))
	clock.Advance(time.Hour) // the drill is over
	wantDeny(t, decideFor(t, p, "a", tokenInput("drill-client", abi.ConstraintBypass, "reports-api")), 400, "invalid_dpop_proof", ruleBypass, "bypassDrill")

	recs := p.Recorder.AuditEvents()
	if len(recs) != 2 || recs[0].Reason != ruleDPoPAlg || recs[1].Reason != ruleBypass || recs[1].Type != eventRefused {
		t.Fatalf("refusal records: %+v", recs)
	}
	for range 20 {
		emitFor(t, p, "a", &abi.Event{Type: abi.EventTokenIssued, Outcome: abi.OutcomeSuccess, Client: "c",
			SenderConstraint: abi.ConstraintDPoP, DPoP: abi.DPoP{Present: true, Valid: true, Result: abi.DPoPOK}})
	}
	for range 2 {
		emitFor(t, p, "a", &abi.Event{Type: abi.EventTokenDenied, Outcome: abi.OutcomeFailure, Reason: "dpop-nonce-missing", Client: "c",
			SenderConstraint: abi.ConstraintNone, DPoP: abi.DPoP{Present: true, Result: abi.DPoPNonceMiss}})
	}
	emitFor(t, p, "a", &abi.Event{Type: abi.EventMTLSBindingMismatch, Outcome: abi.OutcomeFailure, Reason: abi.MTLSMissingCertificate,
		Client: "c", SenderConstraint: abi.ConstraintMTLS, MTLS: abi.MTLS{Result: abi.MTLSMissingCertificate}})
	recs = p.Recorder.AuditEvents()[2:]
	if len(recs) != 2 || recs[0].Type != eventAlert || recs[0].Reason != alertNonceMiss || recs[1].Reason != alertMismatch {
		t.Fatalf("alert records: %+v", recs)
	}
	if a := recs[0].Attributes; len(a) < 4 || a[2].Value != "2" || a[3].Value != "22" {
		t.Fatalf("nonce alert attributes: %+v", a)
	}
}

// Tenant isolation: tenant a's rules, drill and alert windows never touch
// tenant b, whatever the names.
func TestTenantIsolation(t *testing.T) {
	clock := sdktest.NewFakeClock(time.Date(2026, 12, 3, 14, 30, 0, 0, time.UTC))
	p := start(t, map[string]sdktest.Options{
		"a": opts("a", rulesCfg, clock),
		"b": opts("b", map[string]any{"alerts": map[string]any{"mtlsMismatches": 1}}, clock),
	})
	wantAllow(t, decideFor(t, p, "b", tokenInput("c", abi.ConstraintNone, "vault-api", "payments-api")))
	// a's drill does not make b's bypasses legal.
	wantDeny(t, decideFor(t, p, "b", tokenInput("drill-client", abi.ConstraintBypass, "x")), 400, "invalid_dpop_proof", ruleBypass, "bypassDrill")
	// a's mismatch does not count in b's window: b alerts at its second.
	mm := &abi.Event{Type: abi.EventMTLSBindingMismatch, Outcome: abi.OutcomeFailure, MTLS: abi.MTLS{Result: abi.MTLSThumbprintMismatch}}
	emitFor(t, p, "a", mm)
	emitFor(t, p, "b", mm)
	var alertsOf = func(tenant string) int {
		n := 0
		for _, r := range p.Recorder.AuditEvents() {
			if r.Type == eventAlert && r.Tenant == tenant {
				n++
			}
		}
		return n
	}
	if alertsOf("a") != 1 || alertsOf("b") != 0 {
		t.Fatalf("alerts a=%d b=%d, want 1 and 0", alertsOf("a"), alertsOf("b"))
	}
	emitFor(t, p, "b", mm)
	if alertsOf("b") != 1 {
		t.Fatalf("b: %d alerts after its second mismatch", alertsOf("b"))
	}
}

// Without the clock grant the module does not load (it imports now): the
// operator learns it at start, not from a rule that cannot tell the time.
func TestModuleNeedsTheClockGrant(t *testing.T) {
	o := opts("a", rulesCfg, nil)
	o.Grants = []string{plugin.GrantConfig, plugin.GrantCounters, plugin.GrantAudit}
	_, err := sdktest.StartTenants(module(t), map[string]sdktest.Options{"a": o})
	if err == nil || !strings.Contains(err.Error(), `requires grant "clock"`) {
		t.Fatalf("got %v", err)
	}
}
