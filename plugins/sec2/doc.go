// Command sec2 is the SEC2 audit plugin: for every security event of a
// tenant that the tenant's configuration selects (token issued or denied,
// DPoP replay, bypass and nonce miss, certificate mismatch, lockout: any
// "authority.<surface>.<action>" type), it writes exactly one audit record
// of its own through the host (audit_emit), with the event's type, time,
// correlation id, tenant, outcome, reason, sorted scopes and
// sender-constraint details, and the personal data pseudonymized by the
// host's keyed pseudonymize function: subject, client address (or its
// network, truncated to a configured prefix) and user agent. The tenant's
// key never enters the module, and no raw subject, address or user agent
// leaves it.
//
// Build (make build does it for every plugin):
//
//	GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o bin/plugins/sec2.wasm ./plugins/sec2
//
// It serves the events hook and needs the grants audit, pseudonymize and
// config, and nothing else: the module imports exactly audit_emit,
// pseudonymize and config_get. With the clock grant its records keep the
// event's time; without it the host sends events without a time and the
// records have none.
//
// Configuration (the plugin's config document; every key optional):
//
//	events:             [authority.token.*, authority.dpop.*]  # types or prefixes ending in "." or "*"; default every type
//	outcomes:           [failure, locked_out]  # default every outcome
//	network:            hash      # hash (default) | truncate | omit
//	ipv4Prefix:         24        # truncate: 8-32, default 24
//	ipv6Prefix:         48        # truncate: 16-128, default 48
//	userAgent:          hash      # hash (default) | omit
//	client:             raw       # raw (default) | hash
//	includeAnnotations: true      # keep the annotation.* attributes (default true)
//	properties:         {regulation: gdpr}  # static attributes property.<key>, at most 16
//
// The configuration is parsed once per instance, at the first event, and
// validated strictly: an unknown key, a value of the wrong type or out of
// range makes every event fail (the host counts the failures of the
// events hook, which fails open) and is written once to the guest log;
// nothing is recorded under defaults the operator did not choose.
//
// README.md has the details: the record field by field, the example
// tenant configuration, how SEC2's records relate to the host's own audit
// record, and the format of the golden event vectors in vectors/.
//
// The module imports only sdk/, abi/ and the standard library (encoding/json
// to parse the configuration, net/netip to truncate addresses), nothing
// from crypto/*; the per-event path uses no reflection. The host-facing
// code is guest_wasip1.go; everything else builds natively and is unit
// tested with a fake host (record_test.go), and the compiled module is
// tested under the real host runtime (module_test.go, vectors_test.go).
package main
