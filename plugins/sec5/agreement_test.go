package main

import (
	"context"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"stellaops.org/authority/abi"
)

// The in-band alerts and the per-tenant Prometheus rules of
// deploy/prometheus agree: the same traffic, fed to SEC5 as events and to
// promtool as the counters the host exports, raises the same alerts.
// SEC5's window is 9 to 10 one-minute buckets and Prometheus's a 10-minute
// increase() over one-minute scrapes, so the two may differ within a
// minute or two of a crossing: the test compares them two minutes away
// from each crossing SEC5 reports, both ways.

const rulesFile = "../../deploy/prometheus/authority-alerts.yaml"

// minute is one minute of a tenant's traffic at /token and of its
// certificate mismatches.
type minute struct {
	ok, misses, bypass, mismatches int
}

// phases expands (minutes, traffic) pairs into a timeline.
func phases(ps ...any) []minute {
	var out []minute
	for i := 0; i < len(ps); i += 2 {
		for range ps[i].(int) {
			out = append(out, ps[i+1].(minute))
		}
	}
	return out
}

// crossing is an alert SEC5 raised (or a re-arm it made) at a time.
type crossing struct {
	tenant, reason string
	at             time.Time
}

func TestAlertsAgreeWithPrometheusRules(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Skip("promtool not on PATH (apt-get install prometheus; .ci/run installs it): agreement with the Prometheus rules not checked")
	}
	const total = 70
	traffic := map[string][]minute{
		// 2% misses, then 20% (pages), then 1% (clears), then 20% again
		// (pages again): two crossings and a re-arm. Bypassed requests
		// count in neither.
		"alpha": phases(15, minute{ok: 98, misses: 2, bypass: 50}, 15, minute{ok: 80, misses: 20},
			20, minute{ok: 99, misses: 1}, 20, minute{ok: 80, misses: 20, bypass: 50}),
		// 1% misses throughout; mismatches at minutes 10 and 12 (one
		// episode) and 40 (another).
		"beta": phases(10, minute{ok: 99, misses: 1}, 1, minute{ok: 99, misses: 1, mismatches: 1},
			1, minute{ok: 99, misses: 1}, 1, minute{ok: 99, misses: 1, mismatches: 2},
			27, minute{ok: 99, misses: 1}, 1, minute{ok: 99, misses: 1, mismatches: 1}, 29, minute{ok: 99, misses: 1}),
	}
	start := time.Unix(0, 0).UTC() // promtool's series start at the epoch
	var alerts, rearms []crossing
	for _, tenant := range []string{"alpha", "beta"} {
		c := newCluster()
		c.clock.Advance(start.Sub(c.clock.Now()))
		// Two nodes share the tenant's counters and take turns.
		nodes := []*policy{c.node(t, map[string]any{}), c.node(t, map[string]any{})}
		seen := 0
		var gen int64
		for m, tr := range traffic[tenant] {
			var evs []*abi.Event
			for range tr.ok {
				evs = append(evs, dpopEvent(c, abi.DPoPOK))
			}
			for range tr.bypass {
				evs = append(evs, &abi.Event{Type: abi.EventTokenIssued, DPoP: abi.DPoP{Result: abi.DPoPBypass}, SenderConstraint: abi.ConstraintBypass})
			}
			for range tr.mismatches {
				evs = append(evs, mismatchEvent(c))
			}
			// Misses spread evenly over the minute among the successes (a
			// miss as a tenant's very first request would be 1 of 1, above
			// any threshold for SEC5, which sees every request, while
			// Prometheus sees a minute's worth at once).
			for i := range tr.misses {
				at := ((2*i+1)*len(evs))/(2*tr.misses) + i
				evs = slices.Insert(evs, min(at, len(evs)), dpopEvent(c, abi.DPoPNonceMiss))
			}
			step := time.Minute / time.Duration(len(evs)+1)
			for i, ev := range evs {
				ev.Time = start.Add(time.Duration(m)*time.Minute + time.Duration(i+1)*step)
				c.clock.Advance(ev.Time.Sub(c.clock.Now()))
				feed(t, nodes[i%2], ev)
				for _, r := range c.records[seen:] {
					alerts = append(alerts, crossing{tenant, r.Reason, ev.Time})
				}
				seen = len(c.records)
				if g, _, _ := c.counters.Incr(context.Background(), scope, "ng", 0, 0); g != gen {
					gen = g
					rearms = append(rearms, crossing{tenant, alertNonceMiss, ev.Time})
				}
			}
		}
	}
	t.Logf("SEC5 alerts %s, re-arms %s", fmtCrossings(alerts, start), fmtCrossings(rearms, start))
	count := func(cs []crossing, tenant, reason string) int {
		n := 0
		for _, c := range cs {
			if c.tenant == tenant && c.reason == reason {
				n++
			}
		}
		return n
	}
	for _, w := range []struct {
		tenant, reason string
		n              int
	}{{"alpha", alertNonceMiss, 2}, {"alpha", alertMismatch, 0}, {"beta", alertNonceMiss, 0}, {"beta", alertMismatch, 2}} {
		if got := count(alerts, w.tenant, w.reason); got != w.n {
			t.Errorf("%s: %d %s alerts, want %d", w.tenant, got, w.reason, w.n)
		}
	}
	if got := count(rearms, "alpha", alertNonceMiss); got != 1 {
		t.Errorf("alpha: %d re-arms, want 1", got)
	}

	// Expected Prometheus states, at whole minutes two minutes either side
	// of each SEC5 crossing: not firing before an alert, firing after it;
	// firing before a re-arm, not after it. A mismatch episode ends a
	// window after its last mismatch (the traffic says when).
	rules := ruleExprs(t)
	want := map[string]map[int]map[string]bool{} // alert -> minute -> tenant -> firing
	expect := func(alert string, m int, tenant string, firing bool) {
		if m < 1 || m > total {
			return
		}
		if want[alert] == nil {
			want[alert] = map[int]map[string]bool{}
		}
		if want[alert][m] == nil {
			want[alert][m] = map[string]bool{}
		}
		if prev, ok := want[alert][m][tenant]; ok && prev != firing {
			t.Fatalf("%s at %dm for %s: contradictory expectations (a crossing within 4 minutes of another)", alert, m, tenant)
		}
		want[alert][m][tenant] = firing
	}
	promAlert := map[string]string{alertNonceMiss: "AuthorityTenantDPoPNonceMissRatioHigh", alertMismatch: "AuthorityTenantMTLSMismatch"}
	minuteOf := func(ts time.Time) int { return int(ts.Sub(start) / time.Minute) }
	for _, a := range alerts {
		m := minuteOf(a.at)
		expect(promAlert[a.reason], m-2, a.tenant, false)
		expect(promAlert[a.reason], m+3, a.tenant, true)
	}
	for _, r := range rearms {
		m := minuteOf(r.at)
		expect(promAlert[r.reason], m-2, r.tenant, true)
		expect(promAlert[r.reason], m+3, r.tenant, false)
	}
	for tenant, tl := range traffic {
		for m, tr := range tl {
			if tr.mismatches > 0 && (m+1 >= len(tl) || !slices.ContainsFunc(tl[m+1:min(len(tl), m+11)], func(x minute) bool { return x.mismatches > 0 })) {
				expect(promAlert[alertMismatch], m+8, tenant, true)
				expect(promAlert[alertMismatch], m+13, tenant, false)
			}
		}
	}
	// Quiet alerts stay quiet: the nonce alert never fires for beta, the
	// mismatch alert never for alpha.
	for m := 5; m <= total; m += 5 {
		expect(promAlert[alertNonceMiss], m, "beta", false)
		expect(promAlert[alertMismatch], m, "alpha", false)
	}

	// The same traffic as the host's counters, scraped every minute.
	series := map[string][]int{}
	for tenant, tl := range traffic {
		cum := map[string]int{}
		for m := 0; m <= total; m++ {
			if m > 0 && m-1 < len(tl) {
				tr := tl[m-1]
				cum["valid"] += tr.ok
				cum["nonce_miss"] += tr.misses
				cum["bypass"] += tr.bypass
				cum["mismatch"] += tr.mismatches
			}
			for _, r := range []string{"valid", "nonce_miss", "bypass"} {
				k := fmt.Sprintf(`authority_dpop_proofs_total{tenant=%q,authority_dpop_result=%q}`, tenant, r)
				series[k] = append(series[k], cum[r])
			}
			k := fmt.Sprintf(`authority_mtls_mismatch_total{tenant=%q,reason="thumbprint-mismatch"}`, tenant)
			series[k] = append(series[k], cum["mismatch"])
		}
	}
	var b strings.Builder
	abs, err := filepath.Abs(rulesFile)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(&b, "rule_files: [%q]\nevaluation_interval: 1m\ntests:\n  - interval: 1m\n    input_series:\n", abs)
	for _, k := range slices.Sorted(maps.Keys(series)) {
		vals := make([]string, len(series[k]))
		for i, v := range series[k] {
			vals[i] = fmt.Sprint(v)
		}
		fmt.Fprintf(&b, "      - series: '%s'\n        values: '%s'\n", k, strings.Join(vals, " "))
	}
	b.WriteString("    promql_expr_test:\n")
	checks := 0
	for _, alert := range slices.Sorted(maps.Keys(want)) {
		expr, ok := rules[alert]
		if !ok {
			t.Fatalf("%s: no such rule in %s", alert, rulesFile)
		}
		for _, m := range slices.Sorted(maps.Keys(want[alert])) {
			// count by (tenant) of the rule's expression: 1 for each tenant
			// it fires for. Only the tenants with an expectation are kept.
			var tenants []string
			for tenant := range want[alert][m] {
				tenants = append(tenants, tenant)
			}
			slices.Sort(tenants)
			fmt.Fprintf(&b, "      - expr: 'count by (tenant) ((%s) and on (tenant) (%s))'\n        eval_time: %dm\n        exp_samples:\n",
				oneLine(expr), tenantSelector(tenants), m)
			for _, tenant := range tenants {
				if want[alert][m][tenant] {
					fmt.Fprintf(&b, "          - labels: '{tenant=%q}'\n            value: 1\n", tenant)
				}
				checks++
			}
		}
	}
	dir := t.TempDir()
	file := filepath.Join(dir, "agreement-test.yaml")
	if err := os.WriteFile(file, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(promtool, "test", "rules", file).CombinedOutput()
	if err != nil {
		t.Fatalf("promtool disagrees with SEC5: %v\n%s\n--- %s\n%s", err, out, file, b.String())
	}
	t.Logf("%d expectations agree (promtool: %s)", checks, strings.TrimSpace(string(out)))
	if checks < 20 {
		t.Fatalf("only %d expectations: the traffic does not exercise the rules", checks)
	}
}

func fmtCrossings(cs []crossing, start time.Time) string {
	parts := make([]string, len(cs))
	for i, c := range cs {
		parts[i] = fmt.Sprintf("%s %s at %s", c.tenant, c.reason, c.at.Sub(start).Round(time.Second))
	}
	return "[" + strings.Join(parts, ", ") + "]"
}

// tenantSelector is a vector with a tenant label per tenant, for "and on
// (tenant)": only those tenants' results are compared.
func tenantSelector(tenants []string) string {
	parts := make([]string, len(tenants))
	for i, t := range tenants {
		parts[i] = fmt.Sprintf(`label_replace(vector(1), "tenant", "%s", "", "")`, t)
	}
	return strings.Join(parts, " or ")
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

// ruleExprs reads the alert rules' expressions by alert name.
func ruleExprs(t *testing.T) map[string]string {
	t.Helper()
	raw, err := os.ReadFile(rulesFile)
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Groups []struct {
			Rules []struct {
				Alert string `yaml:"alert"`
				Expr  string `yaml:"expr"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	if err := yaml.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, g := range doc.Groups {
		for _, r := range g.Rules {
			out[r.Alert] = r.Expr
		}
	}
	return out
}
