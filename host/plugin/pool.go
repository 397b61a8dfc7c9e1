package plugin

import (
	"context"
	"encoding/json"
	"errors"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"stellaops.org/authority/abi"
)

// pool holds the instances of one plugin for one tenant. Instances never
// move between pools, so a tenant's data only ever enters instances that
// serve that tenant. At most spec.Limits.PoolSize instances live at once;
// they are created on demand, reused LIFO (the busiest stay warm) and
// closed after spec.Limits.IdleTimeout without use.
type pool struct {
	tenant    string
	name      string
	spec      Spec
	mod       *Module
	grants    grantSet
	config    []byte
	dataScope Scope
	deps      *Deps
	opts      *RuntimeOptions
	failMode  map[string]FailureMode
	// inline: the events hook runs on the request's goroutine
	// (Spec.EventDelivery); outcomes restricts the events it gets (nil:
	// every outcome).
	inline   bool
	outcomes []string
	breaker  breaker
	logs     limiter
	audits   limiter // audit_emit records per second
	stats    poolStats

	// bg tracks background instantiations (the manager waits for them).
	bg *sync.WaitGroup
	// budget is the node's instance budget (nil: none).
	budget *budget

	// metricNames are the metric_add names seen, at most maxMetricNames.
	metricMu    sync.Mutex
	metricNames map[string]string

	mu           sync.Mutex
	idle         []*instance
	live         int
	waiters      int
	wake         chan struct{}
	closed       bool
	replenishing bool
}

type poolStats struct {
	calls, failures, timeouts, traps, outputs, breakerRejects atomic.Uint64
	instantiations, instFailures, evictions, logDrops         atomic.Uint64
	auditLimited                                              atomic.Uint64
	quotaRefusals                                             atomic.Uint64
	lastErr                                                   atomic.Pointer[string]
	lastUnits                                                 atomic.Int64
}

var errPoolClosed = errors.New("pool closed")

func newPool(tenant string, spec Spec, mod *Module, deps *Deps, opts *RuntimeOptions, bg *sync.WaitGroup) (*pool, error) {
	p := &pool{
		bg:     bg,
		tenant: tenant, name: spec.Name, spec: spec, mod: mod,
		grants: newGrantSet(spec.Grants), deps: deps, opts: opts, failMode: spec.FailureMode,
		dataScope: Scope{Tenant: tenant, Plugin: spec.Name, Quota: quotaOf(spec.Limits)},
		wake:      make(chan struct{}),
		inline:    spec.EventDelivery == EventsInline, outcomes: spec.EventOutcomes,
	}
	if len(spec.Config) > 0 {
		b, err := json.Marshal(spec.Config)
		if err != nil {
			return nil, err
		}
		p.config = b
	}
	p.breaker.threshold = opts.BreakerThreshold
	p.breaker.cooldown = opts.BreakerCooldown
	p.logs = limiter{rate: opts.GuestLogRate, burst: float64(opts.GuestLogBurst), tokens: float64(opts.GuestLogBurst)}
	p.audits = limiter{rate: opts.AuditRate, burst: float64(opts.AuditBurst), tokens: float64(opts.AuditBurst)}
	return p, nil
}

// get returns an idle instance, creates one if fewer than PoolSize live,
// or waits (at most CallTimeout) for one to come back.
func (p *pool) get(ctx context.Context) (*instance, FailureKind, error) {
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for {
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			return nil, KindClosed, errPoolClosed
		}
		if n := len(p.idle); n > 0 {
			inst := p.idle[n-1]
			p.idle[n-1] = nil
			p.idle = p.idle[:n-1]
			p.mu.Unlock()
			return inst, "", nil
		}
		if p.live < p.spec.Limits.PoolSize {
			p.live++
			p.mu.Unlock()
			inst, err := newInstance(p)
			if errors.Is(err, errBudgetExhausted) {
				p.release()
				return nil, KindBudget, err
			}
			if err != nil {
				p.stats.instFailures.Add(1)
				p.release()
				return nil, KindInstantiate, err
			}
			p.stats.instantiations.Add(1)
			return inst, "", nil
		}
		p.waiters++
		wake := p.wake
		p.mu.Unlock()
		if timer == nil {
			timer = time.NewTimer(p.spec.Limits.CallTimeout)
		}
		var err error
		select {
		case <-wake:
		case <-timer.C:
			err = errors.New("no instance free within limits.callTimeout")
		case <-ctx.Done():
			err = ctx.Err()
		}
		p.mu.Lock()
		p.waiters--
		p.mu.Unlock()
		if err != nil {
			return nil, KindPoolBusy, err
		}
	}
}

