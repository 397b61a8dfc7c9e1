package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"
)

// Lockout scopes (configuration key lockout.by, and the suffix of the
// lockout audit event's type).
const (
	scopeSubject = "subject"
	scopeClient  = "client"
	scopeIP      = "ip"
)

// Store failure modes (onStoreUnavailable).
const (
	storeRefuse = "refuse"
	storeAdmit  = "admit"
)

// Bounds of the configuration. A window is a counter window, at most the
// host's 7 days (abi/SPEC.md §5 counter_incr); a lockout's Retry-After is
// at most abi.MaxRetryAfter (one day).
const (
	maxWindow   = 7 * 24 * time.Hour
	maxLockout  = 24 * time.Hour
	maxCount    = 1_000_000_000
	minDuration = time.Second
)

// config is a tenant's validated SEC3 configuration, parsed once per
// instance.
type config struct {
	// rate is the permit limit per client and address; nil: none.
	rate *rateConfig
	// lockout is the failure lockout; nil: none.
	lockout *lockoutConfig
	// admitOnStoreFailure admits a request when the counters cannot be
	// read or created (onStoreUnavailable admit); the default refuses.
	admitOnStoreFailure bool
}

type rateConfig struct {
	permitLimit int64
	window      time.Duration
}

type lockoutConfig struct {
	maxFailures int64
	window      time.Duration
	duration    time.Duration
	// by holds the scopes counted, in the order they are checked.
	by []string
}

// counts reports whether lockouts count (and check) scope; false for no
// lockout at all.
func (c *lockoutConfig) counts(scope string) bool {
	return c != nil && slices.Contains(c.by, scope)
}

// configError lists every problem of a document, each naming its key.
type configError struct{ problems []string }

func (e *configError) Error() string {
	return "sec3: invalid configuration: " + strings.Join(e.problems, "; ")
}

func (e *configError) add(key, format string, args ...any) {
	e.problems = append(e.problems, key+": "+fmt.Sprintf(format, args...))
}

// document is the configuration's JSON shape; unknown keys are refused.
type document struct {
	Token *struct {
		PermitLimit *int64  `json:"permitLimit"`
		Window      *string `json:"window"`
	} `json:"token"`
	Lockout *struct {
		MaxFailures     *int64   `json:"maxFailures"`
		Window          *string  `json:"window"`
		LockoutDuration *string  `json:"lockoutDuration"`
		By              []string `json:"by"`
	} `json:"lockout"`
	OnStoreUnavailable *string `json:"onStoreUnavailable"`
}

// parseConfig validates the tenant's configuration document. Every key is
// checked and every problem reported; a document that enforces nothing
// (neither token nor lockout) is refused, since installing SEC3 that way
// can only be a mistake.
func parseConfig(b []byte) (*config, error) {
	var d document
	if len(bytes.TrimSpace(b)) == 0 {
		return nil, &configError{[]string{"the document is empty: set token, lockout or both"}}
	}
	if err := json.Unmarshal(b, &d); err != nil {
		return nil, &configError{[]string{"the document must be a JSON object of token, lockout and onStoreUnavailable: " + err.Error()}}
	}
	e := &configError{}
	// Unknown keys, at both levels (json.Decoder's DisallowUnknownFields
	// would link os.File.Read, and with it a WASI import the host refuses).
	unknownKeys(b, "", []string{"token", "lockout", "onStoreUnavailable"}, e)
	var nested map[string]json.RawMessage
	_ = json.Unmarshal(b, &nested)
	unknownKeys(nested["token"], "token.", []string{"permitLimit", "window"}, e)
	unknownKeys(nested["lockout"], "lockout.", []string{"maxFailures", "window", "lockoutDuration", "by"}, e)
	c := &config{}
	duration := func(key string, v *string, lo, hi time.Duration) time.Duration {
		if v == nil {
			e.add(key, "required")
			return 0
		}
		dd, err := time.ParseDuration(*v)
		if err != nil || dd < lo || dd > hi || dd%time.Second != 0 {
			e.add(key, "must be a whole number of seconds from %s to %s, like \"1m\", got %q", lo, hi, *v)
			return 0
		}
		return dd
	}
	count := func(key string, v *int64) int64 {
		if v == nil {
			e.add(key, "required")
			return 0
		}
		if *v < 1 || *v > maxCount {
			e.add(key, "must be from 1 to %d, got %d", maxCount, *v)
		}
		return *v
	}
	if t := d.Token; t != nil {
		c.rate = &rateConfig{permitLimit: count("token.permitLimit", t.PermitLimit), window: duration("token.window", t.Window, minDuration, maxWindow)}
	}
	if l := d.Lockout; l != nil {
		c.lockout = &lockoutConfig{maxFailures: count("lockout.maxFailures", l.MaxFailures),
			window:   duration("lockout.window", l.Window, minDuration, maxWindow),
			duration: duration("lockout.lockoutDuration", l.LockoutDuration, minDuration, maxLockout)}
		if l.By == nil {
			c.lockout.by = []string{scopeSubject, scopeClient, scopeIP}
		} else if len(l.By) == 0 {
			e.add("lockout.by", "must name at least one of %s, %s, %s", scopeSubject, scopeClient, scopeIP)
		}
		for i, s := range l.By {
			switch {
			case s != scopeSubject && s != scopeClient && s != scopeIP:
				e.add(fmt.Sprintf("lockout.by[%d]", i), "must be %s, %s or %s, got %q", scopeSubject, scopeClient, scopeIP, s)
			case slices.Contains(c.lockout.by, s):
				e.add(fmt.Sprintf("lockout.by[%d]", i), "%q twice", s)
			default:
				c.lockout.by = append(c.lockout.by, s)
			}
		}
	}
	if d.OnStoreUnavailable != nil {
		switch *d.OnStoreUnavailable {
		case storeRefuse:
		case storeAdmit:
			c.admitOnStoreFailure = true
		default:
			e.add("onStoreUnavailable", "must be %q or %q, got %q", storeRefuse, storeAdmit, *d.OnStoreUnavailable)
		}
	}
	if c.rate == nil && c.lockout == nil {
		e.add("token", "set token, lockout or both: this configuration enforces nothing")
	}
	if len(e.problems) > 0 {
		return nil, e
	}
	return c, nil
}

// unknownKeys adds a problem for every key of the JSON object b (if it is
// one) that is not in known.
func unknownKeys(b []byte, prefix string, known []string, e *configError) {
	var m map[string]json.RawMessage
	if json.Unmarshal(b, &m) != nil {
		return
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		if !slices.Contains(known, k) {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	for _, k := range keys {
		e.add(prefix+k, "unknown key (known: %s)", strings.Join(known, ", "))
	}
}
