// Package telemetry owns the OpenTelemetry meter provider, its Prometheus
// exporter behind GET /metrics, and the Authority's instruments. Every
// counter of the rollout plan is exported at 0 for each of its label values
// from start-up, so dashboards and alert ratios never see a missing series.
// Label values are bounded: they come from fixed sets or from configuration
// (tenant ids), never from client-supplied strings; every recording method
// maps a value outside its set to LabelOther (labels.go), and the attribute
// cache holds at most maxAttrSets entries whatever it is fed.
package telemetry

import (
	"context"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/otel/attribute"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	"go.opentelemetry.io/otel/metric"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
)

// MTLS mismatch reasons of the seed (authority_mtls_mismatch_total{reason}).
var MTLSMismatchReasons = []string{"context-missing", "missing-certificate", "thumbprint-mismatch"}

// DPoPResults are the values of authority.dpop_result.
var DPoPResults = []string{"valid", "missing", "invalid", "replay", "nonce_miss", "bypass"}

// Metrics holds the instruments. The zero value is not usable; use New.
type Metrics struct {
	provider *sdkmetric.MeterProvider
	registry *prometheus.Registry
	handler  http.Handler
	audit    *auditMetrics

	nonceMiss     metric.Int64Counter
	mtlsMismatch  metric.Int64Counter
	tokensIssued  metric.Int64Counter
	tokensDenied  metric.Int64Counter
	dpopResult    metric.Int64Counter
	ignoredHeader metric.Int64Counter
	storeErrors   metric.Int64Counter
	httpDuration  metric.Float64Histogram
	storeDuration metric.Float64Histogram
	plugins       pluginInstruments
	reloads       metric.Int64Counter
	degraded      metric.Int64Counter

	// attrs caches one attribute set per label combination: building a set
	// on every request costs allocations on the token hot path. Label
	// values are bounded, but the cache does not rely on it: past attrCap
	// entries a set is built per call and not kept.
	attrs   sync.Map // attrKey -> metric.MeasurementOption
	attrN   atomic.Int64
	attrCap int64
}

// maxAttrSets bounds the attribute cache. The bounded label sets of this
// package and the configured tenants and plugins need far fewer entries; the
// bound only matters if an unbounded value ever reaches a label again, and
// then it keeps the cache at a few hundred kilobytes.
const maxAttrSets = 4096

// attrKey identifies a label combination of one instrument.
type attrKey struct {
	inst       uint8
	a, b, c, d string
}

// with returns the cached attribute option for k, building it from kv once
// while the cache holds fewer than attrCap entries, and on every call after.
func (m *Metrics) with(k attrKey, kv func() []attribute.KeyValue) metric.MeasurementOption {
	if o, ok := m.attrs.Load(k); ok {
		return o.(metric.MeasurementOption)
	}
	o := metric.WithAttributeSet(attribute.NewSet(kv()...))
	// Reserve a slot before storing, so that concurrent misses cannot
	// overshoot the bound.
	if m.attrN.Add(1) > m.attrCap {
		m.attrN.Add(-1)
		return o
	}
	if prev, loaded := m.attrs.LoadOrStore(k, o); loaded {
		m.attrN.Add(-1)
		return prev.(metric.MeasurementOption)
	}
	return o
}

const (
	instIssued uint8 = iota
	instDenied
	instDPoP
	instHTTP
	instStore
	instPluginCalls
	instPluginDuration
	instPluginFailures
	instPluginMetric
	instDegraded
)

// Latency buckets in seconds: 100 µs to 5 s.
var latencyBuckets = []float64{0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5}

// StoreOperations are the token store operations that are timed and counted.
var StoreOperations = []string{"put", "get", "revoke", "rotate", "ping"}

