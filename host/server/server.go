// Package server is the HTTP face of the Authority: routes, request parsing
// and size limits, OAuth error rendering, correlation ids and structured
// request logs, the plain and the mTLS listeners, and graceful shutdown.
// Everything an endpoint decides lives in host/oauth.
package server

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"net/http/pprof"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gin-gonic/gin"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"stellaops.org/authority/host/config"
	"stellaops.org/authority/host/keys"
	"stellaops.org/authority/host/mtls"
	"stellaops.org/authority/host/oauth"
	"stellaops.org/authority/host/telemetry"
)

// Checker reports whether a dependency is ready (readyz).
type Checker struct {
	Name  string
	Check func(context.Context) error
	// Public: the error text is safe to show at /readyz (it names no
	// internals such as addresses or credentials).
	Public bool
}

// degradedError is a readiness error that is reported but does not make
// the node unready.
type degradedError interface{ Degraded() bool }

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
	proxies   []netip.Prefix
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
		proxies: o.Config.TrustedProxyPrefixes(),
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

// CodeMethodNotAllowed is the error code of 405 answers.
const CodeMethodNotAllowed = "method_not_allowed"

type ctxKey int

const correlationKey ctxKey = 1

// CorrelationID returns the request's correlation id.
func CorrelationID(ctx context.Context) string {
	v, _ := ctx.Value(correlationKey).(string)
	return v
}

func (s *Server) correlate(viaMTLS bool) gin.HandlerFunc {
	listener := "http"
	if viaMTLS {
		listener = "https"
	}
	return func(c *gin.Context) {
		start := time.Now()
		id := c.GetHeader("X-Correlation-ID")
		if !validCorrelation(id) {
			id = newCorrelationID()
		}
		c.Header("X-Correlation-ID", id)
		ctx := context.WithValue(c.Request.Context(), correlationKey, id)
		route := c.FullPath()
		if route == "" {
			route = RouteUnmatched
		}
		// The raw method is the client's string: only its bounded form
		// reaches the span, the metric and the log line.
		method := telemetry.HTTPMethod(c.Request.Method)
		var span trace.Span
		if s.tracing != nil {
			ctx = s.tracing.Propagator().Extract(ctx, propagation.HeaderCarrier(c.Request.Header))
			name, attrs := requestSpan(c.Request.Method, route)
			ctx, span = s.tracing.Tracer().Start(ctx, name, trace.WithSpanKind(trace.SpanKindServer),
				trace.WithAttributes(attrs...),
				trace.WithAttributes(attribute.String("authority.listener", listener), attribute.String("authority.correlation_id", id)))
		}
		c.Request = c.Request.WithContext(ctx)
		c.Next()
		elapsed := time.Since(start)
		if span != nil {
			span.SetAttributes(attribute.Int("http.response.status_code", c.Writer.Status()))
			if c.Writer.Status() >= 500 {
				span.SetStatus(codes.Error, http.StatusText(c.Writer.Status()))
			}
			span.End()
		}
		s.telemetry.HTTPRequest(c.Request.Context(), route, method, c.Writer.Status(), elapsed)
		lvl := slog.LevelInfo
		if c.Writer.Status() >= 500 {
			lvl = slog.LevelError
		}
		s.log.LogAttrs(c.Request.Context(), lvl, "authority.http.request",
			slog.String("correlation_id", id),
			slog.String("listener", listener),
			slog.String("method", method),
			slog.String("route", route),
			slog.Int("status", c.Writer.Status()),
			slog.Duration("duration", elapsed),
		)
	}
}

// RouteUnmatched is the route label of a request that matched no route
// template (404, and 405 for a path served under other methods): the raw
// path never becomes a label or a span name.
const RouteUnmatched = "unmatched"

