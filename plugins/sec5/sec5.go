package main

import (
	"errors"
	"slices"
	"strconv"
	"time"

	"stellaops.org/authority/abi"
	"stellaops.org/authority/sdk"
)

// hostFuncs are the host functions SEC5 uses. The wasip1 build wires them
// to the SDK (guest_wasip1.go); unit tests to fakes.
type hostFuncs struct {
	config func() []byte
	// now is the host clock (the clock grant).
	now func() time.Time
	// incrMany is counter_incr_many.
	incrMany func(ops []sdk.CounterOp, out []sdk.CounterResult) error
	// audit writes a record; sdk.ErrLimited means "dropped by the budget".
	audit func(*abi.Event) error
	// logError reports a problem the operator must see (may be nil).
	logError func(string)
}

// Rule names: the stable names a refusal gives in its error_description,
// in the annotation "rule" of the token.denied record, and as the reason
// of SEC5's own records.
const (
	ruleRequireDPoP   = "require-dpop"
	ruleRequireMTLS   = "require-mtls"
	ruleHighAssurance = "unbound-high-assurance"
	ruleDPoPAlg       = "dpop-alg"
	ruleBypass        = "bypass-outside-drill"
)

// Error codes of a refusal. At token, RFC 6749 §5.2's invalid_request (a
// binding the request lacks) or RFC 9449 §5's invalid_dpop_proof (the
// proof is missing or unacceptable); at introspect and fresh-auth, which
// answer for a token already issued, 403 access_denied.
const (
	errorInvalidRequest = "invalid_request"
	errorInvalidProof   = "invalid_dpop_proof"
	errorAccessDenied   = "access_denied"
)

// Record types SEC5 writes with audit_emit.
const (
	// eventRefused: a refusal at introspect or fresh-auth (which have no
	// host record per request), and every bypass refused outside a drill.
	eventRefused = "authority.security.refused"
	// eventAlert: an in-band alert, once per crossing of a threshold.
	eventAlert = "authority.security.alert"
)

// Alert reasons (the alert record's reason).
const (
	alertNonceMiss = "dpop-nonce-miss-ratio"
	alertMismatch  = "mtls-mismatch"
)

// policy is one instance's SEC5: the configuration, parsed at the first
// call and kept with its error, and the alert windows' per-instance
// caches.
type policy struct {
	host   hostFuncs
	cfg    *config
	cfgErr error
	parsed bool
	nonce  window // DPoP token requests and their nonce misses
	mtls   window // certificate mismatches
	ops    [abi.MaxCounterBatch]sdk.CounterOp
	res    [abi.MaxCounterBatch]sdk.CounterResult
}

func (p *policy) config() (*config, error) {
	if !p.parsed {
		p.parsed = true
		p.cfg, p.cfgErr = parseConfig(p.host.config())
		if p.cfgErr != nil && p.host.logError != nil {
			p.host.logError(p.cfgErr.Error())
		}
	}
	return p.cfg, p.cfgErr
}

// hasDPoP and hasMTLS report whether a sender constraint carries a key
// binding (DPoP) or a certificate binding (mTLS).
func hasDPoP(sc string) bool { return sc == abi.ConstraintDPoP || sc == abi.ConstraintDPoPMTLS }
func hasMTLS(sc string) bool { return sc == abi.ConstraintMTLS || sc == abi.ConstraintDPoPMTLS }

// refusal is a rule's verdict on a request.
type refusal struct {
	rule, key, detail string
	// dpopError: the token endpoint answers invalid_dpop_proof (the proof
	// is what is missing or unacceptable), else invalid_request.
	dpopError bool
}

// decide is the policy hook (token, introspect, fresh-auth). The host calls
// it only after every native check has passed, so SEC5 can only refuse.
func (p *policy) decide(in *abi.DecisionInput) abi.Decision {
	cfg, err := p.config()
	if err != nil {
		return abi.Denied(503, abi.ErrorTemporarilyUnavailable, "the enforcement-review plugin is misconfigured")
	}
	ref, drillName := cfg.check(in)
	if ref == nil {
		if drillName != "" {
			return abi.Decision{Allow: true, Annotations: []abi.KV{{Key: "drill", Value: drillName}}}
		}
		return abi.Allowed()
	}
	d := abi.Denied(403, errorAccessDenied, "")
	if in.Endpoint == abi.HookToken {
		d.Status, d.Error = 400, errorInvalidRequest
		if ref.dpopError {
			d.Error = errorInvalidProof
		}
	}
	d.Description = description(ref)
	d.Annotations = []abi.KV{{Key: "rule", Value: ref.rule}, {Key: "rule.key", Value: ref.key}}
	// introspect and fresh-auth have no host record per request, and a
	// bypass refused outside its drill must leave one of its own.
	if in.Endpoint != abi.HookToken || ref.rule == ruleBypass {
		p.record(in, ref)
	}
	return d
}

