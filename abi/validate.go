package abi

import "strconv"

// Limits on what a plugin may return. The host refuses (as a plugin
// failure) any Decision or Event that exceeds them.
const (
	MaxAnnotations              = 16
	MaxKeyLen                   = 64
	MaxValueLen                 = 256
	MaxErrorLen                 = 64
	MaxDescriptionLen           = 256
	MaxRetryAfter               = 86400
	MaxEventTypeLen             = 128
	MaxEventAttributes          = 32
	MaxEventFieldLen            = 1024
	MaxEventScopes              = 64
	MaxEventScopeLen            = 256
	StatusUnavailable           = 503
	ErrorTemporarilyUnavailable = "temporarily_unavailable"
)

// ValidationError names the field of a plugin result that broke a rule.
type ValidationError struct {
	Field  string
	Reason string
}

func (e *ValidationError) Error() string { return "abi: " + e.Field + ": " + e.Reason }

func invalid(field, reason string) error { return &ValidationError{Field: field, Reason: reason} }

// Validate reports whether d is a decision the host may act on:
//   - an allow carries no status, error, description or Retry-After;
//   - a deny carries a status in 400-499 or 503, a non-empty OAuth error
//     code and an optional description, both in the RFC 6749 §5.2 character
//     set (%x20-21 / %x23-5B / %x5D-7E; no space in the error code), and a
//     Retry-After of at most MaxRetryAfter seconds;
//   - at most MaxAnnotations annotations, keys [a-z0-9_.-]{1,64}, printable
//     ASCII values of at most MaxValueLen bytes.
//
// A valid decision can only deny or annotate: nothing in it can loosen a
// native check.
func (d *Decision) Validate() error {
	if d.Allow {
		if d.Status != 0 || d.Error != "" || d.Description != "" || d.RetryAfter != 0 {
			return invalid("allow", "an allow decision must not carry status, error, description or retryAfter")
		}
	} else {
		if !(d.Status >= 400 && d.Status <= 499) && d.Status != 503 {
			return invalid("status", "deny status must be 400-499 or 503, got "+strconv.Itoa(d.Status))
		}
		if d.Error == "" || len(d.Error) > MaxErrorLen || !nqschar(d.Error, false) {
			return invalid("error", "must be 1-64 characters of the RFC 6749 error charset")
		}
		if len(d.Description) > MaxDescriptionLen || !nqschar(d.Description, true) {
			return invalid("description", "must be at most 256 characters of the RFC 6749 error_description charset")
		}
		if d.RetryAfter < 0 || d.RetryAfter > MaxRetryAfter {
			return invalid("retryAfter", "must be 0-86400 seconds")
		}
	}
	return validKVs("annotations", d.Annotations, MaxAnnotations)
}

// ValidateEvent reports whether e is an event a plugin may emit through
// audit_emit: Type is "authority." followed by lower-case dotted segments,
// every scope is an RFC 6749 §3.3 scope-token (1 to MaxEventScopeLen bytes
// of %x21 / %x23-5B / %x5D-7E), and every field respects the Max* limits.
func ValidateEvent(e *Event) error {
	if len(e.Type) > MaxEventTypeLen || len(e.Type) <= len("authority.") || e.Type[:len("authority.")] != "authority." || !keyChars(e.Type) {
		return invalid("type", `must be "authority.<surface>.<action>" in [a-z0-9_.-]`)
	}
	for _, f := range [...]struct{ name, v string }{
		{"correlationId", e.CorrelationID}, {"outcome", e.Outcome}, {"reason", e.Reason},
		{"subject", e.Subject}, {"client", e.Client}, {"remoteAddr", e.RemoteAddr},
		{"userAgent", e.UserAgent}, {"senderConstraint", e.SenderConstraint},
	} {
		if len(f.v) > MaxEventFieldLen {
			return invalid(f.name, "longer than 1024 bytes")
		}
	}
	if len(e.Scopes) > MaxEventScopes {
		return invalid("scopes", "more than 64 scopes")
	}
	for _, sc := range e.Scopes {
		if sc == "" || len(sc) > MaxEventScopeLen || !nqschar(sc, false) {
			return invalid("scopes", "each scope must be 1-256 characters of the RFC 6749 scope-token charset")
		}
	}
	return validKVs("attributes", e.Attributes, MaxEventAttributes)
}

func validKVs(field string, kvs []KV, max int) error {
	if len(kvs) > max {
		return invalid(field, "too many entries (max "+strconv.Itoa(max)+")")
	}
	for _, kv := range kvs {
		if kv.Key == "" || len(kv.Key) > MaxKeyLen || !keyChars(kv.Key) {
			return invalid(field+".key", "must be 1-64 characters of [a-z0-9_.-]")
		}
		if len(kv.Value) > MaxValueLen || !printable(kv.Value) {
			return invalid(field+".value", "must be at most 256 printable ASCII characters")
		}
	}
	return nil
}

// Printable reports whether s is printable ASCII (%x20-7E), the charset of
// annotation and attribute values.
func Printable(s string) bool { return printable(s) }

// KeyChars reports whether s is made of [a-z0-9_.-], the charset of
// annotation and attribute keys and of event types.
func KeyChars(s string) bool { return keyChars(s) }

func printable(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

func keyChars(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_' || c == '.' || c == '-') {
			return false
		}
	}
	return true
}

// nqschar reports whether s is in %x20-21 / %x23-5B / %x5D-7E (RFC 6749
// Appendix A); space is allowed only when spaceOK.
func nqschar(s string, spaceOK bool) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == ' ' {
			if !spaceOK {
				return false
			}
			continue
		}
		if c < 0x21 || c > 0x7e || c == '"' || c == '\\' {
			return false
		}
	}
	return true
}
