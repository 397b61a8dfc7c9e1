package app_test

import (
	"net/url"
	"strings"
	"testing"
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
		`authority_tokens_denied_total{authority_dpop_result="none",error="invalid_client",grant_type="client_credentials",tenant="unknown"} 1`,
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
