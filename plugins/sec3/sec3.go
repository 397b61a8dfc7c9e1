package main

import (
	"errors"
	"strconv"
	"strings"
	"time"

	"stellaops.org/authority/abi"
	"stellaops.org/authority/sdk"
)

// hostFuncs are the host functions SEC3 uses. The wasip1 build wires them
// to the SDK (guest_wasip1.go); unit tests to fakes.
type hostFuncs struct {
	config func() []byte
	// incr is counter_incr: delta 0 reads without creating.
	incr func(key string, delta int64, window time.Duration) (int64, time.Duration, error)
	// incrMany is counter_incr_many (nil: incr one at a time).
	incrMany func(ops []sdk.CounterOp, out []sdk.CounterResult) error
	// pseudonymize is the host's keyed pseudonym (43 bytes of base64url).
	pseudonymize func(string) (string, error)
	// audit writes a record; sdk.ErrLimited means "dropped by the budget".
	audit func(*abi.Event) error
	// logError reports a configuration error once (may be nil).
	logError func(string)
}

// Error codes. RFC 6749 §5.2 defines none for throttling; both are
// registered for the token endpoint by RFC 8628 §7.2: slow_down ("the
// client should slow down") for the rate limit, access_denied for a
// lockout.
const (
	errorRateLimited = "slow_down"
	errorLockedOut   = "access_denied"
	statusLocked     = 423
	statusTooMany    = 429
)

// Key prefixes: r rate, f failures, l lockout; scope letters s, c, i.
const (
	keyRate = "r/"
)

// limiter is one instance's SEC3: the configuration, parsed at the first
// call and kept with its error.
type limiter struct {
	host   hostFuncs
	cfg    *config
	cfgErr error
	parsed bool
	// pseudonyms caches the host's pseudonyms of recent values (a client's
	// address repeats from request to request): each hit saves a host
	// call. Pseudonyms are a pure function of the tenant's key, which an
	// instance never outlives, so a cached one is never stale.
	pseudonyms map[string]string
	// ops and results are one batch's (at most three lock reads and an
	// increment).
	ops     [4]sdk.CounterOp
	results [4]sdk.CounterResult
}

// incrMany runs ops in one host call (one store round trip) and reports
// the first operation's error, if any, as the batch's; a refused batch is
// every operation's error.
func (l *limiter) incrMany(ops []sdk.CounterOp, out []sdk.CounterResult) error {
	if l.host.incrMany != nil {
		if err := l.host.incrMany(ops, out); err != nil {
			for i := range ops {
				out[i] = sdk.CounterResult{Err: err}
			}
			return err
		}
	} else {
		for i, op := range ops {
			out[i].Value, out[i].TTL, out[i].Err = l.host.incr(op.Key, op.Delta, op.Window)
		}
	}
	for _, r := range out[:len(ops)] {
		if r.Err != nil {
			return r.Err
		}
	}
	return nil
}

// maxCachedPseudonyms bounds the cache (about 100 bytes an entry): when
// full it starts afresh, which costs one host call per value again.
const maxCachedPseudonyms = 1024

// pseudonym is the host's pseudonym of the tagged value (tag "s", "c" or
// "i" keeps a subject, a client and an address of equal spelling apart).
func (l *limiter) pseudonym(tag byte, v string) (string, error) {
	k := string(tag) + "\x00" + v
	if p, ok := l.pseudonyms[k]; ok {
		return p, nil
	}
	p, err := l.host.pseudonymize(k)
	if err != nil {
		return "", err
	}
	if l.pseudonyms == nil || len(l.pseudonyms) >= maxCachedPseudonyms {
		l.pseudonyms = make(map[string]string, 64)
	}
	l.pseudonyms[k] = p
	return p, nil
}

func (l *limiter) config() (*config, error) {
	if !l.parsed {
		l.parsed = true
		l.cfg, l.cfgErr = parseConfig(l.host.config())
		if l.cfgErr != nil && l.host.logError != nil {
			l.host.logError(l.cfgErr.Error())
		}
	}
	return l.cfg, l.cfgErr
}

// errStore is a counter store failure (unavailable or over quota).
var errStore = errors.New("sec3: counter store")

// keys are a request's counter key parts: the client as is when it is
// key-safe, else its pseudonym; subject and address always pseudonyms
// (no raw personal data in a shared store, and a fixed length).
type keys struct {
	subject, client, ip string
}

// keysOf computes only the parts asked for (each pseudonym not in the
// cache is a host call on the request's path); the client is always
// needed.
func (l *limiter) keysOf(subject, client, addr string, wantSubject, wantIP bool) (keys, error) {
	var k keys
	var err error
	if wantSubject && subject != "" && subject != client {
		if k.subject, err = l.pseudonym('s', subject); err != nil {
			return k, err
		}
	}
	if client != "" {
		if keySafe(client) {
			k.client = client
		} else if k.client, err = l.pseudonym('c', client); err != nil {
			return k, err
		} else {
			k.client = "~" + k.client
		}
	}
	if wantIP && addr != "" {
		if k.ip, err = l.pseudonym('i', addr); err != nil {
			return k, err
		}
	}
	return k, nil
}

