package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"stellaops.org/authority/abi"
	"stellaops.org/authority/sdk"
)

// fakeHost implements counter_incr's fixed windows (abi/SPEC.md §5: the
// window starts at the first increment of an absent key; delta 0 reads
// without creating) on a clock the test moves, and records audit events.
type fakeHost struct {
	now      time.Time
	counters map[string]*fakeCounter
	records  []abi.Event
	fail     error // returned by incr when set
	// batches counts counter_incr_many calls; failBatch refuses them.
	batches   int
	failBatch error
}

func (h *fakeHost) incrMany(ops []sdk.CounterOp, out []sdk.CounterResult) error {
	h.batches++
	if h.failBatch != nil {
		return h.failBatch
	}
	if len(ops) == 0 || len(ops) > sdk.MaxCounterBatch {
		return sdk.ErrInvalid
	}
	for i, op := range ops {
		out[i].Value, out[i].TTL, out[i].Err = h.incr(op.Key, op.Delta, op.Window)
	}
	return nil
}

type fakeCounter struct {
	v   int64
	end time.Time
}

func newFakeHost() *fakeHost {
	return &fakeHost{now: time.Unix(1_700_000_000, 0), counters: map[string]*fakeCounter{}}
}

func (h *fakeHost) incr(key string, delta int64, window time.Duration) (int64, time.Duration, error) {
	if h.fail != nil {
		return 0, 0, h.fail
	}
	if len(key) == 0 || len(key) > 256 {
		return 0, 0, sdk.ErrInvalid
	}
	c := h.counters[key]
	if c != nil && !h.now.Before(c.end) {
		delete(h.counters, key)
		c = nil
	}
	if c == nil {
		if delta == 0 {
			return 0, 0, nil
		}
		c = &fakeCounter{end: h.now.Add(window)}
		h.counters[key] = c
	}
	c.v += delta
	return c.v, c.end.Sub(h.now), nil
}

func (h *fakeHost) limiter(t *testing.T, cfg map[string]any) *limiter {
	t.Helper()
	b, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return &limiter{host: hostFuncs{
		config:   func() []byte { return b },
		incr:     h.incr,
		incrMany: h.incrMany,
		pseudonymize: func(v string) (string, error) {
			return "ps-" + strings.NewReplacer("\x00", "_", " ", "_").Replace(v)[:3] + hash(v), nil
		},
		audit:    func(ev *abi.Event) error { h.records = append(h.records, *ev); return nil },
		logError: func(msg string) { t.Log(msg) },
	}}
}

// hash stands in for the host's keyed pseudonym: distinct values, no raw
// value in the result.
func hash(v string) string {
	var x uint64 = 1469598103934665603
	for i := 0; i < len(v); i++ {
		x = (x ^ uint64(v[i])) * 1099511628211
	}
	const digits = "0123456789abcdef"
	var b [16]byte
	for i := range b {
		b[i] = digits[x>>(4*i)&15]
	}
	return string(b[:])
}

var lockoutCfg = map[string]any{"lockout": map[string]any{"maxFailures": 3, "window": "10m", "lockoutDuration": "15m"}}

func token(client, subject, addr string) *abi.DecisionInput {
	return &abi.DecisionInput{Endpoint: abi.HookToken, Client: client, Subject: subject, RemoteAddr: addr, Grant: "password"}
}

func failure(client, subject, addr, reason string) *abi.Event {
	return &abi.Event{Type: abi.EventTokenDenied, Outcome: abi.OutcomeFailure, Client: client, Subject: subject, RemoteAddr: addr, Reason: reason}
}

func mustAllow(t *testing.T, d abi.Decision, what string) {
	t.Helper()
	if !d.Allow {
		t.Fatalf("%s: denied %+v", what, d)
	}
}

