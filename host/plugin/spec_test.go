package plugin

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

func validSpec() Spec {
	return Spec{Name: "sec3", Path: "sec3.wasm", SHA256: strings.Repeat("ab", 32), Hooks: []string{"token", "events"},
		Grants: []string{GrantCounters, GrantConfig}}
}

func TestSpecValidateNamesKey(t *testing.T) {
	cases := []struct {
		name   string
		mutate func(*Spec)
		want   string
	}{
		{"ok", func(*Spec) {}, ""},
		{"name", func(s *Spec) { s.Name = "Bad Name" }, "tenants[2].plugins[0].name: "},
		{"path", func(s *Spec) { s.Path = "" }, "tenants[2].plugins[0].path: required"},
		{"sha", func(s *Spec) { s.SHA256 = "ABC" }, "tenants[2].plugins[0].sha256: "},
		{"hooks empty", func(s *Spec) { s.Hooks = nil }, "tenants[2].plugins[0].hooks: "},
		{"hook unknown", func(s *Spec) { s.Hooks = []string{"token", "authorize"} }, `tenants[2].plugins[0].hooks[1]: unknown hook "authorize"`},
		{"failure mode value", func(s *Spec) { s.FailureMode = map[string]FailureMode{"token": "maybe"} }, "tenants[2].plugins[0].failureMode.token: "},
		{"failure mode hook", func(s *Spec) { s.FailureMode = map[string]FailureMode{"introspect": FailOpen} }, "failureMode.introspect: hook"},
		{"events closed", func(s *Spec) { s.FailureMode = map[string]FailureMode{"events": FailClosed} }, "failureMode.events: "},
		{"timeout", func(s *Spec) { s.Limits.CallTimeout = -time.Second }, "tenants[2].plugins[0].limits.callTimeout: must be > 0"},
		{"timeout max", func(s *Spec) { s.Limits.CallTimeout = time.Minute }, "limits.callTimeout: must be <="},
		{"pool", func(s *Spec) { s.Limits.PoolSize = -1 }, "limits.poolSize: must be > 0"},
		{"pages", func(s *Spec) { s.Limits.MemoryPages = 70000 }, "limits.memoryPages: "},
		{"idle", func(s *Spec) { s.Limits.IdleTimeout = time.Millisecond }, "limits.idleTimeout: "},
		{"output", func(s *Spec) { s.Limits.MaxOutputBytes = -5 }, "limits.maxOutputBytes: must be > 0"},
		{"counter keys", func(s *Spec) { s.Limits.CounterKeys = -1 }, "tenants[2].plugins[0].limits.counterKeys: must be > 0"},
		{"counter keys max", func(s *Spec) { s.Limits.CounterKeys = 10_000_001 }, "limits.counterKeys: must be <= 10000000"},
		{"kv entries", func(s *Spec) { s.Limits.KVEntries = -1 }, "tenants[2].plugins[0].limits.kvEntries: must be > 0"},
		{"kv entries max", func(s *Spec) { s.Limits.KVEntries = 1_000_001 }, "limits.kvEntries: must be <= 1000000"},
		{"kv bytes", func(s *Spec) { s.Limits.KVBytes = -1 }, "tenants[2].plugins[0].limits.kvBytes: must be > 0"},
		{"kv bytes max", func(s *Spec) { s.Limits.KVBytes = 1<<30 + 1 }, "limits.kvBytes: must be <= 1073741824"},
		{"quotas at their max", func(s *Spec) {
			s.Limits.CounterKeys, s.Limits.KVEntries, s.Limits.KVBytes = 10_000_000, 1_000_000, 1<<30
		}, ""},
		{"grant", func(s *Spec) { s.Grants = []string{"network"} }, `tenants[2].plugins[0].grants[0]: unknown grant "network"`},
		{"config", func(s *Spec) { s.Config = map[string]any{"f": func() {}} }, "tenants[2].plugins[0].config: "},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := validSpec()
			c.mutate(&s)
			err := s.Validate("tenants[2].plugins[0]")
			if c.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v, want %q", err, c.want)
			}
		})
	}
}

