package plugin

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/experimental"

	"stellaops.org/authority/host/plugin/meter"
)

// RuntimeOptions configure the plugin runtime shared by every tenant.
// Zero fields take the defaults documented on each.
type RuntimeOptions struct {
	// CacheDir keeps compiled machine code across restarts (wazero
	// compilation cache). Empty: compiled code is cached in memory only.
	// Every entry is sealed with a keyed digest (HMAC-SHA-256 under the
	// key in CacheKeyFile) and wazero only ever reads entries that verified,
	// copied into a private directory removed at Close (see cache.go). The
	// directory must not be writable by group or others; it is created
	// with mode 0700 when missing.
	CacheDir string
	// CacheKeyFile holds the cache key (hex, at least 32 bytes), outside
	// CacheDir; it is created with a random key (mode 0600) when missing
	// and refused when group or others can read or write it. Default:
	// CacheDir + ".key" (DefaultCacheKeyFile).
	CacheKeyFile string
	// Logger receives compilation cache events (entries discarded, stores
	// failed). Default: discarded; NewManager uses Deps.Logger.
	Logger *slog.Logger
	// InitTimeout sets the work budget of instantiation (start function,
	// _initialize, authority_abi_version) at InitTimeout × UnitsPerMillisecond,
	// and bounds what the host waits for on its behalf. Default 2s.
	InitTimeout time.Duration
	// UnitsPerMillisecond converts a call deadline into a work budget (see
	// package meter): a guest call gets Limits.CallTimeout × this many units.
	// The default, DefaultUnitsPerMillisecond, is calibrated so that the most
	// expensive code per unit we know of spends a budget in well under its
	// deadline on an idle core (BenchmarkBudgetCalibration).
	UnitsPerMillisecond int64
	// EventQueueSize is the per-tenant telemetry queue length; events
	// beyond it are dropped and counted. Default 1024.
	EventQueueSize int
	// MaxInstances is the node's instance budget across every tenant and
	// plugin (see budget): 0 means no budget beyond each pool's PoolSize.
	MaxInstances int
	// BreakerThreshold is the number of consecutive failures that opens a
	// plugin's circuit breaker. Default 5.
	BreakerThreshold int
	// BreakerCooldown is how long an open breaker waits before letting one
	// trial call through (half-open). Default 10s.
	BreakerCooldown time.Duration
	// GuestLogRate and GuestLogBurst bound guest log lines (log host
	// function and fd_write) per tenant and plugin. Defaults 10/s, 50.
	GuestLogRate  float64
	GuestLogBurst int
	// GuestLogLineBytes truncates each guest log line. Default 1024.
	GuestLogLineBytes int
	// AuditRecordsPerCall and AuditBytesPerCall bound the audit_emit
	// records of one hook call and their encoded size; AuditRate and
	// AuditBurst bound records per second per (tenant, plugin) (a token
	// bucket). A record over any of them is refused with HostLimited and
	// counted (PluginHealth.AuditLimited). Defaults 8, 16 KiB, 10/s, 50;
	// AuditRecordsPerCall is at most 32 (abi/SPEC.md §5).
	AuditRecordsPerCall int
	AuditBytesPerCall   int
	AuditRate           float64
	AuditBurst          int
	// GuildKeys are the Ed25519 public keys trusted to sign modules (see
	// LoadGuildKeys). A module with a FILE.sig beside it loads only if the
	// signature verifies under one of them; a Spec with RequireSignature
	// loads only a module so signed. Empty: no signature can verify.
	GuildKeys []ed25519.PublicKey
}

