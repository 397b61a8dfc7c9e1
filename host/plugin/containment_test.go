package plugin

// The hostile-module containment suite (issue 6). Every runtime case runs
// a hostile module for tenant "evil" next to a good module for tenant
// "good" in one Manager and shows that:
//
//  1. the host keeps serving: "good" calls running concurrently with the
//     hostile call all succeed (and some complete while it runs);
//  2. the failure mode applies: the hostile call answers 503
//     temporarily_unavailable (fail closed) naming the failure kind;
//  3. the reason is logged and counted: the returned *Failure (what the
//     oauth layer logs as authority.plugin.failed) names tenant, plugin and
//     kind, the Observer sees the kind, the Health counter for it moves and
//     LastError holds the reason;
//  4. the instance is replaced: the failed instance is discarded, a fresh
//     one is started (Instantiations 2, one idle) and the next call runs on
//     it (and fails the same way, not as a poisoned instance).
//
// Load-time cases (forbidden import, missing export, wrong ABI version,
// infinite loop in _initialize or a start function) never get an instance:
// TestHostileModuleRefusedWhileOthersServe shows a running Manager keeps
// serving while a new set containing the module is refused with the reason.
// The WAT sources are in testdata/hostile (wat2wasm from Debian's wabt).

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"stellaops.org/authority/abi"
	"stellaops.org/authority/internal/testenv"
)

func hostileFile(t *testing.T, name string) Spec {
	t.Helper()
	path := filepath.Join("testdata", "hostile", name+".wasm")
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return Spec{Name: "hostile", Path: path, SHA256: Digest(b), Hooks: []string{abi.HookToken},
		Limits: Limits{CallTimeout: 100 * time.Millisecond}}
}

// TestHostileWasmUpToDate rebuilds every testdata/hostile/*.wat with
// wat2wasm (skipped when it is not installed) and compares with the
// committed .wasm.
func TestHostileWasmUpToDate(t *testing.T) {
	if _, err := exec.LookPath("wat2wasm"); err != nil {
		t.Skip("wat2wasm not installed (apt-get install wabt)")
	}
	wats, _ := filepath.Glob(filepath.Join("testdata", "hostile", "*.wat"))
	if len(wats) == 0 {
		t.Fatal("no .wat sources")
	}
	for _, wat := range wats {
		out := filepath.Join(t.TempDir(), "m.wasm")
		if b, err := exec.Command("wat2wasm", wat, "-o", out).CombinedOutput(); err != nil {
			t.Fatalf("%s: %v\n%s", wat, err, b)
		}
		got, _ := os.ReadFile(out)
		committed, err := os.ReadFile(strings.TrimSuffix(wat, ".wat") + ".wasm")
		if err != nil || !bytes.Equal(got, committed) {
			t.Errorf("%s: committed .wasm is stale (wat2wasm %s -o %s.wasm)", wat, wat, strings.TrimSuffix(wat, ".wat"))
		}
	}
}

type kindRecorder struct {
	mu    sync.Mutex
	kinds map[string][]FailureKind // tenant → failure kinds ("" success)
}

func (k *kindRecorder) PluginCall(tenant, _, _ string, _ time.Duration, f FailureKind) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.kinds == nil {
		k.kinds = map[string][]FailureKind{}
	}
	k.kinds[tenant] = append(k.kinds[tenant], f)
}

func (k *kindRecorder) of(tenant string) []FailureKind {
	k.mu.Lock()
	defer k.mu.Unlock()
	return append([]FailureKind(nil), k.kinds[tenant]...)
}

type testClock struct{ ns atomic.Int64 }

func (c *testClock) Now() time.Time       { return time.Unix(0, c.ns.Load()) }
func (c *testClock) Set(t time.Time)      { c.ns.Store(t.UnixNano()) }
func newTestClock(t time.Time) *testClock { c := &testClock{}; c.Set(t); return c }

type containment struct {
	m    *Manager
	logs *testenv.SyncBuffer
	obs  *kindRecorder
}

func newContainment(t *testing.T, evil Spec, opts RuntimeOptions, clock Clock) *containment {
	t.Helper()
	good := hostileFile(t, "good")
	good.Name = "good"
	c := &containment{logs: &testenv.SyncBuffer{}, obs: &kindRecorder{}}
	deps := Deps{Observer: c.obs, Clock: clock,
		Logger: slog.New(slog.NewTextHandler(c.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))}
	m, err := NewManager(context.Background(), opts, map[string][]Spec{"evil": {evil}, "good": {good}}, deps)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close(context.Background()) })
	c.m = m
	return c
}

