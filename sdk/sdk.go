// Package sdk is the Go guest SDK for Authority plugins (ABI version 1).
//
// A plugin is a main package built with
//
//	GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o plugin.wasm .
//
// that registers its handlers from init (main is never called in a
// reactor module):
//
//	func init() {
//		sdk.HandleDecision(func(in *abi.DecisionInput) abi.Decision {
//			if in.Client == "blocked" {
//				return abi.Denied(403, "access_denied", "client blocked")
//			}
//			return abi.Allowed()
//		})
//	}
//	func main() {}
//
// The SDK owns the exports the host calls (authority_abi_version,
// authority_alloc, authority_decide, authority_event), the buffers that
// cross the boundary and their encoding; handlers see typed values only.
// It imports abi and the standard library only, and nothing from crypto/*:
// keyed hashing is the Pseudonymize host function.
//
// Performance: every guest call runs under a deadline, and wazero enforces
// it by a check at every loop entry; Go's wasm code enters a loop at every
// function call and taken branch. Measured here: the SDK's own work (decode
// the input without allocating, encode the decision) is ~3.5 µs per call;
// a handler adds ~20-50 ns per loop iteration or branch, ~1-3 µs per heap
// allocation and more for Go map lookups with string keys. So: do the
// parsing (sdk.Config, encoding/json) in init, not per decision; return
// shared, never-modified annotation slices; prefer short slices scanned
// once over maps for small rule sets; do not allocate in the handler when
// you can avoid it. abi/RATIONALE-plugins.md has the figures.
//
// Host functions (Log, Metric, Audit, CounterIncr, KVGet, KVSet,
// Pseudonymize, Now, Config) are imported by the module only when the
// plugin calls them, and the host refuses to load a module whose imports
// are not granted in the operator's configuration: call only what you
// declare. Built for any other target than wasip1 (for unit tests of the
// plugin's own logic) the host functions return ErrNotInGuest.
package sdk

import (
	"errors"

	"stellaops.org/authority/abi"
)

// DecisionHandler decides a policy hook. It must not block. in, its
// strings and its slices are views of the SDK's input buffer, valid only
// until the handler returns: copy what you keep (strings.Clone,
// slices.Clone). This is what makes decoding allocation-free, and each
// allocation costs a Go guest ~0.5-3 µs (abi/RATIONALE-plugins.md).
type DecisionHandler func(in *abi.DecisionInput) abi.Decision

// EventHandler consumes one telemetry event, with the same validity rule
// for ev as DecisionHandler's input. A non-nil error is counted by the
// host as a plugin failure (events fail open).
type EventHandler func(ev *abi.Event) error

// Errors returned by host function wrappers.
var (
	// ErrNotInGuest is returned by host functions outside a wasip1 build.
	ErrNotInGuest = errors.New("sdk: not running inside the authority host")
	// ErrInvalid mirrors abi.HostInvalid.
	ErrInvalid = errors.New("sdk: host refused an argument")
	// ErrUnavailable mirrors abi.HostUnavailable.
	ErrUnavailable = errors.New("sdk: host store unavailable")
	// ErrLimited mirrors abi.HostLimited.
	ErrLimited = errors.New("sdk: host limit reached")
)

// MaxCounterBatch is the most operations one CounterIncrMany call takes.
const MaxCounterBatch = abi.MaxCounterBatch

// CounterOp is one increment of CounterIncrMany: CounterIncr's arguments.
type CounterOp = abi.CounterOp

// CounterResult is one CounterOp's outcome: CounterIncr's results.
type CounterResult = abi.CounterResult

// Guest-side registry: a wasm instance runs one plugin, so package state is
// the plugin's state (set once from init).
var (
	decisionHandler DecisionHandler
	eventHandler    EventHandler
)

// HandleDecision registers the policy handler. Call it once, from init.
func HandleDecision(h DecisionHandler) { decisionHandler = h }

// HandleEvent registers the telemetry handler. Call it once, from init.
func HandleEvent(h EventHandler) { eventHandler = h }

func statusErr(st int32) error {
	switch {
	case st >= 0:
		return nil
	case st == abi.HostInvalid:
		return ErrInvalid
	case st == abi.HostLimited:
		return ErrLimited
	default:
		return ErrUnavailable
	}
}

// Log levels accepted by Log.
const (
	LevelDebug = abi.LogDebug
	LevelInfo  = abi.LogInfo
	LevelWarn  = abi.LogWarn
	LevelError = abi.LogError
)
