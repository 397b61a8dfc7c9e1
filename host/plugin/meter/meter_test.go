package meter

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
)

// testModule encodes a module with one memory page, the function types
// types (params and results as value-type bytes), and the functions funcs
// (type index, extra i32 locals, body without the final end), each
// exported as f0, f1, ...; globals are appended as mutable i32 globals
// initialised to 0 when nglobals > 0.
type testFunc struct {
	typ    int
	locals int
	body   []byte
}

type testType struct{ params, results []byte }

func testModule(types []testType, funcs []testFunc, nglobals int, extra ...[]byte) []byte {
	sec := func(id byte, payload []byte) []byte {
		return append(appendU32([]byte{id}, uint32(len(payload))), payload...)
	}
	out := []byte("\x00asm\x01\x00\x00\x00")
	p := appendU32(nil, uint32(len(types)))
	for _, t := range types {
		p = append(p, 0x60)
		p = appendU32(p, uint32(len(t.params)))
		p = append(p, t.params...)
		p = appendU32(p, uint32(len(t.results)))
		p = append(p, t.results...)
	}
	out = append(out, sec(secType, p)...)
	p = appendU32(nil, uint32(len(funcs)))
	for _, f := range funcs {
		p = appendU32(p, uint32(f.typ))
	}
	out = append(out, sec(secFunction, p)...)
	out = append(out, sec(secMemory, []byte{1, 0, 1})...)
	if nglobals > 0 {
		p = appendU32(nil, uint32(nglobals))
		for i := 0; i < nglobals; i++ {
			p = append(p, 0x7f, 1, 0x41, 0, 0x0b)
		}
		out = append(out, sec(secGlobal, p)...)
	}
	p = appendU32(nil, uint32(len(funcs)+1))
	p = appendName(p, "memory")
	p = append(p, 2, 0)
	for i := range funcs {
		p = appendName(p, "f"+itoa(i))
		p = append(p, 0)
		p = appendU32(p, uint32(i))
	}
	out = append(out, sec(secExport, p)...)
	p = appendU32(nil, uint32(len(funcs)))
	for _, f := range funcs {
		var b []byte
		if f.locals > 0 {
			b = append(appendU32([]byte{1}, uint32(f.locals)), 0x7f)
		} else {
			b = []byte{0}
		}
		b = append(b, f.body...)
		b = append(b, 0x0b)
		p = appendU32(p, uint32(len(b)))
		p = append(p, b...)
	}
	out = append(out, sec(secCode, p)...)
	for _, e := range extra {
		out = append(out, e...)
	}
	return out
}

var (
	i32 = byte(0x7f)
	// (i32) -> i32 and () -> i32
	typesI32 = []testType{{params: []byte{i32}, results: []byte{i32}}, {results: []byte{i32}}}
)

type instance struct {
	mod          api.Module
	fuel, stack  api.MutableGlobal
	budget       int64
	rt           wazero.Runtime
	ctx          context.Context
	stackUnits   int32
	rewriteStats *Result
}

