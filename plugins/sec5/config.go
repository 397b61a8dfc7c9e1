package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"stellaops.org/authority/sdk/configdoc"
)

// What an audience rule can require of a token's binding (require).
const (
	requireDPoP = "dpop"
	requireMTLS = "mtls"
)

// The JWS algorithms a DPoP proof may use (RFC 9449 §5 refers to the JWA
// registry; "none" and MAC algorithms are never acceptable, §4.3 step 6).
var knownAlgs = []string{"ES256", "ES384", "ES512", "PS256", "PS384", "PS512", "RS256", "RS384", "RS512", "EdDSA", "Ed25519"}

// Bounds of the configuration.
const (
	maxAudiences   = 64
	maxAudienceLen = 256
	maxDrillLen    = 7 * 24 * time.Hour
	maxDrillClient = 256
	// maxBuckets keeps one alert evaluation within one counter_incr_many
	// batch: the current bucket, the others, the generation and the latch
	// (abi.MaxCounterBatch is 16).
	maxBuckets  = 12
	maxWindow   = 24 * time.Hour
	maxMismatch = 1_000_000
)

// config is a tenant's validated SEC5 configuration, parsed once per
// instance.
type config struct {
	audiences []audienceRule
	// algs is the narrower DPoP algorithm list; nil: no rule.
	algs  []string
	drill *drill
	// alerts is nil when alerts are off.
	alerts *alerts
}

// audienceRule is one entry of audiences: tokens for aud must carry the
// bindings in require; highAssurance refuses a token without cnf even
// during a bypass drill.
type audienceRule struct {
	key           string // "audiences[0]", the rule's place in the document
	aud           string
	dpop, mtls    bool
	highAssurance bool
}

// drill is the declared emergency-bypass drill: requests issued without a
// proof under security.senderConstraints.dpop.allowTemporaryBypass are
// accepted only from start (inclusive) to end (exclusive) and only for the
// listed clients.
type drill struct {
	name       string
	start, end time.Time
	clients    []string
}

func (d *drill) active(t time.Time) bool {
	return d != nil && !t.IsZero() && !t.Before(d.start) && t.Before(d.end)
}

// alerts are the in-band alert thresholds over a sliding window of
// buckets: nonce misses above nonceMissRatio of the tenant's DPoP token
// requests, more than mtlsMismatches certificate mismatches.
type alerts struct {
	window    time.Duration
	buckets   int
	width     time.Duration // window / buckets
	ratio     float64
	ratioText string // as configured, for the record
	// clearRatio is where a raised nonce-miss alert clears (re-arms): a
	// ratio hovering at the threshold does not raise one alert per
	// request.
	clearRatio  float64
	minRequests int64
	mismatches  int64
}

// document is the configuration's JSON shape; unknown keys are refused.
type document struct {
	Audiences []struct {
		Audience      *string  `json:"audience"`
		Require       []string `json:"require"`
		HighAssurance bool     `json:"highAssurance"`
	} `json:"audiences"`
	DPoP *struct {
		Algorithms []string `json:"algorithms"`
	} `json:"dpop"`
	BypassDrill *struct {
		Name    string   `json:"name"`
		Start   *string  `json:"start"`
		End     *string  `json:"end"`
		Clients []string `json:"clients"`
	} `json:"bypassDrill"`
	Alerts *alertsDocument `json:"alerts"`
}

type alertsDocument struct {
	Enabled        *bool            `json:"enabled"`
	Window         *string          `json:"window"`
	Buckets        *int             `json:"buckets"`
	NonceMissRatio *json.RawMessage `json:"nonceMissRatio"`
	ClearRatio     *json.RawMessage `json:"nonceMissClearRatio"`
	MinRequests    *int64           `json:"minRequests"`
	MTLSMismatches *int64           `json:"mtlsMismatches"`
}

var topKeys = []string{"audiences", "dpop", "bypassDrill", "alerts"}

