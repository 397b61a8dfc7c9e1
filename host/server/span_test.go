package server

import (
	"strings"
	"testing"

	"go.opentelemetry.io/otel/attribute"
)

// A request method outside the standard set never reaches a span name or
// http.request.method: the span is "HTTP {route}" with method "_OTHER" and
// at most a short, printable method_original.
func TestUnboundedLabelsInventedMethodsAreOtherOnSpans(t *testing.T) {
	tests := []struct {
		method, route, wantName, wantMethod, wantOriginal string
	}{
		{"POST", "/token", "POST /token", "POST", ""},
		{"GET", RouteUnmatched, "GET unmatched", "GET", ""},
		{"get", "/jwks", "HTTP /jwks", "_OTHER", "get"},
		{"BREW", RouteUnmatched, "HTTP unmatched", "_OTHER", "BREW"},
		{strings.Repeat("Z", 20000), "/token", "HTTP /token", "_OTHER", strings.Repeat("Z", 16)},
		{"A\x01B", "/token", "HTTP /token", "_OTHER", "A?B"},
	}
	for _, tt := range tests {
		name, attrs := requestSpan(tt.method, tt.route)
		if name != tt.wantName {
			t.Errorf("span name for %.20q = %q, want %q", tt.method, name, tt.wantName)
		}
		got := map[attribute.Key]string{}
		for _, a := range attrs {
			got[a.Key] = a.Value.AsString()
		}
		if got["http.request.method"] != tt.wantMethod || got["http.route"] != tt.route {
			t.Errorf("attributes for %.20q = %v", tt.method, got)
		}
		if o, ok := got["http.request.method_original"]; ok != (tt.wantOriginal != "") || o != tt.wantOriginal {
			t.Errorf("method_original for %.20q = %q (set %v), want %q", tt.method, o, ok, tt.wantOriginal)
		}
	}
}
