package plugin

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/sys"

	"stellaops.org/authority/abi"
)

// FailureKind classifies a plugin failure; it is the "reason" label of
// failure metrics and the Kind of *Failure.
type FailureKind string

// Failure kinds.
const (
	KindTimeout     FailureKind = "timeout"      // call deadline reached
	KindTrap        FailureKind = "trap"         // guest trapped or exited
	KindOutput      FailureKind = "output"       // output outside the ABI
	KindInstantiate FailureKind = "instantiate"  // instance could not start
	KindBreakerOpen FailureKind = "breaker_open" // circuit breaker open
	KindPoolBusy    FailureKind = "pool_busy"    // no instance within CallTimeout
	KindGuestError  FailureKind = "guest_error"  // guest reported an error status
	KindClosed      FailureKind = "closed"       // manager closed
)

// Failure is the error of one failed plugin call.
type Failure struct {
	Tenant, Plugin, Hook string
	Kind                 FailureKind
	Err                  error
}

func (f *Failure) Error() string {
	return fmt.Sprintf("plugin %q (tenant %q, hook %s): %s: %v", f.Plugin, f.Tenant, f.Hook, f.Kind, f.Err)
}

func (f *Failure) Unwrap() error { return f.Err }

// instKey is the context key under which host functions find the calling
// instance.
type instKey struct{}

// callCtx is the per-instance context passed to every guest call. It
// implements context.Context without allocating per call: a timer armed
// for each call closes done and makes Err report DeadlineExceeded, which
// wazero (WithCloseOnContextDone) turns into closing the instance.
type callCtx struct {
	inst     *instance
	done     chan struct{}
	fired    atomic.Bool
	deadline time.Time
	timer    *time.Timer
}

func (c *callCtx) Deadline() (time.Time, bool) { return c.deadline, !c.deadline.IsZero() }
func (c *callCtx) Done() <-chan struct{}       { return c.done }
func (c *callCtx) Err() error {
	if c.fired.Load() {
		return context.DeadlineExceeded
	}
	return nil
}
func (c *callCtx) Value(k any) any {
	if _, ok := k.(instKey); ok {
		return c.inst
	}
	return nil
}

func (c *callCtx) fire() {
	if c.fired.CompareAndSwap(false, true) {
		close(c.done)
	}
}

// arm starts the deadline of one call.
func (c *callCtx) arm(d time.Duration) {
	c.deadline = time.Now().Add(d)
	c.timer.Reset(d)
}

// disarm stops the deadline; false means it fired (or is firing) and the
// instance must be discarded.
func (c *callCtx) disarm() bool {
	return c.timer.Stop() && !c.fired.Load()
}

func instanceFrom(ctx context.Context) *instance {
	i, _ := ctx.Value(instKey{}).(*instance)
	return i
}

// instance is one guest instance, used by one goroutine at a time.
type instance struct {
	p      *pool
	mod    api.Module
	mem    api.Memory
	alloc  api.Function
	decide api.Function
	event  api.Function
	cc     callCtx
	buf    uint32 // guest input buffer from authority_alloc
	bufCap uint32
	stack  [2]uint64
	// lastUsed is when the instance went back to the pool.
	lastUsed time.Time
	// audits counts audit_emit calls in the current hook call (reset at
	// its start); auditBytes their bytes, reset by audit_emit when audits
	// is 0.
	audits, auditBytes int
}

var errABIVersion = errors.New("abi version mismatch")

// versionError is an ABI version mismatch found at instantiation.
type versionError struct{ declared uint32 }

func (e *versionError) Error() string {
	return fmt.Sprintf("%v: module declares %d, host speaks %d", errABIVersion, e.declared, abi.Version)
}

func (e *versionError) Unwrap() error { return errABIVersion }

func newInstance(p *pool) (*instance, error) {
	inst := &instance{p: p}
	inst.cc.inst = inst
	inst.cc.done = make(chan struct{})
	inst.cc.timer = time.AfterFunc(time.Hour, inst.cc.fire)
	inst.cc.timer.Stop()
	inst.cc.arm(p.opts.InitTimeout)
	ctx := &inst.cc
	mod, err := p.mod.eng.rt.InstantiateModule(ctx, p.mod.compiled, wazero.NewModuleConfig().WithName("").WithStartFunctions())
	if err != nil {
		inst.cc.disarm()
		return nil, err
	}
	inst.mod = mod
	inst.mem = mod.ExportedMemory("memory")
	inst.alloc = mod.ExportedFunction("authority_alloc")
	inst.decide = mod.ExportedFunction("authority_decide")
	inst.event = mod.ExportedFunction("authority_event")
	err = func() error {
		if p.mod.hasInit {
			if _, err := mod.ExportedFunction("_initialize").Call(ctx); err != nil {
				return fmt.Errorf("_initialize: %w", err)
			}
		}
		res, err := mod.ExportedFunction("authority_abi_version").Call(ctx)
		if err != nil {
			return fmt.Errorf("authority_abi_version: %w", err)
		}
		if v := uint32(res[0]); v != abi.Version {
			return &versionError{declared: v}
		}
		return nil
	}()
	if !inst.cc.disarm() && err == nil {
		err = context.DeadlineExceeded
	}
	if err != nil {
		inst.close()
		return nil, err
	}
	return inst, nil
}

