package plugin

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"stellaops.org/authority/abi"
)

// Manager runs every tenant's plugin chain. It is immutable after
// NewManager except for instances coming and going; hot reload builds a
// new Manager and swaps it in. A Manager is safe for concurrent use.
type Manager struct {
	rt      *Runtime
	deps    Deps
	opts    RuntimeOptions
	tenants map[string]*tenantChain
	bufs    sync.Pool

	closed   atomic.Bool
	inflight atomic.Int64
	stop     chan struct{}
	// abort is closed when Close's context ends before the event queues
	// drained: workers then drop (and count) what is left.
	abort   chan struct{}
	workers sync.WaitGroup
	// budget is the node's instance budget (RuntimeOptions.MaxInstances;
	// nil: none).
	budget *budget
	bg     sync.WaitGroup // background instantiations
}

type tenantChain struct {
	name    string
	policy  map[string][]*pool // hook → pools in configuration order
	events  []*pool            // every events plugin
	queued  []*pool            // events plugins fed from queue
	inline  []*pool            // events plugins fed on the request's goroutine
	all     []*pool
	queue   chan abi.Event
	dropped atomic.Uint64
}

// NewManager validates every spec (defaults applied), loads each module
// (sha256 pinned, compiled once per digest through the disk cache),
// checks imports against grants and exports against hooks, starts one
// instance per distinct module to check its ABI version, and starts the
// idle reaper and one telemetry worker per tenant with an events plugin.
// Any error leaves nothing running. tenantSpecs maps a tenant to its
// ordered plugin chain; tenants without plugins cost nothing.
func NewManager(ctx context.Context, opts RuntimeOptions, tenantSpecs map[string][]Spec, deps Deps) (*Manager, error) {
	deps = deps.withDefaults()
	tenants := make([]string, 0, len(tenantSpecs))
	for t := range tenantSpecs {
		tenants = append(tenants, t)
	}
	sort.Strings(tenants)
	var verrs []error
	for _, t := range tenants {
		if err := ValidateTenant(fmt.Sprintf("tenants[%q].plugins", t), tenantSpecs[t]); err != nil {
			verrs = append(verrs, err)
		}
		for i, s := range tenantSpecs[t] {
			for _, g := range s.Grants {
				if g == GrantPseudonymize && deps.Secrets == nil {
					verrs = append(verrs, fmt.Errorf("tenants[%q].plugins[%d].grants: %q needs a tenant secret store (Deps.Secrets)", t, i, g))
				}
			}
		}
	}
	if err := errors.Join(verrs...); err != nil {
		return nil, err
	}
	if opts.Logger == nil {
		opts.Logger = deps.Logger
	}
	rt, err := NewRuntime(ctx, opts)
	if err != nil {
		return nil, err
	}
	m := &Manager{rt: rt, deps: deps, opts: rt.Options(), tenants: map[string]*tenantChain{}, stop: make(chan struct{}), abort: make(chan struct{}),
		budget: newBudget(opts.MaxInstances)}
	m.bufs.New = func() any { b := make([]byte, 0, 1024); return &b }
	fail := func(err error) (*Manager, error) {
		m.closePools()
		m.bg.Wait()
		_ = rt.Close(context.Background())
		return nil, err
	}
	warmed := map[*Module]bool{}
	type file struct {
		b      []byte
		digest string
	}
	files := map[string]file{} // each path read and hashed once
	for _, t := range tenants {
		c := &tenantChain{name: t, policy: map[string][]*pool{}}
		m.tenants[t] = c // registered first so that fail closes its pools
		for _, s := range tenantSpecs[t] {
			s = s.WithDefaults()
			f, ok := files[s.Path]
			if !ok {
				b, err := os.ReadFile(s.Path)
				if err != nil {
					return fail(fmt.Errorf("tenant %q: plugin %q: %w", t, s.Name, err))
				}
				f = file{b, Digest(b)}
				files[s.Path] = f
			}
			mod, err := rt.Load(ctx, s, f.b, f.digest)
			if err != nil {
				return fail(fmt.Errorf("tenant %q: %w", t, err))
			}
			p, err := newPool(t, s, mod, &m.deps, &m.opts, &m.bg)
			if err != nil {
				return fail(fmt.Errorf("tenant %q: plugin %q: %w", t, s.Name, err))
			}
			if m.budget != nil {
				p.budget = m.budget
				m.budget.pools = append(m.budget.pools, p)
			}
			c.all = append(c.all, p)
			for _, h := range s.Hooks {
				if h == abi.HookEvents {
					c.events = append(c.events, p)
					if p.inline {
						c.inline = append(c.inline, p)
					} else {
						c.queued = append(c.queued, p)
					}
				} else {
					c.policy[h] = append(c.policy[h], p)
				}
			}
			if !warmed[mod] {
				warmed[mod] = true
				if err := p.warm(ctx); err != nil {
					return fail(fmt.Errorf("tenant %q: plugin %q: module %s: %w", t, s.Name, s.Path, err))
				}
			}
		}
		if len(c.all) == 0 {
			delete(m.tenants, t)
		}
		if len(c.queued) > 0 {
			c.queue = make(chan abi.Event, m.opts.EventQueueSize)
		}
	}
	rt.saveCache() // the set's compiled code survives a host killed before Close
	for _, c := range m.tenants {
		if c.queue != nil {
			m.workers.Add(1)
			go m.eventWorker(c)
		}
	}
	if len(m.tenants) > 0 {
		m.workers.Add(1)
		go m.reaper()
	}
	return m, nil
}