// New creates the meter provider and instruments and pre-registers every
// seed counter at 0 for each label value (tenants: the configured tenant
// ids; store: the configured token store kind, whose error counter starts
// at 0 for every operation so rate() sees the first error). Extra readers
// (an OTLP exporter) receive the same metrics as /metrics.
func New(tenants []string, store string, extra ...sdkmetric.Reader) (*Metrics, error) {
	reg := prometheus.NewRegistry()
	exp, err := otelprom.New(otelprom.WithRegisterer(reg), otelprom.WithoutScopeInfo(), otelprom.WithoutTargetInfo())
	if err != nil {
		return nil, err
	}
	opts := []sdkmetric.Option{sdkmetric.WithReader(exp)}
	for _, r := range extra {
		opts = append(opts, sdkmetric.WithReader(r))
	}
	mp := sdkmetric.NewMeterProvider(opts...)
	m := &Metrics{provider: mp, registry: reg, attrCap: maxAttrSets}
	m.handler = promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError})
	meter := mp.Meter("stellaops.org/authority")
	counter := func(name, desc string) metric.Int64Counter {
		if err != nil {
			return nil
		}
		var c metric.Int64Counter
		c, err = meter.Int64Counter(name, metric.WithDescription(desc))
		return c
	}
	m.nonceMiss = counter("authority_dpop_nonce_miss", "DPoP requests answered use_dpop_nonce (missing, stale, spent or unknown nonce).")
	m.mtlsMismatch = counter("authority_mtls_mismatch", "Certificate-bound token presented without its certificate, by reason.")
	m.tokensIssued = counter("authority_tokens_issued", "Access tokens issued.")
	m.tokensDenied = counter("authority_tokens_denied", "Token requests refused.")
	m.dpopResult = counter("authority_dpop_proofs", "DPoP proof outcomes at the token endpoint.")
	m.ignoredHeader = counter("authority_mtls_untrusted_cert_header", "Client-certificate headers ignored because the peer is not a trusted proxy.")
	m.storeErrors = counter("authority_store_errors", "Token store operations that failed, by store and operation.")
	if err != nil {
		return nil, err
	}
	if m.httpDuration, err = meter.Float64Histogram("authority_http_request_duration_seconds",
		metric.WithDescription("HTTP request duration by route, method and status class."), metric.WithUnit("s"),
		metric.WithExplicitBucketBoundaries(latencyBuckets...)); err != nil {
		return nil, err
	}
	if m.storeDuration, err = meter.Float64Histogram("authority_store_operation_duration_seconds",
		metric.WithDescription("Token store operation duration by store and operation."), metric.WithUnit("s"),
		metric.WithExplicitBucketBoundaries(latencyBuckets...)); err != nil {
		return nil, err
	}
	if err := m.initPlugins(meter); err != nil {
		return nil, err
	}
	if err := m.initDegraded(meter, reg); err != nil {
		return nil, err
	}
	if m.reloads, err = meter.Int64Counter("authority_config_reloads",
		metric.WithDescription("Configuration reloads (SIGHUP or POST /admin/reload) by result.")); err != nil {
		return nil, err
	}
	ctx := context.Background()
	m.nonceMiss.Add(ctx, 0)
	m.ignoredHeader.Add(ctx, 0)
	for _, r := range []string{"success", "failure"} {
		m.reloads.Add(ctx, 0, metric.WithAttributes(attribute.String("result", r)))
	}
	for _, op := range StoreOperations {
		m.storeErrors.Add(ctx, 0, metric.WithAttributes(attribute.String("store", store), attribute.String("operation", op)))
	}
	for _, t := range tenants {
		for _, r := range MTLSMismatchReasons {
			m.mtlsMismatch.Add(ctx, 0, metric.WithAttributes(attribute.String("reason", r), attribute.String("tenant", t)))
		}
		for _, r := range DPoPResults {
			m.dpopResult.Add(ctx, 0, metric.WithAttributes(attribute.String("tenant", t), attribute.String("authority.dpop_result", r)))
		}
	}
	return m, nil
}

// Handler serves the Prometheus text exposition.
func (m *Metrics) Handler() http.Handler { return m.handler }

// Shutdown flushes and stops the meter provider.
func (m *Metrics) Shutdown(ctx context.Context) error { return m.provider.Shutdown(ctx) }

// NonceMiss counts one use_dpop_nonce answer.
func (m *Metrics) NonceMiss(ctx context.Context) {
	if m != nil {
		m.nonceMiss.Add(ctx, 1)
	}
}

// MTLSMismatch counts a bound-token certificate mismatch of tenant (the
// token's, a configured tenant id); reason is one of MTLSMismatchReasons
// (LabelOther otherwise). The tenant label lets per-tenant alert rules
// (deploy/prometheus) and SEC5's in-band alerts count the same thing.
func (m *Metrics) MTLSMismatch(ctx context.Context, tenant, reason string) {
	if m != nil {
		m.mtlsMismatch.Add(ctx, 1, metric.WithAttributes(attribute.String("reason", bounded(reason, MTLSMismatchReasons)),
			attribute.String("tenant", tenant)))
	}
}

