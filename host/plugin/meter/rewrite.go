package meter

import (
	"bytes"
	"cmp"
	"slices"
	"strings"
)

// Section ids (core spec §5.5.2).
const (
	secCustom    = 0
	secType      = 1
	secImport    = 2
	secFunction  = 3
	secTable     = 4
	secMemory    = 5
	secGlobal    = 6
	secExport    = 7
	secStart     = 8
	secElement   = 9
	secCode      = 10
	secData      = 11
	secDataCount = 12
)

// order ranks the non-custom sections in the order the binary format
// requires (the data count section sits between element and code).
var order = [...]int{secType: 1, secImport: 2, secFunction: 3, secTable: 4, secMemory: 5, secGlobal: 6,
	secExport: 7, secStart: 8, secElement: 9, secDataCount: 10, secCode: 11, secData: 12}

var sectionNames = [...]string{"custom", "type", "import", "function", "table", "memory", "global",
	"export", "start", "element", "code", "data", "data count"}

type section struct {
	id      byte
	payload []byte
}

type funcType struct{ params, results uint32 }

// module holds what the rewriter needs of a parsed module.
type module struct {
	sections    []section
	types       []funcType
	importFuncs uint32
	funcTypes   []uint32 // type index of each defined function
	globals     uint32   // defined globals
	tables      []Table
	frameCost   []int32 // per function index (imports: 0)
	t64         uint32  // the i64 scratch local of the body being rewritten
	list        []ins   // scan's buffer, reused across bodies
	typeCost    []int32 // per type: the most a defined function of it costs
	// dataIndexed: the code names data segments (memory.init, data.drop),
	// so their indices must stay as they are.
	dataIndexed bool
}

// Rewrite validates wasm against opts and returns it rewritten as the
// package documentation describes. The error is an *Error.
func Rewrite(wasm []byte, opts Options) (*Result, error) {
	if err := opts.check(); err != nil {
		return nil, err
	}
	if len(wasm) > opts.MaxModuleBytes {
		return nil, refuse("", "module is %d bytes, more than limits.maxModuleBytes %d", len(wasm), opts.MaxModuleBytes)
	}
	if len(wasm) < 8 || !bytes.Equal(wasm[:4], []byte("\x00asm")) {
		return nil, refuse("", "not a WebAssembly binary (no \\0asm magic)")
	}
	if !bytes.Equal(wasm[4:8], []byte{1, 0, 0, 0}) {
		return nil, refuse("", "unsupported binary version % x (want 01 00 00 00)", wasm[4:8])
	}
	m := &module{}
	r := &reader{b: wasm, off: 8}
	last := 0
	for !r.done() {
		id, err := r.byte()
		if err != nil {
			return nil, refuse("", "section id: %v", err)
		}
		n, err := r.u32()
		if err != nil {
			return nil, refuse("", "section size: %v", err)
		}
		payload, err := r.bytes(n)
		if err != nil {
			return nil, refuse("", "section %d: %v", id, err)
		}
		if id != secCustom {
			if int(id) >= len(order) {
				return nil, refuse("", "unknown section id %d", id)
			}
			if order[id] <= last {
				return nil, refuse(sectionNames[id], "out of order or repeated")
			}
			last = order[id]
		}
		if id == secCustom {
			// Custom sections (names, producers, build ids) do not change
			// what a module does; the compiler's decoders preallocate by
			// the counts they declare, so they are dropped unread.
			continue
		}
		m.sections = append(m.sections, section{id: id, payload: payload})
	}
	res := &Result{}
	for i := range m.sections {
		s := &m.sections[i]
		var err error
		switch s.id {
		case secType:
			err = m.parseTypes(s.payload)
		case secImport:
			err = m.parseImports(s.payload)
		case secFunction:
			err = m.parseFunctions(s.payload, opts)
		case secTable:
			s.payload, err = m.rewriteTables(s.payload, opts)
		case secMemory:
			err = checkMemories(s.payload)
		case secGlobal:
			s.payload, err = m.rewriteGlobals(s.payload, opts)
		case secExport:
			s.payload, err = m.rewriteExports(s.payload)
		case secCode:
			s.payload, err = m.rewriteCode(s.payload, opts, res)
		case secElement:
			err = checkElements(s.payload)
		case secData:
			if err = checkData(s.payload); err == nil && !m.dataIndexed {
				if opts.ExtractData {
					if img, ok := dataImage(s.payload); ok {
						res.Data = img
						s.payload = appendU32(nil, 0) // no segments left
						break
					}
				}
				s.payload = coalesceData(s.payload)
			}
		}
		if err != nil {
			if e, ok := err.(*Error); ok && e.Section == "" {
				e.Section = sectionNames[s.id]
			}
			return nil, err
		}
	}
	m.syncDataCount()
	m.insertMissing(opts)
	out := append(make([]byte, 0, len(wasm)+len(wasm)/4+64), wasm[:8]...)
	for _, s := range m.sections {
		out = append(out, s.id)
		out = appendU32(out, uint32(len(s.payload)))
		out = append(out, s.payload...)
	}
	res.Wasm = out
	res.Tables = m.tables
	res.Functions = len(m.funcTypes)
	res.Imports = int(m.importFuncs)
	return res, nil
}