// Has reports whether tenant has a policy plugin for hook, so callers can
// skip building a decision input nobody will read.
func (m *Manager) Has(tenant, hook string) bool {
	c := m.tenants[tenant]
	return c != nil && len(c.policy[hook]) > 0
}

// Decide runs tenant's policy chain for in.Endpoint after the endpoint's
// native checks passed. Guarantees:
//   - a tenant without plugins on the hook gets abi.Allowed() at once;
//   - plugins run in configuration order; the first deny is returned
//     (deny-overrides) and later plugins do not run;
//   - a plugin that fails (timeout, trap, invalid output, breaker open, no
//     free instance) is skipped when its failure mode is "open" and yields
//     503 temporarily_unavailable when "closed";
//   - the returned status, error, description and Retry-After are valid
//     per abi.Decision.Validate; annotation keys are prefixed with
//     "<plugin>.";
//   - the guest sees in with Tenant set to tenant, and with Time unset
//     unless the plugin is granted "clock"; in is not modified;
//   - ctx bounds only the wait for a free instance: a running guest call
//     is bounded by the plugin's callTimeout, not cancelled with the
//     request (that would discard a healthy instance).
//
// The error is non-nil when any plugin failed; it is for logs and metrics
// (it may be a *Failure or join several), the Decision already applies
// the failure modes and is what the caller enforces.
func (m *Manager) Decide(ctx context.Context, tenant string, in *abi.DecisionInput) (abi.Decision, error) {
	c := m.tenants[tenant]
	if c == nil {
		return abi.Allowed(), nil
	}
	pools := c.policy[in.Endpoint]
	if len(pools) == 0 {
		return abi.Allowed(), nil
	}
	m.inflight.Add(1)
	defer m.inflight.Add(-1)
	if m.closed.Load() {
		return unavailable(time.Second), &Failure{Tenant: tenant, Hook: in.Endpoint, Kind: KindClosed, Err: errors.New("manager closed")}
	}
	cp := *in
	cp.Tenant = tenant
	// Two encodings at most, each made when the chain first needs it: with
	// the time for plugins granted the clock, without it for the others
	// (abi/SPEC.md §6).
	var enc [2]struct {
		bp      *[]byte
		payload []byte
	}
	defer func() {
		for _, e := range enc {
			if e.bp != nil {
				*e.bp = e.payload[:0]
				m.bufs.Put(e.bp)
			}
		}
	}()
	encoded := func(clock bool) []byte {
		i := 0
		if !clock && !cp.Time.IsZero() {
			i = 1
		}
		e := &enc[i]
		if e.bp == nil {
			in := cp
			if i == 1 {
				in.Time = time.Time{}
			}
			e.bp = m.bufs.Get().(*[]byte)
			e.payload = abi.AppendDecisionInput((*e.bp)[:0], &in)
		}
		return e.payload
	}

	var ann []abi.KV
	var errs []error
	for _, p := range pools {
		pl := encoded(p.grants&bitClock != 0)
		var d abi.Decision
		if f := p.decide(ctx, in.Endpoint, pl, &d); f != nil {
			errs = append(errs, f)
			if p.failMode[in.Endpoint] == FailOpen {
				continue
			}
			_, _, wait := p.breaker.snapshot(m.deps.Clock.Now())
			u := unavailable(wait)
			u.Annotations = append(ann, abi.KV{Key: p.name + ".failure", Value: string(f.Kind)})
			return u, errors.Join(errs...)
		}
		for _, a := range d.Annotations {
			ann = append(ann, abi.KV{Key: p.name + "." + a.Key, Value: a.Value})
		}
		if !d.Allow {
			d.Annotations = ann
			return d, errors.Join(errs...)
		}
	}
	return abi.Decision{Allow: true, Annotations: ann}, errors.Join(errs...)
}