// parseConfig validates the tenant's configuration document, reporting
// every problem with its key. An empty document is valid: alerts with the
// rollout plan's thresholds and no rules.
func parseConfig(b []byte) (*config, error) {
	if len(bytes.TrimSpace(b)) == 0 {
		b = []byte("{}")
	}
	var d document
	if err := json.Unmarshal(b, &d); err != nil {
		return nil, docError("the document must be a JSON object of " + strings.Join(topKeys, ", ") + ": " + err.Error())
	}
	e := configdoc.New("sec5")
	e.UnknownKeys(b, "", topKeys...)
	var nested map[string]json.RawMessage
	_ = json.Unmarshal(b, &nested)
	var auds []json.RawMessage
	_ = json.Unmarshal(nested["audiences"], &auds)
	for i, a := range auds {
		e.UnknownKeys(a, fmt.Sprintf("audiences[%d].", i), "audience", "require", "highAssurance")
	}
	e.UnknownKeys(nested["dpop"], "dpop.", "algorithms")
	e.UnknownKeys(nested["bypassDrill"], "bypassDrill.", "name", "start", "end", "clients")
	e.UnknownKeys(nested["alerts"], "alerts.", "enabled", "window", "buckets", "nonceMissRatio", "nonceMissClearRatio", "minRequests", "mtlsMismatches")

	c := &config{}
	if len(d.Audiences) > maxAudiences {
		e.Add("audiences", "at most %d rules, got %d", maxAudiences, len(d.Audiences))
	}
	seen := map[string]string{}
	for i, a := range d.Audiences {
		key := fmt.Sprintf("audiences[%d]", i)
		r := audienceRule{key: key, highAssurance: a.HighAssurance}
		switch {
		case a.Audience == nil:
			e.Add(key+".audience", "required")
		case !safeText(*a.Audience, maxAudienceLen):
			e.Add(key+".audience", "must be 1-%d printable ASCII characters without spaces, quotes or backslashes, got %q", maxAudienceLen, *a.Audience)
		case seen[*a.Audience] != "":
			e.Add(key+".audience", "%q is already the audience of %s", *a.Audience, seen[*a.Audience])
		default:
			r.aud = *a.Audience
			seen[r.aud] = key
		}
		for j, req := range a.Require {
			switch req {
			case requireDPoP:
				r.dpop = true
			case requireMTLS:
				r.mtls = true
			default:
				e.Add(fmt.Sprintf("%s.require[%d]", key, j), "must be %q or %q, got %q", requireDPoP, requireMTLS, req)
			}
		}
		if !r.dpop && !r.mtls && !r.highAssurance {
			e.Add(key, "requires nothing: set require ([dpop], [mtls] or both), highAssurance or both")
		}
		c.audiences = append(c.audiences, r)
	}
	if p := d.DPoP; p != nil {
		if len(p.Algorithms) == 0 {
			e.Add("dpop.algorithms", "must list at least one algorithm (omit dpop to keep the global list)")
		}
		for i, a := range p.Algorithms {
			switch {
			case !slices.Contains(knownAlgs, a):
				e.Add(fmt.Sprintf("dpop.algorithms[%d]", i), "must be one of %s, got %q", strings.Join(knownAlgs, ", "), a)
			case slices.Contains(c.algs, a):
				e.Add(fmt.Sprintf("dpop.algorithms[%d]", i), "%q twice", a)
			default:
				c.algs = append(c.algs, a)
			}
		}
	}
	if bd := d.BypassDrill; bd != nil {
		dr := &drill{name: bd.Name}
		if dr.name == "" {
			dr.name = "drill"
		} else if !safeText(dr.name, 64) {
			e.Add("bypassDrill.name", "must be 1-64 printable ASCII characters without spaces, quotes or backslashes, got %q", bd.Name)
		}
		instant := func(key string, v *string) time.Time {
			if v == nil {
				e.Add(key, "required (RFC 3339, like \"2026-12-03T14:00:00Z\")")
				return time.Time{}
			}
			t, err := time.Parse(time.RFC3339, *v)
			if err != nil {
				e.Add(key, "must be an RFC 3339 time like \"2026-12-03T14:00:00Z\", got %q", *v)
			}
			return t.UTC()
		}
		dr.start, dr.end = instant("bypassDrill.start", bd.Start), instant("bypassDrill.end", bd.End)
		if !dr.start.IsZero() && !dr.end.IsZero() {
			if !dr.end.After(dr.start) {
				e.Add("bypassDrill.end", "must be after bypassDrill.start")
			} else if dr.end.Sub(dr.start) > maxDrillLen {
				e.Add("bypassDrill.end", "a drill lasts at most %s, this one %s", maxDrillLen, dr.end.Sub(dr.start))
			}
		}
		if len(bd.Clients) == 0 {
			e.Add("bypassDrill.clients", "must list the clients of the drill (a drill for every client is not a drill)")
		}
		for i, cl := range bd.Clients {
			switch {
			case cl == "" || len(cl) > maxDrillClient:
				e.Add(fmt.Sprintf("bypassDrill.clients[%d]", i), "must be a client id of 1-%d bytes", maxDrillClient)
			case slices.Contains(dr.clients, cl):
				e.Add(fmt.Sprintf("bypassDrill.clients[%d]", i), "%q twice", cl)
			default:
				dr.clients = append(dr.clients, cl)
			}
		}
		c.drill = dr
	}
	c.alerts = parseAlerts(d.Alerts, e)
	if err := e.Err(); err != nil {
		return nil, err
	}
	return c, nil
}

