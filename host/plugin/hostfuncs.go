package plugin

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"hash"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"

	"stellaops.org/authority/abi"
)

// Host function limits (abi/SPEC.md §5).
const (
	maxKeyBytes      = 256
	maxKVValueBytes  = 64 << 10
	maxKVTTL         = 7 * 24 * time.Hour
	maxCounterWindow = 7 * 24 * time.Hour
	// maxCounterBatch bounds counter_incr_many; counterOpBytes is the size
	// of one operation and of one result (abi/SPEC.md §5).
	maxCounterBatch    = abi.MaxCounterBatch
	counterOpBytes     = abi.CounterRecordBytes
	maxPseudonymInput  = 4 << 10
	maxAuditEventBytes = 64 << 10 // one record; the per-call budget is RuntimeOptions.AuditBytesPerCall
	maxAuditsPerCall   = 32       // ceiling of RuntimeOptions.AuditRecordsPerCall
	maxMetricName      = 64
	maxMetricNames     = 16 // distinct metric_add names per (tenant, plugin)
	pseudonymLen       = 43 // base64url, unpadded, of 32 bytes
	pseudonymDomain    = "authority.pseudonym.v1\x00"
)

// instantiateHostModule defines module "authority". Every function looks
// up the calling instance from the call context, checks its grant (the
// load-time import check already refused ungranted imports; this is the
// second lock) and scopes keys to the instance's tenant and plugin.
func instantiateHostModule(ctx context.Context, rt wazero.Runtime) error {
	i32, i64 := api.ValueTypeI32, api.ValueTypeI64
	b := rt.NewHostModuleBuilder(HostModule)
	status := func(stack []uint64, st int32) { stack[0] = uint64(uint32(st)) }
	defined := map[string]bool{}
	def := func(name string, fn func(ctx context.Context, inst *instance, m api.Memory, stack []uint64), params []api.ValueType, results ...api.ValueType) {
		grant, ok := GrantFor(name)
		if !ok {
			panic("plugin: host function " + name + " is not in HostFunctions")
		}
		need := grantBit(grant)
		defined[name] = true
		b.NewFunctionBuilder().WithGoModuleFunction(api.GoModuleFunc(func(ctx context.Context, mod api.Module, stack []uint64) {
			inst := instanceFrom(ctx)
			if inst != nil {
				inst.chargeHost()
			}
			if inst == nil || inst.p.grants&need == 0 {
				if len(results) > 0 {
					status(stack, abi.HostInvalid)
				}
				return
			}
			fn(ctx, inst, mod.Memory(), stack)
		}), params, results).Export(name)
	}

	def("log", func(ctx context.Context, inst *instance, m api.Memory, stack []uint64) {
		level, ptr, n := int32(stack[0]), uint32(stack[1]), uint32(stack[2])
		if n > uint32(inst.p.opts.GuestLogLineBytes) {
			n = uint32(inst.p.opts.GuestLogLineBytes)
		}
		msg, ok := m.Read(ptr, n)
		if !ok {
			return
		}
		l := slog.LevelInfo
		switch level {
		case abi.LogDebug:
			l = slog.LevelDebug
		case abi.LogWarn:
			l = slog.LevelWarn
		case abi.LogError:
			l = slog.LevelError
		}
		inst.p.guestLog(ctx, l, "log", string(msg))
	}, []api.ValueType{i32, i32, i32})

	def("metric_add", func(ctx context.Context, inst *instance, m api.Memory, stack []uint64) {
		name, ok := m.Read(uint32(stack[0]), uint32(stack[1]))
		delta := int64(stack[2])
		if !ok || len(name) == 0 || len(name) > maxMetricName || !metricChars(name) || delta < 0 {
			status(stack, abi.HostInvalid)
			return
		}
		n, ok := inst.p.metricName(name)
		if !ok {
			status(stack, abi.HostLimited)
			return
		}
		inst.p.deps.Metrics.AddPluginCounter(inst.p.tenant, inst.p.name, n, delta)
		status(stack, abi.HostOK)
	}, []api.ValueType{i32, i32, i64}, i32)

	// audit_emit: every record is charged, before it is read, against the
	// per-call record and byte budgets and then the (tenant, plugin) rate;
	// over budget it is refused (HostLimited) and counted. The sink learns
	// the emitting plugin from the instance, never from the record, and
	// the tenant is overwritten (abi/SPEC.md §5).
	def("audit_emit", func(ctx context.Context, inst *instance, m api.Memory, stack []uint64) {
		p := inst.p
		n := uint32(stack[1])
		if n > maxAuditEventBytes {
			status(stack, abi.HostInvalid)
			return
		}
		if inst.audits == 0 {
			inst.auditBytes = 0 // first record of this hook call
		}
		if inst.audits >= p.opts.AuditRecordsPerCall || inst.auditBytes+int(n) > p.opts.AuditBytesPerCall || !p.audits.allow(time.Now()) {
			p.stats.auditLimited.Add(1)
			status(stack, abi.HostLimited)
			return
		}
		inst.audits++
		inst.auditBytes += int(n)
		raw, ok := m.Read(uint32(stack[0]), n)
		var ev abi.Event
		if !ok || abi.DecodeEvent(raw, &ev) != nil || abi.ValidateEvent(&ev) != nil ||
			strings.HasPrefix(ev.Type, abi.HostOnlyEventPrefix) {
			status(stack, abi.HostInvalid)
			return
		}
		ev.Tenant = p.tenant
		if err := p.deps.Audit.Audit(ctx, p.name, ev); err != nil {
			p.hostError(ctx, "audit_emit", err)
			status(stack, abi.HostUnavailable)
			return
		}
		status(stack, abi.HostOK)
	}, []api.ValueType{i32, i32}, i32)

	def("counter_incr", func(ctx context.Context, inst *instance, m api.Memory, stack []uint64) {
		key, ok := readKey(m, uint32(stack[0]), uint32(stack[1]))
		delta, window, out := int64(stack[2]), time.Duration(int64(stack[3]))*time.Millisecond, uint32(stack[4])
		if !ok || window < 0 || window > maxCounterWindow || (delta != 0 && window == 0) {
			status(stack, abi.HostInvalid)
			return
		}
		if _, ok := m.Read(out, 16); !ok {
			status(stack, abi.HostInvalid)
			return
		}
		v, ttl, err := inst.p.deps.Counters.Incr(ctx, inst.p.dataScope, key, delta, window)
		if errors.Is(err, ErrQuotaExceeded) {
			inst.p.quotaRefused(ctx, "counter_incr", err)
			status(stack, abi.HostLimited)
			return
		}
		if err != nil {
			inst.p.hostError(ctx, "counter_incr", err)
			status(stack, abi.HostUnavailable)
			return
		}
		m.WriteUint64Le(out, uint64(v))
		m.WriteUint64Le(out+8, uint64(ttl.Milliseconds()))
		status(stack, abi.HostOK)
	}, []api.ValueType{i32, i32, i64, i64, i32}, i32)

	// counter_incr_many: counter_incr for up to maxCounterBatch keys in
	// one host call (one store round trip). Every operation is checked
	// before any runs; each gets its own status.
	def("counter_incr_many", func(ctx context.Context, inst *instance, m api.Memory, stack []uint64) {
		opsPtr, n, outPtr := uint32(stack[0]), uint32(stack[1]), uint32(stack[2])
		if n == 0 || n > maxCounterBatch {
			status(stack, abi.HostInvalid)
			return
		}
		raw, ok := m.Read(opsPtr, n*counterOpBytes)
		if !ok {
			status(stack, abi.HostInvalid)
			return
		}
		if _, ok := m.Read(outPtr, n*counterOpBytes); !ok {
			status(stack, abi.HostInvalid)
			return
		}
		if inst.counterOps == nil {
			inst.counterOps, inst.counterRes = make([]CounterOp, maxCounterBatch), make([]CounterResult, maxCounterBatch)
		}
		ops, res := inst.counterOps[:n], inst.counterRes[:n]
		clear(res)
		for i := range ops {
			r := raw[i*counterOpBytes:]
			key, ok := readKey(m, binary.LittleEndian.Uint32(r), binary.LittleEndian.Uint32(r[4:]))
			delta, window := int64(binary.LittleEndian.Uint64(r[8:])), time.Duration(int64(binary.LittleEndian.Uint64(r[16:])))*time.Millisecond
			if !ok || window < 0 || window > maxCounterWindow || (delta != 0 && window == 0) {
				status(stack, abi.HostInvalid)
				return
			}
			ops[i] = CounterOp{Key: key, Delta: delta, Window: window}
		}
		// The batch costs the budget what its calls one by one would.
		for range n - 1 {
			inst.chargeHost()
		}
		incrMany(ctx, inst.p.deps.Counters, inst.p.dataScope, ops, res)
		var rec [counterOpBytes]byte
		for i, r := range res {
			st := int32(abi.HostOK)
			switch {
			case errors.Is(r.Err, ErrQuotaExceeded):
				inst.p.quotaRefused(ctx, "counter_incr_many", r.Err)
				st, r.Value, r.TTL = abi.HostLimited, 0, 0
			case r.Err != nil:
				inst.p.hostError(ctx, "counter_incr_many", r.Err)
				st, r.Value, r.TTL = abi.HostUnavailable, 0, 0
			}
			binary.LittleEndian.PutUint64(rec[0:], uint64(r.Value))
			binary.LittleEndian.PutUint64(rec[8:], uint64(r.TTL.Milliseconds()))
			binary.LittleEndian.PutUint32(rec[16:], uint32(st))
			binary.LittleEndian.PutUint32(rec[20:], 0)
			m.Write(outPtr+uint32(i)*counterOpBytes, rec[:])
		}
		status(stack, abi.HostOK)
	}, []api.ValueType{i32, i32, i32}, i32)

	def("kv_get", func(ctx context.Context, inst *instance, m api.Memory, stack []uint64) {
		key, ok := readKey(m, uint32(stack[0]), uint32(stack[1]))
		buf, limit := uint32(stack[2]), uint32(stack[3])
		if !ok {
			status(stack, abi.HostInvalid)
			return
		}
		val, found, err := inst.p.deps.KV.Get(ctx, inst.p.dataScope, key)
		switch {
		case err != nil:
			inst.p.hostError(ctx, "kv_get", err)
			status(stack, abi.HostUnavailable)
			return
		case !found:
			status(stack, abi.HostNotFound)
			return
		case len(val) > maxKVValueBytes:
			status(stack, abi.HostLimited)
			return
		}
		if uint32(len(val)) <= limit && !m.Write(buf, val) {
			status(stack, abi.HostInvalid)
			return
		}
		status(stack, int32(len(val)))
	}, []api.ValueType{i32, i32, i32, i32}, i32)

	def("kv_set", func(ctx context.Context, inst *instance, m api.Memory, stack []uint64) {
		key, ok := readKey(m, uint32(stack[0]), uint32(stack[1]))
		n, ttl := uint32(stack[3]), time.Duration(int64(stack[4]))*time.Millisecond
		if !ok || n > maxKVValueBytes || ttl <= 0 || ttl > maxKVTTL {
			status(stack, abi.HostInvalid)
			return
		}
		val, ok := m.Read(uint32(stack[2]), n)
		if !ok {
			status(stack, abi.HostInvalid)
			return
		}
		err := inst.p.deps.KV.Set(ctx, inst.p.dataScope, key, val, ttl)
		if errors.Is(err, ErrQuotaExceeded) {
			inst.p.quotaRefused(ctx, "kv_set", err)
			status(stack, abi.HostLimited)
			return
		}
		if err != nil {
			inst.p.hostError(ctx, "kv_set", err)
			status(stack, abi.HostUnavailable)
			return
		}
		status(stack, abi.HostOK)
	}, []api.ValueType{i32, i32, i32, i32, i64}, i32)

	def("pseudonymize", func(ctx context.Context, inst *instance, m api.Memory, stack []uint64) {
		n, buf, limit := uint32(stack[1]), uint32(stack[2]), uint32(stack[3])
		if n > maxPseudonymInput {
			status(stack, abi.HostInvalid)
			return
		}
		v, ok := m.Read(uint32(stack[0]), n)
		if !ok {
			status(stack, abi.HostInvalid)
			return
		}
		if limit < pseudonymLen {
			status(stack, pseudonymLen)
			return
		}
		if inst.pseudo == nil {
			key, err := inst.p.deps.Secrets.PseudonymKey(ctx, inst.p.tenant)
			if err != nil {
				inst.p.hostError(ctx, "pseudonymize", err)
				status(stack, abi.HostUnavailable)
				return
			}
			inst.pseudo = NewPseudonymizer(key)
		}
		var out [pseudonymLen]byte
		inst.pseudo.encode(&out, v)
		if !m.Write(buf, out[:]) {
			status(stack, abi.HostInvalid)
			return
		}
		status(stack, pseudonymLen)
	}, []api.ValueType{i32, i32, i32, i32}, i32)

	def("now", func(ctx context.Context, inst *instance, m api.Memory, stack []uint64) {
		stack[0] = uint64(inst.p.deps.Clock.Now().UnixNano())
	}, nil, i64)

	def("config_get", func(ctx context.Context, inst *instance, m api.Memory, stack []uint64) {
		buf, limit := uint32(stack[0]), uint32(stack[1])
		cfg := inst.p.config
		if uint32(len(cfg)) <= limit && len(cfg) > 0 && !m.Write(buf, cfg) {
			status(stack, abi.HostInvalid)
			return
		}
		status(stack, int32(len(cfg)))
	}, []api.ValueType{i32, i32}, i32)

	for _, f := range HostFunctions {
		if !defined[f.Name] {
			panic("plugin: HostFunctions lists " + f.Name + ", which the host does not define")
		}
	}
	_, err := b.Instantiate(ctx)
	return err
}