// syncDataCount sets the data count section, when there is one, to the
// data section's segment count (coalesceData may have changed it).
func (m *module) syncDataCount() {
	var count []byte
	for _, s := range m.sections {
		if s.id == secData {
			r := &reader{b: s.payload}
			n, _ := r.u32()
			count = appendU32(nil, n)
		}
	}
	for i := range m.sections {
		if m.sections[i].id == secDataCount && count != nil {
			m.sections[i].payload = count
		}
	}
}

// insertMissing adds a global and an export section when the module has
// none, so the injected globals always exist and are exported.
func (m *module) insertMissing(opts Options) {
	has := func(id byte) bool {
		for _, s := range m.sections {
			if s.id == id {
				return true
			}
		}
		return false
	}
	insert := func(id byte, payload []byte) {
		at := len(m.sections)
		for i, s := range m.sections {
			if s.id != secCustom && order[s.id] > order[id] {
				at = i
				break
			}
		}
		m.sections = append(m.sections, section{})
		copy(m.sections[at+1:], m.sections[at:])
		m.sections[at] = section{id: id, payload: payload}
	}
	if !has(secGlobal) {
		insert(secGlobal, m.appendGlobals(appendU32(nil, 2), opts))
	}
	if !has(secExport) {
		insert(secExport, m.appendExports(appendU32(nil, 2)))
	}
}

func (m *module) parseTypes(p []byte) error {
	r := &reader{b: p}
	n, err := r.u32()
	if err != nil {
		return refuse("type", "count: %v", err)
	}
	for i := uint32(0); i < n; i++ {
		form, err := r.byte()
		if err != nil || form != 0x60 {
			return refuse("type", "entry %d is not a function type", i)
		}
		var ft funcType
		for k := 0; k < 2; k++ {
			c, err := r.u32()
			if err != nil {
				return refuse("type", "entry %d: %v", i, err)
			}
			for j := uint32(0); j < c; j++ {
				t, err := r.byte()
				if err != nil {
					return refuse("type", "entry %d: %v", i, err)
				}
				if err := checkValType(t); err != nil {
					return refuse("type", "entry %d: %v", i, err)
				}
			}
			if k == 0 {
				ft.params = c
			} else {
				ft.results = c
			}
		}
		m.types = append(m.types, ft)
	}
	if !r.done() {
		return refuse("type", "trailing bytes")
	}
	return nil
}

func checkValType(t byte) *Error {
	switch t {
	case 0x7f, 0x7e, 0x7d, 0x7c, 0x70, 0x6f:
		return nil
	case 0x7b:
		return refuse("", "v128 (SIMD) is not supported")
	}
	return refuse("", "unknown value type %#x", t)
}

