package main

import (
	"encoding/json"
	"errors"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"stellaops.org/authority/abi"
	"stellaops.org/authority/sdk"
)

// fakeHost stands in for the host functions in native unit tests: its
// pseudonym of v is "p(v)", so tests can see what was hashed.
type fakeHost struct {
	cfg         string
	pseudoErr   error
	auditErr    error
	records     []abi.Event
	logs        []string
	pseudoCalls int
	auditCalls  int
}

func (f *fakeHost) recorder() *recorder {
	return &recorder{host: hostFuncs{
		config: func() []byte {
			if f.cfg == "" {
				return nil
			}
			return []byte(f.cfg)
		},
		pseudonymize: func(v string) (string, error) {
			f.pseudoCalls++
			if f.pseudoErr != nil {
				return "", f.pseudoErr
			}
			return "p(" + v + ")", nil
		},
		audit: func(ev *abi.Event) error {
			f.auditCalls++
			if f.auditErr != nil {
				return f.auditErr
			}
			if err := abi.ValidateEvent(ev); err != nil {
				return sdk.ErrInvalid // what the host answers
			}
			// The recorder reuses its buffers: keep a deep copy, as the
			// host does by encoding the record.
			var cp abi.Event
			if err := abi.DecodeEvent(abi.AppendEvent(nil, ev), &cp); err != nil {
				panic(err)
			}
			f.records = append(f.records, cp)
			return nil
		},
		logError: func(msg string) { f.logs = append(f.logs, msg) },
	}}
}

var testTime = time.Date(2025, 11, 7, 12, 0, 0, 123456789, time.UTC)

// fullEvent is an authority.token.issued event as the host sends it, with
// every field set.
func fullEvent() abi.Event {
	return abi.Event{
		Type: abi.EventTokenIssued, Time: testTime, CorrelationID: "01HZX3J9Q5T8", Tenant: "tenant-a",
		Outcome: abi.OutcomeSuccess, Reason: "", Subject: "user-42", Client: "svc-billing",
		Scopes:     []string{"billing.write", "billing.read", "openid"},
		RemoteAddr: "203.0.113.7", UserAgent: "curl/8.5.0", SenderConstraint: abi.ConstraintDPoPMTLS,
		DPoP: abi.DPoP{Present: true, Valid: true, Result: abi.DPoPOK, JKT: "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I", Alg: "ES256"},
		MTLS: abi.MTLS{Present: true, Thumbprint: "A4DtL2JmUMhAsvJj5tKyn64SqzmuXbMrJa0n761y5v0", Result: abi.MTLSOK},
		Attributes: []abi.KV{
			{Key: "jti", Value: "tok-1"},
			{Key: "annotation.sec5.rule", Value: "hi-assurance"},
			{Key: "annotation.sec3.window", Value: "1m"},
		},
	}
}

func handleOne(t *testing.T, f *fakeHost, ev abi.Event) abi.Event {
	t.Helper()
	r := f.recorder()
	if err := r.handle(&ev); err != nil {
		t.Fatal(err)
	}
	if len(f.records) != 1 {
		t.Fatalf("%d records, want 1", len(f.records))
	}
	return f.records[0]
}

func TestRecordDefaults(t *testing.T) {
	f := &fakeHost{}
	in := fullEvent()
	got := handleOne(t, f, in)
	want := abi.Event{
		Type: abi.EventTokenIssued, Time: testTime, CorrelationID: "01HZX3J9Q5T8", Tenant: "tenant-a",
		Outcome: "success", Subject: "p(user-42)", Client: "svc-billing",
		Scopes:     []string{"billing.read", "billing.write", "openid"},
		RemoteAddr: "p(203.0.113.7)", UserAgent: "p(curl/8.5.0)", SenderConstraint: "dpop+mtls",
		DPoP: in.DPoP, MTLS: in.MTLS,
		Attributes: in.Attributes,
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got  %+v\nwant %+v", got, want)
	}
	if !reflect.DeepEqual(in.Scopes, []string{"billing.write", "billing.read", "openid"}) {
		t.Fatalf("input scopes modified: %v", in.Scopes)
	}
	if f.pseudoCalls != 3 {
		t.Fatalf("pseudonymize called %d times, want 3 (subject, address, user agent)", f.pseudoCalls)
	}
}

