package plugin

import "stellaops.org/authority/host/pluginspec"

// The plugin configuration lives in host/pluginspec (a leaf package that
// host/config imports without the runtime); these are its names here.
type (
	Spec        = pluginspec.Spec
	Limits      = pluginspec.Limits
	FailureMode = pluginspec.FailureMode
)

const (
	FailClosed   = pluginspec.FailClosed
	FailOpen     = pluginspec.FailOpen
	EventsQueued = pluginspec.EventsQueued
	EventsInline = pluginspec.EventsInline

	GrantLog          = pluginspec.GrantLog
	GrantMetrics      = pluginspec.GrantMetrics
	GrantAudit        = pluginspec.GrantAudit
	GrantCounters     = pluginspec.GrantCounters
	GrantKV           = pluginspec.GrantKV
	GrantPseudonymize = pluginspec.GrantPseudonymize
	GrantClock        = pluginspec.GrantClock
	GrantConfig       = pluginspec.GrantConfig
)

// DefaultLimits are the limits a zero field takes (pluginspec.DefaultLimits).
func DefaultLimits() Limits { return pluginspec.DefaultLimits() }

// ValidateTenant validates a tenant's chain (pluginspec.ValidateTenant).
func ValidateTenant(path string, specs []Spec) error { return pluginspec.ValidateTenant(path, specs) }

// Grants returns every grant name, in documentation order.
func Grants() []string { return pluginspec.Grants() }

// IsGrant reports whether g is a known grant.
func IsGrant(g string) bool { return pluginspec.IsGrant(g) }

// CheckCacheDir, CheckCacheKeyFile and DefaultCacheKeyFile are
// pluginspec's checks of the compilation cache's files.
func CheckCacheDir(dir string) error        { return pluginspec.CheckCacheDir(dir) }
func CheckCacheKeyFile(path string) error   { return pluginspec.CheckCacheKeyFile(path) }
func DefaultCacheKeyFile(dir string) string { return pluginspec.DefaultCacheKeyFile(dir) }

// The runtime's ceilings (pluginspec).
const (
	maxModuleBytes = pluginspec.MaxModuleBytes
	maxMemoryPages = pluginspec.MaxMemoryPages
)

// quotaOf is the state quota of l for a Scope.
func quotaOf(l Limits) Quota {
	return Quota{CounterKeys: l.CounterKeys, KVEntries: l.KVEntries, KVBytes: l.KVBytes}.withDefaults()
}
