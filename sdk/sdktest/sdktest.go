// Package sdktest runs a compiled plugin module under the real host
// runtime (host/plugin), offline, for plugin authors' own go test: a fake
// clock, in-memory counters and key-value store, recorded audit events,
// metrics and logs.
//
//	func TestDenies(t *testing.T) {
//		wasm := sdktest.Build(t, ".")
//		p := sdktest.Run(t, wasm, sdktest.Options{Config: map[string]any{"deniedClients": []any{"bad"}}})
//		d, err := p.Decide(abi.DecisionInput{Client: "bad"})
//		...
//	}
package sdktest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"stellaops.org/authority/abi"
	"stellaops.org/authority/host/plugin"
)

// CacheDir is where Build keeps modules and Run keeps compiled code,
// keyed by content hash so reruns are fast: "authority-sdktest" in the
// user's cache directory (os.UserCacheDir), mode 0700, never the shared
// temporary directory (a module or compiled code planted there would run
// in the tests). When no user cache directory is usable, a fresh private
// temporary directory per process (left behind: it is the cache).
func CacheDir() string {
	cacheDirOnce.Do(func() { cacheDir = privateCacheDir() })
	return cacheDir
}

var (
	cacheDirOnce sync.Once
	cacheDir     string
)

func privateCacheDir() string {
	if base, err := os.UserCacheDir(); err == nil {
		dir := filepath.Join(base, "authority-sdktest")
		if os.MkdirAll(dir, 0o700) == nil && plugin.CheckCacheDir(dir) == nil {
			return dir
		}
	}
	dir, err := os.MkdirTemp("", "authority-sdktest-")
	if err != nil {
		panic("sdktest: no private cache directory: " + err.Error())
	}
	return dir
}

// Build compiles the Go guest package pkg (a directory or import path, as
// go build accepts it, resolved from the current directory) with
// GOOS=wasip1 GOARCH=wasm -buildmode=c-shared and the Makefile's reproducible
// flags, and returns the .wasm path.
// The result is cached under CacheDir by a hash of every non-standard
// source file the package depends on and the Go version.
func Build(tb testing.TB, pkg string) string {
	tb.Helper()
	path, err := BuildModule(pkg)
	if err != nil {
		tb.Fatalf("sdktest: build %s: %v", pkg, err)
	}
	return path
}

// BuildModule is Build without a testing.TB (for TestMain).
func BuildModule(pkg string) (string, error) {
	env := guestEnv()
	list := exec.Command("go", "list", "-deps", "-f", "{{if not .Standard}}{{.Dir}}{{end}}", pkg)
	list.Env = env
	out, err := list.Output()
	if err != nil {
		return "", withStderr(err)
	}
	h := sha256.New()
	io.WriteString(h, runtime.Version()+"\x00"+strings.Join(guestBuildFlags, " ")+"\x00"+pkg+"\x00")
	for _, dir := range strings.Fields(string(out)) {
		entries, err := os.ReadDir(dir)
		if err != nil {
			return "", err
		}
		for _, e := range entries {
			if e.Type()&fs.ModeType != 0 || !strings.HasSuffix(e.Name(), ".go") {
				continue
			}
			b, err := os.ReadFile(filepath.Join(dir, e.Name()))
			if err != nil {
				return "", err
			}
			io.WriteString(h, filepath.Join(dir, e.Name())+"\x00")
			h.Write(b)
		}
	}
	dir := CacheDir()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", err
	}
	dst := filepath.Join(dir, hex.EncodeToString(h.Sum(nil))[:32]+".wasm")
	if _, err := os.Stat(dst); err == nil {
		return dst, nil
	}
	tmp, err := os.CreateTemp(dir, "build-*.wasm")
	if err != nil {
		return "", err
	}
	tmp.Close()
	build := exec.Command("go", append(append([]string{"build"}, guestBuildFlags...), "-buildmode=c-shared", "-o", tmp.Name(), pkg)...)
	build.Env = env
	if out, err := build.CombinedOutput(); err != nil {
		os.Remove(tmp.Name())
		return "", &buildError{err, string(out)}
	}
	if err := os.Rename(tmp.Name(), dst); err != nil {
		return "", err
	}
	return dst, nil
}