func run(t *testing.T, wasm []byte, opts Options) *instance {
	t.Helper()
	res, err := Rewrite(wasm, opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	rt := wazero.NewRuntime(ctx)
	t.Cleanup(func() { rt.Close(ctx) })
	mod, err := rt.Instantiate(ctx, res.Wasm)
	if err != nil {
		t.Fatal(err)
	}
	inst := &instance{mod: mod, rt: rt, ctx: ctx, stackUnits: opts.StackUnits, rewriteStats: res}
	inst.fuel = mod.ExportedGlobal(FuelExport).(api.MutableGlobal)
	inst.stack = mod.ExportedGlobal(StackExport).(api.MutableGlobal)
	return inst
}

// call runs fn with budget and returns its result, the units it used and
// its error.
func (i *instance) call(fn string, budget int64, args ...uint64) (uint64, int64, error) {
	i.fuel.Set(uint64(budget))
	i.stack.Set(uint64(uint32(i.stackUnits)))
	res, err := i.mod.ExportedFunction(fn).Call(i.ctx, args...)
	used := budget - int64(i.fuel.Get())
	if err != nil {
		return 0, used, err
	}
	if len(res) == 0 {
		return 0, used, nil
	}
	return res[0], used, nil
}

func testOptions() Options {
	o := DefaultOptions()
	o.StartFuel = 1 << 30
	return o
}

// TestChargeAtEntryCoversStraightLineCode: a loop-free function pays its
// instruction count once, at entry, whatever path it takes.
func TestChargeAtEntryCoversStraightLineCode(t *testing.T) {
	// (i32.add (i32.const 1) (i32.const 2)) end: 3 instructions (end is
	// structure, free) + 1 for the charge.
	inst := run(t, testModule(typesI32, []testFunc{{typ: 1, body: []byte{0x41, 1, 0x41, 2, 0x6a}}}, 0), testOptions())
	v, used, err := inst.call("f0", 1000)
	if err != nil || v != 3 || used != 4 {
		t.Fatalf("got %d, used %d, err %v; want 3, 4, nil", v, used, err)
	}
}

// TestChargeAtLoopHeaderPerIteration: a loop pays its own instruction
// count on every iteration; the code around it pays once.
func TestChargeAtLoopHeaderPerIteration(t *testing.T) {
	// local0 = n; loop: local0 -= 1; br_if 0 (local0 != 0) end; local0
	body := []byte{
		0x03, 0x40, // loop
		0x20, 0, 0x41, 1, 0x6b, 0x22, 0, // local.get 0; i32.const 1; i32.sub; local.tee 0
		0x0d, 0, // br_if 0
		0x0b,    // end
		0x20, 0, // local.get 0
	}
	inst := run(t, testModule(typesI32, []testFunc{{typ: 0, body: body}}, 0), testOptions())
	// Outside: local.get + 1 = 2 (loop and end are structure). Inside: five + 1 = 6 per iteration.
	for _, n := range []uint64{1, 10, 1000} {
		v, used, err := inst.call("f0", 1<<20, n)
		if want := 2 + 6*int64(n); err != nil || v != 0 || used != want {
			t.Fatalf("n=%d: got %d, used %d, err %v; want 0, %d", n, v, used, err, want)
		}
	}
	// A budget one unit short of what n iterations cost traps, with the
	// budget negative.
	_, used, err := inst.call("f0", 2+6*100-1, 100)
	if err == nil || !strings.Contains(err.Error(), "unreachable") || used <= 2+6*100-1 {
		t.Fatalf("short budget: used %d, err %v", used, err)
	}
}

// TestLargeScopesPayPerRegion: a function with more than fineScope
// instructions of its own pays per region between block boundaries, so a
// branch that skips a region skips its charge (Go's wasm functions are one
// loop around a br_table: without this every jump paid the whole body).
func TestLargeScopesPayPerRegion(t *testing.T) {
	// block A { block B { br_if A (local 0) } 30 × (i32.const 0; drop) } i32.const 7
	body := []byte{0x02, 0x40, 0x02, 0x40, 0x20, 0, 0x0d, 1, 0x0b}
	body = append(body, bytes.Repeat([]byte{0x41, 0, 0x1a}, 30)...)
	body = append(body, 0x0b, 0x41, 7)
	inst := run(t, testModule(typesI32, []testFunc{{typ: 0, body: body}}, 0), testOptions())
	// Regions (each + 1 for its charge; blocks and ends are free): up to B's
	// end 2+1; the 60 instructions to A's end 60+1; i32.const 1+1.
	for _, c := range []struct {
		arg  uint64
		want int64
	}{{1, 3 + 2}, {0, 3 + 61 + 2}} {
		v, used, err := inst.call("f0", 1000, c.arg)
		if err != nil || v != 7 || used != c.want {
			t.Fatalf("arg %d: got %d, used %d, err %v; want 7, %d", c.arg, v, used, err, c.want)
		}
	}
}

// TestBinaryRecursionWithoutLoopsIsCharged: recursion with no loop at all
// (the case wazero's loop-header deadline check misses) pays per call.
func TestBinaryRecursionWithoutLoopsIsCharged(t *testing.T) {
	// f(n) = n == 0 ? 1 : f(n-1) + f(n-1)
	body := []byte{
		0x20, 0, 0x45, // local.get 0; i32.eqz
		0x04, i32, 0x41, 1, // if (result i32) i32.const 1
		0x05,                            // else
		0x20, 0, 0x41, 1, 0x6b, 0x10, 0, // f(n-1)
		0x20, 0, 0x41, 1, 0x6b, 0x10, 0, // f(n-1)
		0x6a, // i32.add
		0x0b, // end
	}
	inst := run(t, testModule(typesI32, []testFunc{{typ: 0, body: body}}, 0), testOptions())
	v, used10, err := inst.call("f0", 1<<30, 10)
	if err != nil || v != 1024 {
		t.Fatalf("f(10) = %d, %v", v, err)
	}
	if calls := int64(2047); used10 < calls*5 {
		t.Fatalf("2047 calls used only %d units", used10)
	}
	// f(40) would make 2^41 calls: the budget stops it.
	if _, _, err := inst.call("f0", 10_000_000, 40); err == nil || int64(inst.fuel.Get()) >= 0 {
		t.Fatalf("f(40) not stopped: %v, fuel %d", err, int64(inst.fuel.Get()))
	}
}

// TestStackUnitsBoundCallDepth: unbounded recursion traps when the stack
// units run out, before the call that would exceed them, with the units
// negative; each frame costs 1 + (params+locals)/16.
func TestStackUnitsBoundCallDepth(t *testing.T) {
	// f(n): mem[0] += 1; return f(n)
	body := []byte{0x41, 0, 0x41, 0, 0x28, 2, 0, 0x41, 1, 0x6a, 0x36, 2, 0, 0x20, 0, 0x10, 0}
	for _, c := range []struct{ locals, frames int }{{0, 1 + 300/1}, {47, 1 + 300/4}} {
		opts := testOptions()
		opts.StackUnits = 300
		inst := run(t, testModule(typesI32, []testFunc{{typ: 0, locals: c.locals, body: body}}, 0), opts)
		_, _, err := inst.call("f0", 1<<30, 0)
		if err == nil || int32(uint32(inst.stack.Get())) >= 0 {
			t.Fatalf("locals %d: %v, stack %d", c.locals, err, int32(uint32(inst.stack.Get())))
		}
		if n, _ := inst.mod.Memory().ReadUint32Le(0); int(n) != c.frames {
			t.Fatalf("locals %d: %d frames ran, want %d", c.locals, n, c.frames)
		}
	}
}

// TestRefusals: what the rewriter refuses, each with its reason.
func TestRefusals(t *testing.T) {
	ok := func(body []byte) []byte { return testModule(typesI32, []testFunc{{typ: 1, body: body}}, 0) }
	two := testModule(typesI32, []testFunc{{typ: 1, body: []byte{0x41, 0}}, {typ: 1, body: []byte{0x41, 0}}}, 0)
	importMem := append([]byte("\x00asm\x01\x00\x00\x00"), 2, 12, 1, 1, 'e', 1, 'm', 2, 0, 1, 0, 0, 0, 0)
	importMem[9] = byte(len(importMem) - 10)
	cases := []struct {
		name string
		wasm []byte
		opts func(*Options)
		want string
	}{
		{"not wasm", []byte("hello world"), nil, "no \\0asm magic"},
		{"too large", ok([]byte{0x41, 0}), func(o *Options) { o.MaxModuleBytes = 20 }, "more than limits.maxModuleBytes 20"},
		{"guest reads the injected fuel global", ok([]byte{0x23, 0, 0xa7}), nil, "global 0 of 0"},
		{"guest writes the injected fuel global", ok([]byte{0x42, 0x7f, 0x24, 0, 0x41, 0}), nil, "global 0 of 0"},
		{"guest uses the scratch local", ok([]byte{0x20, 0}), nil, "local 0 of 0"},
		{"SIMD", ok([]byte{0xfd, 0x0c}), nil, "SIMD"},
		{"atomics", ok([]byte{0xfe, 0x00}), nil, "threads"},
		{"tail call", ok([]byte{0x12, 0}), nil, "tail calls"},
		{"call to a missing function", ok([]byte{0x10, 9, 0x41, 0}), nil, "call to function 9 of 1"},
		{"unknown opcode", ok([]byte{0xff}), nil, "unknown opcode"},
		{"missing end", ok([]byte{0x02, 0x40}), nil, "missing end"},
		{"too deep nesting", ok(bytes.Repeat([]byte{0x02, 0x40}, 10)), func(o *Options) { o.MaxNesting = 5 }, "nested deeper than 5"},
		{"body too large", ok(bytes.Repeat([]byte{0x01}, 100)), func(o *Options) { o.MaxFunctionBytes = 50 }, "more than 50"},
		{"too many functions", two, func(o *Options) { o.MaxFunctions = 1 }, "2 functions, more than 1"},
		{"imported memory", importMem, nil, "imports a memory"},
		// The compiler's decoder would allocate 2^32 segments before reading one.
		{"data count bomb", append(ok([]byte{0x41, 0}), 11, 6, 0xff, 0xff, 0xff, 0xff, 0x0f, 0), nil, "data section: segment 0 offset: unexpected end"},
		{"element count bomb", append([]byte("\x00asm\x01\x00\x00\x00"), 9, 8, 1, 1, 0, 0xff, 0xff, 0xff, 0xff, 0x0f), nil, "bad element count"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			o := testOptions()
			if c.opts != nil {
				c.opts(&o)
			}
			_, err := Rewrite(c.wasm, o)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v, want %q", err, c.want)
			}
		})
	}
}

// TestHostileFixtures rewrites the host's hostile modules: the ones the
// host must refuse are refused with their reason, the others validate.
func TestHostileFixtures(t *testing.T) {
	files, _ := filepath.Glob(filepath.Join("..", "testdata", "hostile", "*.wasm"))
	if len(files) == 0 {
		t.Fatal("no fixtures")
	}
	refused := map[string]string{"tablemin.wasm": "tables declare", "reserved.wasm": "reserved prefix"}
	ctx := context.Background()
	rt := wazero.NewRuntime(ctx)
	defer rt.Close(ctx)
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		res, err := Rewrite(b, testOptions())
		if want, ok := refused[filepath.Base(f)]; ok {
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Errorf("%s: error %v, want %q", f, err, want)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", f, err)
			continue
		}
		if _, err := rt.CompileModule(ctx, res.Wasm); err != nil {
			t.Errorf("%s: rewritten module does not validate: %v", f, err)
		}
		again, _ := Rewrite(b, testOptions())
		if !bytes.Equal(again.Wasm, res.Wasm) {
			t.Errorf("%s: rewrite is not deterministic", f)
		}
	}
}
