package app_test

import (
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"

	"stellaops.org/authority/host/oauth"
	"stellaops.org/authority/host/telemetry"
)

// A scrape after a scripted sequence of requests shows each counter at the
// expected value, with bounded labels.
func TestMetricsAfterScriptedSequence(t *testing.T) {
	e := newEnv(t, envOptions{})
	e.mustToken("demo-bearer")
	e.mustToken("demo-bearer")
	e.do("/token", reqOpts{basic: [2]string{"demo-bearer", "wrong"}, form: url.Values{"grant_type": {"client_credentials"}}})
	e.do("/token", reqOpts{basic: [2]string{"attacker-chosen-id", "x"}, form: url.Values{"grant_type": {"attacker-chosen-grant"}}})
	e.token("demo-dpop", nil) // use_dpop_nonce
	k := newDPoPKey(t)
	tok, _ := e.boundToken(k)
	e.introspect("demo-dpop", tok)
	m := e.metrics()
	for _, want := range []string{
		`authority_tokens_issued_total{authority_dpop_result="none",grant_type="client_credentials",sender_constraint="none",tenant="demo"} 2`,
		`authority_tokens_issued_total{authority_dpop_result="valid",grant_type="client_credentials",sender_constraint="dpop",tenant="demo-dpop"} 1`,
		`authority_tokens_denied_total{authority_dpop_result="none",error="invalid_client",grant_type="client_credentials",tenant="demo"} 1`,
		`authority_tokens_denied_total{authority_dpop_result="none",error="invalid_client",grant_type="other",tenant="unknown"} 1`,
		`authority_tokens_denied_total{authority_dpop_result="missing",error="use_dpop_nonce",grant_type="client_credentials",tenant="demo-dpop"} 1`,
		`authority_tokens_denied_total{authority_dpop_result="nonce_miss",error="use_dpop_nonce",grant_type="client_credentials",tenant="demo-dpop"} 1`,
		`authority_dpop_nonce_miss_total 2`,
		`authority_http_request_duration_seconds_count{method="POST",route="/token",status_class="2xx"} 3`,
		`authority_store_operation_duration_seconds_count{operation="put",store="memory"} 3`,
		`authority_store_operation_duration_seconds_count{operation="get",store="memory"} 1`,
	} {
		if !strings.Contains(m, want) {
			t.Errorf("scrape lacks %s", want)
		}
	}
	if strings.Contains(m, "attacker-chosen") {
		t.Fatal("a client-supplied string became a label value")
	}
	if t.Failed() {
		t.Log(m)
	}
}

// Every token request writes one audit record, issued or denied; personal
// data (address, user agent) stays out of the log sink.
func TestTokenRequestsAreAudited(t *testing.T) {
	e := newEnv(t, envOptions{})
	tok := e.mustToken("demo-bearer")
	e.do("/token", reqOpts{basic: [2]string{"demo-bearer", "wrong"}, form: url.Values{"grant_type": {"client_credentials"}},
		headers: map[string][]string{"User-Agent": {"curious-agent/1.0"}}})
	logs := e.logs.String()
	jti := claims(t, tok)["jti"].(string)
	if !strings.Contains(logs, `"event_type":"authority.token.issued"`) || !strings.Contains(logs, `"jti":"`+jti+`"`) {
		t.Fatal("issued token not audited with its jti")
	}
	if !strings.Contains(logs, `"event_type":"authority.token.denied"`) || !strings.Contains(logs, `"reason":"bad-secret"`) {
		t.Fatal("denied token request not audited with its reason")
	}
	if strings.Contains(logs, "curious-agent") {
		t.Fatal("the user agent reached the log sink unpseudonymized")
	}
}