func TestRecordModes(t *testing.T) {
	cases := []struct {
		name, cfg           string
		addr                string
		wantAddr, wantUA    string
		wantClient, wantSub string
	}{
		{"truncate v4", `{"network": "truncate"}`, "203.0.113.77", "203.0.113.0/24", "p(curl/8.5.0)", "svc-billing", "p(user-42)"},
		{"truncate v4 /16", `{"network": "truncate", "ipv4Prefix": 16}`, "203.0.113.77", "203.0.0.0/16", "p(curl/8.5.0)", "svc-billing", "p(user-42)"},
		{"truncate v6", `{"network": "truncate"}`, "2001:db8:1:2::5", "2001:db8:1::/48", "p(curl/8.5.0)", "svc-billing", "p(user-42)"},
		{"truncate v6 /32", `{"network": "truncate", "ipv6Prefix": 32}`, "2001:db8:1:2::5", "2001:db8::/32", "p(curl/8.5.0)", "svc-billing", "p(user-42)"},
		{"truncate unparsable is hashed", `{"network": "truncate"}`, "proxy.internal", "p(proxy.internal)", "p(curl/8.5.0)", "svc-billing", "p(user-42)"},
		{"hash", `{"network": "hash"}`, "203.0.113.77", "p(203.0.113.77)", "p(curl/8.5.0)", "svc-billing", "p(user-42)"},
		{"omit", `{"network": "omit", "userAgent": "omit"}`, "203.0.113.77", "", "", "svc-billing", "p(user-42)"},
		{"client hash", `{"client": "hash"}`, "203.0.113.77", "p(203.0.113.77)", "p(curl/8.5.0)", "p(svc-billing)", "p(user-42)"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			in := fullEvent()
			in.RemoteAddr = c.addr
			got := handleOne(t, &fakeHost{cfg: c.cfg}, in)
			if got.RemoteAddr != c.wantAddr || got.UserAgent != c.wantUA || got.Client != c.wantClient || got.Subject != c.wantSub {
				t.Fatalf("remoteAddr %q userAgent %q client %q subject %q; want %q %q %q %q",
					got.RemoteAddr, got.UserAgent, got.Client, got.Subject, c.wantAddr, c.wantUA, c.wantClient, c.wantSub)
			}
		})
	}
}

// TestRecordEmptyFields: empty personal data stays empty and is not hashed.
func TestRecordEmptyFields(t *testing.T) {
	f := &fakeHost{cfg: `{"client": "hash"}`}
	got := handleOne(t, f, abi.Event{Type: abi.EventDPoPBypass, Outcome: "success"})
	if got.Subject != "" || got.Client != "" || got.RemoteAddr != "" || got.UserAgent != "" || got.Scopes != nil || got.Attributes != nil {
		t.Fatalf("%+v", got)
	}
	if f.pseudoCalls != 0 {
		t.Fatalf("pseudonymize called %d times for empty values", f.pseudoCalls)
	}
	if !got.Time.IsZero() {
		t.Fatalf("time %v: an unset time must stay unset", got.Time)
	}
}

func TestRecordAttributes(t *testing.T) {
	in := fullEvent()
	in.Attributes = append(in.Attributes,
		abi.KV{Key: "htu", Value: "https://authority.example/token?secret=1"}, // unknown to SEC2: never copied
		abi.KV{Key: "property.regulation", Value: "forged"},                   // only the tenant's config sets properties
		abi.KV{Key: "annotationx", Value: "no"},
	)
	props := `"properties": {"regulation": "gdpr", "data-owner": "iam"}`
	t.Run("kept", func(t *testing.T) {
		got := handleOne(t, &fakeHost{cfg: `{` + props + `}`}, in)
		want := []abi.KV{
			{Key: "jti", Value: "tok-1"},
			{Key: "annotation.sec5.rule", Value: "hi-assurance"},
			{Key: "annotation.sec3.window", Value: "1m"},
			{Key: "property.data-owner", Value: "iam"},
			{Key: "property.regulation", Value: "gdpr"},
		}
		if !reflect.DeepEqual(got.Attributes, want) {
			t.Fatalf("got %+v\nwant %+v", got.Attributes, want)
		}
	})
	t.Run("annotations dropped", func(t *testing.T) {
		got := handleOne(t, &fakeHost{cfg: `{"includeAnnotations": false, ` + props + `}`}, in)
		want := []abi.KV{{Key: "jti", Value: "tok-1"}, {Key: "property.data-owner", Value: "iam"}, {Key: "property.regulation", Value: "gdpr"}}
		if !reflect.DeepEqual(got.Attributes, want) {
			t.Fatalf("got %+v\nwant %+v", got.Attributes, want)
		}
	})
}