// requestSpan returns the name and HTTP attributes of a request's server
// span under the OpenTelemetry HTTP semantic conventions: "{method}
// {route}", with a method outside telemetry.HTTPMethods named "HTTP" and
// recorded as http.request.method "_OTHER" plus a truncated, printable
// http.request.method_original.
func requestSpan(rawMethod, route string) (string, []attribute.KeyValue) {
	method := telemetry.HTTPMethod(rawMethod)
	attrs := []attribute.KeyValue{attribute.String("http.request.method", method), attribute.String("http.route", route)}
	if method == telemetry.MethodOther {
		attrs = append(attrs, attribute.String("http.request.method_original", telemetry.MethodOriginal(rawMethod)))
		return "HTTP " + route, attrs
	}
	return method + " " + route, attrs
}

func (s *Server) recoverer() gin.HandlerFunc {
	return func(c *gin.Context) {
		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					panic(v)
				}
				s.log.Error("authority.http.panic", "correlation_id", CorrelationID(c.Request.Context()), "panic", fmt.Sprint(v))
				writeError(c, oauth.ErrServer(fmt.Errorf("panic: %v", v)))
				c.Abort()
			}
		}()
		c.Next()
	}
}

func validCorrelation(id string) bool {
	if len(id) < 8 || len(id) > 64 {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}

func newCorrelationID() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

type formHandler func(c *gin.Context, r *oauth.Request)

// form parses an application/x-www-form-urlencoded POST body under the
// configured size limit and builds the oauth.Request.
func (s *Server) form(viaMTLS bool, h formHandler) gin.HandlerFunc {
	return func(c *gin.Context) {
		if max := int64(s.cfg.Limits.MaxInFlight); max > 0 {
			if n := s.inFlight.Add(1); n > max {
				s.inFlight.Add(-1)
				e := oauth.ErrUnavailable("in-flight-limit", nil)
				s.telemetry.Degraded(c.Request.Context(), e.Reason)
				s.log.WarnContext(c.Request.Context(), "authority.request.refused", "correlation_id", CorrelationID(c.Request.Context()),
					"route", c.FullPath(), "status", e.Status, "error", e.Code, "reason", e.Reason)
				writeError(c, e)
				return
			}
			defer s.inFlight.Add(-1)
		}
		req := c.Request
		r := &oauth.Request{
			Method:        req.Method,
			Path:          c.FullPath(),
			ViaMTLS:       viaMTLS,
			RemoteAddr:    s.clientAddr(req),
			UserAgent:     req.UserAgent(),
			CorrelationID: CorrelationID(req.Context()),
			DPoP:          req.Header.Values("DPoP"),
			Authorization: req.Header.Get("Authorization"),
		}
		ct := req.Header.Get("Content-Type")
		if req.ContentLength != 0 || ct != "" {
			mt, _, err := mime.ParseMediaType(ct)
			if err != nil || mt != "application/x-www-form-urlencoded" {
				writeError(c, oauth.ErrInvalidRequest("the body must be application/x-www-form-urlencoded"))
				return
			}
		}
		req.Body = http.MaxBytesReader(c.Writer, req.Body, s.cfg.Limits.MaxBodyBytes)
		if err := req.ParseForm(); err != nil {
			var mbe *http.MaxBytesError
			if errors.As(err, &mbe) {
				writeError(c, &oauth.Error{Status: http.StatusRequestEntityTooLarge, Code: oauth.CodeInvalidRequest, Description: "request body too large"})
				return
			}
			writeError(c, oauth.ErrInvalidRequest("malformed form body"))
			return
		}
		if len(req.URL.RawQuery) > 0 {
			// Credentials and grant parameters belong in the body only.
			writeError(c, oauth.ErrInvalidRequest("parameters must be sent in the request body, not the query"))
			return
		}
		r.Form = req.PostForm
		if id, pw, ok := req.BasicAuth(); ok {
			r.Creds.Basic, r.Creds.BasicID, r.Creds.BasicPass = true, id, pw
		} else if auth := req.Header.Get("Authorization"); hasScheme(auth, "Basic") {
			writeError(c, oauth.ErrInvalidClient("malformed-basic"))
			return
		}
		if v, ok := r.Form["client_id"]; ok && len(v) == 1 {
			r.Creds.PostID = v[0]
		}
		if v, ok := r.Form["client_secret"]; ok && len(v) == 1 {
			r.Creds.PostSecret, r.Creds.HasPostSecret = v[0], true
		}
		peer, err := s.extractor.FromRequest(req)
		if err != nil {
			s.log.WarnContext(req.Context(), "authority.mtls.header.malformed", "correlation_id", r.CorrelationID, "error", err.Error())
			writeError(c, oauth.ErrInvalidRequest("malformed client certificate header"))
			return
		}
		if peer.IgnoredUntrustedHeader {
			s.svc.Load().CountIgnoredCertHeader()
			s.log.WarnContext(req.Context(), "authority.mtls.header.untrusted", "correlation_id", r.CorrelationID, "remote_addr", req.RemoteAddr)
		}
		r.Peer = peer
		h(c, r)
	}
}

// clientAddr is the client's IP address: the peer's, or, when the peer is a
// trusted proxy on this listener (mtls.Extractor.TrustsPeer: on the HTTPS
// listener only with security.trustProxyHeadersOnHTTPS), the right-most
// X-Forwarded-For entry that is not itself a trusted proxy (entries further
// left are client-controlled).
func (s *Server) clientAddr(req *http.Request) string {
	peer, err := netip.ParseAddrPort(req.RemoteAddr)
	if err != nil {
		return req.RemoteAddr
	}
	ip := peer.Addr().Unmap()
	if !s.extractor.TrustsPeer(req) {
		return ip.String()
	}
	hops := strings.Split(strings.Join(req.Header.Values("X-Forwarded-For"), ","), ",")
	for i := len(hops) - 1; i >= 0; i-- {
		a, err := netip.ParseAddr(strings.TrimSpace(hops[i]))
		if err != nil {
			break
		}
		a = a.Unmap()
		if !s.trusted(a) {
			return a.String()
		}
	}
	return ip.String()
}

func (s *Server) trusted(ip netip.Addr) bool {
	for _, p := range s.proxies {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

func hasScheme(h, scheme string) bool {
	return len(h) >= len(scheme) && strings.EqualFold(h[:len(scheme)], scheme) && (len(h) == len(scheme) || h[len(scheme)] == ' ')
}

// writeError renders an OAuth error (RFC 6749 §5.2) with its headers.
func writeError(c *gin.Context, e *oauth.Error) {
	copyHeader(c, e.Header)
	c.Header("Cache-Control", "no-store")
	c.Header("Pragma", "no-cache")
	body := struct {
		Error       string `json:"error"`
		Description string `json:"error_description,omitempty"`
	}{e.Code, oauth.SafeDescription(e.Description)}
	c.JSON(e.Status, body)
	c.Abort()
}

func (s *Server) logError(c *gin.Context, r *oauth.Request, e *oauth.Error) {
	attrs := []any{"correlation_id", r.CorrelationID, "route", c.FullPath(), "status", e.Status, "error", e.Code, "reason", e.Reason}
	if e.Cause != nil {
		attrs = append(attrs, "cause", e.Cause.Error())
		s.log.ErrorContext(c.Request.Context(), "authority.request.failed", attrs...)
		return
	}
	s.log.InfoContext(c.Request.Context(), "authority.request.refused", attrs...)
}

func (s *Server) fail(c *gin.Context, r *oauth.Request, e *oauth.Error) {
	if e.Status == http.StatusServiceUnavailable && e.Code == oauth.CodeTemporarilyUnavailable && e.Reason != "plugin-deny" {
		s.telemetry.Degraded(c.Request.Context(), e.Reason)
	}
	s.logError(c, r, e)
	writeError(c, e)
}

// ok writes a 200 JSON answer that must not be cached, with extra headers.
func ok(c *gin.Context, h http.Header, body any) {
	copyHeader(c, h)
	noStore(c)
	c.JSON(http.StatusOK, body)
}

func copyHeader(c *gin.Context, h http.Header) {
	for k, vs := range h {
		for _, v := range vs {
			c.Writer.Header().Add(k, v)
		}
	}
}

func noStore(c *gin.Context) {
	c.Header("Cache-Control", "no-store")
	c.Header("Pragma", "no-cache")
}

func (s *Server) token(c *gin.Context, r *oauth.Request) {
	resp, e := s.svc.Load().Token(c.Request.Context(), r)
	if e != nil {
		s.fail(c, r, e)
		return
	}
	ok(c, resp.Header, resp)
}

func (s *Server) introspect(c *gin.Context, r *oauth.Request) {
	resp, e := s.svc.Load().Introspect(c.Request.Context(), r)
	if e != nil {
		s.fail(c, r, e)
		return
	}
	noStore(c)
	c.JSON(http.StatusOK, resp)
}

func (s *Server) revoke(c *gin.Context, r *oauth.Request) {
	if e := s.svc.Load().Revoke(c.Request.Context(), r); e != nil {
		s.fail(c, r, e)
		return
	}
	noStore(c)
	c.Status(http.StatusOK)
}

func (s *Server) freshAuth(c *gin.Context, r *oauth.Request) {
	resp, e := s.svc.Load().FreshAuth(c.Request.Context(), r)
	if e != nil {
		s.fail(c, r, e)
		return
	}
	ok(c, resp.Header, resp)
}

// adminReload re-reads the configuration and swaps in the new clients,
// tenants and plugin set, or keeps the old ones serving when the new set
// fails. It requires the admin token; without one configured it does not
// exist.
func (s *Server) adminReload(c *gin.Context) {
	if !s.hasAdmin || s.reload == nil {
		writeError(c, &oauth.Error{Status: 404, Code: "not_found", Description: "no such endpoint"})
		return
	}
	tok, ok := strings.CutPrefix(c.GetHeader("Authorization"), "Bearer ")
	sum := sha256.Sum256([]byte(tok))
	if !ok || subtle.ConstantTimeCompare(sum[:], s.adminKey[:]) != 1 {
		e := &oauth.Error{Status: 401, Code: oauth.CodeInvalidToken, Description: "admin token required"}
		writeError(c, e.WithHeader("WWW-Authenticate", `Bearer realm="authority-admin"`))
		return
	}
	s.log.InfoContext(c.Request.Context(), "authority.config.reload", "trigger", "admin")
	if err := s.reload(c.Request.Context()); err != nil { // Reload logs and counts the failure
		c.JSON(http.StatusConflict, gin.H{"reloaded": false, "error": err.Error()})
		return
	}
	c.JSON(http.StatusOK, gin.H{"reloaded": true})
}

func (s *Server) jwks(c *gin.Context) {
	c.Header("Cache-Control", "public, max-age=300")
	c.Data(http.StatusOK, "application/jwk-set+json", s.keys.JWKS())
}

// wellKnown serves the RFC 8414 document of the running configuration:
// the bytes the current Service built, so a reload that swaps the Service
// swaps the document with it, and both listeners and both well-known paths
// answer the same bytes.
func (s *Server) wellKnown(c *gin.Context) {
	c.Header("Cache-Control", "public, max-age=300")
	c.Data(http.StatusOK, "application/json", s.svc.Load().MetadataJSON())
}

func (s *Server) readyz(c *gin.Context) {
	ctx, cancel := context.WithTimeout(c.Request.Context(), 2*time.Second)
	defer cancel()
	type result struct {
		Name     string `json:"name"`
		OK       bool   `json:"ok"`
		Degraded bool   `json:"degraded,omitempty"`
		Error    string `json:"error,omitempty"`
	}
	results := make([]result, len(s.checks))
	var wg sync.WaitGroup
	for i, ch := range s.checks {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := ch.Check(ctx)
			results[i] = result{Name: ch.Name, OK: err == nil}
			if err == nil {
				return
			}
			results[i].Error = "unreachable"
			if ch.Public {
				results[i].Error = err.Error()
			}
			if d, ok := err.(degradedError); ok && d.Degraded() {
				// Degraded notes are written for /readyz: counts and
				// states, never addresses or credentials.
				results[i].OK, results[i].Degraded, results[i].Error = true, true, err.Error()
				return
			}
			s.log.Warn("authority.readyz.failed", "check", ch.Name, "error", err.Error())
		}()
	}
	wg.Wait()
	status := http.StatusOK
	for _, r := range results {
		if !r.OK {
			status = http.StatusServiceUnavailable
		}
	}
	c.JSON(status, gin.H{"ready": status == http.StatusOK, "checks": results})
}

// Listeners binds both listeners and serves until ctx ends, then shuts
// down gracefully within listen.shutdownTimeout.
func (s *Server) Serve(ctx context.Context, tlsCert *tls.Certificate) error {
	plain := &http.Server{
		Addr:              s.cfg.Listen.HTTP,
		Handler:           s.engine,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       15 * time.Second,
		WriteTimeout:      config.HTTPWriteTimeout,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    32 << 10,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
	}
	servers := []*http.Server{plain}
	lns := []net.Listener{}
	ln, err := net.Listen("tcp", s.cfg.Listen.HTTP)
	if err != nil {
		return fmt.Errorf("listen.http: %w", err)
	}
	lns = append(lns, ln)
	if s.cfg.Listen.HTTPS != "" {
		if tlsCert == nil {
			ln.Close()
			return errors.New("listen.https: no server certificate")
		}
		secure := &http.Server{
			Addr:              s.cfg.Listen.HTTPS,
			Handler:           s.mtlsAlias,
			TLSConfig:         mtls.ServerTLSConfig(*tlsCert),
			ReadHeaderTimeout: 5 * time.Second,
			ReadTimeout:       15 * time.Second,
			WriteTimeout:      config.HTTPWriteTimeout,
			IdleTimeout:       120 * time.Second,
			MaxHeaderBytes:    32 << 10,
			ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
		}
		tln, err := net.Listen("tcp", s.cfg.Listen.HTTPS)
		if err != nil {
			ln.Close()
			return fmt.Errorf("listen.https: %w", err)
		}
		servers = append(servers, secure)
		lns = append(lns, tls.NewListener(tln, secure.TLSConfig))
	}
	if a := s.cfg.Admin.PprofAddr; a != "" {
		pln, err := net.Listen("tcp", a)
		if err != nil {
			for _, l := range lns {
				l.Close()
			}
			return fmt.Errorf("admin.pprofAddr: %w", err)
		}
		servers = append(servers, &http.Server{Addr: a, Handler: pprofHandler(), ReadHeaderTimeout: 5 * time.Second,
			ErrorLog: slog.NewLogLogger(s.log.Handler(), slog.LevelWarn)})
		lns = append(lns, pln)
		s.log.Warn("authority.pprof.enabled", "addr", a, "why", "Go profiler on a loopback listener (admin.pprofAddr); turn it off when done")
	}
	errc := make(chan error, len(servers))
	for i, srv := range servers {
		go func() { errc <- srv.Serve(lns[i]) }()
	}
	s.log.Info("authority.server.started", "http", s.cfg.Listen.HTTP, "https", s.cfg.Listen.HTTPS, "issuer", s.cfg.IssuerID())
	var serveErr error
	select {
	case <-ctx.Done():
	case serveErr = <-errc:
	}
	sctx, cancel := context.WithTimeout(context.Background(), s.cfg.Listen.ShutdownTimeout.D())
	defer cancel()
	for _, srv := range servers {
		if err := srv.Shutdown(sctx); err != nil {
			s.log.Warn("authority.server.shutdown", "error", err.Error())
		}
	}
	s.log.Info("authority.server.stopped")
	if serveErr != nil && !errors.Is(serveErr, http.ErrServerClosed) {
		return serveErr
	}
	return nil
}

// pprofHandler serves net/http/pprof under /debug/pprof/ (admin.pprofAddr
// only: never mounted on the public listeners).
func pprofHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	return mux
}
