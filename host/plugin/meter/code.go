package meter

// Instruction kinds the rewriter acts on.
const (
	kPlain        = iota
	kLoop         // loop header: charges its scope (seg)
	kCont         // continuation after else or a block's end, in scope seg: charges region if seg is fine
	kCall         // arg: function index
	kCallIndirect // arg: type index
	kGrow         // memory.grow: pages on the stack
	kBulkBytes    // memory.fill/copy/init: bytes on the stack
	kBulkEntries  // table.fill/copy/init: entries on the stack
)

type ins struct {
	start, end int
	kind       int
	arg        uint32
	seg        int // kLoop: the loop's scope; kCont: the scope it continues
	region     int // kCont: the region it starts
}

type body struct {
	locals  uint32 // declared locals (params not included)
	decls   []byte // the raw local declarations, count included
	expr    []byte // the instructions
	scratch bool   // needs the i32 scratch local
}

// rewriteCode charges every function entry and loop header, accounts the
// stack at call sites and charges dynamic operations.
func (m *module) rewriteCode(p []byte, opts Options, res *Result) ([]byte, error) {
	r := &reader{b: p}
	n, err := r.u32()
	if err != nil {
		return nil, refuse("code", "count: %v", err)
	}
	if n != uint32(len(m.funcTypes)) {
		return nil, refuse("code", "%d bodies for %d functions", n, len(m.funcTypes))
	}
	bodies := make([]body, n)
	m.frameCost = make([]int32, int(m.importFuncs)+int(n))
	m.typeCost = make([]int32, len(m.types))
	for i := range bodies {
		size, err := r.u32()
		if err != nil {
			return nil, refuse("code", "body %d: %v", i, err)
		}
		if size > opts.MaxFunctionBytes {
			return nil, refuse("code", "function %d is %d bytes, more than %d", int(m.importFuncs)+i, size, opts.MaxFunctionBytes)
		}
		raw, err := r.bytes(size)
		if err != nil {
			return nil, refuse("code", "body %d: %v", i, err)
		}
		br := &reader{b: raw}
		groups, err := br.u32()
		if err != nil {
			return nil, refuse("code", "body %d locals: %v", i, err)
		}
		params := uint64(m.types[m.funcTypes[i]].params)
		total := params
		for g := uint32(0); g < groups; g++ {
			c, err := br.u32()
			if err != nil {
				return nil, refuse("code", "body %d locals: %v", i, err)
			}
			t, err := br.byte()
			if err != nil {
				return nil, refuse("code", "body %d locals: %v", i, err)
			}
			if e := checkValType(t); e != nil {
				e.Section = "code"
				return nil, e
			}
			total += uint64(c)
			if total > uint64(opts.MaxLocals) {
				return nil, refuse("code", "function %d has more than %d locals", int(m.importFuncs)+i, opts.MaxLocals)
			}
		}
		bodies[i] = body{locals: uint32(total - params), decls: raw[:br.off], expr: raw[br.off:]}
		cost := int32(1 + total/localsPerStackUnit)
		m.frameCost[int(m.importFuncs)+i] = cost
		if ti := m.funcTypes[i]; cost > m.typeCost[ti] {
			m.typeCost[ti] = cost
		}
	}
	if !r.done() {
		return nil, refuse("code", "trailing bytes")
	}
	for t := range m.typeCost {
		m.typeCost[t] = max(m.typeCost[t], 1)
	}
	out := appendU32(make([]byte, 0, len(p)+len(p)/4), n)
	var scratchBuf []byte
	for i := range bodies {
		fn := int(m.importFuncs) + i
		scratchBuf, err = m.rewriteBody(scratchBuf[:0], &bodies[i], m.types[m.funcTypes[i]].params, opts, res)
		if err != nil {
			if e, ok := err.(*Error); ok {
				e.Section = "code"
				e.Reason = "function " + itoa(fn) + ": " + e.Reason
			}
			return nil, err
		}
		out = appendU32(out, uint32(len(scratchBuf)))
		out = append(out, scratchBuf...)
	}
	return out, nil
}