// signal wakes waiters; callers hold p.mu.
func (p *pool) signalLocked() {
	if p.waiters > 0 {
		close(p.wake)
		p.wake = make(chan struct{})
	}
}

// put returns a healthy instance.
func (p *pool) put(inst *instance) {
	inst.lastUsed = inst.cc.start // the call's start: no clock read of its own
	p.mu.Lock()
	if p.closed {
		p.live--
		p.mu.Unlock()
		inst.close()
		return
	}
	p.idle = append(p.idle, inst)
	p.signalLocked()
	p.mu.Unlock()
}

// discard closes a failed instance and frees its slot. When that leaves
// no idle instance, a replacement is started in the background, so the
// next request does not pay an instantiation (10-16 ms) on its path.
func (p *pool) discard(inst *instance) {
	inst.close()
	p.release()
	p.replenish()
}

func (p *pool) replenish() {
	p.mu.Lock()
	if p.closed || p.replenishing || len(p.idle) > 0 || p.live >= p.spec.Limits.PoolSize {
		p.mu.Unlock()
		return
	}
	p.live++
	p.replenishing = true
	p.bg.Add(1)
	p.mu.Unlock()
	go func() {
		defer p.bg.Done()
		inst, err := newInstance(p)
		p.mu.Lock()
		p.replenishing = false
		p.mu.Unlock()
		if errors.Is(err, errBudgetExhausted) {
			p.release() // no room on the node: the next request asks again
			return
		}
		if err != nil {
			// Nobody waits for this instance: count and log the reason here
			// (a caller's own failed instantiation is logged by the caller).
			p.stats.instFailures.Add(1)
			msg := string(KindInstantiate) + ": " + err.Error()
			p.stats.lastErr.Store(&msg)
			p.deps.Logger.LogAttrs(context.Background(), slog.LevelWarn, "authority.plugin.instance.failed",
				slog.String("tenant", p.tenant), slog.String("plugin", p.name), slog.String("error", err.Error()))
			p.release()
			return
		}
		p.stats.instantiations.Add(1)
		p.put(inst)
	}()
}

func (p *pool) release() {
	p.mu.Lock()
	p.live--
	p.signalLocked()
	p.mu.Unlock()
}

// evictIdle closes instances idle for longer than IdleTimeout.
func (p *pool) evictIdle(now time.Time) {
	p.mu.Lock()
	var old []*instance
	keep := p.idle[:0]
	for _, inst := range p.idle {
		if now.Sub(inst.lastUsed) >= p.spec.Limits.IdleTimeout {
			old = append(old, inst)
		} else {
			keep = append(keep, inst)
		}
	}
	for i := len(keep); i < len(p.idle); i++ {
		p.idle[i] = nil
	}
	p.idle = keep
	p.live -= len(old)
	if len(old) > 0 {
		p.signalLocked()
	}
	p.mu.Unlock()
	for _, inst := range old {
		inst.close()
	}
	p.stats.evictions.Add(uint64(len(old)))
}

func (p *pool) close() {
	p.mu.Lock()
	p.closed = true
	idle := p.idle
	p.idle = nil
	p.live -= len(idle)
	p.signalLocked()
	p.mu.Unlock()
	for _, inst := range idle {
		inst.close()
	}
}

func (p *pool) counts() (live, idle int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.live, len(p.idle)
}

// warm makes sure one instance exists (and so that the module starts and
// speaks our ABI version for this tenant's configuration).
func (p *pool) warm(ctx context.Context) error {
	inst, _, err := p.get(ctx)
	if err != nil {
		return err
	}
	p.put(inst)
	return nil
}

func (p *pool) fail(kind FailureKind, err error) {
	p.stats.failures.Add(1)
	switch kind {
	case KindTimeout:
		p.stats.timeouts.Add(1)
	case KindTrap:
		p.stats.traps.Add(1)
	case KindOutput:
		p.stats.outputs.Add(1)
	}
	msg := string(kind) + ": " + err.Error()
	p.stats.lastErr.Store(&msg)
}

