// Package sec3 is the SEC3 lockout and rate-limit plugin: per tenant,
// fixed-window permit limits per client and IP on /token (429 with
// Retry-After) and lockout after N failures per subject, client or IP (423
// with Retry-After), counted through the host's counter_incr function so
// every node shares the counters (Redis in production).
//
// It serves the token policy hook and the events hook (to count failures),
// and needs grants counters, clock and config. It imports only sdk/ and abi/.
package sec3
