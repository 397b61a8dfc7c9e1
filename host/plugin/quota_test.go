package plugin_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"stellaops.org/authority/host/plugin"
	"stellaops.org/authority/sdk/sdktest"
)

// TestStateQuotaIsolatesTenants runs the hostcalls guest (a rate limiter:
// one counter per client, 429 from the fourth request in a window, and a
// kv_set of the last client) for two tenants in one Manager on one shared
// store. Tenant a has tiny quotas and fills them: its counter_incr and
// kv_set answer HostLimited (the guest's sdk.ErrLimited), its previous KV
// value survives, and the call itself succeeds. Tenant b, served in
// between and concurrently, keeps counting and rate-limiting as if a did
// not exist. Run on the memory stores and on Redis.
func TestStateQuotaIsolatesTenants(t *testing.T) {
	t.Run("memory", func(t *testing.T) {
		clock := sdktest.NewFakeClock(time.Date(2025, 11, 7, 12, 0, 0, 0, time.UTC))
		testStateQuotaIsolation(t, plugin.Deps{Clock: clock, Counters: plugin.NewMemoryCounters(clock), KV: plugin.NewMemoryKV(clock)})
	})
	t.Run("redis", func(t *testing.T) {
		c := newTestRedis(t)
		prefix := testRedisPrefix(t, "plugin-quota-e2e")
		testStateQuotaIsolation(t, plugin.Deps{Counters: plugin.NewRedisCounters(c, prefix), KV: plugin.NewRedisKV(c, prefix)})
	})
}

func testStateQuotaIsolation(t *testing.T, deps plugin.Deps) {
	ctx := context.Background()
	a := spec(t, "hostcalls")
	a.Grants = plugin.Grants()
	// Five clients' counters; "last"+value of at most 2 bytes.
	a.Limits = plugin.Limits{CounterKeys: 5, KVBytes: int64(len("last") + 2)}
	b := spec(t, "hostcalls")
	b.Grants = plugin.Grants()
	deps.Secrets = plugin.StaticSecrets{"a": []byte("ka"), "b": []byte("kb")}
	m := newManager(t, map[string][]plugin.Spec{"a": {a}, "b": {b}}, deps)

	// decideErr returns the decision as a map: the guest's annotations
	// (without the "hostcalls." prefix), "allow" and "status".
	decideErr := func(tenant, client string) (map[string]string, error) {
		d, err := m.Decide(ctx, tenant, input(client))
		if err != nil {
			return nil, fmt.Errorf("tenant %s client %s: %w", tenant, client, err)
		}
		ann := map[string]string{"allow": fmt.Sprint(d.Allow), "status": fmt.Sprint(d.Status)}
		for _, kv := range d.Annotations {
			ann[kv.Key[len("hostcalls."):]] = kv.Value
		}
		return ann, nil
	}
	decide := func(t *testing.T, tenant, client string) map[string]string {
		t.Helper()
		ann, err := decideErr(tenant, client)
		if err != nil {
			t.Fatal(err)
		}
		return ann
	}
	limited := "sdk: host limit reached"

	// b rate-limits client b1: 1, 2, 3, then 429.
	for i := 1; i <= 4; i++ {
		ann := decide(t, "b", "b1")
		if ann["counter"] != fmt.Sprint(i) || ann["counter.err"] != "" {
			t.Fatalf("b/b1 request %d: %v", i, ann)
		}
		if want := i <= 3; ann["allow"] != fmt.Sprint(want) {
			t.Fatalf("b/b1 request %d: allow %s, want %v", i, ann["allow"], want)
		}
	}

	// a fills its five counter keys and its KV bytes.
	for i := 1; i <= 5; i++ {
		ann := decide(t, "a", fmt.Sprint("a", i))
		if ann["counter"] != "1" || ann["counter.err"] != "" || ann["kvset.err"] != "" {
			t.Fatalf("a/a%d: %v", i, ann)
		}
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		// While a is refused, b keeps serving new clients and its limits.
		for i := range 50 {
			ann, err := decideErr("b", fmt.Sprint("c", i))
			if err != nil {
				t.Error(err)
				return
			}
			if ann["counter"] != "1" || ann["counter.err"] != "" || ann["kvset.err"] != "" || ann["allow"] != "true" {
				t.Errorf("b/c%d while a is at its quota: %v", i, ann)
				return
			}
		}
	})
	for i := range 20 {
		ann := decide(t, "a", fmt.Sprint("a-new-", i))
		// The sixth key is refused with HostLimited; the guest sees a
		// zero counter and allows, and its call is not a failure.
		if ann["counter.err"] != limited || ann["counter"] != "0" || ann["allow"] != "true" {
			t.Fatalf("a over its counter quota: %v", ann)
		}
		// "last" = "a-new-N" is over kvBytes: refused, "a5" kept.
		if ann["kvset.err"] != limited || ann["kv.prev"] != "a5" {
			t.Fatalf("a over its kv quota: %v", ann)
		}
	}
	wg.Wait()
	// a's existing counters still count (quota refuses creation only).
	if ann := decide(t, "a", "a1"); ann["counter"] != "2" || ann["counter.err"] != "" {
		t.Fatalf("a/a1 at its quota: %v", ann)
	}
	if ann := decide(t, "b", "b1"); ann["counter"] != "5" || ann["status"] != "429" {
		t.Fatalf("b/b1 after all that: %v", ann)
	}

	for _, ph := range m.Health().Plugins {
		switch ph.Tenant {
		case "a":
			if ph.QuotaRefusals != 40 || ph.Failures != 0 {
				t.Errorf("a: QuotaRefusals %d (want 40), Failures %d (want 0)", ph.QuotaRefusals, ph.Failures)
			}
		case "b":
			if ph.QuotaRefusals != 0 || ph.Failures != 0 {
				t.Errorf("b: QuotaRefusals %d, Failures %d, want 0", ph.QuotaRefusals, ph.Failures)
			}
		}
	}
}