// Pseudonym is the raw keyed pseudonym the pseudonymize host function
// returns base64url-encoded: HMAC-SHA-256(key, "authority.pseudonym.v1\x00" || v).
func Pseudonym(key, v []byte) []byte {
	h := hmac.New(sha256.New, key)
	h.Write([]byte(pseudonymDomain))
	h.Write(v)
	return h.Sum(nil)
}

// Pseudonymizer computes one key's pseudonyms (PseudonymString) with one
// HMAC state kept across calls, which saves the key schedule and the
// allocations of a fresh HMAC per value. Safe for concurrent use.
type Pseudonymizer struct {
	mu sync.Mutex
	h  hash.Hash
}

// NewPseudonymizer returns a Pseudonymizer for key.
func NewPseudonymizer(key []byte) *Pseudonymizer {
	return &Pseudonymizer{h: hmac.New(sha256.New, key)}
}

// String is PseudonymString(key, v).
func (p *Pseudonymizer) String(v string) string {
	var out [pseudonymLen]byte
	p.encode(&out, []byte(v))
	return string(out[:])
}

// encode writes the pseudonym of v (what the pseudonymize host function
// returns) to out.
func (p *Pseudonymizer) encode(out *[pseudonymLen]byte, v []byte) {
	var sum [sha256.Size]byte
	p.mu.Lock()
	p.h.Reset()
	p.h.Write([]byte(pseudonymDomain))
	p.h.Write(v)
	p.h.Sum(sum[:0])
	p.mu.Unlock()
	base64.RawURLEncoding.Encode(out[:], sum[:])
}

// PseudonymString is what the pseudonymize host function writes:
// base64url (unpadded, 43 bytes) of Pseudonym. The host's own audit
// records use it too, so host and plugin pseudonyms of a value match.
func PseudonymString(key, v []byte) string {
	return base64.RawURLEncoding.EncodeToString(Pseudonym(key, v))
}

func readKey(m api.Memory, ptr, n uint32) (string, bool) {
	if n == 0 || n > maxKeyBytes {
		return "", false
	}
	b, ok := m.Read(ptr, n)
	if !ok {
		return "", false
	}
	for _, c := range b {
		if c < 0x21 || c > 0x7e {
			return "", false
		}
	}
	return string(b), true
}

func metricChars(b []byte) bool {
	for _, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_') {
			return false
		}
	}
	return true
}