func (m *module) parseImports(p []byte) error {
	r := &reader{b: p}
	n, err := r.u32()
	if err != nil {
		return refuse("import", "count: %v", err)
	}
	for i := uint32(0); i < n; i++ {
		mod, err1 := r.name()
		name, err2 := r.name()
		kind, err3 := r.byte()
		if err1 != nil || err2 != nil || err3 != nil {
			return refuse("import", "entry %d malformed", i)
		}
		what := [...]string{"function", "table", "memory", "global"}
		if kind != 0 {
			if int(kind) < len(what) {
				return refuse("import", "%s.%s imports a %s (only functions may be imported)", mod, name, what[kind])
			}
			return refuse("import", "%s.%s has unknown kind %d", mod, name, kind)
		}
		ti, err := r.u32()
		if err != nil || ti >= uint32(len(m.types)) {
			return refuse("import", "%s.%s: bad type index", mod, name)
		}
		m.importFuncs++
	}
	if !r.done() {
		return refuse("import", "trailing bytes")
	}
	return nil
}

func (m *module) parseFunctions(p []byte, opts Options) error {
	r := &reader{b: p}
	n, err := r.u32()
	if err != nil {
		return refuse("function", "count: %v", err)
	}
	if n > opts.MaxFunctions {
		return refuse("function", "%d functions, more than %d", n, opts.MaxFunctions)
	}
	m.funcTypes = make([]uint32, n)
	for i := range m.funcTypes {
		ti, err := r.u32()
		if err != nil || ti >= uint32(len(m.types)) {
			return refuse("function", "entry %d: bad type index", i)
		}
		m.funcTypes[i] = ti
	}
	if !r.done() {
		return refuse("function", "trailing bytes")
	}
	return nil
}

func (m *module) rewriteTables(p []byte, opts Options) ([]byte, error) {
	r := &reader{b: p}
	n, err := r.u32()
	if err != nil {
		return nil, refuse("table", "count: %v", err)
	}
	if n > opts.MaxTables {
		return nil, refuse("table", "%d tables, more than %d", n, opts.MaxTables)
	}
	var need uint64 // sum of the declared minima and maxima that exist
	for i := uint32(0); i < n; i++ {
		rt, err := r.byte()
		if err != nil || rt != 0x70 && rt != 0x6f {
			return nil, refuse("table", "entry %d: bad reference type", i)
		}
		flag, err := r.byte()
		if err != nil || flag > 1 {
			return nil, refuse("table", "entry %d: unsupported limits flag", i)
		}
		var t Table
		if t.Min, err = r.u32(); err != nil {
			return nil, refuse("table", "entry %d: %v", i, err)
		}
		if flag == 1 {
			if t.DeclaredMax, err = r.u32(); err != nil {
				return nil, refuse("table", "entry %d: %v", i, err)
			}
			if t.DeclaredMax < t.Min {
				return nil, refuse("table", "entry %d: maximum %d below minimum %d", i, t.DeclaredMax, t.Min)
			}
			t.HasDeclaredMax = true
			need += uint64(t.DeclaredMax)
		} else {
			need += uint64(t.Min)
		}
		m.tables = append(m.tables, t)
	}
	if !r.done() {
		return nil, refuse("table", "trailing bytes")
	}
	var minSum uint64
	for _, t := range m.tables {
		minSum += uint64(t.Min)
	}
	if minSum > uint64(opts.MaxTableEntries) {
		return nil, refuse("table", "tables declare %d entries at minimum, more than the %d allowed", minSum, opts.MaxTableEntries)
	}
	// Tables with a maximum keep it while everything fits; the others (and,
	// when the maxima do not fit, every table) share what the minima leave.
	spare := uint64(opts.MaxTableEntries) - minSum
	out := appendU32(nil, n)
	for i := range m.tables {
		t := &m.tables[i]
		switch {
		case t.HasDeclaredMax && need <= uint64(opts.MaxTableEntries):
			t.Max = t.DeclaredMax
		default:
			grow := spare / uint64(len(m.tables))
			if t.HasDeclaredMax {
				grow = min(grow, uint64(t.DeclaredMax-t.Min))
			}
			t.Max = t.Min + uint32(grow)
		}
	}
	// Re-encode with the original reference types.
	r = &reader{b: p}
	_, _ = r.u32()
	for i := range m.tables {
		rtype, _ := r.byte()
		flag, _ := r.byte()
		_, _ = r.u32()
		if flag == 1 {
			_, _ = r.u32()
		}
		out = append(out, rtype, 1)
		out = appendU32(out, m.tables[i].Min)
		out = appendU32(out, m.tables[i].Max)
	}
	return out, nil
}

