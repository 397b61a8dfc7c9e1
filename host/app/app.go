// Package app assembles an Authority from a validated configuration: the
// logger, stores, keys, development PKI, DPoP state, metrics, the OAuth
// service and the HTTP server. cmd/host and the end-to-end tests both start
// the server through it, so what is tested is what runs.
package app

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"

	"stellaops.org/authority/host/audit"
	"stellaops.org/authority/host/config"
	"stellaops.org/authority/host/devpki"
	"stellaops.org/authority/host/dpop"
	"stellaops.org/authority/host/keys"
	"stellaops.org/authority/host/oauth"
	"stellaops.org/authority/host/server"
	"stellaops.org/authority/host/store"
	"stellaops.org/authority/host/store/postgres"
	"stellaops.org/authority/host/telemetry"
	"stellaops.org/authority/host/users"
)

// NewLogger returns the JSON slog logger at level; records logged with a
// traced context carry trace_id and span_id.
func NewLogger(w io.Writer, level string) *slog.Logger {
	var l slog.Level
	_ = l.UnmarshalText([]byte(level))
	return slog.New(telemetry.LogHandler(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: l})))
}

// Authority is an assembled, not yet serving, Authority.
type Authority struct {
	Config  *config.Config
	Server  *server.Server
	Service *oauth.Service
	Metrics *telemetry.Metrics
	Tracing *telemetry.Tracing
	Store   store.TokenStore
	// ConfigPath is re-read by Reload.
	ConfigPath string
	TLSCert    *tls.Certificate
	PKI        *devpki.PKI
	// rawStore is Store without instrumentation (for maintenance calls).
	rawStore store.TokenStore
	closers  []func() error
	// trail is the durable audit trail (nil with audit.sink log).
	trail *trail
	// secret is the pseudonymization secret, read once at start.
	secret []byte
	// users is the password grant's user store with storage.users
	// postgres (nil: each configuration's tenants[].users).
	users users.Store
	// passwords is the KDF limiter, shared across reloads so a reload
	// cannot double the KDF work allowed (restart-only settings).
	passwords *users.Verifier

	// What a reload reuses, and the swappable plugin set.
	redis    redis.UniversalClient
	plugins  pluginHolder
	logSink  audit.LogSink
	log      *slog.Logger
	now      func() time.Time
	verifier *dpop.Verifier
	keys     *keys.Set
	devCA    *x509.Certificate
	reloadMu sync.Mutex
	lastErr  atomic.Pointer[string]
	// retiring tracks replaced plugin sets still closing (see retire);
	// cancelling retireCtx makes them give up at once.
	retiring     sync.WaitGroup
	retireCtx    context.Context
	retireCancel context.CancelFunc
}

// Options adjust Build for tests.
type Options struct {
	// Now is the clock (time.Now when nil).
	Now func() time.Time
	// AuditStore, when set, replaces the store audit.sink selects (fault
	// injection in tests); the configured sink must not be log.
	AuditStore audit.Store
	// Check builds the Authority to find what serve would refuse, and
	// writes to no store: no PostgreSQL migration, no audit writer (whose
	// close would append a checkpoint). Files that serve creates at start
	// (generated development keys, PKI, secrets, the plugin cache) are
	// created as serve would.
	Check bool
}

