package app_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// The Grafana dashboard and the Prometheus alert rules under deploy/ must
// only name metrics the server really exports: a renamed metric would
// otherwise leave an empty panel or, worse, an alert that can never fire.

const (
	dashboardFile = "deploy/grafana/authority-dashboard.json"
	alertsFile    = "deploy/prometheus/authority-alerts.yaml"
	alertTestGlob = "deploy/prometheus/tests/*.yaml"
	pluginGroup   = "authority-plugins"
	pluginPrefix  = "authority_plugin_"
)

// pendingPluginMetrics are the plugin host's metric families (name → type).
// The dashboard and the authority-plugins rule group use them before the
// plugin host exports them: a reference to one of these is tolerated while
// the scrape lacks it (the test logs it); any other missing metric fails.
var pendingPluginMetrics = map[string]string{
	"authority_plugin_calls_total":               "counter",
	"authority_plugin_call_duration_seconds":     "histogram",
	"authority_plugin_failures_total":            "counter",
	"authority_plugin_circuit_open":              "gauge",
	"authority_plugin_event_queue_dropped_total": "counter",
}

var (
	promStringRE  = regexp.MustCompile("\"(?:[^\"\\\\]|\\\\.)*\"|'(?:[^'\\\\]|\\\\.)*'|`[^`]*`")
	promMatcherRE = regexp.MustCompile(`\{[^{}]*\}`)
	promGroupRE   = regexp.MustCompile(`\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)`)
	labelValuesRE = regexp.MustCompile(`\blabel_values\s*\(\s*([^,()]+?)\s*,[^()]*\)`)
	metricRefRE   = regexp.MustCompile(`(?:^|[^A-Za-z0-9_:.$])(authority_[A-Za-z0-9_:]*)`)
)

// metricRefs returns the metric names an expression (PromQL or a Grafana
// variable query) refers to. Label names that look like metric names
// (authority_dpop_result) are not metric references: string literals,
// label matchers, grouping clauses and label_values' label argument are
// removed before matching.
func metricRefs(expr string) []string {
	s := promStringRE.ReplaceAllString(expr, `""`)
	s = promMatcherRE.ReplaceAllString(s, " ")
	s = promGroupRE.ReplaceAllString(s, " ")
	s = labelValuesRE.ReplaceAllString(s, "($1)")
	seen := map[string]bool{}
	var out []string
	for _, m := range metricRefRE.FindAllStringSubmatch(s, -1) {
		if !seen[m[1]] {
			seen[m[1]] = true
			out = append(out, m[1])
		}
	}
	return out
}

func TestMetricRefs(t *testing.T) {
	for expr, want := range map[string]string{
		`sum by (tenant, authority_dpop_result) (rate(authority_dpop_proofs_total{authority_dpop_result!="bypass",tenant=~"$tenant"}[5m]))`: "authority_dpop_proofs_total",
		`histogram_quantile(0.99, sum by (route, le) (rate(authority_http_request_duration_seconds_bucket[$__rate_interval])))`:             "authority_http_request_duration_seconds_bucket",
		`sum(rate(authority_store_operation_duration_seconds_sum[5m])) / sum(rate(authority_store_operation_duration_seconds_count[5m]))`:   "authority_store_operation_duration_seconds_sum authority_store_operation_duration_seconds_count",
		`label_values(authority_tokens_issued_total, tenant)`:                                                                               "authority_tokens_issued_total",
		`label_values(authority_dpop_proofs_total{tenant="x"}, authority_dpop_result)`:                                                      "authority_dpop_proofs_total",
		`a / on (authority_dpop_result) group_left (authority_x) authority_y_total`:                                                         "authority_y_total",
		`{__name__="authority_not_a_ref"} or xauthority_nope or $authority_var`:                                                             "",
	} {
		if got := strings.Join(metricRefs(expr), " "); got != want {
			t.Errorf("metricRefs(%q) = %q, want %q", expr, got, want)
		}
	}
}

// deployRoot is the module root (the tests run in host/app).
func deployRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		t.Fatalf("module root not found from %s: %v", root, err)
	}
	return root
}