// keySafe: a client id kept as is in keys: 1-128 bytes of %x21-7E
// without "/" (the separator) and not starting with "~" (pseudonyms).
func keySafe(s string) bool {
	if len(s) == 0 || len(s) > 128 || s[0] == '~' {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x21 || c > 0x7e || c == '/' {
			return false
		}
	}
	return true
}

func (k keys) of(scope string) string {
	switch scope {
	case scopeSubject:
		return k.subject
	case scopeClient:
		return k.client
	}
	return k.ip
}

func lockKey(scope, v string) string    { return "l/" + scope[:1] + "/" + v }
func failureKey(scope, v string) string { return "f/" + scope[:1] + "/" + v }

// seconds is d rounded up to whole seconds, at least 1 and at most
// abi.MaxRetryAfter.
func seconds(d time.Duration) int {
	s := int((d + time.Second - 1) / time.Second)
	return max(1, min(s, abi.MaxRetryAfter))
}

var (
	annotationsLimited = []abi.KV{{Key: "limit", Value: "client-ip"}}
	annotationsStore   = []abi.KV{{Key: "store", Value: "unavailable"}}
	lockAnnotations    = map[string][]abi.KV{
		scopeSubject: {{Key: "lockout", Value: scopeSubject}},
		scopeClient:  {{Key: "lockout", Value: scopeClient}},
		scopeIP:      {{Key: "lockout", Value: scopeIP}},
	}
)

// decide is the token hook: a lockout of the request's subject, client
// or address answers 423; then the request counts against its client and
// address's window, and the permitLimit+1st of a window answers 429.
func (l *limiter) decide(in *abi.DecisionInput) abi.Decision {
	cfg, err := l.config()
	if err != nil {
		return abi.Denied(503, abi.ErrorTemporarilyUnavailable, "the rate-limit plugin is misconfigured")
	}
	if in.Endpoint != abi.HookToken {
		return abi.Allowed()
	}
	k, err := l.keysOf(in.Subject, in.Client, in.RemoteAddr, cfg.lockout.counts(scopeSubject), cfg.rate != nil || cfg.lockout.counts(scopeIP))
	if err != nil {
		return l.storeFailure(cfg)
	}
	// One batch: the lock reads of the request's keys, then its increment
	// of the rate window (a locked request counts against its window too:
	// it is refused either way, and one round trip is worth more).
	ops := l.ops[:0]
	var scopes [3]string
	if lc := cfg.lockout; lc != nil {
		for _, scope := range lc.by {
			if v := k.of(scope); v != "" {
				scopes[len(ops)] = scope
				ops = append(ops, sdk.CounterOp{Key: lockKey(scope, v)})
			}
		}
	}
	locks := len(ops)
	rc := cfg.rate
	if rc != nil && k.client != "" {
		ops = append(ops, sdk.CounterOp{Key: keyRate + k.client + "/" + k.ip, Delta: 1, Window: rc.window})
	}
	if len(ops) == 0 {
		return abi.Allowed()
	}
	res := l.results[:len(ops)]
	if err := l.incrMany(ops, res); err != nil {
		return l.storeFailure(cfg)
	}
	for i, r := range res[:locks] {
		if r.Value > 0 {
			d := abi.Denied(statusLocked, errorLockedOut, "too many failed attempts for this "+scopeWord(scopes[i])+"; retry after the lockout")
			d.RetryAfter = seconds(r.TTL)
			d.Annotations = lockAnnotations[scopes[i]]
			return d
		}
	}
	if len(res) > locks {
		if r := res[locks]; r.Value > rc.permitLimit {
			d := abi.Denied(statusTooMany, errorRateLimited, "rate limit of "+strconv.FormatInt(rc.permitLimit, 10)+" token requests per "+rc.window.String()+" exceeded")
			d.RetryAfter = seconds(r.TTL)
			d.Annotations = annotationsLimited
			return d
		}
	}
	return abi.Allowed()
}

func scopeWord(scope string) string {
	if scope == scopeIP {
		return "address"
	}
	return scope
}

func (l *limiter) storeFailure(cfg *config) abi.Decision {
	if cfg.admitOnStoreFailure {
		return abi.Decision{Allow: true, Annotations: annotationsStore}
	}
	d := abi.Denied(503, abi.ErrorTemporarilyUnavailable, "rate-limit counters are unavailable")
	d.RetryAfter = 1
	return d
}

