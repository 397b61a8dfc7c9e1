// Package sec2 is the SEC2 audit plugin: one audit record per security
// event (token issued or denied, nonce miss, replay, certificate mismatch,
// bypass, lockout), with event type "authority.<surface>.<action>", UTC
// time, correlation id, tenant, outcome, reason, subject, client, sorted
// scopes, network and sender-constraint details; subject, IP and user
// agent are pseudonymized through the host's per-tenant keyed
// pseudonymize function, so raw personal data never leaves the host.
//
// It serves the events hook and needs grants audit and pseudonymize. It
// imports only sdk/ and abi/.
package main
