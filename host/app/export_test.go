package app

import "stellaops.org/authority/host/plugin"

// TenantSecrets derives the tenants' pseudonymization keys (tests compute
// the pseudonyms a record must hold).
type TenantSecrets = tenantSecrets

// Plugins returns the current plugin manager (nil without plugins).
func (a *Authority) Plugins() *plugin.Manager { return a.plugins.p.Load() }