func TestValidateTenantDuplicateNames(t *testing.T) {
	err := ValidateTenant("tenants[0].plugins", []Spec{validSpec(), validSpec()})
	if err == nil || !strings.Contains(err.Error(), `tenants[0].plugins[1].name: "sec3" already used by tenants[0].plugins[0]`) {
		t.Fatal(err)
	}
}

func TestWithDefaults(t *testing.T) {
	s := validSpec().WithDefaults()
	if s.Limits != DefaultLimits() || s.FailureMode["token"] != FailClosed || s.FailureMode["events"] != FailOpen {
		t.Fatalf("%+v", s)
	}
	// The state quotas of the security review: 100,000 counter keys,
	// 10,000 KV entries, 16 MiB of KV keys and values per (tenant, plugin).
	if d := DefaultLimits(); d.CounterKeys != 100_000 || d.KVEntries != 10_000 || d.KVBytes != 16<<20 {
		t.Fatalf("state quotas %+v", d)
	}
	if q := quotaOf(Limits{}); q != (Quota{CounterKeys: 100_000, KVEntries: 10_000, KVBytes: 16 << 20}) {
		t.Fatalf("zero limits give quota %+v", q)
	}
	if q := quotaOf(Limits{KVEntries: 7}); q.KVEntries != 7 || q.CounterKeys != 100_000 {
		t.Fatalf("quota %+v", q)
	}
}

func TestClassifyImport(t *testing.T) {
	for _, c := range []struct {
		mod, fn string
		grants  []string
		ok      bool
	}{
		{"wasi_snapshot_preview1", "fd_write", nil, true},
		{"wasi_snapshot_preview1", "fd_read", nil, false},
		{"wasi_snapshot_preview1", "sock_accept", nil, false},
		{"authority", "kv_get", []string{"kv"}, true},
		{"authority", "kv_get", []string{"counters"}, false},
		{"env", "abort", nil, false},
	} {
		if _, ok, _ := ClassifyImport(c.mod, c.fn, c.grants); ok != c.ok {
			t.Errorf("%s.%s with %v: %v", c.mod, c.fn, c.grants, ok)
		}
	}
}

// TestSpecYAML: the shape the lead embeds in authority.yaml decodes as
// documented (durations as Go duration strings, camelCase keys).
func TestSpecYAML(t *testing.T) {
	doc := `
name: sec3
path: plugins/sec3.wasm
sha256: ` + strings.Repeat("ab", 32) + `
hooks: [token, events]
failureMode: {token: open}
limits: {callTimeout: 20ms, poolSize: 2, idleTimeout: 10m, memoryPages: 128, maxOutputBytes: 4096,
  counterKeys: 50000, kvEntries: 500, kvBytes: 1048576}
grants: [counters, config]
config:
  permitLimit: 10
  clients: [a, b]
  nested: {window: 1m}
`
	var s Spec
	if err := yaml.Unmarshal([]byte(doc), &s); err != nil {
		t.Fatal(err)
	}
	if err := s.Validate("tenants[0].plugins[0]"); err != nil {
		t.Fatal(err)
	}
	if s.Limits.CallTimeout != 20*time.Millisecond || s.Limits.IdleTimeout != 10*time.Minute || s.FailureMode["token"] != FailOpen {
		t.Fatalf("%+v", s)
	}
	if s.Limits.CounterKeys != 50000 || s.Limits.KVEntries != 500 || s.Limits.KVBytes != 1<<20 {
		t.Fatalf("state quotas %+v", s.Limits)
	}
	if b, err := json.Marshal(s.Config); err != nil || !strings.Contains(string(b), `"nested":{"window":"1m"}`) {
		t.Fatalf("config %s %v", b, err)
	}
}
