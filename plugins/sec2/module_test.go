package main

// Tests of the compiled module under the real host runtime (host/plugin
// through sdk/sdktest): the records the host's audit sink receives.

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"stellaops.org/authority/abi"
	"stellaops.org/authority/host/plugin"
	"stellaops.org/authority/sdk/sdktest"
)

// grants are the grants SEC2 needs.
var grants = []string{"audit", "pseudonymize", "config"}

var (
	buildOnce sync.Once
	wasmPath  string
	buildErr  error
)

// module builds this package for wasip1 once per test binary.
func module(tb testing.TB) string {
	tb.Helper()
	buildOnce.Do(func() { wasmPath, buildErr = sdktest.BuildModule(".") })
	if buildErr != nil {
		tb.Fatalf("build: %v", buildErr)
	}
	return wasmPath
}

// tenantOpts are sdktest options for SEC2 as an operator configures it.
func tenantOpts(key string, cfg map[string]any) sdktest.Options {
	return sdktest.Options{Name: "sec2", Hooks: []string{abi.HookEvents}, Grants: grants, Config: cfg, PseudonymKey: []byte(key)}
}

// start runs SEC2 for the given tenants and closes it after the test.
func start(t *testing.T, tenants map[string]sdktest.Options) *sdktest.Plugin {
	t.Helper()
	p, err := sdktest.StartTenants(module(t), tenants)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Manager.Close(context.Background()) })
	return p
}

// startOne runs SEC2 for tenant "test" with key and cfg.
func startOne(t *testing.T, key string, cfg map[string]any) *sdktest.Plugin {
	t.Helper()
	return start(t, map[string]sdktest.Options{"test": tenantOpts(key, cfg)})
}

// emit delivers ev to tenant's events hook synchronously, keeping its time
// as it is (sdktest's Plugin.Event would fill a zero time).
func emit(p *sdktest.Plugin, tenant string, ev abi.Event) error {
	return p.Manager.EmitSync(context.Background(), tenant, ev)
}

// pseudonym is what the host's pseudonymize returns for v under key.
func pseudonym(key, v string) string {
	return base64.RawURLEncoding.EncodeToString(plugin.Pseudonym([]byte(key), []byte(v)))
}

func mustEmit(t *testing.T, p *sdktest.Plugin, tenant string, evs ...abi.Event) {
	t.Helper()
	for _, ev := range evs {
		if err := emit(p, tenant, ev); err != nil {
			t.Fatalf("%s: %v", ev.Type, err)
		}
	}
}

func records(t *testing.T, p *sdktest.Plugin, n int) []abi.Event {
	t.Helper()
	got := p.Recorder.AuditEvents()
	if len(got) != n {
		b, _ := json.MarshalIndent(got, "", "  ")
		t.Fatalf("%d records, want %d:\n%s", len(got), n, b)
	}
	return got
}

func sameEvent(t *testing.T, got, want abi.Event) {
	t.Helper()
	g, _ := json.MarshalIndent(got, "", "  ")
	w, _ := json.MarshalIndent(want, "", "  ")
	if string(g) != string(w) {
		t.Fatalf("record\n%s\nwant\n%s", g, w)
	}
}