func mustDeny(t *testing.T, d abi.Decision, status int, code string, retry int, what string) {
	t.Helper()
	if d.Allow || d.Status != status || d.Error != code || d.RetryAfter != retry {
		t.Fatalf("%s: %+v, want %d %s Retry-After %d", what, d, status, code, retry)
	}
	if err := d.Validate(); err != nil {
		t.Fatalf("%s: the host would refuse the decision: %v", what, err)
	}
}

func TestRateLimitFixedWindowPerClientAndAddress(t *testing.T) {
	h := newFakeHost()
	l := h.limiter(t, map[string]any{"token": map[string]any{"permitLimit": 3, "window": "1m"}})
	for i := range 3 {
		mustAllow(t, l.decide(token("svc", "", "203.0.113.7")), "request "+string(rune('1'+i)))
	}
	h.now = h.now.Add(20 * time.Second)
	mustDeny(t, l.decide(token("svc", "", "203.0.113.7")), 429, "slow_down", 40, "the 4th request of the window")
	mustAllow(t, l.decide(token("svc", "", "203.0.113.8")), "another address of the client")
	mustAllow(t, l.decide(token("other", "", "203.0.113.7")), "another client at the address")
	h.now = h.now.Add(40 * time.Second)
	mustAllow(t, l.decide(token("svc", "", "203.0.113.7")), "the first request of the next window")
}

func TestLockoutAfterMaxFailuresPerSubjectClientAndAddress(t *testing.T) {
	h := newFakeHost()
	l := h.limiter(t, lockoutCfg)
	for i := range 3 {
		mustAllow(t, l.decide(token("app", "alice", "198.51.100.1")), "before failure "+string(rune('1'+i)))
		if err := l.event(failure("app", "alice", "198.51.100.1", "bad-password")); err != nil {
			t.Fatal(err)
		}
	}
	// All three keys reached 3 failures: each is locked, each records once.
	if len(h.records) != 3 {
		t.Fatalf("lockout records: %+v", h.records)
	}
	for i, scope := range []string{"subject", "client", "ip"} {
		r := h.records[i]
		if r.Type != "authority.lockout."+scope || r.Outcome != abi.OutcomeLockedOut || r.Reason != "too-many-failures" {
			t.Fatalf("record %d: %+v", i, r)
		}
		if err := abi.ValidateEvent(&r); err != nil {
			t.Fatalf("record %d would be refused: %v", i, err)
		}
	}
	h.now = h.now.Add(5 * time.Minute)
	mustDeny(t, l.decide(token("other-app", "alice", "192.0.2.9")), 423, "access_denied", 600, "alice from elsewhere")
	mustDeny(t, l.decide(token("app", "bob", "192.0.2.9")), 423, "access_denied", 600, "the locked client")
	mustDeny(t, l.decide(token("other-app", "bob", "198.51.100.1")), 423, "access_denied", 600, "the locked address")
	mustAllow(t, l.decide(token("other-app", "bob", "192.0.2.9")), "nothing locked")
	// A failure during the lockout neither extends it nor records again.
	if err := l.event(failure("app", "alice", "198.51.100.1", "bad-password")); err != nil {
		t.Fatal(err)
	}
	if len(h.records) != 3 {
		t.Fatalf("a failure while locked recorded again: %d records", len(h.records))
	}
	h.now = h.now.Add(10 * time.Minute)
	mustAllow(t, l.decide(token("app", "alice", "198.51.100.1")), "after the lockout")
}

func TestASuccessResetsNoCount(t *testing.T) {
	h := newFakeHost()
	l := h.limiter(t, lockoutCfg)
	for range 2 {
		_ = l.event(failure("app", "victim", "198.51.100.1", "bad-password"))
	}
	// The attacker's own successful login from the same address, and a
	// success of the victim, change nothing.
	_ = l.event(&abi.Event{Type: abi.EventTokenIssued, Outcome: abi.OutcomeSuccess, Client: "app", Subject: "attacker", RemoteAddr: "198.51.100.1"})
	_ = l.event(&abi.Event{Type: abi.EventTokenIssued, Outcome: abi.OutcomeSuccess, Client: "app", Subject: "victim", RemoteAddr: "192.0.2.1"})
	_ = l.event(failure("app", "other", "198.51.100.1", "bad-password"))
	mustDeny(t, l.decide(token("app2", "someone", "198.51.100.1")), 423, "access_denied", 900, "the address after 3 failures")
	mustAllow(t, l.decide(token("app2", "victim", "192.0.2.2")), "victim: 2 failures only")
}