// whileServingGood runs f while other goroutines keep calling tenant
// "good"; it fails the test if any good call fails or none completed
// while f ran.
func (c *containment) whileServingGood(t *testing.T, f func()) {
	t.Helper()
	var stop atomic.Bool
	var ok, bad atomic.Int64
	var during atomic.Int64
	var running atomic.Bool
	var wg sync.WaitGroup
	var firstErr atomic.Pointer[string]
	for i := 0; i < 2; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !stop.Load() {
				d, err := c.m.Decide(context.Background(), "good", &abi.DecisionInput{Endpoint: abi.HookToken, Client: "c"})
				if err != nil || !d.Allow {
					bad.Add(1)
					msg := "good tenant failed: " + errString(err)
					firstErr.CompareAndSwap(nil, &msg)
					continue
				}
				ok.Add(1)
				if running.Load() {
					during.Add(1)
				}
				time.Sleep(time.Millisecond)
			}
		}()
	}
	waitFor := func(n int64) {
		for deadline := time.Now().Add(5 * time.Second); ok.Load() < n && bad.Load() == 0 && time.Now().Before(deadline); {
			time.Sleep(time.Millisecond)
		}
	}
	waitFor(1) // good calls flow before,
	running.Store(true)
	start := time.Now()
	f()
	took := time.Since(start)
	running.Store(false)
	waitFor(ok.Load() + 2) // and after the hostile call
	stop.Store(true)
	wg.Wait()
	if bad.Load() > 0 {
		t.Fatalf("%d good-tenant calls failed: %s", bad.Load(), *firstErr.Load())
	}
	// and during it, when it lasted long enough to tell.
	if took > 50*time.Millisecond && during.Load() == 0 {
		t.Fatalf("no good-tenant call completed during the %s hostile call (%d in all)", took, ok.Load())
	}
}

func errString(err error) string {
	if err == nil {
		return "<nil> (denied)"
	}
	return err.Error()
}

func evilHealth(m *Manager) PluginHealth {
	for _, h := range m.Health().Plugins {
		if h.Tenant == "evil" {
			return h
		}
	}
	panic("no evil plugin")
}

// checkFailClosed checks rules 2 and 3 for one hostile call.
func checkFailClosed(t *testing.T, d abi.Decision, err error, kind FailureKind) {
	t.Helper()
	var f *Failure
	if !errors.As(err, &f) || f.Kind != kind {
		t.Fatalf("error %v, want kind %s", err, kind)
	}
	if msg := err.Error(); !strings.Contains(msg, `tenant "evil"`) || !strings.Contains(msg, `plugin "hostile"`) || !strings.Contains(msg, string(kind)) {
		t.Fatalf("failure %q does not name tenant, plugin and kind", msg)
	}
	if d.Allow || d.Status != abi.StatusUnavailable || d.Error != abi.ErrorTemporarilyUnavailable || d.RetryAfter < 1 || d.Validate() != nil {
		t.Fatalf("not failed closed: %+v", d)
	}
	if len(d.Annotations) != 1 || d.Annotations[0] != (abi.KV{Key: "hostile.failure", Value: string(kind)}) {
		t.Fatalf("annotations %+v", d.Annotations)
	}
}