// hostEvents are the events the host sends, built as host/app does
// (eventConstraint), one per event type SEC2 must record, and the record
// expected under the default configuration with key "k1" for tenant
// "test".
func hostEvents() []struct{ in, want abi.Event } {
	const key = "k1"
	ps := func(v string) string { return pseudonym(key, v) }
	jkt, x5t := "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I", "A4DtL2JmUMhAsvJj5tKyn64SqzmuXbMrJa0n761y5v0"
	base := func(typ, outcome, reason string) abi.Event {
		return abi.Event{Type: typ, Time: testTime, CorrelationID: "corr-" + typ, Outcome: outcome, Reason: reason,
			Subject: "user-42", Client: "svc-web", RemoteAddr: "203.0.113.7", UserAgent: "curl/8.5.0"}
	}
	var out []struct{ in, want abi.Event }
	add := func(in abi.Event) {
		want := in
		want.Tenant = "test"
		want.Time = time.Time{} // no clock grant: the host sends no time
		want.Subject, want.RemoteAddr, want.UserAgent = ps(in.Subject), ps(in.RemoteAddr), ps(in.UserAgent)
		if in.Subject == "" {
			want.Subject = ""
		}
		out = append(out, struct{ in, want abi.Event }{in, want})
	}

	issued := base(abi.EventTokenIssued, abi.OutcomeSuccess, "")
	issued.Scopes = []string{"demo.read", "openid"}
	issued.SenderConstraint = abi.ConstraintDPoP
	issued.DPoP = abi.DPoP{Present: true, Valid: true, Result: abi.DPoPOK, JKT: jkt, Alg: "ES256"}
	issued.Attributes = []abi.KV{{Key: "jti", Value: "tok-1"}, {Key: "annotation.sec5.rule", Value: "aud-requires-dpop"}}
	add(issued)

	issuedMTLS := base(abi.EventTokenIssued, abi.OutcomeSuccess, "")
	issuedMTLS.CorrelationID = "corr-issued-mtls"
	issuedMTLS.SenderConstraint = abi.ConstraintMTLS
	issuedMTLS.MTLS = abi.MTLS{Present: true, Thumbprint: x5t, Result: abi.MTLSOK}
	issuedMTLS.Attributes = []abi.KV{{Key: "jti", Value: "tok-2"}}
	add(issuedMTLS)

	denied := base(abi.EventTokenDenied, abi.OutcomeFailure, "dpop-htu")
	denied.Scopes = []string{"demo.read"}
	denied.SenderConstraint = abi.ConstraintNone
	add(denied)

	limited := base(abi.EventTokenDenied, abi.OutcomeRateLimited, "plugin-deny")
	limited.CorrelationID = "corr-rate-limited"
	limited.SenderConstraint = abi.ConstraintNone
	limited.Attributes = []abi.KV{{Key: "annotation.sec3.limit", Value: "client-ip"}}
	add(limited)

	replay := base(abi.EventDPoPReplay, abi.OutcomeFailure, "jti-reused")
	replay.SenderConstraint = abi.ConstraintDPoP
	replay.DPoP = abi.DPoP{Present: true, Result: abi.DPoPReplay, JKT: jkt, Alg: "ES256"}
	add(replay)

	bypass := base(abi.EventDPoPBypass, abi.OutcomeSuccess, "allowTemporaryBypass")
	bypass.SenderConstraint = abi.ConstraintBypass
	bypass.DPoP = abi.DPoP{Result: abi.DPoPBypass}
	bypass.Attributes = []abi.KV{{Key: "jti", Value: "tok-3"}}
	add(bypass)

	for _, reason := range []string{abi.MTLSThumbprintMismatch, abi.MTLSMissingCertificate, abi.MTLSContextMissing} {
		mm := base(abi.EventMTLSBindingMismatch, abi.OutcomeFailure, reason)
		mm.CorrelationID = "corr-" + reason
		mm.SenderConstraint = abi.ConstraintMTLS
		mm.MTLS = abi.MTLS{Present: reason == abi.MTLSThumbprintMismatch, Thumbprint: x5t, Result: reason}
		add(mm)
	}

	reused := base(abi.EventRefreshReused, abi.OutcomeFailure, "refresh-reused")
	reused.Scopes = []string{"demo.read"}
	reused.SenderConstraint = abi.ConstraintNone
	reused.Attributes = []abi.KV{{Key: "jti", Value: "rt-family-1"}}
	add(reused)

	// Not sent by the host yet (see README): recorded all the same.
	miss := base("authority.dpop.nonce.miss", abi.OutcomeFailure, "dpop-nonce-missing")
	miss.SenderConstraint = abi.ConstraintNone
	add(miss)
	lockout := base("authority.lockout.subject", abi.OutcomeLockedOut, "too-many-failures")
	lockout.Client = ""
	add(lockout)
	return out
}

