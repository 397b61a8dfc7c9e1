package plugin_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"stellaops.org/authority/abi"
	"stellaops.org/authority/host/plugin"
	"stellaops.org/authority/sdk"
	"stellaops.org/authority/sdk/sdktest"
)

func digest(t testing.TB, path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return plugin.Digest(b)
}

func spec(t testing.TB, guest string, hooks ...string) plugin.Spec {
	if len(hooks) == 0 {
		hooks = []string{abi.HookToken}
	}
	return plugin.Spec{Name: guest, Path: guests[guest], SHA256: digest(t, guests[guest]), Hooks: hooks, Grants: []string{plugin.GrantConfig}}
}

func newManager(t testing.TB, specs map[string][]plugin.Spec, deps plugin.Deps) *plugin.Manager {
	t.Helper()
	m, err := plugin.NewManager(context.Background(), cached(plugin.RuntimeOptions{}), specs, deps)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Close(context.Background()) })
	return m
}

func input(client string) *abi.DecisionInput {
	return &abi.DecisionInput{Endpoint: abi.HookToken, Client: client, Grant: "client_credentials",
		Scopes: []string{"read"}, Audiences: []string{"https://api.example.com"}}
}

func TestDecideWithoutPluginsAllows(t *testing.T) {
	m := newManager(t, map[string][]plugin.Spec{"a": {spec(t, "noop")}}, plugin.Deps{})
	for _, c := range []struct{ tenant, hook string }{{"unknown", abi.HookToken}, {"a", abi.HookIntrospect}} {
		in := input("x")
		in.Endpoint = c.hook
		d, err := m.Decide(context.Background(), c.tenant, in)
		if err != nil || !d.Allow {
			t.Fatalf("%+v: %+v, %v", c, d, err)
		}
	}
}

func TestRealisticRules(t *testing.T) {
	s := spec(t, "realistic")
	s.Config = map[string]any{"deniedClients": []any{"evil"}, "mtlsAudiences": []any{"https://bank.example.com"}, "requiredScopes": []any{"read"}}
	m := newManager(t, map[string][]plugin.Spec{"a": {s}}, plugin.Deps{})
	cases := []struct {
		name   string
		mutate func(*abi.DecisionInput)
		status int
	}{
		{"allowed", func(*abi.DecisionInput) {}, 0},
		{"denied client", func(in *abi.DecisionInput) { in.Client = "evil" }, 403},
		{"mtls audience without certificate", func(in *abi.DecisionInput) { in.Audiences = []string{"https://bank.example.com"} }, 401},
		{"mtls audience with certificate", func(in *abi.DecisionInput) {
			in.Audiences = []string{"https://bank.example.com"}
			in.MTLS = abi.MTLS{Present: true, Result: "ok", Thumbprint: "x"}
		}, 0},
		{"missing scope", func(in *abi.DecisionInput) { in.Scopes = nil }, 403},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			in := input("good")
			c.mutate(in)
			d, err := m.Decide(context.Background(), "a", in)
			if err != nil {
				t.Fatal(err)
			}
			if c.status == 0 {
				if !d.Allow || len(d.Annotations) != 1 || d.Annotations[0].Key != "realistic.rule" {
					t.Fatalf("want allow with annotation, got %+v", d)
				}
				return
			}
			if d.Allow || d.Status != c.status {
				t.Fatalf("want deny %d, got %+v", c.status, d)
			}
		})
	}
}

// TestSameModuleTwoTenants: tenant A's configuration denies the client,
// tenant B's does not; each tenant has its own instances.
func TestSameModuleTwoTenants(t *testing.T) {
	a := spec(t, "realistic")
	a.Config = map[string]any{"deniedClients": []any{"svc"}}
	b := spec(t, "realistic")
	b.Config = map[string]any{"deniedClients": []any{"other"}}
	m := newManager(t, map[string][]plugin.Spec{"a": {a}, "b": {b}}, plugin.Deps{})
	da, _ := m.Decide(context.Background(), "a", input("svc"))
	db, _ := m.Decide(context.Background(), "b", input("svc"))
	if da.Allow || da.Status != 403 || !db.Allow {
		t.Fatalf("tenant a: %+v; tenant b: %+v", da, db)
	}
	for _, ph := range m.Health().Plugins {
		if ph.Instantiations == 0 {
			t.Fatalf("tenant %s has no instance of its own: %+v", ph.Tenant, ph)
		}
	}
}

