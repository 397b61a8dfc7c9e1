// Package plugin runs tenant policy and telemetry plugins: WebAssembly
// modules built against the ABI in package abi, executed with wazero.
//
// The server uses one Manager: NewManager loads, verifies (sha256, imports
// against grants, exports, ABI version) and compiles every configured
// module, then Decide runs a tenant's policy chain after the native checks
// of an endpoint and Emit queues a telemetry event.
//
// Sandbox guarantees, each the reason for a limit in Spec.Limits:
//   - a guest sees no filesystem, network, environment or arguments: the
//     only imports it can satisfy are the host functions granted in its
//     Spec and a minimal WASI subset (see wasi.go) answering "nothing";
//   - tenant A's data never enters an instance that serves tenant B: pools
//     are per (tenant, plugin);
//   - every call has a deadline (Limits.CallTimeout) that interrupts guest
//     code, including a guest sleeping in poll_oneoff;
//   - guest memory is capped (Limits.MemoryPages) and so is its output
//     (Limits.MaxOutputBytes);
//   - an instance that traps, times out or answers outside the ABI is
//     closed and never reused;
//   - nothing a plugin returns loosens a native check: a Decision can only
//     allow (the native outcome stands) or deny.
package plugin
