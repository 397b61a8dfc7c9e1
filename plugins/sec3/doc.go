// Command sec3 is the SEC3 lockout and rate-limit plugin. Per tenant, on
// the token hook:
//
//   - a fixed-window permit limit per client and client address
//     (token.permitLimit requests per token.window): the next request of
//     the window answers 429 slow_down with Retry-After (seconds left in
//     the window);
//   - a lockout per subject, per client and per address (lockout.by):
//     lockout.maxFailures counted failures within lockout.window lock that
//     key for lockout.lockoutDuration, and every request of a locked key
//     answers 423 access_denied with Retry-After (seconds left in the
//     lockout). The lockout is checked first, and a locked request does
//     not count against the rate limit.
//
// Failures come from the events hook: token requests refused for a bad
// client secret or certificate, a bad password, an unknown or disabled
// user, an invalid or replayed DPoP proof, a refresh token presented with
// another key or certificate or after its rotation, and certificate
// binding mismatches. The operator gives SEC3 inline event delivery
// (eventDelivery: inline, eventOutcomes: [failure]), so that no failure is
// dropped however hard the node is flooded; the first request to reach
// maxFailures creates the lock, and that call alone writes the lockout's
// audit record (authority.lockout.<scope>, outcome locked_out).
//
// Counters go through counter_incr, so with plugins.state: redis every
// node shares them. Subjects and addresses enter keys only as the host's
// keyed pseudonyms (no raw personal data in Redis, fixed-length keys); a
// client id is kept as is when it is 1-128 bytes of printable ASCII
// without "/".
//
// Configuration (the plugin's config document):
//
//	token:   {permitLimit: 20, window: 1m}                  # optional
//	lockout: {maxFailures: 5, window: 15m, lockoutDuration: 15m, by: [subject, client, ip]}  # optional; by defaults to all three
//	onStoreUnavailable: refuse   # refuse (default: 503 with Retry-After 1) | admit
//
// At least one of token and lockout must be set. Grants: counters,
// pseudonymize, config, audit. README.md has the semantics at window
// edges, the store failure modes and the measured cost.
package main