func TestHostFunctions(t *testing.T) {
	clock := sdktest.NewFakeClock(time.Date(2025, 11, 7, 12, 0, 0, 0, time.UTC))
	p := sdktest.Run(t, guests["hostcalls"], sdktest.Options{Tenant: "acme", Clock: clock,
		Config: map[string]any{"k": "v", "many": true}, PseudonymKey: []byte("acme-key")})
	ann := func(d abi.Decision, key string) string {
		for _, a := range d.Annotations {
			if a.Key == "plugin."+key {
				return a.Value
			}
		}
		return "<none>"
	}
	in := abi.DecisionInput{Client: "c1", Subject: "alice", Tenant: "spoofed"}
	d, err := p.Decide(in)
	if err != nil || !d.Allow {
		t.Fatalf("%+v %v", d, err)
	}
	want := map[string]string{
		"counter": "1", "counter.ttl": "60", "kv.prev": "<none>", "now": "1762516800",
		"config": `{"k":"v","many":true}`, "tenant": "acme",
		// counter_incr_many read the counter counter_incr had just made
		// and created its own; refused whole: a bad key, an increment
		// without a window, 0 or 17 operations, results out of memory.
		"many": "1,2,60", "many.badkey": sdk.ErrInvalid.Error(), "many.nowindow": sdk.ErrInvalid.Error(),
		"many.raw":  "-2,-2,-2",
		"pseudonym": "", // checked below
	}
	for k, v := range want {
		if k != "pseudonym" && ann(d, k) != v {
			t.Errorf("%s = %q, want %q (all: %+v)", k, ann(d, k), v, d.Annotations)
		}
	}
	if got, exp := ann(d, "pseudonym"), b64(plugin.Pseudonym([]byte("acme-key"), []byte("alice"))); got != exp {
		t.Errorf("pseudonym = %q, want %q", got, exp)
	}
	clock.Advance(10 * time.Second)
	d, _ = p.Decide(in)
	if ann(d, "counter") != "2" || ann(d, "counter.ttl") != "50" || ann(d, "kv.prev") != "c1" || ann(d, "many") != "2,4,50" {
		t.Fatalf("second call: %+v", d.Annotations)
	}
	p.Decide(in)
	d, _ = p.Decide(in)
	if d.Allow || d.Status != 429 || d.RetryAfter != 50 {
		t.Fatalf("fourth call: want 429 Retry-After 50, got %+v", d)
	}
	evs := p.Recorder.AuditEvents()
	if len(evs) != 4 || evs[0].Tenant != "acme" || evs[0].Type != "authority.token.checked" {
		t.Fatalf("audit events: %+v", evs)
	}
	if p.Recorder.Metric("decisions") != 4 {
		t.Fatalf("metric decisions = %d", p.Recorder.Metric("decisions"))
	}
	if !strings.Contains(p.Recorder.Logs(), "deciding for c1") {
		t.Fatalf("guest log missing: %s", p.Recorder.Logs())
	}
	// Counters are scoped by tenant: another tenant starts from 1.
	p2 := sdktest.Run(t, guests["hostcalls"], sdktest.Options{Tenant: "other", Clock: clock})
	d, _ = p2.Decide(in)
	if ann(d, "counter") != "1" {
		t.Fatalf("other tenant sees counter %q", ann(d, "counter"))
	}
}

func TestUngrantedImportRefused(t *testing.T) {
	s := spec(t, "hostcalls")
	s.Grants = []string{plugin.GrantLog, plugin.GrantConfig}
	_, err := plugin.NewManager(context.Background(), cached(plugin.RuntimeOptions{}), map[string][]plugin.Spec{"a": {s}}, plugin.Deps{})
	if err == nil || !strings.Contains(err.Error(), "authority.metric_add") || !strings.Contains(err.Error(), `requires grant "metrics"`) {
		t.Fatalf("error = %v", err)
	}
}

