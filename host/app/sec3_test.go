package app_test

import (
	"net/url"
	"strconv"
	"sync"
	"testing"

	"stellaops.org/authority/abi"
	"stellaops.org/authority/host/config"
	"stellaops.org/authority/host/plugin"
	"stellaops.org/authority/internal/testenv"
)

// sec3Spec is SEC3 as an operator configures it: token and events hooks,
// failures delivered inline, the grants it needs.
func sec3Spec(t testing.TB, cfg map[string]any) plugin.Spec {
	// A pool as large as the test's requests in flight: no call waits
	// for an instance, however loaded the machine.
	s := pluginSpec(t, "stellaops.org/authority/plugins/sec3", "sec3", cfg, plugin.Limits{PoolSize: 8})
	s.Hooks = []string{abi.HookToken, abi.HookEvents}
	s.Grants = []string{plugin.GrantCounters, plugin.GrantPseudonymize, plugin.GrantConfig, plugin.GrantAudit}
	s.EventDelivery, s.EventOutcomes = plugin.EventsInline, []string{abi.OutcomeFailure}
	return s
}

// Two nodes on one Redis run SEC3 as one: a limit of 3 tokens a minute per
// client and address refuses the 4th request whichever node gets it, and
// a subject locked by failures at node A is refused at node B, 423 with
// the lockout's Retry-After; a concurrent password flood at both nodes
// overshoots maxFailures by at most the number of requests in flight.
func TestSEC3TwoNodesShareLimitsAndLockouts(t *testing.T) {
	addr := testenv.RedisAddr(t)
	prefix := testenv.Prefix("sec3")
	shared := t.TempDir()
	limit := sec3Spec(t, map[string]any{"token": map[string]any{"permitLimit": 3, "window": "1m"}})
	lock := sec3Spec(t, map[string]any{"token": map[string]any{"permitLimit": 1000, "window": "1m"},
		// Every request of the test comes from 127.0.0.1: only the subject
		// is counted, so that one user's failures do not lock the next.
		"lockout": map[string]any{"maxFailures": 3, "window": "10m", "lockoutDuration": "5m", "by": []any{"subject"}}})
	mutate := withUsers(func(c *config.Config) {
		withPlugins(t, map[string][]plugin.Spec{"demo": {limit}, "users": {lock}})(c)
		withRedisPluginState(c, addr, prefix, shared)
	})
	keyDir := t.TempDir()
	a := newEnv(t, envOptions{keyDir: keyDir, mutate: mutate})
	b := newEnv(t, envOptions{keyDir: keyDir, mutate: mutate})

	for i, e := range []*env{a, b, a} {
		if r := e.token("demo-bearer", nil); r.status != 200 {
			t.Fatalf("token %d: %d %s", i+1, r.status, r.raw)
		}
	}
	r := b.token("demo-bearer", nil)
	if ra, _ := strconv.Atoi(r.header.Get("Retry-After")); r.status != 429 || r.str("error") != "slow_down" || ra < 1 || ra > 60 {
		t.Fatalf("the 4th token across two nodes: %d %s %v", r.status, r.raw, r.header)
	}

	client := "app-confidential"
	for i, e := range []*env{a, b, a} {
		if r := e.grant(grantReq{client: client, form: password("alice", "wrong")}); r.status != 400 || r.str("error") != "invalid_grant" {
			t.Fatalf("failure %d: %d %s", i+1, r.status, r.raw)
		}
	}
	r = b.grant(grantReq{client: "pw-only", form: password("alice", "alice-password")})
	if ra, _ := strconv.Atoi(r.header.Get("Retry-After")); r.status != 423 || r.str("error") != "access_denied" || ra < 290 || ra > 300 {
		t.Fatalf("alice locked at A, asked at B with the right password: %d %s %v", r.status, r.raw, r.header)
	}

	// Overshoot: 8 requests in flight at a time over both nodes, for a
	// subject nobody has failed for yet. A request passes SEC3 only while
	// the lock does not exist; the lock exists once maxFailures failures
	// are counted, and each of those requests counts its own failure
	// before its answer, so at most maxFailures + in-flight - 1 requests
	// reach the password check.
	const inFlight, rounds = 8, 4
	var mu sync.Mutex
	checked := 0
	var wg sync.WaitGroup
	for w := range inFlight {
		wg.Add(1)
		go func() {
			defer wg.Done()
			e := []*env{a, b}[w%2]
			for range rounds {
				r := e.grant(grantReq{client: "pw-only", form: password("carol", "guess")})
				switch r.status {
				case 400:
					mu.Lock()
					checked++
					mu.Unlock()
				case 423:
				default:
					t.Errorf("status %d: %s", r.status, r.raw)
				}
			}
		}()
	}
	wg.Wait()
	if checked < 3 || checked > 3+inFlight-1 {
		t.Fatalf("%d password checks reached the KDF; want 3..%d", checked, 3+inFlight-1)
	}

	t.Logf("%d of %d flood requests reached the password check (maxFailures 3, %d in flight)", checked, inFlight*rounds, inFlight)

	// The trails (read last: reading closes the node). One lockout record
	// per locked subject across both nodes (the call that created the
	// lock), host-pseudonymized; the 423s audited as locked_out.
	ra, rb := a.auditRecords(), b.auditRecords()
	for _, user := range []string{"alice", "carol"} {
		var n int
		for _, r := range append(byType(ra, "authority.lockout.subject"), byType(rb, "authority.lockout.subject")...) {
			if r.Subject == a.tenantPseudonym("users", user) && r.Outcome == abi.OutcomeLockedOut && r.Source == "plugin:sec3" {
				n++
			}
		}
		if n != 1 {
			t.Errorf("%s: %d lockout records, want 1", user, n)
		}
	}
	locked := 0
	for _, r := range append(byType(ra, abi.EventTokenDenied), byType(rb, abi.EventTokenDenied)...) {
		if r.Outcome == abi.OutcomeLockedOut {
			locked++
		}
	}
	if want := 1 + inFlight*rounds - checked; locked != want {
		t.Errorf("%d token.denied records with outcome locked_out, want %d", locked, want)
	}
}