func itoa(n int) string {
	if n == 0 {
		return "0"
	}
	var b [20]byte
	i := len(b)
	for n > 0 {
		i--
		b[i] = byte('0' + n%10)
		n /= 10
	}
	return string(b[i:])
}

// rewriteBody appends the rewritten body (locals and expression, without
// its size) to out.
func (m *module) rewriteBody(out []byte, b *body, params uint32, opts Options, res *Result) ([]byte, error) {
	list, sc, err := m.scan(b, params, opts)
	if err != nil {
		return nil, err
	}
	// Added locals: an i64 that carries the fuel from its update to its
	// check (no second global read), and an i32 for dynamic charges.
	t64 := params + b.locals
	scratch := t64 + 1
	dr := &reader{b: b.decls}
	groups, _ := dr.u32()
	if b.scratch {
		out = appendU32(out, groups+2)
		out = append(out, b.decls[dr.off:]...)
		out = append(out, 1, 0x7e, 1, 0x7f)
	} else {
		out = appendU32(out, groups+1)
		out = append(out, b.decls[dr.off:]...)
		out = append(out, 1, 0x7e)
	}
	m.t64 = t64
	out = m.charge(out, sc.startCost(0))
	res.ChargePoints++
	e := b.expr
	prev := 0 // plain instructions are not listed: copied in runs
	for _, in := range list {
		out = append(out, e[prev:in.start]...)
		prev = in.end
		switch in.kind {
		case kLoop:
			out = append(out, e[in.start:in.end]...)
			out = m.charge(out, sc.startCost(in.seg))
			res.ChargePoints++
		case kCont:
			out = append(out, e[in.start:in.end]...)
			if sc.fine(in.seg) {
				// Charged, not checked: the next loop header or function
				// entry checks, so a spent budget overshoots by at most
				// one scope's own code before it traps.
				out = adjustGlobal(out, m.fuelIndex(), 0x42, sc.regions[in.region], 0x7d)
				res.ChargePoints++
			}
		case kCall, kCallIndirect:
			cost := int32(0)
			if in.kind == kCall {
				cost = m.frameCost[in.arg] // 0 for imports: the host does not recurse
			} else {
				cost = m.typeCost[in.arg]
			}
			if cost == 0 {
				out = append(out, e[in.start:in.end]...)
				break
			}
			out = m.stackEnter(out, cost)
			out = append(out, e[in.start:in.end]...)
			out = m.stackLeave(out, cost)
		case kGrow:
			out = m.chargeDynamic(out, scratch, 0x7e, PageUnits) // i64.mul
			out = append(out, e[in.start:in.end]...)
		case kBulkBytes:
			out = m.chargeDynamic(out, scratch, 0x88, 4) // i64.shr_u by log2(BulkBytesPerUnit)
			out = append(out, e[in.start:in.end]...)
		case kBulkEntries:
			out = m.chargeDynamic(out, scratch, 0, 0)
			out = append(out, e[in.start:in.end]...)
		}
	}
	out = append(out, e[prev:]...)
	return out, nil
}

// charge appends: fuel -= cost; if fuel < 0 { unreachable }.
func (m *module) charge(out []byte, cost int64) []byte {
	out = append(out, 0x23) // global.get fuel
	out = appendU32(out, m.fuelIndex())
	out = append(out, 0x42) // i64.const cost
	out = appendS64(out, cost)
	out = append(out, 0x7d) // i64.sub
	return m.storeAndCheck(out)
}

// storeAndCheck stores the i64 on top of the stack into the fuel global
// and traps if it is negative.
func (m *module) storeAndCheck(out []byte) []byte {
	out = append(out, 0x22) // local.tee t64
	out = appendU32(out, m.t64)
	out = append(out, 0x24) // global.set fuel
	out = appendU32(out, m.fuelIndex())
	out = append(out, 0x20) // local.get t64
	out = appendU32(out, m.t64)
	// i64.const 0; i64.lt_s; if; unreachable; end
	return append(out, 0x42, 0x00, 0x53, 0x04, 0x40, 0x00, 0x0b)
}

