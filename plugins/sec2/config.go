package main

import (
	"encoding/json"
	"slices"
	"strconv"
	"strings"

	"stellaops.org/authority/abi"
)

// Network modes (configuration key "network").
const (
	networkHash     = "hash"
	networkTruncate = "truncate"
	networkOmit     = "omit"
)

// User agent modes ("userAgent") and client modes ("client").
const (
	modeHash = "hash"
	modeOmit = "omit"
	modeRaw  = "raw"
)

// Defaults and bounds of the configuration.
const (
	defaultIPv4Prefix = 24
	minIPv4Prefix     = 8
	maxIPv4Prefix     = 24
	defaultIPv6Prefix = 48
	minIPv6Prefix     = 16
	maxIPv6Prefix     = 64
	// maxProperties leaves at least 15 of abi.MaxEventAttributes for the
	// event's own attributes (jti, annotations) and SEC2's marker.
	maxProperties = 16
	// propertyPrefix is prepended to every property key; the result must
	// be an attribute key ([a-z0-9_.-]{1,64}).
	propertyPrefix = "property."
)

// Keys of the configuration document, in the order errors are reported.
var configKeys = []string{"events", "outcomes", "network", "ipv4Prefix", "ipv6Prefix", "userAgent", "client", "includeAnnotations", "properties"}

// config is a tenant's validated SEC2 configuration. Built once per
// instance (parseConfig) and read-only afterwards.
type config struct {
	// events selects the event types recorded; nil selects every type.
	events []selector
	// outcomes restricts the outcomes recorded; nil records every outcome.
	outcomes []string
	// network is networkHash, networkTruncate or networkOmit.
	network string
	// ipv4Bits and ipv6Bits are the truncation prefix lengths.
	ipv4Bits, ipv6Bits int
	// omitUserAgent drops the user agent instead of hashing it.
	omitUserAgent bool
	// hashClient pseudonymizes the client id instead of keeping it.
	hashClient bool
	// annotations keeps the event's annotation.* attributes.
	annotations bool
	// properties are the tenant's static attributes, keys already
	// prefixed with "property." and sorted.
	properties []abi.KV
}

// selector is one entry of "events": an exact type, or a prefix.
type selector struct {
	value  string
	prefix bool
}

func (s selector) matches(typ string) bool {
	if s.prefix {
		return strings.HasPrefix(typ, s.value)
	}
	return typ == s.value
}

// defaultConfig is the configuration of an empty document.
func defaultConfig() *config {
	return &config{network: networkHash, ipv4Bits: defaultIPv4Prefix, ipv6Bits: defaultIPv6Prefix, annotations: true}
}

// selects reports whether c records an event of type typ with outcome.
func (c *config) selects(typ, outcome string) bool {
	if c.outcomes != nil && !slices.Contains(c.outcomes, outcome) {
		return false
	}
	if c.events == nil {
		return true
	}
	for _, s := range c.events {
		if s.matches(typ) {
			return true
		}
	}
	return false
}

// configError collects every problem of a configuration document, each
// naming its key.
type configError struct{ problems []string }

func (e *configError) Error() string {
	return "sec2: invalid configuration: " + strings.Join(e.problems, "; ")
}

func (e *configError) add(key, problem string) {
	e.problems = append(e.problems, key+": "+problem)
}

// parseConfig validates the tenant's configuration document (the JSON the
// config host function returns; empty or null for none). It refuses
// unknown keys, values of the wrong type and values out of range, naming
// each offending key; it never returns a partial configuration.
func parseConfig(doc []byte) (*config, error) {
	c := defaultConfig()
	if len(doc) == 0 {
		return c, nil
	}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(doc, &raw); err != nil {
		return nil, &configError{[]string{"the document must be a JSON object: " + err.Error()}}
	}
	e := &configError{}
	var unknown []string
	for k := range raw {
		if !slices.Contains(configKeys, k) {
			unknown = append(unknown, k)
		}
	}
	slices.Sort(unknown)
	for _, k := range unknown {
		e.add(k, "unknown key (known: "+strings.Join(configKeys, ", ")+")")
	}
	for _, key := range configKeys {
		v, ok := raw[key]
		if !ok {
			continue
		}
		if isNull(v) {
			e.add(key, "must not be null (omit the key for its default)")
			continue
		}
		switch key {
		case "events":
			c.events = parseEvents(e, v)
		case "outcomes":
			c.outcomes = parseOutcomes(e, v)
		case "network":
			if s, ok := stringValue(e, key, v); ok {
				switch s {
				case networkHash, networkTruncate, networkOmit:
					c.network = s
				default:
					e.add(key, `must be "hash", "truncate" or "omit", got `+strconv.Quote(s))
				}
			}
		case "ipv4Prefix":
			c.ipv4Bits = intValue(e, key, v, minIPv4Prefix, maxIPv4Prefix)
		case "ipv6Prefix":
			c.ipv6Bits = intValue(e, key, v, minIPv6Prefix, maxIPv6Prefix)
		case "userAgent":
			if s, ok := stringValue(e, key, v); ok {
				switch s {
				case modeHash, modeOmit:
					c.omitUserAgent = s == modeOmit
				default:
					e.add(key, `must be "hash" or "omit", got `+strconv.Quote(s))
				}
			}
		case "client":
			if s, ok := stringValue(e, key, v); ok {
				switch s {
				case modeRaw, modeHash:
					c.hashClient = s == modeHash
				default:
					e.add(key, `must be "raw" or "hash", got `+strconv.Quote(s))
				}
			}
		case "includeAnnotations":
			if err := json.Unmarshal(v, &c.annotations); err != nil {
				e.add(key, "must be true or false")
			}
		case "properties":
			c.properties = parseProperties(e, v)
		}
	}
	if len(e.problems) > 0 {
		return nil, e
	}
	return c, nil
}

