// Package pluginspec is the configuration of a tenant's plugins (the
// tenants[].plugins entries of authority.yaml) and its validation, with no
// runtime in it: host/config imports it, and so the packages that only
// read the configuration (oauth, server) do not compile the WebAssembly
// runtime. host/plugin runs what it describes and re-exports its names.
package pluginspec

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"stellaops.org/authority/abi"
)

// FailureMode says what a hook does when its plugin fails (trap, timeout,
// invalid output, open circuit breaker, pool exhausted).
type FailureMode string

const (
	// FailClosed answers 503 temporarily_unavailable. Default for policy hooks.
	FailClosed FailureMode = "closed"
	// FailOpen skips the plugin. Default (and only mode) for the events hook.
	FailOpen FailureMode = "open"
)

// Event delivery modes (Spec.EventDelivery).
const (
	EventsQueued = "queued"
	EventsInline = "inline"
)

// Spec configures one plugin for one tenant. It is meant to be embedded in
// authority.yaml under a tenant:
//
//	plugins:
//	  - name: sec3
//	    path: plugins/sec3.wasm
//	    sha256: 3f1c...
//	    hooks: [token, events]
//	    failureMode: {token: closed}
//	    limits: {callTimeout: 20ms, poolSize: 4, counterKeys: 50000}
//	    grants: [counters, clock, config, log]
//	    config: {permitLimit: 10, window: 1m}
//	    requireSignature: true   # plugins/sec3.wasm.sig by a guild key
//
// Zero limits take the defaults of DefaultLimits.
type Spec struct {
	// Name identifies the plugin within its tenant ([a-z0-9_-], 1-64).
	Name string `yaml:"name" json:"name"`
	// Path is the .wasm file; relative paths are the caller's to resolve.
	Path string `yaml:"path" json:"path"`
	// SHA256 is the pinned lower-case hex digest of the file.
	SHA256 string `yaml:"sha256" json:"sha256"`
	// Hooks served: abi.HookToken, abi.HookIntrospect, abi.HookFreshAuth,
	// abi.HookEvents.
	Hooks []string `yaml:"hooks" json:"hooks"`
	// FailureMode per hook; missing hooks take their default.
	FailureMode map[string]FailureMode `yaml:"failureMode,omitempty" json:"failureMode,omitempty"`
	// EventDelivery says how the events hook gets its events:
	// EventsQueued (the default) from the tenant's bounded queue, on a
	// worker, dropped and counted when the queue is full; EventsInline on
	// the goroutine of the request that caused the event, before its
	// answer is written: never dropped, at the cost of that request's
	// latency. A lockout plugin needs inline delivery of failures, or a
	// flood that fills the queue would stop it counting.
	EventDelivery string `yaml:"eventDelivery,omitempty" json:"eventDelivery,omitempty"`
	// EventOutcomes, when set, restricts the events delivered to these
	// outcomes (abi.Outcomes); the others never reach the plugin, nor its
	// queue. With inline delivery it keeps the plugin off the path of the
	// requests it has no use for.
	EventOutcomes []string `yaml:"eventOutcomes,omitempty" json:"eventOutcomes,omitempty"`
	Limits        Limits   `yaml:"limits,omitempty" json:"limits,omitempty"`
	// Grants lists the host functions the module may import (see Grant*).
	Grants []string `yaml:"grants,omitempty" json:"grants,omitempty"`
	// Config is handed to the plugin, JSON-encoded, by the config host function.
	Config map[string]any `yaml:"config,omitempty" json:"config,omitempty"`
	// RequireSignature refuses the module unless PATH.sig holds a valid
	// Ed25519 signature of its bytes by one of RuntimeOptions.GuildKeys.
	// (A PATH.sig that exists is always checked, required or not.)
	RequireSignature bool `yaml:"requireSignature,omitempty" json:"requireSignature,omitempty"`
}

// Limits bound one plugin's instances.
type Limits struct {
	// MemoryPages caps each instance's linear memory (64 KiB pages).
	MemoryPages uint32 `yaml:"memoryPages,omitempty" json:"memoryPages,omitempty"`
	// CallTimeout sets each hook call's work budget (CallTimeout ×
	// RuntimeOptions.UnitsPerMillisecond units of guest work, see package
	// meter) and bounds what the host waits for on the call's behalf
	// (guest sleeps, store round trips, acquiring an instance).
	CallTimeout time.Duration `yaml:"callTimeout,omitempty" json:"callTimeout,omitempty"`
	// MaxModuleBytes refuses a larger module file before it is hashed,
	// rewritten or compiled.
	MaxModuleBytes int `yaml:"maxModuleBytes,omitempty" json:"maxModuleBytes,omitempty"`
	// MaxOutputBytes caps the encoded Decision a guest may return.
	MaxOutputBytes int `yaml:"maxOutputBytes,omitempty" json:"maxOutputBytes,omitempty"`
	// PoolSize caps the live instances per tenant (and so the concurrent
	// calls); callers beyond it wait up to CallTimeout for an instance.
	PoolSize int `yaml:"poolSize,omitempty" json:"poolSize,omitempty"`
	// IdleTimeout closes instances unused for that long.
	IdleTimeout time.Duration `yaml:"idleTimeout,omitempty" json:"idleTimeout,omitempty"`
	// CounterKeys caps the live counter_incr keys of this plugin for this
	// tenant; creating one more answers HostLimited.
	CounterKeys int `yaml:"counterKeys,omitempty" json:"counterKeys,omitempty"`
	// KVEntries caps the live kv_set entries of this plugin for this
	// tenant; a write beyond it answers HostLimited.
	KVEntries int `yaml:"kvEntries,omitempty" json:"kvEntries,omitempty"`
	// KVBytes caps the sum of key and value lengths over those entries; a
	// write beyond it answers HostLimited.
	KVBytes int64 `yaml:"kvBytes,omitempty" json:"kvBytes,omitempty"`
}