// A caller's W3C trace context is continued: the request's logs and audit
// records carry its trace id.
func TestW3CTraceContextIsContinuedIntoLogs(t *testing.T) {
	e := newEnv(t, envOptions{})
	const traceID = "4bf92f3577b34da6a3ce929d0e0e4736"
	r := e.do("/token", reqOpts{basic: basic("demo-bearer"), form: url.Values{"grant_type": {"client_credentials"}},
		headers: map[string][]string{"traceparent": {"00-" + traceID + "-00f067aa0ba902b7-01"}}})
	if r.status != 200 {
		t.Fatalf("%d %s", r.status, r.raw)
	}
	n := 0
	for _, line := range strings.Split(e.logs.String(), "\n") {
		if strings.Contains(line, `"trace_id":"`+traceID+`"`) {
			n++
			if !strings.Contains(line, `"span_id":"`) {
				t.Fatalf("trace id without span id: %s", line)
			}
		}
	}
	if n < 2 { // the audit record and the request log at least
		t.Fatalf("%d log records carry the caller's trace id:\n%s", n, e.logs.String())
	}
}

// No request-controlled value becomes a label, a span name, a cache key or
// a log field: 2,000 requests with distinct invented methods, some of them
// kilobytes long, on served and unserved paths, leave the request metric
// with a handful of series (method="_OTHER"), the scrape about the size it
// was, and the request log with "_OTHER" where the method was.
func TestUnboundedLabelsInventedMethodsAreOther(t *testing.T) {
	e := newEnv(t, envOptions{})
	e.mustToken("demo-bearer")
	e.metrics() // the scrape's own series exists from here on
	before := e.metrics()
	paths := []string{"/token", "/jwks", "/no-such-endpoint", "/a/b/c?x=1"}
	for i := range 2000 {
		m := "INVENTED" + strconv.Itoa(i)
		if i%10 == 0 {
			m += strings.Repeat("X", 4096+i) // several KB
		}
		if r := e.do(paths[i%len(paths)], reqOpts{method: m}); r.status != 404 && r.status != 405 {
			t.Fatalf("method %.20s on %s: %d %s", m, paths[i%len(paths)], r.status, r.raw)
		}
	}
	// A lower-case standard method is not the standard method (RFC 9110 §9.1).
	e.do("/jwks", reqOpts{method: "get"})
	after := e.metrics()

	if strings.Contains(after, "INVENTED") || strings.Contains(after, `method="get"`) {
		t.Fatal("an invented method became a label value")
	}
	series := func(scrape string) int {
		n := 0
		for _, line := range strings.Split(scrape, "\n") {
			if strings.HasPrefix(line, "authority_http_request_duration_seconds_count{") {
				n++
			}
		}
		return n
	}
	if n, m := series(after), series(before); n > m+10 {
		t.Fatalf("authority_http_request_duration_seconds: %d series after the invented methods, %d before", n, m)
	}
	for _, want := range []string{
		`authority_http_request_duration_seconds_count{method="_OTHER",route="unmatched",status_class="4xx"} 2001`,
	} {
		if !strings.Contains(after, want) {
			t.Errorf("scrape lacks %s\n%s", want, after)
		}
	}
	if len(after) >= 2*len(before) {
		t.Fatalf("scrape grew from %d to %d bytes", len(before), len(after))
	}

	logs := e.logs.String()
	if strings.Contains(logs, "INVENTED") {
		t.Fatal("an invented method reached the log")
	}
	n := 0
	for _, line := range strings.Split(logs, "\n") {
		if strings.Contains(line, `"msg":"authority.http.request"`) && strings.Contains(line, `"method":"_OTHER"`) {
			n++
		}
	}
	if n != 2001 {
		t.Fatalf("%d request log lines with method _OTHER, want 2001", n)
	}
}

// Every error code the server answers a token request with is a label value
// of its own, not "other": telemetry.TokenErrors keeps up with host/oauth.
func TestUnboundedLabelsServerErrorCodesAreKnown(t *testing.T) {
	for _, c := range []string{oauth.CodeInvalidRequest, oauth.CodeInvalidClient, oauth.CodeInvalidGrant,
		oauth.CodeUnauthorizedClient, oauth.CodeUnsupportedGrantType, oauth.CodeInvalidScope, oauth.CodeInvalidTarget,
		oauth.CodeInvalidToken, oauth.CodeInvalidDPoPProof, oauth.CodeUseDPoPNonce, oauth.CodeServerError,
		oauth.CodeTemporarilyUnavailable, oauth.CodeUnsupportedTokenType, oauth.CodeAccessDenied} {
		if !slices.Contains(telemetry.TokenErrors, c) {
			t.Errorf("telemetry.TokenErrors lacks %q", c)
		}
	}
}