func isNull(v json.RawMessage) bool { return string(v) == "null" }

func stringValue(e *configError, key string, v json.RawMessage) (string, bool) {
	var s string
	if err := json.Unmarshal(v, &s); err != nil {
		e.add(key, "must be a string")
		return "", false
	}
	return s, true
}

// intValue decodes an integer in [min, max]; on error it records the
// problem and returns 0 (the configuration is refused anyway).
func intValue(e *configError, key string, v json.RawMessage, min, max int) int {
	bounds := "must be an integer from " + strconv.Itoa(min) + " to " + strconv.Itoa(max)
	var n int
	if err := json.Unmarshal(v, &n); err != nil {
		e.add(key, bounds+", got "+string(v))
		return 0
	}
	if n < min || n > max {
		e.add(key, bounds+", got "+strconv.Itoa(n))
	}
	return n
}

// stringList decodes a non-empty list of strings (a null element is an
// error, not an empty string).
func stringList(e *configError, key string, v json.RawMessage) ([]string, bool) {
	var elems []json.RawMessage
	if err := json.Unmarshal(v, &elems); err != nil {
		e.add(key, "must be a list of strings")
		return nil, false
	}
	if len(elems) == 0 {
		e.add(key, "must not be empty (omit the key to select everything)")
		return nil, false
	}
	out := make([]string, 0, len(elems))
	ok := true
	for i, el := range elems {
		var s string
		if isNull(el) || json.Unmarshal(el, &s) != nil {
			e.add(key+"["+strconv.Itoa(i)+"]", "must be a string")
			ok = false
			continue
		}
		out = append(out, s)
	}
	return out, ok
}

// parseEvents decodes "events": exact types ("authority.token.issued"),
// prefixes ending in "." ("authority.dpop.") or "*" ("authority.dpop.*"
// is the prefix "authority.dpop."), and "*" for every type.
func parseEvents(e *configError, v json.RawMessage) []selector {
	list, ok := stringList(e, "events", v)
	if !ok {
		return nil
	}
	out := make([]selector, 0, len(list))
	for i, s := range list {
		sel, problem := parseSelector(s)
		if problem != "" {
			e.add("events["+strconv.Itoa(i)+"]", problem+", got "+strconv.Quote(s))
			continue
		}
		out = append(out, sel)
	}
	return out
}

func parseSelector(s string) (selector, string) {
	const shape = `must be an event type "authority.<surface>.<action>", a prefix ending in "." or "*", or "*"`
	if s == "*" {
		return selector{prefix: true}, ""
	}
	if len(s) > abi.MaxEventTypeLen || !strings.HasPrefix(s, "authority.") {
		return selector{}, shape
	}
	if p, ok := strings.CutSuffix(s, "*"); ok {
		if !abi.KeyChars(p) {
			return selector{}, shape
		}
		return selector{value: p, prefix: true}, ""
	}
	if !abi.KeyChars(s) {
		return selector{}, shape
	}
	if strings.HasSuffix(s, ".") {
		return selector{value: s, prefix: true}, ""
	}
	if !validType(s) {
		return selector{}, shape
	}
	return selector{value: s}, ""
}

func parseOutcomes(e *configError, v json.RawMessage) []string {
	list, ok := stringList(e, "outcomes", v)
	if !ok {
		return nil
	}
	for i, s := range list {
		if !slices.Contains(abi.Outcomes, s) {
			e.add("outcomes["+strconv.Itoa(i)+"]", "must be one of "+strings.Join(abi.Outcomes, ", ")+", got "+strconv.Quote(s))
		}
	}
	return list
}

// parseProperties decodes "properties", a map of static attributes: each
// key k becomes the attribute "property.<k>", so k is 1-55 characters of
// [a-z0-9_.-]; each value a string of at most abi.MaxValueLen printable
// ASCII characters. The result is sorted by key.
func parseProperties(e *configError, v json.RawMessage) []abi.KV {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(v, &m); err != nil {
		e.add("properties", "must be a map of strings")
		return nil
	}
	if len(m) > maxProperties {
		e.add("properties", "at most "+strconv.Itoa(maxProperties)+" entries, got "+strconv.Itoa(len(m)))
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	out := make([]abi.KV, 0, len(keys))
	maxKey := abi.MaxKeyLen - len(propertyPrefix)
	for _, k := range keys {
		name := "properties." + k
		if k == "" || len(k) > maxKey || !abi.KeyChars(k) {
			e.add(strconv.Quote(name), "key must be 1-"+strconv.Itoa(maxKey)+" characters of [a-z0-9_.-]")
			continue
		}
		var s string
		if isNull(m[k]) || json.Unmarshal(m[k], &s) != nil {
			e.add(name, "must be a string")
			continue
		}
		if len(s) > abi.MaxValueLen || !abi.Printable(s) {
			e.add(name, "must be at most "+strconv.Itoa(abi.MaxValueLen)+" printable ASCII characters")
			continue
		}
		out = append(out, abi.KV{Key: propertyPrefix + k, Value: s})
	}
	return out
}

// validType reports whether typ is an event type audit_emit accepts
// (abi.ValidateEvent): "authority." and then [a-z0-9_.-], at most
// abi.MaxEventTypeLen bytes.
func validType(typ string) bool {
	return len(typ) > len("authority.") && len(typ) <= abi.MaxEventTypeLen &&
		strings.HasPrefix(typ, "authority.") && abi.KeyChars(typ)
}
