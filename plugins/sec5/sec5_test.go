package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	"stellaops.org/authority/abi"
	"stellaops.org/authority/host/plugin"
	"stellaops.org/authority/sdk"
	"stellaops.org/authority/sdk/sdktest"
)

// node is one SEC5 instance on the host's memory counters (the real
// fixed-window semantics) and a clock the test moves; nodes made by one
// cluster share the counters, as Redis shares them between hosts.
type cluster struct {
	clock    *sdktest.FakeClock
	counters *plugin.MemoryCounters
	records  []abi.Event
	// fail, when set, fails every counter batch.
	fail  error
	calls int
}

func newCluster() *cluster {
	c := sdktest.NewFakeClock(time.Date(2026, 12, 3, 14, 0, 0, 0, time.UTC))
	return &cluster{clock: c, counters: plugin.NewMemoryCounters(c)}
}

var scope = plugin.Scope{Tenant: "t", Plugin: "sec5"}

func (c *cluster) node(t testing.TB, cfg map[string]any) *policy {
	t.Helper()
	b, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return &policy{host: hostFuncs{
		config: func() []byte { return b },
		now:    c.clock.Now,
		incrMany: func(ops []sdk.CounterOp, out []sdk.CounterResult) error {
			c.calls++
			if c.fail != nil {
				return c.fail
			}
			if len(ops) == 0 || len(ops) > abi.MaxCounterBatch {
				return sdk.ErrInvalid
			}
			for i, op := range ops {
				out[i].Value, out[i].TTL, out[i].Err = c.counters.Incr(context.Background(), scope, op.Key, op.Delta, op.Window)
			}
			return nil
		},
		audit: func(ev *abi.Event) error {
			if err := abi.ValidateEvent(ev); err != nil {
				t.Errorf("invalid record %+v: %v", ev, err)
			}
			c.records = append(c.records, *ev)
			return nil
		},
		logError: func(s string) { t.Log(s) },
	}}
}

func (c *cluster) recorded(typ string) []abi.Event {
	var out []abi.Event
	for _, r := range c.records {
		if r.Type == typ {
			out = append(out, r)
		}
	}
	return out
}

var rulesCfg = map[string]any{
	"audiences": []any{
		map[string]any{"audience": "payments-api", "require": []any{"mtls"}},
		map[string]any{"audience": "ledger-api", "require": []any{"dpop", "mtls"}},
		map[string]any{"audience": "reports-api", "require": []any{"dpop"}},
		map[string]any{"audience": "vault-api", "highAssurance": true},
	},
	"dpop":        map[string]any{"algorithms": []any{"ES256"}},
	"bypassDrill": map[string]any{"name": "recap-q4", "start": "2026-12-03T14:00:00Z", "end": "2026-12-03T15:00:00Z", "clients": []any{"drill-client"}},
}

func tokenInput(client, constraint string, auds ...string) *abi.DecisionInput {
	in := &abi.DecisionInput{Endpoint: abi.HookToken, Tenant: "t", Client: client, Audiences: auds,
		Time: time.Date(2026, 12, 3, 14, 30, 0, 0, time.UTC), SenderConstraint: constraint, CorrelationID: "c-1"}
	switch constraint {
	case abi.ConstraintDPoP, abi.ConstraintDPoPMTLS:
		in.DPoP = abi.DPoP{Present: true, Valid: true, Result: abi.DPoPOK, JKT: "jkt", Alg: "ES256", NonceStatus: abi.NonceValid}
	case abi.ConstraintBypass:
		in.DPoP = abi.DPoP{Result: abi.DPoPBypass}
	}
	if constraint == abi.ConstraintMTLS || constraint == abi.ConstraintDPoPMTLS {
		in.MTLS = abi.MTLS{Present: true, Thumbprint: "x5t", Result: abi.MTLSOK}
	}
	return in
}