// TestRecordWithinLimits: whatever the host sends, the record passes
// abi.ValidateEvent (the fake refuses it otherwise) and says what was
// left out.
func TestRecordWithinLimits(t *testing.T) {
	in := fullEvent()
	in.CorrelationID = strings.Repeat("c", 2000)
	in.UserAgent = strings.Repeat("u", 5000) // beyond pseudonymize's 4 KiB input
	in.Scopes = nil
	for i := 0; i < 70; i++ {
		in.Scopes = append(in.Scopes, "s"+strconv.Itoa(100+i))
	}
	in.Scopes = append(in.Scopes, "bad scope", "", `q"`)
	in.Attributes = []abi.KV{{Key: "jti", Value: "tok-1"}, {Key: "annotation.x.bad", Value: "tab\there"}}
	for i := 0; i < 40; i++ {
		in.Attributes = append(in.Attributes, abi.KV{Key: "annotation.p.k" + strconv.Itoa(i), Value: "v"})
	}
	f := &fakeHost{cfg: `{"properties": {"regulation": "gdpr"}}`}
	got := handleOne(t, f, in)
	if len(got.CorrelationID) != abi.MaxEventFieldLen {
		t.Errorf("correlationId length %d", len(got.CorrelationID))
	}
	if got.UserAgent != "" {
		t.Errorf("oversized user agent recorded as %q", got.UserAgent[:20])
	}
	if len(got.Scopes) != abi.MaxEventScopes || !slices.IsSorted(got.Scopes) || got.Scopes[0] != "s100" {
		t.Errorf("scopes %v", got.Scopes)
	}
	if len(got.Attributes) != abi.MaxEventAttributes {
		t.Fatalf("%d attributes", len(got.Attributes))
	}
	if got.Attributes[0] != (abi.KV{Key: "jti", Value: "tok-1"}) {
		t.Errorf("jti not first: %+v", got.Attributes[0])
	}
	if got.Attributes[30] != (abi.KV{Key: "property.regulation", Value: "gdpr"}) {
		t.Errorf("property not kept: %+v", got.Attributes[30])
	}
	// 1 invalid annotation + 40 - 29 that did not fit (32 - jti - property - marker).
	wantMarker := abi.KV{Key: "sec2.incomplete", Value: "correlationId:truncated userAgent:unhashable scopes:dropped=9 attributes:dropped=12"}
	if got.Attributes[31] != wantMarker {
		t.Errorf("marker %+v, want %+v", got.Attributes[31], wantMarker)
	}
	// The next, ordinary event carries no stale marker.
	f.records = nil
	got = handleOne(t, f, fullEvent())
	for _, kv := range got.Attributes {
		if kv.Key == markerKey {
			t.Fatalf("stale marker %+v", kv)
		}
	}
}

func TestMarkerValue(t *testing.T) {
	if v := markerValue([]string{"a:truncated", "b:unhashable"}); v != "a:truncated b:unhashable" {
		t.Fatal(v)
	}
	var notes []string
	for i := 0; i < 40; i++ {
		notes = append(notes, "field"+strconv.Itoa(i)+":truncated")
	}
	v := markerValue(notes)
	if len(v) > abi.MaxValueLen || !strings.HasSuffix(v, "truncated ...") {
		t.Fatalf("%d %q", len(v), v)
	}
}

func TestRecordNotSelected(t *testing.T) {
	f := &fakeHost{cfg: `{"events": ["authority.dpop.*"], "outcomes": ["failure"]}`}
	r := f.recorder()
	for _, ev := range []abi.Event{
		{Type: abi.EventTokenIssued, Outcome: "success", Subject: "u"},
		{Type: abi.EventTokenDenied, Outcome: "failure", Subject: "u"},
		{Type: abi.EventDPoPBypass, Outcome: "success", Subject: "u"},
	} {
		if err := r.handle(&ev); err != nil {
			t.Fatal(err)
		}
	}
	if len(f.records) != 0 || f.pseudoCalls != 0 {
		t.Fatalf("%d records, %d pseudonyms for unselected events", len(f.records), f.pseudoCalls)
	}
	ev := abi.Event{Type: abi.EventDPoPReplay, Outcome: "failure", Subject: "u"}
	if err := r.handle(&ev); err != nil || len(f.records) != 1 {
		t.Fatalf("selected event: %v, %d records", err, len(f.records))
	}
}