// guestBuildFlags are the Makefile's GUEST_FLAGS: a reproducible build
// (no checkout path, no VCS stamp), so that a module built here has the
// digest `make build` gives it and examples/authority.yaml pins.
var guestBuildFlags = []string{"-trimpath", "-buildvcs=false"}

// guestEnv is the environment for go list/build of a guest: wasip1/wasm,
// and GOFLAGS without flags the wasm port refuses (-race, -msan, -asan),
// so that `GOFLAGS=-race go test ./...` still builds guests.
func guestEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if v, ok := strings.CutPrefix(kv, "GOFLAGS="); ok {
			var keep []string
			for _, f := range strings.Fields(v) {
				if f != "-race" && f != "-msan" && f != "-asan" {
					keep = append(keep, f)
				}
			}
			kv = "GOFLAGS=" + strings.Join(keep, " ")
		}
		env = append(env, kv)
	}
	return append(env, "GOOS=wasip1", "GOARCH=wasm", "CGO_ENABLED=0")
}

type buildError struct {
	err    error
	output string
}

func (e *buildError) Error() string { return e.err.Error() + "\n" + e.output }

func withStderr(err error) error {
	if ee, ok := err.(*exec.ExitError); ok {
		return &buildError{err, string(ee.Stderr)}
	}
	return err
}

// FakeClock is a settable Clock, safe for concurrent use.
type FakeClock struct {
	mu sync.Mutex
	t  time.Time
}

// NewFakeClock returns a clock stopped at t.
func NewFakeClock(t time.Time) *FakeClock { return &FakeClock{t: t} }

// Now returns the current fake time.
func (c *FakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

// Advance moves the clock forward by d.
func (c *FakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// Recorder collects what plugins send to the host's sinks.
type Recorder struct {
	mu      sync.Mutex
	events  []abi.Event
	metrics map[string]int64
	logs    bytes.Buffer
}

// Audit implements plugin.AuditSink.
func (r *Recorder) Audit(_ context.Context, _ string, ev abi.Event) error {
	r.mu.Lock()
	r.events = append(r.events, ev)
	r.mu.Unlock()
	return nil
}

// AddPluginCounter implements plugin.MetricSink.
func (r *Recorder) AddPluginCounter(_, _, name string, delta int64) {
	r.mu.Lock()
	if r.metrics == nil {
		r.metrics = map[string]int64{}
	}
	r.metrics[name] += delta
	r.mu.Unlock()
}

// AuditEvents returns the audit events emitted so far.
func (r *Recorder) AuditEvents() []abi.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]abi.Event(nil), r.events...)
}

// Metric returns a plugin counter's total.
func (r *Recorder) Metric(name string) int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.metrics[name]
}

// Logs returns the host log (runtime and guest lines) as text.
func (r *Recorder) Logs() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.logs.String()
}

type lockedWriter struct{ r *Recorder }

func (w lockedWriter) Write(b []byte) (int, error) {
	w.r.mu.Lock()
	defer w.r.mu.Unlock()
	return w.r.logs.Write(b)
}

// Options configure Run. Zero fields take the documented defaults.
type Options struct {
	// Tenant is the tenant the plugin serves. Default "test".
	Tenant string
	// Name is the plugin name. Default "plugin".
	Name string
	// Hooks default to every hook the module exports an entry point for.
	Hooks []string
	// Grants default to every grant.
	Grants []string
	// Config is the plugin configuration document.
	Config map[string]any
	// Limits default to plugin.DefaultLimits.
	Limits plugin.Limits
	// FailureMode per hook; defaults as in production.
	FailureMode map[string]plugin.FailureMode
	// Clock defaults to a FakeClock at 2025-01-01T00:00:00Z.
	Clock *FakeClock
	// PseudonymKey is the tenant secret. Default "sdktest-secret".
	PseudonymKey []byte
}

// Plugin is a module running for one tenant under the real runtime.
type Plugin struct {
	Manager  *plugin.Manager
	Tenant   string
	Clock    *FakeClock
	Counters *plugin.MemoryCounters
	KV       *plugin.MemoryKV
	Recorder *Recorder
}

// Run loads wasmPath for one tenant with opts and closes it at the end of
// the test. It fails the test if the module does not load.
func Run(tb testing.TB, wasmPath string, opts Options) *Plugin {
	tb.Helper()
	p, err := Start(wasmPath, opts)
	if err != nil {
		tb.Fatalf("sdktest: %v", err)
	}
	tb.Cleanup(func() { _ = p.Manager.Close(context.Background()) })
	return p
}

