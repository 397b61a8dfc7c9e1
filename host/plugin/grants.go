package plugin

// HostModule is the import module name of the authority host functions;
// WASIModule the one of the WASI subset.
const (
	HostModule = "authority"
	WASIModule = "wasi_snapshot_preview1"
)

// HostFunctions is the one table of module "authority": each function the
// host offers and the grant it requires (abi/SPEC.md §5). It drives the
// load-time import check (GrantFor), the run-time grant check of every
// function (instantiateHostModule defines exactly these), `plugin
// inspect`, and the test that compares it with SPEC.md's table.
var HostFunctions = []struct{ Name, Grant string }{
	{"log", GrantLog},
	{"metric_add", GrantMetrics},
	{"audit_emit", GrantAudit},
	{"counter_incr", GrantCounters},
	{"counter_incr_many", GrantCounters},
	{"kv_get", GrantKV},
	{"kv_set", GrantKV},
	{"pseudonymize", GrantPseudonymize},
	{"now", GrantClock},
	{"config_get", GrantConfig},
}

// GrantFor returns the grant a host function of module "authority"
// requires, and false for a name the host does not offer.
func GrantFor(function string) (string, bool) {
	for _, f := range HostFunctions {
		if f.Name == function {
			return f.Grant, true
		}
	}
	return "", false
}

// IsWASIAllowed reports whether a wasi_snapshot_preview1 function is in
// the subset the host provides: the functions a stock Go guest imports,
// none of which reaches a file, socket, argument or environment variable.
func IsWASIAllowed(function string) bool {
	switch function {
	case "args_get", "args_sizes_get", "environ_get", "environ_sizes_get",
		"clock_time_get", "fd_write", "fd_close", "fd_fdstat_get", "fd_fdstat_set_flags",
		"fd_prestat_get", "fd_prestat_dir_name", "poll_oneoff", "proc_exit",
		"random_get", "sched_yield":
		return true
	}
	return false
}

// ClassifyImport says whether a module may import module.function under
// grants, and if not why; reviewers' tooling (plugin inspect) uses it too.
// grant is the grant that unlocks a host function ("" for WASI).
func ClassifyImport(module, function string, grants []string) (grant string, allowed bool, reason string) {
	switch module {
	case WASIModule:
		if IsWASIAllowed(function) {
			return "", true, ""
		}
		return "", false, "WASI function outside the allowed subset"
	case HostModule:
		g, ok := GrantFor(function)
		if !ok {
			return "", false, "unknown host function"
		}
		for _, have := range grants {
			if have == g {
				return g, true, ""
			}
		}
		return g, false, "requires grant " + `"` + g + `"`
	}
	return "", false, "unknown import module"
}

type grantSet uint16

const (
	bitLog grantSet = 1 << iota
	bitMetrics
	bitAudit
	bitCounters
	bitKV
	bitPseudonymize
	bitClock
	bitConfig
)

func grantBit(g string) grantSet {
	switch g {
	case GrantLog:
		return bitLog
	case GrantMetrics:
		return bitMetrics
	case GrantAudit:
		return bitAudit
	case GrantCounters:
		return bitCounters
	case GrantKV:
		return bitKV
	case GrantPseudonymize:
		return bitPseudonymize
	case GrantClock:
		return bitClock
	case GrantConfig:
		return bitConfig
	}
	return 0
}

func newGrantSet(grants []string) grantSet {
	var s grantSet
	for _, g := range grants {
		s |= grantBit(g)
	}
	return s
}