func unavailable(retry time.Duration) abi.Decision {
	secs := int((retry + time.Second - 1) / time.Second)
	if secs < 1 {
		secs = 1
	}
	return abi.Decision{Status: abi.StatusUnavailable, Error: abi.ErrorTemporarilyUnavailable,
		Description: "a policy plugin is unavailable", RetryAfter: min(secs, abi.MaxRetryAfter)}
}

// Emit hands ev to tenant's telemetry plugins: first, on the caller's
// goroutine, to those with inline delivery that want its outcome (each
// call bounded by the plugin's callTimeout, not by ctx's cancellation: a
// client hanging up must not keep its failure from being counted); then
// it queues ev for the queued ones, and reports whether it was queued.
// Queuing never blocks: when the tenant's queue is full (or the manager
// closed) the event is dropped and counted in Health. A tenant without
// events plugins costs a map lookup. ev.Tenant is set to tenant (and
// ev.Time unset for plugins not granted "clock"); the caller must not
// modify ev's slices afterwards.
func (m *Manager) Emit(ctx context.Context, tenant string, ev abi.Event) bool {
	c := m.tenants[tenant]
	if c == nil {
		return false
	}
	ev.Tenant = tenant
	if len(c.inline) > 0 {
		m.emitInline(context.WithoutCancel(ctx), c, &ev)
	}
	if c.queue == nil || !wantedBy(c.queued, ev.Outcome) {
		return false
	}
	if m.closed.Load() {
		c.dropped.Add(1)
		return false
	}
	select {
	case c.queue <- ev:
		return true
	default:
		c.dropped.Add(1)
		return false
	}
}

// wantedBy reports whether any of pools takes an event with outcome.
func wantedBy(pools []*pool, outcome string) bool {
	for _, p := range pools {
		if p.wants(outcome) {
			return true
		}
	}
	return false
}

// emitInline delivers ev to c's inline events plugins that want it. A
// failure is logged and counted like a queued delivery's (events fail
// open); after Close the event is dropped and counted.
func (m *Manager) emitInline(ctx context.Context, c *tenantChain, ev *abi.Event) {
	if !wantedBy(c.inline, ev.Outcome) {
		return
	}
	m.inflight.Add(1)
	defer m.inflight.Add(-1)
	if m.closed.Load() {
		c.dropped.Add(1)
		return
	}
	bp := m.bufs.Get().(*[]byte)
	buf := abi.AppendEvent((*bp)[:0], ev)
	var clockless []byte
	for _, p := range c.inline {
		if !p.wants(ev.Outcome) {
			continue
		}
		if f := p.event(ctx, eventPayload(p, ev, buf, &clockless)); f != nil && f.Kind != KindBreakerOpen {
			m.deps.Logger.LogAttrs(ctx, slog.LevelWarn, "authority.plugin.event.failed",
				slog.String("tenant", c.name), slog.String("plugin", p.name), slog.String("delivery", EventsInline),
				slog.String("reason", string(f.Kind)), slog.String("error", f.Err.Error()))
		}
	}
	*bp = buf[:0]
	m.bufs.Put(bp)
}

