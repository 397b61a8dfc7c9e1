package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"stellaops.org/authority/host/audit"
	"stellaops.org/authority/host/config"
	"stellaops.org/authority/host/plugin"
	"stellaops.org/authority/host/store/postgres"
	"stellaops.org/authority/host/telemetry"
)

// trail is the running audit trail: the durable store, its writer and how
// records pseudonymize personal data.
type trail struct {
	store  audit.Store
	writer *audit.Writer
	pseudo *pseudonyms
	refuse bool
	// closeStore is false when the store shares the token store's pool.
	closeStore bool
}

// AuditNode is the chain id of this node: audit.node, else the host name.
func AuditNode(cfg *config.Config) (string, error) {
	if cfg.Audit.Node != "" {
		return cfg.Audit.Node, nil
	}
	h, err := os.Hostname()
	if err != nil || h == "" {
		return "", fmt.Errorf("audit.node: not set and the host name is unknown (%v)", err)
	}
	return h, nil
}

// OpenAuditStore opens the store audit.sink selects (nil for log). pg is
// the running token store, whose pool the table shares; without it (memory
// tokens with audit.sink postgres, or the audit CLI) the table is opened
// on storage.postgres.dsn, and migrated first when migrate is set.
func OpenAuditStore(ctx context.Context, cfg *config.Config, pg *postgres.Store, migrate bool) (audit.Store, bool, error) {
	switch cfg.AuditSink() {
	case "file":
		s, err := audit.OpenFile(config.ResolvePath(cfg.Audit.File))
		if err != nil {
			return nil, false, fmt.Errorf("audit.file: %w", err)
		}
		return s, true, nil
	case "postgres":
		if pg != nil {
			return pg.Audit(), false, nil
		}
		s, err := postgres.OpenAuditDSN(ctx, cfg.Storage.Postgres.DSN, cfg.Storage.Postgres.Schema, migrate)
		if err != nil {
			return nil, false, fmt.Errorf("audit (storage.postgres): %w", err)
		}
		return s, true, nil
	}
	return nil, false, nil
}

// buildTrail opens the audit sink and starts its writer; nil with
// audit.sink log.
func buildTrail(ctx context.Context, cfg *config.Config, log *slog.Logger, m *telemetry.Metrics, pg *postgres.Store, o Options, secret []byte) (*trail, error) {
	if cfg.AuditSink() == "log" {
		log.Warn("authority.audit.sink.none", "detail", "audit records go to the log only: no durable, verifiable trail (set audit.file or use PostgreSQL)")
		return nil, nil
	}
	if secret == nil {
		return nil, errors.New("plugins.pseudonymSecretFile: required by the audit sink")
	}
	key, err := audit.LoadSigningKey(config.ResolvePath(cfg.Audit.SigningKeyFile), cfg.Audit.GenerateKey)
	if err != nil {
		return nil, fmt.Errorf("audit.signingKeyFile: %w", err)
	}
	node, err := AuditNode(cfg)
	if err != nil {
		return nil, err
	}
	st, closeStore := o.AuditStore, false
	if st == nil {
		if st, closeStore, err = OpenAuditStore(ctx, cfg, pg, cfg.Storage.Postgres.MigrateOnStart && !o.Check); err != nil {
			return nil, err
		}
	}
	if o.Check {
		// The key loads and the store opens; a writer would append a
		// checkpoint when closed.
		if closeStore {
			st.Close()
		}
		return nil, nil
	}
	t := &trail{store: st, pseudo: newPseudonyms(secret, cfg), refuse: cfg.Audit.OnFailure == config.OnFailureRefuse, closeStore: closeStore}
	// The gauge is registered before the writer runs (it counts from its
	// first record on); it reads the writer once there is one.
	var live atomic.Pointer[audit.Writer]
	if err := m.ObserveAudit(func() int {
		if w := live.Load(); w != nil {
			return w.QueueDepth()
		}
		return 0
	}); err != nil {
		if closeStore {
			st.Close()
		}
		return nil, err
	}
	a := cfg.Audit
	t.writer, err = audit.NewWriter(ctx, audit.WriterOptions{Node: node, Store: st, Signer: audit.NewSigner(key),
		Pseudonymizer: t.pseudo, QueueSize: a.QueueSize, BatchMax: a.BatchMax, BatchWait: batchWait(a.BatchWait.D()), CheckpointInterval: a.CheckpointInterval.D(),
		WriteTimeout: a.WriteTimeout.D(), Observer: m, Log: log, Now: o.Now})
	if err != nil {
		if closeStore {
			st.Close()
		}
		return nil, err
	}
	live.Store(t.writer)
	log.Info("authority.audit.sink", "sink", cfg.AuditSink(), "node", node, "on_failure", a.OnFailure)
	return t, nil
}

