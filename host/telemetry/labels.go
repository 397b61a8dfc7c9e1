package telemetry

import "slices"

// Label bounds. A metric label, a span name or a cache key built from a
// value the client chose (a method, a grant type, an error code a plugin
// echoed) grows without limit: every invented value is a new series in
// every scrape and a new entry in the attribute cache. Every label of this
// package therefore comes from one of the fixed sets below, or from the
// configuration (tenant ids, plugin names, the token store kind, the
// plugin counter names the plugin runtime bounds per plugin); a value
// outside its set is recorded as LabelOther (MethodOther for methods).

// MethodOther replaces a request method outside HTTPMethods, as the
// OpenTelemetry HTTP semantic conventions prescribe for
// http.request.method.
const MethodOther = "_OTHER"

// LabelOther replaces a label value outside its fixed set.
const LabelOther = "other"

// HTTPMethods are the methods recorded as themselves (RFC 9110 §9 and
// RFC 5789 PATCH), compared case-sensitively as RFC 9110 §9.1 says.
var HTTPMethods = []string{"GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"}

// GrantTypes are the grant_type label values besides LabelOther: the grant
// types the server knows.
var GrantTypes = []string{"client_credentials", "password", "refresh_token"}

// TokenErrors are the error label values besides LabelOther: the OAuth
// error codes the server itself answers with. A plugin deny may carry any
// RFC 6749 error string; one outside this set is counted as LabelOther.
var TokenErrors = []string{
	"invalid_request", "invalid_client", "invalid_grant", "unauthorized_client", "unsupported_grant_type",
	"invalid_scope", "invalid_target", "invalid_token", "invalid_dpop_proof", "use_dpop_nonce",
	"server_error", "temporarily_unavailable", "unsupported_token_type", "access_denied",
}

// SenderConstraints are the sender_constraint label values besides
// LabelOther.
var SenderConstraints = []string{"none", "dpop", "mtls", "dpop+mtls"}

// PluginHooks are the hook label values besides LabelOther (abi/SPEC.md
// hook names).
var PluginHooks = []string{"token", "introspect", "fresh-auth", "events"}

// HTTPMethod returns method when it is one of HTTPMethods, else
// MethodOther: the only form in which a request method may become a label,
// a span name, a span attribute or a log field.
func HTTPMethod(method string) string {
	switch method {
	case "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH":
		return method
	}
	return MethodOther
}

// maxMethodOriginal bounds http.request.method_original on spans.
const maxMethodOriginal = 16

// MethodOriginal returns the form of a method outside HTTPMethods that may
// go on a span as http.request.method_original: at most 16 bytes, bytes
// outside printable ASCII replaced by '?'. It is never a label or a cache
// key (a span attribute costs one span, not a series).
func MethodOriginal(method string) string {
	if len(method) > maxMethodOriginal {
		method = method[:maxMethodOriginal]
	}
	b := []byte(method)
	for i, c := range b {
		if c < 0x21 || c > 0x7e {
			b[i] = '?'
		}
	}
	return string(b)
}

// bounded returns v when it is in set, else LabelOther.
func bounded(v string, set []string) string {
	if slices.Contains(set, v) {
		return v
	}
	return LabelOther
}
