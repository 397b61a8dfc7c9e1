// Package abi defines version 1 of the Authority plugin ABI: the Go types
// exchanged between the host and WebAssembly plugins, and the single binary
// codec both sides use to encode them.
//
// The host (host/plugin) and the Go guest SDK (sdk) import this package; it
// depends only on the standard library and uses neither reflection nor
// encoding/json, so it is cheap inside a wasip1 guest. SPEC.md in this
// directory is the normative description for guests written in any language;
// testdata/vectors.json holds the golden vectors every SDK must pass.
//
// Guarantees:
//   - Every Append* function produces the one canonical encoding of its value;
//     every Decode* function accepts exactly the canonical encodings, so
//     Decode followed by Append reproduces the input bytes.
//   - Decoders never panic and never allocate more than a small constant
//     factor of the input size, whatever the input.
package abi

// Version is the ABI version this package implements. A guest declares the
// version it was built against through its authority_abi_version export.
const Version = 1

// Hook names. A plugin's configuration lists the hooks it serves; the policy
// hooks are synchronous and run after every native check on their endpoint,
// the events hook is asynchronous.
const (
	// HookToken is the policy decision on POST /token.
	HookToken = "token"
	// HookIntrospect is the policy decision on POST /introspect.
	HookIntrospect = "introspect"
	// HookFreshAuth is the policy decision on POST /fresh-auth.
	HookFreshAuth = "fresh-auth"
	// HookEvents is the telemetry hook fed with security events.
	HookEvents = "events"
)

// IsPolicyHook reports whether hook names a synchronous policy hook.
func IsPolicyHook(hook string) bool {
	return hook == HookToken || hook == HookIntrospect || hook == HookFreshAuth
}

// IsHook reports whether hook names a hook defined by this ABI version.
func IsHook(hook string) bool { return IsPolicyHook(hook) || hook == HookEvents }

// Status codes returned by host functions (module "authority") as i32.
// A non-negative result of a host function that returns a length is the
// length; a negative result is one of these.
const (
	// HostOK means the call succeeded.
	HostOK int32 = 0
	// HostNotFound means the key does not exist (kv_get).
	HostNotFound int32 = -1
	// HostInvalid means an argument was refused: out-of-bounds pointer,
	// oversized key or value, bad metric name, event that fails ValidateEvent.
	HostInvalid int32 = -2
	// HostUnavailable means the backing store failed; the guest should
	// treat it like any transient dependency failure.
	HostUnavailable int32 = -3
	// HostLimited means a rate or size limit of the host refused the call.
	HostLimited int32 = -4
)

// Log levels for the log host function.
const (
	LogDebug int32 = 0
	LogInfo  int32 = 1
	LogWarn  int32 = 2
	LogError int32 = 3
)