// wantDeny checks a refusal: status, error, the rule named in the
// description and the annotations, and the decision valid under the ABI.
func wantDeny(t *testing.T, d abi.Decision, status int, code, rule, key string) {
	t.Helper()
	if err := d.Validate(); err != nil {
		t.Fatalf("invalid decision %+v: %v", d, err)
	}
	if d.Allow || d.Status != status || d.Error != code {
		t.Fatalf("got %+v, want %d %s", d, status, code)
	}
	if !strings.HasPrefix(d.Description, "sec5 rule "+rule+" ("+key+"): ") {
		t.Errorf("description %q does not name rule %s (%s)", d.Description, rule, key)
	}
	// Through the host the keys carry the plugin's name.
	var got []abi.KV
	for _, kv := range d.Annotations {
		got = append(got, abi.KV{Key: strings.TrimPrefix(kv.Key, "sec5."), Value: kv.Value})
	}
	want := []abi.KV{{Key: "rule", Value: rule}, {Key: "rule.key", Value: key}}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("annotations %v, want %v", d.Annotations, want)
	}
}

func wantAllow(t *testing.T, d abi.Decision) {
	t.Helper()
	if err := d.Validate(); err != nil || !d.Allow {
		t.Fatalf("got %+v (%v), want allow", d, err)
	}
}

// RFC 8705 §3 binding required per audience: a token for payments-api
// must be certificate-bound; DPoP alone is not enough.
func TestRuleRequireMTLSForAudience(t *testing.T) {
	p := newCluster().node(t, rulesCfg)
	wantAllow(t, p.decide(tokenInput("c", abi.ConstraintMTLS, "payments-api")))
	wantAllow(t, p.decide(tokenInput("c", abi.ConstraintDPoPMTLS, "payments-api")))
	wantDeny(t, p.decide(tokenInput("c", abi.ConstraintDPoP, "payments-api")), 400, "invalid_request", ruleRequireMTLS, "audiences[0]")
	wantDeny(t, p.decide(tokenInput("c", abi.ConstraintNone, "other-api", "payments-api")), 400, "invalid_request", ruleRequireMTLS, "audiences[0]")
	wantAllow(t, p.decide(tokenInput("c", abi.ConstraintNone, "other-api")))
}

// RFC 9449 binding required per audience; both, for ledger-api.
func TestRuleRequireDPoPForAudience(t *testing.T) {
	p := newCluster().node(t, rulesCfg)
	wantAllow(t, p.decide(tokenInput("c", abi.ConstraintDPoP, "reports-api")))
	wantDeny(t, p.decide(tokenInput("c", abi.ConstraintMTLS, "reports-api")), 400, "invalid_dpop_proof", ruleRequireDPoP, "audiences[2]")
	wantDeny(t, p.decide(tokenInput("c", abi.ConstraintMTLS, "ledger-api")), 400, "invalid_dpop_proof", ruleRequireDPoP, "audiences[1]")
	wantDeny(t, p.decide(tokenInput("c", abi.ConstraintDPoP, "ledger-api")), 400, "invalid_request", ruleRequireMTLS, "audiences[1]")
	wantAllow(t, p.decide(tokenInput("c", abi.ConstraintDPoPMTLS, "ledger-api")))
}

// A high-assurance audience takes no token without cnf: not a bearer
// token, not a bypassed one even inside the drill, for a listed client.
func TestRuleUnboundRefusedForHighAssuranceEvenInDrill(t *testing.T) {
	c := newCluster()
	p := c.node(t, rulesCfg)
	wantDeny(t, p.decide(tokenInput("c", abi.ConstraintNone, "vault-api")), 400, "invalid_request", ruleHighAssurance, "audiences[3]")
	wantDeny(t, p.decide(tokenInput("drill-client", abi.ConstraintBypass, "vault-api")), 400, "invalid_request", ruleHighAssurance, "audiences[3]")
	wantAllow(t, p.decide(tokenInput("c", abi.ConstraintDPoP, "vault-api")))
	wantAllow(t, p.decide(tokenInput("c", abi.ConstraintMTLS, "vault-api")))
	in := tokenInput("c", abi.ConstraintNone, "vault-api")
	in.Endpoint = abi.HookIntrospect
	wantDeny(t, p.decide(in), 403, "access_denied", ruleHighAssurance, "audiences[3]")
	if r := c.recorded(eventRefused); len(r) != 1 || r[0].Reason != ruleHighAssurance || r[0].Attributes[1].Value != abi.HookIntrospect {
		t.Fatalf("introspect refusal records: %+v", r)
	}
}

