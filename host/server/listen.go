package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"time"

	"stellaops.org/authority/host/config"
	"stellaops.org/authority/host/mtls"
)

// Listeners binds both listeners and serves until ctx ends, then shuts
// down gracefully within listen.shutdownTimeout.
func (s *Server) Serve(ctx context.Context, tlsCert *tls.Certificate) error {
	plain := s.httpServer(s.cfg.Listen.HTTP, s.engine)
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
		secure := s.httpServer(s.cfg.Listen.HTTPS, s.mtlsAlias)
		secure.TLSConfig = mtls.ServerTLSConfig(*tlsCert)
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
		pp := s.httpServer(a, pprofHandler())
		pp.ReadTimeout, pp.WriteTimeout = 0, 0 // a CPU profile streams for its seconds
		servers = append(servers, pp)
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

// httpServer is every listener's server: the same header, read, write and
// idle timeouts, header size limit and error log.
func (s *Server) httpServer(addr string, h http.Handler) *http.Server {
	return &http.Server{
		Addr:              addr,
		Handler:           h,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       15 * time.Second,
		WriteTimeout:      config.HTTPWriteTimeout,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    32 << 10,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
	}
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
