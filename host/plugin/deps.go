package plugin

import (
	"context"
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

// Counters backs counter_incr: fixed-window counters. An implementation on
// a shared store (Redis) makes them common to every node; the memory one
// is per node.
// Keys arrive already scoped to tenant and plugin.
type Counters interface {
	// Incr adds delta to key and returns the new value and the time left in
	// its window. The window (of length window) starts at the first
	// increment of an absent or expired key. delta 0 reads without creating.
	Incr(ctx context.Context, key string, delta int64, window time.Duration) (value int64, ttl time.Duration, err error)
}

// KV backs kv_get and kv_set. Keys arrive already scoped to tenant and plugin.
type KV interface {
	// Get returns the value of key; ok is false when absent or expired.
	Get(ctx context.Context, key string) (val []byte, ok bool, err error)
	// Set stores a copy of val under key for ttl (> 0).
	Set(ctx context.Context, key string, val []byte, ttl time.Duration) error
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
