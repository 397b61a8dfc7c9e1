package plugin

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/experimental"
	"github.com/tetratelabs/wazero/sys"

	"stellaops.org/authority/abi"
	"stellaops.org/authority/host/plugin/meter"
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
	KindBudget      FailureKind = "budget"       // node instance budget used up by busy instances
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

// callCtx is the per-instance context passed to every guest call. Guest
// code is bounded by its work budget (see package meter), not by this
// context: the runtime does not interrupt guest code on a deadline, so a
// saturated node never kills a healthy call. The deadline bounds what the
// host waits for on the guest's behalf (poll_oneoff, store round trips in
// host functions), and host functions refuse to start after it. Done is
// created only when a host function asks for it, so a call that waits for
// nothing arms no timer.
type callCtx struct {
	inst     *instance
	start    time.Time
	deadline time.Time
	done     chan struct{}
	timer    *time.Timer
}

func (c *callCtx) Deadline() (time.Time, bool) { return c.deadline, !c.deadline.IsZero() }

// Done returns a channel closed at the deadline.
func (c *callCtx) Done() <-chan struct{} {
	if c.done == nil {
		ch := make(chan struct{})
		c.done = ch
		if d := time.Until(c.deadline); d > 0 {
			c.timer = time.AfterFunc(d, func() { close(ch) })
		} else {
			close(ch)
		}
	}
	return c.done
}

