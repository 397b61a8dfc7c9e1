package plugin

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"stellaops.org/authority/abi"
)

func writeModule(t *testing.T, m wasmModule) Spec {
	t.Helper()
	b := m.bytes()
	path := filepath.Join(t.TempDir(), "m.wasm")
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return Spec{Name: "hostile", Path: path, SHA256: Digest(b), Hooks: []string{abi.HookToken},
		Limits: Limits{CallTimeout: 100 * time.Millisecond}}
}

func TestLoadRefusesBrokenModules(t *testing.T) {
	ok := abiModule(1, i64c(0))
	cases := []struct {
		name string
		mod  wasmModule
		want string
	}{
		{"wrong abi version", abiModule(2, i64c(0)), "module declares 2, host speaks 1"},
		{"missing version export", wasmModule{memPages: 1, funcs: ok.funcs[1:]}, "missing export authority_abi_version"},
		{"no memory", wasmModule{funcs: ok.funcs}, `does not export memory "memory"`},
		{"decide wrong signature", wasmModule{memPages: 1, funcs: []wasmFunc{ok.funcs[0], ok.funcs[1],
			{export: "authority_decide", params: i32, results: i64, body: i64c(0)}}}, "authority_decide has the wrong signature"},
		{"forbidden wasi import", withImport(ok, "wasi_snapshot_preview1", "path_open"), "wasi_snapshot_preview1.path_open"},
		{"unknown module import", withImport(ok, "env", "socket"), "env.socket: unknown import module"},
		{"unknown host function", withImport(ok, "authority", "exec"), "authority.exec: unknown host function"},
		{"ungranted host function", withImport(ok, "authority", "kv_get"), `authority.kv_get: requires grant "kv"`},
		{"memory above limit", wasmModule{memPages: 300, funcs: ok.funcs}, "over limit of 256 pages"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := writeModule(t, c.mod)
			m, err := NewManager(context.Background(), RuntimeOptions{}, map[string][]Spec{"a": {s}}, Deps{})
			if err == nil {
				m.Close(context.Background())
				t.Fatal("loaded")
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %q does not contain %q", err, c.want)
			}
		})
	}
}

func withImport(m wasmModule, module, name string) wasmModule {
	m.imports = append(m.imports, wasmImport{module: module, name: name, params: i32, results: i32})
	return m
}

func TestHostileOutputs(t *testing.T) {
	// (ptr<<32 | len) results pointing outside memory, overflowing, oversized.
	packed := func(ptr, n uint32) []byte { return i64c(int64(uint64(ptr)<<32 | uint64(n))) }
	cases := []struct {
		name string
		body []byte
		kind FailureKind
	}{
		{"no decision", i64c(0), KindGuestError},
		{"out of bounds", packed(0xFFFF0000, 16), KindOutput},
		{"overflowing", packed(0xFFFFFFFF, 0xFFFF), KindOutput},
		{"oversized", packed(0, 1<<20), KindOutput},
		{"garbage", packed(1024, 8), KindOutput}, // the input bytes: a DecisionInput, not a Decision
		{"trap", []byte{0x00}, KindTrap},
		{"infinite loop", cat([]byte{0x03, 0x40, 0x0c, 0x00, 0x0b}, i64c(0)), KindTimeout},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := writeModule(t, abiModule(1, c.body))
			m, err := NewManager(context.Background(), RuntimeOptions{}, map[string][]Spec{"a": {s}}, Deps{})
			if err != nil {
				t.Fatal(err)
			}
			defer m.Close(context.Background())
			d, err := m.Decide(context.Background(), "a", &abi.DecisionInput{Endpoint: abi.HookToken})
			var f *Failure
			if !errors.As(err, &f) || f.Kind != c.kind {
				t.Fatalf("error %v, want kind %s", err, c.kind)
			}
			if d.Status != 503 || d.Validate() != nil {
				t.Fatalf("decision %+v", d)
			}
			m.bg.Wait()
			h := m.Health().Plugins[0]
			if h.Instantiations != 2 || h.LiveInstances != 1 || h.IdleInstances != 1 {
				t.Fatalf("failed instance not replaced by a fresh one in the background: %+v", h)
			}
		})
	}
}