// description is the refusal's error_description: the rule, where it is
// configured and what it wants, within RFC 6749 §5.2's characters (the
// configuration admits only such audiences) and 256 bytes.
func description(r *refusal) string {
	s := "sec5 rule " + r.rule + " (" + r.key + "): " + r.detail
	if len(s) > abi.MaxDescriptionLen {
		s = s[:abi.MaxDescriptionLen]
	}
	return s
}

// check applies the rules in order: the bypass (outside a drill, or for a
// high-assurance audience), each audience rule the request's audiences
// match, then the DPoP algorithm list. The first refusal wins; an accepted
// bypass returns the drill's name.
func (c *config) check(in *abi.DecisionInput) (*refusal, string) {
	sc := in.SenderConstraint
	bypass := sc == abi.ConstraintBypass || in.DPoP.Result == abi.DPoPBypass
	// A drill excuses a missing DPoP binding: at token, the bypass of a
	// listed client within the window; at introspect, an unbound token
	// while the window is open (its input names the caller, not the
	// token's client).
	drillOK := false
	if bypass {
		if !c.drill.active(in.Time) || !slices.Contains(c.drill.clients, in.Client) {
			return &refusal{rule: ruleBypass, key: "bypassDrill", dpopError: true,
				detail: bypassDetail(c.drill, in.Time)}, ""
		}
		drillOK = true
	} else if in.Endpoint == abi.HookIntrospect && sc == abi.ConstraintNone {
		drillOK = c.drill.active(in.Time)
	}
	for i := range c.audiences {
		r := &c.audiences[i]
		if !slices.Contains(in.Audiences, r.aud) {
			continue
		}
		switch {
		case r.highAssurance && !hasDPoP(sc) && !hasMTLS(sc):
			return &refusal{rule: ruleHighAssurance, key: r.key,
				detail: "audience " + short(r.aud) + " takes only sender-constrained tokens (cnf), bypass drills included"}, ""
		case r.dpop && !hasDPoP(sc) && !drillOK:
			return &refusal{rule: ruleRequireDPoP, key: r.key, dpopError: true,
				detail: "audience " + short(r.aud) + " takes only DPoP-bound tokens"}, ""
		case r.mtls && !hasMTLS(sc):
			return &refusal{rule: ruleRequireMTLS, key: r.key,
				detail: "audience " + short(r.aud) + " takes only certificate-bound tokens (mTLS)"}, ""
		}
	}
	if c.algs != nil && in.DPoP.Alg != "" && !slices.Contains(c.algs, in.DPoP.Alg) {
		return &refusal{rule: ruleDPoPAlg, key: "dpop.algorithms", dpopError: true,
			detail: "DPoP proofs signed with " + short(in.DPoP.Alg) + " are not accepted by this tenant"}, ""
	}
	if drillOK && bypass {
		return nil, c.drill.name
	}
	return nil, ""
}

func bypassDetail(d *drill, t time.Time) string {
	switch {
	case d == nil:
		return "no bypass drill is declared for this tenant; send a DPoP proof"
	case !d.active(t):
		return "the bypass is accepted only within drill " + d.name + " (" + d.start.Format(time.RFC3339) + " to " + d.end.Format(time.RFC3339) + ")"
	}
	return "this client is not in drill " + d.name
}

// short keeps a value of a description to 64 bytes of %x21-7E without '"'
// and '\' (audiences are validated so; an algorithm name is the host's).
func short(s string) string {
	if len(s) > 64 {
		s = s[:61] + "..."
	}
	b := []byte(s)
	for i, c := range b {
		if c < 0x21 || c > 0x7e || c == '"' || c == '\\' {
			b[i] = '?'
		}
	}
	return string(b)
}

// record writes SEC5's record of a refusal. The host pseudonymizes subject
// and address; a record dropped by the audit budget is logged.
func (p *policy) record(in *abi.DecisionInput, r *refusal) {
	rec := abi.Event{Type: eventRefused, CorrelationID: in.CorrelationID, Outcome: abi.OutcomeFailure, Reason: r.rule,
		Subject: in.Subject, Client: in.Client, RemoteAddr: in.RemoteAddr, UserAgent: in.UserAgent,
		SenderConstraint: in.SenderConstraint, DPoP: in.DPoP, MTLS: in.MTLS,
		Attributes: []abi.KV{{Key: "sec5.rule.key", Value: r.key}, {Key: "sec5.endpoint", Value: in.Endpoint}}}
	if rec.SenderConstraint == "" {
		rec.SenderConstraint = abi.ConstraintNone
	}
	p.emit(&rec)
}