// grafanaPanel is the part of a dashboard panel the test reads; rows may
// nest panels.
type grafanaPanel struct {
	ID         int            `json:"id"`
	Type       string         `json:"type"`
	Title      string         `json:"title"`
	Datasource map[string]any `json:"datasource"`
	Targets    []struct {
		Expr       string         `json:"expr"`
		RefID      string         `json:"refId"`
		Datasource map[string]any `json:"datasource"`
	} `json:"targets"`
	Panels []grafanaPanel `json:"panels"`
}

type grafanaDashboard struct {
	UID           string         `json:"uid"`
	Title         string         `json:"title"`
	SchemaVersion int            `json:"schemaVersion"`
	Panels        []grafanaPanel `json:"panels"`
	Templating    struct {
		List []struct {
			Name       string          `json:"name"`
			Type       string          `json:"type"`
			Query      json.RawMessage `json:"query"`
			Definition string          `json:"definition"`
		} `json:"list"`
	} `json:"templating"`
}

// exprRef is one expression of the dashboard or the rules and where it is.
type exprRef struct {
	where, expr string
}

func loadDashboard(t *testing.T) (grafanaDashboard, []exprRef) {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(deployRoot(t), dashboardFile))
	if err != nil {
		t.Fatal(err)
	}
	var d grafanaDashboard
	if err := json.Unmarshal(raw, &d); err != nil {
		t.Fatalf("%s: %v", dashboardFile, err)
	}
	var exprs []exprRef
	var walk func([]grafanaPanel)
	walk = func(ps []grafanaPanel) {
		for _, p := range ps {
			for _, tg := range p.Targets {
				exprs = append(exprs, exprRef{"panel " + p.Title + " (" + tg.RefID + ")", tg.Expr})
			}
			walk(p.Panels)
		}
	}
	walk(d.Panels)
	for _, v := range d.Templating.List {
		if v.Type != "query" {
			continue
		}
		// query is a string in old dashboards, {"query": "..."} in new ones.
		var q string
		if json.Unmarshal(v.Query, &q) != nil {
			var obj struct {
				Query string `json:"query"`
			}
			_ = json.Unmarshal(v.Query, &obj)
			q = obj.Query
		}
		exprs = append(exprs, exprRef{"variable " + v.Name, q})
		if v.Definition != "" && v.Definition != q {
			exprs = append(exprs, exprRef{"variable " + v.Name + " definition", v.Definition})
		}
	}
	return d, exprs
}

type alertRule struct {
	Alert       string            `yaml:"alert"`
	Record      string            `yaml:"record"`
	Expr        string            `yaml:"expr"`
	For         string            `yaml:"for"`
	Labels      map[string]string `yaml:"labels"`
	Annotations map[string]string `yaml:"annotations"`
}

type ruleFile struct {
	Groups []struct {
		Name  string      `yaml:"name"`
		Rules []alertRule `yaml:"rules"`
	} `yaml:"groups"`
}

func loadRules(t *testing.T) ruleFile {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(deployRoot(t), alertsFile))
	if err != nil {
		t.Fatal(err)
	}
	var rf ruleFile
	if err := yaml.Unmarshal(raw, &rf); err != nil {
		t.Fatalf("%s: %v", alertsFile, err)
	}
	if len(rf.Groups) == 0 {
		t.Fatalf("%s: no rule groups", alertsFile)
	}
	return rf
}

// scrapeFamilies parses a Prometheus text scrape: the sample names present
// and the declared type of each family.
func scrapeFamilies(scrape string) (samples map[string]bool, types map[string]string) {
	samples, types = map[string]bool{}, map[string]string{}
	for _, line := range strings.Split(scrape, "\n") {
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		if strings.HasPrefix(line, "#") {
			if f := strings.Fields(line); len(f) >= 4 && f[1] == "TYPE" {
				types[f[2]] = f[3]
			}
			continue
		}
		if i := strings.IndexAny(line, "{ "); i > 0 {
			samples[line[:i]] = true
		}
	}
	return samples, types
}

// pendingPlugin reports whether name is (a series of) a pending plugin
// metric family.
func pendingPlugin(name string) (family string, ok bool) {
	if !strings.HasPrefix(name, pluginPrefix) {
		return "", false
	}
	if _, ok := pendingPluginMetrics[name]; ok {
		return name, true
	}
	for _, suf := range []string{"_bucket", "_sum", "_count"} {
		base := strings.TrimSuffix(name, suf)
		if base != name && pendingPluginMetrics[base] == "histogram" {
			return base, true
		}
	}
	return "", false
}