// defaultClear puts the clearing ratio at 80% of the alert's.
const defaultClear = 0.8

// parseAlerts reads alerts; every key is optional and the defaults are the
// rollout plan's (page when nonce misses exceed 5% or any mTLS mismatch
// occurs over 10 minutes), over ten one-minute buckets.
func parseAlerts(a *alertsDocument, e *configdoc.Problems) *alerts {
	al := &alerts{window: 10 * time.Minute, buckets: 10, ratio: 0.05, ratioText: "0.05", minRequests: 1}
	if a == nil {
		al.width = al.window / time.Duration(al.buckets)
		al.clearRatio = al.ratio * defaultClear
		return al
	}
	if a.Enabled != nil && !*a.Enabled {
		if a.Window != nil || a.Buckets != nil || a.NonceMissRatio != nil || a.ClearRatio != nil || a.MinRequests != nil || a.MTLSMismatches != nil {
			e.Add("alerts.enabled", "is false: the other alerts keys would do nothing")
		}
		return nil
	}
	if a.Window != nil {
		d, err := time.ParseDuration(*a.Window)
		if err != nil || d < time.Minute || d > maxWindow || d%time.Second != 0 {
			e.Add("alerts.window", "must be a whole number of seconds from 1m to %s, like \"10m\", got %q", maxWindow, *a.Window)
		} else {
			al.window = d
		}
	}
	if a.Buckets != nil {
		if *a.Buckets < 1 || *a.Buckets > maxBuckets {
			e.Add("alerts.buckets", "must be from 1 to %d, got %d", maxBuckets, *a.Buckets)
		} else {
			al.buckets = *a.Buckets
		}
	}
	if al.window%(time.Duration(al.buckets)*time.Second) != 0 {
		e.Add("alerts.buckets", "must divide alerts.window (%s) into whole seconds", al.window)
	}
	al.width = al.window / time.Duration(al.buckets)
	ratio := func(key string, v *json.RawMessage) (float64, bool) {
		raw := strings.TrimSpace(string(*v))
		r, err := strconv.ParseFloat(raw, 64)
		if err != nil || r <= 0 || r >= 1 {
			e.Add(key, "must be a number between 0 and 1 (exclusive), like 0.05, got %s", raw)
			return 0, false
		}
		return r, true
	}
	if a.NonceMissRatio != nil {
		if r, ok := ratio("alerts.nonceMissRatio", a.NonceMissRatio); ok {
			al.ratio, al.ratioText = r, strconv.FormatFloat(r, 'f', -1, 64)
		}
	}
	al.clearRatio = al.ratio * defaultClear
	if a.ClearRatio != nil {
		if r, ok := ratio("alerts.nonceMissClearRatio", a.ClearRatio); ok {
			if r > al.ratio {
				e.Add("alerts.nonceMissClearRatio", "must be at most alerts.nonceMissRatio (%s), got %s", al.ratioText, strconv.FormatFloat(r, 'f', -1, 64))
			}
			al.clearRatio = r
		}
	}
	if a.MinRequests != nil {
		if *a.MinRequests < 1 || *a.MinRequests > 1<<31 {
			e.Add("alerts.minRequests", "must be from 1 to %d, got %d", int64(1)<<31, *a.MinRequests)
		} else {
			al.minRequests = *a.MinRequests
		}
	}
	if a.MTLSMismatches != nil {
		if *a.MTLSMismatches < 0 || *a.MTLSMismatches > maxMismatch {
			e.Add("alerts.mtlsMismatches", "must be from 0 to %d (an alert when the window holds more), got %d", maxMismatch, *a.MTLSMismatches)
		} else {
			al.mismatches = *a.MTLSMismatches
		}
	}
	return al
}

// safeText: 1-max bytes of %x21-7E without '"' and '\', so that the value
// can appear in an error_description (RFC 6749 §5.2) and a counter key.
func safeText(s string, max int) bool {
	if len(s) == 0 || len(s) > max {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x21 || c > 0x7e || c == '"' || c == '\\' {
			return false
		}
	}
	return true
}

// docError is the error of a document that cannot be read at all.
func docError(problem string) error {
	e := configdoc.New("sec5")
	e.Add("config", "%s", problem)
	return e.Err()
}