// TestHostEventTypes: every event type the host sends (and the ones it
// will send) gives exactly one record, field for field, pseudonyms equal
// to the host's own.
func TestHostEventTypes(t *testing.T) {
	p := startOne(t, "k1", nil)
	cases := hostEvents()
	seen := map[string]bool{}
	for _, c := range cases {
		mustEmit(t, p, "test", c.in)
		seen[c.in.Type] = true
	}
	for _, typ := range abi.HostEventTypes {
		if !seen[typ] {
			t.Errorf("host event type %s not covered", typ)
		}
	}
	got := records(t, p, len(cases))
	for i, c := range cases {
		sameEvent(t, got[i], c.want)
	}
}

// TestModuleGrants: the module needs exactly audit, pseudonymize and
// config; without any of them it does not load.
func TestModuleGrants(t *testing.T) {
	wasm := module(t)
	for _, missing := range grants {
		var g []string
		for _, x := range grants {
			if x != missing {
				g = append(g, x)
			}
		}
		o := tenantOpts("k", nil)
		o.Grants = g
		p, err := sdktest.Start(wasm, o)
		if err == nil {
			p.Manager.Close(context.Background())
			t.Errorf("loaded without grant %q", missing)
		} else if !strings.Contains(err.Error(), missing) {
			t.Errorf("without %q: %v", missing, err)
		}
	}
	// log, metrics, clock and the others are not needed.
	o := tenantOpts("k", nil)
	p, err := sdktest.Start(wasm, o)
	if err != nil {
		t.Fatal(err)
	}
	p.Manager.Close(context.Background())
}

// TestClock: without the clock grant the event's time is unset and so is
// the record's; with it, the record keeps the event's time.
func TestClock(t *testing.T) {
	ev := hostEvents()[0].in
	for _, withClock := range []bool{false, true} {
		o := tenantOpts("k1", nil)
		if withClock {
			o.Grants = append([]string{"clock"}, grants...)
		}
		p := start(t, map[string]sdktest.Options{"test": o})
		mustEmit(t, p, "test", ev)
		got := records(t, p, 1)[0]
		if withClock && !got.Time.Equal(testTime) || !withClock && !got.Time.IsZero() {
			t.Errorf("clock %v: record time %v", withClock, got.Time)
		}
	}
}

func TestPseudonymsMatchHost(t *testing.T) {
	const key = "tenant-key-Ω"
	p := startOne(t, key, map[string]any{"client": "hash"})
	mustEmit(t, p, "test", abi.Event{Type: abi.EventTokenDenied, Outcome: "failure", Subject: "alice@example.com",
		Client: "svc-batch", RemoteAddr: "2001:db8::7", UserAgent: "Mozilla/5.0 (X11; Linux x86_64)"})
	got := records(t, p, 1)[0]
	for field, pair := range map[string][2]string{
		"subject":    {got.Subject, pseudonym(key, "alice@example.com")},
		"client":     {got.Client, pseudonym(key, "svc-batch")},
		"remoteAddr": {got.RemoteAddr, pseudonym(key, "2001:db8::7")},
		"userAgent":  {got.UserAgent, pseudonym(key, "Mozilla/5.0 (X11; Linux x86_64)")},
	} {
		if pair[0] != pair[1] || len(pair[0]) != 43 {
			t.Errorf("%s = %q, want %q", field, pair[0], pair[1])
		}
	}
}