// scriptedScrape starts a server, exercises every seed counter's code path
// (bearer and DPoP tokens, a nonce miss, a denial, an introspection, a
// failing store) and returns its scrape.
func scriptedScrape(t *testing.T) string {
	t.Helper()
	e := newEnv(t, envOptions{})
	e.mustToken("demo-bearer")
	e.do("/token", reqOpts{basic: [2]string{"demo-bearer", "wrong"}, form: url.Values{"grant_type": {"client_credentials"}}})
	if r := e.token("demo-dpop", nil); r.str("error") != "use_dpop_nonce" {
		t.Fatalf("DPoP without proof: %d %s", r.status, r.raw)
	}
	tok, _ := e.boundToken(newDPoPKey(t))
	e.introspect("demo-dpop", tok)
	// authority_store_errors_total has a series only once a store call has
	// failed: close the token store and let /readyz ping it.
	if err := e.a.Store.Close(); err != nil {
		t.Fatal(err)
	}
	if r := e.do("/readyz", reqOpts{method: http.MethodGet}); r.status == http.StatusOK {
		t.Fatalf("/readyz with a closed store: %d %s", r.status, r.raw)
	}
	return e.metrics()
}

// checkRefs fails for every referenced metric missing from the scrape,
// except pending plugin metrics, which it returns.
func checkRefs(t *testing.T, what string, exprs []exprRef, samples map[string]bool, types map[string]string) (pending map[string][]string) {
	t.Helper()
	pending = map[string][]string{}
	for _, x := range exprs {
		refs := metricRefs(x.expr)
		if len(refs) == 0 {
			t.Errorf("%s %s: no authority_* metric in %q", what, x.where, x.expr)
		}
		for _, n := range refs {
			if samples[n] {
				continue
			}
			if typ := types[n]; typ == "histogram" || typ == "summary" {
				t.Errorf("%s %s: %s is a %s: query %s_bucket, %s_sum or %s_count", what, x.where, n, typ, n, n, n)
				continue
			}
			if fam, ok := pendingPlugin(n); ok && types[fam] == "" {
				pending[fam] = append(pending[fam], x.where)
				continue
			}
			t.Errorf("%s %s: %s is not in the scrape of a running server (expr %q)", what, x.where, n, x.expr)
		}
	}
	return pending
}

func logPending(t *testing.T, what string, pending map[string][]string) {
	t.Helper()
	if len(pending) == 0 {
		return
	}
	names := make([]string, 0, len(pending))
	for n := range pending {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		t.Logf("%s: plugin metric %s is not exported yet (used by %d queries: %s)", what, n, len(pending[n]), strings.Join(pending[n], "; "))
	}
	t.Logf("%s: %d plugin metrics not wired yet: %s", what, len(names), strings.Join(names, ", "))
}

// Every metric the dashboard and the alert rules query is in the scrape of
// a running server, or is a plugin metric the plugin host has yet to export.
func TestDashboardAndAlertsUseExportedMetrics(t *testing.T) {
	scrape := scriptedScrape(t)
	samples, types := scrapeFamilies(scrape)
	if !samples["authority_store_errors_total"] {
		t.Fatalf("scripted sequence did not produce authority_store_errors_total:\n%s", scrape)
	}

	_, dashExprs := loadDashboard(t)
	logPending(t, "dashboard", checkRefs(t, "dashboard", dashExprs, samples, types))

	var ruleExprs []exprRef
	for _, g := range loadRules(t).Groups {
		for _, r := range g.Rules {
			ruleExprs = append(ruleExprs, exprRef{"group " + g.Name + " rule " + r.Alert + r.Record, r.Expr})
		}
	}
	logPending(t, "alerts", checkRefs(t, "alerts", ruleExprs, samples, types))
	if t.Failed() {
		t.Log(scrape)
	}
}