func TestSHA256Mismatch(t *testing.T) {
	s := spec(t, "noop")
	good := s.SHA256
	s.SHA256 = strings.Repeat("0", 64)
	_, err := plugin.NewManager(context.Background(), cached(plugin.RuntimeOptions{}), map[string][]plugin.Spec{"a": {s}}, plugin.Deps{})
	if err == nil || !strings.Contains(err.Error(), s.SHA256) || !strings.Contains(err.Error(), good) || !strings.Contains(err.Error(), `"noop"`) {
		t.Fatalf("error = %v", err)
	}
}

func failureKind(err error) plugin.FailureKind {
	var f *plugin.Failure
	if errors.As(err, &f) {
		return f.Kind
	}
	return ""
}

func TestMisbehavingGuests(t *testing.T) {
	s := spec(t, "misbehave")
	s.Limits = plugin.Limits{CallTimeout: 100 * time.Millisecond, MemoryPages: 128, MaxOutputBytes: 4096}
	m := newManager(t, map[string][]plugin.Spec{"a": {s}}, plugin.Deps{})
	cases := []struct {
		client string
		kind   plugin.FailureKind
	}{
		{"spin", plugin.KindTimeout},
		{"sleep", plugin.KindTimeout},
		{"panic", plugin.KindTrap},
		{"grow", plugin.KindTrap},
		{"bad-status", plugin.KindOutput},
		{"big-description", plugin.KindOutput},
	}
	for _, c := range cases {
		t.Run(c.client, func(t *testing.T) {
			start := time.Now()
			d, err := m.Decide(context.Background(), "a", input(c.client))
			// Under the race detector growing memory can outlast the deadline.
			if k := failureKind(err); k != c.kind && !(c.client == "grow" && k == plugin.KindTimeout) {
				t.Fatalf("error %v, want kind %s", err, c.kind)
			}
			if d.Allow || d.Status != 503 || d.Error != "temporarily_unavailable" {
				t.Fatalf("fail-closed decision = %+v", d)
			}
			if el := time.Since(start); el > 2*time.Second {
				t.Fatalf("took %s", el)
			}
			// The failed instance was discarded; the next call gets a working one.
			if d, err := m.Decide(context.Background(), "a", input("ok")); err != nil || !d.Allow {
				t.Fatalf("after %s: %+v %v", c.client, d, err)
			}
		})
	}
	h := m.Health().Plugins[0]
	if h.Timeouts+h.Traps != 4 || h.InvalidOutputs != 2 || h.Instantiations < 5 {
		t.Fatalf("health: %+v", h)
	}
}

func TestFailOpenSkipsPlugin(t *testing.T) {
	s := spec(t, "misbehave")
	s.Limits.CallTimeout = 20 * time.Millisecond
	s.FailureMode = map[string]plugin.FailureMode{abi.HookToken: plugin.FailOpen}
	deny := spec(t, "realistic")
	deny.Config = map[string]any{"deniedClients": []any{"spin"}}
	m := newManager(t, map[string][]plugin.Spec{"a": {s, deny}}, plugin.Deps{})
	d, err := m.Decide(context.Background(), "a", input("spin"))
	if failureKind(err) != plugin.KindTimeout || d.Allow || d.Status != 403 {
		t.Fatalf("fail-open plugin must be skipped and the next plugin still deny: %+v %v", d, err)
	}
}

func TestDenyOverridesAndOrder(t *testing.T) {
	first := spec(t, "misbehave") // denies 429 for client "deny"
	second := spec(t, "realistic")
	second.Config = map[string]any{"deniedClients": []any{"deny"}}
	m := newManager(t, map[string][]plugin.Spec{"a": {first, second}}, plugin.Deps{})
	d, err := m.Decide(context.Background(), "a", input("deny"))
	if err != nil || d.Status != 429 {
		t.Fatalf("first deny must win: %+v %v", d, err)
	}
	h := m.Health().Plugins
	if h[1].Calls != 0 {
		t.Fatalf("second plugin ran after a deny: %+v", h[1])
	}
}