// The tenant's DPoP algorithms are narrower than the global list: a proof
// the native check accepted with ES384 is refused at token and fresh-auth.
func TestRuleNarrowerDPoPAlgorithms(t *testing.T) {
	c := newCluster()
	p := c.node(t, rulesCfg)
	in := tokenInput("c", abi.ConstraintDPoP, "any-api")
	wantAllow(t, p.decide(in))
	in.DPoP.Alg = "ES384"
	wantDeny(t, p.decide(in), 400, "invalid_dpop_proof", ruleDPoPAlg, "dpop.algorithms")
	if !strings.Contains(p.decide(in).Description, "ES384") {
		t.Error("the description does not name the algorithm")
	}
	in.Endpoint = abi.HookFreshAuth
	wantDeny(t, p.decide(in), 403, "access_denied", ruleDPoPAlg, "dpop.algorithms")
	if len(c.recorded(eventRefused)) != 1 {
		t.Errorf("fresh-auth refusal records: %+v", c.records)
	}
	// No list: every algorithm the host accepted passes.
	wantAllow(t, newCluster().node(t, map[string]any{}).decide(in))
}

// The bypass is accepted only inside the declared window [start, end) and
// only for the listed clients; outside, it is refused and recorded.
func TestRuleBypassOnlyInsideDrillWindow(t *testing.T) {
	c := newCluster()
	p := c.node(t, rulesCfg)
	at := func(client, ts string) *abi.DecisionInput {
		in := tokenInput(client, abi.ConstraintBypass, "reports-api")
		in.Time, _ = time.Parse(time.RFC3339, ts)
		return in
	}
	for _, ts := range []string{"2026-12-03T14:00:00Z", "2026-12-03T14:59:59Z"} {
		d := p.decide(at("drill-client", ts))
		wantAllow(t, d)
		if fmt.Sprint(d.Annotations) != "[{drill recap-q4}]" {
			t.Errorf("%s: annotations %v", ts, d.Annotations)
		}
	}
	for _, ts := range []string{"2026-12-03T13:59:59Z", "2026-12-03T15:00:00Z", "2027-01-01T00:00:00Z"} {
		d := p.decide(at("drill-client", ts))
		wantDeny(t, d, 400, "invalid_dpop_proof", ruleBypass, "bypassDrill")
		if !strings.Contains(d.Description, "2026-12-03T14:00:00Z to 2026-12-03T15:00:00Z") {
			t.Errorf("%s: %q does not give the window", ts, d.Description)
		}
	}
	d := p.decide(at("other-client", "2026-12-03T14:30:00Z"))
	wantDeny(t, d, 400, "invalid_dpop_proof", ruleBypass, "bypassDrill")
	// The drill excuses the missing proof, not a missing certificate.
	in := tokenInput("drill-client", abi.ConstraintBypass, "payments-api")
	wantDeny(t, p.decide(in), 400, "invalid_request", ruleRequireMTLS, "audiences[0]")
	// Without a declared drill every bypass is refused.
	wantDeny(t, newCluster().node(t, map[string]any{}).decide(at("drill-client", "2026-12-03T14:30:00Z")), 400, "invalid_dpop_proof", ruleBypass, "bypassDrill")
	// Each refused bypass left a record naming the rule.
	recs := c.recorded(eventRefused)
	if len(recs) != 4 {
		t.Fatalf("%d refusal records, want 4: %+v", len(recs), recs)
	}
	for _, r := range recs {
		if r.Reason != ruleBypass || r.SenderConstraint != abi.ConstraintBypass || r.Outcome != abi.OutcomeFailure {
			t.Errorf("record %+v", r)
		}
	}
}

// The drill at introspect: an unbound token for a require-dpop audience
// passes while the window is open (a drill token in use downstream), and
// is refused after it.
func TestRuleIntrospectUnboundTokenDuringDrill(t *testing.T) {
	p := newCluster().node(t, rulesCfg)
	in := tokenInput("rs-1", abi.ConstraintNone, "reports-api")
	in.Endpoint = abi.HookIntrospect
	wantAllow(t, p.decide(in))
	in.Time = in.Time.Add(time.Hour)
	wantDeny(t, p.decide(in), 403, "access_denied", ruleRequireDPoP, "audiences[2]")
}

// A misconfigured tenant fails closed at the policy hooks and open (an
// error) at the events hook, and the error names every bad key.
func TestMisconfigurationFailsClosed(t *testing.T) {
	c := newCluster()
	p := c.node(t, map[string]any{"audiences": []any{map[string]any{"audience": "a"}}})
	d := p.decide(tokenInput("c", abi.ConstraintDPoP, "a"))
	if d.Allow || d.Status != 503 {
		t.Fatalf("got %+v", d)
	}
	if err := p.event(&abi.Event{Type: abi.EventTokenIssued}); err == nil {
		t.Fatal("events hook: no error")
	}
}