func (m *Manager) eventWorker(c *tenantChain) {
	defer m.workers.Done()
	var buf, clockless []byte
	deliver := func(ev *abi.Event) {
		buf = abi.AppendEvent(buf[:0], ev)
		clockless = clockless[:0]
		for _, p := range c.queued {
			if !p.wants(ev.Outcome) {
				continue
			}
			f := p.event(context.Background(), eventPayload(p, ev, buf, &clockless))
			if f == nil || f.Kind == KindBreakerOpen {
				continue
			}
			if m.aborted() {
				// Close gave up waiting: this delivery was cut short, not failed.
				c.dropped.Add(1)
				return
			}
			m.deps.Logger.LogAttrs(context.Background(), slog.LevelWarn, "authority.plugin.event.failed",
				slog.String("tenant", c.name), slog.String("plugin", p.name),
				slog.String("reason", string(f.Kind)), slog.String("error", f.Err.Error()))
		}
	}
	for {
		select {
		case ev := <-c.queue:
			deliver(&ev)
		case <-m.stop:
			// Drain what was queued before Close, until Close's context ends.
			for {
				if m.aborted() {
					c.dropQueued()
					return
				}
				select {
				case ev := <-c.queue:
					deliver(&ev)
				default:
					return
				}
			}
		}
	}
}

func (m *Manager) aborted() bool {
	select {
	case <-m.abort:
		return true
	default:
		return false
	}
}

// dropQueued empties the queue, counting each event as dropped.
func (c *tenantChain) dropQueued() {
	for {
		select {
		case <-c.queue:
			c.dropped.Add(1)
		default:
			return
		}
	}
}

func (m *Manager) reaper() {
	defer m.workers.Done()
	every := time.Minute
	for _, c := range m.tenants {
		for _, p := range c.all {
			every = min(every, p.spec.Limits.IdleTimeout/2)
		}
	}
	every = max(every, time.Second)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case now := <-t.C:
			m.evictIdle(now)
		case <-m.stop:
			return
		}
	}
}

func (m *Manager) evictIdle(now time.Time) {
	for _, c := range m.tenants {
		for _, p := range c.all {
			p.evictIdle(now)
		}
	}
}

// Health is a snapshot for /readyz and metrics.
type Health struct {
	// Ready is true while the manager is open: every module loaded,
	// verified and started once. Breaker states do not clear it (a broken
	// plugin is answered by its failure mode, on every node alike).
	Ready bool
	// Degraded is true when any breaker is not closed.
	Degraded bool
	Plugins  []PluginHealth
	// Budget is the node's instance budget (zero without one).
	Budget BudgetHealth
}

// BudgetHealth is the node's instance budget: Max slots, Live taken,
// Evictions of idle instances to make room, Refusals of new instances when
// every live one was busy.
type BudgetHealth struct {
	Max, Live           int
	Evictions, Refusals uint64
}

