package main

import (
	"testing"

	"stellaops.org/authority/abi"
	"stellaops.org/authority/sdk/sdktest"
)

// TestSameModuleTenantADeniedTenantBAllowed loads one module for two
// tenants: A's rule denies client "svc-batch", B's does not.
func TestSameModuleTenantADeniedTenantBAllowed(t *testing.T) {
	wasm := sdktest.Build(t, ".")
	grants := []string{"config"}
	p, err := sdktest.StartTenants(wasm, map[string]sdktest.Options{
		"tenant-a": {Grants: grants, Config: map[string]any{"deniedClients": []any{"svc-batch"}}},
		"tenant-b": {Grants: grants, Config: map[string]any{"deniedClients": []any{"someone-else"}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Manager.Close(t.Context()) })
	in := abi.DecisionInput{Client: "svc-batch", Grant: "client_credentials", Scopes: []string{"read"}}
	a, err := p.DecideFor("tenant-a", in)
	if err != nil || a.Allow || a.Status != 403 || a.Error != "access_denied" {
		t.Fatalf("tenant-a: %+v %v", a, err)
	}
	b, err := p.DecideFor("tenant-b", in)
	if err != nil || !b.Allow {
		t.Fatalf("tenant-b: %+v %v", b, err)
	}
}

func TestRules(t *testing.T) {
	wasm := sdktest.Build(t, ".")
	p := sdktest.Run(t, wasm, sdktest.Options{Grants: []string{"config"},
		Config: map[string]any{"requiredScopes": []any{"openid"}, "requireSenderConstraint": true}})
	cases := []struct {
		name   string
		in     abi.DecisionInput
		status int
	}{
		{"ok", abi.DecisionInput{Scopes: []string{"openid"}, SenderConstraint: "dpop"}, 0},
		{"missing scope", abi.DecisionInput{Scopes: []string{"read"}, SenderConstraint: "dpop"}, 403},
		{"bearer", abi.DecisionInput{Scopes: []string{"openid"}, SenderConstraint: "none"}, 400},
		{"bypass", abi.DecisionInput{Scopes: []string{"openid"}, SenderConstraint: "bypass"}, 400},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			d, err := p.Decide(c.in)
			if err != nil {
				t.Fatal(err)
			}
			if (c.status == 0) != d.Allow || (c.status != 0 && d.Status != c.status) {
				t.Fatalf("got %+v, want status %d", d, c.status)
			}
		})
	}
}

// TestUngrantedConfigRefused: without the config grant the module cannot load.
func TestUngrantedConfigRefused(t *testing.T) {
	wasm := sdktest.Build(t, ".")
	if _, err := sdktest.Start(wasm, sdktest.Options{Grants: []string{}}); err == nil {
		t.Fatal("module importing config_get loaded without the config grant")
	}
}
