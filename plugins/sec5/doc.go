// Package sec5 is the SEC5 enforcement-review plugin: per tenant
// threat-model rules: audiences that require mTLS and/or DPoP, tokens
// without cnf refused for high-assurance audiences, narrower DPoP
// algorithm lists, the emergency bypass accepted only inside a declared
// drill window, and alert events when nonce misses exceed 5% or any
// certificate mismatch occurs within 10 minutes.
//
// It serves the policy hooks and the events hook, and needs grants config,
// clock, counters and audit. It can only deny or tighten: the native DPoP
// and mTLS checks run before it and nothing it returns can loosen them.
// It imports only sdk/ and abi/.
package sec5
