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

	"stellaops.org/authority/abi"
)

// Outcomes of an audited event.
const (
	OutcomeSuccess     = abi.OutcomeSuccess
	OutcomeFailure     = abi.OutcomeFailure
	OutcomeLockedOut   = abi.OutcomeLockedOut
	OutcomeRateLimited = abi.OutcomeRateLimited
	OutcomeError       = abi.OutcomeError
)

// Source of the host's own records; plugin records carry
// "plugin:<name>" (see Event.Source).
const SourceHost = "host"

// Event is one audit record. Type is `authority.<surface>.<action>`.
type Event struct {
	// Source says who wrote the record: empty (or SourceHost) for the host,
	// "plugin:<name>" for a record a plugin emitted with audit_emit, set by
	// the host from the emitting instance (abi/SPEC.md §5). A plugin record
	// may carry any Type, including the host's own (authority.token.issued),
	// so readers tell host records from plugin ones by Source (and the log
	// event name), never by Type.
	Source        string
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
	// Annotations are the tenant's policy plugins' annotations on the
	// request, keys prefixed "<plugin>." (abi/SPEC.md §4.5).
	Annotations map[string]string
	// ConstraintKind, DPoP and MTLS carry a plugin record's sender
	// constraint as the plugin emitted it; host events leave them empty
	// and are mapped from SenderConstraint (Constraint).
	ConstraintKind string
	DPoP           abi.DPoP
	MTLS           abi.MTLS
	// Properties are a plugin record's attributes, or further host facts.
	Properties map[string]string
}

// Event types the host records but never sends to events plugins (a
// plugin failure fed to a failing plugin would feed itself).
const (
	// EventPluginFailure: a plugin call failed (trap, budget, bad output,
	// open circuit); Reason is the failure kind.
	EventPluginFailure = "authority.plugin.failure"
	// EventConfigReload: a configuration reload, success or failure.
	EventConfigReload = "authority.config.reload"
)

// Sink receives audit events. Record must not block the request for long
// and must not fail it: a sink that cannot deliver counts and logs.
type Sink interface {
	Record(ctx context.Context, e Event)
}

// LogSink writes each event as one structured record: `authority.audit`
// with source "host" for the host's records, `authority.audit.plugin`
// with source "plugin:<name>" for a plugin's, so that no query for host
// records (by log event or source) matches a plugin's.
type LogSink struct {
	Logger *slog.Logger
}

// Record implements Sink.
func (s LogSink) Record(ctx context.Context, e Event) {
	if e.Time.IsZero() {
		e.Time = time.Now().UTC()
	}
	msg, source := "authority.audit", SourceHost
	if e.Source != "" && e.Source != SourceHost {
		msg, source = "authority.audit.plugin", e.Source
	}
	attrs := []slog.Attr{
		slog.String("source", source),
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
	if len(e.Annotations) > 0 {
		attrs = append(attrs, slog.Any("annotations", e.Annotations))
	}
	s.Logger.LogAttrs(ctx, slog.LevelInfo, msg, attrs...)
}

// Multi fans an event out to several sinks.
type Multi []Sink

// Record implements Sink.
func (m Multi) Record(ctx context.Context, e Event) {
	for _, s := range m {
		s.Record(ctx, e)
	}
}