func TestConfigErrorsNameTheirKeys(t *testing.T) {
	for _, tc := range []struct {
		doc  string
		want []string
	}{
		{`{"audiences": [{"audience": "a", "require": ["dpop"]}, {"audience": "a", "require": ["tls"]}]}`,
			[]string{`audiences[1].audience: "a" is already the audience of audiences[0]`, `audiences[1].require[0]: must be "dpop" or "mtls", got "tls"`}},
		{`{"audiences": [{"audience": "has space", "highAssurance": true}, {"audience": "b"}]}`,
			[]string{"audiences[0].audience: must be 1-256 printable ASCII", "audiences[1]: requires nothing"}},
		{`{"audiences": [{"require": ["dpop"], "aud": "x"}]}`, []string{"audiences[0].aud: unknown key", "audiences[0].audience: required"}},
		{`{"dpop": {"algorithms": ["HS256", "ES256", "ES256"]}}`, []string{`dpop.algorithms[0]: must be one of`, `dpop.algorithms[2]: "ES256" twice`}},
		{`{"dpop": {"algorithms": []}}`, []string{"dpop.algorithms: must list at least one"}},
		{`{"bypassDrill": {"start": "2026-12-03T15:00:00Z", "end": "2026-12-03T14:00:00Z"}}`,
			[]string{"bypassDrill.end: must be after bypassDrill.start", "bypassDrill.clients: must list"}},
		{`{"bypassDrill": {"start": "tomorrow", "clients": ["a"]}}`, []string{`bypassDrill.start: must be an RFC 3339 time`, "bypassDrill.end: required"}},
		{`{"bypassDrill": {"start": "2026-12-01T00:00:00Z", "end": "2026-12-30T00:00:00Z", "clients": ["a"]}}`, []string{"bypassDrill.end: a drill lasts at most 168h0m0s"}},
		{`{"alerts": {"window": "10m", "buckets": 7}}`, []string{"alerts.buckets: must divide alerts.window"}},
		{`{"alerts": {"buckets": 20, "nonceMissRatio": 5, "mtlsMismatches": -1, "minRequests": 0}}`,
			[]string{"alerts.buckets: must be from 1 to 12", "alerts.nonceMissRatio: must be a number between 0 and 1", "alerts.mtlsMismatches: must be from 0", "alerts.minRequests: must be from 1"}},
		{`{"alerts": {"nonceMissRatio": 0.1, "nonceMissClearRatio": 0.2}}`, []string{"alerts.nonceMissClearRatio: must be at most alerts.nonceMissRatio (0.1), got 0.2"}},
		{`{"alerts": {"enabled": false, "window": "5m"}}`, []string{"alerts.enabled: is false"}},
		{`{"alerts": {"window": "30s"}}`, []string{"alerts.window: must be a whole number of seconds from 1m"}},
		{`{"audience": []}`, []string{"audience: unknown key (known: audiences, dpop, bypassDrill, alerts)"}},
		{`[1]`, []string{"the document must be a JSON object"}},
	} {
		_, err := parseConfig([]byte(tc.doc))
		if err == nil {
			t.Errorf("%s: accepted", tc.doc)
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s:\n  %v\n  lacks %q", tc.doc, err, w)
			}
		}
	}
	c, err := parseConfig(nil)
	if err != nil || c.alerts == nil || c.alerts.window != 10*time.Minute || c.alerts.buckets != 10 || c.alerts.ratio != 0.05 || math.Abs(c.alerts.clearRatio-0.04) > 1e-12 || c.alerts.mismatches != 0 {
		t.Fatalf("the empty document: %+v %v", c, err)
	}
	if c, err := parseConfig([]byte(`{"alerts": {"enabled": false}}`)); err != nil || c.alerts != nil {
		t.Fatalf("alerts off: %+v %v", c, err)
	}
}

