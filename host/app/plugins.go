package app

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"go.opentelemetry.io/otel/trace"

	"stellaops.org/authority/abi"
	"stellaops.org/authority/host/audit"
	"stellaops.org/authority/host/config"
	"stellaops.org/authority/host/keys"
	"stellaops.org/authority/host/plugin"
	"stellaops.org/authority/host/telemetry"
)

// buildPlugins starts the plugin manager when any tenant has plugins (nil
// otherwise: tenants without plugins cost nothing).
// secret is the pseudonymization secret read at start (nil when none is
// configured): a reload never reads another, so the plugins' pseudonyms
// keep matching the audit trail's.
func buildPlugins(ctx context.Context, cfg *config.Config, log *slog.Logger, now func() time.Time, m *telemetry.Metrics, tracer trace.Tracer, sink audit.Sink, state pluginState, secret []byte) (*plugin.Manager, error) {
	specs := map[string][]plugin.Spec{}
	any := false
	for _, t := range cfg.Tenants {
		for _, s := range t.Plugins {
			s.Path = config.ResolvePath(s.Path)
			specs[t.ID] = append(specs[t.ID], s)
			any = true
		}
	}
	if !any {
		return nil, nil
	}
	deps := plugin.Deps{
		Clock:    clockFunc(now),
		Logger:   log,
		Observer: newPluginObserver(m, sink, now),
		Metrics:  m,
		Tracer:   tracer,
		Counters: state.counters,
		KV:       state.kv,
		Audit:    pluginAudit{sink},
	}
	if secret != nil {
		deps.Secrets = tenantSecrets(secret)
	}
	resolved := make([]string, len(cfg.Plugins.GuildKeys))
	for i, k := range cfg.Plugins.GuildKeys {
		resolved[i] = config.ResolvePath(k)
	}
	guildKeys, err := plugin.LoadGuildKeys(resolved)
	if err != nil {
		return nil, fmt.Errorf("plugins.guildKeys: %w", err)
	}
	mgr, err := plugin.NewManager(ctx, plugin.RuntimeOptions{
		GuildKeys:           guildKeys,
		CacheDir:            config.ResolvePath(cfg.Plugins.CacheDir),
		CacheKeyFile:        config.ResolvePath(cfg.Plugins.CacheKeyFile),
		EventQueueSize:      cfg.Plugins.EventQueueSize,
		MaxInstances:        cfg.Plugins.MaxInstances,
		BreakerThreshold:    cfg.Plugins.BreakerThreshold,
		BreakerCooldown:     cfg.Plugins.BreakerCooldown.D(),
		AuditRecordsPerCall: cfg.Plugins.Audit.RecordsPerCall,
		AuditBytesPerCall:   cfg.Plugins.Audit.BytesPerCall,
		AuditRate:           cfg.Plugins.Audit.Rate,
		AuditBurst:          cfg.Plugins.Audit.Burst,
	}, specs, deps)
	if err != nil {
		return nil, fmt.Errorf("plugins: %w", err)
	}
	// No instance per (tenant, plugin) at start: NewManager checked every
	// distinct module with one instance, and a tenant's instances start on
	// its first request (about 3 ms for a Go guest), within the node's
	// budget (plugins.maxInstances).
	for t, ss := range specs {
		for _, s := range ss {
			m.PreparePlugin(t, s.Name, s.Hooks)
		}
	}
	return mgr, nil
}

// pluginHolder is the current plugin set. Hot reload swaps it atomically;
// a call that raced a swap onto a just-closed manager is retried once on
// the new one, so in-flight requests never see the swap.
type pluginHolder struct {
	p atomic.Pointer[plugin.Manager]
}

// Has implements oauth.PolicyDecider.
func (h *pluginHolder) Has(tenant, endpoint string) bool {
	m := h.p.Load()
	return m != nil && m.Has(tenant, endpoint)
}

// Decide implements oauth.PolicyDecider (no plugins: allow).
func (h *pluginHolder) Decide(ctx context.Context, tenant string, in *abi.DecisionInput) (abi.Decision, error) {
	for try := 0; ; try++ {
		m := h.p.Load()
		if m == nil {
			return abi.Allowed(), nil
		}
		d, err := m.Decide(ctx, tenant, in)
		var f *plugin.Failure
		if try == 0 && errors.As(err, &f) && f.Kind == plugin.KindClosed && h.p.Load() != m {
			continue
		}
		return d, err
	}
}