// TokenOutcome describes one answered token request. Tenant must be a
// configured tenant id ("unknown" before the client is known); the other
// fields are mapped onto their fixed sets by Token: GrantTypes,
// TokenErrors, SenderConstraints and DPoPResults ("none" when DPoP played
// no part), LabelOther for anything else.
type TokenOutcome struct {
	Tenant, GrantType, SenderConstraint, DPoPResult, Error string
}

// Token counts an issued (Error == "") or denied token request.
func (m *Metrics) Token(ctx context.Context, o TokenOutcome) {
	if m == nil {
		return
	}
	if o.DPoPResult == "" {
		o.DPoPResult = "none"
	} else {
		o.DPoPResult = bounded(o.DPoPResult, DPoPResults)
	}
	o.GrantType = bounded(o.GrantType, GrantTypes)
	if o.Error == "" {
		o.SenderConstraint = bounded(o.SenderConstraint, SenderConstraints)
		m.tokensIssued.Add(ctx, 1, m.with(attrKey{instIssued, o.Tenant, o.GrantType, o.SenderConstraint, o.DPoPResult}, func() []attribute.KeyValue {
			return []attribute.KeyValue{attribute.String("tenant", o.Tenant), attribute.String("grant_type", o.GrantType),
				attribute.String("sender_constraint", o.SenderConstraint), attribute.String("authority.dpop_result", o.DPoPResult)}
		}))
		return
	}
	o.Error = bounded(o.Error, TokenErrors)
	m.tokensDenied.Add(ctx, 1, m.with(attrKey{instDenied, o.Tenant, o.GrantType, o.Error, o.DPoPResult}, func() []attribute.KeyValue {
		return []attribute.KeyValue{attribute.String("tenant", o.Tenant), attribute.String("grant_type", o.GrantType),
			attribute.String("error", o.Error), attribute.String("authority.dpop_result", o.DPoPResult)}
	}))
}

// HTTPRequest records one request's duration; route is the matched route
// template ("unmatched" for 404s and 405s), never the raw path; method is
// recorded as HTTPMethod(method).
func (m *Metrics) HTTPRequest(ctx context.Context, route, method string, status int, d time.Duration) {
	if m == nil {
		return
	}
	method = HTTPMethod(method)
	class := statusClass(status)
	m.httpDuration.Record(ctx, d.Seconds(), m.with(attrKey{inst: instHTTP, a: route, b: method, c: class}, func() []attribute.KeyValue {
		return []attribute.KeyValue{attribute.String("route", route), attribute.String("method", method), attribute.String("status_class", class)}
	}))
}

func statusClass(s int) string {
	switch {
	case s >= 500:
		return "5xx"
	case s >= 400:
		return "4xx"
	case s >= 300:
		return "3xx"
	default:
		return "2xx"
	}
}

// StoreOperation records a token store call (op one of StoreOperations,
// LabelOther otherwise; store the configured kind); a non-nil err also
// counts in authority_store_errors_total.
func (m *Metrics) StoreOperation(ctx context.Context, store, op string, d time.Duration, err error) {
	if m == nil {
		return
	}
	op = bounded(op, StoreOperations)
	attrs := m.with(attrKey{inst: instStore, a: store, b: op}, func() []attribute.KeyValue {
		return []attribute.KeyValue{attribute.String("store", store), attribute.String("operation", op)}
	})
	m.storeDuration.Record(ctx, d.Seconds(), attrs)
	if err != nil {
		m.storeErrors.Add(ctx, 1, attrs)
	}
}

// DPoPResult counts a DPoP outcome (one of DPoPResults, LabelOther
// otherwise) for a configured tenant.
func (m *Metrics) DPoPResult(ctx context.Context, tenant, result string) {
	if m != nil {
		result = bounded(result, DPoPResults)
		m.dpopResult.Add(ctx, 1, m.with(attrKey{inst: instDPoP, a: tenant, b: result}, func() []attribute.KeyValue {
			return []attribute.KeyValue{attribute.String("tenant", tenant), attribute.String("authority.dpop_result", result)}
		}))
	}
}

// IgnoredCertHeader counts a client-certificate header from an untrusted peer.
func (m *Metrics) IgnoredCertHeader(ctx context.Context) {
	if m != nil {
		m.ignoredHeader.Add(ctx, 1)
	}
}

// ConfigReload counts one configuration reload.
func (m *Metrics) ConfigReload(ctx context.Context, ok bool) {
	if m == nil {
		return
	}
	r := "failure"
	if ok {
		r = "success"
	}
	m.reloads.Add(ctx, 1, metric.WithAttributes(attribute.String("result", r)))
}
