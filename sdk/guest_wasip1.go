//go:build wasip1

package sdk

import (
	"runtime"
	"time"
	"unsafe"

	"stellaops.org/authority/abi"
)

// Buffers crossing the boundary. They stay reachable from these globals, so
// the (non-moving) Go GC never frees memory the host still addresses.
var (
	inBuf    []byte // written by the host after authority_alloc
	outBuf   []byte // result of the last authority_decide
	scratch  []byte // host function arguments
	input    abi.DecisionInput
	event    abi.Event
	kvBuf    = make([]byte, 256)
	cfgCache []byte
	cfgRead  bool
)

func bufPtr(b []byte) uint32 {
	if cap(b) == 0 {
		return 0
	}
	return uint32(uintptr(unsafe.Pointer(unsafe.SliceData(b))))
}

//go:wasmexport authority_abi_version
func exportABIVersion() int32 { return abi.Version }

// authority_alloc returns a buffer of at least size bytes owned by the
// guest; it stays valid, and may be reused by the host, until the next
// authority_alloc call.
//
//go:wasmexport authority_alloc
func exportAlloc(size uint32) uint32 {
	if int(size) > cap(inBuf) {
		inBuf = make([]byte, size)
	}
	inBuf = inBuf[:cap(inBuf)]
	return bufPtr(inBuf)
}

func inputBytes(ptr, n uint32) ([]byte, bool) {
	if cap(inBuf) == 0 || ptr != bufPtr(inBuf) || int(n) > len(inBuf) {
		return nil, false
	}
	return inBuf[:n], true
}

//go:wasmexport authority_decide
func exportDecide(ptr, n uint32) uint64 {
	b, ok := inputBytes(ptr, n)
	if !ok || decisionHandler == nil {
		return 0
	}
	if err := abi.DecodeDecisionInputView(b, &input); err != nil {
		return 0
	}
	d := decisionHandler(&input)
	outBuf = abi.AppendDecision(outBuf[:0], &d)
	return uint64(bufPtr(outBuf))<<32 | uint64(len(outBuf))
}

//go:wasmexport authority_event
func exportEvent(ptr, n uint32) int32 {
	b, ok := inputBytes(ptr, n)
	if !ok || eventHandler == nil {
		return abi.HostInvalid
	}
	if err := abi.DecodeEventView(b, &event); err != nil {
		return abi.HostInvalid
	}
	err := eventHandler(&event)
	if err != nil {
		return abi.HostUnavailable
	}
	return abi.HostOK
}

//go:wasmimport authority log
func hostLog(level int32, msg string)

//go:wasmimport authority metric_add
func hostMetricAdd(name string, delta int64) int32

//go:wasmimport authority audit_emit
func hostAuditEmit(ptr unsafe.Pointer, n uint32) int32

//go:wasmimport authority counter_incr
func hostCounterIncr(key string, delta int64, windowMs int64, out unsafe.Pointer) int32

//go:wasmimport authority counter_incr_many
func hostCounterIncrMany(ops unsafe.Pointer, n uint32, out unsafe.Pointer) int32

//go:wasmimport authority kv_get
func hostKVGet(key string, buf unsafe.Pointer, limit uint32) int32

//go:wasmimport authority kv_set
func hostKVSet(key string, val unsafe.Pointer, n uint32, ttlMs int64) int32

//go:wasmimport authority pseudonymize
func hostPseudonymize(v string, buf unsafe.Pointer, limit uint32) int32

//go:wasmimport authority now
func hostNow() int64

//go:wasmimport authority config_get
func hostConfigGet(buf unsafe.Pointer, limit uint32) int32

// Log writes msg to the host log at level (LevelDebug..LevelError), tagged
// with tenant and plugin. The host truncates long lines and drops lines
// beyond its rate limit. Requires grant "log".
func Log(level int32, msg string) { hostLog(level, msg) }

// Metric adds delta to the plugin counter name ([a-z0-9_], at most 64
// bytes), exported by the host as
// authority_plugin_metric_total{tenant,plugin,name}. At most 16 distinct
// names per plugin: a further one returns ErrLimited. Requires grant
// "metrics".
func Metric(name string, delta int64) error { return statusErr(hostMetricAdd(name, delta)) }

// Audit records ev through the host's audit sink as a record of this
// plugin (source "plugin:<name>", never a host record). The host overwrites
// ev.Tenant with the instance's tenant, refuses events failing
// abi.ValidateEvent, and returns ErrLimited beyond the operator's audit
// budget (by default 8 records and 16 KiB per hook call, 10 per second).
// Requires grant "audit".
func Audit(ev *abi.Event) error {
	scratch = abi.AppendEvent(scratch[:0], ev)
	return statusErr(hostAuditEmit(unsafe.Pointer(unsafe.SliceData(scratch)), uint32(len(scratch))))
}

// CounterIncr adds delta to the tenant-scoped fixed-window counter key and
// returns its new value and the time left in the window. The window starts
// at the first increment; delta 0 reads without creating. Counters live in
// the host's Counters implementation: today in memory, per node and per
// plugin set (a reload starts them afresh). Creating a key when the
// plugin holds limits.counterKeys live keys for this tenant returns
// ErrLimited and creates nothing. Requires grant "counters".
func CounterIncr(key string, delta int64, window time.Duration) (int64, time.Duration, error) {
	var out [2]int64
	st := hostCounterIncr(key, delta, window.Milliseconds(), unsafe.Pointer(&out))
	if err := statusErr(st); err != nil {
		return 0, 0, err
	}
	return out[0], time.Duration(out[1]) * time.Millisecond, nil
}