// dpopEvent is a token event of a DPoP request with the native result r.
func dpopEvent(c *cluster, r string) *abi.Event {
	ev := &abi.Event{Type: abi.EventTokenIssued, Tenant: "t", Time: c.clock.Now(), Client: "c", Outcome: abi.OutcomeSuccess,
		SenderConstraint: abi.ConstraintDPoP, DPoP: abi.DPoP{Present: true, Valid: true, Result: r}}
	if r != abi.DPoPOK {
		ev.Type, ev.Outcome, ev.SenderConstraint, ev.DPoP.Valid = abi.EventTokenDenied, abi.OutcomeFailure, abi.ConstraintNone, false
	}
	return ev
}

func mismatchEvent(c *cluster) *abi.Event {
	return &abi.Event{Type: abi.EventMTLSBindingMismatch, Tenant: "t", Time: c.clock.Now(), Client: "c", Outcome: abi.OutcomeFailure,
		Reason: abi.MTLSThumbprintMismatch, SenderConstraint: abi.ConstraintMTLS, MTLS: abi.MTLS{Present: true, Result: abi.MTLSThumbprintMismatch}}
}

func feed(t *testing.T, p *policy, ev *abi.Event) {
	t.Helper()
	if err := p.event(ev); err != nil {
		t.Fatalf("event %s: %v", ev.Type, err)
	}
}

// Nonce misses above 5% of the DPoP requests in 10 minutes alert once per
// crossing: the crossing alerts, staying above does not, falling back to
// 5% re-arms, and the next crossing alerts again.
func TestAlertNonceMissRatioOncePerCrossing(t *testing.T) {
	c := newCluster()
	p := c.node(t, map[string]any{})
	for range 95 {
		feed(t, p, dpopEvent(c, abi.DPoPOK))
	}
	for range 5 {
		feed(t, p, dpopEvent(c, abi.DPoPNonceMiss)) // 5 of 100: exactly 5%, not above
	}
	if n := len(c.recorded(eventAlert)); n != 0 {
		t.Fatalf("%d alerts at 5%%", n)
	}
	feed(t, p, dpopEvent(c, abi.DPoPNonceMiss)) // 6 of 101
	alerts := c.recorded(eventAlert)
	if len(alerts) != 1 || alerts[0].Reason != alertNonceMiss {
		t.Fatalf("alerts %+v", alerts)
	}
	attrs := fmt.Sprint(alerts[0].Attributes)
	for _, w := range []string{"{sec5.window 10m0s}", "{sec5.nonce_misses 6}", "{sec5.dpop_requests 101}", "{sec5.ratio 0.0594}", "{sec5.threshold 0.05}"} {
		if !strings.Contains(attrs, w) {
			t.Errorf("alert attributes %s lack %s", attrs, w)
		}
	}
	for range 5 {
		feed(t, p, dpopEvent(c, abi.DPoPNonceMiss)) // still above: no new alert
	}
	for range 120 {
		feed(t, p, dpopEvent(c, abi.DPoPOK)) // 11 of 226: 4.9%, below the threshold, above the clearing ratio (4%)
	}
	feed(t, p, dpopEvent(c, abi.DPoPNonceMiss)) // 12 of 227: 5.3%, not a new crossing
	if n := len(c.recorded(eventAlert)); n != 1 {
		t.Fatalf("%d alerts: a ratio hovering at the threshold alerted again", n)
	}
	for range 75 {
		feed(t, p, dpopEvent(c, abi.DPoPOK)) // 12 of 302: 3.97%, cleared
	}
	for range 4 {
		feed(t, p, dpopEvent(c, abi.DPoPNonceMiss)) // 16 of 306: 5.2%, a new crossing
	}
	if n := len(c.recorded(eventAlert)); n != 2 {
		t.Fatalf("%d alerts, want 2", n)
	}
	// Bypassed requests are not DPoP requests (the Prometheus rule's
	// authority_dpop_result!="bypass"), nor are requests without DPoP.
	before := c.calls
	feed(t, p, &abi.Event{Type: abi.EventTokenIssued, Time: c.clock.Now(), DPoP: abi.DPoP{Result: abi.DPoPBypass}, SenderConstraint: abi.ConstraintBypass})
	feed(t, p, &abi.Event{Type: abi.EventTokenIssued, Time: c.clock.Now()})
	if c.calls != before {
		t.Error("a bypassed or DPoP-less request reached the counters")
	}
}

