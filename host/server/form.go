package server

import (
	"errors"
	"mime"
	"net/http"
	"strings"

	"github.com/gin-gonic/gin"

	"stellaops.org/authority/host/oauth"
)

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

func hasScheme(h, scheme string) bool {
	return len(h) >= len(scheme) && strings.EqualFold(h[:len(scheme)], scheme) && (len(h) == len(scheme) || h[len(scheme)] == ' ')
}