// Build assembles every component. Close releases them.
func Build(ctx context.Context, cfg *config.Config, log *slog.Logger, o Options) (_ *Authority, err error) {
	if o.Now == nil {
		o.Now = time.Now
	}
	a := &Authority{Config: cfg}
	defer func() {
		if err != nil {
			a.Close()
		}
	}()

	specs := make([]keys.Spec, len(cfg.Signing.Keys))
	for i, k := range cfg.Signing.Keys {
		specs[i] = keys.Spec{KID: k.KID, File: config.ResolvePath(k.File), Active: k.Active, Generate: k.Generate}
	}
	ks, err := keys.Load(specs)
	if err != nil {
		return nil, err
	}

	var devCA *x509.Certificate
	if cfg.TLS.DevPKI != "" {
		pki, err := devpki.Ensure(config.ResolvePath(cfg.TLS.DevPKI), o.Now())
		if err != nil {
			return nil, err
		}
		a.PKI = pki
		devCA = pki.CA
		a.TLSCert = &pki.Server
	}
	if cfg.TLS.CertFile != "" {
		c, err := tls.LoadX509KeyPair(config.ResolvePath(cfg.TLS.CertFile), config.ResolvePath(cfg.TLS.KeyFile))
		if err != nil {
			return nil, fmt.Errorf("tls.certFile: %w", err)
		}
		a.TLSCert = &c
	}

	tenants := make([]string, len(cfg.Tenants))
	for i, t := range cfg.Tenants {
		tenants[i] = t.ID
	}
	tc := cfg.Telemetry
	reader, err := telemetry.OTLPMetricReader(ctx, tc.OTLP.Endpoint, tc.OTLP.Insecure, tc.OTLP.MetricInterval.D())
	if err != nil {
		return nil, fmt.Errorf("telemetry.otlp: %w", err)
	}
	var readers []sdkmetric.Reader
	if reader != nil {
		readers = append(readers, reader)
	}
	if a.Metrics, err = telemetry.New(tenants, cfg.Storage.Tokens, readers...); err != nil {
		return nil, err
	}
	a.closers = append(a.closers, func() error { return a.Metrics.Shutdown(context.Background()) })
	if a.Tracing, err = telemetry.NewTracing(ctx, telemetry.TracingOptions{ServiceName: tc.ServiceName,
		SampleRatio: tc.SampleRatio, OTLPEndpoint: tc.OTLP.Endpoint, OTLPInsecure: tc.OTLP.Insecure}); err != nil {
		return nil, fmt.Errorf("telemetry: %w", err)
	}
	a.closers = append(a.closers, func() error { return a.Tracing.Shutdown(context.Background()) })

	var checks []server.Checker
	var pgStore *postgres.Store
	switch cfg.Storage.Tokens {
	case "postgres":
		pg, err := postgres.Open(ctx, postgres.Options{
			DSN:            cfg.Storage.Postgres.DSN,
			MaxConns:       cfg.Storage.Postgres.MaxConns,
			Schema:         cfg.Storage.Postgres.Schema,
			SkipMigrations: !cfg.Storage.Postgres.MigrateOnStart || o.Check,
			BatchMax:       cfg.Storage.Postgres.BatchMax,
			BatchWait:      cfg.Storage.Postgres.BatchWait.D(),
			Batchers:       cfg.Storage.Postgres.Batchers,
			RequestTimeout: cfg.Storage.Postgres.RequestTimeout.D(),
			CloseTimeout:   cfg.Listen.ShutdownTimeout.D(),
		})
		if err != nil {
			return nil, fmt.Errorf("storage.postgres: %w", err)
		}
		a.Store, pgStore = pg, pg
		if cfg.Storage.Users == "postgres" {
			a.users = pg.Users()
			checks = append(checks, server.Checker{Name: "user-store", Check: a.users.Ping})
		}
	default:
		a.Store = store.NewMemory(store.MemoryOptions{Now: o.Now, Retention: cfg.Storage.Retention.D()})
	}
	a.closers = append(a.closers, a.Store.Close)
	a.rawStore = a.Store
	health := &storeHealth{now: time.Now}
	a.Store = instrumentedStore{TokenStore: a.Store, kind: cfg.Storage.Tokens, metrics: a.Metrics, tracing: a.Tracing, health: health}
	checks = append(checks, server.Checker{Name: "token-store", Check: health.check(a.Store.Ping)})

	var redisState *dpop.RedisState
	if cfg.Security.SenderConstraints.DPoP.Nonce.Store == "redis" || cfg.Plugins.State == "redis" {
		// One address is a single server, or a node of a Redis Cluster;
		// several are a cluster (openRedis).
		rc, err := openRedis(ctx, cfg, log)
		if err != nil {
			return nil, err
		}
		a.redis = rc
		a.closers = append(a.closers, rc.Close)
		if d := cfg.Security.SenderConstraints.DPoP; d.Nonce.Store == "redis" {
			redisState = dpop.NewRedisState(rc, cfg.Storage.Redis.KeyPrefix+"dpop:", dpop.NonceOptions{TTL: d.Nonce.TTL.D(), SingleUse: d.Nonce.SingleUse})
			checkRedisReplayDurability(ctx, rc, log)
		}
		checks = append(checks, server.Checker{Name: "redis", Check: redisCheck(rc, redisState)})
	}

	var verifier *dpop.Verifier
	if d := cfg.Security.SenderConstraints.DPoP; d.Enabled {
		nopts := dpop.NonceOptions{TTL: d.Nonce.TTL.D(), SingleUse: d.Nonce.SingleUse}
		var state dpop.State
		if redisState != nil {
			state = redisState
		} else {
			state = dpop.NewMemoryState(dpop.MemoryOptions{Nonce: nopts, Now: o.Now})
		}
		verifier, err = dpop.NewVerifier(dpop.Config{
			AllowedAlgorithms: d.AllowedAlgorithms,
			ProofLifetime:     d.ProofLifetime.D(),
			AllowedClockSkew:  d.AllowedClockSkew.D(),
			ReplayWindow:      d.ReplayWindow.D(),
			MaxProofBytes:     d.MaxProofBytes,
			Now:               o.Now,
		}, state)
		if err != nil {
			return nil, fmt.Errorf("security.senderConstraints.dpop: %w", err)
		}
	}

	a.logSink = audit.LogSink{Logger: log}
	a.log, a.now, a.verifier, a.keys, a.devCA = log, o.Now, verifier, ks, devCA
	if cfg.Plugins.PseudonymSecretFile != "" {
		if a.secret, err = pseudonymSecret(cfg.Plugins); err != nil {
			return nil, fmt.Errorf("plugins.pseudonymSecretFile: %w", err)
		}
	}
	if a.trail, err = buildTrail(ctx, cfg, log, a.Metrics, pgStore, o, a.secret); err != nil {
		return nil, err
	}
	if a.trail != nil {
		t := a.trail
		// Closed after the plugins (whose last records it takes) and
		// before the token store (whose pool it may share).
		a.closers = append(a.closers, func() error { return t.close(cfg.Listen.ShutdownTimeout.D()) })
		checks = append(checks, server.Checker{Name: "audit", Public: true, Check: t.check})
	}
	mgr, err := buildPlugins(ctx, cfg, log, o.Now, a.Metrics, a.Tracing.Tracer(), a.hostSink(), pluginStateFor(cfg, a.redis), a.secret)
	if err != nil {
		return nil, err
	}
	a.plugins.p.Store(mgr)
	a.retireCtx, a.retireCancel = context.WithCancel(context.Background())
	a.closers = append(a.closers, func() error {
		// Replaced sets still closing give up (their queued events are
		// dropped and counted); the current one gets the shutdown timeout.
		a.retireCancel()
		a.retiring.Wait()
		if m := a.plugins.p.Swap(nil); m != nil {
			ctx, cancel := context.WithTimeout(context.Background(), cfg.Listen.ShutdownTimeout.D())
			defer cancel()
			return m.Close(ctx)
		}
		return nil
	})
	if err := a.Metrics.ObservePlugins(a.plugins.states); err != nil {
		return nil, err
	}
	checks = append(checks, server.Checker{Name: "plugins", Public: true, Check: a.plugins.check},
		server.Checker{Name: "config", Public: true, Check: a.reloadCheck})

	if a.Service, err = a.newService(cfg); err != nil {
		return nil, err
	}
	a.Server, err = server.New(server.Options{
		Config: cfg, Service: a.Service, Keys: ks, Logger: log, Checks: checks, Metrics: a.Metrics.Handler(), Telemetry: a.Metrics, Tracing: a.Tracing,
		Reload: a.Reload, AdminTokenDigest: cfg.Admin.TokenDigest,
	})
	if err != nil {
		return nil, err
	}
	return a, nil
}