func TestHostileModuleContainment(t *testing.T) {
	packed := func(ptr, n uint32) []byte { return i64c(int64(uint64(ptr)<<32 | uint64(n))) }
	loop := []byte{0x03, 0x40, 0x0c, 0x00, 0x0b}
	badAlloc := abiModule(1, i64c(0))
	badAlloc.funcs[1].body = i32c(-16)
	cases := []struct {
		name    string
		spec    func(t *testing.T) Spec
		kind    FailureKind
		counter func(PluginHealth) uint64
		reason  string // in LastError
	}{
		{"infinite loop in hook", mod(abiModule(1, cat(loop, i64c(0)))), KindTimeout, timeouts, "work budget"},
		// No loop anywhere: 2^40 calls, each charged at function entry.
		{"loop-free binary recursion", file("binrec", nil), KindTimeout, timeouts, "work budget"},
		{"memory.fill without end", file("bulkfill", nil), KindTimeout, timeouts, "work budget"},
		{"host calls without end", file("hostloop", []string{GrantClock}), KindTimeout, timeouts, "work budget"},
		{"cache misses and divisions without end", file("chase", nil), KindTimeout, timeouts, "work budget"},
		{"sleep through poll_oneoff", file("pollsleep", nil), KindTimeout, timeouts, ""},
		{"trap", mod(abiModule(1, []byte{0x00})), KindTrap, traps, "unreachable"},
		// The injected stack units stop the recursion after 10,000 frames,
		// long before wazero's own 400 MB stack limit or the work budget.
		{"deep recursion", file("recursion", nil), KindTrap, traps, "stack overflow"},
		{"unbounded memory.grow", func(t *testing.T) Spec {
			s := hostileFile(t, "growloop")
			s.Limits.MemoryPages = 32
			return s
		}, KindTrap, traps, "unreachable"},
		{"out-of-bounds output pointer", mod(abiModule(1, packed(0xFFFF0000, 16))), KindOutput, outputs, "outside guest memory"},
		{"overflowing output pointer and length", mod(abiModule(1, packed(0xFFFFFFFF, 0xFFFF))), KindOutput, outputs, "exceeds limits.maxOutputBytes"},
		{"overflowing output within cap", func(t *testing.T) Spec {
			s := writeModule(t, abiModule(1, packed(0xFFFFFFFF, 0xFFFF)))
			s.Limits.MaxOutputBytes = 1 << 20
			return s
		}, KindOutput, outputs, "outside guest memory"},
		{"oversized output", mod(abiModule(1, packed(0, 1<<20))), KindOutput, outputs, "exceeds limits.maxOutputBytes"},
		{"malformed output", mod(abiModule(1, packed(1024, 8))), KindOutput, outputs, ""},
		{"out-of-bounds input buffer", mod(badAlloc), KindOutput, outputs, "out-of-bounds pointer"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			spec := c.spec(t)
			ct := newContainment(t, spec, RuntimeOptions{}, nil)
			var d abi.Decision
			var err error
			start := time.Now()
			ct.whileServingGood(t, func() {
				d, err = ct.m.Decide(context.Background(), "evil", &abi.DecisionInput{Endpoint: abi.HookToken})
			})
			if el := time.Since(start); el > spec.Limits.CallTimeout+2*time.Second {
				t.Fatalf("hostile call took %s", el)
			}
			checkFailClosed(t, d, err, c.kind)
			ct.m.bg.Wait()
			h := evilHealth(ct.m)
			if c.counter(h) != 1 || h.Failures != 1 || !strings.HasPrefix(h.LastError, string(c.kind)+": ") || !strings.Contains(h.LastError, c.reason) {
				t.Fatalf("not counted: %+v", h)
			}
			if k := ct.obs.of("evil"); len(k) != 1 || k[0] != c.kind {
				t.Fatalf("observer saw %v", k)
			}
			if h.Instantiations != 2 || h.LiveInstances != 1 || h.IdleInstances != 1 {
				t.Fatalf("failed instance not replaced: %+v", h)
			}
			// The replacement serves the next call (and fails it the same way).
			d, err = ct.m.Decide(context.Background(), "evil", &abi.DecisionInput{Endpoint: abi.HookToken})
			checkFailClosed(t, d, err, c.kind)
			ct.m.bg.Wait()
			if h := evilHealth(ct.m); h.Instantiations != 3 || h.Calls != 2 || c.counter(h) != 2 {
				t.Fatalf("second call: %+v", h)
			}
		})
	}
}

func mod(m wasmModule) func(t *testing.T) Spec {
	return func(t *testing.T) Spec { return writeModule(t, m) }
}

func file(name string, grants []string) func(t *testing.T) Spec {
	return func(t *testing.T) Spec {
		s := hostileFile(t, name)
		s.Grants = grants
		return s
	}
}

func timeouts(h PluginHealth) uint64 { return h.Timeouts }
func traps(h PluginHealth) uint64    { return h.Traps }
func outputs(h PluginHealth) uint64  { return h.InvalidOutputs }