func checkMemories(p []byte) error {
	r := &reader{b: p}
	n, err := r.u32()
	if err != nil {
		return refuse("memory", "count: %v", err)
	}
	if n > 1 {
		return refuse("memory", "%d memories (multiple memories are not supported)", n)
	}
	for i := uint32(0); i < n; i++ {
		flag, err := r.byte()
		if err != nil || flag > 1 {
			return refuse("memory", "unsupported limits flag (shared memory or memory64)")
		}
		if _, err := r.u32(); err != nil {
			return refuse("memory", "minimum: %v", err)
		}
		if flag == 1 {
			if _, err := r.u32(); err != nil {
				return refuse("memory", "maximum: %v", err)
			}
		}
	}
	if !r.done() {
		return refuse("memory", "trailing bytes")
	}
	return nil
}

// rewriteGlobals appends the fuel and stack globals to the global section.
func (m *module) rewriteGlobals(p []byte, opts Options) ([]byte, error) {
	r := &reader{b: p}
	n, err := r.u32()
	if err != nil {
		return nil, refuse("global", "count: %v", err)
	}
	for i := uint32(0); i < n; i++ {
		t, err := r.byte()
		if err != nil {
			return nil, refuse("global", "entry %d: %v", i, err)
		}
		if err := checkValType(t); err != nil {
			err.Section = "global"
			return nil, err
		}
		if mut, err := r.byte(); err != nil || mut > 1 {
			return nil, refuse("global", "entry %d: bad mutability", i)
		}
		if err := skipConstExpr(r); err != nil {
			return nil, refuse("global", "entry %d: %v", i, err)
		}
	}
	if !r.done() {
		return nil, refuse("global", "trailing bytes")
	}
	if n > 1<<20 {
		return nil, refuse("global", "%d globals", n)
	}
	m.globals = n
	out := appendU32(nil, n+2)
	out = append(out, p[lenPrefix(p):]...)
	return m.appendGlobals(out, opts), nil
}

// lenPrefix is the size of the LEB128 count at the start of p.
func lenPrefix(p []byte) int {
	i := 0
	for i < len(p) && p[i]&0x80 != 0 {
		i++
	}
	return i + 1
}

func (m *module) fuelIndex() uint32  { return m.globals }
func (m *module) stackIndex() uint32 { return m.globals + 1 }

func (m *module) appendGlobals(out []byte, opts Options) []byte {
	out = append(out, 0x7e, 1, 0x42) // mut i64 = i64.const StartFuel
	out = appendS64(out, opts.StartFuel)
	out = append(out, 0x0b, 0x7f, 1, 0x41) // mut i32 = i32.const StackUnits
	out = appendS64(out, int64(opts.StackUnits))
	return append(out, 0x0b)
}

func (m *module) rewriteExports(p []byte) ([]byte, error) {
	r := &reader{b: p}
	n, err := r.u32()
	if err != nil {
		return nil, refuse("export", "count: %v", err)
	}
	for i := uint32(0); i < n; i++ {
		name, err := r.name()
		if err != nil {
			return nil, refuse("export", "entry %d: %v", i, err)
		}
		if strings.HasPrefix(name, ReservedPrefix) {
			return nil, refuse("export", "%q uses the reserved prefix %s", name, ReservedPrefix)
		}
		if _, err := r.byte(); err != nil {
			return nil, refuse("export", "entry %d: %v", i, err)
		}
		if _, err := r.u32(); err != nil {
			return nil, refuse("export", "entry %d: %v", i, err)
		}
	}
	if !r.done() {
		return nil, refuse("export", "trailing bytes")
	}
	out := appendU32(nil, n+2)
	out = append(out, p[lenPrefix(p):]...)
	return m.appendExports(out), nil
}

