package plugin_test

import (
	"context"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"stellaops.org/authority/host/plugin"
)

// Each plugin call of a chain is its own span, a child of the caller's.
func TestEachPluginCallIsAChildSpan(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	first, second := spec(t, "noop"), spec(t, "realistic")
	first.Name, second.Name = "first", "second"
	second.Config = map[string]any{"requiredScopes": []any{"read"}}
	m := newManager(t, map[string][]plugin.Spec{"a": {first, second}}, plugin.Deps{Tracer: tp.Tracer("test")})
	ctx, parent := tp.Tracer("test").Start(context.Background(), "request")
	if d, err := m.Decide(ctx, "a", input("good")); err != nil || !d.Allow {
		t.Fatalf("%+v %v", d, err)
	}
	parent.End()
	names := map[string]bool{}
	for _, s := range rec.Ended() {
		if s.Name() == "request" {
			continue
		}
		names[s.Name()] = true
		if s.Parent().SpanID() != parent.SpanContext().SpanID() {
			t.Fatalf("%s is not a child of the request span", s.Name())
		}
	}
	if !names["plugin.first"] || !names["plugin.second"] {
		t.Fatalf("spans: %v", names)
	}
}