// adjustGlobal appends: global.get g; <constOp> k; <op>; global.set g.
func adjustGlobal(out []byte, g uint32, constOp byte, k int64, op byte) []byte {
	out = append(out, 0x23)
	out = appendU32(out, g)
	out = append(out, constOp)
	out = appendS64(out, k)
	out = append(out, op, 0x24)
	return appendU32(out, g)
}

// chargeDynamic charges the i32 on top of the stack, leaving it there:
// fuel -= (u64(top) op k) (op 0: the value itself).
func (m *module) chargeDynamic(out []byte, scratch uint32, op byte, k int64) []byte {
	f := m.fuelIndex()
	out = append(out, 0x22) // local.tee scratch
	out = appendU32(out, scratch)
	out = append(out, 0x23) // global.get fuel
	out = appendU32(out, f)
	out = append(out, 0x20) // local.get scratch
	out = appendU32(out, scratch)
	out = append(out, 0xad) // i64.extend_i32_u
	if op != 0 {
		out = append(out, 0x42)
		out = appendS64(out, k)
		out = append(out, op)
	}
	out = append(out, 0x42, 0x01, 0x7c) // + 1: a zero-length operation still costs
	out = append(out, 0x7d)             // i64.sub
	return m.storeAndCheck(out)
}

// stackEnter appends: stack -= cost; if stack < 0 { unreachable }.
func (m *module) stackEnter(out []byte, cost int32) []byte {
	s := m.stackIndex()
	out = adjustGlobal(out, s, 0x41, int64(cost), 0x6b) // i32.const, i32.sub
	out = append(out, 0x23)
	out = appendU32(out, s)
	// i32.const 0; i32.lt_s; if; unreachable; end
	return append(out, 0x41, 0x00, 0x48, 0x04, 0x40, 0x00, 0x0b)
}

// stackLeave appends: stack += cost.
func (m *module) stackLeave(out []byte, cost int32) []byte {
	return adjustGlobal(out, m.stackIndex(), 0x41, int64(cost), 0x6a) // i32.const, i32.add
}

// fineScope is the own cost (instructions) above which a scope is charged
// per region rather than whole at its start.
const fineScope = 48

// scopes is what scan learns of a body's costs. A scope is the function
// (0) or a loop; its own code excludes nested loops. A coarse scope (own
// cost ≤ fineScope) is charged its whole own code at its start: that code
// runs at most once per call or iteration. A fine scope is charged per
// region: its start charges the code up to its first continuation point
// (after an else or a block's end), and each continuation point charges the
// code up to the next one. Forward branches only land on continuation
// points and backward ones on loop headers, so every path between two
// charges stays inside one region: its cost bounds what runs. Go's wasm
// backend compiles every function into one loop with a br_table over its
// blocks, so a Go function is a fine scope and pays for the blocks it
// runs, not for its whole body at every jump. Costs include one unit for
// the charge itself.
type scopes struct {
	own     []int64 // per scope
	first   []int   // per scope: its first region
	cur     []int   // per scope: the region being counted
	regions []int64
}

func (s *scopes) add() int {
	s.own = append(s.own, 1)
	s.regions = append(s.regions, 1)
	s.first = append(s.first, len(s.regions)-1)
	s.cur = append(s.cur, len(s.regions)-1)
	return len(s.own) - 1
}

func (s *scopes) fine(k int) bool { return s.own[k] > fineScope }

func (s *scopes) startCost(k int) int64 {
	if s.fine(k) {
		return s.regions[s.first[k]]
	}
	return s.own[k]
}

