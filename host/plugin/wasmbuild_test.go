package plugin

// A minimal WebAssembly binary writer for tests of ABI-level checks with
// hand-made (hostile) modules; no toolchain needed.

type wasmFunc struct {
	export  string
	params  []byte // value types: 0x7f i32, 0x7e i64
	results []byte
	body    []byte // instructions, without the final end
}

type wasmImport struct {
	module, name    string
	params, results []byte
}

type wasmModule struct {
	imports   []wasmImport
	funcs     []wasmFunc
	memPages  int // exported as "memory" when > 0
	memExport string
	start     int // 1 + index of the start function; 0: none
}

func uleb(b []byte, v uint64) []byte {
	for v >= 0x80 {
		b = append(b, byte(v)|0x80)
		v >>= 7
	}
	return append(b, byte(v))
}

func sleb(b []byte, v int64) []byte {
	for {
		c := byte(v & 0x7f)
		v >>= 7
		if (v == 0 && c&0x40 == 0) || (v == -1 && c&0x40 != 0) {
			return append(b, c)
		}
		b = append(b, c|0x80)
	}
}

func wname(b []byte, s string) []byte { return append(uleb(b, uint64(len(s))), s...) }

func section(out []byte, id byte, body []byte) []byte {
	out = append(out, id)
	out = uleb(out, uint64(len(body)))
	return append(out, body...)
}

func (m wasmModule) bytes() []byte {
	out := []byte{0, 'a', 's', 'm', 1, 0, 0, 0}
	var types []byte
	n := 0
	addType := func(p, r []byte) int {
		types = append(types, 0x60)
		types = uleb(types, uint64(len(p)))
		types = append(types, p...)
		types = uleb(types, uint64(len(r)))
		types = append(types, r...)
		n++
		return n - 1
	}
	var imps []byte
	for _, im := range m.imports {
		t := addType(im.params, im.results)
		imps = wname(imps, im.module)
		imps = wname(imps, im.name)
		imps = append(imps, 0)
		imps = uleb(imps, uint64(t))
	}
	var fidx []byte
	for _, f := range m.funcs {
		fidx = uleb(fidx, uint64(addType(f.params, f.results)))
	}
	out = section(out, 1, append(uleb(nil, uint64(n)), types...))
	if len(m.imports) > 0 {
		out = section(out, 2, append(uleb(nil, uint64(len(m.imports))), imps...))
	}
	out = section(out, 3, append(uleb(nil, uint64(len(m.funcs))), fidx...))
	if m.memPages > 0 {
		out = section(out, 5, uleb([]byte{1, 0}, uint64(m.memPages)))
	}
	var exps []byte
	ne := 0
	for i, f := range m.funcs {
		if f.export != "" {
			exps = wname(exps, f.export)
			exps = append(exps, 0)
			exps = uleb(exps, uint64(len(m.imports)+i))
			ne++
		}
	}
	if m.memPages > 0 {
		name := m.memExport
		if name == "" {
			name = "memory"
		}
		exps = wname(exps, name)
		exps = append(exps, 2, 0)
		ne++
	}
	out = section(out, 7, append(uleb(nil, uint64(ne)), exps...))
	if m.start > 0 {
		out = section(out, 8, uleb(nil, uint64(len(m.imports)+m.start-1)))
	}
	var code []byte
	for _, f := range m.funcs {
		body := append([]byte{0}, f.body...) // no locals
		body = append(body, 0x0b)
		code = uleb(code, uint64(len(body)))
		code = append(code, body...)
	}
	return section(out, 10, append(uleb(nil, uint64(len(m.funcs))), code...))
}

// Instruction helpers.
func i32c(v int32) []byte { return sleb([]byte{0x41}, int64(v)) }
func i64c(v int64) []byte { return sleb([]byte{0x42}, v) }

var (
	i32 = []byte{0x7f}
	i64 = []byte{0x7e}
)

func cat(parts ...[]byte) []byte {
	var out []byte
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

// abiModule returns a well-formed ABI module whose authority_decide body
// is decide (it must leave an i64 on the stack) and whose version is ver.
func abiModule(ver int32, decide []byte) wasmModule {
	return wasmModule{memPages: 2, funcs: []wasmFunc{
		{export: "authority_abi_version", results: i32, body: i32c(ver)},
		{export: "authority_alloc", params: i32, results: i32, body: i32c(1024)},
		{export: "authority_decide", params: []byte{0x7f, 0x7f}, results: i64, body: decide},
	}}
}