// Record implements audit.Sink: every audit event also goes to the
// tenant's telemetry plugins (the SEC2 audit plugin among them).
func (h *pluginHolder) Record(ctx context.Context, e audit.Event) {
	if m := h.p.Load(); m != nil {
		pluginEvents{m}.Record(ctx, e)
	}
}

// states reports every plugin's health for the authority_plugin_* gauges.
func (h *pluginHolder) states() []telemetry.PluginState {
	m := h.p.Load()
	if m == nil {
		return nil
	}
	hl := m.Health()
	out := make([]telemetry.PluginState, len(hl.Plugins))
	for i, p := range hl.Plugins {
		out[i] = telemetry.PluginState{Tenant: p.Tenant, Plugin: p.Plugin, CircuitOpen: p.Breaker != plugin.BreakerClosed,
			LiveInstances: p.LiveInstances, EventsDropped: p.EventsDropped, AuditLimited: p.AuditLimited}
	}
	return out
}

// check is the /readyz plugins check: not ready when the set is closed;
// open circuits are reported but do not make the node unready (every node
// is affected alike and the failure mode already answers).
func (h *pluginHolder) check(context.Context) error {
	m := h.p.Load()
	if m == nil {
		return nil
	}
	hl := m.Health()
	if !hl.Ready {
		return errors.New("plugin manager closed")
	}
	var open []string
	for _, p := range hl.Plugins {
		if p.Breaker != plugin.BreakerClosed {
			open = append(open, p.Tenant+"/"+p.Plugin+": circuit "+string(p.Breaker))
		}
	}
	if len(open) > 0 {
		return degraded(strings.Join(open, "; "))
	}
	return nil
}

// pluginState is where the counters and kv host functions keep data: nil
// fields take the runtime's per-node memory stores.
type pluginState struct {
	counters plugin.Counters
	kv       plugin.KV
}

// pluginStateFor returns the shared Redis stores when plugins.state is
// redis; they outlive reloads, so a reload does not reset rate limits.
func pluginStateFor(cfg *config.Config, rc redis.UniversalClient) pluginState {
	if cfg.Plugins.State != "redis" || rc == nil {
		return pluginState{}
	}
	prefix := cfg.Storage.Redis.KeyPrefix + "plugin:"
	return pluginState{counters: plugin.NewRedisCounters(rc, prefix), kv: plugin.NewRedisKV(rc, prefix)}
}

type clockFunc func() time.Time

func (c clockFunc) Now() time.Time { return c() }

// pluginObserver feeds plugin calls into authority_plugin_* metrics, and
// failed calls into the audit trail (authority.plugin.failure): at most
// one record per second per tenant, plugin, hook and failure kind, the
// next one counting those it stands for ("suppressed"), so a plugin that
// fails on every request cannot flood the trail.
type pluginObserver struct {
	m    *telemetry.Metrics
	sink audit.Sink
	now  func() time.Time
	last *sync.Map // failureKey -> *failureState
}

type failureKey struct{ tenant, plugin, hook, kind string }

type failureState struct {
	mu         sync.Mutex
	at         time.Time
	suppressed int
}

func newPluginObserver(m *telemetry.Metrics, sink audit.Sink, now func() time.Time) pluginObserver {
	return pluginObserver{m: m, sink: sink, now: now, last: &sync.Map{}}
}

func (o pluginObserver) PluginCall(tenant, plugin, hook string, elapsed time.Duration, failure plugin.FailureKind) {
	o.m.PluginCall(tenant, plugin, hook, elapsed, string(failure))
	if failure == "" || o.sink == nil {
		return
	}
	k := failureKey{tenant, plugin, hook, string(failure)}
	v, _ := o.last.LoadOrStore(k, &failureState{})
	st := v.(*failureState)
	now := o.now()
	st.mu.Lock()
	if !st.at.IsZero() && now.Sub(st.at) < time.Second {
		st.suppressed++
		st.mu.Unlock()
		return
	}
	suppressed := st.suppressed
	st.at, st.suppressed = now, 0
	st.mu.Unlock()
	props := map[string]string{"plugin": plugin, "hook": hook}
	if suppressed > 0 {
		props["suppressed"] = strconv.Itoa(suppressed)
	}
	o.sink.Record(context.Background(), audit.Event{Type: audit.EventPluginFailure, Time: now, Tenant: tenant,
		Outcome: audit.OutcomeError, Reason: string(failure), Properties: props})
}