func (p *policy) emit(rec *abi.Event) {
	err := p.host.audit(rec)
	if err != nil && p.host.logError != nil {
		if errors.Is(err, sdk.ErrLimited) {
			p.host.logError("sec5: " + rec.Type + " record dropped by the audit budget")
		} else {
			p.host.logError("sec5: " + rec.Type + " record not written: " + err.Error())
		}
	}
}

// errNoTime: the event has no time and the host gave no clock.
var errNoTime = errors.New("sec5: the alerts need the clock grant")

// event is the events hook: it feeds the alert windows. A DPoP token
// request (an authority.token.issued or .denied event whose DPoP result is
// not "bypass") counts once, and once more as a miss when it was answered
// use_dpop_nonce; an authority.mtls.binding.mismatch counts a mismatch.
func (p *policy) event(ev *abi.Event) error {
	cfg, err := p.config()
	if err != nil {
		return err
	}
	al := cfg.alerts
	if al == nil {
		return nil
	}
	t := ev.Time
	if t.IsZero() && p.host.now != nil {
		t = p.host.now()
	}
	switch ev.Type {
	case abi.EventTokenIssued, abi.EventTokenDenied:
		r := ev.DPoP.Result
		if r == "" || r == abi.DPoPBypass {
			return nil
		}
		if t.IsZero() {
			return errNoTime
		}
		delta := int64(1)
		if r == abi.DPoPNonceMiss {
			delta += missUnit
		}
		return p.nonceWindow(al, ev, t, delta)
	case abi.EventMTLSBindingMismatch:
		if t.IsZero() {
			return errNoTime
		}
		return p.mismatchWindow(al, ev, t)
	}
	return nil
}

// missUnit packs a nonce miss into the high half of the DPoP window's
// counters: one counter per bucket holds requests (low 32 bits) and
// misses (high bits), so a request and its miss count in one atomic
// increment and one evaluation reads one key per bucket.
const missUnit = int64(1) << 32

func unpack(v int64) (requests, misses int64) { return v & (missUnit - 1), v >> 32 }

// window is one alert's sliding window: buckets of al.width, counted in
// counters "<kind>/<bucket>" that live a window beyond their bucket, so
// the sum of the current bucket and the buckets-1 before it spans
// between (buckets-1)/buckets of the window and all of it. cached holds
// the sum of the buckets before bucket at, which no longer change but
// for events in flight at their end; it is re-read when the bucket
// changes.
type window struct {
	at, cached int64
	valid      bool
	// gen is the generation last seen (the latch scheme of nonceWindow).
	gen int64
}

// batch runs the increment of bucket b and the reads of the earlier
// buckets the cache lacks, plus extra operations, in one host call. It
// returns the window's sum after the increment and the extra results.
func (p *policy) batch(w *window, kind string, al *alerts, b, delta int64, extra ...sdk.CounterOp) (int64, []sdk.CounterResult, error) {
	ttl := al.window + al.width
	ops := append(p.ops[:0], sdk.CounterOp{Key: kind + strconv.FormatInt(b, 10), Delta: delta, Window: ttl})
	reread := !w.valid || w.at != b
	if reread {
		for i := int64(1); i < int64(al.buckets); i++ {
			ops = append(ops, sdk.CounterOp{Key: kind + strconv.FormatInt(b-i, 10)})
		}
	}
	old := len(ops)
	ops = append(ops, extra...)
	res := p.res[:len(ops)]
	if err := p.host.incrMany(ops, res); err != nil {
		w.valid = false
		return 0, nil, err
	}
	for _, r := range res {
		if r.Err != nil {
			w.valid = false
			return 0, nil, r.Err
		}
	}
	if reread {
		var sum int64
		for _, r := range res[1:old] {
			sum += r.Value
		}
		w.at, w.cached, w.valid = b, sum, true
	}
	return w.cached + res[0].Value, res[old:], nil
}

func (al *alerts) bucket(t time.Time) int64 {
	s := int64(al.width / time.Second)
	u := t.Unix()
	if u < 0 {
		return (u - s + 1) / s
	}
	return u / s
}