func TestAllocOutOfBounds(t *testing.T) {
	mod := abiModule(1, i64c(0))
	mod.funcs[1].body = i32c(-16) // 0xFFFFFFF0
	s := writeModule(t, mod)
	m, err := NewManager(context.Background(), RuntimeOptions{}, map[string][]Spec{"a": {s}}, Deps{})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close(context.Background())
	_, err = m.Decide(context.Background(), "a", &abi.DecisionInput{Endpoint: abi.HookToken})
	if err == nil || !strings.Contains(err.Error(), "out-of-bounds pointer") {
		t.Fatalf("error = %v", err)
	}
}

func TestInitializeTimeout(t *testing.T) {
	mod := abiModule(1, i64c(0))
	mod.funcs = append(mod.funcs, wasmFunc{export: "_initialize", body: []byte{0x03, 0x40, 0x0c, 0x00, 0x0b}})
	s := writeModule(t, mod)
	start := time.Now()
	_, err := NewManager(context.Background(), RuntimeOptions{InitTimeout: 100 * time.Millisecond}, map[string][]Spec{"a": {s}}, Deps{})
	if err == nil || !strings.Contains(err.Error(), "_initialize") || time.Since(start) > 2*time.Second {
		t.Fatalf("error = %v after %s", err, time.Since(start))
	}
}

// TestStartSectionLoop: a module whose wasm start function never returns
// is stopped by the init deadline too.
func TestStartSectionLoop(t *testing.T) {
	mod := abiModule(1, i64c(0))
	mod.funcs = append(mod.funcs, wasmFunc{body: []byte{0x03, 0x40, 0x0c, 0x00, 0x0b}})
	mod.start = len(mod.funcs)
	s := writeModule(t, mod)
	start := time.Now()
	_, err := NewManager(context.Background(), RuntimeOptions{InitTimeout: 100 * time.Millisecond}, map[string][]Spec{"a": {s}}, Deps{})
	if err == nil || time.Since(start) > 2*time.Second {
		t.Fatalf("error = %v after %s", err, time.Since(start))
	}
}

func TestIdleEviction(t *testing.T) {
	s := writeModule(t, abiModule(1, i64c(0)))
	s.Limits.IdleTimeout = time.Minute
	m, err := NewManager(context.Background(), RuntimeOptions{}, map[string][]Spec{"a": {s}}, Deps{})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close(context.Background())
	if h := m.Health().Plugins[0]; h.IdleInstances != 1 {
		t.Fatalf("warm instance missing: %+v", h)
	}
	m.EvictIdle(time.Now().Add(30 * time.Second))
	if h := m.Health().Plugins[0]; h.IdleInstances != 1 {
		t.Fatalf("evicted too early: %+v", h)
	}
	m.EvictIdle(time.Now().Add(2 * time.Minute))
	if h := m.Health().Plugins[0]; h.IdleInstances != 0 || h.LiveInstances != 0 || h.Evictions != 1 {
		t.Fatalf("not evicted: %+v", h)
	}
}

func TestInspectReportsRefusedModules(t *testing.T) {
	mod := withImport(abiModule(2, i64c(0)), "env", "socket")
	info, err := Inspect(context.Background(), mod.bytes())
	if err != nil {
		t.Fatal(err)
	}
	if len(info.Imports) != 1 || info.Imports[0].Allowed || len(info.Problems) == 0 {
		t.Fatalf("%+v", info)
	}
	good, err := Inspect(context.Background(), withImport(abiModule(1, i64c(0)), "authority", "kv_get").bytes())
	if err != nil || len(good.Problems) != 0 || good.Imports[0].Grant != GrantKV || good.MemoryMinPages != 2 {
		t.Fatalf("%+v %v", good, err)
	}
	if _, err := Inspect(context.Background(), []byte("not wasm")); err == nil {
		t.Fatal("garbage accepted")
	}
}
