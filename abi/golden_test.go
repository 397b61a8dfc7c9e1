package abi

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite testdata/vectors.json from the cases in golden_test.go")

// vectorFile is the layout of testdata/vectors.json, documented in SPEC.md.
type vectorFile struct {
	ABIVersion int      `json:"abiVersion"`
	Note       string   `json:"note"`
	Vectors    []vector `json:"vectors"`
}

type vector struct {
	Name string `json:"name"`
	// Kind is "decisionInput", "decision" or "event".
	Kind string `json:"kind"`
	Hex  string `json:"hex"`
	// Value is the decoded message (absent when Error is set).
	Value json.RawMessage `json:"value,omitempty"`
	// Error is the decoding error class: truncated, malformed, kind, version, trailing.
	Error string `json:"error,omitempty"`
	// Valid (decisions only) is whether Decision.Validate accepts the value.
	Valid *bool `json:"valid,omitempty"`
}

var errorNames = map[string]error{
	"truncated": ErrTruncated, "malformed": ErrMalformed, "kind": ErrKind,
	"version": ErrVersion, "trailing": ErrTrailing,
}

func sampleInput() DecisionInput {
	return DecisionInput{
		Endpoint: HookToken, Tenant: "tenant-a", CorrelationID: "01HZX3J9Q5T8",
		Time:   time.Date(2025, 11, 7, 12, 0, 0, 123456789, time.UTC),
		Client: "svc-billing", ClientAuthMethod: "private_key_jwt", Grant: "client_credentials",
		Subject: "user-42", Scopes: []string{"billing.read", "billing.write"},
		Audiences:  []string{"https://api.example.com"},
		RemoteAddr: "203.0.113.7", UserAgent: "curl/8.5.0", SenderConstraint: "dpop",
		DPoP:       DPoP{Present: true, Valid: true, Result: "ok", JKT: "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I", Alg: "ES256", NonceStatus: "valid"},
		MTLS:       MTLS{Present: false},
		Attributes: []KV{{Key: "node", Value: "n1"}},
	}
}

func sampleEvent() Event {
	return Event{
		Type: "authority.token.denied", Time: time.Date(2025, 11, 7, 12, 0, 1, 0, time.UTC),
		CorrelationID: "01HZX3J9Q5T8", Tenant: "tenant-a", Outcome: "rate_limited", Reason: "permit_limit",
		Subject: "user-42", Client: "svc-billing", Scopes: []string{"billing.read"},
		RemoteAddr: "203.0.113.7", UserAgent: "curl/8.5.0", SenderConstraint: "mtls",
		MTLS: MTLS{Present: true, Thumbprint: "A4DtL2JmUMhAsvJj5tKyn64SqzmuXbMrJa0n761y5v0", Result: "thumbprint-mismatch"},
	}
}

func tb(v bool) *bool { return &v }

// goldenCases builds the vectors; -update writes them, the test reads them back.
func goldenCases(t *testing.T) []vector {
	enc := func(name, kind string, b []byte, v any, valid *bool) vector {
		raw, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		return vector{Name: name, Kind: kind, Hex: hex.EncodeToString(b), Value: raw, Valid: valid}
	}
	bad := func(name, kind, hexs, class string) vector {
		return vector{Name: name, Kind: kind, Hex: hexs, Error: class}
	}
	in := sampleInput()
	var empty DecisionInput
	allow := Allowed()
	allowAnn := Decision{Allow: true, Annotations: []KV{{Key: "sec5.rule", Value: "high-assurance-ok"}}}
	deny429 := Decision{Status: 429, Error: "rate_limited", Description: "too many requests for client", RetryAfter: 30}
	deny423 := Decision{Status: 423, Error: "account_locked", Description: "locked after 5 failures", RetryAfter: 900,
		Annotations: []KV{{Key: "sec3.failures", Value: "5"}}}
	badStatus := Decision{Status: 200, Error: "ok"}
	allowStatus := Decision{Allow: true, Status: 401}
	denyNoErr := Decision{Status: 403}
	ev := sampleEvent()
	return []vector{
		enc("decision-input/full", "decisionInput", AppendDecisionInput(nil, &in), in, nil),
		enc("decision-input/empty", "decisionInput", AppendDecisionInput(nil, &empty), empty, nil),
		enc("decision/allow", "decision", AppendDecision(nil, &allow), allow, tb(true)),
		enc("decision/allow-annotated", "decision", AppendDecision(nil, &allowAnn), allowAnn, tb(true)),
		enc("decision/deny-429-retry-after", "decision", AppendDecision(nil, &deny429), deny429, tb(true)),
		enc("decision/deny-423-lockout", "decision", AppendDecision(nil, &deny423), deny423, tb(true)),
		enc("decision/deny-status-200-invalid", "decision", AppendDecision(nil, &badStatus), badStatus, tb(false)),
		enc("decision/allow-with-status-invalid", "decision", AppendDecision(nil, &allowStatus), allowStatus, tb(false)),
		enc("decision/deny-without-error-invalid", "decision", AppendDecision(nil, &denyNoErr), denyNoErr, tb(false)),
		enc("event/rate-limited", "event", AppendEvent(nil, &ev), ev, nil),
		bad("decision/empty-input", "decision", "", "truncated"),
		bad("decision/wrong-kind", "decision", "0101010000000000", "kind"),
		bad("decision/version-2", "decision", "0202010000000000", "version"),
		bad("decision/bool-2", "decision", "0201020000000000", "malformed"),
		bad("decision/non-minimal-varint", "decision", "020101800000000000", "malformed"),
		bad("decision/status-too-large", "decision", "02010180800400000000", "malformed"),
		bad("decision/string-past-end", "decision", "02010000ff01", "truncated"),
		bad("decision/annotation-count-huge", "decision", "020101000000008080808010", "truncated"),
		bad("decision/trailing-byte", "decision", "020101000000000000", "trailing"),
		bad("decision/varint-overflow", "decision", "02010100000000ffffffffffffffffffff01", "malformed"),
		bad("decision-input/truncated", "decisionInput", "0101057465", "truncated"),
		bad("event/wrong-kind", "event", "0201", "kind"),
	}
}

