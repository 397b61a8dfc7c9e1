package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"stellaops.org/authority/sdk/configdoc"
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
		return nil, docError("the document is empty: set token, lockout or both")
	}
	if err := json.Unmarshal(b, &d); err != nil {
		return nil, docError("the document must be a JSON object of token, lockout and onStoreUnavailable: " + err.Error())
	}
	e := configdoc.New("sec3")
	// Unknown keys, at both levels (json.Decoder's DisallowUnknownFields
	// would link os.File.Read, and with it a WASI import the host refuses).
	e.UnknownKeys(b, "", "token", "lockout", "onStoreUnavailable")
	var nested map[string]json.RawMessage
	_ = json.Unmarshal(b, &nested)
	e.UnknownKeys(nested["token"], "token.", "permitLimit", "window")
	e.UnknownKeys(nested["lockout"], "lockout.", "maxFailures", "window", "lockoutDuration", "by")
	c := &config{}
	duration := func(key string, v *string, lo, hi time.Duration) time.Duration {
		if v == nil {
			e.Add(key, "required")
			return 0
		}
		dd, err := time.ParseDuration(*v)
		if err != nil || dd < lo || dd > hi || dd%time.Second != 0 {
			e.Add(key, "must be a whole number of seconds from %s to %s, like \"1m\", got %q", lo, hi, *v)
			return 0
		}
		return dd
	}
	count := func(key string, v *int64) int64 {
		if v == nil {
			e.Add(key, "required")
			return 0
		}
		if *v < 1 || *v > maxCount {
			e.Add(key, "must be from 1 to %d, got %d", maxCount, *v)
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
			e.Add("lockout.by", "must name at least one of %s, %s, %s", scopeSubject, scopeClient, scopeIP)
		}
		for i, s := range l.By {
			switch {
			case s != scopeSubject && s != scopeClient && s != scopeIP:
				e.Add(fmt.Sprintf("lockout.by[%d]", i), "must be %s, %s or %s, got %q", scopeSubject, scopeClient, scopeIP, s)
			case slices.Contains(c.lockout.by, s):
				e.Add(fmt.Sprintf("lockout.by[%d]", i), "%q twice", s)
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
			e.Add("onStoreUnavailable", "must be %q or %q, got %q", storeRefuse, storeAdmit, *d.OnStoreUnavailable)
		}
	}
	if c.rate == nil && c.lockout == nil {
		e.Add("token", "set token, lockout or both: this configuration enforces nothing")
	}
	if err := e.Err(); err != nil {
		return nil, err
	}
	return c, nil
}

// docError is the error of a document that cannot be read at all.
func docError(problem string) error {
	e := configdoc.New("sec3")
	e.Add("config", "%s", problem)
	return e.Err()
}