// The dashboard's shape: one Prometheus data source variable used by every
// query, the tenant variable, the panels the rollout plan asks for, and the
// nonce miss ratio panel showing exactly the alert's expression.
func TestDashboardShape(t *testing.T) {
	d, _ := loadDashboard(t)
	if d.UID == "" || d.Title == "" || d.SchemaVersion < 36 {
		t.Errorf("uid %q, title %q, schemaVersion %d", d.UID, d.Title, d.SchemaVersion)
	}
	vars := map[string]string{}
	for _, v := range d.Templating.List {
		vars[v.Name] = v.Type
	}
	if vars["DS_PROMETHEUS"] != "datasource" {
		t.Errorf("no DS_PROMETHEUS data source variable: %v", vars)
	}
	if vars["tenant"] != "query" {
		t.Errorf("no tenant query variable: %v", vars)
	}
	_, exprs := loadDashboard(t)
	found := false
	for _, x := range exprs {
		if x.where == "variable tenant" && strings.ReplaceAll(x.expr, " ", "") == "label_values(authority_tokens_issued_total,tenant)" {
			found = true
		}
	}
	if !found {
		t.Errorf("tenant variable must be label_values(authority_tokens_issued_total, tenant)")
	}

	var nonceAlert string
	for _, g := range loadRules(t).Groups {
		for _, r := range g.Rules {
			if r.Alert == "AuthorityDPoPNonceMissRatioHigh" {
				nonceAlert = r.Expr
			}
		}
	}
	ratio := regexp.MustCompile(`\s*>\s*0\.05\s*$`).ReplaceAllString(nonceAlert, "")
	if ratio == nonceAlert {
		t.Fatalf("nonce miss alert does not end in > 0.05: %q", nonceAlert)
	}
	norm := func(s string) string { return strings.Join(strings.Fields(s), "") }

	titles := map[string]bool{}
	sawRatio := false
	var walk func([]grafanaPanel)
	walk = func(ps []grafanaPanel) {
		for _, p := range ps {
			titles[p.Title] = true
			if p.Type != "row" {
				if uid, _ := p.Datasource["uid"].(string); uid != "${DS_PROMETHEUS}" {
					t.Errorf("panel %q: datasource %v, want uid ${DS_PROMETHEUS}", p.Title, p.Datasource)
				}
				if len(p.Targets) == 0 {
					t.Errorf("panel %q has no query", p.Title)
				}
				for _, tg := range p.Targets {
					if uid, _ := tg.Datasource["uid"].(string); uid != "${DS_PROMETHEUS}" {
						t.Errorf("panel %q target %s: datasource %v", p.Title, tg.RefID, tg.Datasource)
					}
					if norm(tg.Expr) == norm(ratio) {
						sawRatio = true
					}
				}
			}
			walk(p.Panels)
		}
	}
	walk(d.Panels)
	if !sawRatio {
		t.Errorf("no panel shows the nonce miss alert's ratio %q", ratio)
	}

	// Every family of the plan is on the dashboard.
	used := map[string]bool{}
	for _, x := range exprs {
		for _, n := range metricRefs(x.expr) {
			for _, suf := range []string{"_bucket", "_sum", "_count"} {
				n = strings.TrimSuffix(n, suf)
			}
			used[n] = true
		}
	}
	for _, want := range []string{
		"authority_tokens_issued_total", "authority_tokens_denied_total", "authority_dpop_proofs_total",
		"authority_dpop_nonce_miss_total", "authority_mtls_mismatch_total", "authority_mtls_untrusted_cert_header_total",
		"authority_http_request_duration_seconds", "authority_store_operation_duration_seconds", "authority_store_errors_total",
		"authority_plugin_calls_total", "authority_plugin_call_duration_seconds", "authority_plugin_failures_total",
		"authority_plugin_circuit_open", "authority_plugin_event_queue_dropped_total",
	} {
		if !used[want] {
			t.Errorf("dashboard does not chart %s", want)
		}
	}
}