func TestCircuitBreaker(t *testing.T) {
	clock := sdktest.NewFakeClock(time.Unix(1_700_000_000, 0))
	s := spec(t, "misbehave")
	s.Limits.CallTimeout = 10 * time.Millisecond
	m, err := plugin.NewManager(context.Background(), cached(plugin.RuntimeOptions{BreakerThreshold: 2, BreakerCooldown: 30 * time.Second}),
		map[string][]plugin.Spec{"a": {s}}, plugin.Deps{Clock: clock})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close(context.Background())
	for i := 0; i < 2; i++ {
		m.Decide(context.Background(), "a", input("panic"))
	}
	h := m.Health()
	if h.Plugins[0].Breaker != plugin.BreakerOpen || !h.Degraded {
		t.Fatalf("breaker should be open: %+v", h)
	}
	d, err := m.Decide(context.Background(), "a", input("ok"))
	if failureKind(err) != plugin.KindBreakerOpen || d.Status != 503 || d.RetryAfter != 30 {
		t.Fatalf("open breaker: %+v %v", d, err)
	}
	clock.Advance(31 * time.Second)
	if d, err := m.Decide(context.Background(), "a", input("ok")); err != nil || !d.Allow {
		t.Fatalf("half-open trial: %+v %v", d, err)
	}
	if st := m.Health().Plugins[0].Breaker; st != plugin.BreakerClosed {
		t.Fatalf("breaker after successful trial: %s", st)
	}
}

func TestEmitNeverBlocks(t *testing.T) {
	s := spec(t, "misbehave", abi.HookEvents)
	s.Limits.CallTimeout = 20 * time.Millisecond
	m, err := plugin.NewManager(context.Background(), cached(plugin.RuntimeOptions{EventQueueSize: 2, BreakerThreshold: 1000}),
		map[string][]plugin.Spec{"a": {s}}, plugin.Deps{})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	for i := 0; i < 100; i++ {
		m.Emit(context.Background(), "a", abi.Event{Type: "authority.test.spin"})
	}
	if el := time.Since(start); el > 50*time.Millisecond {
		t.Fatalf("Emit blocked for %s", el)
	}
	if m.Emit(context.Background(), "nobody", abi.Event{}) {
		t.Fatal("tenant without plugins accepted an event")
	}
	if h := m.Health().Plugins[0]; h.EventsDropped < 90 {
		t.Fatalf("dropped = %d", h.EventsDropped)
	}
	m.Close(context.Background())
}

func TestEventsDelivered(t *testing.T) {
	p := sdktest.Run(t, guests["misbehave"], sdktest.Options{Hooks: []string{abi.HookEvents}})
	if err := p.Event(abi.Event{Type: "authority.token.issued"}); err != nil {
		t.Fatal(err)
	}
}

func cached(o plugin.RuntimeOptions) plugin.RuntimeOptions {
	o.CacheDir = filepath.Join(sdktest.CacheDir(), "compiled")
	return o
}

type observed struct {
	calls    int
	failures map[plugin.FailureKind]int
}

func (o *observed) PluginCall(tenant, name, hook string, elapsed time.Duration, failure plugin.FailureKind) {
	o.calls++
	if failure != "" {
		o.failures[failure]++
	}
}

func TestObserverSeesEveryCall(t *testing.T) {
	o := &observed{failures: map[plugin.FailureKind]int{}}
	s := spec(t, "misbehave")
	m := newManager(t, map[string][]plugin.Spec{"a": {s}}, plugin.Deps{Observer: o})
	m.Decide(context.Background(), "a", input("ok"))
	m.Decide(context.Background(), "a", input("panic"))
	if o.calls != 2 || o.failures[plugin.KindTrap] != 1 {
		t.Fatalf("%+v", o)
	}
}