func (o RuntimeOptions) withDefaults() RuntimeOptions {
	if o.CacheKeyFile == "" {
		o.CacheKeyFile = DefaultCacheKeyFile(o.CacheDir)
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.InitTimeout <= 0 {
		o.InitTimeout = 2 * time.Second
	}
	if o.UnitsPerMillisecond <= 0 {
		o.UnitsPerMillisecond = DefaultUnitsPerMillisecond
	}
	if o.EventQueueSize <= 0 {
		o.EventQueueSize = 1024
	}
	if o.BreakerThreshold <= 0 {
		o.BreakerThreshold = 5
	}
	if o.BreakerCooldown <= 0 {
		o.BreakerCooldown = 10 * time.Second
	}
	if o.GuestLogRate <= 0 {
		o.GuestLogRate = 10
	}
	if o.GuestLogBurst <= 0 {
		o.GuestLogBurst = 50
	}
	if o.GuestLogLineBytes <= 0 {
		o.GuestLogLineBytes = 1024
	}
	if o.AuditRecordsPerCall <= 0 {
		o.AuditRecordsPerCall = 8
	}
	o.AuditRecordsPerCall = min(o.AuditRecordsPerCall, maxAuditsPerCall)
	if o.AuditBytesPerCall <= 0 {
		o.AuditBytesPerCall = 16 << 10
	}
	if o.AuditRate <= 0 {
		o.AuditRate = 10
	}
	if o.AuditBurst <= 0 {
		o.AuditBurst = 50
	}
	return o
}

// DefaultUnitsPerMillisecond is the default RuntimeOptions.UnitsPerMillisecond.
const DefaultUnitsPerMillisecond = 100_000

// hostCallUnits is what every host function call costs the guest's budget.
const hostCallUnits = 1_000

// Runtime compiles and instantiates plugin modules. Every module first
// goes through the metering pass (package meter), then compiles. The
// Runtime owns one wazero runtime per distinct memory limit (wazero caps
// memory per runtime), all sharing one compilation cache, each with the
// authority host module and the WASI subset instantiated. Guest code is
// bounded by its work budget, never interrupted on a wall-clock deadline
// (no WithCloseOnContextDone): a deadline that fires while a healthy call
// waits for a CPU would discard it, and loop-free code escapes that check.
//
// A Runtime is safe for concurrent use.
type Runtime struct {
	opts  RuntimeOptions
	cache wazero.CompilationCache
	disk  *diskCache // nil without CacheDir
	start time.Time

	mu      sync.Mutex
	engines map[uint32]*engine
	modules map[moduleKey]*Module
	closed  bool

	// sigs caches signature verdicts by path and digest (signatureOf).
	sigMu sync.Mutex
	sigs  map[string]error
	// images are the modules' memory images, closed with the runtime.
	images []*memImage
}

type engine struct {
	rt    wazero.Runtime
	pages uint32
}

type moduleKey struct {
	sha   string
	pages uint32
}

// NewRuntime returns a Runtime. With opts.CacheDir set, the directory is
// checked (not writable by group or others) or created, and compiled code
// is reused from the entries in it whose keyed digest verifies; the others
// are discarded, logged and counted (CacheStats).
func NewRuntime(ctx context.Context, opts RuntimeOptions) (*Runtime, error) {
	opts = opts.withDefaults()
	var cache wazero.CompilationCache
	var disk *diskCache
	if opts.CacheDir != "" {
		d, c, err := openDiskCache(opts)
		if err != nil {
			return nil, err
		}
		disk, cache = d, c
	} else {
		cache = wazero.NewCompilationCache()
	}
	return &Runtime{opts: opts, cache: cache, disk: disk, start: time.Now(), engines: map[uint32]*engine{}, modules: map[moduleKey]*Module{}}, nil
}

// Options returns the effective options (defaults applied).
func (r *Runtime) Options() RuntimeOptions { return r.opts }

func (r *Runtime) engine(ctx context.Context, pages uint32) (*engine, error) {
	if e := r.engines[pages]; e != nil {
		return e, nil
	}
	cfg := wazero.NewRuntimeConfig().
		WithMemoryLimitPages(pages).
		WithCompilationCache(r.cache)
	rt := wazero.NewRuntimeWithConfig(ctx, cfg)
	if err := instantiateHostModule(ctx, rt); err != nil {
		_ = rt.Close(ctx)
		return nil, err
	}
	if err := instantiateWASI(ctx, rt, r.start); err != nil {
		_ = rt.Close(ctx)
		return nil, err
	}
	e := &engine{rt: rt, pages: pages}
	r.engines[pages] = e
	return e, nil
}

// Module is a compiled module that passed the ABI checks that do not
// depend on a tenant: it exports memory, authority_abi_version,
// authority_alloc and at least one hook entry point with the signatures of
// abi/SPEC.md, and imports only functions the host can provide. A Module is
// shared by every tenant and plugin that pins the same digest and memory
// limit; it is immutable.
type Module struct {
	// SHA256 is the hex digest of the module bytes.
	SHA256 string
	// Size is the module size in bytes.
	Size int
	// MinPages is the initial memory the module declares.
	MinPages uint32
	// Tables are the module's tables with the maxima the rewriter set.
	Tables []meter.Table

	compiled   wazero.CompiledModule
	unitsPerMs int64
	initBudget int64
	stackUnits int32
	eng        *engine
	hasInit    bool
	hasDecide  bool
	hasEvent   bool
	imports    [][2]string
	// image is the module's initial memory when the rewriter took the
	// data segments out (nil otherwise); alloc builds every instance's
	// memory from it.
	image *memImage
	alloc experimental.MemoryAllocator
}

// ABIError reports a module that does not follow the ABI (or does not
// compile).
type ABIError struct {
	SHA256 string
	Reason string
}

func (e *ABIError) Error() string { return e.Reason + " (module sha256 " + e.SHA256 + ")" }

// Digest returns the lower-case hex sha256 of b.
func Digest(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// Load checks the module bytes read from spec.Path, with their digest
// (so that a module shared by many tenants is read and hashed once),
// against spec.SHA256 and its signature (see CheckSignatureFile and
// Spec.RequireSignature), and returns the compiled Module after CheckSpec.
// spec must have defaults applied (Spec.WithDefaults).
// The sha256 pin is checked first, then the signature, both before
// compilation: bytes nobody approved never reach the compiler.
func (r *Runtime) Load(ctx context.Context, spec Spec, b []byte, digest string) (*Module, error) {
	if max := spec.Limits.MaxModuleBytes; max > 0 && len(b) > max {
		return nil, fmt.Errorf("plugin %q: module %s is %d bytes, more than limits.maxModuleBytes %d", spec.Name, spec.Path, len(b), max)
	}
	if got := digest; got != spec.SHA256 {
		return nil, fmt.Errorf("plugin %q: module %s: sha256 mismatch: configured %s, file has %s", spec.Name, spec.Path, spec.SHA256, got)
	}
	if err := r.checkSignature(spec, b, digest); err != nil {
		return nil, err
	}
	m, err := r.compile(ctx, b, digest, spec.Limits.MemoryPages)
	if err != nil {
		return nil, fmt.Errorf("plugin %q: module %s: %w", spec.Name, spec.Path, err)
	}
	if err := m.CheckSpec(spec); err != nil {
		return nil, err
	}
	return m, nil
}

// Compile rewrites wasm with the metering pass, compiles it for instances
// capped at memoryPages, and verifies the ABI exports and that every import
// is one the host could ever provide. Compiling the same bytes twice
// returns the same Module.
func (r *Runtime) Compile(ctx context.Context, wasm []byte, memoryPages uint32) (*Module, error) {
	return r.compile(ctx, wasm, Digest(wasm), memoryPages)
}

// compile is Compile for bytes whose digest the caller has: a module that
// a thousand tenants load is hashed once, not a thousand times (hashing
// 4 MB costs about as much as finding the compiled module).
func (r *Runtime) compile(ctx context.Context, wasm []byte, digest string, memoryPages uint32) (*Module, error) {
	if memoryPages == 0 {
		memoryPages = DefaultLimits().MemoryPages
	}
	key := moduleKey{sha: digest, pages: memoryPages}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return nil, errors.New("plugin: runtime closed")
	}
	if m := r.modules[key]; m != nil {
		return m, nil
	}
	e, err := r.engine(ctx, memoryPages)
	if err != nil {
		return nil, err
	}
	mopts := r.meterOptions()
	mopts.ExtractData = extractData
	rw, err := meter.Rewrite(wasm, mopts)
	if err != nil {
		return nil, &ABIError{SHA256: key.sha, Reason: "refused by the metering pass: " + err.Error()}
	}
	var img *memImage
	if rw.Data != nil {
		if img, err = newMemImage(rw.Data); err != nil {
			// No image to map: keep the segments in the module.
			r.opts.Logger.Warn("authority.plugin.image.unavailable", "sha256", key.sha, "error", err.Error())
			mopts.ExtractData = false
			if rw, err = meter.Rewrite(wasm, mopts); err != nil {
				return nil, &ABIError{SHA256: key.sha, Reason: "refused by the metering pass: " + err.Error()}
			}
		}
	}
	tag := Digest(rw.Wasm)
	if r.disk != nil {
		r.disk.before(tag)
	}
	cm, err := e.rt.CompileModule(ctx, rw.Wasm)
	if err != nil {
		img.close()
		return nil, &ABIError{SHA256: key.sha, Reason: "compile: " + err.Error()}
	}
	if r.disk != nil {
		r.disk.after(tag)
	}
	m, err := newModule(key.sha, len(wasm), cm, e)
	if err == nil && img != nil && uint64(len(img.data)) > uint64(m.MinPages)*65536 {
		err = &ABIError{SHA256: key.sha, Reason: fmt.Sprintf("data segments end at byte %d, beyond the %d initial memory pages", len(img.data), m.MinPages)}
	}
	if err != nil {
		img.close()
		_ = cm.Close(ctx)
		return nil, err
	}
	m.image, m.alloc = img, memoryFor(img)
	r.images = append(r.images, img)
	m.Tables = rw.Tables
	m.unitsPerMs = r.opts.UnitsPerMillisecond
	m.initBudget = mopts.StartFuel
	m.stackUnits = mopts.StackUnits
	r.modules[key] = m
	return m, nil
}

// meterOptions are the rewriting options of this runtime: the default
// bounds, the largest module any configuration may load, and the init
// budget as the start function's fuel.
func (r *Runtime) meterOptions() meter.Options {
	o := meter.DefaultOptions()
	o.MaxModuleBytes = maxModuleBytes
	o.StartFuel = r.unitsFor(r.opts.InitTimeout)
	return o
}

func (r *Runtime) unitsFor(d time.Duration) int64 { return unitsFor(d, r.opts.UnitsPerMillisecond) }

// unitsFor converts a deadline into a work budget.
func unitsFor(d time.Duration, perMs int64) int64 {
	return max(1, int64(d/time.Microsecond)*perMs/1000)
}

// unitsFor is the work budget of a call with deadline d.
func (m *Module) unitsFor(d time.Duration) int64 { return unitsFor(d, m.unitsPerMs) }

func newModule(sha string, size int, cm wazero.CompiledModule, e *engine) (*Module, error) {
	m := &Module{SHA256: sha, Size: size, compiled: cm, eng: e}
	fail := func(reason string) (*Module, error) { return nil, &ABIError{SHA256: sha, Reason: reason} }
	mems := cm.ExportedMemories()
	mem, ok := mems["memory"]
	if !ok {
		return fail(`does not export memory "memory"`)
	}
	m.MinPages = mem.Min()
	if m.MinPages > e.pages {
		return fail(fmt.Sprintf("declares %d initial memory pages, more than limits.memoryPages %d", m.MinPages, e.pages))
	}
	if len(cm.ImportedMemories()) > 0 {
		return fail("imports a memory")
	}
	i32, i64 := api.ValueTypeI32, api.ValueTypeI64
	want := []struct {
		name     string
		params   []api.ValueType
		results  []api.ValueType
		required bool
		flag     *bool
	}{
		{"_initialize", nil, nil, false, &m.hasInit},
		{"authority_abi_version", nil, []api.ValueType{i32}, true, nil},
		{"authority_alloc", []api.ValueType{i32}, []api.ValueType{i32}, true, nil},
		{"authority_decide", []api.ValueType{i32, i32}, []api.ValueType{i64}, false, &m.hasDecide},
		{"authority_event", []api.ValueType{i32, i32}, []api.ValueType{i32}, false, &m.hasEvent},
	}
	exports := cm.ExportedFunctions()
	for _, w := range want {
		f, ok := exports[w.name]
		if !ok {
			if w.required {
				return fail("missing export " + w.name)
			}
			continue
		}
		if !sameTypes(f.ParamTypes(), w.params) || !sameTypes(f.ResultTypes(), w.results) {
			return fail("export " + w.name + " has the wrong signature")
		}
		if w.flag != nil {
			*w.flag = true
		}
	}
	if !m.hasDecide && !m.hasEvent {
		return fail("exports neither authority_decide nor authority_event")
	}
	for _, f := range cm.ImportedFunctions() {
		mod, name, _ := f.Import()
		if _, ok, reason := ClassifyImport(mod, name, Grants()); !ok {
			return fail("forbidden import " + mod + "." + name + ": " + reason)
		}
		m.imports = append(m.imports, [2]string{mod, name})
	}
	return m, nil
}

func sameTypes(a, b []api.ValueType) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// Imports returns the module's imported functions as "module.name".
func (m *Module) Imports() []string {
	out := make([]string, len(m.imports))
	for i, im := range m.imports {
		out[i] = im[0] + "." + im[1]
	}
	return out
}

// CheckSpec verifies what depends on the configuration: every import is
// granted by spec.Grants, and the module exports the entry point of every
// hook in spec.Hooks. The error names the plugin and the import or hook.
func (m *Module) CheckSpec(spec Spec) error {
	for _, im := range m.imports {
		if _, ok, reason := ClassifyImport(im[0], im[1], spec.Grants); !ok {
			return fmt.Errorf("plugin %q: module %s imports %s.%s: %s", spec.Name, spec.Path, im[0], im[1], reason)
		}
	}
	for _, h := range spec.Hooks {
		if h == "events" && !m.hasEvent {
			return fmt.Errorf("plugin %q: hook %q needs export authority_event", spec.Name, h)
		}
		if h != "events" && !m.hasDecide {
			return fmt.Errorf("plugin %q: hook %q needs export authority_decide", spec.Name, h)
		}
	}
	return nil
}

// Close closes every compiled module and wazero runtime; instances still
// alive are closed with them. Entries compiled since the last store are
// sealed into the compilation cache directory, which is kept; the private
// directory wazero read is removed.
func (r *Runtime) Close(ctx context.Context) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return nil
	}
	r.closed = true
	var errs []error
	for _, e := range r.engines {
		errs = append(errs, e.rt.Close(ctx))
	}
	errs = append(errs, r.cache.Close(ctx))
	if r.disk != nil {
		errs = append(errs, r.disk.close())
	}
	for _, img := range r.images {
		img.close()
	}
	return errors.Join(errs...)
}

// HasDecide reports whether the module exports authority_decide.
func (m *Module) HasDecide() bool { return m.hasDecide }

// HasEvent reports whether the module exports authority_event.
func (m *Module) HasEvent() bool { return m.hasEvent }