func (m *module) appendExports(out []byte) []byte {
	out = appendName(out, FuelExport)
	out = append(out, 0x03)
	out = appendU32(out, m.fuelIndex())
	out = appendName(out, StackExport)
	out = append(out, 0x03)
	return appendU32(out, m.stackIndex())
}

// skipConstExpr reads a constant expression up to its end opcode.
func skipConstExpr(r *reader) error {
	for i := 0; i < 64; i++ {
		op, err := r.byte()
		if err != nil {
			return err
		}
		switch op {
		case 0x0b:
			return nil
		case 0x41, 0x23, 0xd2: // i32.const, global.get, ref.func
			if op == 0x41 {
				_, err = r.sleb(5)
			} else {
				_, err = r.u32()
			}
		case 0x42:
			_, err = r.sleb(10)
		case 0x43:
			_, err = r.bytes(4)
		case 0x44:
			_, err = r.bytes(8)
		case 0xd0:
			_, err = r.byte()
		case 0x6a, 0x6b, 0x6c, 0x7c, 0x7d, 0x7e: // extended constant expressions
		default:
			return refuse("", "opcode %#x in a constant expression", op)
		}
		if err != nil {
			return err
		}
	}
	return refuse("", "constant expression too long")
}

// checkElements parses the element section completely, so that no count
// it declares exceeds the bytes that follow (the compiler's decoder
// allocates by the declared counts before reading the entries).
func checkElements(p []byte) error {
	r := &reader{b: p}
	n, err := r.u32()
	if err != nil {
		return refuse("element", "count: %v", err)
	}
	for i := uint32(0); i < n; i++ {
		flag, err := r.u32()
		if err != nil || flag > 7 {
			return refuse("element", "segment %d: bad flags", i)
		}
		if flag&3 == 2 { // explicit table index
			if _, err := r.u32(); err != nil {
				return refuse("element", "segment %d: %v", i, err)
			}
		}
		if flag&1 == 0 { // active: offset expression
			if err := skipConstExpr(r); err != nil {
				return refuse("element", "segment %d offset: %v", i, err)
			}
		}
		if flag&3 != 0 { // element kind or reference type
			if _, err := r.byte(); err != nil {
				return refuse("element", "segment %d: %v", i, err)
			}
		}
		c, err := r.u32()
		if err != nil || int(c) > len(p)-r.off {
			return refuse("element", "segment %d: bad element count", i)
		}
		for j := uint32(0); j < c; j++ {
			if flag&4 == 0 {
				_, err = r.u32()
			} else {
				err = skipConstExpr(r)
			}
			if err != nil {
				return refuse("element", "segment %d entry %d: %v", i, j, err)
			}
		}
	}
	if !r.done() {
		return refuse("element", "trailing bytes")
	}
	return nil
}

// maxDataImage bounds an extracted image (offset 0 to the end of the last
// segment): a module whose data sits higher keeps its segments.
const maxDataImage = 64 << 20

// dataImage is the memory the data section p makes, from offset 0 to the
// end of its last segment, under coalesceData's conditions; false when
// they do not hold or the image would exceed maxDataImage.
func dataImage(p []byte) ([]byte, bool) {
	segs, ok := activeSegments(p)
	if !ok || len(segs) == 0 {
		return nil, false
	}
	end := uint64(0)
	for _, sg := range segs {
		end = max(end, sg.off+uint64(len(sg.data)))
	}
	if end > maxDataImage {
		return nil, false
	}
	img := make([]byte, end)
	written := uint64(0)
	for _, sg := range segs { // sorted by offset
		if sg.off < written {
			return nil, false // overlapping segments: keep them
		}
		copy(img[sg.off:], sg.data)
		written = sg.off + uint64(len(sg.data))
	}
	return img, true
}

type dataSegment struct {
	off  uint64
	data []byte
}

