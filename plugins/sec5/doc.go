// Command sec5 is the SEC5 enforcement-review plugin: per tenant, the
// threat model's rules on top of the host's native DPoP and mTLS checks,
// and the rollout plan's alerts, in band.
//
// On the token, introspect and fresh-auth hooks (after every native check
// has passed; SEC5 can only refuse):
//
//   - audiences[].require: tokens for the audience must be DPoP-bound,
//     certificate-bound (mTLS) or both (rules require-dpop, require-mtls);
//   - audiences[].highAssurance: no token without cnf for the audience,
//     emergency bypass and drills included (unbound-high-assurance);
//   - dpop.algorithms: a narrower list of DPoP proof algorithms than the
//     global one (dpop-alg; token and fresh-auth, where the proof is seen);
//   - bypassDrill: a token issued without a proof under
//     security.senderConstraints.dpop.allowTemporaryBypass is accepted only
//     from bypassDrill.start to .end for bypassDrill.clients, and refused
//     (bypass-outside-drill) and recorded otherwise.
//
// A refusal names its rule and where it is configured in
// error_description ("sec5 rule require-mtls (audiences[0]): ..."), in the
// annotations rule and rule.key of the token.denied record, and, at
// introspect and fresh-auth (no host record per request) and for every
// refused bypass, in a record of its own, authority.security.refused.
// At token it answers 400 invalid_dpop_proof (proof missing or
// unacceptable) or invalid_request (binding missing); at introspect and
// fresh-auth 403 access_denied.
//
// On the events hook it counts, over a sliding window of buckets (alerts:
// window 10m in 10 buckets by default) kept in counter_incr counters so
// that the window spans nodes, the tenant's DPoP token requests, those of
// them answered use_dpop_nonce, and certificate mismatches, and writes an
// authority.security.alert record once per crossing when nonce misses
// exceed alerts.nonceMissRatio (0.05) of the DPoP requests, or the
// mismatches exceed alerts.mtlsMismatches (0: any mismatch).
//
// Grants: config, clock, counters, audit. README.md has the configuration,
// the window arithmetic and how it agrees with the Prometheus rules of
// deploy/prometheus. It imports only sdk/ and abi/.
package main
