package app_test

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"stellaops.org/authority/abi"
	"stellaops.org/authority/host/config"
	"stellaops.org/authority/host/plugin"
)

const adminToken = "admin-token-for-tests-0123456789"

func (e *env) adminReload(token string) response {
	e.t.Helper()
	h := map[string][]string{}
	if token != "" {
		h["Authorization"] = []string{"Bearer " + token}
	}
	return e.do("/admin/reload", reqOpts{headers: h, rawBody: ""})
}

const newClient = `
      - id: late-client
        secretDigest: SECRET
        authMethod: client_secret_basic
        grants: [client_credentials]
        scopes: [demo.read]
        audiences: [demo-api]
  - id: other`

func TestAdminReloadRequiresTheAdminToken(t *testing.T) {
	e := newEnv(t, envOptions{})
	if r := e.adminReload(adminToken); r.status != http.StatusNotFound {
		t.Fatalf("without admin.tokenDigest the endpoint does not exist: %d", r.status)
	}
	e = newEnv(t, envOptions{mutate: func(c *config.Config) { c.Admin.TokenDigest = config.DigestSecret(adminToken) }})
	e.writeConfig(func(d string) string { return d })
	for _, tok := range []string{"", "wrong"} {
		if r := e.adminReload(tok); r.status != http.StatusUnauthorized || r.header.Get("WWW-Authenticate") == "" {
			t.Fatalf("token %q: %d %s", tok, r.status, r.raw)
		}
	}
	if r := e.adminReload(adminToken); r.status != http.StatusOK {
		t.Fatalf("%d %s", r.status, r.raw)
	}
}

// A reload applies new clients without a restart; requests keep working.
func TestReloadAppliesNewClients(t *testing.T) {
	e := newEnv(t, envOptions{mutate: func(c *config.Config) { c.Admin.TokenDigest = config.DigestSecret(adminToken) }})
	secrets["late-client"] = "late-client-secret-value"
	if r := e.token("late-client", nil); r.status != 401 {
		t.Fatalf("unknown before reload: %d", r.status)
	}
	e.writeConfig(func(d string) string {
		return strings.Replace(d, "\n  - id: other", strings.Replace(newClient, "SECRET", config.DigestSecret(secrets["late-client"]), 1), 1)
	})
	if r := e.adminReload(adminToken); r.status != http.StatusOK {
		t.Fatalf("reload: %d %s", r.status, r.raw)
	}
	if r := e.token("late-client", nil); r.status != 200 {
		t.Fatalf("new client after reload: %d %s", r.status, r.raw)
	}
	if !strings.Contains(e.metrics(), `authority_config_reloads_total{result="success"} 1`) {
		t.Fatal("reload not counted")
	}
}

// A failing configuration leaves the running one serving, and the failure
// shows in logs, metrics and /readyz until a reload succeeds.
func TestFailedReloadKeepsTheOldSetServing(t *testing.T) {
	e := newEnv(t, envOptions{mutate: func(c *config.Config) { c.Admin.TokenDigest = config.DigestSecret(adminToken) }})
	e.writeConfig(func(d string) string {
		return d + "\nsecurity:\n  senderConstraints:\n    dpop:\n      replayWindow: 1s\n"
	})
	r := e.adminReload(adminToken)
	if r.status != http.StatusConflict || !strings.Contains(r.raw, "replayWindow") {
		t.Fatalf("%d %s", r.status, r.raw)
	}
	if r := e.token("demo-bearer", url.Values{}); r.status != 200 {
		t.Fatalf("the old set must keep serving: %d %s", r.status, r.raw)
	}
	rz := e.do("/readyz", reqOpts{method: http.MethodGet})
	if rz.status != 200 || !strings.Contains(rz.raw, "last reload failed") {
		t.Fatalf("/readyz: %d %s", rz.status, rz.raw)
	}
	if !strings.Contains(e.metrics(), `authority_config_reloads_total{result="failure"} 1`) {
		t.Fatal("failed reload not counted")
	}
	if !strings.Contains(e.logs.String(), `"msg":"authority.config.reload.failed"`) {
		t.Fatal("failed reload not logged")
	}
	e.writeConfig(func(d string) string { return d })
	if r := e.adminReload(adminToken); r.status != 200 {
		t.Fatalf("%d %s", r.status, r.raw)
	}
	if rz := e.do("/readyz", reqOpts{method: http.MethodGet}); strings.Contains(rz.raw, "last reload failed") {
		t.Fatal("a successful reload clears the failure")
	}
}

// A reload does not wait for the replaced plugin set: behind a slow events
// plugin (200 ms per event, 20 events queued) the reload answers at once,
// the next reload is not blocked, /readyz stays ready, and the old set
// keeps working off its queue in the background.
func TestReloadDoesNotWaitForTheOldPluginSet(t *testing.T) {
	slow := hostileSpec(t, "slowevent", []string{abi.HookEvents})
	slow.Limits.CallTimeout = time.Second
	e := newEnv(t, envOptions{mutate: func(c *config.Config) {
		withPlugins(t, map[string][]plugin.Spec{"demo": {slow}})(c)
		c.Admin.TokenDigest = config.DigestSecret(adminToken)
	}})
	old := e.a.Plugins()
	const events = 20
	for i := 0; i < events; i++ { // each /token queues one audit event
		if r := e.token("demo-bearer", nil); r.status != 200 {
			t.Fatalf("token: %d %s", r.status, r.raw)
		}
	}
	e.writeConfig(func(d string) string { return d })
	start := time.Now()
	for i := 0; i < 2; i++ {
		if r := e.adminReload(adminToken); r.status != http.StatusOK {
			t.Fatalf("reload %d: %d %s", i, r.status, r.raw)
		}
	}
	if el := time.Since(start); el > 2*time.Second {
		t.Fatalf("two reloads took %s: they waited for the old set's %d queued events", el, events)
	}
	if r := e.do("/readyz", reqOpts{method: http.MethodGet}); r.status != http.StatusOK {
		t.Fatalf("/readyz during the old set's close: %d %s", r.status, r.raw)
	}
	if old.Health().Ready {
		t.Fatal("the old set is still open")
	}
	// The old set still delivers what was queued before the swap.
	deadline := time.Now().Add(20 * time.Second)
	for {
		h := old.Health().Plugins[0]
		if h.Calls+h.EventsDropped >= events {
			if h.EventsDropped != 0 {
				t.Fatalf("old set dropped events it had time for: %+v", h)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("old set stopped delivering: %+v", h)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