func (inst *instance) close() {
	inst.cc.timer.Stop()
	if inst.mod != nil {
		_ = inst.mod.Close(context.Background())
	}
}

// classify turns a call error into a failure kind.
func (inst *instance) classify(err error) FailureKind {
	var ee *sys.ExitError
	if inst.cc.fired.Load() || errors.As(err, &ee) && ee.ExitCode() == sys.ExitCodeDeadlineExceeded {
		return KindTimeout
	}
	return KindTrap
}

// write places payload in the guest input buffer, asking authority_alloc
// for a larger one only when it does not fit the current one.
func (inst *instance) write(payload []byte) (FailureKind, error) {
	n := uint32(len(payload))
	if n > inst.bufCap || inst.bufCap == 0 {
		inst.stack[0] = uint64(n)
		if err := inst.alloc.CallWithStack(&inst.cc, inst.stack[:]); err != nil {
			return inst.classify(err), fmt.Errorf("authority_alloc: %w", err)
		}
		ptr := uint32(inst.stack[0])
		if ptr == 0 || uint64(ptr)+uint64(n) > uint64(inst.mem.Size()) {
			return KindOutput, fmt.Errorf("authority_alloc(%d) returned out-of-bounds pointer %#x", n, ptr)
		}
		inst.buf, inst.bufCap = ptr, n
	}
	if !inst.mem.Write(inst.buf, payload) {
		return KindOutput, errors.New("input buffer outside guest memory")
	}
	return "", nil
}

// callDecide runs authority_decide on payload and decodes a valid decision
// into out. On failure the instance must be discarded.
func (inst *instance) callDecide(payload []byte, out *abi.Decision) (FailureKind, error) {
	inst.audits = 0
	inst.cc.arm(inst.p.spec.Limits.CallTimeout)
	kind, err := inst.callDecideArmed(payload, out)
	if !inst.cc.disarm() && err == nil {
		kind, err = KindTimeout, context.DeadlineExceeded
	}
	return kind, err
}

func (inst *instance) callDecideArmed(payload []byte, out *abi.Decision) (FailureKind, error) {
	if kind, err := inst.write(payload); err != nil {
		return kind, err
	}
	inst.stack[0], inst.stack[1] = uint64(inst.buf), uint64(len(payload))
	if err := inst.decide.CallWithStack(&inst.cc, inst.stack[:]); err != nil {
		return inst.classify(err), err
	}
	packed := inst.stack[0]
	if packed == 0 {
		return KindGuestError, errors.New("guest returned no decision")
	}
	ptr, n := uint32(packed>>32), uint32(packed)
	if int64(n) > int64(inst.p.spec.Limits.MaxOutputBytes) {
		return KindOutput, fmt.Errorf("output of %d bytes exceeds limits.maxOutputBytes %d", n, inst.p.spec.Limits.MaxOutputBytes)
	}
	view, ok := inst.mem.Read(ptr, n)
	if !ok {
		return KindOutput, fmt.Errorf("output [%#x, +%d) outside guest memory", ptr, n)
	}
	if err := abi.DecodeDecision(view, out); err != nil {
		return KindOutput, err
	}
	if err := out.Validate(); err != nil {
		return KindOutput, err
	}
	return "", nil
}

// callEvent runs authority_event on payload. A guest error status is
// reported as KindGuestError and leaves the instance usable.
func (inst *instance) callEvent(payload []byte) (FailureKind, error) {
	inst.audits = 0
	inst.cc.arm(inst.p.spec.Limits.CallTimeout)
	kind, err := func() (FailureKind, error) {
		if kind, err := inst.write(payload); err != nil {
			return kind, err
		}
		inst.stack[0], inst.stack[1] = uint64(inst.buf), uint64(len(payload))
		if err := inst.event.CallWithStack(&inst.cc, inst.stack[:]); err != nil {
			return inst.classify(err), err
		}
		if st := int32(uint32(inst.stack[0])); st != abi.HostOK {
			return KindGuestError, fmt.Errorf("authority_event returned status %d", st)
		}
		return "", nil
	}()
	if !inst.cc.disarm() && err == nil {
		kind, err = KindTimeout, context.DeadlineExceeded
	}
	return kind, err
}