// TestRecordBadConfig: a bad configuration fails every event, is logged
// once, and nothing is recorded or hashed.
func TestRecordBadConfig(t *testing.T) {
	f := &fakeHost{cfg: `{"network": "mask"}`}
	r := f.recorder()
	for i := 0; i < 3; i++ {
		ev := fullEvent()
		err := r.handle(&ev)
		var ce *configError
		if !errors.As(err, &ce) {
			t.Fatalf("event %d: %v", i, err)
		}
	}
	if len(f.records) != 0 || f.pseudoCalls != 0 || f.auditCalls != 0 {
		t.Fatalf("bad config recorded %d, hashed %d", len(f.records), f.pseudoCalls)
	}
	if len(f.logs) != 1 || !strings.Contains(f.logs[0], `network: must be "hash", "truncate" or "omit"`) {
		t.Fatalf("logs %q", f.logs)
	}
}

func TestRecordHostFailures(t *testing.T) {
	t.Run("budget", func(t *testing.T) {
		f := &fakeHost{auditErr: sdk.ErrLimited}
		ev := fullEvent()
		if err := f.recorder().handle(&ev); err != nil {
			t.Fatalf("HostLimited must be carried on from: %v", err)
		}
	})
	for _, err := range []error{sdk.ErrUnavailable, sdk.ErrInvalid} {
		t.Run("audit "+err.Error(), func(t *testing.T) {
			f := &fakeHost{auditErr: err}
			ev := fullEvent()
			if got := f.recorder().handle(&ev); !errors.Is(got, err) {
				t.Fatalf("got %v", got)
			}
		})
		t.Run("pseudonymize "+err.Error(), func(t *testing.T) {
			f := &fakeHost{pseudoErr: err}
			ev := fullEvent()
			if got := f.recorder().handle(&ev); !errors.Is(got, err) || !strings.Contains(got.Error(), "record dropped") {
				t.Fatalf("got %v", got)
			}
			if f.auditCalls != 0 {
				t.Fatal("a record was written without its pseudonyms")
			}
		})
	}
}

func TestRecordBadType(t *testing.T) {
	f := &fakeHost{}
	for _, typ := range []string{"", "token.issued", "authority.Token", "authority."} {
		ev := abi.Event{Type: typ, Subject: "u"}
		if err := f.recorder().handle(&ev); !errors.Is(err, errEventType) {
			t.Errorf("%q: %v", typ, err)
		}
	}
	if f.auditCalls != 0 {
		t.Fatal("recorded")
	}
}

// TestRecordNoRawValues: the raw subject, address and user agent appear
// nowhere in the record, in any mode.
func TestRecordNoRawValues(t *testing.T) {
	for _, cfg := range []string{`{}`, `{"network": "truncate", "client": "hash"}`, `{"network": "omit", "userAgent": "omit"}`} {
		in := fullEvent()
		in.Subject, in.RemoteAddr, in.UserAgent, in.Client = "subject-zq81", "198.51.100.203", "agent-zq81", "client-zq81"
		f := &fakeHost{cfg: cfg}
		f.recorder().handle(&in)
		// The fake's pseudonym embeds its input: strip it, leaving what
		// SEC2 itself copied.
		b, _ := json.Marshal(f.records)
		s := strings.NewReplacer("p(subject-zq81)", "", "p(198.51.100.203)", "", "p(agent-zq81)", "", "p(client-zq81)", "").Replace(string(b))
		for _, raw := range []string{"subject-zq81", "198.51.100.203", "agent-zq81"} {
			if strings.Contains(s, raw) {
				t.Errorf("%s: raw %q in %s", cfg, raw, s)
			}
		}
		if strings.Contains(cfg, `"client": "hash"`) && strings.Contains(s, "client-zq81") {
			t.Errorf("%s: raw client in %s", cfg, s)
		}
	}
}