// PluginHealth describes one plugin of one tenant. Counters are totals
// since the manager started.
type PluginHealth struct {
	Tenant, Plugin, SHA256 string
	Hooks                  []string
	Breaker                BreakerState
	ConsecutiveFailures    int
	// RetryIn is the time until an open breaker lets a trial call through.
	RetryIn                        time.Duration
	LiveInstances, IdleInstances   int
	Calls, Failures, Timeouts      uint64
	Traps, InvalidOutputs          uint64
	BreakerRejects, Instantiations uint64
	// InstantiateFailures counts instances that did not start (trap or
	// deadline in _initialize, ABI version), on a call's path or when
	// replacing a discarded instance in the background.
	InstantiateFailures      uint64
	Evictions, GuestLogDrops uint64
	// AuditLimited counts audit_emit records refused by the audit budget
	// (per call, bytes per call, rate).
	AuditLimited  uint64
	EventsQueued  int
	EventsDropped uint64
	LastError     string
	// CallBudget is the work budget of one call (limits.callTimeout ×
	// UnitsPerMillisecond); LastCallUnits what the last completed call
	// used of it (see package meter).
	CallBudget, LastCallUnits int64
	// QuotaRefusals counts counter_incr and kv_set calls refused (with
	// HostLimited) by the plugin's state quota (limits.counterKeys,
	// kvEntries, kvBytes).
	QuotaRefusals uint64
}

// Health returns the state of every plugin, sorted by tenant then chain
// order.
func (m *Manager) Health() Health {
	h := Health{Ready: !m.closed.Load()}
	if b := m.budget; b != nil {
		h.Budget = BudgetHealth{Max: b.max, Live: b.Live(), Evictions: b.evictions.Load(), Refusals: b.refusals.Load()}
	}
	names := make([]string, 0, len(m.tenants))
	for t := range m.tenants {
		names = append(names, t)
	}
	sort.Strings(names)
	now := m.deps.Clock.Now()
	for _, t := range names {
		c := m.tenants[t]
		for _, p := range c.all {
			st, fails, wait := p.breaker.snapshot(now)
			live, idle := p.counts()
			ph := PluginHealth{
				Tenant: t, Plugin: p.name, SHA256: p.mod.SHA256, Hooks: p.spec.Hooks,
				Breaker: st, ConsecutiveFailures: fails, RetryIn: wait,
				LiveInstances: live, IdleInstances: idle,
				CallBudget: p.mod.unitsFor(p.spec.Limits.CallTimeout), LastCallUnits: p.stats.lastUnits.Load(),
				Calls: p.stats.calls.Load(), Failures: p.stats.failures.Load(), Timeouts: p.stats.timeouts.Load(),
				Traps: p.stats.traps.Load(), InvalidOutputs: p.stats.outputs.Load(),
				BreakerRejects: p.stats.breakerRejects.Load(), Instantiations: p.stats.instantiations.Load(),
				InstantiateFailures: p.stats.instFailures.Load(),
				Evictions:           p.stats.evictions.Load(), GuestLogDrops: p.stats.logDrops.Load(),
				AuditLimited:  p.stats.auditLimited.Load(),
				EventsDropped: c.dropped.Load(), QuotaRefusals: p.stats.quotaRefusals.Load(),
			}
			if c.queue != nil {
				ph.EventsQueued = len(c.queue)
			}
			if e := p.stats.lastErr.Load(); e != nil {
				ph.LastError = *e
			}
			if st != BreakerClosed {
				h.Degraded = true
			}
			h.Plugins = append(h.Plugins, ph)
		}
	}
	return h
}

// Close stops accepting calls and events, delivers the events already
// queued and waits for in-flight calls, then closes every instance and the
// runtime. It returns once ctx ends even if that work is not done: events
// still queued are then dropped and counted (Health EventsDropped), calls
// and deliveries still running are cut short by closing the runtime, and
// the error includes ctx.Err(). Only the first call does anything.
func (m *Manager) Close(ctx context.Context) error {
	if !m.closed.CompareAndSwap(false, true) {
		return nil
	}
	close(m.stop)
	drained := make(chan struct{})
	go func() { m.workers.Wait(); close(drained) }()
	select {
	case <-drained:
	case <-ctx.Done():
		return m.closeNow(ctx.Err())
	}
	if m.inflight.Load() > 0 {
		t := time.NewTicker(time.Millisecond)
		defer t.Stop()
		for m.inflight.Load() > 0 {
			select {
			case <-ctx.Done():
				return m.closeNow(ctx.Err())
			case <-t.C:
			}
		}
	}
	m.closePools()
	m.bg.Wait()
	return m.rt.Close(ctx)
}

