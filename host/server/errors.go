package server

import (
	"net/http"

	"github.com/gin-gonic/gin"

	"stellaops.org/authority/host/oauth"
)

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