// The window slides: misses leave it after ten minutes, and a ratio that
// rises because old successes left (no new miss needed) alerts at the
// next request.
func TestAlertWindowSlides(t *testing.T) {
	c := newCluster()
	p := c.node(t, map[string]any{})
	for range 100 {
		feed(t, p, dpopEvent(c, abi.DPoPOK))
	}
	c.clock.Advance(5 * time.Minute)
	for range 5 {
		feed(t, p, dpopEvent(c, abi.DPoPNonceMiss)) // 5 of 105
	}
	if n := len(c.recorded(eventAlert)); n != 0 {
		t.Fatalf("%d alerts at 4.8%%", n)
	}
	c.clock.Advance(6 * time.Minute) // the 100 successes left the window; 5 misses stay
	feed(t, p, dpopEvent(c, abi.DPoPOK))
	a := c.recorded(eventAlert)
	if len(a) != 1 || !strings.Contains(fmt.Sprint(a[0].Attributes), "{sec5.dpop_requests 6}") {
		t.Fatalf("alerts %+v", a)
	}
	c.clock.Advance(10 * time.Minute)    // everything left: 1 of 1 is above again, but it is the same episode...
	feed(t, p, dpopEvent(c, abi.DPoPOK)) // ...0 of 1: below, re-armed
	feed(t, p, dpopEvent(c, abi.DPoPNonceMiss))
	if n := len(c.recorded(eventAlert)); n != 2 {
		t.Fatalf("%d alerts, want 2", n)
	}
}

// minRequests keeps a quiet tenant's first miss from paging.
func TestAlertMinRequests(t *testing.T) {
	c := newCluster()
	p := c.node(t, map[string]any{"alerts": map[string]any{"minRequests": 20}})
	for range 19 {
		feed(t, p, dpopEvent(c, abi.DPoPNonceMiss))
	}
	if n := len(c.recorded(eventAlert)); n != 0 {
		t.Fatalf("%d alerts under minRequests", n)
	}
	feed(t, p, dpopEvent(c, abi.DPoPOK))
	if n := len(c.recorded(eventAlert)); n != 1 {
		t.Fatalf("%d alerts at minRequests", n)
	}
}

// Any certificate mismatch within 10 minutes alerts, once per crossing;
// after ten quiet minutes the next one alerts again.
func TestAlertMTLSMismatchOncePerCrossing(t *testing.T) {
	c := newCluster()
	p := c.node(t, map[string]any{})
	feed(t, p, mismatchEvent(c))
	feed(t, p, mismatchEvent(c))
	c.clock.Advance(9 * time.Minute)
	feed(t, p, mismatchEvent(c))
	if a := c.recorded(eventAlert); len(a) != 1 || a[0].Reason != alertMismatch || !strings.Contains(fmt.Sprint(a[0].Attributes), "{sec5.mtls_result thumbprint-mismatch}") {
		t.Fatalf("alerts %+v", a)
	}
	c.clock.Advance(20 * time.Minute)
	feed(t, p, mismatchEvent(c))
	if n := len(c.recorded(eventAlert)); n != 2 {
		t.Fatalf("%d alerts, want 2", n)
	}
	// A threshold of 2: the third within the window alerts.
	c2 := newCluster()
	p2 := c2.node(t, map[string]any{"alerts": map[string]any{"mtlsMismatches": 2}})
	for i := range 4 {
		feed(t, p2, mismatchEvent(c2))
		if n, want := len(c2.recorded(eventAlert)), map[bool]int{true: 1, false: 0}[i >= 2]; n != want {
			t.Fatalf("after %d mismatches: %d alerts, want %d", i+1, n, want)
		}
	}
}

// Two nodes on shared counters alert once per crossing between them, and
// an evaluation costs one counter batch once the earlier buckets are
// cached (the first of each bucket reads them).
func TestAlertsSpanNodes(t *testing.T) {
	c := newCluster()
	a, b := c.node(t, map[string]any{}), c.node(t, map[string]any{})
	for i := range 100 {
		feed(t, []*policy{a, b}[i%2], dpopEvent(c, abi.DPoPOK))
	}
	for i := range 10 {
		feed(t, []*policy{a, b}[i%2], dpopEvent(c, abi.DPoPNonceMiss))
	}
	if n := len(c.recorded(eventAlert)); n != 1 {
		t.Fatalf("%d alerts over two nodes, want 1", n)
	}
	for i := range 3 {
		feed(t, []*policy{a, b}[i%2], mismatchEvent(c))
	}
	if n := len(c.recorded(eventAlert)); n != 2 {
		t.Fatalf("%d alerts over two nodes, want 2", n)
	}
	before := c.calls
	feed(t, a, dpopEvent(c, abi.DPoPNonceMiss))
	if c.calls-before != 1 {
		t.Errorf("a steady-state evaluation took %d counter batches, want 1", c.calls-before)
	}
}