// TestHostileLogFlood: 100000 log lines in one call are cut to the
// per-plugin burst; the drops are counted, the call itself succeeds and
// the instance is kept.
func TestHostileLogFlood(t *testing.T) {
	s := withGrants(hostileFile(t, "logflood"), GrantLog)
	s.Limits.CallTimeout = 5 * time.Second // 100000 host calls; slow under -race
	ct := newContainment(t, s, RuntimeOptions{}, nil)
	var d abi.Decision
	var err error
	ct.whileServingGood(t, func() {
		d, err = ct.m.Decide(context.Background(), "evil", &abi.DecisionInput{Endpoint: abi.HookToken})
	})
	if err != nil || !d.Allow {
		t.Fatalf("%+v %v", d, err)
	}
	h := evilHealth(ct.m)
	lines := strings.Count(ct.logs.String(), "flood line")
	burst := ct.m.opts.GuestLogBurst
	if lines < 1 || lines > burst+5 || h.GuestLogDrops < uint64(100000-burst-5) || h.GuestLogDrops+uint64(lines) != 100000 {
		t.Fatalf("logged %d lines, dropped %d (burst %d)", lines, h.GuestLogDrops, burst)
	}
	if h.Instantiations != 1 || h.Failures != 0 {
		t.Fatalf("%+v", h)
	}
}

func withGrants(s Spec, g ...string) Spec { s.Grants = g; return s }

// TestHostileLateInitializeLoop: a module whose _initialize starts
// spinning after it was admitted (here: once the clock passes 2030) is
// stopped by the init deadline each time an instance is replaced; the
// background replacement's failure is logged and counted, calls fail
// closed with kind instantiate, and other tenants keep being served.
func TestHostileLateInitializeLoop(t *testing.T) {
	clock := newTestClock(time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC))
	s := withGrants(hostileFile(t, "lateinitloop"), GrantClock)
	s.Limits.CallTimeout = 100 * time.Millisecond
	ct := newContainment(t, s, RuntimeOptions{InitTimeout: 100 * time.Millisecond}, clock)
	clock.Set(time.Date(2031, 1, 1, 0, 0, 0, 0, time.UTC))
	var d abi.Decision
	var err error
	ct.whileServingGood(t, func() {
		d, err = ct.m.Decide(context.Background(), "evil", &abi.DecisionInput{Endpoint: abi.HookToken})
		checkFailClosed(t, d, err, KindTrap)
		ct.m.bg.Wait() // the replacement spins in _initialize until the init deadline
	})
	h := evilHealth(ct.m)
	if h.InstantiateFailures != 1 || !strings.Contains(h.LastError, "_initialize") || h.LiveInstances != 0 {
		t.Fatalf("background replacement failure not counted: %+v", h)
	}
	if logs := ct.logs.String(); !strings.Contains(logs, "authority.plugin.instance.failed") || !strings.Contains(logs, "tenant=evil") {
		t.Fatalf("not logged: %s", logs)
	}
	start := time.Now()
	ct.whileServingGood(t, func() {
		d, err = ct.m.Decide(context.Background(), "evil", &abi.DecisionInput{Endpoint: abi.HookToken})
	})
	checkFailClosed(t, d, err, KindInstantiate)
	if el := time.Since(start); el > 2*time.Second {
		t.Fatalf("took %s", el)
	}
	if h := evilHealth(ct.m); h.InstantiateFailures != 2 || h.Failures != 2 {
		t.Fatalf("%+v", h)
	}
	if k := ct.obs.of("evil"); len(k) != 2 || k[1] != KindInstantiate {
		t.Fatalf("observer saw %v", k)
	}
}

