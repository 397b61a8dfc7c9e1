package server

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/gin-gonic/gin"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"stellaops.org/authority/host/oauth"
	"stellaops.org/authority/host/telemetry"
)

// CodeMethodNotAllowed is the error code of 405 answers.
const CodeMethodNotAllowed = "method_not_allowed"

type ctxKey int

const correlationKey ctxKey = 1

// CorrelationID returns the request's correlation id.
func CorrelationID(ctx context.Context) string {
	v, _ := ctx.Value(correlationKey).(string)
	return v
}

func (s *Server) correlate(viaMTLS bool) gin.HandlerFunc {
	listener := "http"
	if viaMTLS {
		listener = "https"
	}
	return func(c *gin.Context) {
		start := time.Now()
		id := c.GetHeader("X-Correlation-ID")
		if !validCorrelation(id) {
			id = newCorrelationID()
		}
		c.Header("X-Correlation-ID", id)
		ctx := context.WithValue(c.Request.Context(), correlationKey, id)
		route := c.FullPath()
		if route == "" {
			route = RouteUnmatched
		}
		// The raw method is the client's string: only its bounded form
		// reaches the span, the metric and the log line.
		method := telemetry.HTTPMethod(c.Request.Method)
		var span trace.Span
		if s.tracing != nil {
			ctx = s.tracing.Propagator().Extract(ctx, propagation.HeaderCarrier(c.Request.Header))
			name, attrs := requestSpan(c.Request.Method, route)
			ctx, span = s.tracing.Tracer().Start(ctx, name, trace.WithSpanKind(trace.SpanKindServer),
				trace.WithAttributes(attrs...),
				trace.WithAttributes(attribute.String("authority.listener", listener), attribute.String("authority.correlation_id", id)))
		}
		c.Request = c.Request.WithContext(ctx)
		c.Next()
		elapsed := time.Since(start)
		if span != nil {
			span.SetAttributes(attribute.Int("http.response.status_code", c.Writer.Status()))
			if c.Writer.Status() >= 500 {
				span.SetStatus(codes.Error, http.StatusText(c.Writer.Status()))
			}
			span.End()
		}
		s.telemetry.HTTPRequest(c.Request.Context(), route, method, c.Writer.Status(), elapsed)
		lvl := slog.LevelInfo
		if c.Writer.Status() >= 500 {
			lvl = slog.LevelError
		}
		s.log.LogAttrs(c.Request.Context(), lvl, "authority.http.request",
			slog.String("correlation_id", id),
			slog.String("listener", listener),
			slog.String("method", method),
			slog.String("route", route),
			slog.Int("status", c.Writer.Status()),
			slog.Duration("duration", elapsed),
		)
	}
}

// RouteUnmatched is the route label of a request that matched no route
// template (404, and 405 for a path served under other methods): the raw
// path never becomes a label or a span name.
const RouteUnmatched = "unmatched"

// requestSpan returns the name and HTTP attributes of a request's server
// span under the OpenTelemetry HTTP semantic conventions: "{method}
// {route}", with a method outside telemetry.HTTPMethods named "HTTP" and
// recorded as http.request.method "_OTHER" plus a truncated, printable
// http.request.method_original.
func requestSpan(rawMethod, route string) (string, []attribute.KeyValue) {
	method := telemetry.HTTPMethod(rawMethod)
	attrs := []attribute.KeyValue{attribute.String("http.request.method", method), attribute.String("http.route", route)}
	if method == telemetry.MethodOther {
		attrs = append(attrs, attribute.String("http.request.method_original", telemetry.MethodOriginal(rawMethod)))
		return "HTTP " + route, attrs
	}
	return method + " " + route, attrs
}

func (s *Server) recoverer() gin.HandlerFunc {
	return func(c *gin.Context) {
		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					panic(v)
				}
				s.log.Error("authority.http.panic", "correlation_id", CorrelationID(c.Request.Context()), "panic", fmt.Sprint(v))
				writeError(c, oauth.ErrServer(fmt.Errorf("panic: %v", v)))
				c.Abort()
			}
		}()
		c.Next()
	}
}

func validCorrelation(id string) bool {
	if len(id) < 8 || len(id) > 64 {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}

func newCorrelationID() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}
