package server

import (
	"context"
	"net/http"
	"sync"
	"time"

	"github.com/gin-gonic/gin"
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