// The rule file's conventions: severity, team and the three annotations on
// every alert; the seed's pages; plugin metrics only in their own group.
func TestAlertRulesShape(t *testing.T) {
	rf := loadRules(t)
	alerts := map[string]alertRule{}
	for _, g := range rf.Groups {
		for _, r := range g.Rules {
			if r.Alert == "" {
				continue
			}
			alerts[r.Alert] = r
			if s := r.Labels["severity"]; s != "page" && s != "warning" {
				t.Errorf("%s: severity %q", r.Alert, s)
			}
			if r.Labels["team"] != "devops" {
				t.Errorf("%s: team %q", r.Alert, r.Labels["team"])
			}
			for _, a := range []string{"summary", "description", "runbook_url"} {
				if strings.TrimSpace(r.Annotations[a]) == "" {
					t.Errorf("%s: no %s annotation", r.Alert, a)
				}
			}
			plugin := false
			for _, n := range metricRefs(r.Expr) {
				if strings.HasPrefix(n, pluginPrefix) {
					plugin = true
				}
			}
			if plugin != (g.Name == pluginGroup) {
				t.Errorf("%s in group %s: plugin metrics belong in group %s, and only there", r.Alert, g.Name, pluginGroup)
			}
		}
	}
	for name, severity := range map[string]string{
		"AuthorityDPoPNonceMissRatioHigh":    "page",
		"AuthorityMTLSMismatch":              "page",
		"AuthorityDPoPBypassInUse":           "warning",
		"AuthorityUntrustedClientCertHeader": "warning",
		"AuthorityStoreErrors":               "page",
		"AuthorityStoreLatencyHigh":          "warning",
		"AuthorityPluginFailureRatioHigh":    "page",
		"AuthorityPluginCircuitOpen":         "page",
	} {
		r, ok := alerts[name]
		if !ok {
			t.Errorf("alert %s missing", name)
			continue
		}
		if r.Labels["severity"] != severity {
			t.Errorf("%s: severity %q, want %q", name, r.Labels["severity"], severity)
		}
	}
	for _, name := range []string{"AuthorityDPoPNonceMissRatioHigh", "AuthorityMTLSMismatch", "AuthorityDPoPBypassInUse"} {
		if u := alerts[name].Annotations["runbook_url"]; !strings.HasPrefix(u, "docs/security/dpop-mtls-rollout.md#") {
			t.Errorf("%s: runbook_url %q, want docs/security/dpop-mtls-rollout.md#...", name, u)
		}
	}
	if !strings.Contains(alerts["AuthorityDPoPNonceMissRatioHigh"].Annotations["denominator"], "bypass") {
		t.Error("the nonce miss ratio's denominator choice is not documented in its denominator annotation")
	}
	checkRunbooks(t, alerts)
}

var headingRE = regexp.MustCompile(`(?m)^#{1,6}\s+(.+?)\s*#*\s*$`)

// checkRunbooks checks the anchors of runbook_url against the runbooks that
// exist (a runbook not written yet is only logged).
func checkRunbooks(t *testing.T, alerts map[string]alertRule) {
	t.Helper()
	root := deployRoot(t)
	slug := func(h string) string {
		h = strings.ToLower(strings.TrimSpace(h))
		var b strings.Builder
		for _, r := range h {
			switch {
			case r >= 'a' && r <= 'z', r >= '0' && r <= '9', r == '-', r == '_':
				b.WriteRune(r)
			case r == ' ':
				b.WriteRune('-')
			}
		}
		return b.String()
	}
	missing := map[string]bool{}
	for name, r := range alerts {
		file, anchor, _ := strings.Cut(r.Annotations["runbook_url"], "#")
		raw, err := os.ReadFile(filepath.Join(root, file))
		if err != nil {
			missing[file] = true
			continue
		}
		ok := anchor == "" || bytes.Contains(raw, []byte(`id="`+anchor+`"`)) || bytes.Contains(raw, []byte(`name="`+anchor+`"`))
		for _, m := range headingRE.FindAllStringSubmatch(string(raw), -1) {
			if slug(m[1]) == anchor {
				ok = true
			}
		}
		if !ok {
			t.Errorf("%s: runbook_url %s: %s has no heading or anchor %q", name, r.Annotations["runbook_url"], file, anchor)
		}
	}
	for f := range missing {
		t.Logf("runbook %s does not exist yet: its anchors are not checked", f)
	}
}

// The alert rules' unit tests (deploy/prometheus/tests) under promtool.
func TestAlertRulesPromtool(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Skip("promtool not on PATH: alert rule unit tests skipped (apt-get install prometheus provides it; make test runs them when present and .ci/run installs it)")
	}
	root := deployRoot(t)
	tests, err := filepath.Glob(filepath.Join(root, alertTestGlob))
	if err != nil || len(tests) == 0 {
		t.Fatalf("no rule tests match %s: %v", alertTestGlob, err)
	}
	run := func(args ...string) {
		t.Helper()
		cmd := exec.Command(promtool, args...)
		cmd.Dir = root
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		t.Logf("promtool %s:\n%s", strings.Join(args, " "), out)
	}
	run("check", "rules", alertsFile)
	run(append([]string{"test", "rules"}, tests...)...)
}