// closeNow ends a Close whose context ended: queued events are dropped and
// counted, and the pools and the runtime are closed under whatever is still
// running (which then fails fast: closed pool, closed module). Background
// instantiations are not waited for; they find their pool closed.
func (m *Manager) closeNow(cause error) error {
	close(m.abort)
	for _, c := range m.tenants {
		if c.queue != nil {
			c.dropQueued()
		}
	}
	m.closePools()
	// Closing the runtime unmaps every instance's linear memory (see
	// mmapMemory): a call still running would then write to unmapped
	// memory. Every call ends by its deadline, so wait that long for the
	// calls, event workers and background instantiations still running;
	// past it (a bug), leave the runtime open rather than crash.
	if !m.waitIdle(m.longestCall() + time.Second) {
		m.deps.Logger.Warn("authority.plugin.close.incomplete", "why", "plugin calls outlived their deadline: the runtime is left open")
		return errors.Join(cause, errors.New("plugin: calls still running after their deadline; runtime left open"))
	}
	return errors.Join(cause, m.rt.Close(context.Background()))
}

// waitIdle waits up to d for the event workers, the calls in flight and
// the background instantiations to finish; false if they did not.
func (m *Manager) waitIdle(d time.Duration) bool {
	done := make(chan struct{})
	go func() { m.workers.Wait(); m.bg.Wait(); close(done) }()
	deadline := time.NewTimer(d)
	defer deadline.Stop()
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	workersDone := false
	for {
		if !workersDone {
			select {
			case <-done:
				workersDone = true
			default:
			}
		}
		if workersDone && m.inflight.Load() == 0 {
			return true
		}
		select {
		case <-deadline.C:
			return false
		case <-tick.C:
		}
	}
}

// longestCall is the longest a guest call may run: the largest call or
// init timeout of any plugin.
func (m *Manager) longestCall() time.Duration {
	d := m.opts.InitTimeout
	for _, c := range m.tenants {
		for _, p := range c.all {
			d = max(d, p.spec.Limits.CallTimeout)
		}
	}
	return d
}

func (m *Manager) closePools() {
	for _, c := range m.tenants {
		for _, p := range c.all {
			p.close()
		}
	}
}

// EmitSync delivers ev to tenant's telemetry plugins on the caller's
// goroutine and returns their failures joined. It is for tests and
// offline tooling; servers use Emit.
func (m *Manager) EmitSync(ctx context.Context, tenant string, ev abi.Event) error {
	c := m.tenants[tenant]
	if c == nil || len(c.events) == 0 {
		return nil
	}
	m.inflight.Add(1)
	defer m.inflight.Add(-1)
	ev.Tenant = tenant
	buf := abi.AppendEvent(nil, &ev)
	var clockless []byte
	var errs []error
	for _, p := range c.events {
		if !p.wants(ev.Outcome) {
			continue
		}
		if f := p.event(ctx, eventPayload(p, &ev, buf, &clockless)); f != nil {
			errs = append(errs, f)
		}
	}
	return errors.Join(errs...)
}

// eventPayload returns the encoding of ev that p may see: buf (ev encoded)
// for a plugin granted "clock", else ev with its time unset (abi/SPEC.md
// §6), encoded into *clockless once per event (an empty *clockless means
// not yet encoded).
func eventPayload(p *pool, ev *abi.Event, buf []byte, clockless *[]byte) []byte {
	if p.grants&bitClock != 0 || ev.Time.IsZero() {
		return buf
	}
	if len(*clockless) == 0 {
		nc := *ev
		nc.Time = time.Time{}
		*clockless = abi.AppendEvent((*clockless)[:0], &nc)
	}
	return *clockless
}