// close writes what is queued and a final checkpoint, then closes the
// store it owns.
func (t *trail) close(timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	err := t.writer.Close(ctx)
	if t.closeStore {
		if cerr := t.store.Close(); err == nil {
			err = cerr
		}
	}
	return err
}

// check is the /readyz check of the trail: failing under
// audit.onFailure refuse (this node refuses tokens), a note otherwise.
func (t *trail) check(context.Context) error {
	err := t.writer.Admit()
	if err == nil {
		return nil
	}
	// The cause (a DSN, a path) stays in the log: /readyz is public.
	msg := fmt.Sprintf("audit sink unavailable: records are queued or dropped (%d dropped so far; see authority.audit.sink.failed)", t.writer.Dropped())
	if t.refuse {
		return publicError(msg + "; tokens are refused (audit.onFailure refuse)")
	}
	return degraded(msg)
}

type publicError string

func (e publicError) Error() string { return string(e) }

// purge deletes audit records older than audit.retention every
// audit.purgeInterval until ctx ends.
func (t *trail) purge(ctx context.Context, cfg config.Audit, log *slog.Logger) {
	if cfg.Retention.D() <= 0 {
		return
	}
	tk := time.NewTicker(cfg.PurgeInterval.D())
	defer tk.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-tk.C:
			n, err := t.store.Purge(ctx, now.Add(-cfg.Retention.D()))
			if err != nil && ctx.Err() == nil {
				log.Warn("authority.audit.purge.failed", "error", err.Error())
				continue
			}
			if n > 0 {
				log.Info("authority.audit.purged", "records", n)
			}
		}
	}
}

// pseudonyms implements audit.Pseudonymizer with the tenants' keys (the
// same pseudonyms the pseudonymize host function gives plugins) and each
// tenant's tenants[].audit choice for the client address.
type pseudonyms struct {
	secret tenantSecrets
	keys   sync.Map // tenant -> *plugin.Pseudonymizer
	net    atomic.Pointer[map[string]config.TenantAudit]
}

func newPseudonyms(secret []byte, cfg *config.Config) *pseudonyms {
	p := &pseudonyms{secret: tenantSecrets(secret)}
	p.update(cfg)
	return p
}

// update takes the tenants' choices of a (reloaded) configuration.
func (p *pseudonyms) update(cfg *config.Config) {
	m := make(map[string]config.TenantAudit, len(cfg.Tenants))
	for _, t := range cfg.Tenants {
		m[t.ID] = t.Audit
	}
	p.net.Store(&m)
}

func (p *pseudonyms) of(tenant string) *plugin.Pseudonymizer {
	if ps, ok := p.keys.Load(tenant); ok {
		return ps.(*plugin.Pseudonymizer)
	}
	k, _ := p.secret.PseudonymKey(context.Background(), tenant)
	ps, _ := p.keys.LoadOrStore(tenant, plugin.NewPseudonymizer(k))
	return ps.(*plugin.Pseudonymizer)
}

// Pseudonym implements audit.Pseudonymizer.
func (p *pseudonyms) Pseudonym(tenant, v string) (string, error) {
	return p.of(tenant).String(v), nil
}

// Network implements audit.Pseudonymizer: the address's pseudonym, or its
// network under truncate. An address that does not parse is pseudonymized.
func (p *pseudonyms) Network(tenant, v string) (string, error) {
	ta := (*p.net.Load())[tenant]
	if ta.Network == "truncate" {
		if addr, err := netip.ParseAddr(v); err == nil {
			addr = addr.Unmap()
			bits := ta.IPv4Prefix
			if bits == 0 {
				bits = 24
			}
			if addr.Is6() {
				bits = ta.IPv6Prefix
				if bits == 0 {
					bits = 48
				}
			}
			pfx, err := addr.WithZone("").Prefix(bits)
			if err == nil {
				return pfx.String(), nil
			}
		}
	}
	return p.Pseudonym(tenant, v)
}

// batchWait maps audit.batchWait onto WriterOptions.BatchWait (where 0
// means the default): a configured 0 is "do not wait".
func batchWait(d time.Duration) time.Duration {
	if d == 0 {
		return -1
	}
	return d
}
