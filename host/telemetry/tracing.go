package telemetry

import (
	"context"
	"log/slog"
	"time"

	"go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetrichttp"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.26.0"
	"go.opentelemetry.io/otel/trace"
)

// TracingOptions configure spans and the optional OTLP export.
type TracingOptions struct {
	ServiceName string
	// SampleRatio of new traces recorded (parent decisions are honoured).
	SampleRatio float64
	// OTLPEndpoint is host:port of an OTLP/HTTP collector; empty: no export
	// (spans still exist, so logs carry trace and span ids).
	OTLPEndpoint string
	OTLPInsecure bool
}

// Tracing owns the tracer provider and the W3C trace-context propagator.
type Tracing struct {
	provider   *sdktrace.TracerProvider
	tracer     trace.Tracer
	propagator propagation.TextMapPropagator
}

// NewTracing builds the tracer provider; with an OTLP endpoint spans are
// batched to it.
func NewTracing(ctx context.Context, o TracingOptions) (*Tracing, error) {
	res := resource.NewSchemaless(semconv.ServiceName(o.ServiceName))
	ratio := o.SampleRatio
	if o.OTLPEndpoint == "" {
		// Nothing would receive recorded spans: record none. Spans still get
		// ids (so logs carry trace_id/span_id) at a fraction of the cost.
		ratio = 0
	}
	opts := []sdktrace.TracerProviderOption{
		sdktrace.WithResource(res),
		sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.TraceIDRatioBased(ratio))),
	}
	if o.OTLPEndpoint != "" {
		eo := []otlptracehttp.Option{otlptracehttp.WithEndpoint(o.OTLPEndpoint)}
		if o.OTLPInsecure {
			eo = append(eo, otlptracehttp.WithInsecure())
		}
		exp, err := otlptracehttp.New(ctx, eo...)
		if err != nil {
			return nil, err
		}
		opts = append(opts, sdktrace.WithBatcher(exp))
	}
	tp := sdktrace.NewTracerProvider(opts...)
	return &Tracing{provider: tp, tracer: tp.Tracer("stellaops.org/authority"),
		propagator: propagation.TraceContext{}}, nil
}

// OTLPMetricReader returns a periodic OTLP/HTTP metric reader for New, or
// nil when no endpoint is configured.
func OTLPMetricReader(ctx context.Context, endpoint string, insecure bool, interval time.Duration) (sdkmetric.Reader, error) {
	if endpoint == "" {
		return nil, nil
	}
	eo := []otlpmetrichttp.Option{otlpmetrichttp.WithEndpoint(endpoint)}
	if insecure {
		eo = append(eo, otlpmetrichttp.WithInsecure())
	}
	exp, err := otlpmetrichttp.New(ctx, eo...)
	if err != nil {
		return nil, err
	}
	return sdkmetric.NewPeriodicReader(exp, sdkmetric.WithInterval(interval)), nil
}

// Tracer returns the Authority's tracer (a no-op tracer when t is nil).
func (t *Tracing) Tracer() trace.Tracer {
	if t == nil {
		return trace.NewNoopTracerProvider().Tracer("")
	}
	return t.tracer
}

// Propagator extracts W3C traceparent/tracestate from callers.
func (t *Tracing) Propagator() propagation.TextMapPropagator { return t.propagator }

// Shutdown flushes pending spans.
func (t *Tracing) Shutdown(ctx context.Context) error { return t.provider.Shutdown(ctx) }

// Start begins a child span of ctx's span (no-op tracer when t is nil).
func (t *Tracing) Start(ctx context.Context, name string) (context.Context, trace.Span) {
	return t.Tracer().Start(ctx, name)
}

// LogHandler wraps h so every record logged with a context that carries a
// span gets trace_id and span_id attributes.
func LogHandler(h slog.Handler) slog.Handler { return traceHandler{h} }

type traceHandler struct{ slog.Handler }

func (h traceHandler) Handle(ctx context.Context, r slog.Record) error {
	if sc := trace.SpanContextFromContext(ctx); sc.IsValid() {
		r.AddAttrs(slog.String("trace_id", sc.TraceID().String()), slog.String("span_id", sc.SpanID().String()))
	}
	return h.Handler.Handle(ctx, r)
}

func (h traceHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return traceHandler{h.Handler.WithAttrs(as)}
}

func (h traceHandler) WithGroup(name string) slog.Handler {
	return traceHandler{h.Handler.WithGroup(name)}
}