func (c *callCtx) Err() error {
	if !c.deadline.IsZero() && !time.Now().Before(c.deadline) {
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

// arm starts the deadline of one call.
func (c *callCtx) arm(d time.Duration) {
	c.start = time.Now()
	c.deadline = c.start.Add(d)
}

// disarm ends the call: it releases the Done timer if one was made.
func (c *callCtx) disarm() {
	if c.timer != nil {
		c.timer.Stop()
		c.timer = nil
	}
	c.done = nil
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
	// fuel and stack are the globals the metering pass injected.
	fuel   api.MutableGlobal
	stack  api.MutableGlobal
	cc     callCtx
	buf    uint32 // guest input buffer from authority_alloc
	bufCap uint32
	args   [2]uint64
	// budget is the work budget of the current call; used what the last
	// completed call used of it.
	budget, used int64
	// lastUsed is when the instance went back to the pool.
	lastUsed time.Time
	// budgeted: the instance holds a slot of the node's budget, released
	// by close.
	budgeted bool
	// audits counts audit_emit calls in the current hook call (reset at
	// its start); auditBytes their bytes, reset by audit_emit when audits
	// is 0.
	audits, auditBytes int
	// pseudo is the tenant key's HMAC state for pseudonymize, keyed at the
	// instance's first call (an instance serves one tenant and the key
	// does not change under it; a reload makes new instances). It saves
	// the key's derivation and schedule on every call.
	pseudo *Pseudonymizer
	// counterOps and counterRes are counter_incr_many's, kept with the
	// instance (one call at a time) so a batch allocates nothing.
	counterOps []CounterOp
	counterRes []CounterResult
}

var errABIVersion = errors.New("abi version mismatch")

// versionError is an ABI version mismatch found at instantiation.
type versionError struct{ declared uint32 }

func (e *versionError) Error() string {
	return fmt.Sprintf("%v: module declares %d, host speaks %d", errABIVersion, e.declared, abi.Version)
}

func (e *versionError) Unwrap() error { return errABIVersion }

// errBudget is the panic value of a host function called with the budget
// spent; classify reports it, like a guest trap on an empty budget, as a
// timeout.
var errBudget = errors.New("work budget exhausted")

func newInstance(p *pool) (*instance, error) {
	inst := &instance{p: p}
	if b := p.budget; b != nil {
		if !b.acquire() {
			return nil, errBudgetExhausted
		}
		inst.budgeted = true
	}
	inst.cc.inst = inst
	// The start function (if any) runs inside InstantiateModule on the fuel
	// global's initial value, which the rewriter set to the init budget;
	// _initialize and authority_abi_version share what it leaves.
	inst.budget = p.mod.initBudget
	inst.cc.arm(p.opts.InitTimeout)
	defer inst.cc.disarm()
	ctx := &inst.cc
	mod, err := p.mod.eng.rt.InstantiateModule(experimental.WithMemoryAllocator(ctx, p.mod.alloc), p.mod.compiled,
		wazero.NewModuleConfig().WithName("").WithStartFunctions())
	if err != nil {
		// A start function that traps on an empty budget and one that traps
		// on its own look alike from here (the instance is gone): say both.
		return nil, fmt.Errorf("instantiate (start function within the init work budget of %d units): %w", inst.budget, err)
	}
	inst.mod = mod
	inst.mem = mod.ExportedMemory("memory")
	inst.alloc = mod.ExportedFunction("authority_alloc")
	inst.decide = mod.ExportedFunction("authority_decide")
	inst.event = mod.ExportedFunction("authority_event")
	inst.fuel, _ = mod.ExportedGlobal(meter.FuelExport).(api.MutableGlobal)
	inst.stack, _ = mod.ExportedGlobal(meter.StackExport).(api.MutableGlobal)
	if inst.fuel == nil || inst.stack == nil {
		inst.close()
		return nil, errors.New("metering globals missing")
	}
	err = func() error {
		if p.mod.hasInit {
			inst.stack.Set(uint64(uint32(p.mod.stackUnits)))
			if _, err := mod.ExportedFunction("_initialize").Call(ctx); err != nil {
				_, err = inst.classify(err)
				return fmt.Errorf("_initialize: %w", err)
			}
		}
		inst.stack.Set(uint64(uint32(p.mod.stackUnits)))
		res, err := mod.ExportedFunction("authority_abi_version").Call(ctx)
		if err != nil {
			_, err = inst.classify(err)
			return fmt.Errorf("authority_abi_version: %w", err)
		}
		if v := uint32(res[0]); v != abi.Version {
			return &versionError{declared: v}
		}
		return nil
	}()
	if err != nil {
		inst.close()
		return nil, err
	}
	return inst, nil
}

func (inst *instance) close() {
	inst.cc.disarm()
	if inst.mod != nil {
		_ = inst.mod.Close(context.Background())
	}
	if inst.budgeted {
		inst.budgeted = false
		inst.p.budget.release()
	}
}

// begin sets the budget, the stack units and the deadline of one call.
func (inst *instance) begin(timeout time.Duration) {
	inst.audits = 0
	inst.budget = inst.p.mod.unitsFor(timeout)
	inst.fuel.Set(uint64(inst.budget))
	inst.stack.Set(uint64(uint32(inst.p.mod.stackUnits)))
	inst.cc.arm(timeout)
}

// end closes one call and records what it used of its budget.
func (inst *instance) end() {
	inst.cc.disarm()
	inst.used = inst.budget - int64(inst.fuel.Get())
}

// chargeHost is called by every host function before it does anything: it
// charges hostCallUnits to the budget and refuses to start after the call
// deadline, so a guest looping over host calls is bounded by both.
func (inst *instance) chargeHost() {
	if inst.fuel == nil {
		return // instantiation: the start function has no host calls to make
	}
	v := int64(inst.fuel.Get()) - hostCallUnits
	inst.fuel.Set(uint64(v))
	if v < 0 {
		panic(errBudget)
	}
	if !inst.cc.deadline.IsZero() && !time.Now().Before(inst.cc.deadline) {
		panic(sys.NewExitError(sys.ExitCodeDeadlineExceeded))
	}
}

// classify turns a call error into a failure kind and an error that says
// which limit stopped the guest: its work budget, its stack units, the
// call deadline (host waits), or a trap of its own.
func (inst *instance) classify(err error) (FailureKind, error) {
	var ee *sys.ExitError
	if errors.As(err, &ee) && ee.ExitCode() == sys.ExitCodeDeadlineExceeded {
		return KindTimeout, fmt.Errorf("call deadline reached while the host waited: %w", err)
	}
	if inst.fuel != nil && int64(inst.fuel.Get()) < 0 {
		return KindTimeout, fmt.Errorf("work budget of %d units exhausted: %w", inst.budget, err)
	}
	if inst.stack != nil && int32(uint32(inst.stack.Get())) < 0 {
		return KindTrap, fmt.Errorf("stack overflow: call depth beyond %d stack units: %w", inst.p.mod.stackUnits, err)
	}
	return KindTrap, err
}

// write places payload in the guest input buffer, asking authority_alloc
// for a larger one only when it does not fit the current one.
func (inst *instance) write(payload []byte) (FailureKind, error) {
	n := uint32(len(payload))
	if n > inst.bufCap || inst.bufCap == 0 {
		inst.args[0] = uint64(n)
		if err := inst.alloc.CallWithStack(&inst.cc, inst.args[:]); err != nil {
			kind, err := inst.classify(err)
			return kind, fmt.Errorf("authority_alloc: %w", err)
		}
		ptr := uint32(inst.args[0])
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
	inst.begin(inst.p.spec.Limits.CallTimeout)
	kind, err := inst.callDecideArmed(payload, out)
	inst.end()
	return kind, err
}

func (inst *instance) callDecideArmed(payload []byte, out *abi.Decision) (FailureKind, error) {
	if kind, err := inst.write(payload); err != nil {
		return kind, err
	}
	inst.args[0], inst.args[1] = uint64(inst.buf), uint64(len(payload))
	if err := inst.decide.CallWithStack(&inst.cc, inst.args[:]); err != nil {
		return inst.classify(err)
	}
	packed := inst.args[0]
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
	inst.begin(inst.p.spec.Limits.CallTimeout)
	defer inst.end()
	return func() (FailureKind, error) {
		if kind, err := inst.write(payload); err != nil {
			return kind, err
		}
		inst.args[0], inst.args[1] = uint64(inst.buf), uint64(len(payload))
		if err := inst.event.CallWithStack(&inst.cc, inst.args[:]); err != nil {
			return inst.classify(err)
		}
		if st := int32(uint32(inst.args[0])); st != abi.HostOK {
			return KindGuestError, fmt.Errorf("authority_event returned status %d", st)
		}
		return "", nil
	}()
}
