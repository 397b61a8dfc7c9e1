package plugin

import (
	"context"
	"errors"
	"fmt"
	"go.opentelemetry.io/otel/trace"
	"log/slog"
	"time"

	"stellaops.org/authority/abi"
)

// Clock tells the time to guests (now, clock_time_get realtime), to
// counters and to circuit breakers. Tests inject a fake one.
type Clock interface {
	Now() time.Time
}

// SystemClock is the wall clock.
type SystemClock struct{}

// Now returns time.Now().
func (SystemClock) Now() time.Time { return time.Now() }

// Scope is the owner of a piece of plugin state: one plugin of one tenant.
// Counters and KV keep every scope's keys apart (the same key in two
// scopes names two entries) and account for each scope on its own, so one
// scope can never use up the room of another.
type Scope struct {
	Tenant string
	Plugin string
	// Quota bounds the scope's live state. The host passes the plugin's
	// limits; zero fields take the defaults of DefaultLimits.
	Quota Quota
}

// Quota bounds the live (unexpired) state of one Scope. A zero field
// takes its default from DefaultLimits (never "unlimited").
type Quota struct {
	// CounterKeys caps the live counter keys.
	CounterKeys int
	// KVEntries caps the live KV entries.
	KVEntries int
	// KVBytes caps the sum of len(key)+len(value) over the live KV entries.
	KVBytes int64
}

// withDefaults returns q with every zero field set to its default.
func (q Quota) withDefaults() Quota {
	d := DefaultLimits()
	if q.CounterKeys <= 0 {
		q.CounterKeys = d.CounterKeys
	}
	if q.KVEntries <= 0 {
		q.KVEntries = d.KVEntries
	}
	if q.KVBytes <= 0 {
		q.KVBytes = d.KVBytes
	}
	return q
}

// ErrQuotaExceeded is the error (wrapped, naming the limit) of a write that
// would take its Scope beyond its Quota. A refused write changes nothing:
// the previous value of the key, if any, stays as it was. counter_incr and
// kv_set answer it with abi.HostLimited; any other store error is
// abi.HostUnavailable.
var ErrQuotaExceeded = errors.New("plugin: state quota exceeded")

// The quota errors, one per limit (no allocation on refusal).
var (
	errQuotaCounterKeys = fmt.Errorf("%w: limits.counterKeys", ErrQuotaExceeded)
	errQuotaKVEntries   = fmt.Errorf("%w: limits.kvEntries", ErrQuotaExceeded)
	errQuotaKVBytes     = fmt.Errorf("%w: limits.kvBytes", ErrQuotaExceeded)
)

// Counters backs counter_incr: fixed-window counters. An implementation on
// a shared store (Redis) makes them common to every node; the memory one
// is per node.
type Counters interface {
	// Incr adds delta to key of scope and returns the new value and the
	// time left in its window. The window (of length window) starts at the
	// first increment of an absent or expired key. delta 0 reads without
	// creating. Creating a key when scope already holds Quota.CounterKeys
	// live keys fails with ErrQuotaExceeded (and creates nothing);
	// increments of live keys are never refused by the quota.
	Incr(ctx context.Context, scope Scope, key string, delta int64, window time.Duration) (value int64, ttl time.Duration, err error)
}

// CounterOp is one increment of a batch (counter_incr_many): Incr's
// arguments; CounterResult its outcome.
type (
	CounterOp     = abi.CounterOp
	CounterResult = abi.CounterResult
)

// CounterBatcher is implemented by Counters that run several increments
// of one scope in one round trip (counter_incr_many). The operations are
// applied in order, each atomically as Incr would, but not as one
// transaction: another node's increments may fall between them. out has
// len(ops) entries.
type CounterBatcher interface {
	IncrMany(ctx context.Context, scope Scope, ops []CounterOp, out []CounterResult)
}

// incrMany runs ops through c's batch when it has one, else one Incr at a
// time.
func incrMany(ctx context.Context, c Counters, scope Scope, ops []CounterOp, out []CounterResult) {
	if b, ok := c.(CounterBatcher); ok {
		b.IncrMany(ctx, scope, ops, out)
		return
	}
	for i, op := range ops {
		out[i].Value, out[i].TTL, out[i].Err = c.Incr(ctx, scope, op.Key, op.Delta, op.Window)
	}
}

