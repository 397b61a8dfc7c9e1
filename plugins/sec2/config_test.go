package main

import (
	"fmt"
	"reflect"
	"strings"
	"testing"

	"stellaops.org/authority/abi"
)

func TestParseConfigDefaults(t *testing.T) {
	for _, doc := range []string{"", "{}", "null"} {
		c, err := parseConfig([]byte(doc))
		if err != nil {
			t.Fatalf("%q: %v", doc, err)
		}
		want := &config{network: "hash", ipv4Bits: 24, ipv6Bits: 48, annotations: true}
		if !reflect.DeepEqual(c, want) {
			t.Fatalf("%q: got %+v, want %+v", doc, c, want)
		}
	}
}

func TestParseConfigFull(t *testing.T) {
	doc := `{"events": ["authority.token.issued", "authority.dpop.*", "authority.mtls."],
		"outcomes": ["success", "failure"], "network": "truncate", "ipv4Prefix": 16, "ipv6Prefix": 56,
		"userAgent": "omit", "client": "hash", "includeAnnotations": false,
		"properties": {"regulation": "gdpr", "data-owner": "team.iam", "a_b.c-d": ""}}`
	c, err := parseConfig([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	want := &config{
		events:   []selector{{value: "authority.token.issued"}, {value: "authority.dpop.", prefix: true}, {value: "authority.mtls.", prefix: true}},
		outcomes: []string{"success", "failure"},
		network:  "truncate", ipv4Bits: 16, ipv6Bits: 56, omitUserAgent: true, hashClient: true, annotations: false,
		properties: []abi.KV{{Key: "property.a_b.c-d", Value: ""}, {Key: "property.data-owner", Value: "team.iam"}, {Key: "property.regulation", Value: "gdpr"}},
	}
	if !reflect.DeepEqual(c, want) {
		t.Fatalf("got  %+v\nwant %+v", c, want)
	}
	// The explicit defaults parse to the defaults.
	c, err = parseConfig([]byte(`{"network": "hash", "userAgent": "hash", "client": "raw", "includeAnnotations": true, "ipv4Prefix": 24, "ipv6Prefix": 48}`))
	if err != nil || !reflect.DeepEqual(c, defaultConfig()) {
		t.Fatalf("explicit defaults: %+v %v", c, err)
	}
}

// TestParseConfigRejects: every bad document is refused with an error
// naming the key, never accepted with a default in its place.
func TestParseConfigRejects(t *testing.T) {
	long := strings.Repeat("x", 56)
	many := map[string]string{}
	for i := 0; i < 17; i++ {
		many[fmt.Sprintf("k%d", i)] = "v"
	}
	manyJSON := "{"
	for k, v := range many {
		manyJSON += fmt.Sprintf("%q: %q,", k, v)
	}
	manyJSON = strings.TrimSuffix(manyJSON, ",") + "}"
	cases := []struct{ doc, want string }{
		{`[]`, "JSON object"},
		{`"hash"`, "JSON object"},
		{`{"netwrok": "hash"}`, "netwrok: unknown key"},
		{`{"Network": "hash"}`, "Network: unknown key"},
		{`{"network": "mask"}`, `network: must be "hash", "truncate" or "omit", got "mask"`},
		{`{"network": ""}`, `network: must be`},
		{`{"network": 1}`, "network: must be a string"},
		{`{"network": null}`, "network: must not be null"},
		{`{"ipv4Prefix": 7}`, "ipv4Prefix: must be an integer from 8 to 24, got 7"},
		{`{"ipv4Prefix": 25}`, "ipv4Prefix: must be an integer from 8 to 24, got 25"},
		{`{"ipv4Prefix": 24.5}`, "ipv4Prefix: must be an integer from 8 to 24, got 24.5"},
		{`{"ipv4Prefix": "24"}`, "ipv4Prefix: must be an integer"},
		{`{"ipv6Prefix": 15}`, "ipv6Prefix: must be an integer from 16 to 64, got 15"},
		{`{"ipv6Prefix": 65}`, "ipv6Prefix: must be an integer from 16 to 64"},
		{`{"ipv6Prefix": -48}`, "ipv6Prefix: must be an integer"},
		{`{"userAgent": "raw"}`, `userAgent: must be "hash" or "omit", got "raw"`},
		{`{"userAgent": true}`, "userAgent: must be a string"},
		{`{"client": "omit"}`, `client: must be "raw" or "hash", got "omit"`},
		{`{"includeAnnotations": "no"}`, "includeAnnotations: must be true or false"},
		{`{"includeAnnotations": 0}`, "includeAnnotations: must be true or false"},
		{`{"events": "authority.token.issued"}`, "events: must be a list of strings"},
		{`{"events": []}`, "events: must not be empty"},
		{`{"events": [null]}`, "events[0]: must be a string"},
		{`{"events": [1]}`, "events[0]: must be a string"},
		{`{"events": ["authority.token.issued", "token.issued"]}`, `events[1]: must be an event type`},
		{`{"events": ["authority.Token.issued"]}`, `events[0]: must be an event type`},
		{`{"events": ["authority.*.issued"]}`, `events[0]: must be an event type`},
		{`{"events": ["authority"]}`, `events[0]: must be an event type`},
		{`{"events": [""]}`, `events[0]: must be an event type`},
		{`{"events": ["**"]}`, `events[0]: must be an event type`},
		{`{"events": ["authority.` + strings.Repeat("a", 120) + `"]}`, `events[0]: must be an event type`},
		{`{"outcomes": ["denied"]}`, `outcomes[0]: must be one of success, failure, locked_out, rate_limited, error, got "denied"`},
		{`{"outcomes": []}`, "outcomes: must not be empty"},
		{`{"outcomes": "failure"}`, "outcomes: must be a list of strings"},
		{`{"properties": ["gdpr"]}`, "properties: must be a map of strings"},
		{`{"properties": {"Regulation": "gdpr"}}`, `"properties.Regulation": key must be 1-55 characters of [a-z0-9_.-]`},
		{`{"properties": {"a b": "x"}}`, `"properties.a b": key must be`},
		{`{"properties": {"": "x"}}`, `"properties.": key must be`},
		{`{"properties": {"` + long + `": "x"}}`, "key must be 1-55 characters"},
		{`{"properties": {"regulation": 1}}`, "properties.regulation: must be a string"},
		{`{"properties": {"regulation": null}}`, "properties.regulation: must be a string"},
		{`{"properties": {"regulation": "gdpr\n"}}`, "properties.regulation: must be at most 256 printable ASCII characters"},
		{`{"properties": {"regulation": "dsgvo-\u00e4"}}`, "properties.regulation: must be at most 256 printable ASCII"},
		{`{"properties": {"regulation": "` + strings.Repeat("g", 257) + `"}}`, "properties.regulation: must be at most 256"},
		{`{"properties": ` + manyJSON + `}`, "properties: at most 16 entries, got 17"},
	}
	for _, c := range cases {
		cfg, err := parseConfig([]byte(c.doc))
		if err == nil {
			t.Errorf("%s: accepted as %+v", c.doc, cfg)
			continue
		}
		if cfg != nil {
			t.Errorf("%s: returned a configuration with the error", c.doc)
		}
		if !strings.Contains(err.Error(), c.want) || !strings.HasPrefix(err.Error(), "sec2: invalid configuration: ") {
			t.Errorf("%s:\n got %q\nwant it to contain %q", c.doc, err, c.want)
		}
	}
}

// TestParseConfigReportsEveryProblem: one error names every bad key.
func TestParseConfigReportsEveryProblem(t *testing.T) {
	_, err := parseConfig([]byte(`{"network": "mask", "ipv4Prefix": 40, "zzz": 1, "aaa": 2, "properties": {"X": "y"}}`))
	if err == nil {
		t.Fatal("accepted")
	}
	msg := err.Error()
	var last int
	for _, want := range []string{"aaa: unknown key", "zzz: unknown key", "network:", "ipv4Prefix:", `"properties.X"`} {
		i := strings.Index(msg, want)
		if i < 0 || i < last {
			t.Fatalf("%q missing or out of order in %q", want, msg)
		}
		last = i
	}
}

func TestSelects(t *testing.T) {
	parse := func(doc string) *config {
		t.Helper()
		c, err := parseConfig([]byte(doc))
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	cases := []struct {
		doc, typ, outcome string
		want              bool
	}{
		{`{}`, "authority.token.issued", "success", true},
		{`{}`, "authority.lockout.subject", "locked_out", true},
		{`{"events": ["*"]}`, "authority.anything.new", "", true},
		{`{"events": ["authority.*"]}`, "authority.token.denied", "failure", true},
		{`{"events": ["authority.token.issued"]}`, "authority.token.issued", "success", true},
		{`{"events": ["authority.token.issued"]}`, "authority.token.issued.more", "success", false},
		{`{"events": ["authority.token.issued"]}`, "authority.token.denied", "failure", false},
		{`{"events": ["authority.dpop.*"]}`, "authority.dpop.proof.replay", "failure", true},
		{`{"events": ["authority.dpop.*"]}`, "authority.dpop.nonce.miss", "failure", true},
		{`{"events": ["authority.dpop."]}`, "authority.dpop.proof.bypass", "success", true},
		{`{"events": ["authority.dpop.*"]}`, "authority.dpopx.proof", "failure", false},
		{`{"events": ["authority.dpop*"]}`, "authority.dpopx.proof", "failure", true},
		{`{"events": ["authority.dpop.*"]}`, "authority.mtls.binding.mismatch", "failure", false},
		{`{"events": ["authority.dpop.*", "authority.mtls.binding.mismatch"]}`, "authority.mtls.binding.mismatch", "failure", true},
		{`{"outcomes": ["failure"]}`, "authority.token.denied", "failure", true},
		{`{"outcomes": ["failure"]}`, "authority.token.issued", "success", false},
		{`{"outcomes": ["failure"]}`, "authority.token.denied", "", false},
		{`{"events": ["authority.token."], "outcomes": ["failure", "rate_limited"]}`, "authority.token.denied", "rate_limited", true},
		{`{"events": ["authority.token."], "outcomes": ["failure", "rate_limited"]}`, "authority.dpop.proof.replay", "failure", false},
	}
	for _, c := range cases {
		if got := parse(c.doc).selects(c.typ, c.outcome); got != c.want {
			t.Errorf("%s selects(%q, %q) = %v, want %v", c.doc, c.typ, c.outcome, got, c.want)
		}
	}
}

func TestValidType(t *testing.T) {
	for typ, want := range map[string]bool{
		"authority.token.issued":                  true,
		"authority.x":                             true,
		"authority.":                              false,
		"authority":                               false,
		"other.token.issued":                      false,
		"authority.Token":                         false,
		"authority.token issued":                  false,
		"authority." + strings.Repeat("a", 118):   true,
		"authority." + strings.Repeat("a", 119):   false,
		"authority.token.issued\x00":              false,
		"authority.dpop.proof.replay":             true,
		"authority.mtls.binding.mismatch":         true,
		"authority.dpop.nonce.miss":               true,
		"authority.sec3.lockout.subject_exceeded": true,
	} {
		if validType(typ) != want {
			t.Errorf("validType(%q) = %v", typ, !want)
		}
	}
}