func TestOnlyCredentialFailuresCount(t *testing.T) {
	h := newFakeHost()
	l := h.limiter(t, lockoutCfg)
	for _, reason := range []string{"dpop-nonce-missing", "dpop-nonce-stale", "dpop-missing", "dpop-state-lost", "scope-not-allowed",
		"audience-not-allowed", "grant-not-allowed", "plugin-deny", "internal", "dpop-replay"} {
		for range 3 {
			_ = l.event(failure("app", "alice", "198.51.100.1", reason))
		}
	}
	_ = l.event(&abi.Event{Type: abi.EventTokenDenied, Outcome: abi.OutcomeLockedOut, Reason: "plugin-deny", Client: "app", Subject: "alice"})
	_ = l.event(&abi.Event{Type: abi.EventDPoPNonceMiss, Outcome: abi.OutcomeFailure, Client: "app"})
	if len(h.counters) != 0 {
		t.Fatalf("counted %d keys", len(h.counters))
	}
	for _, reason := range []string{"bad-secret", "bad-password", "unknown-user", "dpop-signature", "mtls-untrusted", "refresh-dpop-key-mismatch"} {
		if !countedReason(reason) {
			t.Errorf("%s not counted", reason)
		}
	}
	if !counts(&abi.Event{Type: abi.EventDPoPReplay, Outcome: abi.OutcomeFailure}) || !counts(&abi.Event{Type: abi.EventMTLSBindingMismatch, Outcome: abi.OutcomeFailure}) {
		t.Error("replays and certificate mismatches must count")
	}
}

func TestCountersHoldNoRawPersonalData(t *testing.T) {
	h := newFakeHost()
	l := h.limiter(t, map[string]any{"token": map[string]any{"permitLimit": 5, "window": "1m"},
		"lockout": map[string]any{"maxFailures": 3, "window": "10m", "lockoutDuration": "15m"}})
	l.decide(token("app", "alice@example.com", "203.0.113.7"))
	_ = l.event(failure("app", "alice@example.com", "203.0.113.7", "bad-password"))
	_ = l.event(failure("weird client/id", "alice@example.com", "203.0.113.7", "bad-secret"))
	for k := range h.counters {
		if strings.Contains(k, "alice") || strings.Contains(k, "203.0.113") || strings.Contains(k, "weird") {
			t.Errorf("key %q holds a raw value", k)
		}
	}
}

func TestStoreUnavailable(t *testing.T) {
	cfg := map[string]any{"token": map[string]any{"permitLimit": 5, "window": "1m"}}
	h := newFakeHost()
	h.fail = sdk.ErrUnavailable
	mustDeny(t, h.limiter(t, cfg).decide(token("app", "", "203.0.113.7")), 503, "temporarily_unavailable", 1, "refuse (default)")
	cfg["onStoreUnavailable"] = "admit"
	d := h.limiter(t, cfg).decide(token("app", "", "203.0.113.7"))
	if !d.Allow || len(d.Annotations) != 1 || d.Annotations[0].Value != "unavailable" {
		t.Fatalf("admit: %+v", d)
	}
	h.fail = sdk.ErrLimited
	mustDeny(t, h.limiter(t, map[string]any{"token": map[string]any{"permitLimit": 5, "window": "1m"}}).decide(token("app", "", "203.0.113.7")),
		503, "temporarily_unavailable", 1, "counter quota reached")
	if err := h.limiter(t, lockoutCfg).event(failure("app", "a", "203.0.113.7", "bad-password")); !errors.Is(err, sdk.ErrLimited) {
		t.Fatalf("an uncounted failure must fail the event call (the host counts it): %v", err)
	}
}