// decide runs one policy call, applying breaker and instance hygiene.
func (p *pool) decide(ctx context.Context, hook string, payload []byte, out *abi.Decision) *Failure {
	if t := p.deps.Tracer; t != nil {
		var span trace.Span
		ctx, span = t.Start(ctx, "plugin."+p.name, trace.WithAttributes(
			attribute.String("authority.tenant", p.tenant), attribute.String("authority.plugin", p.name),
			attribute.String("authority.hook", hook)))
		defer span.End()
		f := p.decideObserved(ctx, hook, payload, out)
		if f != nil {
			span.SetStatus(codes.Error, string(f.Kind))
		} else if !out.Allow {
			span.SetAttributes(attribute.Int("authority.deny_status", out.Status))
		}
		return f
	}
	return p.decideObserved(ctx, hook, payload, out)
}

func (p *pool) decideObserved(ctx context.Context, hook string, payload []byte, out *abi.Decision) *Failure {
	if o := p.deps.Observer; o != nil {
		start := time.Now()
		f := p.decideOnce(ctx, hook, payload, out)
		o.PluginCall(p.tenant, p.name, hook, time.Since(start), failureKind(f))
		return f
	}
	return p.decideOnce(ctx, hook, payload, out)
}

func failureKind(f *Failure) FailureKind {
	if f == nil {
		return ""
	}
	return f.Kind
}

func (p *pool) decideOnce(ctx context.Context, hook string, payload []byte, out *abi.Decision) *Failure {
	if !p.breaker.allow(p.deps.Clock) {
		p.stats.breakerRejects.Add(1)
		return &Failure{Tenant: p.tenant, Plugin: p.name, Hook: hook, Kind: KindBreakerOpen, Err: errors.New("circuit breaker open")}
	}
	p.stats.calls.Add(1)
	inst, kind, err := p.get(ctx)
	if err == nil {
		kind, err = inst.callDecide(payload, out)
		p.stats.lastUnits.Store(inst.used)
		if err != nil {
			p.discard(inst)
		} else {
			p.put(inst)
		}
	}
	if err != nil {
		p.fail(kind, err)
		p.breaker.record(kind, p.deps.Clock.Now())
		return &Failure{Tenant: p.tenant, Plugin: p.name, Hook: hook, Kind: kind, Err: err}
	}
	p.breaker.success()
	return nil
}

// event runs one telemetry call.
func (p *pool) event(ctx context.Context, payload []byte) *Failure {
	if o := p.deps.Observer; o != nil {
		start := time.Now()
		f := p.eventOnce(ctx, payload)
		o.PluginCall(p.tenant, p.name, abi.HookEvents, time.Since(start), failureKind(f))
		return f
	}
	return p.eventOnce(ctx, payload)
}

func (p *pool) eventOnce(ctx context.Context, payload []byte) *Failure {
	if !p.breaker.allow(p.deps.Clock) {
		p.stats.breakerRejects.Add(1)
		return &Failure{Tenant: p.tenant, Plugin: p.name, Hook: abi.HookEvents, Kind: KindBreakerOpen, Err: errors.New("circuit breaker open")}
	}
	p.stats.calls.Add(1)
	inst, kind, err := p.get(ctx)
	if err == nil {
		kind, err = inst.callEvent(payload)
		p.stats.lastUnits.Store(inst.used)
		if err != nil && kind != KindGuestError {
			p.discard(inst)
		} else {
			p.put(inst)
		}
	}
	if err != nil {
		p.fail(kind, err)
		p.breaker.record(kind, p.deps.Clock.Now())
		return &Failure{Tenant: p.tenant, Plugin: p.name, Hook: abi.HookEvents, Kind: kind, Err: err}
	}
	p.breaker.success()
	return nil
}

func (p *pool) guestLog(ctx context.Context, level slog.Level, source, msg string) {
	if !p.logs.allow(time.Now()) {
		p.stats.logDrops.Add(1)
		return
	}
	p.deps.Logger.LogAttrs(ctx, level, "authority.plugin.log", slog.String("tenant", p.tenant),
		slog.String("plugin", p.name), slog.String("source", source), slog.String("msg", msg))
}