func TestNetworkModes(t *testing.T) {
	cases := []struct {
		name      string
		cfg       map[string]any
		addr      string
		wantAddr  string
		omitAgent bool
	}{
		{"truncate ipv4", map[string]any{"network": "truncate"}, "203.0.113.77", "203.0.113.0/24", false},
		{"truncate ipv6", map[string]any{"network": "truncate"}, "2001:db8:1:2::5", "2001:db8:1::/48", false},
		{"truncate custom prefixes v4", map[string]any{"network": "truncate", "ipv4Prefix": 20, "ipv6Prefix": 64}, "203.0.113.77", "203.0.112.0/20", false},
		{"truncate custom prefixes v6", map[string]any{"network": "truncate", "ipv4Prefix": 20, "ipv6Prefix": 64}, "2001:db8:1:2::5", "2001:db8:1:2::/64", false},
		{"truncate unparsable hashed", map[string]any{"network": "truncate"}, "gateway.internal", pseudonym("k1", "gateway.internal"), false},
		{"hash", map[string]any{"network": "hash"}, "203.0.113.77", pseudonym("k1", "203.0.113.77"), false},
		{"omit", map[string]any{"network": "omit", "userAgent": "omit"}, "203.0.113.77", "", true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := startOne(t, "k1", c.cfg)
			mustEmit(t, p, "test", abi.Event{Type: abi.EventTokenIssued, Outcome: "success", Subject: "u1", RemoteAddr: c.addr, UserAgent: "ua/1"})
			got := records(t, p, 1)[0]
			if got.RemoteAddr != c.wantAddr {
				t.Errorf("remoteAddr %q, want %q", got.RemoteAddr, c.wantAddr)
			}
			wantUA := pseudonym("k1", "ua/1")
			if c.omitAgent {
				wantUA = ""
			}
			if got.UserAgent != wantUA || got.Subject != pseudonym("k1", "u1") {
				t.Errorf("userAgent %q subject %q", got.UserAgent, got.Subject)
			}
		})
	}
}

func TestEventFiltering(t *testing.T) {
	p := startOne(t, "k1", map[string]any{
		"events":   []any{"authority.dpop.*", "authority.mtls.binding.mismatch", "authority.token.denied"},
		"outcomes": []any{"failure", "rate_limited"},
	})
	var want []string
	for _, c := range hostEvents() {
		mustEmit(t, p, "test", c.in)
		selected := (strings.HasPrefix(c.in.Type, "authority.dpop.") || c.in.Type == abi.EventMTLSBindingMismatch || c.in.Type == abi.EventTokenDenied) &&
			(c.in.Outcome == "failure" || c.in.Outcome == "rate_limited")
		if selected {
			want = append(want, c.in.Type+"/"+c.in.Outcome)
		}
	}
	var got []string
	for _, r := range p.Recorder.AuditEvents() {
		got = append(got, r.Type+"/"+r.Outcome)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("recorded %v\nwant     %v", got, want)
	}
	// The bypass (success) and issued tokens are not recorded; the
	// replay, the three mismatches, the nonce miss and both denials are.
	if len(want) != 7 {
		t.Fatalf("selection covers %d events: %v", len(want), want)
	}
}

func TestAnnotationsAndProperties(t *testing.T) {
	in := abi.Event{Type: abi.EventTokenIssued, Outcome: "success", Attributes: []abi.KV{
		{Key: "jti", Value: "tok-9"}, {Key: "annotation.sec5.rule", Value: "r1"}, {Key: "annotation.sec3.bucket", Value: "b"},
	}}
	props := map[string]any{"regulation": "gdpr", "data-controller": "acme-eu", "retention": "p400d"}
	cases := []struct {
		name string
		cfg  map[string]any
		want []abi.KV
	}{
		{"default keeps annotations", nil, in.Attributes},
		{"includeAnnotations true", map[string]any{"includeAnnotations": true}, in.Attributes},
		{"includeAnnotations false", map[string]any{"includeAnnotations": false}, []abi.KV{{Key: "jti", Value: "tok-9"}}},
		{"properties sorted after the event's", map[string]any{"properties": props}, append(append([]abi.KV{}, in.Attributes...),
			abi.KV{Key: "property.data-controller", Value: "acme-eu"}, abi.KV{Key: "property.regulation", Value: "gdpr"}, abi.KV{Key: "property.retention", Value: "p400d"})},
		{"properties without annotations", map[string]any{"properties": props, "includeAnnotations": false}, []abi.KV{{Key: "jti", Value: "tok-9"},
			{Key: "property.data-controller", Value: "acme-eu"}, {Key: "property.regulation", Value: "gdpr"}, {Key: "property.retention", Value: "p400d"}}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := startOne(t, "k1", c.cfg)
			mustEmit(t, p, "test", in)
			if got := records(t, p, 1)[0].Attributes; !reflect.DeepEqual(got, c.want) {
				t.Fatalf("attributes %+v\nwant       %+v", got, c.want)
			}
		})
	}
}

