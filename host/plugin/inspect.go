package plugin

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"

	"github.com/tetratelabs/wazero"

	"stellaops.org/authority/abi"
	"stellaops.org/authority/host/plugin/meter"
)

// ImportInfo describes one imported function of a module.
type ImportInfo struct {
	Module, Name string
	// Grant is the grant that unlocks it ("" for WASI and unknown imports).
	Grant string
	// Allowed reports whether some configuration could allow it (a known
	// host function or a WASI function of the subset).
	Allowed bool
	// Reason explains a forbidden import.
	Reason string
}

// ModuleInfo is what a reviewer needs to know about a module before
// granting it anything. Inspect fills it for any valid wasm binary, even
// one the host would refuse.
type ModuleInfo struct {
	SHA256 string
	Size   int
	// MemoryMinPages / MemoryMaxPages are the declared limits of the
	// exported memory "memory" (max 0 with HasMemoryMax false: none).
	MemoryMinPages, MemoryMaxPages uint32
	HasMemoryMax                   bool
	Exports                        []string
	Imports                        []ImportInfo
	// Tables are the module's tables with the maxima the host enforces.
	Tables []meter.Table
	// Limits are the defaults that apply unless the configuration sets
	// others; CallBudget and InitBudget the work budgets (units) they give
	// a call and an instantiation; StackUnits bounds the call depth;
	// MaxTableEntries the sum of the table maxima.
	Limits                 Limits
	CallBudget, InitBudget int64
	StackUnits             int32
	MaxTableEntries        uint32
	// Problems lists every reason the host would refuse the module under
	// any configuration; empty means loadable with the right grants.
	Problems []string
}

// Inspect runs wasm through the metering pass and compiles the result
// without instantiating it, exactly as the host would, and reports its
// exports, imports (each classified), memory and tables, the limits that
// will apply, and the problems the host would refuse it for. A module the
// metering pass refuses (too large, unsupported feature, reserved export)
// is reported with that problem and nothing else, since the host never
// compiles it. The error is non-nil only when wasm is not a valid module
// at all. Inspect never runs guest code.
func Inspect(ctx context.Context, wasm []byte) (*ModuleInfo, error) {
	d := DefaultLimits()
	opts := RuntimeOptions{}.withDefaults()
	mo := meter.DefaultOptions()
	info := &ModuleInfo{SHA256: Digest(wasm), Size: len(wasm), Limits: d,
		CallBudget: unitsFor(d.CallTimeout, opts.UnitsPerMillisecond), InitBudget: unitsFor(opts.InitTimeout, opts.UnitsPerMillisecond),
		StackUnits: mo.StackUnits, MaxTableEntries: mo.MaxTableEntries}
	if len(wasm) > d.MaxModuleBytes {
		info.Problems = append(info.Problems, fmt.Sprintf("module is %d bytes, more than the default limits.maxModuleBytes %d", len(wasm), d.MaxModuleBytes))
	}
	mo.MaxModuleBytes = maxModuleBytes
	mo.StartFuel = info.InitBudget
	rw, err := meter.Rewrite(wasm, mo)
	if err != nil {
		if len(wasm) < 8 || string(wasm[:4]) != "\x00asm" {
			return nil, fmt.Errorf("plugin: not a valid wasm module: %w", err)
		}
		info.Problems = append(info.Problems, "refused by the metering pass: "+err.Error())
		return info, nil
	}
	info.Tables = rw.Tables
	rt := wazero.NewRuntime(ctx)
	defer rt.Close(ctx)
	cm, err := rt.CompileModule(ctx, rw.Wasm)
	if err != nil {
		return nil, fmt.Errorf("plugin: not a valid wasm module: %w", err)
	}
	for name := range cm.ExportedFunctions() {
		info.Exports = append(info.Exports, name)
	}
	for name := range cm.ExportedMemories() {
		info.Exports = append(info.Exports, name+" (memory)")
	}
	sort.Strings(info.Exports)
	if mem, ok := cm.ExportedMemories()["memory"]; ok {
		info.MemoryMinPages = mem.Min()
		info.MemoryMaxPages, info.HasMemoryMax = mem.Max()
	}
	for _, f := range cm.ImportedFunctions() {
		mod, name, _ := f.Import()
		grant, _, reason := ClassifyImport(mod, name, Grants())
		info.Imports = append(info.Imports, ImportInfo{Module: mod, Name: name, Grant: grant, Allowed: reason == "", Reason: reason})
	}
	// Reuse the load-time checks against a runtime with the maximum memory
	// so that only ABI problems are reported.
	if _, err := newModule(info.SHA256, len(wasm), cm, &engine{pages: maxMemoryPages}); err != nil {
		info.Problems = append(info.Problems, err.(*ABIError).Reason)
	}
	for _, im := range info.Imports {
		if !im.Allowed && len(info.Problems) == 0 {
			info.Problems = append(info.Problems, "forbidden import "+im.Module+"."+im.Name+": "+im.Reason)
		}
	}
	return info, nil
}

// ProbeABIVersion starts one instance of wasm in the sandbox (every grant,
// no configuration, memory capped at max(DefaultLimits().MemoryPages,
// minPages), the default init deadline) and returns the ABI version its
// authority_abi_version declares, which may differ from abi.Version. Pass
// ModuleInfo.MemoryMinPages as minPages. It fails when the module is
// refused at compilation (see Inspect's Problems) or does not start (trap
// or deadline in _initialize).
func ProbeABIVersion(ctx context.Context, wasm []byte, minPages uint32) (uint32, error) {
	rt, err := NewRuntime(ctx, RuntimeOptions{})
	if err != nil {
		return 0, err
	}
	defer rt.Close(ctx)
	pages := min(max(DefaultLimits().MemoryPages, minPages), maxMemoryPages)
	mod, err := rt.Compile(ctx, wasm, pages)
	if err != nil {
		return 0, err
	}
	var hooks []string
	if mod.hasDecide {
		hooks = append(hooks, abi.HookToken)
	}
	if mod.hasEvent {
		hooks = append(hooks, abi.HookEvents)
	}
	spec := Spec{Name: "probe", Hooks: hooks, Grants: Grants(), Limits: Limits{MemoryPages: pages}}.WithDefaults()
	deps := Deps{Secrets: StaticSecrets{"probe": []byte("probe")}}.withDefaults()
	opts := rt.Options()
	var bg sync.WaitGroup
	p, err := newPool("probe", spec, mod, &deps, &opts, &bg)
	if err != nil {
		return 0, err
	}
	inst, err := newInstance(p)
	var ve *versionError
	if errors.As(err, &ve) {
		return ve.declared, nil
	}
	if err != nil {
		return 0, fmt.Errorf("instance does not start: %w", err)
	}
	inst.close()
	return abi.Version, nil
}