// newService builds the OAuth service of cfg on the shared stores, keys,
// DPoP state and plugin holder: every event goes to the log, the plugins and
// the durable trail.
func (a *Authority) newService(cfg *config.Config) (*oauth.Service, error) {
	certs, err := clientCertificates(cfg, a.devCA)
	if err != nil {
		return nil, err
	}
	o := oauth.Options{
		Config: cfg, Keys: a.keys, Store: a.Store, Logger: a.log, Now: a.now, Plugins: &a.plugins,
		Users: a.users, Passwords: a.passwordVerifier(cfg),
		Metrics: a.Metrics, Tracing: a.Tracing, Audit: audit.Multi{a.logSink, &a.plugins},
		DPoP: a.verifier, Certificates: certs,
	}
	if a.trail != nil {
		o.Trail, o.RefuseWithoutTrail, o.TrailTimeout = a.trail.writer, a.trail.refuse, cfg.Audit.WriteTimeout.D()
	}
	return oauth.NewService(o)
}

// passwordVerifier is the one Verifier of the process, built with the
// first configuration that has a password client (nil before: NewService
// then needs none).
func (a *Authority) passwordVerifier(cfg *config.Config) *users.Verifier {
	if a.passwords != nil {
		return a.passwords
	}
	for _, t := range cfg.Tenants {
		for _, c := range t.Clients {
			if slices.Contains(c.Grants, "password") {
				v, err := oauth.NewPasswordVerifier(cfg)
				if err != nil {
					return nil // NewService builds one and reports the error
				}
				a.passwords = v
				return v
			}
		}
	}
	return nil
}