func TestScopesSorted(t *testing.T) {
	p := startOne(t, "k1", nil)
	in := []string{"z.write", "openid", "a.read", "billing.read", "Billing.admin"}
	mustEmit(t, p, "test", abi.Event{Type: abi.EventTokenDenied, Outcome: "failure", Scopes: in})
	want := []string{"Billing.admin", "a.read", "billing.read", "openid", "z.write"}
	if got := records(t, p, 1)[0].Scopes; !reflect.DeepEqual(got, want) {
		t.Fatalf("scopes %v, want %v", got, want)
	}
}

// TestTenantIsolation: one module, two tenants with their own keys and
// configurations. The same subject gets unrelated pseudonyms, A's choices
// never reach B's records and each record carries its own tenant.
func TestTenantIsolation(t *testing.T) {
	p := start(t, map[string]sdktest.Options{
		"tenant-a": tenantOpts("key-of-tenant-a", map[string]any{
			"network": "truncate", "client": "hash", "includeAnnotations": false,
			"events":     []any{"authority.token.*"},
			"properties": map[string]any{"regulation": "gdpr"},
		}),
		"tenant-b": tenantOpts("key-of-tenant-b", map[string]any{
			"userAgent":  "omit",
			"properties": map[string]any{"regulation": "hipaa"},
		}),
	})
	ev := abi.Event{Type: abi.EventTokenIssued, Outcome: "success", Subject: "shared-user", Client: "svc-shared",
		RemoteAddr: "203.0.113.9", UserAgent: "ua/2", Attributes: []abi.KV{{Key: "jti", Value: "t"}, {Key: "annotation.x.y", Value: "z"}}}
	replay := abi.Event{Type: abi.EventDPoPReplay, Outcome: "failure", Subject: "shared-user"}
	for _, tenant := range []string{"tenant-a", "tenant-b", "tenant-a", "tenant-b"} {
		mustEmit(t, p, tenant, ev, replay)
	}
	byTenant := map[string][]abi.Event{}
	for _, r := range p.Recorder.AuditEvents() {
		byTenant[r.Tenant] = append(byTenant[r.Tenant], r)
	}
	a, b := byTenant["tenant-a"], byTenant["tenant-b"]
	if len(a) != 2 || len(b) != 4 || len(byTenant) != 2 {
		t.Fatalf("records per tenant: a %d (want 2: token events only), b %d (want 4), tenants %d", len(a), len(b), len(byTenant))
	}
	for _, r := range a {
		if r.Type != abi.EventTokenIssued || r.Subject != pseudonym("key-of-tenant-a", "shared-user") ||
			r.Client != pseudonym("key-of-tenant-a", "svc-shared") || r.RemoteAddr != "203.0.113.0/24" ||
			r.UserAgent != pseudonym("key-of-tenant-a", "ua/2") ||
			!reflect.DeepEqual(r.Attributes, []abi.KV{{Key: "jti", Value: "t"}, {Key: "property.regulation", Value: "gdpr"}}) {
			t.Errorf("tenant-a record %+v", r)
		}
	}
	for _, r := range b {
		if r.Subject != pseudonym("key-of-tenant-b", "shared-user") {
			t.Errorf("tenant-b subject %q", r.Subject)
		}
		if r.Type != abi.EventTokenIssued {
			continue
		}
		if r.Client != "svc-shared" || r.RemoteAddr != pseudonym("key-of-tenant-b", "203.0.113.9") || r.UserAgent != "" ||
			!reflect.DeepEqual(r.Attributes, []abi.KV{{Key: "jti", Value: "t"}, {Key: "annotation.x.y", Value: "z"}, {Key: "property.regulation", Value: "hipaa"}}) {
			t.Errorf("tenant-b record %+v", r)
		}
	}
	if a[0].Subject == b[0].Subject {
		t.Fatal("same pseudonym for the same subject in two tenants")
	}
}