// counterOps and counterOut are CounterIncrMany's records (abi/SPEC.md
// §5 counter_incr_many), 24 bytes per operation.
var counterOps, counterOut [abi.MaxCounterBatch * abi.CounterRecordBytes]byte

// CounterIncrMany is CounterIncr for up to MaxCounterBatch keys in one
// host call, and one round trip to the counter store: out[i] is ops[i]'s
// outcome, each with its own error. The operations run in order, each
// atomically, but not as one transaction (another node's increments may
// fall between them). It returns an error, and runs nothing, when an
// operation is malformed (a key or window CounterIncr would refuse), ops is
// empty or too long, or out is shorter than ops. Requires grant "counters".
func CounterIncrMany(ops []CounterOp, out []CounterResult) error {
	if len(ops) == 0 || len(ops) > MaxCounterBatch || len(out) < len(ops) {
		return ErrInvalid
	}
	for i, op := range ops {
		r := counterOps[i*abi.CounterRecordBytes:]
		putU32(r, uint32(uintptr(unsafe.Pointer(unsafe.StringData(op.Key)))))
		putU32(r[4:], uint32(len(op.Key)))
		putU64(r[8:], uint64(op.Delta))
		putU64(r[16:], uint64(op.Window.Milliseconds()))
	}
	st := hostCounterIncrMany(unsafe.Pointer(&counterOps[0]), uint32(len(ops)), unsafe.Pointer(&counterOut[0]))
	// The keys' bytes must stay live until the host has read them.
	runtime.KeepAlive(ops)
	if err := statusErr(st); err != nil {
		return err
	}
	for i := range ops {
		r := counterOut[i*abi.CounterRecordBytes:]
		out[i] = CounterResult{Value: int64(getU64(r)), TTL: time.Duration(int64(getU64(r[8:]))) * time.Millisecond,
			Err: statusErr(int32(getU32(r[16:])))}
	}
	return nil
}

func putU32(b []byte, v uint32) {
	_ = b[3]
	b[0], b[1], b[2], b[3] = byte(v), byte(v>>8), byte(v>>16), byte(v>>24)
}
func putU64(b []byte, v uint64) { putU32(b, uint32(v)); putU32(b[4:], uint32(v>>32)) }
func getU32(b []byte) uint32 {
	_ = b[3]
	return uint32(b[0]) | uint32(b[1])<<8 | uint32(b[2])<<16 | uint32(b[3])<<24
}
func getU64(b []byte) uint64 { return uint64(getU32(b)) | uint64(getU32(b[4:]))<<32 }

// KVGet returns the tenant-scoped value of key; ok is false when absent or
// expired. The returned slice is the caller's. Requires grant "kv".
func KVGet(key string) (val []byte, ok bool, err error) {
	for {
		n := hostKVGet(key, unsafe.Pointer(unsafe.SliceData(kvBuf)), uint32(len(kvBuf)))
		if n == abi.HostNotFound {
			return nil, false, nil
		}
		if err := statusErr(n); err != nil {
			return nil, false, err
		}
		if int(n) <= len(kvBuf) {
			return append([]byte(nil), kvBuf[:n]...), true, nil
		}
		kvBuf = make([]byte, n)
	}
}

// KVSet stores val under the tenant-scoped key for ttl (> 0; the host caps
// it). A write that would take the plugin's entries or bytes for this
// tenant beyond limits.kvEntries or limits.kvBytes returns ErrLimited and
// leaves the previous value in place. Requires grant "kv".
func KVSet(key string, val []byte, ttl time.Duration) error {
	return statusErr(hostKVSet(key, unsafe.Pointer(unsafe.SliceData(val)), uint32(len(val)), ttl.Milliseconds()))
}

// Pseudonymize returns the host's keyed pseudonym of v: base64url of
// HMAC-SHA-256 under the tenant's secret. Equal inputs give equal
// pseudonyms within a tenant, unrelated ones across tenants; the secret
// never enters the guest. Requires grant "pseudonymize".
func Pseudonymize(v string) (string, error) {
	var buf [64]byte
	n := hostPseudonymize(v, unsafe.Pointer(&buf), uint32(len(buf)))
	if err := statusErr(n); err != nil {
		return "", err
	}
	if int(n) > len(buf) {
		return "", ErrLimited
	}
	return string(buf[:n]), nil
}

// Now returns the host's clock (UTC). Requires grant "clock".
func Now() time.Time { return time.Unix(0, hostNow()).UTC() }

// Config returns the plugin's configuration document (JSON) as the
// operator wrote it for this tenant; nil when empty. Requires grant "config".
func Config() []byte {
	if cfgRead {
		return cfgCache
	}
	n := hostConfigGet(nil, 0)
	if n > 0 {
		buf := make([]byte, n)
		if m := hostConfigGet(unsafe.Pointer(unsafe.SliceData(buf)), uint32(n)); m == n {
			cfgCache = buf
		}
	}
	cfgRead = true
	return cfgCache
}
