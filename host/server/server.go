// Package server is the HTTP face of the Authority: routes, request parsing
// and size limits, OAuth error rendering, correlation ids and structured
// request logs, the plain and the mTLS listeners, and graceful shutdown.
// Everything an endpoint decides lives in host/oauth.
//
// One file a job: server.go (the Server and its routes), middleware.go
// (correlation ids, spans, panic recovery), form.go (form and credential
// parsing), clientaddr.go (the client address behind trusted proxies),
// endpoints.go (the OAuth endpoints' handlers), errors.go (OAuth error and
// answer rendering), readiness.go (/readyz), admin.go (/admin/reload),
// listen.go (the listeners, the profiler, shutdown).
package server

import (
	"context"
	"encoding/hex"
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"sync/atomic"

	"github.com/gin-gonic/gin"

	"stellaops.org/authority/host/config"
	"stellaops.org/authority/host/keys"
	"stellaops.org/authority/host/mtls"
	"stellaops.org/authority/host/oauth"
	"stellaops.org/authority/host/telemetry"
)

// Server serves the Authority endpoints.
type Server struct {
	cfg       *config.Config
	svc       atomic.Pointer[oauth.Service]
	reload    func(context.Context) error
	adminKey  [32]byte
	hasAdmin  bool
	keys      *keys.Set
	log       *slog.Logger
	extractor *mtls.Extractor
	checks    []Checker
	metrics   http.Handler
	telemetry *telemetry.Metrics
	tracing   *telemetry.Tracing
	// inFlight counts the OAuth requests being worked on (limits.maxInFlight).
	inFlight  atomic.Int64
	engine    *gin.Engine
	mtlsAlias *gin.Engine
}

// Options are a Server's dependencies.
type Options struct {
	Config  *config.Config
	Service *oauth.Service
	Keys    *keys.Set
	Logger  *slog.Logger
	// Checks run at /readyz.
	Checks []Checker
	// Metrics serves /metrics (Prometheus text).
	Metrics http.Handler
	// Telemetry records request durations (nil: not recorded).
	Telemetry *telemetry.Metrics
	// Tracing starts a span per request, continuing a caller's W3C trace
	// context (nil: no spans).
	Tracing *telemetry.Tracing
	// Reload re-reads the configuration (POST /admin/reload).
	Reload func(context.Context) error
	// AdminTokenDigest ("sha256:<hex>") authenticates /admin/reload with
	// `Authorization: Bearer <token>`; empty disables the endpoint.
	AdminTokenDigest string
}

// SetService swaps the OAuth service atomically (hot reload): requests
// already inside the old one finish there.
func (s *Server) SetService(svc *oauth.Service) { s.svc.Store(svc) }

// New builds the handlers of both listeners.
func New(o Options) (*Server, error) {
	gin.SetMode(gin.ReleaseMode)
	s := &Server{
		cfg:       o.Config,
		reload:    o.Reload,
		keys:      o.Keys,
		log:       o.Logger,
		checks:    o.Checks,
		metrics:   o.Metrics,
		telemetry: o.Telemetry,
		tracing:   o.Tracing,
		extractor: &mtls.Extractor{TrustedProxies: o.Config.TrustedProxyPrefixes(),
			TrustOverTLS: o.Config.Security.TrustProxyHeadersOnHTTPS},
	}
	s.svc.Store(o.Service)
	if o.AdminTokenDigest != "" {
		raw, err := hex.DecodeString(strings.TrimPrefix(o.AdminTokenDigest, "sha256:"))
		if err != nil || len(raw) != 32 {
			return nil, errors.New("admin.tokenDigest: malformed")
		}
		copy(s.adminKey[:], raw)
		s.hasAdmin = true
	}
	s.engine = s.routes(false)
	s.mtlsAlias = s.routes(true)
	return s, nil
}

// Handler is the plain listener's handler (issuer URL).
func (s *Server) Handler() http.Handler { return s.engine }

// MTLSHandler is the HTTPS listener's handler (the mTLS alias URL).
func (s *Server) MTLSHandler() http.Handler { return s.mtlsAlias }

func (s *Server) routes(viaMTLS bool) *gin.Engine {
	e := gin.New()
	e.HandleMethodNotAllowed = true
	e.ContextWithFallback = true
	e.Use(s.recoverer(), s.correlate(viaMTLS))
	e.NoRoute(func(c *gin.Context) {
		writeError(c, &oauth.Error{Status: 404, Code: "not_found", Description: "no such endpoint"})
	})
	e.NoMethod(func(c *gin.Context) {
		writeError(c, &oauth.Error{Status: 405, Code: CodeMethodNotAllowed, Description: "method not allowed"})
	})
	e.POST("/token", s.form(viaMTLS, s.token))
	e.POST("/introspect", s.form(viaMTLS, s.introspect))
	e.POST("/revoke", s.form(viaMTLS, s.revoke))
	e.POST("/fresh-auth", s.form(viaMTLS, s.freshAuth))
	e.GET("/jwks", s.jwks)
	e.GET("/.well-known/oauth-authorization-server", s.wellKnown)
	e.GET("/.well-known/openid-configuration", s.wellKnown)
	e.GET("/healthz", func(c *gin.Context) { c.JSON(200, gin.H{"status": "ok"}) })
	e.GET("/readyz", s.readyz)
	e.POST("/admin/reload", s.adminReload)
	if s.metrics != nil {
		e.GET("/metrics", gin.WrapH(s.metrics))
	}
	return e
}