// TestRawValuesNeverAppear: distinctive personal data and an attribute
// SEC2 does not know appear nowhere in what reaches the audit sink, in
// any mode.
func TestRawValuesNeverAppear(t *testing.T) {
	const (
		subject = "raw-subject-7f3a@example.test"
		addr    = "198.51.100.213"
		addr6   = "2001:db8:7f3a:1::99"
		ua      = "RawAgent/7f3a (distinctive)"
		client  = "raw-client-7f3a"
		secret  = "raw-secret-7f3a"
	)
	configs := []map[string]any{
		nil,
		{"network": "truncate", "client": "hash"},
		{"network": "truncate", "ipv4Prefix": 8, "ipv6Prefix": 16, "client": "hash"},
		{"network": "omit", "userAgent": "omit", "client": "hash"},
	}
	for _, cfg := range configs {
		p := startOne(t, "k-raw", cfg)
		for _, a := range []string{addr, addr6, "not-an-address-7f3a"} {
			mustEmit(t, p, "test", abi.Event{Type: abi.EventTokenIssued, Outcome: "success", Subject: subject, Client: client,
				RemoteAddr: a, UserAgent: ua, Attributes: []abi.KV{{Key: "jti", Value: "j"}, {Key: "client_secret", Value: secret}, {Key: "dpop.proof", Value: secret}}})
		}
		got := records(t, p, 3)
		b, err := json.Marshal(got)
		if err != nil {
			t.Fatal(err)
		}
		raws := []string{subject, addr, addr6, ua, secret, "not-an-address-7f3a", "7f3a:1::99", "100.213"}
		if cfg != nil {
			raws = append(raws, client)
		}
		for _, raw := range raws {
			if strings.Contains(string(b), raw) {
				t.Errorf("config %v: raw %q in the records: %s", cfg, raw, b)
			}
		}
	}
}

// TestBadConfigFailsLoudly: a bad configuration fails every event (the
// host counts the failure), writes nothing, and is logged once.
func TestBadConfigFailsLoudly(t *testing.T) {
	cases := []struct {
		name string
		cfg  map[string]any
		want string
	}{
		{"unknown key", map[string]any{"netwrk": "hash"}, "netwrk: unknown key"},
		{"wrong type", map[string]any{"includeAnnotations": "yes"}, "includeAnnotations: must be true or false"},
		{"bad network mode", map[string]any{"network": "mask"}, `network: must be \"hash\", \"truncate\" or \"omit\"`},
		{"bad prefix", map[string]any{"network": "truncate", "ipv4Prefix": 4}, "ipv4Prefix: must be an integer from 8 to 24, got 4"},
		{"bad property key", map[string]any{"properties": map[string]any{"Reg": "x"}}, "key must be 1-55 characters"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			o := tenantOpts("k1", c.cfg)
			o.Limits = plugin.Limits{PoolSize: 1} // one instance: "once" is exact
			p := start(t, map[string]sdktest.Options{"test": o})
			for i := 0; i < 3; i++ {
				if err := emit(p, "test", hostEvents()[0].in); err == nil {
					t.Fatalf("event %d: no error under a bad configuration", i)
				}
			}
			records(t, p, 0)
			logs := p.Recorder.Logs()
			if n := strings.Count(logs, "sec2: invalid configuration"); n != 1 {
				t.Fatalf("configuration error logged %d times, want 1:\n%s", n, logs)
			}
			if !strings.Contains(logs, c.want) {
				t.Fatalf("log does not name the problem %q:\n%s", c.want, logs)
			}
		})
	}
}

// failingSecrets is a host whose key store is down.
type failingSecrets struct{}

func (failingSecrets) PseudonymKey(context.Context, string) ([]byte, error) {
	return nil, errors.New("key store unavailable")
}

