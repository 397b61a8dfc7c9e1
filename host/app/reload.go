package app

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"time"

	"stellaops.org/authority/host/audit"
	"stellaops.org/authority/host/config"
	"stellaops.org/authority/host/plugin"
)

// Reload re-reads the configuration file and swaps in its clients, tenants,
// sender-constraint policies and plugin set. The new set is validated,
// compiled and warmed first; only then are the OAuth service and the
// plugin set swapped (atomically, each), and the old plugin set closes
// in the background, outside the reload lock, once its in-flight calls and
// queued events finish (at most oldPluginSetGrace; then what is left is
// dropped and counted), so a slow old set delays neither the next reload
// nor the answer to this one. A failing set leaves the old one serving; the failure is logged, counted and shown at /readyz until a
// reload succeeds. Sections that need a restart (listeners, TLS, signing
// keys, storage, DPoP verification, telemetry, limits) keep their running
// values, and a warning names them.
func (a *Authority) Reload(ctx context.Context) error {
	a.reloadMu.Lock()
	defer a.reloadMu.Unlock()
	err := a.reload(ctx)
	a.Metrics.ConfigReload(ctx, err == nil)
	ev := audit.Event{Type: audit.EventConfigReload, Outcome: audit.OutcomeSuccess, Time: a.now().UTC()}
	if err != nil {
		ev.Outcome, ev.Reason = audit.OutcomeFailure, "invalid-configuration"
	}
	a.hostSink().Record(ctx, ev)
	if err != nil {
		// /readyz is unauthenticated: it says that the reload failed and when,
		// the reason (paths, keys) is in the log record.
		msg := "last reload failed at " + time.Now().UTC().Format(time.RFC3339) + " (see authority.config.reload.failed in the logs)"
		a.lastErr.Store(&msg)
		a.log.ErrorContext(ctx, "authority.config.reload.failed", "path", a.ConfigPath, "error", err.Error())
		return err
	}
	a.lastErr.Store(nil)
	a.log.InfoContext(ctx, "authority.config.reloaded", "path", a.ConfigPath)
	return nil
}

func (a *Authority) reload(ctx context.Context) error {
	if a.ConfigPath == "" {
		return errors.New("no configuration file to reload")
	}
	cfg, err := config.Load(a.ConfigPath)
	if err != nil {
		return err
	}
	if changed := restartOnly(a.Config, cfg); len(changed) > 0 {
		a.log.WarnContext(ctx, "authority.config.reload.restart_required", "sections", changed)
		keepRunning(cfg, a.Config)
	}
	mgr, err := buildPlugins(ctx, cfg, a.log, a.now, a.Metrics, a.Tracing.Tracer(), a.hostSink(), pluginStateFor(cfg, a.redis), a.secret)
	if err != nil {
		return err
	}
	svc, err := a.newService(cfg)
	if err != nil {
		if mgr != nil {
			_ = mgr.Close(context.Background())
		}
		return err
	}
	old := a.plugins.p.Swap(mgr)
	a.Server.SetService(svc)
	a.Service, a.Config = svc, cfg
	if a.trail != nil {
		a.trail.pseudo.update(cfg)
	}
	if old != nil {
		a.retire(old)
	}
	return nil
}

// oldPluginSetGrace bounds how long a replaced plugin set may take to
// finish its in-flight calls and queued events.
const oldPluginSetGrace = 30 * time.Second

// retire closes a replaced plugin set in the background, within
// oldPluginSetGrace or until the Authority closes, whichever comes first.
// Calls that raced the swap onto it are retried on the new set (see
// pluginHolder.Decide).
func (a *Authority) retire(old *plugin.Manager) {
	a.retiring.Add(1)
	go func() {
		defer a.retiring.Done()
		ctx, cancel := context.WithTimeout(a.retireCtx, oldPluginSetGrace)
		defer cancel()
		if err := old.Close(ctx); err != nil {
			a.log.Warn("authority.plugins.close", "error", err.Error())
		}
	}()
}

// reloadCheck is the /readyz detail of the last reload: a failed reload
// does not make the node unready (the previous set still serves), but it
// is shown until a reload succeeds.
func (a *Authority) reloadCheck(context.Context) error {
	if msg := a.lastErr.Load(); msg != nil {
		return degraded(*msg)
	}
	return nil
}

// restartOnly lists the sections that differ between old and new and that
// a reload cannot apply.
func restartOnly(old, new *config.Config) []string {
	var out []string
	for _, s := range restartSections {
		if !reflect.DeepEqual(s.get(old), s.get(new)) {
			out = append(out, s.name)
		}
	}
	return out
}

// keepRunning copies the restart-only sections of running into cfg, so the
// reloaded configuration describes what actually runs.
func keepRunning(cfg, running *config.Config) {
	cfg.Issuer, cfg.MTLSIssuer = running.Issuer, running.MTLSIssuer
	cfg.Listen, cfg.TLS, cfg.Signing, cfg.Storage = running.Listen, running.TLS, running.Signing, running.Storage
	cfg.Security.SenderConstraints.DPoP = running.Security.SenderConstraints.DPoP
	cfg.Security.TrustedProxies = running.Security.TrustedProxies
	cfg.Security.Passwords = running.Security.Passwords
	cfg.Telemetry, cfg.Logging, cfg.Limits, cfg.Admin = running.Telemetry, running.Logging, running.Limits, running.Admin
	cfg.Audit = running.Audit
	cfg.Plugins.PseudonymSecretFile, cfg.Plugins.GenerateSecret = running.Plugins.PseudonymSecretFile, running.Plugins.GenerateSecret
}

var restartSections = []struct {
	name string
	get  func(*config.Config) any
}{
	// Compared in canonical form: adding or dropping a trailing slash
	// changes no URL the server emits.
	{"issuer", func(c *config.Config) any { return [2]string{c.IssuerID(), strings.TrimRight(c.MTLSIssuer, "/")} }},
	{"listen", func(c *config.Config) any { return c.Listen }},
	{"tls", func(c *config.Config) any { return c.TLS }},
	{"signing", func(c *config.Config) any { return c.Signing }},
	{"storage", func(c *config.Config) any { return c.Storage }},
	{"audit", func(c *config.Config) any { return c.Audit }},
	{"plugins.pseudonymSecretFile", func(c *config.Config) any {
		return [2]any{c.Plugins.PseudonymSecretFile, c.Plugins.GenerateSecret}
	}},
	{"security.senderConstraints.dpop", func(c *config.Config) any { return c.Security.SenderConstraints.DPoP }},
	{"security.trustedProxies", func(c *config.Config) any { return c.Security.TrustedProxies }},
	// One KDF limiter serves every configuration: a reload must not be a
	// way to double the KDF work allowed.
	{"security.passwords", func(c *config.Config) any { return c.Security.Passwords }},
	{"telemetry", func(c *config.Config) any { return c.Telemetry }},
	{"logging", func(c *config.Config) any { return c.Logging }},
	{"limits", func(c *config.Config) any { return c.Limits }},
	{"admin", func(c *config.Config) any { return c.Admin }},
}