// countedReason reports whether a token.denied reason is a failure that
// counts towards a lockout: a credential that did not verify (client
// secret, certificate, password, user), a DPoP proof that did not verify,
// or a refresh token presented with another key or certificate or again
// after its rotation. Not counted: refusals a correct client also meets
// (a missing or stale DPoP nonce, which RFC 9449 §8 makes part of the
// normal flow, a missing proof, scopes, audiences, grants), store and
// plugin failures, and dpop-replay (its authority.dpop.proof.replay event
// counts it, once).
func countedReason(r string) bool {
	switch r {
	case "bad-secret", "unknown-client", "method-not-registered", "malformed-basic",
		"bad-password", "unknown-user", "user-disabled",
		"refresh-dpop-key-mismatch", "refresh-certificate-mismatch", "refresh-reused":
		return true
	case "dpop-missing", "dpop-replay", "dpop-state-lost", "mtls-disabled", "mtls-required":
		return false
	}
	if strings.HasPrefix(r, "dpop-nonce") {
		return false
	}
	return strings.HasPrefix(r, "dpop-") || strings.HasPrefix(r, "mtls-")
}

// counts reports whether ev is one failure to count.
func counts(ev *abi.Event) bool {
	switch ev.Type {
	case abi.EventTokenDenied:
		return ev.Outcome == abi.OutcomeFailure && countedReason(ev.Reason)
	case abi.EventDPoPReplay, abi.EventMTLSBindingMismatch:
		return true
	}
	return false
}

// event is the events hook: a counted failure adds one to the failure
// window of its subject, client and address; the maxFailures-th within a
// window locks that key for lockoutDuration, and the call that created
// the lock (counter value 1: exactly one, on any node) records it.
func (l *limiter) event(ev *abi.Event) error {
	cfg, err := l.config()
	if err != nil {
		return err
	}
	lc := cfg.lockout
	if lc == nil || !counts(ev) {
		return nil
	}
	k, err := l.keysOf(ev.Subject, ev.Client, ev.RemoteAddr, lc.counts(scopeSubject), lc.counts(scopeIP))
	if err != nil {
		return err
	}
	// Two batches at most: the failure counts of the event's keys, then
	// the locks of those that reached maxFailures.
	ops := l.ops[:0]
	var scopes, values [3]string
	for _, scope := range lc.by {
		if v := k.of(scope); v != "" {
			scopes[len(ops)], values[len(ops)] = scope, v
			ops = append(ops, sdk.CounterOp{Key: failureKey(scope, v), Delta: 1, Window: lc.window})
		}
	}
	if len(ops) == 0 {
		return nil
	}
	res := l.results[:len(ops)]
	_ = l.incrMany(ops, res) // errors are per operation, below
	var errs []error
	var failures [3]int64
	var lockScopes [3]string
	var lockOps [3]sdk.CounterOp
	locks := lockOps[:0]
	for i, r := range res {
		if r.Err != nil {
			errs = append(errs, r.Err)
			continue
		}
		if r.Value >= lc.maxFailures {
			lockScopes[len(locks)], failures[len(locks)] = scopes[i], r.Value
			locks = append(locks, sdk.CounterOp{Key: lockKey(scopes[i], values[i]), Delta: 1, Window: lc.duration})
		}
	}
	if len(locks) > 0 {
		var lockRes [3]sdk.CounterResult
		_ = l.incrMany(locks, lockRes[:len(locks)])
		for i, r := range lockRes[:len(locks)] {
			if r.Err != nil {
				errs = append(errs, r.Err)
				continue
			}
			if r.Value == 1 {
				l.recordLockout(ev, lockScopes[i], failures[i], lc.duration)
			}
		}
	}
	return errors.Join(errs...)
}

// recordLockout writes the lockout's audit record (outcome locked_out).
// The host pseudonymizes subject and address; a record dropped by the
// audit budget (sdk.ErrLimited) does not undo the lockout.
func (l *limiter) recordLockout(ev *abi.Event, scope string, failures int64, d time.Duration) {
	rec := abi.Event{Type: "authority.lockout." + scope, CorrelationID: ev.CorrelationID, Outcome: abi.OutcomeLockedOut,
		Reason: "too-many-failures", Subject: ev.Subject, Client: ev.Client, RemoteAddr: ev.RemoteAddr,
		Attributes: []abi.KV{{Key: "sec3.failures", Value: strconv.FormatInt(failures, 10)},
			{Key: "sec3.lockout_seconds", Value: strconv.Itoa(int(d / time.Second))},
			{Key: "sec3.trigger", Value: ev.Reason}}}
	if rec.Attributes[2].Value == "" {
		rec.Attributes[2].Value = ev.Type
	}
	if err := l.host.audit(&rec); err != nil && !errors.Is(err, sdk.ErrLimited) && l.host.logError != nil {
		l.host.logError("sec3: lockout record not written: " + err.Error())
	}
}