// activeSegments parses a checked data section into its segments sorted by
// offset; false unless every one is active, in memory 0, at a non-negative
// i32.const offset.
func activeSegments(p []byte) ([]dataSegment, bool) {
	r := &reader{b: p}
	n, _ := r.u32()
	segs := make([]dataSegment, 0, n)
	for i := uint32(0); i < n; i++ {
		flag, _ := r.u32()
		op, _ := r.byte()
		if flag != 0 || op != 0x41 { // active, memory 0, i32.const
			return nil, false
		}
		off, err := r.sleb(5)
		if err != nil || off < 0 || off > 1<<31-1 {
			return nil, false
		}
		if end, _ := r.byte(); end != 0x0b {
			return nil, false
		}
		c, _ := r.u32()
		d, _ := r.bytes(c)
		segs = append(segs, dataSegment{uint64(off), d})
	}
	slices.SortStableFunc(segs, func(a, b dataSegment) int { return cmp.Compare(a.off, b.off) })
	return segs, true
}

// coalesceGap is the widest gap between two segments that coalesceData
// fills with zeros to merge them: linear memory starts zeroed, so a wider
// gap would cost bytes in the binary and a copy per instance for nothing,
// while a narrower one is cheaper written than kept as a segment boundary.
const coalesceGap = 1024

// coalesceData returns the data section p (already checked) with its
// segments merged into as few as possible, when every segment is active,
// in memory 0, at a non-negative i32.const offset, and no two overlap;
// otherwise p as it is. The merged segments write exactly the bytes the
// original ones wrote, and zeros in the gaps between them (memory is zero
// there already), so every instance's memory is the same. Why: the Go
// toolchain emits one segment per symbol, over 38,000 for an SDK plugin,
// and instantiating applies them one by one (wazero evaluates each offset
// expression and copies each segment): 70% of the time of a new instance.
func coalesceData(p []byte) []byte {
	r := &reader{b: p}
	n, _ := r.u32()
	if n < 2 {
		return p
	}
	segs, ok := activeSegments(p)
	if !ok {
		return p
	}
	// Merge runs of segments whose gaps are at most coalesceGap.
	type run struct {
		off  uint64
		data []byte
	}
	var runs []run
	for _, sg := range segs {
		if k := len(runs) - 1; k >= 0 {
			end := runs[k].off + uint64(len(runs[k].data))
			if sg.off < end {
				return p // overlapping segments: their order matters, keep them
			}
			if sg.off-end <= coalesceGap {
				runs[k].data = append(append(runs[k].data, make([]byte, sg.off-end)...), sg.data...)
				continue
			}
		}
		runs = append(runs, run{sg.off, append([]byte(nil), sg.data...)})
	}
	if len(runs) >= int(n) {
		return p
	}
	size := 0
	for _, rn := range runs {
		size += len(rn.data) + 16
	}
	out := appendU32(make([]byte, 0, size), uint32(len(runs)))
	for _, rn := range runs {
		out = append(out, 0, 0x41)
		out = appendS64(out, int64(rn.off))
		out = append(out, 0x0b)
		out = appendU32(out, uint32(len(rn.data)))
		out = append(out, rn.data...)
	}
	return out
}

// checkData parses the data section completely (see checkElements).
func checkData(p []byte) error {
	r := &reader{b: p}
	n, err := r.u32()
	if err != nil {
		return refuse("data", "count: %v", err)
	}
	for i := uint32(0); i < n; i++ {
		flag, err := r.u32()
		if err != nil || flag > 2 {
			return refuse("data", "segment %d: bad flags", i)
		}
		if flag == 2 {
			if x, err := r.u32(); err != nil || x != 0 {
				return refuse("data", "segment %d: memory index", i)
			}
		}
		if flag != 1 {
			if err := skipConstExpr(r); err != nil {
				return refuse("data", "segment %d offset: %v", i, err)
			}
		}
		c, err := r.u32()
		if err != nil {
			return refuse("data", "segment %d: %v", i, err)
		}
		if _, err := r.bytes(c); err != nil {
			return refuse("data", "segment %d: %d bytes declared, fewer present", i, c)
		}
	}
	if !r.done() {
		return refuse("data", "trailing bytes")
	}
	return nil
}
