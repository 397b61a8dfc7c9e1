package telemetry

import (
	"context"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

// AuditDropReasons are the values of
// authority_audit_records_dropped_total{reason} (host/audit's Drop*).
var AuditDropReasons = []string{"queue-full", "sink-unavailable", "encode", "closed"}

// auditMetrics are the durable audit trail's instruments.
type auditMetrics struct {
	written metric.Int64Counter
	dropped metric.Int64Counter
}

// ObserveAudit registers the audit trail's metrics:
// authority_audit_records_written_total, authority_audit_records_dropped_total{reason}
// (every reason at 0 from start-up) and authority_audit_queue_depth, read
// from depth at every collection. The Metrics then implement
// audit.Observer.
func (m *Metrics) ObserveAudit(depth func() int) error {
	meter := m.provider.Meter("stellaops.org/authority")
	var a auditMetrics
	var err error
	if a.written, err = meter.Int64Counter("authority_audit_records_written",
		metric.WithDescription("Audit records (checkpoints included) made durable in the audit sink.")); err != nil {
		return err
	}
	if a.dropped, err = meter.Int64Counter("authority_audit_records_dropped",
		metric.WithDescription("Audit records lost before reaching the audit sink, by reason.")); err != nil {
		return err
	}
	for _, r := range AuditDropReasons {
		a.dropped.Add(context.Background(), 0, metric.WithAttributes(attribute.String("reason", r)))
	}
	a.written.Add(context.Background(), 0)
	q, err := meter.Int64ObservableGauge("authority_audit_queue_depth",
		metric.WithDescription("Audit records waiting to be written."))
	if err != nil {
		return err
	}
	if _, err := meter.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		o.ObserveInt64(q, int64(depth()))
		return nil
	}, q); err != nil {
		return err
	}
	m.audit = &a
	return nil
}

// AuditWritten implements audit.Observer.
func (m *Metrics) AuditWritten(n int) {
	if m.audit != nil {
		m.audit.written.Add(context.Background(), int64(n))
	}
}

// AuditDropped implements audit.Observer.
func (m *Metrics) AuditDropped(reason string, n int) {
	if m.audit != nil {
		m.audit.dropped.Add(context.Background(), int64(n), metric.WithAttributes(attribute.String("reason", reason)))
	}
}