func TestConfigErrorsNameTheKey(t *testing.T) {
	cases := map[string]string{
		``:                               "empty",
		`[]`:                             "JSON object",
		`{}`:                             "token: set token, lockout or both",
		`{"tokens": {}}`:                 "tokens: unknown key",
		`{"lockout": {"maxFailure": 5}}`: "lockout.maxFailure: unknown key",
		`{"token": {"window": "1m"}}`:    "token.permitLimit: required",
		`{"token": {"permitLimit": 0, "window": "1m"}}`:                                            "token.permitLimit: must be from 1",
		`{"token": {"permitLimit": 5, "window": "1.5s"}}`:                                          "token.window: must be a whole number of seconds",
		`{"token": {"permitLimit": 5, "window": "200h"}}`:                                          "token.window",
		`{"lockout": {"maxFailures": 5, "window": "1m"}}`:                                          "lockout.lockoutDuration: required",
		`{"lockout": {"maxFailures": 5, "window": "1m", "lockoutDuration": "25h"}}`:                "lockout.lockoutDuration",
		`{"lockout": {"maxFailures": 5, "window": "1m", "lockoutDuration": "1m", "by": ["user"]}}`: `lockout.by[0]: must be subject, client or ip, got "user"`,
		`{"lockout": {"maxFailures": 5, "window": "1m", "lockoutDuration": "1m", "by": []}}`:       "lockout.by: must name",
		`{"token": {"permitLimit": 5, "window": "1m"}, "onStoreUnavailable": "ignore"}`:            "onStoreUnavailable",
	}
	for doc, want := range cases {
		_, err := parseConfig([]byte(doc))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: got %v, want %q", doc, err, want)
		}
	}
	c, err := parseConfig([]byte(`{"lockout": {"maxFailures": 5, "window": "15m", "lockoutDuration": "15m", "by": ["ip", "subject"]}}`))
	if err != nil || c.rate != nil || c.lockout.maxFailures != 5 || strings.Join(c.lockout.by, ",") != "ip,subject" || c.admitOnStoreFailure {
		t.Fatalf("%+v %v", c, err)
	}
}

func TestMisconfiguredFailsClosed(t *testing.T) {
	h := newFakeHost()
	l := h.limiter(t, map[string]any{"token": map[string]any{"permitLimit": -1, "window": "1m"}})
	if d := l.decide(token("app", "", "203.0.113.7")); d.Allow || d.Status != 503 {
		t.Fatalf("%+v", d)
	}
	if err := l.event(failure("app", "a", "b", "bad-password")); err == nil {
		t.Fatal("event under a bad configuration succeeded")
	}
}

// TestDecisionPseudonymizesOnlyWhatItUses: each pseudonym is a host call
// on the /token path; a rate limit alone needs the address, a subject-only
// lockout the subject; a value seen before comes from the cache.
func TestDecisionPseudonymizesOnlyWhatItUses(t *testing.T) {
	for _, c := range []struct {
		cfg  map[string]any
		want string
	}{
		{map[string]any{"token": map[string]any{"permitLimit": 5, "window": "1m"}}, "i"},
		{map[string]any{"lockout": map[string]any{"maxFailures": 3, "window": "1m", "lockoutDuration": "1m", "by": []any{"subject"}}}, "s"},
		{lockoutCfg, "si"},
	} {
		h := newFakeHost()
		l := h.limiter(t, c.cfg)
		var got string
		l.host.pseudonymize = func(v string) (string, error) { got += v[:1]; return hash(v), nil }
		mustAllow(t, l.decide(token("app", "alice", "203.0.113.7")), "first request")
		if got != c.want {
			t.Errorf("%v: pseudonymized %q, want %q", c.cfg, got, c.want)
		}
		// The same values again: from the instance's cache, no host call.
		mustAllow(t, l.decide(token("app", "alice", "203.0.113.7")), "second request")
		if got != c.want {
			t.Errorf("%v: the second request pseudonymized again: %q", c.cfg, got)
		}
	}
}