// failingState is a Counters and KV whose every write fails (a store
// outage, not a quota).
type failingState struct{}

func (failingState) Incr(context.Context, plugin.Scope, string, int64, time.Duration) (int64, time.Duration, error) {
	return 0, 0, errors.New("store down")
}
func (failingState) Get(context.Context, plugin.Scope, string) ([]byte, bool, error) {
	return nil, false, nil
}
func (failingState) Set(context.Context, plugin.Scope, string, []byte, time.Duration) error {
	return errors.New("store down")
}

// TestStateStoreErrorsStayUnavailable: only ErrQuotaExceeded becomes
// HostLimited; any other store error is HostUnavailable (sdk.ErrUnavailable).
func TestStateStoreErrorsStayUnavailable(t *testing.T) {
	s := spec(t, "hostcalls")
	s.Grants = plugin.Grants()
	m := newManager(t, map[string][]plugin.Spec{"a": {s}}, plugin.Deps{Counters: failingState{}, KV: failingState{},
		Secrets: plugin.StaticSecrets{"a": []byte("k")}})
	d, err := m.Decide(context.Background(), "a", input("c"))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"hostcalls.counter.err": "sdk: host store unavailable", "hostcalls.kvset.err": "sdk: host store unavailable"}
	for _, kv := range d.Annotations {
		if w, ok := want[kv.Key]; ok {
			if kv.Value != w {
				t.Errorf("%s = %q, want %q", kv.Key, kv.Value, w)
			}
			delete(want, kv.Key)
		}
	}
	if len(want) != 0 {
		t.Fatalf("missing annotations %v in %+v", want, d.Annotations)
	}
	if h := m.Health().Plugins[0]; h.QuotaRefusals != 0 {
		t.Fatalf("store errors counted as quota refusals: %d", h.QuotaRefusals)
	}
}