// Start is Run without a testing.TB; the caller closes p.Manager.
func Start(wasmPath string, opts Options) (*Plugin, error) {
	return StartTenants(wasmPath, map[string]Options{tenantOr(opts.Tenant): opts})
}

func tenantOr(t string) string {
	if t == "" {
		return "test"
	}
	return t
}

// StartTenants loads one module for several tenants at once, each with its
// own options (Clock, PseudonymKey of the first tenant in map order apply
// to all). The returned Plugin's Tenant is empty: use DecideFor.
func StartTenants(wasmPath string, tenants map[string]Options) (*Plugin, error) {
	ctx := context.Background()
	b, err := os.ReadFile(wasmPath)
	if err != nil {
		return nil, err
	}
	cache := filepath.Join(CacheDir(), "compiled")
	var hasDecide, hasEvent bool
	{
		rt, err := plugin.NewRuntime(ctx, plugin.RuntimeOptions{CacheDir: cache})
		if err != nil {
			return nil, err
		}
		m, err := rt.Compile(ctx, b, 0)
		if err == nil {
			hasDecide, hasEvent = m.HasDecide(), m.HasEvent()
		}
		_ = rt.Close(ctx)
		if err != nil {
			return nil, err
		}
	}
	p := &Plugin{Recorder: &Recorder{}}
	specs := map[string][]plugin.Spec{}
	keys := plugin.StaticSecrets{}
	for tenant, o := range tenants {
		tenant = tenantOr(tenant)
		if p.Clock == nil {
			p.Clock = o.Clock
		}
		hooks := o.Hooks
		if hooks == nil {
			if hasDecide {
				hooks = append(hooks, abi.HookToken, abi.HookIntrospect, abi.HookFreshAuth)
			}
			if hasEvent {
				hooks = append(hooks, abi.HookEvents)
			}
		}
		grants := o.Grants
		if grants == nil {
			grants = plugin.Grants()
		}
		name := o.Name
		if name == "" {
			name = "plugin"
		}
		key := o.PseudonymKey
		if key == nil {
			key = []byte("sdktest-secret")
		}
		keys[tenant] = key
		specs[tenant] = []plugin.Spec{{
			Name: name, Path: wasmPath, SHA256: plugin.Digest(b), Hooks: hooks,
			FailureMode: o.FailureMode, Limits: o.Limits, Grants: grants, Config: o.Config,
		}}
		if len(tenants) == 1 {
			p.Tenant = tenant
		}
	}
	if p.Clock == nil {
		p.Clock = NewFakeClock(time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC))
	}
	p.Counters = plugin.NewMemoryCounters(p.Clock)
	p.KV = plugin.NewMemoryKV(p.Clock)
	deps := plugin.Deps{
		Clock: p.Clock, Counters: p.Counters, KV: p.KV, Secrets: keys,
		Audit: p.Recorder, Metrics: p.Recorder,
		Logger: slog.New(slog.NewTextHandler(lockedWriter{p.Recorder}, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	m, err := plugin.NewManager(ctx, plugin.RuntimeOptions{CacheDir: cache}, specs, deps)
	if err != nil {
		return nil, err
	}
	p.Manager = m
	return p, nil
}

// Decide runs the token hook (or in.Endpoint when set) for p.Tenant.
func (p *Plugin) Decide(in abi.DecisionInput) (abi.Decision, error) {
	return p.DecideFor(p.Tenant, in)
}

// DecideFor runs the policy hook for tenant.
func (p *Plugin) DecideFor(tenant string, in abi.DecisionInput) (abi.Decision, error) {
	if in.Endpoint == "" {
		in.Endpoint = abi.HookToken
	}
	if in.Time.IsZero() {
		in.Time = p.Clock.Now()
	}
	return p.Manager.Decide(context.Background(), tenant, &in)
}

// Event delivers ev to the events hook synchronously.
func (p *Plugin) Event(ev abi.Event) error {
	if ev.Time.IsZero() {
		ev.Time = p.Clock.Now()
	}
	return p.Manager.EmitSync(context.Background(), p.Tenant, ev)
}
