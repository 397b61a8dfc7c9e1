package telemetry

import (
	"context"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

// DegradedReasons are the values of authority_degraded_refusals_total{reason}:
// why a request was refused for a reason of the service, not of the client.
// Each is a 503 temporarily_unavailable with Retry-After except state-lost,
// which is a 400 use_dpop_nonce carrying a fresh nonce.
var DegradedReasons = []string{
	"in-flight-limit",        // limits.maxInFlight reached on this node
	"store-timeout",          // a token-store call passed storage.postgres.requestTimeout
	"store-busy",             // the token store's write queue is full
	"store-closed",           // the token store is shutting down
	"store-error",            // the token store failed
	"dpop-state",             // the DPoP replay/nonce state (Redis) failed
	"dpop-nonce-unavailable", // a DPoP answer could not get its nonce
	"state-lost",             // the DPoP state was lost; the proof may predate the loss
	"audit-unavailable",      // audit.onFailure refuse: the issuance record could not be made durable
	"other",
}

var degradedReason = func() map[string]bool {
	m := make(map[string]bool, len(DegradedReasons))
	for _, r := range DegradedReasons {
		m[r] = true
	}
	return m
}()

// initDegraded creates the degraded-refusal counter (every reason at 0) and
// registers the Go runtime and process collectors on reg: goroutines, heap,
// GC pauses, open file descriptors. They are Prometheus's own collectors
// because /metrics is a Prometheus registry already (no extra dependency,
// the standard go_* and process_* names dashboards expect); the OTel
// runtime instrumentation would add a module and reach only OTLP readers
// through the same exporter anyway.
func (m *Metrics) initDegraded(meter metric.Meter, reg *prometheus.Registry) error {
	var err error
	if m.degraded, err = meter.Int64Counter("authority_degraded_refusals",
		metric.WithDescription("Requests refused because of the service's state (503 with Retry-After, or use_dpop_nonce after a state loss), by reason.")); err != nil {
		return err
	}
	for _, r := range DegradedReasons {
		m.degraded.Add(context.Background(), 0, metric.WithAttributes(attribute.String("reason", r)))
	}
	if err := reg.Register(collectors.NewGoCollector()); err != nil {
		return err
	}
	return reg.Register(collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
}

// Degraded counts one refusal; reasons outside DegradedReasons count as
// "other" so the label stays bounded.
func (m *Metrics) Degraded(ctx context.Context, reason string) {
	if m == nil {
		return
	}
	if !degradedReason[reason] {
		reason = "other"
	}
	m.degraded.Add(ctx, 1, m.with(attrKey{inst: instDegraded, a: reason}, func() []attribute.KeyValue {
		return []attribute.KeyValue{attribute.String("reason", reason)}
	}))
}
