// Package audit defines the security event record the Authority emits for
// every token issued or denied, nonce miss, replay, certificate mismatch,
// bypass and lockout, and the sinks that receive it. The SEC2 plugin
// consumes the same events through the telemetry hook; the log sink here
// guarantees an audit trail even with no plugin configured.
package audit

import (
	"context"
	"log/slog"
	"time"
)

// Outcomes of an audited event.
const (
	OutcomeSuccess     = "success"
	OutcomeFailure     = "failure"
	OutcomeLockedOut   = "locked_out"
	OutcomeRateLimited = "rate_limited"
	OutcomeError       = "error"
)

// Event is one audit record. Type is `authority.<surface>.<action>`.
type Event struct {
	Type          string
	Time          time.Time
	CorrelationID string
	Tenant        string
	Outcome       string
	Reason        string
	Subject       string
	Client        string
	// TokenID is the jti of the token the event is about, if any.
	TokenID    string
	Scopes     []string
	RemoteAddr string
	UserAgent  string
	// SenderConstraint holds binding details (jkt, x5t#S256, jti, htu).
	SenderConstraint map[string]string
}

// Sink receives audit events. Record must not block the request for long
// and must not fail it: a sink that cannot deliver counts and logs.
type Sink interface {
	Record(ctx context.Context, e Event)
}

// LogSink writes each event as one structured `authority.audit` record.
type LogSink struct {
	Logger *slog.Logger
}

// Record implements Sink.
func (s LogSink) Record(ctx context.Context, e Event) {
	if e.Time.IsZero() {
		e.Time = time.Now().UTC()
	}
	attrs := []slog.Attr{
		slog.String("event_type", e.Type),
		slog.Time("event_time", e.Time.UTC()),
		slog.String("correlation_id", e.CorrelationID),
		slog.String("tenant", e.Tenant),
		slog.String("outcome", e.Outcome),
		slog.String("reason", e.Reason),
		slog.String("client", e.Client),
	}
	if e.TokenID != "" {
		attrs = append(attrs, slog.String("jti", e.TokenID))
	}
	if e.Subject != "" {
		attrs = append(attrs, slog.String("subject", e.Subject))
	}
	if len(e.Scopes) > 0 {
		attrs = append(attrs, slog.Any("scopes", e.Scopes))
	}
	if len(e.SenderConstraint) > 0 {
		attrs = append(attrs, slog.Any("sender_constraint", e.SenderConstraint))
	}
	s.Logger.LogAttrs(ctx, slog.LevelInfo, "authority.audit", attrs...)
}

// Multi fans an event out to several sinks.
type Multi []Sink

// Record implements Sink.
func (m Multi) Record(ctx context.Context, e Event) {
	for _, s := range m {
		s.Record(ctx, e)
	}
}