// Bad client secrets lock the client out: an authentication failure of a
// registered client is its tenant's event (RFC 6749 §2.3: the client
// named itself), so SEC3 counts it, and after maxFailures the right
// secret is refused 423 until the lockout ends. Another client of the
// tenant and another tenant's client are not affected, and the failures
// of an unregistered id reach no tenant.
func TestSEC3LocksOutAClientAfterBadSecrets(t *testing.T) {
	lock := sec3Spec(t, map[string]any{"lockout": map[string]any{"maxFailures": 3, "window": "10m", "lockoutDuration": "2m", "by": []any{"client"}}})
	e := newEnv(t, envOptions{mutate: withPlugins(t, map[string][]plugin.Spec{"demo": {lock}, "other": {lock}})})
	bad := func(id string) response {
		return e.do("/token", reqOpts{basic: [2]string{id, "wrong-secret"}, form: url.Values{"grant_type": {"client_credentials"}}})
	}
	for i := range 3 {
		if r := bad("no-such-client"); r.status != 401 {
			t.Fatalf("unregistered id, failure %d: %d %s", i+1, r.status, r.raw)
		}
		if r := e.token("demo-bearer", nil); r.status != 200 {
			t.Fatalf("before the lockout, token %d: %d %s", i+1, r.status, r.raw)
		}
	}
	for i := range 3 {
		if r := bad("demo-bearer"); r.status != 401 || r.str("error") != "invalid_client" {
			t.Fatalf("failure %d: %d %s", i+1, r.status, r.raw)
		}
	}
	r := e.token("demo-bearer", nil)
	if ra, _ := strconv.Atoi(r.header.Get("Retry-After")); r.status != 423 || r.str("error") != "access_denied" || ra < 110 || ra > 120 {
		t.Fatalf("the right secret after 3 bad ones: %d %s %v", r.status, r.raw, r.header)
	}
	for _, id := range []string{"demo-bearer-2", "other-client"} {
		if r := e.token(id, nil); r.status != 200 {
			t.Errorf("%s after demo-bearer's lockout: %d %s", id, r.status, r.raw)
		}
	}
	recs := e.auditRecords()
	var lockouts int
	for _, r := range byType(recs, "authority.lockout.client") {
		if r.Tenant == "demo" && r.Client == "demo-bearer" && r.Outcome == abi.OutcomeLockedOut {
			lockouts++
		}
	}
	if lockouts != 1 {
		t.Errorf("%d lockout records for demo-bearer, want 1", lockouts)
	}
	for _, r := range byType(recs, abi.EventTokenDenied) {
		if r.Reason == "bad-secret" && (r.Tenant != "demo" || r.Client != "demo-bearer") {
			t.Errorf("a bad secret of demo-bearer recorded as tenant %q client %q", r.Tenant, r.Client)
		}
	}
}