// DefaultLimits are the limits a zero field takes. The reasons are in
// abi/RATIONALE-plugins.md: 256 pages (16 MiB) fits a Go guest (~2.2 MiB
// initial) with room for its heap; 250 ms is far beyond a decision's cost yet above the time
// a goroutine may wait for a CPU on a saturated node (a wall-clock deadline that
// fires while the call waits to be scheduled discards a healthy instance),
// so only a runaway guest reaches it; 16 KiB holds any valid Decision;
// 4 instances keep ~15 MiB per busy tenant; 5 minutes of idleness frees a
// quiet tenant's memory. The state quotas (per tenant and plugin, on every
// node for the memory store and in Redis for the shared one) hold a rate
// limiter's keys for 100,000 distinct clients, and 10,000 KV entries or
// 16 MiB of keys and values: enough for lockout and session state, small
// enough that a thousand (tenant, plugin) scopes cannot take a node's heap.
func DefaultLimits() Limits {
	return Limits{MemoryPages: 256, CallTimeout: 250 * time.Millisecond, MaxModuleBytes: 8 << 20, MaxOutputBytes: 16 << 10, PoolSize: 4, IdleTimeout: 5 * time.Minute,
		CounterKeys: 100_000, KVEntries: 10_000, KVBytes: 16 << 20}
}

// MaxModuleBytes and MaxMemoryPages are the largest module and memory
// any configuration may allow (the runtime's own ceilings).
const (
	MaxModuleBytes = maxModuleBytes
	MaxMemoryPages = maxMemoryPages
)

// Upper bounds enforced by Validate.
const (
	maxMemoryPages    = 65536
	maxCallTimeout    = 10 * time.Second
	maxOutputBytes    = 1 << 20
	maxModuleBytes    = 64 << 20
	maxPoolSize       = 256
	maxConfigBytes    = 64 << 10
	minIdleTimeout    = time.Second
	maxPluginNameSize = 64
	maxCounterKeys    = 10_000_000
	maxKVEntries      = 1_000_000
	maxKVBytes        = 1 << 30
)

// WithDefaults returns s with every zero limit and failure mode set to its
// default. It does not modify s.
func (s Spec) WithDefaults() Spec {
	d := DefaultLimits()
	if s.Limits.MemoryPages == 0 {
		s.Limits.MemoryPages = d.MemoryPages
	}
	if s.Limits.CallTimeout == 0 {
		s.Limits.CallTimeout = d.CallTimeout
	}
	if s.Limits.MaxOutputBytes == 0 {
		s.Limits.MaxOutputBytes = d.MaxOutputBytes
	}
	if s.Limits.MaxModuleBytes == 0 {
		s.Limits.MaxModuleBytes = d.MaxModuleBytes
	}
	if s.Limits.PoolSize == 0 {
		s.Limits.PoolSize = d.PoolSize
	}
	if s.Limits.IdleTimeout == 0 {
		s.Limits.IdleTimeout = d.IdleTimeout
	}
	if s.Limits.CounterKeys == 0 {
		s.Limits.CounterKeys = d.CounterKeys
	}
	if s.Limits.KVEntries == 0 {
		s.Limits.KVEntries = d.KVEntries
	}
	if s.Limits.KVBytes == 0 {
		s.Limits.KVBytes = d.KVBytes
	}
	fm := make(map[string]FailureMode, len(s.Hooks))
	for _, h := range s.Hooks {
		if m, ok := s.FailureMode[h]; ok {
			fm[h] = m
		} else if h == abi.HookEvents {
			fm[h] = FailOpen
		} else {
			fm[h] = FailClosed
		}
	}
	s.FailureMode = fm
	return s
}