// pluginAudit receives the events plugins emit with audit_emit and writes
// them as plugin records: source "plugin:<name>" (name comes from the
// runtime, never from the event), log event authority.audit.plugin. They
// are not fed back to plugins.
type pluginAudit struct{ sink audit.Sink }

func (a pluginAudit) Audit(ctx context.Context, name string, ev abi.Event) error {
	// occurredAt is the host's time of receipt (Time zero): a plugin's
	// clock, or its lack, never dates a record.
	e := audit.Event{Source: plugin.PluginSource(name), Type: ev.Type,
		CorrelationID: ev.CorrelationID, Tenant: ev.Tenant, Outcome: ev.Outcome, Reason: ev.Reason,
		Subject: ev.Subject, Client: ev.Client, Scopes: ev.Scopes, RemoteAddr: ev.RemoteAddr, UserAgent: ev.UserAgent,
		ConstraintKind: ev.SenderConstraint, DPoP: ev.DPoP, MTLS: ev.MTLS}
	if e.ConstraintKind == "" && (ev.DPoP != (abi.DPoP{}) || ev.MTLS != (abi.MTLS{})) {
		e.ConstraintKind = abi.ConstraintNone
	}
	if len(ev.Attributes) > 0 {
		e.Properties = make(map[string]string, len(ev.Attributes))
		for _, kv := range ev.Attributes {
			e.Properties[kv.Key] = kv.Value
		}
	}
	a.sink.Record(ctx, e)
	return nil
}

// pluginEvents forwards every audit event to the tenant's telemetry plugins
// (the SEC2 audit plugin among them) through the bounded event queue.
type pluginEvents struct{ mgr *plugin.Manager }

func (p pluginEvents) Record(ctx context.Context, e audit.Event) {
	if e.Source != "" && e.Source != audit.SourceHost {
		return // a plugin's own record never feeds back into plugins
	}
	ev := abi.Event{Type: e.Type, Time: e.Time, CorrelationID: e.CorrelationID, Tenant: e.Tenant, Outcome: e.Outcome,
		Reason: e.Reason, Subject: e.Subject, Client: e.Client, Scopes: e.Scopes, RemoteAddr: e.RemoteAddr, UserAgent: e.UserAgent}
	if ev.Time.IsZero() {
		ev.Time = time.Now().UTC()
	}
	ev.SenderConstraint, ev.DPoP, ev.MTLS = audit.Constraint(e)
	if e.TokenID != "" {
		ev.Attributes = append(ev.Attributes, abi.KV{Key: "jti", Value: e.TokenID})
	}
	for _, k := range slices.Sorted(maps.Keys(e.Annotations)) {
		ev.Attributes = append(ev.Attributes, abi.KV{Key: "annotation." + k, Value: e.Annotations[k]})
	}
	p.mgr.Emit(ctx, e.Tenant, ev)
}

// tenantSecrets derives each tenant's pseudonymization key from the host
// secret: HMAC-SHA256(secret, "authority-pseudonym:" + tenant). Plugins get
// pseudonyms, never the key.
type tenantSecrets []byte

func (s tenantSecrets) PseudonymKey(_ context.Context, tenant string) ([]byte, error) {
	mac := hmac.New(sha256.New, s)
	mac.Write([]byte("authority-pseudonym:" + tenant))
	return mac.Sum(nil), nil
}

// pseudonymSecret reads the host secret (hex), from AUTHORITY_PSEUDONYM_SECRET
// or the file, generating the file when asked and missing.
func pseudonymSecret(p config.Plugins) ([]byte, error) {
	if v := os.Getenv("AUTHORITY_PSEUDONYM_SECRET"); v != "" {
		return decodeSecret(v)
	}
	path := config.ResolvePath(p.PseudonymSecretFile)
	raw, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) && p.GenerateSecret {
		var b [32]byte
		if _, err := rand.Read(b[:]); err != nil {
			return nil, err
		}
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			return nil, err
		}
		if err := keys.WriteFileAtomic(path, []byte(hex.EncodeToString(b[:])+"\n"), 0o600); err != nil {
			return nil, err
		}
		return b[:], nil
	}
	if err != nil {
		return nil, err
	}
	return decodeSecret(string(raw))
}

func decodeSecret(v string) ([]byte, error) {
	b, err := hex.DecodeString(strings.TrimSpace(v))
	if err != nil || len(b) < 32 {
		return nil, errors.New("the pseudonymization secret must be at least 32 bytes, hex-encoded")
	}
	return b, nil
}
