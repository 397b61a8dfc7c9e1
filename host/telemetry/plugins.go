package telemetry

import (
	"context"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

// PluginState is one plugin's health, observed at scrape time.
type PluginState struct {
	Tenant, Plugin string
	CircuitOpen    bool
	LiveInstances  int
	// EventsDropped is the tenant's telemetry queue overflow so far.
	EventsDropped uint64
	// AuditLimited counts the plugin's audit_emit records refused by the
	// audit budget so far.
	AuditLimited uint64
}

// pluginInstruments are the authority_plugin_* instruments.
type pluginInstruments struct {
	calls    metric.Int64Counter
	duration metric.Float64Histogram
	failures metric.Int64Counter
	guest    metric.Int64Counter // metric_add
}

func (m *Metrics) initPlugins(meter metric.Meter) error {
	var err error
	if m.plugins.calls, err = meter.Int64Counter("authority_plugin_calls",
		metric.WithDescription("Plugin hook calls by outcome (ok or the failure reason).")); err != nil {
		return err
	}
	if m.plugins.failures, err = meter.Int64Counter("authority_plugin_failures",
		metric.WithDescription("Failed plugin hook calls by reason: timeout, trap, output, instantiate, breaker_open, pool_busy, guest_error, closed.")); err != nil {
		return err
	}
	if m.plugins.guest, err = meter.Int64Counter("authority_plugin_metric",
		metric.WithDescription("Counters plugins add with the metric_add host function, by tenant, plugin and the plugin's counter name.")); err != nil {
		return err
	}
	if m.plugins.duration, err = meter.Float64Histogram("authority_plugin_call_duration_seconds",
		metric.WithDescription("Plugin hook call duration."), metric.WithUnit("s"),
		metric.WithExplicitBucketBoundaries(0.000001, 0.0000025, 0.000005, 0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.001, 0.01, 0.05, 0.1)); err != nil {
		return err
	}
	return nil
}

// PluginCall records one plugin hook call of a configured tenant and
// plugin; hook is one of PluginHooks and reason is "" on success, else one
// of PluginFailureReasons (LabelOther otherwise).
func (m *Metrics) PluginCall(tenant, plugin, hook string, elapsed time.Duration, reason string) {
	if m == nil {
		return
	}
	ctx := context.Background()
	hook = bounded(hook, PluginHooks)
	if reason != "" {
		reason = bounded(reason, PluginFailureReasons)
	}
	outcome := reason
	if outcome == "" {
		outcome = "ok"
	}
	m.plugins.calls.Add(ctx, 1, m.with(attrKey{inst: instPluginCalls, a: tenant, b: plugin, c: hook, d: outcome}, func() []attribute.KeyValue {
		return []attribute.KeyValue{attribute.String("tenant", tenant), attribute.String("plugin", plugin),
			attribute.String("hook", hook), attribute.String("outcome", outcome)}
	}))
	m.plugins.duration.Record(ctx, elapsed.Seconds(), m.with(attrKey{inst: instPluginDuration, a: tenant, b: plugin, c: hook}, func() []attribute.KeyValue {
		return []attribute.KeyValue{attribute.String("tenant", tenant), attribute.String("plugin", plugin), attribute.String("hook", hook)}
	}))
	if reason != "" {
		m.plugins.failures.Add(ctx, 1, m.with(attrKey{inst: instPluginFailures, a: tenant, b: plugin, c: hook, d: reason}, func() []attribute.KeyValue {
			return []attribute.KeyValue{attribute.String("tenant", tenant), attribute.String("plugin", plugin),
				attribute.String("hook", hook), attribute.String("reason", reason)}
		}))
	}
}

// AddPluginCounter implements the plugin runtime's MetricSink: delta is
// added to authority_plugin_metric_total{tenant,plugin,name}. One
// instrument with the plugin's name as a label, not an instrument per
// name, so that no plugin counter can collide with a host metric; the
// runtime bounds the names per plugin (abi/SPEC.md §5), and with them the
// label values.
func (m *Metrics) AddPluginCounter(tenant, plugin, name string, delta int64) {
	if m == nil {
		return
	}
	m.plugins.guest.Add(context.Background(), delta, m.with(attrKey{inst: instPluginMetric, a: tenant, b: plugin, c: name}, func() []attribute.KeyValue {
		return []attribute.KeyValue{attribute.String("tenant", tenant), attribute.String("plugin", plugin), attribute.String("name", name)}
	}))
}

// ObservePlugins registers gauges read from states at every collection:
// authority_plugin_circuit_open{tenant,plugin} (0/1),
// authority_plugin_instances{tenant,plugin},
// authority_plugin_event_queue_dropped_total{tenant} and
// authority_plugin_audit_limited_total{tenant,plugin}. Each configured
// tenant/plugin pair exports from start-up, at 0.
func (m *Metrics) ObservePlugins(states func() []PluginState) error {
	meter := m.provider.Meter("stellaops.org/authority")
	open, err := meter.Int64ObservableGauge("authority_plugin_circuit_open",
		metric.WithDescription("1 while a plugin's circuit breaker is open or half-open."))
	if err != nil {
		return err
	}
	live, err := meter.Int64ObservableGauge("authority_plugin_instances",
		metric.WithDescription("Live instances in a plugin's per-tenant pool."))
	if err != nil {
		return err
	}
	dropped, err := meter.Int64ObservableCounter("authority_plugin_event_queue_dropped",
		metric.WithDescription("Telemetry events dropped because a tenant's queue was full."))
	if err != nil {
		return err
	}
	limited, err := meter.Int64ObservableCounter("authority_plugin_audit_limited",
		metric.WithDescription("Audit records a plugin emitted beyond its audit budget (per call, bytes per call, rate), refused."))
	if err != nil {
		return err
	}
	_, err = meter.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		seen := map[string]bool{}
		for _, s := range states() {
			pa := metric.WithAttributes(attribute.String("tenant", s.Tenant), attribute.String("plugin", s.Plugin))
			v := int64(0)
			if s.CircuitOpen {
				v = 1
			}
			o.ObserveInt64(open, v, pa)
			o.ObserveInt64(live, int64(s.LiveInstances), pa)
			o.ObserveInt64(limited, int64(s.AuditLimited), pa)
			if !seen[s.Tenant] {
				seen[s.Tenant] = true
				o.ObserveInt64(dropped, int64(s.EventsDropped), metric.WithAttributes(attribute.String("tenant", s.Tenant)))
			}
		}
		return nil
	}, open, live, dropped, limited)
	return err
}

// PluginFailureReasons are the reason values of authority_plugin_failures_total.
var PluginFailureReasons = []string{"timeout", "trap", "output", "instantiate", "breaker_open", "pool_busy", "guest_error", "closed", "budget"}

// PreparePlugin exports a configured plugin's call and failure counters at
// 0 for each hook (and reason), so rate() sees the first failure.
func (m *Metrics) PreparePlugin(tenant, plugin string, hooks []string) {
	ctx := context.Background()
	for _, h := range hooks {
		m.plugins.calls.Add(ctx, 0, metric.WithAttributes(attribute.String("tenant", tenant), attribute.String("plugin", plugin),
			attribute.String("hook", h), attribute.String("outcome", "ok")))
		for _, r := range PluginFailureReasons {
			m.plugins.failures.Add(ctx, 0, metric.WithAttributes(attribute.String("tenant", tenant), attribute.String("plugin", plugin),
				attribute.String("hook", h), attribute.String("reason", r)))
		}
	}
}