func TestGoldenVectors(t *testing.T) {
	path := filepath.Join("testdata", "vectors.json")
	if *update {
		f := vectorFile{ABIVersion: Version, Note: "Authority plugin ABI golden vectors; see abi/SPEC.md §8", Vectors: goldenCases(t)}
		b, err := json.MarshalIndent(f, "", "  ")
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var f vectorFile
	if err := json.Unmarshal(raw, &f); err != nil {
		t.Fatal(err)
	}
	if f.ABIVersion != Version || len(f.Vectors) == 0 {
		t.Fatalf("vectors file: abiVersion %d, %d vectors", f.ABIVersion, len(f.Vectors))
	}
	for _, v := range f.Vectors {
		t.Run(v.Name, func(t *testing.T) {
			b, err := hex.DecodeString(v.Hex)
			if err != nil {
				t.Fatal(err)
			}
			var got any
			var reenc []byte
			var validErr error
			switch v.Kind {
			case "decisionInput":
				var x DecisionInput
				err = DecodeDecisionInput(b, &x)
				got, reenc = x, AppendDecisionInput(nil, &x)
			case "decision":
				var x Decision
				err = DecodeDecision(b, &x)
				got, reenc = x, AppendDecision(nil, &x)
				validErr = x.Validate()
			case "event":
				var x Event
				err = DecodeEvent(b, &x)
				got, reenc = x, AppendEvent(nil, &x)
			default:
				t.Fatalf("unknown kind %q", v.Kind)
			}
			if v.Error != "" {
				want := errorNames[v.Error]
				if want == nil || !errors.Is(err, want) {
					t.Fatalf("decode error = %v, want class %q", err, v.Error)
				}
				var de *DecodeError
				if !errors.As(err, &de) {
					t.Fatalf("error %T is not a *DecodeError", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("decode: %v", err)
			}
			gotJSON, _ := json.Marshal(got)
			var a, w any
			_ = json.Unmarshal(gotJSON, &a)
			_ = json.Unmarshal(v.Value, &w)
			aj, _ := json.Marshal(a)
			wj, _ := json.Marshal(w)
			if !bytes.Equal(aj, wj) {
				t.Fatalf("decoded value\n got %s\nwant %s", aj, wj)
			}
			if !bytes.Equal(reenc, b) {
				t.Fatalf("re-encoding differs\n got %x\nwant %x", reenc, b)
			}
			if v.Valid != nil && (*v.Valid) != (validErr == nil) {
				t.Fatalf("Validate() = %v, want valid=%v", validErr, *v.Valid)
			}
		})
	}
}

// TestMinimalAllowBytes pins the smallest message by hand, independently of
// the encoder, so a codec change cannot silently rewrite the vectors.
func TestMinimalAllowBytes(t *testing.T) {
	d := Allowed()
	if got := hex.EncodeToString(AppendDecision(nil, &d)); got != "0201010000000000" {
		t.Fatalf("allow = %s", got)
	}
	var x Decision
	if err := DecodeDecision([]byte{2, 1, 0, 0x93, 3, 1, 'x', 0, 0, 0}, &x); err != nil || x.Status != 403 || x.Error != "x" || x.Allow {
		t.Fatalf("deny 403 decode = %+v, %v", x, err)
	}
}

func TestDecodeDoesNotAliasInput(t *testing.T) {
	in := sampleInput()
	b := AppendDecisionInput(nil, &in)
	var out DecisionInput
	if err := DecodeDecisionInput(b, &out); err != nil {
		t.Fatal(err)
	}
	for i := range b {
		b[i] = 'X'
	}
	if out.Tenant != "tenant-a" || out.Scopes[1] != "billing.write" {
		t.Fatalf("decoded strings changed with the input buffer: %+v", out)
	}
}

func TestValidateDecision(t *testing.T) {
	long := string(bytes.Repeat([]byte("a"), 300))
	cases := []struct {
		name  string
		d     Decision
		field string
	}{
		{"allow", Allowed(), ""},
		{"deny 401", Denied(401, "invalid_token", "sender mismatch"), ""},
		{"deny 503", Denied(503, "temporarily_unavailable", ""), ""},
		{"deny 302", Denied(302, "x", ""), "status"},
		{"deny 500", Denied(500, "server_error", ""), "status"},
		{"error with space", Denied(400, "bad error", ""), "error"},
		{"error with quote", Denied(400, `a"b`, ""), "error"},
		{"description newline", Denied(400, "x", "a\nb"), "description"},
		{"description too long", Denied(400, "x", long), "description"},
		{"retry negative", Decision{Status: 429, Error: "x", RetryAfter: -1}, "retryAfter"},
		{"retry too large", Decision{Status: 429, Error: "x", RetryAfter: MaxRetryAfter + 1}, "retryAfter"},
		{"annotation key upper", Decision{Allow: true, Annotations: []KV{{Key: "A", Value: ""}}}, "annotations.key"},
		{"annotation value ctl", Decision{Allow: true, Annotations: []KV{{Key: "a", Value: "\x00"}}}, "annotations.value"},
		{"too many annotations", Decision{Allow: true, Annotations: make([]KV, MaxAnnotations+1)}, "annotations"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := c.d.Validate()
			if c.field == "" {
				if err != nil {
					t.Fatalf("unexpected error %v", err)
				}
				return
			}
			var ve *ValidationError
			if !errors.As(err, &ve) || ve.Field != c.field {
				t.Fatalf("error = %v, want field %q", err, c.field)
			}
		})
	}
}

func TestValidateEvent(t *testing.T) {
	ev := sampleEvent()
	if err := ValidateEvent(&ev); err != nil {
		t.Fatal(err)
	}
	for _, typ := range []string{"", "authority.", "token.issued", "authority.Token", "authority.token issued"} {
		ev.Type = typ
		if err := ValidateEvent(&ev); err == nil {
			t.Errorf("type %q accepted", typ)
		}
	}
}

// TestValidateEventScopes: every scope of an emitted event is an RFC 6749
// §3.3 scope-token (NQCHAR = %x21 / %x23-5B / %x5D-7E) of 1-256 bytes.
func TestValidateEventScopes(t *testing.T) {
	ok := []string{"read", "a", "urn:x-y:z/1", "!#$%&'()*+,-./:;<=>?@[]^_`{|}~", strings.Repeat("s", MaxEventScopeLen)}
	for _, sc := range ok {
		ev := sampleEvent()
		ev.Scopes = []string{sc}
		if err := ValidateEvent(&ev); err != nil {
			t.Errorf("scope %q refused: %v", sc, err)
		}
	}
	bad := []string{"", "two words", `quote"`, `back\slash`, "tab\t", "nl\n", "\x00", "caf\u00e9", "\x7f", strings.Repeat("s", MaxEventScopeLen+1)}
	for _, sc := range bad {
		ev := sampleEvent()
		ev.Scopes = []string{"read", sc}
		var ve *ValidationError
		if err := ValidateEvent(&ev); !errors.As(err, &ve) || ve.Field != "scopes" {
			t.Errorf("scope %q: %v, want a scopes error", sc, err)
		}
	}
}

// TestFastPathMatches checks the view decoders (fast path and fallback)
// against the copying decoders on the vectors and on inputs that force the
// fallback (long strings) and reuse (decoding into a used struct).
func TestFastPathMatches(t *testing.T) {
	long := strings.Repeat("u", 300)
	inputs := []DecisionInput{sampleInput(), {}, {UserAgent: long, Scopes: []string{long, "b"}}, {Attributes: []KV{{Key: "k", Value: long}}}}
	var v DecisionInput
	for i, in := range inputs {
		b := AppendDecisionInput(nil, &in)
		if err := DecodeDecisionInputView(b, &v); err != nil {
			t.Fatalf("%d: %v", i, err)
		}
		if got := AppendDecisionInput(nil, &v); !bytes.Equal(got, b) {
			t.Fatalf("%d: view round trip\n got %x\nwant %x", i, got, b)
		}
		if !fastDecisionInput(string(b), new(DecisionInput)) && i < 2 {
			t.Fatalf("%d: fast path refused a common input", i)
		}
	}
	evs := []Event{sampleEvent(), {}, {Reason: long}}
	var ve Event
	for i, e := range evs {
		b := AppendEvent(nil, &e)
		if err := DecodeEventView(b, &ve); err != nil {
			t.Fatalf("event %d: %v", i, err)
		}
		if got := AppendEvent(nil, &ve); !bytes.Equal(got, b) {
			t.Fatalf("event %d: view round trip", i)
		}
	}
}