// scan decodes b.expr into instructions and computes the costs of its
// scopes and regions (see scopes).
func (m *module) scan(b *body, params uint32, opts Options) ([]ins, *scopes, error) {
	r := &reader{b: b.expr}
	sc := &scopes{}
	sc.add()
	type frame struct {
		seg  int
		isIf bool
	}
	ctl := []frame{{seg: 0}}
	list := m.list[:0]
	defer func() { m.list = list[:0] }()
	nLocals := uint64(params) + uint64(b.locals)
	nFuncs := m.importFuncs + uint32(len(m.funcTypes))
	for {
		if len(ctl) == 0 {
			if !r.done() {
				return nil, nil, refuse("", "instructions after the final end")
			}
			return list, sc, nil
		}
		if r.done() {
			return nil, nil, refuse("", "missing end")
		}
		in := ins{start: r.off, kind: kPlain}
		seg := ctl[len(ctl)-1].seg
		op, _ := r.byte()
		var err error
		bad := func(format string, args ...any) ([]ins, *scopes, error) {
			return nil, nil, refuse("", "offset %d: "+format, append([]any{in.start}, args...)...)
		}
		switch {
		case op == 0x00 || op == 0x01 || op == 0x0f || op == 0x1a || op == 0x1b || op >= 0x45 && op <= 0xc4 || op == 0xd1:
		case op == 0x02 || op == 0x03 || op == 0x04:
			if err = m.blockType(r); err != nil {
				return bad("%v", err)
			}
			if len(ctl) >= opts.MaxNesting {
				return bad("blocks nested deeper than %d", opts.MaxNesting)
			}
			f := frame{seg: seg, isIf: op == 0x04}
			if op == 0x03 {
				f.seg = sc.add()
				in.kind, in.seg = kLoop, f.seg
			}
			ctl = append(ctl, f)
		case op == 0x05:
			if !ctl[len(ctl)-1].isIf {
				return bad("else outside if")
			}
			in.kind = kCont
		case op == 0x0b:
			ctl = ctl[:len(ctl)-1]
			if len(ctl) > 0 {
				in.kind = kCont
			}
		case op == 0x0c || op == 0x0d:
			_, err = r.u32()
		case op == 0x0e:
			var c uint32
			if c, err = r.u32(); err == nil {
				for j := uint32(0); j <= c && err == nil; j++ {
					_, err = r.u32()
				}
			}
		case op == 0x10:
			var f uint32
			if f, err = r.u32(); err == nil && f >= nFuncs {
				return bad("call to function %d of %d", f, nFuncs)
			}
			in.kind, in.arg = kCall, f
		case op == 0x11:
			var t uint32
			if t, err = r.u32(); err == nil {
				if t >= uint32(len(m.types)) {
					return bad("call_indirect type %d of %d", t, len(m.types))
				}
				_, err = r.u32()
			}
			in.kind, in.arg = kCallIndirect, t
		case op == 0x12 || op == 0x13:
			return bad("tail calls are not supported")
		case op >= 0x06 && op <= 0x0a || op == 0x18 || op == 0x19 || op == 0x1f:
			return bad("exception handling is not supported")
		case op == 0x1c:
			var c uint32
			if c, err = r.u32(); err == nil {
				if c != 1 {
					return bad("select with %d types", c)
				}
				var t byte
				if t, err = r.byte(); err == nil {
					if e := checkValType(t); e != nil {
						return bad("%v", e.Reason)
					}
				}
			}
		case op >= 0x20 && op <= 0x22:
			var x uint32
			if x, err = r.u32(); err == nil && uint64(x) >= nLocals {
				return bad("local %d of %d", x, nLocals)
			}
		case op == 0x23 || op == 0x24:
			// Indices at or above the module's own globals would reach the
			// injected ones: refused, so no guest can read or reset its budget.
			var x uint32
			if x, err = r.u32(); err == nil && x >= m.globals {
				return bad("global %d of %d", x, m.globals)
			}
		case op == 0x25 || op == 0x26:
			_, err = r.u32()
		case op >= 0x28 && op <= 0x3e:
			var align uint32
			if align, err = r.u32(); err == nil {
				if align >= 64 {
					return bad("multiple memories are not supported")
				}
				_, err = r.u32()
			}
		case op == 0x3f || op == 0x40:
			var z byte
			if z, err = r.byte(); err == nil && z != 0 {
				return bad("memory index %d", z)
			}
			if op == 0x40 {
				in.kind = kGrow
				b.scratch = true
			}
		case op == 0x41:
			_, err = r.sleb(5)
		case op == 0x42:
			_, err = r.sleb(10)
		case op == 0x43:
			_, err = r.bytes(4)
		case op == 0x44:
			_, err = r.bytes(8)
		case op == 0xd0:
			var t byte
			if t, err = r.byte(); err == nil && t != 0x70 && t != 0x6f {
				return bad("ref.null of type %#x", t)
			}
		case op == 0xd2:
			var f uint32
			if f, err = r.u32(); err == nil && f >= nFuncs {
				return bad("ref.func %d of %d", f, nFuncs)
			}
		case op == 0xfc:
			var sub uint32
			if sub, err = r.u32(); err != nil {
				break
			}
			switch {
			case sub <= 7: // saturating truncation
			case sub == 8: // memory.init data 0
				if _, err = r.u32(); err == nil {
					err = zeroByte(r)
				}
				in.kind = kBulkBytes
				m.dataIndexed = true
			case sub == 9 || sub == 13: // data.drop, elem.drop
				_, err = r.u32()
				m.dataIndexed = m.dataIndexed || sub == 9
			case sub == 10: // memory.copy 0 0
				if err = zeroByte(r); err == nil {
					err = zeroByte(r)
				}
				in.kind = kBulkBytes
			case sub == 11: // memory.fill 0
				err = zeroByte(r)
				in.kind = kBulkBytes
			case sub == 12 || sub == 14: // table.init elem table, table.copy t t
				if _, err = r.u32(); err == nil {
					_, err = r.u32()
				}
				in.kind = kBulkEntries
			case sub == 17: // table.fill
				_, err = r.u32()
				in.kind = kBulkEntries
			case sub == 15 || sub == 16: // table.grow, table.size
				// table.grow costs a static unit: the table's maximum
				// (rewriteTables) bounds what a successful grow allocates,
				// and a refused one costs nothing.
				_, err = r.u32()
			default:
				return bad("unknown instruction 0xfc %d", sub)
			}
			if in.kind != kPlain {
				b.scratch = true
			}
		case op == 0xfd:
			return bad("SIMD is not supported")
		case op == 0xfe:
			return bad("threads (atomics) are not supported")
		default:
			return bad("unknown opcode %#x", op)
		}
		if err != nil {
			return bad("%v", err)
		}
		in.end = r.off
		// The instruction itself belongs to the scope it appears in (a
		// loop's end to the loop, the loop opcode to its parent).
		// Structure (block, loop, else, end, nop) compiles to no code and
		// costs nothing; every other instruction one unit.
		if op != 0x01 && op != 0x02 && op != 0x03 && op != 0x05 && op != 0x0b {
			sc.own[seg]++
			sc.regions[sc.cur[seg]]++
		}
		if in.kind == kCont {
			// What follows continues the scope now on top (after an end,
			// the parent's; after an else, the if's own).
			k := ctl[len(ctl)-1].seg
			sc.regions = append(sc.regions, 1)
			sc.cur[k] = len(sc.regions) - 1
			in.seg, in.region = k, sc.cur[k]
		}
		if in.kind != kPlain {
			list = append(list, in)
		}
	}
}

func zeroByte(r *reader) error {
	z, err := r.byte()
	if err == nil && z != 0 {
		return refuse("", "memory index %d", z)
	}
	return err
}

func (m *module) blockType(r *reader) error {
	if r.done() {
		return errEOF
	}
	switch r.b[r.off] {
	case 0x40, 0x7f, 0x7e, 0x7d, 0x7c, 0x70, 0x6f:
		r.off++
		return nil
	case 0x7b:
		return refuse("", "v128 (SIMD) is not supported")
	}
	v, err := r.sleb(5)
	if err != nil {
		return err
	}
	if v < 0 || v >= int64(len(m.types)) {
		return refuse("", "block type %d", v)
	}
	return nil
}