// TestPseudonymizeUnavailable: when the host cannot pseudonymize, no
// record is written (never one with raw data) and the event fails.
func TestPseudonymizeUnavailable(t *testing.T) {
	rec := &sdktest.Recorder{}
	m := newManager(t, plugin.RuntimeOptions{}, plugin.Deps{Secrets: failingSecrets{}, Audit: rec}, nil)
	if err := m.EmitSync(context.Background(), "test", hostEvents()[0].in); err == nil {
		t.Fatal("no error")
	}
	if n := len(rec.AuditEvents()); n != 0 {
		t.Fatalf("%d records written without pseudonyms", n)
	}
	// An event with nothing to pseudonymize is still recorded.
	if err := m.EmitSync(context.Background(), "test", abi.Event{Type: abi.EventDPoPBypass, Outcome: "success", Client: "c"}); err != nil {
		t.Fatal(err)
	}
	if n := len(rec.AuditEvents()); n != 1 {
		t.Fatalf("%d records", n)
	}
}

// TestAuditBudget: records beyond the host's audit budget are dropped by
// the host (HostLimited) and SEC2 carries on without failing the event.
// The bound holds however slow the machine: the bucket (burst 50, 10/s by
// default) cannot have granted more.
func TestAuditBudget(t *testing.T) {
	p := startOne(t, "k1", nil)
	ev := abi.Event{Type: abi.EventTokenDenied, Outcome: "failure", Subject: "s"}
	const n = 120
	// The bucket runs on the host's real clock, not the fake one.
	began := time.Now()
	for i := 0; i < n; i++ {
		if err := emit(p, "test", ev); err != nil {
			t.Fatalf("event %d: %v (HostLimited must not fail the event)", i, err)
		}
	}
	elapsed := time.Since(began)
	got := len(p.Recorder.AuditEvents())
	bound := 50 + int(10*elapsed.Seconds()) + 1
	if got > bound || got > n {
		t.Fatalf("%d records in %v, the budget allows at most %d", got, elapsed, bound)
	}
	if elapsed.Seconds() < 6 && got == n {
		t.Fatalf("all %d records written in %v: the budget never refused one", n, elapsed)
	}
	t.Logf("%d of %d records within the budget in %v", got, n, elapsed)
}

// newManager loads SEC2 for tenant "test" with explicit runtime options
// and dependencies (sdktest does not expose them), closing it after tb.
func newManager(tb testing.TB, opts plugin.RuntimeOptions, deps plugin.Deps, cfg map[string]any) *plugin.Manager {
	tb.Helper()
	wasm := module(tb)
	b, err := os.ReadFile(wasm)
	if err != nil {
		tb.Fatal(err)
	}
	if opts.CacheDir == "" {
		opts.CacheDir = filepath.Join(sdktest.CacheDir(), "compiled")
	}
	specs := map[string][]plugin.Spec{"test": {{Name: "sec2", Path: wasm, SHA256: plugin.Digest(b),
		Hooks: []string{abi.HookEvents}, Grants: grants, Config: cfg}}}
	m, err := plugin.NewManager(context.Background(), opts, specs, deps)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = m.Close(context.Background()) })
	return m
}

// namedSink keeps the emitting plugin's name with each record, as the
// host's audit sink receives it.
type namedSink struct {
	mu    sync.Mutex
	names []string
	evs   []abi.Event
}

func (s *namedSink) Audit(_ context.Context, name string, ev abi.Event) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.names = append(s.names, name)
	s.evs = append(s.evs, ev)
	return nil
}

// TestRecordSource: the sink learns the records are SEC2's, source
// "plugin:sec2", from the host, whatever the record's type.
func TestRecordSource(t *testing.T) {
	sink := &namedSink{}
	m := newManager(t, plugin.RuntimeOptions{}, plugin.Deps{Secrets: plugin.StaticSecrets{"test": []byte("k")}, Audit: sink}, nil)
	for _, c := range hostEvents()[:3] {
		if err := m.EmitSync(context.Background(), "test", c.in); err != nil {
			t.Fatal(err)
		}
	}
	if len(sink.names) != 3 {
		t.Fatalf("%d records", len(sink.names))
	}
	for i, n := range sink.names {
		if plugin.PluginSource(n) != "plugin:sec2" || sink.evs[i].Tenant != "test" {
			t.Fatalf("record %d: source %q tenant %q", i, plugin.PluginSource(n), sink.evs[i].Tenant)
		}
	}
}
