// Package meter is the load-time rewriting pass every plugin module goes
// through before the host compiles it. It makes the sandbox's limits hold
// for any module, whatever its code does, without wall-clock interruption:
//
//   - Work metering. The rewriter appends a mutable i64 global (exported as
//     FuelExport) and charges it, counting down, in advance of the code it
//     pays for: a small function or loop pays its whole own code at entry
//     or at each iteration (it runs at most once per call or iteration); a
//     large one pays per region between block boundaries, so a function
//     that runs few of its blocks pays for those (see scopes in code.go).
//     The guest traps at the first function entry, loop header or dynamic
//     charge that finds the global negative. Bulk memory and
//     table operations are charged by their length, memory.grow by the
//     pages it asks for (table.grow is bounded by the table's maximum). When
//     the global goes negative the guest traps. The host sets the global
//     before each call (the call's budget) and reads it after (what the
//     call used; negative after a trap means the budget ran out).
//   - Call depth. A second mutable global (StackExport, i32) counts stack
//     units down at every call site: a call to a function with n params and
//     locals costs 1 + n/16 units (call_indirect: the most any function of
//     its type costs), given back when it returns. At zero the guest traps
//     before the call, long before wazero's own stack (400 MB) grows.
//   - Tables. Every table gets a maximum, so table.grow fails (-1) instead
//     of allocating host memory; the sum of the maxima is capped.
//   - Size. Modules, function bodies, counts and nesting above the limits
//     in Options are refused before any compiler sees them.
//
// The rewrite is deterministic (same input and Options, same output) and
// versioned (Version). It refuses what it cannot meter soundly: SIMD,
// threads, tail calls, exception handling, multiple memories, memory64,
// imported tables, memories or globals, and exports that use the reserved
// prefix. Its output is meant to be validated by wazero at compilation;
// the rewriter itself only checks what it needs to rewrite correctly.
package meter

import "fmt"

// Version identifies the rewriting scheme; it changes whenever the output
// for a given input changes, so compiled code cached under one version is
// never reused under another. 2: data segments coalesced. 3: optionally
// extracted (Options.ExtractData).
const Version = 3

// Reserved export names. Input modules may not export anything starting
// with ReservedPrefix.
const (
	ReservedPrefix = "authority_meter"
	FuelExport     = "authority_meter_fuel"
	StackExport    = "authority_meter_stack"
)

// Charges of the dynamic operations, in work units.
const (
	// BulkBytesPerUnit: memory.fill/copy/init pay one unit per this many bytes.
	BulkBytesPerUnit = 16
	// PageUnits is charged per 64 KiB page asked of memory.grow (the host
	// zeroes, and may copy, that much memory).
	PageUnits = 4096
	// localsPerStackUnit: a frame costs 1 + (params+locals)/localsPerStackUnit.
	localsPerStackUnit = 16
)

// Options bound what the rewriter accepts and set the initial values of
// the injected globals.
type Options struct {
	// MaxModuleBytes refuses larger modules.
	MaxModuleBytes int
	// MaxTableEntries caps the sum, over the module's tables, of each
	// table's maximum size; a table without a declared maximum gets what
	// is left. A wazero table entry is 8 bytes of host memory.
	MaxTableEntries uint32
	// MaxTables caps the number of tables.
	MaxTables uint32
	// MaxFunctions caps the number of defined functions.
	MaxFunctions uint32
	// MaxFunctionBytes caps one function body.
	MaxFunctionBytes uint32
	// MaxLocals caps the locals (params included) of one function.
	MaxLocals uint32
	// MaxNesting caps the nesting of blocks, loops and ifs.
	MaxNesting int
	// StackUnits is the initial value of the stack global (the host resets
	// it before every call); it bounds the call depth.
	StackUnits int32
	// StartFuel is the initial value of the fuel global: the budget of the
	// module's start function, which runs before the host can set it.
	StartFuel int64
	// ExtractData moves the data segments out of the module into
	// Result.Data, when they can be (every segment active at a constant
	// offset, none overlapping, none named by the code): the host then
	// maps that image into each instance's memory copy-on-write instead
	// of copying the segments in.
	ExtractData bool
}

// DefaultOptions are limits that fit any plugin built with the Go or
// AssemblyScript toolchains (a Go guest: ~3.5 MB, ~2,500 functions, a
// table of a few thousand entries, call depth well under 1,000).
func DefaultOptions() Options {
	return Options{
		MaxModuleBytes:   16 << 20,
		MaxTableEntries:  1 << 16,
		MaxTables:        8,
		MaxFunctions:     100_000,
		MaxFunctionBytes: 1 << 20,
		MaxLocals:        50_000,
		MaxNesting:       1024,
		StackUnits:       10_000,
		StartFuel:        0,
	}
}

// Table is one table after rewriting.
type Table struct {
	Min, Max uint32
	// DeclaredMax is the module's own maximum (HasDeclaredMax false: none).
	DeclaredMax    uint32
	HasDeclaredMax bool
}

// Result is a rewritten module and what the rewriter learned about it.
type Result struct {
	// Wasm is the rewritten module.
	Wasm []byte
	// Tables lists the module's tables with the maxima now in force.
	Tables []Table
	// Functions is the number of defined functions; Imports the number of
	// imported functions.
	Functions, Imports int
	// ChargePoints is the number of charges injected (entries and loops).
	ChargePoints int
	// Data is the module's initial memory from offset 0 to the end of its
	// last data segment, when Options.ExtractData took the segments out
	// (nil otherwise): an instance's memory must start as this image
	// followed by zeros.
	Data []byte
}

func (o Options) check() error {
	if o.MaxModuleBytes <= 0 || o.MaxTables == 0 || o.MaxFunctions == 0 || o.MaxFunctionBytes == 0 ||
		o.MaxLocals == 0 || o.MaxNesting <= 0 || o.StackUnits <= 0 || o.StartFuel < 0 {
		return fmt.Errorf("meter: invalid options %+v", o)
	}
	return nil
}