// KV backs kv_get and kv_set.
type KV interface {
	// Get returns the value of key in scope; ok is false when absent or
	// expired.
	Get(ctx context.Context, scope Scope, key string) (val []byte, ok bool, err error)
	// Set stores a copy of val under key in scope for ttl (> 0). It fails
	// with ErrQuotaExceeded, leaving the previous value in place, when the
	// scope would then hold more than Quota.KVEntries entries or
	// Quota.KVBytes bytes; an overwrite counts only the difference, so
	// replacing a value with one of the same or a smaller size always fits.
	Set(ctx context.Context, scope Scope, key string, val []byte, ttl time.Duration) error
}

// TenantSecrets holds the per-tenant keys of pseudonymize. The key never
// enters a guest.
type TenantSecrets interface {
	PseudonymKey(ctx context.Context, tenant string) ([]byte, error)
}

// AuditSink receives the events a plugin emits through audit_emit, already
// validated, within the audit budget and with Tenant set to the instance's
// tenant. plugin is the emitting plugin's configured name, taken by the
// host from the calling instance (no field of ev can set or change it). A
// sink must keep the record apart from the host's own: abi/SPEC.md §5
// requires its source to be "plugin:<plugin>" (see PluginSource) and its
// log event to be authority.audit.plugin, whatever ev.Type says.
type AuditSink interface {
	Audit(ctx context.Context, plugin string, ev abi.Event) error
}

// PluginSource is the source of the audit records plugin emits:
// "plugin:" + plugin. Host records have source "host".
func PluginSource(plugin string) string { return "plugin:" + plugin }

// MetricSink receives metric_add increments. name is already validated
// ([a-z0-9_], 1-64 bytes).
type MetricSink interface {
	AddPluginCounter(tenant, plugin, name string, delta int64)
}

// Observer receives one callback per plugin call, for metrics such as
// authority_plugin_calls_total{tenant,plugin,hook},
// authority_plugin_call_duration_seconds and
// authority_plugin_failures_total{reason}. failure is "" on success. It is
// called on the request path: it must not block.
type Observer interface {
	PluginCall(tenant, plugin, hook string, elapsed time.Duration, failure FailureKind)
}

// Deps are the host services plugins reach through host functions. Nil
// fields take in-memory or discarding defaults (see NewManager); Secrets
// has no default: a plugin granted "pseudonymize" without Secrets is
// refused at load.
type Deps struct {
	Clock    Clock
	Counters Counters
	KV       KV
	Secrets  TenantSecrets
	Audit    AuditSink
	Metrics  MetricSink
	// Observer, when set, sees every plugin call (nil: no per-call cost).
	Observer Observer
	// Tracer, when set, records a span per plugin call (child of the
	// request's span), named "plugin.<name>".
	Tracer trace.Tracer
	// Logger receives runtime events and (rate-limited) guest logs.
	Logger *slog.Logger
}

func (d Deps) withDefaults() Deps {
	if d.Logger == nil {
		d.Logger = slog.New(slog.DiscardHandler)
	}
	if d.Clock == nil {
		d.Clock = SystemClock{}
	}
	if d.Counters == nil {
		d.Counters = NewMemoryCounters(d.Clock)
	}
	if d.KV == nil {
		d.KV = NewMemoryKV(d.Clock)
	}
	if d.Audit == nil {
		d.Audit = logAudit{d.Logger}
	}
	if d.Metrics == nil {
		d.Metrics = discardMetrics{}
	}
	return d
}

type logAudit struct{ l *slog.Logger }

func (a logAudit) Audit(ctx context.Context, plugin string, ev abi.Event) error {
	a.l.LogAttrs(ctx, slog.LevelInfo, "authority.audit.plugin", slog.String("source", PluginSource(plugin)),
		slog.String("tenant", ev.Tenant), slog.String("event_type", ev.Type), slog.String("outcome", ev.Outcome))
	return nil
}

type discardMetrics struct{}

func (discardMetrics) AddPluginCounter(string, string, string, int64) {}
