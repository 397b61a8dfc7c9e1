package abi

import "time"

// KV is one ordered key/value pair (annotations, attributes).
type KV struct {
	Key   string `json:"key"`
	Value string `json:"value"`
}

// DPoP carries the outcome of the host's native RFC 9449 proof check. The
// plugin sees the result; it never sees or re-checks the proof.
type DPoP struct {
	// Present reports whether the request carried a DPoP header.
	Present bool `json:"present"`
	// Valid reports whether the native check accepted the proof.
	Valid bool `json:"valid"`
	// Result is the native result label: "ok", "missing", "invalid",
	// "replay", "nonce-miss", "bypass", ...
	Result string `json:"result,omitempty"`
	// JKT is the RFC 7638 thumbprint of the proof key (base64url).
	JKT string `json:"jkt,omitempty"`
	// Alg is the proof's JWS algorithm.
	Alg string `json:"alg,omitempty"`
	// NonceStatus is "none", "valid", "missing" or "stale".
	NonceStatus string `json:"nonceStatus,omitempty"`
}

// MTLS carries the outcome of the host's native RFC 8705 certificate check.
type MTLS struct {
	// Present reports whether a client certificate was presented.
	Present bool `json:"present"`
	// Thumbprint is x5t#S256 of the certificate (base64url, no padding).
	Thumbprint string `json:"thumbprint,omitempty"`
	// Result is the native result label: "ok", "context-missing",
	// "missing-certificate", "thumbprint-mismatch", ...
	Result string `json:"result,omitempty"`
}

// DecisionInput is what a policy hook receives. The host fills it after
// every native check on the endpoint has passed.
type DecisionInput struct {
	// Endpoint is the hook: HookToken, HookIntrospect or HookFreshAuth.
	Endpoint      string    `json:"endpoint"`
	Tenant        string    `json:"tenant"`
	CorrelationID string    `json:"correlationId,omitempty"`
	Time          time.Time `json:"time"`
	Client        string    `json:"client,omitempty"`
	// ClientAuthMethod is the RFC 7591 name of the client authentication used.
	ClientAuthMethod string `json:"clientAuthMethod,omitempty"`
	Grant            string `json:"grant,omitempty"`
	Subject          string `json:"subject,omitempty"`
	// Scopes are sorted and free of duplicates.
	Scopes     []string `json:"scopes,omitempty"`
	Audiences  []string `json:"audiences,omitempty"`
	RemoteAddr string   `json:"remoteAddr,omitempty"`
	UserAgent  string   `json:"userAgent,omitempty"`
	// SenderConstraint is "dpop", "mtls", "none" or "bypass".
	SenderConstraint string `json:"senderConstraint,omitempty"`
	DPoP             DPoP   `json:"dpop"`
	MTLS             MTLS   `json:"mtls"`
	// Attributes are additional host facts, in host order.
	Attributes []KV `json:"attributes,omitempty"`
}

// Decision is what a policy hook returns. The zero value denies nothing
// only when Allow is true: a plugin must say Allow explicitly.
type Decision struct {
	Allow bool `json:"allow"`
	// Status is the HTTP status of a deny: 400-499 or 503. Zero on allow.
	Status int `json:"status,omitempty"`
	// Error is the OAuth error code of a deny (RFC 6749 §5.2 charset).
	Error string `json:"error,omitempty"`
	// Description is the error_description of a deny.
	Description string `json:"description,omitempty"`
	// RetryAfter, in seconds, becomes a Retry-After header when > 0.
	RetryAfter int `json:"retryAfter,omitempty"`
	// Annotations are attached to the request's audit record.
	Annotations []KV `json:"annotations,omitempty"`
}

// Allowed returns an allow decision.
func Allowed() Decision { return Decision{Allow: true} }

// Denied returns a deny decision with the given HTTP status, OAuth error
// code and description.
func Denied(status int, oauthError, description string) Decision {
	return Decision{Status: status, Error: oauthError, Description: description}
}

// Event is one security event for the telemetry hook (and for audit_emit).
type Event struct {
	// Type is "authority.<surface>.<action>", e.g. "authority.token.issued".
	Type          string    `json:"type"`
	Time          time.Time `json:"time"`
	CorrelationID string    `json:"correlationId,omitempty"`
	Tenant        string    `json:"tenant"`
	// Outcome is "success", "failure", "locked_out", "rate_limited" or "error".
	Outcome string `json:"outcome,omitempty"`
	Reason  string `json:"reason,omitempty"`
	Subject string `json:"subject,omitempty"`
	Client  string `json:"client,omitempty"`
	// Scopes are sorted.
	Scopes           []string `json:"scopes,omitempty"`
	RemoteAddr       string   `json:"remoteAddr,omitempty"`
	UserAgent        string   `json:"userAgent,omitempty"`
	SenderConstraint string   `json:"senderConstraint,omitempty"`
	DPoP             DPoP     `json:"dpop"`
	MTLS             MTLS     `json:"mtls"`
	Attributes       []KV     `json:"attributes,omitempty"`
}

// MaxCounterBatch is the most operations one counter_incr_many call takes,
// and CounterRecordBytes the size of one operation record and of one
// result record (SPEC.md §5).
const (
	MaxCounterBatch    = 16
	CounterRecordBytes = 24
)

// CounterOp is one operation of counter_incr_many: counter_incr's
// arguments.
type CounterOp struct {
	Key    string
	Delta  int64
	Window time.Duration
}

// CounterResult is one CounterOp's outcome: counter_incr's results, Err
// nil for HostOK.
type CounterResult struct {
	Value int64
	TTL   time.Duration
	Err   error
}