// Validate checks s (zero limits count as defaults) and returns an error
// naming the offending key under path, e.g.
// "tenants[2].plugins[0].limits.callTimeout: must be > 0".
func (s Spec) Validate(path string) error {
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s.%s: %s", path, key, fmt.Sprintf(format, args...)))
	}
	if s.Name == "" || len(s.Name) > maxPluginNameSize || !nameChars(s.Name) {
		bad("name", "must be 1-64 characters of [a-z0-9_-], got %q", s.Name)
	}
	if s.Path == "" {
		bad("path", "required")
	}
	if len(s.SHA256) != 64 || strings.ToLower(s.SHA256) != s.SHA256 {
		bad("sha256", "must be 64 lower-case hex digits")
	} else if _, err := hex.DecodeString(s.SHA256); err != nil {
		bad("sha256", "must be 64 lower-case hex digits")
	}
	if len(s.Hooks) == 0 {
		bad("hooks", "at least one of %s, %s, %s, %s", abi.HookToken, abi.HookIntrospect, abi.HookFreshAuth, abi.HookEvents)
	}
	seen := map[string]bool{}
	for i, h := range s.Hooks {
		switch {
		case !abi.IsHook(h):
			bad(fmt.Sprintf("hooks[%d]", i), "unknown hook %q", h)
		case seen[h]:
			bad(fmt.Sprintf("hooks[%d]", i), "duplicate hook %q", h)
		}
		seen[h] = true
	}
	for h, m := range s.FailureMode {
		key := "failureMode." + h
		switch {
		case !seen[h]:
			bad(key, "hook %q is not in hooks", h)
		case m != FailClosed && m != FailOpen:
			bad(key, "must be %q or %q, got %q", FailClosed, FailOpen, m)
		case h == abi.HookEvents && m != FailOpen:
			bad(key, "the events hook is asynchronous and can only fail %q", FailOpen)
		}
	}
	switch s.EventDelivery {
	case "", EventsQueued, EventsInline:
		if s.EventDelivery != "" && !seen[abi.HookEvents] {
			bad("eventDelivery", "needs the %s hook in hooks", abi.HookEvents)
		}
	default:
		bad("eventDelivery", "must be %q or %q, got %q", EventsQueued, EventsInline, s.EventDelivery)
	}
	if len(s.EventOutcomes) > 0 && !seen[abi.HookEvents] {
		bad("eventOutcomes", "needs the %s hook in hooks", abi.HookEvents)
	}
	for i, o := range s.EventOutcomes {
		if !slices.Contains(abi.Outcomes, o) {
			bad(fmt.Sprintf("eventOutcomes[%d]", i), "unknown outcome %q (one of %s)", o, strings.Join(abi.Outcomes, ", "))
		}
	}
	l := s.Limits
	// count checks a count limit: 0 takes the default, negative or above
	// max is an error.
	count := func(key string, v int64, max int64) {
		if v < 0 {
			bad(key, "must be > 0")
		} else if v > max {
			bad(key, "must be <= %d", max)
		}
	}
	if l.MemoryPages > maxMemoryPages {
		bad("limits.memoryPages", "must be <= %d", maxMemoryPages)
	}
	if l.CallTimeout < 0 {
		bad("limits.callTimeout", "must be > 0")
	} else if l.CallTimeout > maxCallTimeout {
		bad("limits.callTimeout", "must be <= %s", maxCallTimeout)
	}
	count("limits.maxOutputBytes", int64(l.MaxOutputBytes), maxOutputBytes)
	count("limits.maxModuleBytes", int64(l.MaxModuleBytes), maxModuleBytes)
	count("limits.poolSize", int64(l.PoolSize), maxPoolSize)
	if l.IdleTimeout < 0 {
		bad("limits.idleTimeout", "must be > 0")
	} else if l.IdleTimeout != 0 && l.IdleTimeout < minIdleTimeout {
		bad("limits.idleTimeout", "must be >= %s", minIdleTimeout)
	}
	count("limits.counterKeys", int64(l.CounterKeys), maxCounterKeys)
	count("limits.kvEntries", int64(l.KVEntries), maxKVEntries)
	count("limits.kvBytes", int64(l.KVBytes), maxKVBytes)
	granted := map[string]bool{}
	for i, g := range s.Grants {
		switch {
		case !IsGrant(g):
			bad(fmt.Sprintf("grants[%d]", i), "unknown grant %q (known: %s)", g, strings.Join(Grants(), ", "))
		case granted[g]:
			bad(fmt.Sprintf("grants[%d]", i), "duplicate grant %q", g)
		}
		granted[g] = true
	}
	if len(s.Config) > 0 {
		if b, err := json.Marshal(s.Config); err != nil {
			bad("config", "not representable as JSON: %v", err)
		} else if len(b) > maxConfigBytes {
			bad("config", "encodes to %d bytes, more than %d", len(b), maxConfigBytes)
		}
	}
	return errors.Join(errs...)
}

// ValidateTenant validates every spec of one tenant under path (for
// example "tenants[2].plugins") and checks that names are unique.
func ValidateTenant(path string, specs []Spec) error {
	var errs []error
	names := map[string]int{}
	for i, s := range specs {
		p := fmt.Sprintf("%s[%d]", path, i)
		if err := s.Validate(p); err != nil {
			errs = append(errs, err)
		}
		if j, dup := names[s.Name]; dup {
			errs = append(errs, fmt.Errorf("%s.name: %q already used by %s[%d]", p, s.Name, path, j))
		}
		names[s.Name] = i
	}
	return errors.Join(errs...)
}

func nameChars(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}