// hostSink receives what the host records outside the OAuth service
// (plugin records and failures, reloads): the log and the durable trail,
// never the plugins.
func (a *Authority) hostSink() audit.Sink {
	if a.trail == nil {
		return a.logSink
	}
	return audit.Multi{a.logSink, a.trail.writer}
}

// degraded is a readiness note that does not fail /readyz: a plugin whose
// circuit is open is answered by its failure mode on every node alike.
type degraded string

func (d degraded) Error() string { return string(d) }

// Degraded marks a readiness error as informational.
func (d degraded) Degraded() bool { return true }

// Close releases stores and exporters in reverse order of creation.
func (a *Authority) Close() error {
	var errs []error
	for i := len(a.closers) - 1; i >= 0; i-- {
		errs = append(errs, a.closers[i]())
	}
	a.closers = nil
	return errors.Join(errs...)
}

// Run builds the Authority from cfg (read from path) and serves until ctx
// ends. SIGHUP reloads path (see Reload).
func Run(ctx context.Context, path string, cfg *config.Config, log *slog.Logger) error {
	a, err := Build(ctx, cfg, log, Options{})
	if err != nil {
		return err
	}
	a.ConfigPath = path
	defer a.Close()
	go a.purgeExpired(ctx, log)
	if a.trail != nil {
		go a.trail.purge(ctx, cfg.Audit, log)
	}
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
				log.InfoContext(ctx, "authority.config.reload", "trigger", "SIGHUP")
				_ = a.Reload(ctx) // logged, counted and shown at /readyz by Reload
			}
		}
	}()
	return a.Server.Serve(ctx, a.TLSCert)
}

// purger is a token store that can delete expired tokens.
type purger interface {
	PurgeExpired(ctx context.Context, before time.Time) (int64, error)
}

// purgeExpired deletes tokens expired for longer than storage.retention,
// every storage.purgeInterval, until ctx ends.
func (a *Authority) purgeExpired(ctx context.Context, log *slog.Logger) {
	p, ok := a.rawStore.(purger)
	if !ok {
		return
	}
	// storage is restart-only, so the values built with the store are the
	// ones that hold; they are read under reloadMu, because Reload replaces
	// a.Config while this loop runs.
	a.reloadMu.Lock()
	interval, retention := a.Config.Storage.PurgeInterval.D(), a.Config.Storage.Retention.D()
	a.reloadMu.Unlock()
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			n, err := p.PurgeExpired(ctx, now.Add(-retention))
			if err != nil && ctx.Err() == nil {
				log.Warn("authority.store.purge.failed", "error", err.Error())
				continue
			}
			if n > 0 {
				log.Info("authority.store.purged", "tokens", n)
			}
		}
	}
}

// Check builds the Authority of cfg as serve would, without listening and
// without writing to its stores, and closes it: every configuration serve
// refuses at start (a plugin digest or signature, a certificate, a trust
// root, a key, an unreachable or misconfigured store) is refused here too.
func Check(ctx context.Context, cfg *config.Config, log *slog.Logger) error {
	a, err := Build(ctx, cfg, log, Options{Check: true})
	if err != nil {
		return err
	}
	return a.Close()
}

// Migrate applies the PostgreSQL migrations of storage.postgres.
func Migrate(ctx context.Context, cfg *config.Config) error {
	if cfg.Storage.Postgres.DSN == "" {
		return errors.New("storage.postgres.dsn: required (or set AUTHORITY_POSTGRES_DSN)")
	}
	_, err := postgres.MigrateDSN(ctx, cfg.Storage.Postgres.DSN, cfg.Storage.Postgres.Schema)
	return err
}
