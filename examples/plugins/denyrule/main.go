// Command denyrule is an example Authority policy plugin: it denies token,
// introspection and fresh-auth requests by a rule configured per tenant.
//
// Configuration (the plugin's config document in authority.yaml):
//
//	config:
//	  deniedClients: [legacy-batch]      # deny these client ids
//	  requiredScopes: [openid]           # deny requests missing any of these
//	  requireSenderConstraint: true      # deny bearer (unconstrained) requests
//
// Build:
//
//	GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o denyrule.wasm ./examples/plugins/denyrule
//
// Grants needed: config.
package main

import (
	"encoding/json"

	"stellaops.org/authority/abi"
	"stellaops.org/authority/sdk"
)

type rules struct {
	DeniedClients           []string `json:"deniedClients"`
	RequiredScopes          []string `json:"requiredScopes"`
	RequireSenderConstraint bool     `json:"requireSenderConstraint"`
}

// Set once in init (each instance serves one tenant, so this is that
// tenant's rule set); read-only afterwards.
var (
	cfg    rules
	denied = map[string]bool{}
)

func init() {
	// encoding/json runs once per instance here, never per decision.
	if b := sdk.Config(); len(b) > 0 {
		if err := json.Unmarshal(b, &cfg); err != nil {
			panic("denyrule: bad config: " + err.Error()) // the host refuses to start the instance
		}
	}
	for _, c := range cfg.DeniedClients {
		denied[c] = true
	}
	sdk.HandleDecision(decide)
}

func decide(in *abi.DecisionInput) abi.Decision {
	if denied[in.Client] {
		return abi.Denied(403, "access_denied", "client denied by tenant rule")
	}
	if cfg.RequireSenderConstraint && (in.SenderConstraint == "" || in.SenderConstraint == abi.ConstraintNone || in.SenderConstraint == abi.ConstraintBypass) {
		return abi.Denied(400, "invalid_request", "tenant requires DPoP or mTLS sender constraint")
	}
	for _, want := range cfg.RequiredScopes {
		found := false
		for _, s := range in.Scopes {
			if s == want {
				found = true
				break
			}
		}
		if !found {
			return abi.Denied(403, "invalid_scope", "required scope missing: "+want)
		}
	}
	return abi.Allowed()
}

func main() {}