// metricName returns name as a string when it is one of the first
// maxMetricNames distinct names the plugin used (the label values of its
// counters stay bounded), and false beyond them. Known names do not
// allocate.
func (p *pool) metricName(name []byte) (string, bool) {
	p.metricMu.Lock()
	defer p.metricMu.Unlock()
	if s, ok := p.metricNames[string(name)]; ok {
		return s, true
	}
	if len(p.metricNames) >= maxMetricNames {
		return "", false
	}
	if p.metricNames == nil {
		p.metricNames = map[string]string{}
	}
	s := string(name)
	p.metricNames[s] = s
	return s, true
}

// quotaRefused counts a write refused by the plugin's state quota and logs
// it within the plugin's own log budget (a plugin at its quota on every
// request must not flood the host log).
func (p *pool) quotaRefused(ctx context.Context, fn string, err error) {
	p.stats.quotaRefusals.Add(1)
	if !p.logs.allow(time.Now()) {
		p.stats.logDrops.Add(1)
		return
	}
	p.deps.Logger.LogAttrs(ctx, slog.LevelWarn, "authority.plugin.quota.exceeded", slog.String("tenant", p.tenant),
		slog.String("plugin", p.name), slog.String("function", fn), slog.String("error", err.Error()))
}

func (p *pool) hostError(ctx context.Context, fn string, err error) {
	p.deps.Logger.LogAttrs(ctx, slog.LevelWarn, "authority.plugin.hostcall.failed", slog.String("tenant", p.tenant),
		slog.String("plugin", p.name), slog.String("function", fn), slog.String("error", err.Error()))
}

// limiter is a token bucket.
type limiter struct {
	mu     sync.Mutex
	rate   float64
	burst  float64
	tokens float64
	last   time.Time
}

func (l *limiter) allow(now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.last.IsZero() {
		l.tokens = min(l.burst, l.tokens+now.Sub(l.last).Seconds()*l.rate)
	}
	l.last = now
	if l.tokens < 1 {
		return false
	}
	l.tokens--
	return true
}

// BreakerState is the state of a plugin's circuit breaker.
type BreakerState string

// Breaker states.
const (
	BreakerClosed   BreakerState = "closed"    // calls flow
	BreakerOpen     BreakerState = "open"      // calls fail fast with the failure mode
	BreakerHalfOpen BreakerState = "half-open" // one trial call decides
)

// breaker opens after threshold consecutive failures, lets one trial call
// through after cooldown, and closes again on a success.
type breaker struct {
	mu        sync.Mutex
	threshold int
	cooldown  time.Duration
	state     BreakerState
	failures  int
	openedAt  time.Time
	trial     bool
}

// allow reads the clock only when the breaker is open: a closed breaker,
// the steady state, costs a lock and no clock read.
func (b *breaker) allow(clock Clock) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	switch b.state {
	case BreakerOpen:
		if clock.Now().Sub(b.openedAt) < b.cooldown {
			return false
		}
		b.state, b.trial = BreakerHalfOpen, true
		return true
	case BreakerHalfOpen:
		if b.trial {
			return false
		}
		b.trial = true
		return true
	}
	return true
}

func (b *breaker) success() {
	b.mu.Lock()
	b.state, b.failures, b.trial = BreakerClosed, 0, false
	b.mu.Unlock()
}

// record counts a failure of kind. Overload (pool busy, the node's budget
// used up) and shutdown say nothing about the plugin: they only release a
// half-open trial.
func (b *breaker) record(kind FailureKind, now time.Time) {
	if kind == KindPoolBusy || kind == KindBudget || kind == KindClosed {
		b.mu.Lock()
		b.trial = false
		b.mu.Unlock()
		return
	}
	b.failure(now)
}

func (b *breaker) failure(now time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.failures++
	if b.state == BreakerHalfOpen || b.failures >= b.threshold {
		b.state, b.openedAt, b.trial = BreakerOpen, now, false
	}
}

func (b *breaker) snapshot(now time.Time) (BreakerState, int, time.Duration) {
	b.mu.Lock()
	defer b.mu.Unlock()
	st := b.state
	if st == "" {
		st = BreakerClosed
	}
	var wait time.Duration
	if st == BreakerOpen {
		wait = max(0, b.cooldown-now.Sub(b.openedAt))
	}
	return st, b.failures, wait
}

// wants reports whether p's events hook takes an event with outcome.
func (p *pool) wants(outcome string) bool {
	return p.outcomes == nil || slices.Contains(p.outcomes, outcome)
}
