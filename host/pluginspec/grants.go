package pluginspec

// Grants a Spec may list. Each unlocks host functions of module
// "authority" (see abi/SPEC.md §5).
const (
	GrantLog          = "log"          // log
	GrantMetrics      = "metrics"      // metric_add
	GrantAudit        = "audit"        // audit_emit
	GrantCounters     = "counters"     // counter_incr
	GrantKV           = "kv"           // kv_get, kv_set
	GrantPseudonymize = "pseudonymize" // pseudonymize
	GrantClock        = "clock"        // now, WASI realtime, message times (abi/SPEC.md §6)
	GrantConfig       = "config"       // config_get
)

// Grants returns every grant name, in documentation order.
func Grants() []string {
	return []string{GrantLog, GrantMetrics, GrantAudit, GrantCounters, GrantKV, GrantPseudonymize, GrantClock, GrantConfig}
}

// IsGrant reports whether g is a known grant.
func IsGrant(g string) bool {
	for _, k := range Grants() {
		if k == g {
			return true
		}
	}
	return false
}
