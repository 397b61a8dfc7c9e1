package app

// TenantSecrets derives the tenants' pseudonymization keys (tests compute
// the pseudonyms a record must hold).
type TenantSecrets = tenantSecrets