// nonceWindow counts a DPoP token request and evaluates the nonce-miss
// ratio. The ratio can rise without a miss (old successes leave the
// window), so a crossing is a state change, remembered across nodes: a
// latch counter per generation, "nl/<gen>", set by the first evaluation
// that finds the ratio above the threshold (the one whose increment
// returns 1 writes the alert), and a generation counter "ng" advanced by
// an evaluation that finds the ratio at or below the clearing ratio while
// the latch is set. Each evaluation reads both in the batch of its increment, the
// latch of the generation the instance saw last; only a crossing either
// way costs a second call.
func (p *policy) nonceWindow(al *alerts, ev *abi.Event, t time.Time, delta int64) error {
	w := &p.nonce
	b := al.bucket(t)
	sum, extra, err := p.batch(w, "n/", al, b, delta,
		sdk.CounterOp{Key: "ng"}, sdk.CounterOp{Key: latchKey(w.gen)})
	if err != nil {
		return err
	}
	requests, misses := unpack(sum)
	gen := extra[0].Value
	latchKnown := gen == w.gen
	latched := latchKnown && extra[1].Value > 0
	w.gen = gen
	ratio := float64(misses) / float64(max(requests, 1))
	above := requests >= al.minRequests && ratio > al.ratio
	// Between the clearing ratio and the threshold nothing changes: a
	// raised alert stays raised, a cleared one stays cleared.
	clear := requests < al.minRequests || ratio <= al.clearRatio
	switch {
	case above && latched, !above && !clear, !above && latchKnown && !latched:
		return nil // no change
	case above:
		var r [1]sdk.CounterResult
		if err := p.host.incrMany([]sdk.CounterOp{{Key: latchKey(gen), Delta: 1, Window: latchTTL}}, r[:]); err != nil {
			return err
		}
		if r[0].Err != nil {
			return r[0].Err
		}
		if r[0].Value == 1 {
			p.alert(ev, alertNonceMiss, al, []abi.KV{
				{Key: "sec5.nonce_misses", Value: strconv.FormatInt(misses, 10)},
				{Key: "sec5.dpop_requests", Value: strconv.FormatInt(requests, 10)},
				{Key: "sec5.ratio", Value: strconv.FormatFloat(ratio, 'f', 4, 64)},
				{Key: "sec5.threshold", Value: al.ratioText}})
		}
		return nil
	}
	// Cleared, and the latch of this generation is set or unknown.
	if !latchKnown {
		var r [1]sdk.CounterResult
		if err := p.host.incrMany([]sdk.CounterOp{{Key: latchKey(gen)}}, r[:]); err != nil {
			return err
		}
		if r[0].Err != nil || r[0].Value == 0 {
			return r[0].Err
		}
	}
	var r [1]sdk.CounterResult
	if err := p.host.incrMany([]sdk.CounterOp{{Key: "ng", Delta: 1, Window: genTTL}}, r[:]); err != nil {
		return err
	}
	if r[0].Err != nil {
		return r[0].Err
	}
	w.gen = r[0].Value
	return nil
}

// The latch outlives any window (an alert condition that lasts a day is
// written again then); the generation counter lives the longest counter
// window there is (abi/SPEC.md §5), after which it restarts at 0, by
// when the latches of its first generations are long gone.
const (
	latchTTL = 24 * time.Hour
	genTTL   = 7 * 24 * time.Hour
)

func latchKey(gen int64) string { return "nl/" + strconv.FormatInt(gen, 10) }

// mismatchWindow counts a certificate mismatch. A count only rises by an
// increment, so a crossing is the increment that takes the window from at
// most the threshold to above it: exactly one evaluation across all nodes
// sees that (the increments of one bucket are atomic).
func (p *policy) mismatchWindow(al *alerts, ev *abi.Event, t time.Time) error {
	sum, _, err := p.batch(&p.mtls, "m/", al, al.bucket(t), 1)
	if err != nil {
		return err
	}
	if sum > al.mismatches && sum-1 <= al.mismatches {
		attrs := []abi.KV{{Key: "sec5.mtls_mismatches", Value: strconv.FormatInt(sum, 10)},
			{Key: "sec5.threshold", Value: strconv.FormatInt(al.mismatches, 10)}}
		if ev.MTLS.Result != "" {
			attrs = append(attrs, abi.KV{Key: "sec5.mtls_result", Value: ev.MTLS.Result})
		}
		p.alert(ev, alertMismatch, al, attrs)
	}
	return nil
}

// alert writes an authority.security.alert record for the tenant, with
// the event that crossed the threshold as its context.
func (p *policy) alert(ev *abi.Event, reason string, al *alerts, attrs []abi.KV) {
	rec := abi.Event{Type: eventAlert, CorrelationID: ev.CorrelationID, Outcome: abi.OutcomeFailure, Reason: reason,
		Client: ev.Client, Attributes: append([]abi.KV{{Key: "sec5.window", Value: al.window.String()},
			{Key: "sec5.trigger", Value: ev.Type}}, attrs...)}
	p.emit(&rec)
}