// TestHostileModuleRefusedWhileOthersServe: modules refused at load never
// run; a Manager already serving keeps serving while the new set that
// contains them is refused with the reason (the shape of a hot reload).
func TestHostileModuleRefusedWhileOthersServe(t *testing.T) {
	ok := abiModule(1, i64c(0))
	loop := []byte{0x03, 0x40, 0x0c, 0x00, 0x0b}
	initLoop := abiModule(1, i64c(0))
	initLoop.funcs = append(initLoop.funcs, wasmFunc{export: "_initialize", body: loop})
	startLoop := abiModule(1, i64c(0))
	startLoop.funcs = append(startLoop.funcs, wasmFunc{body: loop})
	startLoop.start = len(startLoop.funcs)
	cases := []struct {
		name string
		spec func(t *testing.T) Spec
		want string
	}{
		{"forbidden import", file("forbidden", nil), "forbidden import env.socket: unknown import module"},
		{"forbidden WASI import", mod(withImport(ok, WASIModule, "path_open")), "wasi_snapshot_preview1.path_open: WASI function outside the allowed subset"},
		{"ungranted host function", mod(withImport(ok, HostModule, "kv_set")), `authority.kv_set: requires grant "kv"`},
		{"missing export", mod(wasmModule{memPages: 1, funcs: ok.funcs[:2]}), "exports neither authority_decide nor authority_event"},
		{"missing ABI marker", file("noabi", nil), "missing export authority_abi_version"},
		{"wrong ABI version", file("version2", nil), "module declares 2, host speaks 1"},
		{"infinite loop in _initialize", mod(initLoop), "_initialize"},
		{"infinite loop in start function", mod(startLoop), "tenant \"evil\""},
		{"loop-free recursion in _initialize", file("binrecinit", nil), "_initialize: work budget"},
		{"table minimum of 2^27 entries", file("tablemin", nil), "tables declare 134217728 entries at minimum"},
		{"reserved export name", file("reserved", nil), `"authority_meter_fuel" uses the reserved prefix`},
	}
	ct := newContainment(t, withName(hostileFile(t, "good"), "hostile"), RuntimeOptions{}, nil)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			good := hostileFile(t, "good")
			good.Name = "good"
			ct.whileServingGood(t, func() {
				start := time.Now()
				m, err := NewManager(context.Background(), RuntimeOptions{InitTimeout: 100 * time.Millisecond},
					map[string][]Spec{"evil": {c.spec(t)}, "good": {good}}, Deps{})
				if err == nil {
					m.Close(context.Background())
					t.Fatal("loaded")
				}
				if !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), `"hostile"`) {
					t.Fatalf("error %q does not name the plugin and %q", err, c.want)
				}
				if el := time.Since(start); el > 2*time.Second {
					t.Fatalf("refusal took %s", el)
				}
			})
		})
	}
	if h := ct.m.Health(); !h.Ready || h.Degraded {
		t.Fatalf("serving manager affected: %+v", h)
	}
}

func withName(s Spec, n string) Spec { s.Name = n; return s }

// TestPoolBusyFailsClosed: with limits.poolSize instances all busy, a
// further call waits for one (at most limits.callTimeout, or until the
// request's context ends), then fails closed with kind pool_busy, which
// does not count against the breaker.
func TestPoolBusyFailsClosed(t *testing.T) {
	s := hostileFile(t, "pollsleep")
	s.Limits.PoolSize = 1
	s.Limits.CallTimeout = 200 * time.Millisecond
	ct := newContainment(t, s, RuntimeOptions{}, nil)
	done := make(chan struct{})
	go func() {
		defer close(done)
		ct.m.Decide(context.Background(), "evil", &abi.DecisionInput{Endpoint: abi.HookToken})
	}()
	// Wait until the first call holds the only instance (no sleep-and-hope:
	// on a loaded machine the goroutine may start late).
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(time.Millisecond) {
		if h := evilHealth(ct.m); h.Calls == 1 && h.IdleInstances == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the first call never took the instance")
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	d, err := ct.m.Decide(ctx, "evil", &abi.DecisionInput{Endpoint: abi.HookToken})
	checkFailClosed(t, d, err, KindPoolBusy)
	<-done
	if h := evilHealth(ct.m); h.ConsecutiveFailures != 1 || h.Timeouts != 1 {
		t.Fatalf("%+v", h)
	}
}

// TestHostileTableGrowCapped: a table declared without a maximum gets the
// host's (65,536 entries), so growing it by 2^31 and then 2^20 entries at
// a time fails (-1) at the cap instead of allocating host memory: the
// guest checks table.size and allows only when the cap held, and the
// host heap stays small (it grew by ~1.2 GiB before the cap).
func TestHostileTableGrowCapped(t *testing.T) {
	ct := newContainment(t, hostileFile(t, "tablegrow"), RuntimeOptions{}, nil)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for i := 0; i < 20; i++ {
		d, err := ct.m.Decide(context.Background(), "evil", &abi.DecisionInput{Endpoint: abi.HookToken})
		if err != nil || !d.Allow {
			t.Fatalf("call %d: %+v %v", i, d, err)
		}
	}
	runtime.ReadMemStats(&after)
	if grew := int64(after.HeapAlloc) - int64(before.HeapAlloc); grew > 64<<20 {
		t.Fatalf("host heap grew by %d MiB", grew>>20)
	}
}