// A store failure is the events hook's error (counted by the host); the
// policy hooks never touch the store.
func TestAlertStoreFailure(t *testing.T) {
	c := newCluster()
	p := c.node(t, rulesCfg)
	c.fail = sdk.ErrUnavailable
	if err := p.event(dpopEvent(c, abi.DPoPOK)); !errors.Is(err, sdk.ErrUnavailable) {
		t.Fatalf("got %v", err)
	}
	if err := p.event(mismatchEvent(c)); !errors.Is(err, sdk.ErrUnavailable) {
		t.Fatalf("got %v", err)
	}
	wantAllow(t, p.decide(tokenInput("c", abi.ConstraintMTLS, "payments-api")))
	if c.calls != 2 {
		t.Errorf("%d counter calls, want 2", c.calls)
	}
	c.fail = nil
	feed(t, p, dpopEvent(c, abi.DPoPOK)) // the cache was dropped: a fresh read
}

// Bucket arithmetic: the window sum spans the current bucket and the nine
// before it, and bucket boundaries are absolute (all nodes agree).
func TestAlertBuckets(t *testing.T) {
	al := &alerts{window: 10 * time.Minute, buckets: 10, width: time.Minute}
	t0 := time.Date(2026, 12, 3, 14, 0, 0, 0, time.UTC)
	if al.bucket(t0) != al.bucket(t0.Add(59*time.Second)) || al.bucket(t0.Add(time.Minute)) != al.bucket(t0)+1 {
		t.Fatal("buckets are not whole minutes")
	}
	if al.bucket(time.Unix(-1, 0)) != -1 || al.bucket(time.Unix(-60, 0)) != -1 || al.bucket(time.Unix(-61, 0)) != -2 {
		t.Fatal("negative times floor")
	}
	c := newCluster()
	p := c.node(t, map[string]any{"alerts": map[string]any{"nonceMissRatio": 0.5}})
	feed(t, p, dpopEvent(c, abi.DPoPNonceMiss)) // 1 of 1 at minute 0
	c.clock.Advance(9*time.Minute + 59*time.Second)
	feed(t, p, dpopEvent(c, abi.DPoPOK)) // minute 9: the miss is still in
	if got := p.nonce.cached; got != 1+missUnit {
		t.Fatalf("cached sum %x, want the minute-0 bucket", got)
	}
	c.clock.Advance(time.Second)
	feed(t, p, dpopEvent(c, abi.DPoPOK)) // minute 10: it left
	if got := p.nonce.cached; got != 1 {
		t.Fatalf("cached sum %x, want the minute-9 bucket only", got)
	}
}

// Whatever the request's strings (an algorithm name comes from the proof
// header, audiences and clients from the request), a decision is valid
// under the ABI: a refusal's description stays within RFC 6749 §5.2's
// characters and 256 bytes.
//
//	go test ./plugins/sec5 -run '^$' -fuzz FuzzDecide -fuzztime 30s
func FuzzDecide(f *testing.F) {
	f.Add("token", "drill-client", "bypass", "ES256", "vault-api", int64(0))
	f.Add("fresh-auth", "c", "dpop", "\"\\\x00é", "payments-api", int64(3600))
	f.Add("introspect", "", "none", "", "reports-api", int64(-7200))
	p := newCluster().node(f, rulesCfg)
	// The host refuses an invalid record (HostInvalid) and SEC5 carries on;
	// the inputs here are wilder than any the host sends.
	p.host.logError = nil
	p.host.audit = func(ev *abi.Event) error { return abi.ValidateEvent(ev) }
	f.Fuzz(func(t *testing.T, endpoint, client, constraint, alg, aud string, offset int64) {
		in := tokenInput(client, constraint, aud)
		in.Endpoint, in.DPoP.Alg = endpoint, alg
		in.Time = in.Time.Add(time.Duration(offset) * time.Second)
		d := p.decide(in)
		if err := d.Validate(); err != nil {
			t.Fatalf("%+v: %v", d, err)
		}
	})
}