// The pseudonym cache is bounded: past maxCachedPseudonyms values it
// starts afresh, and a value pseudonymized again gets the same pseudonym.
func TestPseudonymCacheIsBounded(t *testing.T) {
	h := newFakeHost()
	l := h.limiter(t, map[string]any{"token": map[string]any{"permitLimit": 1_000_000, "window": "1m"}})
	calls := 0
	l.host.pseudonymize = func(v string) (string, error) { calls++; return hash(v), nil }
	first, _ := l.pseudonym('i', "203.0.113.7")
	for i := range 3 * maxCachedPseudonyms {
		if _, err := l.pseudonym('i', fmt.Sprintf("198.51.%d.%d", i/256, i%256)); err != nil {
			t.Fatal(err)
		}
		if len(l.pseudonyms) > maxCachedPseudonyms {
			t.Fatalf("%d cached pseudonyms, bound %d", len(l.pseudonyms), maxCachedPseudonyms)
		}
	}
	again, _ := l.pseudonym('i', "203.0.113.7")
	if calls != 3*maxCachedPseudonyms+2 || again != first {
		t.Fatalf("%d host calls; pseudonym %q then %q", calls, first, again)
	}
	if s, _ := l.pseudonym('s', "203.0.113.7"); s == first {
		t.Fatal("a subject and an address of the same spelling share a pseudonym")
	}
}

// A decision is one counter batch (one store round trip): the lock reads
// and the rate increment together; a refused batch is a store failure,
// for decisions and events alike; without counter_incr_many the limiter
// decides the same one call at a time.
func TestDecisionIsOneCounterBatch(t *testing.T) {
	cfg := map[string]any{"token": map[string]any{"permitLimit": 2, "window": "1m"},
		"lockout": map[string]any{"maxFailures": 2, "window": "10m", "lockoutDuration": "15m"}}
	for _, batched := range []bool{true, false} {
		h := newFakeHost()
		l := h.limiter(t, cfg)
		if !batched {
			l.host.incrMany = nil
		}
		mustAllow(t, l.decide(token("app", "alice", "203.0.113.7")), "first")
		if batched && h.batches != 1 {
			t.Fatalf("%d batches for one decision", h.batches)
		}
		mustAllow(t, l.decide(token("app", "alice", "203.0.113.7")), "second")
		mustDeny(t, l.decide(token("app", "alice", "203.0.113.7")), 429, errorRateLimited, 60, "third")
		for range 2 {
			if err := l.event(failure("app", "bob", "198.51.100.9", "bad-password")); err != nil {
				t.Fatal(err)
			}
		}
		if batched && h.batches != 3+1+2 {
			t.Fatalf("%d batches: want one per decision and failure, and one more for the failure that locks", h.batches)
		}
		mustDeny(t, l.decide(token("other-app", "bob", "192.0.2.1")), 423, errorLockedOut, 900, "bob locked")
		if len(h.records) != 3 {
			t.Fatalf("%d lockout records, want subject, client and address", len(h.records))
		}
	}
	h := newFakeHost()
	l := h.limiter(t, cfg)
	h.failBatch = sdk.ErrUnavailable
	mustDeny(t, l.decide(token("app", "alice", "203.0.113.7")), 503, abi.ErrorTemporarilyUnavailable, 1, "batch refused")
	if err := l.event(failure("app", "alice", "203.0.113.7", "bad-password")); !errors.Is(err, sdk.ErrUnavailable) {
		t.Fatalf("event with the batch refused: %v", err)
	}
}
