// Command realistic is a test guest shaped like a SEC5 enforcement rule
// set: it reads its rules from the config at init and evaluates them per
// decision without host calls.
package main

import (
	"encoding/json"

	"stellaops.org/authority/abi"
	"stellaops.org/authority/sdk"
)

type rules struct {
	DeniedClients  []string `json:"deniedClients"`
	MTLSAudiences  []string `json:"mtlsAudiences"`
	DPoPAudiences  []string `json:"dpopAudiences"`
	RequiredScopes []string `json:"requiredScopes"`
	AllowedAlgs    []string `json:"allowedAlgs"`
}

var (
	cfg    rules
	denied = map[string]bool{}
	// passed is returned by every allow: the SDK encodes it before the
	// next call, so sharing it saves an allocation (~1-3 µs in a guest).
	passed = []abi.KV{{Key: "rule", Value: "pass"}}
)

func contains(list []string, v string) bool {
	for _, x := range list {
		if x == v {
			return true
		}
	}
	return false
}

func init() {
	if b := sdk.Config(); len(b) > 0 {
		_ = json.Unmarshal(b, &cfg)
	}
	for _, c := range cfg.DeniedClients {
		denied[c] = true
	}
	sdk.HandleDecision(decide)
}

func decide(in *abi.DecisionInput) abi.Decision {
	if denied[in.Client] {
		return abi.Denied(403, "access_denied", "client is denied by tenant policy")
	}
	for _, aud := range in.Audiences {
		if contains(cfg.MTLSAudiences, aud) && !(in.MTLS.Present && in.MTLS.Result == abi.MTLSOK) {
			return abi.Denied(401, "invalid_client", "audience requires mTLS-bound tokens")
		}
		if contains(cfg.DPoPAudiences, aud) && !(in.DPoP.Present && in.DPoP.Valid) {
			return abi.Denied(400, "invalid_dpop_proof", "audience requires DPoP")
		}
	}
	if in.DPoP.Present && len(cfg.AllowedAlgs) > 0 && !contains(cfg.AllowedAlgs, in.DPoP.Alg) {
		return abi.Denied(400, "invalid_dpop_proof", "DPoP algorithm not allowed for tenant")
	}
	for _, s := range cfg.RequiredScopes {
		if !contains(in.Scopes, s) {
			return abi.Denied(403, "invalid_scope", "missing required scope")
		}
	}
	return abi.Decision{Allow: true, Annotations: passed}
}

func main() {}
